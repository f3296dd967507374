"""Write a comparison's results: raw episodes and steps (CSV), the summary tables (Markdown:
IQM with 95 % bootstrap CIs, scores relative to the reference, probability of improvement,
gap to the upper bound), plots (PNG) and TensorBoard scalars. The folder is replaced as a
whole once every file is written; ``summary.md`` records the command, commit, machine and the
config itself.
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import cast

import numpy as np
import pandas as pd

from experiments.compare import plots, stats
from experiments.compare.config import CompareConfig
from experiments.compare.folders import check_replaceable, replaced_folder
from experiments.compare.runner import CompareResults, for_seed
from experiments.compare.tensorboard import write_tensorboard
from tierenv.files import atomic_path, write_text_atomically
from tierenv.provenance import stamp

CONFIDENCE = 0.95
RESAMPLES = 2000
# Episodes whose returns differ by less than this share of the reference's count as ties in
# the probability of improvement: the simulator is deterministic for most seeds, and a
# difference in the fifth digit is not an improvement anyone could measure on a host.
TIE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Summary:
    table: str  # the return table, as printed by the CLI
    markdown: str  # all of summary.md


def write_results(
    results: CompareResults,
    out: str | Path,
    command: str,
    tensorboard_dir: str | Path | None = None,
) -> Summary:
    """Write every results file under ``out``; returns the summary.

    ``out`` (and the TensorBoard folder) is replaced as a whole when everything is written
    (``folders.replaced_folder``): a failure or a kill leaves the previous results intact,
    never files of two runs side by side. Folders holding other files are refused."""
    check_replaceable(out, is_results_file, "results folder")
    if tensorboard_dir is not None:
        check_replaceable(tensorboard_dir, is_tensorboard_file, "TensorBoard folder")
    with replaced_folder(out, is_results_file, "results folder") as stage:
        config = results.config
        _write_csv(results.episodes, stage / "episodes.csv")
        _write_csv(results.steps, stage / "steps.csv.gz")
        if not results.sweep.empty:
            _write_csv(results.sweep, stage / "static_sweep.csv")
        write_text_atomically(stage / "config.yaml", config.yaml_text())

        returns = stats.summarise(
            results.episodes, "return", confidence=CONFIDENCE, resamples=RESAMPLES, seed=0
        )
        figures = _plots(results, stage, returns)
        summary = summarise_results(results, command, figures, returns)
        write_text_atomically(stage / "summary.md", summary.markdown)
        if tensorboard_dir is not None:
            # Replaced just before the results: a kill in between leaves new logs beside the
            # previous results, which the next run (resumed) replaces too.
            with replaced_folder(
                tensorboard_dir, is_tensorboard_file, "TensorBoard folder"
            ) as logs:
                write_tensorboard(results.steps, logs)
    return summary


#: The files ``write_results`` writes (besides ``*.png`` plots).
RESULT_FILES = ("episodes.csv", "steps.csv.gz", "static_sweep.csv", "config.yaml", "summary.md")
#: Summaries other commands derive from a results folder and write into it
#: (``experiments.headroom_summary``, ``experiments.learned_targets``): a new run replaces
#: them with the rest, since they would describe the previous run.
DERIVED_FILES = ("aggregate.md", "targets.md")


def is_results_file(relative: PurePath, is_dir: bool) -> bool:
    """Whether an entry of a results folder is one ``write_results`` writes (or the
    temporary file of one, left by a run killed before results were staged)."""
    name = relative.name
    if is_dir or len(relative.parts) != 1:
        return False
    if name.startswith("."):  # ".episodes.csv.abc123": an interrupted atomic write
        known_files = RESULT_FILES + DERIVED_FILES
        return any(name[1:].startswith(f"{known}.") for known in known_files) or ".png." in name
    return name in RESULT_FILES or name in DERIVED_FILES or name.endswith(".png")


def is_tensorboard_file(relative: PurePath, is_dir: bool) -> bool:
    """Whether an entry of a TensorBoard folder is one ``write_tensorboard`` writes: run
    folders (scenario/policy/seed) and event files."""
    return is_dir or relative.name.startswith("events.out.tfevents.")


def summarise_results(
    results: CompareResults,
    command: str,
    figures: list[Path] | None = None,
    returns: pd.DataFrame | None = None,
) -> Summary:
    """summary.md's text; ``returns`` is ``stats.summarise`` of the returns when already
    computed."""
    config = results.config
    episodes = results.episodes
    policies = list(config.policy_names)
    scenarios = list(config.scenario_names)
    if returns is None:
        returns = stats.summarise(
            episodes, "return", confidence=CONFIDENCE, resamples=RESAMPLES, seed=0
        )
    table = _pivot(returns, policies, scenarios, digits=2)
    sections = [
        f"# Comparison `{config.name}`\n",
        stamp(command),
        "",
        config.description,
        "",
        f"{len(scenarios)} scenarios x {len(policies)} policies x {len(config.seeds)} seeds "
        f"(seeds {', '.join(map(str, config.seeds))}); {len(results.sweep)} static grid "
        f"episodes; {results.wall_s:.0f} s wall time on {results.workers} "
        f"{'worker' if results.workers == 1 else 'workers'} ({results.executor}).",
        "",
        "## Return per episode",
        "",
        "Sum of rewards over the episode (weighted speedup per interval minus the migration "
        f"cost): interquartile mean over seeds [{CONFIDENCE:.0%} percentile-bootstrap CI]. "
        "A seed fixes the run of the workload (each scenario's `[variation]`: phase moments, "
        "intensities, layout) and DAMON's sampling; every policy sees the same run at a "
        "seed, so comparisons at a seed are paired. A scenario whose variation is switched "
        "off varies only through DAMON's sampling.",
        "",
        table + _bound_row(episodes, scenarios),
    ]
    if config.reference is not None:
        sections += _per_scenario_section(episodes, policies, scenarios, config.reference)
        sections += _relative_sections(results, policies, scenarios, config.reference)
    if "bound_return" in episodes:
        sections += _bound_section(episodes, policies, scenarios)
    sections += _behaviour_section(episodes, policies, scenarios)
    if results.best_static:
        sections += [
            "## Best static weights in hindsight",
            "",
            "The grid point with the highest mean return over the seeds, per scenario:",
            "",
            "| scenario | weights |",
            "|---|---|",
            *(f"| {s} | {label} |" for s, label in results.best_static.items()),
            "",
        ]
    if figures:
        sections += ["## Plots", "", *(f"![{f.stem}]({f.name})" for f in figures), ""]
    sections += [
        "## Config",
        "",
        f"`{shown_path(config.source)}`:",
        "",
        "```yaml",
        config.yaml_text().rstrip(),
        "```",
        "",
    ]
    return Summary(table=table, markdown="\n".join(sections) + "\n")


def _relative_sections(
    results: CompareResults, policies: list[str], scenarios: list[str], reference: str
) -> list[str]:
    episodes = results.episodes
    scores = stats.normalised_scores(episodes, reference, "return")
    score_summary = stats.summarise(
        scores, "score", confidence=CONFIDENCE, resamples=RESAMPLES, seed=0
    )
    pooled = stats.aggregate_summary(
        scores, "score", confidence=CONFIDENCE, resamples=RESAMPLES, seed=0
    ).set_index("policy")
    aggregate = [
        (policy, *pooled.loc[policy, ["iqm", "ci_low", "ci_high"]].to_numpy(dtype=float))
        for policy in policies
        if policy in pooled.index
    ]
    lines = [
        f"## Relative to `{reference}`",
        "",
        f"Return over `{reference}`'s mean return on the same scenario (1.00 = as good): IQM "
        f"[{CONFIDENCE:.0%} CI]; the last column pools all scenarios (stratified bootstrap).",
        "",
        _pivot(score_summary, policies, scenarios, digits=3, aggregate=aggregate),
    ]
    improvement = stats.improvement_table(
        episodes,
        reference,
        "return",
        confidence=CONFIDENCE,
        resamples=RESAMPLES,
        seed=0,
        tie_tolerance=TIE_TOLERANCE,
    )
    lines += [
        f"Probability of improvement over `{reference}`: the chance that a random episode of "
        f"the policy has a higher return than a random episode of `{reference}` on the same "
        f"scenario (0.5 = no difference; returns within {TIE_TOLERANCE:.1%} of the "
        "reference's count as ties) [CI]; the last column averages the scenarios.",
        "",
        _improvement_pivot(improvement, policies, scenarios),
    ]
    return lines


def _bound_row(episodes: pd.DataFrame, scenarios: list[str]) -> str:
    """The per-interval upper bound's return, under the table it bounds."""
    if "bound_return" not in episodes:
        return ""
    bounds = episodes.groupby("scenario")["bound_return"].mean()  # one bound per seed's run
    cells = [
        f"{bounds[s]:.2f}" if s in bounds.index and np.isfinite(bounds[s]) else "-"
        for s in scenarios
    ]
    return "| *upper bound* | " + " | ".join(cells) + " |\n"


def relative_returns(episodes: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per scenario (rows), every policy's mean return over the seeds divided by
    ``reference``'s (columns; the reference's own column holds its mean return), plus an
    ``upper bound`` column where the bound was computed."""
    means = episodes.groupby(["scenario", "policy"])["return"].mean().unstack()
    base = means[reference]
    table = means.drop(columns=reference).div(base, axis=0)
    table.insert(0, reference, base)
    if "bound_return" in episodes:
        # each seed's run has its bound (its realisation); episodes of a scenario share seeds
        bounds = episodes.groupby(["scenario", "seed"])["bound_return"].first()
        bounds = bounds.groupby("scenario").mean()
        if not bounds.empty:
            table["upper bound"] = bounds / base
    return table


def _per_scenario_section(
    episodes: pd.DataFrame, policies: list[str], scenarios: list[str], reference: str
) -> list:
    """One row per scenario: every policy's (and the bound's) mean return over the
    reference's, the headroom view of a comparison."""
    table = relative_returns(episodes, reference)
    others = [p for p in policies if p != reference]
    bounded = "upper bound" in table
    header = ["scenario", f"{reference} return", *others]
    if bounded:
        header.append("upper bound")
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for scenario in scenarios:
        row = table.loc[scenario] if scenario in table.index else pd.Series(dtype=float)
        cells = [scenario, f"{row.get(reference, math.nan):.2f}"]
        cells += [f"{row.get(p, math.nan):.3f}" for p in others]
        if bounded:
            bound = row.get("upper bound", math.nan)
            cells.append(f"{bound:.3f}" if np.isfinite(bound) else "-")
        rows.append("| " + " | ".join(cells) + " |")
    return [
        f"## Per scenario, relative to `{reference}`",
        "",
        f"Mean return over the seeds divided by `{reference}`'s on the same scenario (1.000 = "
        "as good; the upper bound where it was computed).",
        "",
        "\n".join(rows),
        "",
    ]


def _bound_section(episodes: pd.DataFrame, policies: list[str], scenarios: list[str]) -> list:
    gap = episodes.assign(gap=1.0 - episodes["return"] / episodes["bound_return"])
    means = gap.groupby(["policy", "scenario"])["gap"].mean()
    table = _table(
        policies,
        scenarios,
        lambda policy, s: f"{100 * means.get((policy, s), math.nan):.1f} %",
    )
    return [
        "## Gap to the per-interval upper bound",
        "",
        "1 - return / bound, mean over seeds. The bound (`agents.oracle.upper_bound`) gives "
        "every interval its best per-application placement for free: no policy can reach "
        "it, so it measures how much is left, not a target.",
        "",
        table.rstrip("\n"),
        "",
    ]


def _behaviour_section(episodes: pd.DataFrame, policies: list[str], scenarios: list[str]):
    means = episodes.groupby(["policy", "scenario"])[
        ["mean_weighted_speedup", "migrated_gib"]
    ].mean()

    def cell(policy: str, scenario: str) -> str | None:
        if (policy, scenario) not in means.index:
            return None
        speedup, gib = _row(means, policy, scenario)
        return f"{speedup:.3f} / {gib:,.0f}"

    return [
        "## Weighted speedup and migration",
        "",
        "Mean weighted speedup per interval / GiB migrated per episode (means over seeds).",
        "",
        _table(policies, scenarios, cell).rstrip("\n"),
        "",
    ]


def _pivot(
    summary: pd.DataFrame,
    policies: list[str],
    scenarios: list[str],
    digits: int,
    aggregate: list[tuple[str, float, float, float]] | None = None,
) -> str:
    indexed = summary.set_index(["policy", "scenario"])
    extra = {policy: (value, low, high) for policy, value, low, high in aggregate or []}

    def cell(policy: str, column: str) -> str | None:
        if column == stats.ACROSS_SCENARIOS:
            return _cell(*extra[policy], digits) if policy in extra else None
        if (policy, column) not in indexed.index:
            return None
        row = _row(indexed, policy, column)
        return _cell(row["iqm"], row["ci_low"], row["ci_high"], digits)

    columns = [*scenarios, stats.ACROSS_SCENARIOS] if aggregate else scenarios
    return _table(policies, columns, cell)


def _improvement_pivot(table: pd.DataFrame, policies: list[str], scenarios: list[str]) -> str:
    indexed = table.set_index(["policy", "scenario"])

    def cell(policy: str, column: str) -> str | None:
        if (policy, column) not in indexed.index:
            return None
        row = _row(indexed, policy, column)
        return _cell(row["probability"], row["ci_low"], row["ci_high"], 2)

    return _table(policies, [*scenarios, stats.ACROSS_SCENARIOS], cell)


def _row(table: pd.DataFrame, policy: str, scenario: str) -> pd.Series:
    """The row of a table indexed by (policy, scenario); pandas-stubs type ``.loc`` of a
    2-tuple as (row, column), a scalar, where a two-level index gives the row."""
    return cast(pd.Series, table.loc[(policy, scenario)])


def _table(policies: list[str], columns: list[str], cell: Callable[[str, str], str | None]) -> str:
    """A Markdown table with a row per policy and a column per scenario (``cell`` gives each
    entry; None prints as "-")."""
    rows = ["| policy | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for policy in policies:
        cells = [cell(policy, column) for column in columns]
        rows.append(f"| {policy} | " + " | ".join("-" if c is None else c for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _cell(value: float, low: float, high: float, digits: int) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _plots(results: CompareResults, out: Path, returns: pd.DataFrame) -> list[Path]:
    config = results.config
    figures = []
    figures.append(
        plots.plot_scenario_bars(
            returns,
            out / "return_by_scenario.png",
            metric_label="episode return (IQM, 95% CI)",
            reference=config.reference,
        )
    )
    curves = learning_curves(config)
    if not curves.empty:
        figures.append(
            plots.plot_learning_curves(
                curves,
                out / "learning_curves.png",
                ylabel="evaluation return (mean over evaluation scenarios)",
            )
        )
    timeseries_seed = config.timeseries_seed
    if timeseries_seed is not None:
        for scenario in config.scenario_names:
            figures.append(
                plots.plot_weight_timeseries(
                    results.steps,
                    scenario,
                    timeseries_seed,
                    out / f"weights_{scenario}.png",
                )
            )
    return [Path(f) for f in figures]


def learning_curves(config: CompareConfig) -> pd.DataFrame:
    """The training runs' evaluation curves of the config's learned (``sb3``) policies: each
    run's ``eval.csv`` (timesteps, scenario, episode_return), averaged over its evaluation
    scenarios; columns policy, seed, timesteps, eval_return. Empty without learned policies
    or curves."""
    frames = []
    for policy in config.policies:
        if policy.kind != "sb3":
            continue
        for index, seed in enumerate(config.seeds):
            run = Path(for_seed(policy.params, seed, index)["path"])
            run = run.parent if run.suffix == ".zip" else run
            if not (run / "eval.csv").is_file():
                continue
            evaluations = pd.read_csv(run / "eval.csv")
            mean = evaluations.groupby("timesteps", as_index=False)[["episode_return"]].mean()
            frames.append(
                mean.rename(columns={"episode_return": "eval_return"}).assign(
                    policy=policy.name, seed=seed
                )
            )
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)[["policy", "seed", "timesteps", "eval_return"]]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g")
    data = buffer.getvalue().encode()
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            # No name or time in the header: the same results give the same bytes.
            with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as handle:
                handle.write(data)
        else:
            tmp.write_bytes(data)


def shown_path(source: str) -> str:
    """``source`` relative to the working folder when it lies inside it (a summary names the
    config as its command does, not by where the checkout happened to be)."""
    try:
        return str(Path(source).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return source
