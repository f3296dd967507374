"""Statistics for comparing interleave policies over scenarios and seeds.

A handful of seeds per policy is too few for means and standard errors to be trusted, so the
comparison reports what Agarwal et al. (NeurIPS 2021, "Deep RL at the edge of the statistical
precipice", the rliable library) recommend: the interquartile mean (IQM) with percentile
bootstrap confidence intervals, stratified by scenario when scenarios are pooled, and the
probability of improvement over a reference policy. The few dozen lines are written here
rather than taken from rliable, whose ``arch`` dependency fails to import with pandas 3.

Conventions:

- Every metric is "higher is better"; :func:`improvement_table` takes ``higher_is_better=False``
  for costs such as ``migrated_gib``.
- A table is a pandas DataFrame or any mapping of column name to a 1-D sequence; the functions
  that return tables return DataFrames (pandas is imported only when one is built).
- Results are deterministic given ``seed``. Tables draw each group's bootstrap from a generator
  seeded by ``(seed, group key)``, so a group's interval does not change when other groups
  (policies, scenarios) are added to or removed from the table.
- Groups (scenarios, policies) come out sorted, as ``DataFrame.groupby`` sorts them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACROSS_SCENARIOS",
    "aggregate",
    "aggregate_probability_of_improvement",
    "aggregate_probability_of_improvement_ci",
    "aggregate_summary",
    "bootstrap_ci",
    "improvement_table",
    "iqm",
    "normalised_scores",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "regret_per_episode",
    "stratified_bootstrap_ci",
    "summarise",
]

Statistic = Callable[[NDArray[np.float64]], float]
Table = Any  # a pandas DataFrame or a Mapping[str, 1-D sequence]
Columns = dict[str, NDArray[Any]]

#: The ``scenario`` value of the rows of :func:`improvement_table` that pool all scenarios.
ACROSS_SCENARIOS = "all scenarios"

# Bootstrap resamples are drawn in blocks of about this many values to bound memory.
_BLOCK_VALUES = 4_000_000


# --------------------------------------------------------------------------------------------
# Point statistics


def _values(values: ArrayLike, name: str = "values") -> NDArray[np.float64]:
    """``values`` as a flat float array; empty or NaN input is an error, not a silent NaN."""
    try:
        x = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN ({int(np.isnan(x).sum())} of {x.size})")
    return x


def _iqm_last_axis(samples: NDArray[np.float64]) -> NDArray[np.float64]:
    """IQM along the last axis, with ``scipy.stats.trim_mean(x, 0.25)``'s cut."""
    n = samples.shape[-1]
    cut = int(0.25 * n)
    return np.sort(samples, axis=-1)[..., cut : n - cut].mean(axis=-1)


def iqm(values: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle half of ``values`` (all of them pooled).

    Robust to a diverged seed like the median, yet uses half of the data like a mean. It is
    exactly ``scipy.stats.trim_mean(values, 0.25)`` (rliable's ``aggregate_iqm``): ``int(n / 4)``
    values are cut from each end, so for n not divisible by 4 slightly more than half is kept,
    and for n < 4 nothing is cut and the IQM is the plain mean.
    """
    return float(_iqm_last_axis(_values(values)))


def aggregate(scores_by_task: Mapping[Hashable, ArrayLike], statistic: Statistic = iqm) -> float:
    """``statistic`` over the scores of all tasks pooled (rliable's aggregate IQM)."""
    return float(statistic(np.concatenate([x for _, x in _tasks(scores_by_task)])))


# --------------------------------------------------------------------------------------------
# Bootstrap machinery


def _vectorised(statistic: Statistic) -> Callable[[NDArray[np.float64]], NDArray[Any]]:
    """The statistic applied to each row of a (resamples, n) array, vectorised when known."""
    if statistic is iqm:
        return _iqm_last_axis
    if statistic is np.mean:
        return lambda rows: rows.mean(axis=-1)
    if statistic is np.median:
        return lambda rows: np.median(rows, axis=-1)
    return lambda rows: np.array([float(statistic(row)) for row in rows])


def _check_bootstrap(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}: {exc}") from None


def _blocks(resamples: int, width: int) -> Iterator[int]:
    """Row counts of the blocks that make up ``resamples`` rows of ``width`` values."""
    rows = max(1, _BLOCK_VALUES // max(width, 1))
    for start in range(0, resamples, rows):
        yield min(rows, resamples - start)


def _interval(draws: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    """Percentile interval of the bootstrap distribution."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(draws, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _bootstrap(
    x: NDArray[np.float64],
    statistic: Statistic,
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    apply = _vectorised(statistic)
    draws = [
        apply(x[rng.integers(0, x.size, (rows, x.size))]) for rows in _blocks(resamples, x.size)
    ]
    return _interval(np.concatenate(draws), confidence)


def bootstrap_ci(
    values: ArrayLike,
    statistic: Statistic = iqm,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over ``values``.

    Resamples ``values`` with replacement ``resamples`` times and returns the central
    ``confidence`` interval of the statistic. :func:`iqm`, ``np.mean`` and ``np.median`` are
    computed vectorised; any other callable is called once per resample. With one value (or
    all values equal) the interval is that single point: it says nothing about spread.
    """
    _check_bootstrap(confidence, resamples)
    return _bootstrap(_values(values), statistic, confidence, int(resamples), _rng(seed))


def _tasks(
    scores_by_task: Mapping[Hashable, ArrayLike], name: str = "scores_by_task"
) -> list[tuple[Hashable, NDArray[np.float64]]]:
    """The tasks in a fixed (sorted) order, so that dict order never changes a result."""
    if not isinstance(scores_by_task, Mapping):
        raise ValueError(f"{name} must be a mapping of task name to scores")
    if not scores_by_task:
        raise ValueError(f"{name} has no tasks")
    return [
        (task, _values(scores_by_task[task], f"{name}[{task!r}]"))
        for task in sorted(scores_by_task, key=repr)
    ]


def stratified_bootstrap_ci(
    scores_by_task: Mapping[Hashable, ArrayLike],
    statistic: Statistic = iqm,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified percentile bootstrap CI of ``statistic`` over the tasks' scores pooled.

    Each resample redraws the runs (seeds) *within* every task, with replacement, keeping each
    task's number of runs, then applies ``statistic`` to the pooled resample (rliable's
    ``StratifiedBootstrap``). Stratifying keeps every scenario in every resample in its own
    proportion, so the interval reflects seed noise, not which scenarios happened to be drawn.
    """
    _check_bootstrap(confidence, resamples)
    tasks = [x for _, x in _tasks(scores_by_task)]
    return _stratified(tasks, statistic, confidence, int(resamples), _rng(seed))


def _stratified(
    tasks: Sequence[NDArray[np.float64]],
    statistic: Statistic,
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    apply = _vectorised(statistic)
    draws = []
    for rows in _blocks(resamples, sum(x.size for x in tasks)):
        pooled = np.concatenate([x[rng.integers(0, x.size, (rows, x.size))] for x in tasks], axis=1)
        draws.append(apply(pooled))
    return _interval(np.concatenate(draws), confidence)


# --------------------------------------------------------------------------------------------
# Probability of improvement


def probability_of_improvement(x: ArrayLike, y: ArrayLike, tolerance: float = 0.0) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of a run of X and a run of Y.

    This is the Mann-Whitney U statistic of ``x`` divided by ``len(x) * len(y)``: 1 when every
    run of X beats every run of Y, 0.5 when the two are indistinguishable. It says how often X
    wins, not by how much, so one huge outlier cannot carry it. Pairs closer than
    ``tolerance`` (absolute) count as ties: deterministic episodes differing in the fifth
    digit should not read as one policy always winning.
    """
    if tolerance > 0:
        return float(_poi_pairs(_values(x, "x")[None], _values(y, "y")[None], tolerance)[0])
    xs, ys = _values(x, "x"), np.sort(_values(y, "y"))
    below = np.searchsorted(ys, xs, side="left")  # runs of Y strictly below each run of X
    ties = np.searchsorted(ys, xs, side="right") - below
    return float((2 * int(below.sum()) + int(ties.sum())) / (2 * xs.size * ys.size))


def _poi_pairs(
    xs: NDArray[np.float64], ys: NDArray[np.float64], tolerance: float
) -> NDArray[np.float64]:
    """Probability of improvement for each row pair, comparing every pair with a tie band."""
    diff = xs[..., :, None] - ys[..., None, :]
    wins = (diff > tolerance).mean(axis=(-2, -1))
    ties = (np.abs(diff) <= tolerance).mean(axis=(-2, -1))
    return wins + 0.5 * ties


def _poi_rows(
    xs: NDArray[np.float64], ys: NDArray[np.float64], tolerance: float = 0.0
) -> NDArray[np.float64]:
    """Probability of improvement for each row pair of (r, n) and (r, m) arrays, by ranks
    (pairwise when there is a tie band)."""
    if tolerance > 0:
        return _poi_pairs(xs, ys, tolerance)
    n, m = xs.shape[-1], ys.shape[-1]
    ranks = rankdata(np.concatenate([xs, ys], axis=-1), axis=-1)  # ties get average ranks
    u = ranks[..., :n].sum(axis=-1) - n * (n + 1) / 2.0
    return u / (n * m)


def probability_of_improvement_ci(
    x: ArrayLike,
    y: ArrayLike,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of :func:`probability_of_improvement`, resampling x and y apart.

    The two policies' runs are independent, so each is resampled on its own.
    """
    _check_bootstrap(confidence, resamples)
    return _poi_ci(_values(x, "x"), _values(y, "y"), confidence, int(resamples), _rng(seed))


def _poi_ci(
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
    tolerance: float = 0.0,
) -> tuple[float, float]:
    draws = []
    for rows in _blocks(resamples, xs.size * ys.size if tolerance > 0 else xs.size + ys.size):
        xi = rng.integers(0, xs.size, (rows, xs.size))
        yi = rng.integers(0, ys.size, (rows, ys.size))
        draws.append(_poi_rows(xs[xi], ys[yi], tolerance))
    return _interval(np.concatenate(draws), confidence)


def _paired_tasks(
    x_by_task: Mapping[Hashable, ArrayLike], y_by_task: Mapping[Hashable, ArrayLike]
) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    xs, ys = _tasks(x_by_task, "x_by_task"), _tasks(y_by_task, "y_by_task")
    x_names, y_names = [t for t, _ in xs], [t for t, _ in ys]
    if x_names != y_names:
        only_x = [t for t in x_names if t not in y_names]
        only_y = [t for t in y_names if t not in x_names]
        raise ValueError(f"tasks differ: only in x_by_task {only_x}, only in y_by_task {only_y}")
    return [(x, y) for (_, x), (_, y) in zip(xs, ys, strict=True)]


def aggregate_probability_of_improvement(
    x_by_task: Mapping[Hashable, ArrayLike], y_by_task: Mapping[Hashable, ArrayLike]
) -> float:
    """The average over tasks of the per-task probability that X improves on Y (rliable).

    Every scenario counts equally, however many seeds it has. Both mappings need the same tasks.
    """
    pairs = _paired_tasks(x_by_task, y_by_task)
    return float(np.mean([probability_of_improvement(x, y) for x, y in pairs]))


def aggregate_probability_of_improvement_ci(
    x_by_task: Mapping[Hashable, ArrayLike],
    y_by_task: Mapping[Hashable, ArrayLike],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified bootstrap CI of :func:`aggregate_probability_of_improvement`.

    Each resample redraws X's and Y's runs independently within every task and averages the
    per-task probabilities.
    """
    _check_bootstrap(confidence, resamples)
    pairs = _paired_tasks(x_by_task, y_by_task)
    return _aggregate_poi_ci(pairs, confidence, int(resamples), _rng(seed))


def _aggregate_poi_ci(
    pairs: Sequence[tuple[NDArray[np.float64], NDArray[np.float64]]],
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
    tolerances: Sequence[float] | None = None,
) -> tuple[float, float]:
    tolerances = tolerances or [0.0] * len(pairs)
    draws = []
    for rows in _blocks(resamples, sum(x.size * y.size for x, y in pairs)):
        total = np.zeros(rows)
        for (x, y), tolerance in zip(pairs, tolerances, strict=True):
            total += _poi_rows(
                x[rng.integers(0, x.size, (rows, x.size))],
                y[rng.integers(0, y.size, (rows, y.size))],
                tolerance,
            )
        draws.append(total / len(pairs))
    return _interval(np.concatenate(draws), confidence)


# --------------------------------------------------------------------------------------------
# Tables


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "experiments.compare.stats returns pandas DataFrames: pip install pandas"
        ) from None
    return pandas


def _n_rows(table: Table) -> int:
    if hasattr(table, "columns"):
        return len(table)
    return max((len(np.asarray(table[c]).ravel()) for c in table), default=0)


def _column_names(table: Table, what: str) -> list[str]:
    if table is None:
        raise ValueError(f"{what} is None")
    if hasattr(table, "columns"):
        return [str(c) for c in table.columns]
    if isinstance(table, Mapping):
        return [str(c) for c in table]
    raise ValueError(f"{what} must be a DataFrame or a mapping of column name to values")


def _columns(table: Table, required: Sequence[str], what: str) -> Columns:
    """The ``required`` columns of ``table`` as numpy arrays, with errors that name them."""
    names = _column_names(table, what)
    if not names or _n_rows(table) == 0:
        raise ValueError(f"{what} is empty (no rows)")
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {names}")
    arrays = {c: np.asarray(table[c]).ravel() for c in dict.fromkeys(required)}
    lengths = {c: a.size for c, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{what} has columns of different lengths: {lengths}")
    return arrays


def _numeric(columns: Columns, name: str, what: str) -> NDArray[np.float64]:
    try:
        values = np.asarray(columns[name], dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} column {name!r} is not numeric") from None
    if np.isnan(values).any():
        raise ValueError(
            f"{what} column {name!r} has {int(np.isnan(values).sum())} NaN value(s); "
            "drop or fix those rows first"
        )
    return values


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _groups(keys: Sequence[NDArray[Any]]) -> list[tuple[tuple[Any, ...], NDArray[np.intp]]]:
    """Sorted distinct key tuples over parallel columns, each with its row indices."""
    codes, uniques = [], []
    for column in keys:
        unique, inverse = np.unique(column, return_inverse=True)
        uniques.append(unique)
        codes.append(inverse.ravel())
    rows, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(rows)))[:-1]
    members = np.split(order, bounds)
    return [
        (tuple(_python(uniques[j][row[j]]) for j in range(len(keys))), idx)
        for row, idx in zip(rows, members, strict=True)
    ]


def _group_seed(seed: int, key: tuple[Any, ...]) -> list[int]:
    """A generator seed for one group: stable across processes (unlike ``hash``)."""
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [int(seed), zlib.crc32(repr(key).encode())]


def _summary_columns(
    table: Table,
    metric: str,
    by: Sequence[str],
    confidence: float,
    resamples: int,
    seed: int,
    what: str = "episodes",
) -> Columns:
    """:func:`summarise` as plain columns (the plots use it without pandas)."""
    _check_bootstrap(confidence, resamples)
    cols = _columns(table, [*by, metric], what)
    values = _numeric(cols, metric, what)
    out: dict[str, list[Any]] = {c: [] for c in [*by, "n", "mean", "iqm", "ci_low", "ci_high"]}
    for key, idx in _groups([cols[b] for b in by]):
        x = values[idx]
        low, high = _bootstrap(x, iqm, confidence, int(resamples), _rng(_group_seed(seed, key)))
        for name, value in zip(by, key, strict=True):
            out[name].append(value)
        out["n"].append(int(x.size))
        out["mean"].append(float(x.mean()))
        out["iqm"].append(iqm(x))
        out["ci_low"].append(low)
        out["ci_high"].append(high)
    return {name: np.asarray(v) for name, v in out.items()}


def _by(by: str | Sequence[str]) -> tuple[str, ...]:
    by = (by,) if isinstance(by, str) else tuple(by)
    if not by:
        raise ValueError("by must name at least one column")
    return by


def summarise(
    episodes: Table,
    metric: str = "return",
    by: str | Sequence[str] = ("scenario", "policy"),
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group: number of runs, mean, IQM and the bootstrap CI of the IQM of ``metric``.

    Returns columns ``*by, n, mean, iqm, ci_low, ci_high``, one row per group, sorted by the
    group key. Deterministic given ``seed`` (see the module notes on per-group seeding).
    """
    by = _by(by)
    return _pandas().DataFrame(_summary_columns(episodes, metric, by, confidence, resamples, seed))


def aggregate_summary(
    episodes: Table,
    metric: str = "score",
    by: str | Sequence[str] = "policy",
    task: str = "scenario",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group (policy), IQM over all its (task, seed) runs with a stratified bootstrap CI.

    The headline number of rliable's reports; meaningful only on scores that are comparable
    across tasks, such as :func:`normalised_scores`. Returns columns ``*by, n_tasks, n, mean,
    iqm, ci_low, ci_high``.
    """
    by = _by(by)
    _check_bootstrap(confidence, resamples)
    cols = _columns(episodes, [*by, task, metric], "episodes")
    values = _numeric(cols, metric, "episodes")
    out: dict[str, list[Any]] = {c: [] for c in [*by, "n_tasks", "n", "mean", "iqm"]}
    out |= {"ci_low": [], "ci_high": []}
    for key, idx in _groups([cols[b] for b in by]):
        by_task = {t[0]: values[idx[i]] for t, i in _groups([cols[task][idx]])}
        rng = _rng(_group_seed(seed, ("aggregate", *key)))
        low, high = _stratified(list(by_task.values()), iqm, confidence, int(resamples), rng)
        for name, value in zip(by, key, strict=True):
            out[name].append(value)
        out["n_tasks"].append(len(by_task))
        out["n"].append(int(idx.size))
        out["mean"].append(float(values[idx].mean()))
        out["iqm"].append(aggregate(by_task))
        out["ci_low"].append(low)
        out["ci_high"].append(high)
    return _pandas().DataFrame(out)


def _policies_check(policies: NDArray[Any], reference_policy: str) -> None:
    available = sorted({str(p) for p in policies})
    if reference_policy not in available:
        raise ValueError(
            f"unknown reference policy {reference_policy!r}; available policies: {available}"
        )


def normalised_scores(
    episodes: Table,
    reference_policy: str,
    metric: str = "return",
    column: str = "score",
) -> pd.DataFrame:
    """``episodes`` with ``column`` = ``metric`` / the reference policy's mean on that scenario.

    Makes scenarios comparable so that they can be pooled (1.0 = as good as the reference on
    average). A ratio is only meaningful for a positive reference, so a scenario on which the
    reference's mean is zero or negative raises ValueError naming the scenario (normalise a
    positive metric such as ``mean_weighted_speedup`` or ``reward_throughput`` instead), and so
    does a scenario without any reference episode.
    """
    cols = _columns(episodes, ["scenario", "policy", metric], "episodes")
    values = _numeric(cols, metric, "episodes")
    _policies_check(cols["policy"], reference_policy)
    scenarios = cols["scenario"]
    is_reference = cols["policy"] == reference_policy
    scores = np.empty_like(values)
    without = []
    for (scenario,), idx in _groups([scenarios]):
        ref = values[idx[is_reference[idx]]]
        if ref.size == 0:
            without.append(scenario)
            continue
        mean = float(ref.mean())
        if mean <= 0.0:
            raise ValueError(
                f"cannot normalise {metric!r} on scenario {scenario!r}: the mean of reference "
                f"policy {reference_policy!r} is {mean:.6g} <= 0; normalise a positive metric"
            )
        scores[idx] = values[idx] / mean
    if without:
        raise ValueError(
            f"reference policy {reference_policy!r} has no episodes on scenario(s) {without}"
        )
    out = _pandas().DataFrame(episodes).copy()
    out[column] = scores
    return out


def improvement_table(
    episodes: Table,
    reference_policy: str,
    metric: str = "return",
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    tie_tolerance: float = 0.0,
) -> pd.DataFrame:
    """Probability that each policy improves on ``reference_policy``, per scenario and overall.

    ``tie_tolerance`` (relative to the reference's mean |metric| on the scenario): pairs of
    episodes closer than that count as ties.

    One row per (scenario, policy) where both the policy and the reference have runs, then one
    row per policy with ``scenario == ACROSS_SCENARIOS``: the average of its per-scenario
    probabilities with a stratified bootstrap CI. Columns: ``scenario, policy, reference,
    n_scenarios, n, n_reference, probability, ci_low, ci_high`` (``n`` and
    ``n_reference`` count runs). ``higher_is_better=False`` compares costs (lower wins).
    """
    _check_bootstrap(confidence, resamples)
    cols = _columns(episodes, ["scenario", "policy", metric], "episodes")
    values = _numeric(cols, metric, "episodes")
    if not higher_is_better:
        values = -values
    _policies_check(cols["policy"], reference_policy)
    if ACROSS_SCENARIOS in {str(s) for s in cols["scenario"]}:
        raise ValueError(f"a scenario is named {ACROSS_SCENARIOS!r}, which marks the overall rows")
    runs: dict[str, dict[Any, NDArray[np.float64]]] = {}
    for (policy, scenario), idx in _groups([cols["policy"], cols["scenario"]]):
        runs.setdefault(policy, {})[scenario] = values[idx]
    reference = runs[reference_policy]
    names = ["scenario", "policy", "reference", "n_scenarios", "n", "n_reference"]
    out: dict[str, list[Any]] = {c: [] for c in [*names, "probability", "ci_low", "ci_high"]}

    def row(scenario: Any, policy: str, n_s: int, n: int, n_ref: int, p: float, ci: Any) -> None:
        for name, value in zip(
            out, (scenario, policy, reference_policy, n_s, n, n_ref, p, *ci), strict=True
        ):
            out[name].append(value)

    overall = []
    for policy in sorted(p for p in runs if p != reference_policy):
        shared = {s: x for s, x in runs[policy].items() if s in reference}
        tolerances = {s: tie_tolerance * abs(float(np.mean(reference[s]))) for s in shared}
        for scenario, x in shared.items():
            y = reference[scenario]
            rng = _rng(_group_seed(seed, ("improvement", scenario, policy)))
            ci = _poi_ci(x, y, confidence, int(resamples), rng, tolerances[scenario])
            p = probability_of_improvement(x, y, tolerances[scenario])
            row(scenario, policy, 1, x.size, y.size, p, ci)
        if shared:
            ref = {s: reference[s] for s in shared}
            order = sorted(shared, key=repr)
            pairs = [(shared[s], ref[s]) for s in order]
            rng = _rng(_group_seed(seed, ("improvement", policy)))
            ci = _aggregate_poi_ci(
                pairs, confidence, int(resamples), rng, [tolerances[s] for s in order]
            )
            n = sum(x.size for x in shared.values())
            n_ref = sum(x.size for x in ref.values())
            p = float(
                np.mean(
                    [
                        probability_of_improvement(*pair, tolerances[s])
                        for s, pair in zip(order, pairs, strict=True)
                    ]
                )
            )
            overall.append((ACROSS_SCENARIOS, policy, len(shared), n, n_ref, p, ci))
    for args in overall:
        row(*args)
    return _pandas().DataFrame(out)


def _regret_columns(steps: Table) -> Columns:
    """:func:`regret_per_episode` as plain columns (the plots use it without pandas)."""
    keys = ["scenario", "policy", "seed"]
    names = _column_names(steps, "steps")
    if names and "bound" not in names:
        raise ValueError(
            "steps has no 'bound' column: regret needs the per-interval upper bound of "
            f"reward_throughput; it has {names}"
        )
    cols = _columns(steps, [*keys, "reward_throughput", "bound"], "steps")
    reward = _numeric(cols, "reward_throughput", "steps")
    bound = _numeric(cols, "bound", "steps")
    out: dict[str, list[Any]] = {c: [] for c in [*keys, "regret"]}
    for key, idx in _groups([cols[k] for k in keys]):
        total = float(bound[idx].sum())
        if total <= 0.0:
            raise ValueError(
                f"episode {dict(zip(keys, key, strict=True))}: sum of bound is {total:.6g} <= 0"
            )
        for name, value in zip(keys, key, strict=True):
            out[name].append(value)
        out["regret"].append(1.0 - float(reward[idx].sum()) / total)
    return {name: np.asarray(v) for name, v in out.items()}


def regret_per_episode(steps: Table) -> pd.DataFrame:
    """Relative regret of each episode: ``1 - sum(reward_throughput) / sum(bound)``.

    0 means the policy reached the per-interval upper bound throughout; lower is better.
    Needs the ``bound`` column; returns columns ``scenario, policy, seed, regret``.
    """
    return _pandas().DataFrame(_regret_columns(steps))
