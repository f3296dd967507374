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
- The table functions take and return pandas DataFrames. An episodes table has one row per
  episode (one run of a policy on a scenario at a seed) with columns ``scenario``, ``policy``
  and the metric (``return`` by default); each function names the columns it reads, ignores
  the others, and does not use the row index. The per-run functions (:func:`iqm`,
  :func:`bootstrap_ci`, ...) take arrays, and mappings of task (scenario) to runs.
- Results are deterministic given ``seed``. Tables draw each group's bootstrap from a generator
  seeded by ``(seed, group key)``, so a group's interval does not change when other groups
  (policies, scenarios) are added to or removed from the table.
- Groups are formed by ``DataFrame.groupby`` and come out sorted by their key (a categorical
  column in the order of its categories); within a group the runs keep the table's row order,
  which the bootstrap's draws index into. Group means and sums are numpy's, as in the per-run
  functions, not pandas' groupby reductions (compensated summation), which can differ in the
  last digit.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

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


def checked_table(table: pd.DataFrame, required: Sequence[str], what: str) -> pd.DataFrame:
    """``table`` itself, once it is a DataFrame with rows and the ``required`` columns (each
    once), with errors that name ``what`` and what is wrong (the plots check their inputs so
    too)."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    names = [str(c) for c in table.columns]
    if not names or len(table) == 0:
        raise ValueError(f"{what} is empty (no rows)")
    required = list(dict.fromkeys(required))
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {names}")
    repeated = [c for c in required if names.count(c) > 1]
    if repeated:
        raise ValueError(f"{what} has more than one column named {repeated}")
    return table


def _frame(table: pd.DataFrame, required: Sequence[str], what: str) -> pd.DataFrame:
    """The ``required`` columns of ``table`` (checked) with a fresh 0..n-1 index (a row's
    position)."""
    required = list(dict.fromkeys(required))
    return checked_table(table, required, what)[required].reset_index(drop=True)


def numeric_column(frame: pd.DataFrame, name: str, what: str) -> NDArray[np.float64]:
    """Column ``name`` as floats; a non-numeric column or a NaN in it is an error."""
    try:
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
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


def _groups(
    frame: pd.DataFrame, by: Sequence[str], what: str = "episodes"
) -> list[tuple[tuple[Any, ...], NDArray[np.intp]]]:
    """``frame.groupby(by)``'s groups in its (sorted) order: each key, as a tuple of Python
    scalars (they seed the bootstrap through their ``repr``), with the group's rows as
    positions in ``frame`` (its index, from :func:`_frame`), in table order."""
    keys = frame[list(by)]
    missing = keys.isna().sum()
    if missing.any():
        counts = {str(c): int(n) for c, n in missing.items() if n}
        raise ValueError(f"{what} has missing values in grouping column(s) {counts}")
    groups = []
    for key, rows in keys.groupby(list(by), sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        groups.append((tuple(_python(k) for k in key), np.asarray(rows.index, dtype=np.intp)))
    return groups


def _group_seed(seed: int, key: tuple[Any, ...]) -> list[int]:
    """A generator seed for one group: stable across processes (unlike ``hash``)."""
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [int(seed), zlib.crc32(repr(key).encode())]


def _by(by: str | Sequence[str]) -> tuple[str, ...]:
    by = (by,) if isinstance(by, str) else tuple(by)
    if not by:
        raise ValueError("by must name at least one column")
    return by


def _summary(
    table: pd.DataFrame,
    metric: str,
    by: tuple[str, ...],
    confidence: float,
    resamples: int,
    seed: int,
    what: str,
) -> pd.DataFrame:
    _check_bootstrap(confidence, resamples)
    frame = _frame(table, [*by, metric], what)
    values = numeric_column(frame, metric, what)
    rows = []
    for key, idx in _groups(frame, by, what):
        x = values[idx]
        rng = _rng(_group_seed(seed, key))
        ci = _bootstrap(x, iqm, confidence, int(resamples), rng)
        rows.append((*key, int(x.size), float(x.mean()), iqm(x), *ci))
    return pd.DataFrame(rows, columns=[*by, "n", "mean", "iqm", "ci_low", "ci_high"])


def summarise(
    episodes: pd.DataFrame,
    metric: str = "return",
    by: str | Sequence[str] = ("scenario", "policy"),
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group: number of runs, mean, IQM and the bootstrap CI of the IQM of ``metric``.

    ``episodes`` needs the ``by`` columns and the numeric ``metric`` column. Returns columns
    ``*by, n, mean, iqm, ci_low, ci_high``, one row per group, sorted by the group key.
    Deterministic given ``seed`` (see the module notes on per-group seeding).
    """
    return _summary(episodes, metric, _by(by), confidence, resamples, seed, "episodes")


def aggregate_summary(
    episodes: pd.DataFrame,
    metric: str = "score",
    by: str | Sequence[str] = "policy",
    task: str = "scenario",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group (policy), IQM over all its (task, seed) runs with a stratified bootstrap CI.

    The headline number of rliable's reports; meaningful only on scores that are comparable
    across tasks, such as :func:`normalised_scores`. ``episodes`` needs the ``by`` and ``task``
    columns and the numeric ``metric`` column. Returns columns ``*by, n_tasks, n, mean, iqm,
    ci_low, ci_high``, one row per group, sorted by the group key.
    """
    by = _by(by)
    _check_bootstrap(confidence, resamples)
    frame = _frame(episodes, [*by, task, metric], "episodes")
    values = numeric_column(frame, metric, "episodes")
    rows = []
    for key, idx in _groups(frame, by):
        # the group's runs per task, tasks in sorted order (the order the resamples are drawn)
        tasks = [values[task_idx] for _, task_idx in _groups(frame.iloc[idx], [task])]
        rng = _rng(_group_seed(seed, ("aggregate", *key)))
        ci = _stratified(tasks, iqm, confidence, int(resamples), rng)
        pooled = iqm(np.concatenate(tasks))  # aggregate() of the tasks
        rows.append((*key, len(tasks), int(idx.size), float(values[idx].mean()), pooled, *ci))
    columns = [*by, "n_tasks", "n", "mean", "iqm", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def _policies_check(policies: pd.Series, reference_policy: str) -> None:
    available = sorted({str(p) for p in policies})
    if reference_policy not in available:
        raise ValueError(
            f"unknown reference policy {reference_policy!r}; available policies: {available}"
        )


def normalised_scores(
    episodes: pd.DataFrame,
    reference_policy: str,
    metric: str = "return",
    column: str = "score",
) -> pd.DataFrame:
    """``episodes`` with ``column`` = ``metric`` / the reference policy's mean on that scenario.

    ``episodes`` needs columns ``scenario``, ``policy`` and the numeric ``metric``; the copy
    returned keeps all its columns and its index. Makes scenarios comparable so that they can
    be pooled (1.0 = as good as the reference on average). A ratio is only meaningful for a
    positive reference, so a scenario on which the reference's mean is zero or negative raises
    ValueError naming the scenario (normalise a positive metric such as
    ``mean_weighted_speedup`` or ``reward_throughput`` instead), and so does a scenario without
    any reference episode.
    """
    frame = _frame(episodes, ["scenario", "policy", metric], "episodes")
    values = numeric_column(frame, metric, "episodes")
    _policies_check(frame["policy"], reference_policy)
    reference = frame[frame["policy"] == reference_policy]
    means = {}
    for (scenario,), idx in _groups(reference, ["scenario"]):
        mean = float(values[idx].mean())
        if mean <= 0.0:
            raise ValueError(
                f"cannot normalise {metric!r} on scenario {scenario!r}: the mean of reference "
                f"policy {reference_policy!r} is {mean:.6g} <= 0; normalise a positive metric"
            )
        means[scenario] = mean
    without = [s for (s,), _ in _groups(frame, ["scenario"]) if s not in means]
    if without:
        raise ValueError(
            f"reference policy {reference_policy!r} has no episodes on scenario(s) {without}"
        )
    out = episodes.copy()
    out[column] = values / frame["scenario"].map(means).to_numpy(dtype=np.float64)
    return out


def improvement_table(
    episodes: pd.DataFrame,
    reference_policy: str,
    metric: str = "return",
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    tie_tolerance: float = 0.0,
) -> pd.DataFrame:
    """Probability that each policy improves on ``reference_policy``, per scenario and overall.

    ``episodes`` needs columns ``scenario``, ``policy`` and the numeric ``metric``.
    ``tie_tolerance`` (relative to the reference's mean |metric| on the scenario): pairs of
    episodes closer than that count as ties.

    One row per (scenario, policy) where both the policy and the reference have runs, then one
    row per policy with ``scenario == ACROSS_SCENARIOS``: the average of its per-scenario
    probabilities with a stratified bootstrap CI. Columns: ``scenario, policy, reference,
    n_scenarios, n, n_reference, probability, ci_low, ci_high`` (``n`` and
    ``n_reference`` count runs). ``higher_is_better=False`` compares costs (lower wins).
    """
    _check_bootstrap(confidence, resamples)
    frame = _frame(episodes, ["scenario", "policy", metric], "episodes")
    values = numeric_column(frame, metric, "episodes")
    if not higher_is_better:
        values = -values
    _policies_check(frame["policy"], reference_policy)
    if frame["scenario"].astype(str).eq(ACROSS_SCENARIOS).any():
        raise ValueError(f"a scenario is named {ACROSS_SCENARIOS!r}, which marks the overall rows")
    runs: dict[Any, dict[Any, NDArray[np.float64]]] = {}
    for (policy, scenario), idx in _groups(frame, ["policy", "scenario"]):
        runs.setdefault(policy, {})[scenario] = values[idx]
    reference = runs[reference_policy]
    per_scenario, overall = [], []
    for policy in sorted(p for p in runs if p != reference_policy):
        shared = {s: x for s, x in runs[policy].items() if s in reference}
        tolerances = {s: tie_tolerance * abs(float(np.mean(reference[s]))) for s in shared}
        for scenario, x in shared.items():
            y = reference[scenario]
            rng = _rng(_group_seed(seed, ("improvement", scenario, policy)))
            ci = _poi_ci(x, y, confidence, int(resamples), rng, tolerances[scenario])
            p = probability_of_improvement(x, y, tolerances[scenario])
            per_scenario.append((scenario, policy, reference_policy, 1, x.size, y.size, p, *ci))
        if shared:
            order = sorted(shared, key=repr)  # the order the resamples are drawn in
            pairs = [(shared[s], reference[s]) for s in order]
            rng = _rng(_group_seed(seed, ("improvement", policy)))
            ci = _aggregate_poi_ci(
                pairs, confidence, int(resamples), rng, [tolerances[s] for s in order]
            )
            n = sum(x.size for x, _ in pairs)
            n_ref = sum(y.size for _, y in pairs)
            p = float(
                np.mean(
                    [
                        probability_of_improvement(*pair, tolerances[s])
                        for s, pair in zip(order, pairs, strict=True)
                    ]
                )
            )
            overall.append(
                (ACROSS_SCENARIOS, policy, reference_policy, len(shared), n, n_ref, p, *ci)
            )
    names = ["scenario", "policy", "reference", "n_scenarios", "n", "n_reference"]
    columns = [*names, "probability", "ci_low", "ci_high"]
    return pd.DataFrame(per_scenario + overall, columns=columns)


def regret_per_episode(steps: pd.DataFrame) -> pd.DataFrame:
    """Relative regret of each episode: ``1 - sum(reward_throughput) / sum(bound)``.

    0 means the policy reached the per-interval upper bound throughout; lower is better.
    ``steps`` has one row per interval with columns ``scenario, policy, seed,
    reward_throughput`` and the interval's upper bound ``bound``; returns columns ``scenario,
    policy, seed, regret``, one row per episode, sorted.
    """
    keys = ["scenario", "policy", "seed"]
    names = [str(c) for c in steps.columns] if isinstance(steps, pd.DataFrame) else []
    if names and "bound" not in names:
        raise ValueError(
            "steps has no 'bound' column: regret needs the per-interval upper bound of "
            f"reward_throughput; it has {names}"
        )
    frame = _frame(steps, [*keys, "reward_throughput", "bound"], "steps")
    reward = numeric_column(frame, "reward_throughput", "steps")
    bound = numeric_column(frame, "bound", "steps")
    rows = []
    for key, idx in _groups(frame, keys, "steps"):
        total = float(bound[idx].sum())
        if total <= 0.0:
            raise ValueError(
                f"episode {dict(zip(keys, key, strict=True))}: sum of bound is {total:.6g} <= 0"
            )
        rows.append((*key, 1.0 - float(reward[idx].sum()) / total))
    return pd.DataFrame(rows, columns=[*keys, "regret"])
