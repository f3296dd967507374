"""A learned policy against the targets of issue 18, measured on a ``tierenv compare`` results
folder (``episodes.csv``, ``config.yaml``), written as ``targets.md`` into that folder::

    python -m experiments.learned_targets results/compare/learned-suite --policy ppo-random \\
        --runs runs/train/ppo-random [--policy ppo-any-quota --runs runs/train/ppo-any-quota]

(one section per ``--policy``; ``--runs``, if given, once per policy in the same order).

The four measurements (each names the baseline it is against):

* **Over the deployable static weights** (``--deployable``): the interquartile mean of the
  return ratio pooled over every scenario and seed, with its stratified bootstrap CI, and the
  probability of improvement averaged over the scenarios (target: IQM >= 1.05, P >= 0.75).
* **Share of the oracle's gap captured** (``--oracle`` over ``--hindsight``): on scenarios
  where the oracle's mean return beats the best static weights in hindsight by 8 % or more,
  (policy - hindsight) / (oracle - hindsight) of the mean returns (target: >= 0.60). When no
  scenario has such a gap the target cannot be measured, and the table says so.
* **The floor** (``--floor``, the kernel's auto weights): the policy's mean return over the
  floor's on every scenario, and the worst single seed (paired: the same run of the load);
  target: no scenario below 0.97.
* **Training time per seed** (``--runs``: the training runs' ``run.json``, target <= 600 s).

Nothing here changes what was measured: the thresholds are the issue's, stated beside the
figures, and a missed target is reported as missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.compare import stats
from experiments.compare.config import load_config
from experiments.compare.report import CONFIDENCE, RESAMPLES, TIE_TOLERANCE
from tierenv.files import write_text_atomically
from tierenv.provenance import stamp

IQM_TARGET = 1.05
IMPROVEMENT_TARGET = 0.75
GAP_THRESHOLD = 1.08  # the oracle over the best static weights in hindsight
CAPTURE_TARGET = 0.60
FLOOR_TARGET = 0.97
TRAIN_SECONDS_TARGET = 600.0


@dataclass(frozen=True)
class Roles:
    """Which policy of the comparison plays which part."""

    policy: str
    deployable: str = "static-deployable"
    hindsight: str = "static-best"
    floor: str = "kernel-auto"
    oracle: str = "oracle-dp"


@dataclass(frozen=True)
class Measured:
    iqm: float
    iqm_ci: tuple[float, float]
    improvement: float
    improvement_ci: tuple[float, float]
    n_scenarios: int
    n_episodes: int
    gaps: pd.DataFrame  # scenario, hindsight_ratio (oracle/hindsight), policy_ratio, captured
    floor: pd.DataFrame  # scenario, mean_ratio, worst_seed_ratio, worst_seed
    train_seconds: list[float]


def measure(episodes: pd.DataFrame, roles: Roles, train_seconds: list[float]) -> Measured:
    """The four measurements of the module docstring."""
    missing = {roles.policy, roles.deployable, roles.hindsight, roles.floor, roles.oracle} - set(
        episodes["policy"]
    )
    if missing:
        raise ValueError(
            f"policies {sorted(missing)} are not in the results; they have "
            f"{sorted(set(episodes['policy']))} (name them with --policy, --deployable, ...)"
        )
    pair = episodes[episodes["policy"].isin([roles.policy, roles.deployable])]
    scores = stats.normalised_scores(pair, roles.deployable, "return")
    pooled = stats.aggregate_summary(
        scores, "score", confidence=CONFIDENCE, resamples=RESAMPLES, seed=0
    ).set_index("policy")
    improvement = stats.improvement_table(
        pair,
        roles.deployable,
        "return",
        confidence=CONFIDENCE,
        resamples=RESAMPLES,
        seed=0,
        tie_tolerance=TIE_TOLERANCE,
    )
    overall = improvement[improvement["scenario"] == stats.ACROSS_SCENARIOS].iloc[0]
    row = pooled.loc[roles.policy]
    assert isinstance(row, pd.Series)  # one row per policy
    return Measured(
        iqm=float(row["iqm"]),
        iqm_ci=(float(row["ci_low"]), float(row["ci_high"])),
        improvement=float(overall["probability"]),
        improvement_ci=(float(overall["ci_low"]), float(overall["ci_high"])),
        n_scenarios=int(row["n_tasks"]),
        n_episodes=int(row["n"]),
        gaps=_gaps(episodes, roles),
        floor=_floor(episodes, roles),
        train_seconds=train_seconds,
    )


def _gaps(episodes: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    means = episodes.groupby(["scenario", "policy"])["return"].mean().unstack()
    hindsight, oracle, policy = means[roles.hindsight], means[roles.oracle], means[roles.policy]
    table = pd.DataFrame(
        {
            "oracle_ratio": oracle / hindsight,
            "policy_ratio": policy / hindsight,
            "captured": (policy - hindsight) / (oracle - hindsight),
        }
    )
    return table[table["oracle_ratio"] >= GAP_THRESHOLD].sort_values("oracle_ratio")


def _floor(episodes: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    returns = episodes.pivot_table(index=["scenario", "seed"], columns="policy", values="return")
    paired = (returns[roles.policy] / returns[roles.floor]).rename("ratio").reset_index()
    means = episodes.groupby(["scenario", "policy"])["return"].mean().unstack()
    mean_ratio = means[roles.policy] / means[roles.floor]
    rows = []
    for scenario, group in paired.groupby("scenario"):
        # pandas-stubs: idxmin gives a Hashable label, which .loc takes at runtime
        worst = group.loc[group["ratio"].idxmin()]  # type: ignore[call-overload]
        rows.append(
            {
                "scenario": scenario,
                "mean_ratio": mean_ratio[scenario],
                "worst_seed_ratio": float(worst["ratio"]),
                "worst_seed": int(worst["seed"]),
            }
        )
    return pd.DataFrame(rows).sort_values("mean_ratio").reset_index(drop=True)


def training_seconds(runs: Path) -> list[float]:
    """``train_wall_s`` of every finished, not resumed seed under ``runs`` (seed_*/run.json)."""
    seconds = []
    for run_json in sorted(runs.glob("seed_*/run.json")):
        info = json.loads(run_json.read_text())
        if "train_wall_s" in info and not info.get("resumed", False):
            seconds.append(float(info["train_wall_s"]))
    return seconds


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def render(measured: Measured, roles: Roles, command: str, results: Path) -> str:
    """targets.md's text."""
    m = measured
    floor_worst = m.floor.iloc[0] if not m.floor.empty else None
    lines = [
        f"# `{roles.policy}` against the issue-18 targets",
        "",
        stamp(command),
        "",
        f"From `{results}` ({m.n_scenarios} scenarios, {m.n_episodes} episodes of "
        f"`{roles.policy}`); method in `experiments/learned_targets.py`.",
        "",
        "| measurement | against | target | measured | |",
        "|---|---|---|---|---|",
        f"| IQM of the return ratio [{CONFIDENCE:.0%} CI] | `{roles.deployable}` | >= "
        f"{IQM_TARGET:.2f} | {m.iqm:.3f} [{m.iqm_ci[0]:.3f}, {m.iqm_ci[1]:.3f}] | "
        f"{_verdict(m.iqm >= IQM_TARGET)} |",
        f"| probability of improvement [CI] | `{roles.deployable}` | >= {IMPROVEMENT_TARGET:.2f} "
        f"| {m.improvement:.3f} [{m.improvement_ci[0]:.3f}, {m.improvement_ci[1]:.3f}] | "
        f"{_verdict(m.improvement >= IMPROVEMENT_TARGET)} |",
    ]
    if m.gaps.empty:
        lines.append(
            f"| share of the oracle's gap captured | `{roles.oracle}` over `{roles.hindsight}` "
            f"| >= {CAPTURE_TARGET:.2f} | no scenario has a gap of "
            f"{GAP_THRESHOLD - 1:.0%} or more | not measurable |"
        )
    else:
        captured = float(m.gaps["captured"].mean())
        lines.append(
            f"| share of the oracle's gap captured (mean of {len(m.gaps)} scenarios) | "
            f"`{roles.oracle}` over `{roles.hindsight}` | >= {CAPTURE_TARGET:.2f} | "
            f"{captured:.2f} | {_verdict(captured >= CAPTURE_TARGET)} |"
        )
    if floor_worst is not None:
        lines.append(
            f"| worst scenario's mean return ratio | `{roles.floor}` | >= {FLOOR_TARGET:.2f} | "
            f"{floor_worst['mean_ratio']:.3f} ({floor_worst['scenario']}) | "
            f"{_verdict(floor_worst['mean_ratio'] >= FLOOR_TARGET)} |"
        )
    if m.train_seconds:
        slowest = max(m.train_seconds)
        lines.append(
            f"| training time per seed (slowest of {len(m.train_seconds)}) | | <= "
            f"{TRAIN_SECONDS_TARGET:.0f} s | {slowest:.0f} s | "
            f"{_verdict(slowest <= TRAIN_SECONDS_TARGET)} |"
        )
    else:
        lines.append("| training time per seed | | <= 600 s | no run.json with train_wall_s | |")
    lines += ["", *_floor_section(m.floor, roles), *_gap_section(m.gaps, roles)]
    return "\n".join(lines) + "\n"


def _floor_section(floor: pd.DataFrame, roles: Roles) -> list[str]:
    below = floor[floor["mean_ratio"] < FLOOR_TARGET]
    rows = [
        f"## Against `{roles.floor}`, worst scenarios first",
        "",
        f"Mean return over `{roles.floor}`'s on the same scenario, and the worst seed's paired "
        f"ratio. {len(below)} of {len(floor)} scenarios are below {FLOOR_TARGET:.2f}.",
        "",
        "| scenario | mean ratio | worst seed (ratio) |",
        "|---|---|---|",
    ]
    shown = floor.head(max(10, len(below)))
    rows += [
        f"| {r.scenario} | {r.mean_ratio:.3f} | {r.worst_seed} ({r.worst_seed_ratio:.3f}) |"
        for r in shown.itertuples()
    ]
    if len(floor) > len(shown):
        rows.append(
            f"| ({len(floor) - len(shown)} more, all >= {shown['mean_ratio'].max():.3f}) | | |"
        )
    return [*rows, ""]


def _gap_section(gaps: pd.DataFrame, roles: Roles) -> list[str]:
    if gaps.empty:
        return []
    rows = [
        f"## Scenarios where `{roles.oracle}` beats `{roles.hindsight}` by "
        f"{GAP_THRESHOLD - 1:.0%} or more",
        "",
        f"| scenario | {roles.oracle} / {roles.hindsight} | {roles.policy} / {roles.hindsight} "
        "| gap captured |",
        "|---|---|---|---|",
    ]
    rows += [
        f"| {s} | {r.oracle_ratio:.3f} | {r.policy_ratio:.3f} | {r.captured:.2f} |"
        if math.isfinite(r.captured)
        else f"| {s} | {r.oracle_ratio:.3f} | {r.policy_ratio:.3f} | - |"
        for s, r in gaps.iterrows()
    ]
    return [*rows, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a tierenv compare results folder")
    parser.add_argument(
        "--policy",
        required=True,
        action="append",
        help="a learned policy's name (repeat for several: one section each)",
    )
    for role, default in (
        ("deployable", Roles.deployable),
        ("hindsight", Roles.hindsight),
        ("floor", Roles.floor),
        ("oracle", Roles.oracle),
    ):
        parser.add_argument(f"--{role}", default=default, help=f"default: {default}")
    parser.add_argument(
        "--runs",
        type=Path,
        action="append",
        help="the policy's training runs (seed_*/run.json); repeat in --policy's order",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and len(args.runs) != len(args.policy):
        parser.error(
            f"--runs was given {len(args.runs)} time(s) for {len(args.policy)} --policy: "
            "give one per policy, in the same order"
        )
    command = "python -m experiments.learned_targets " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    sections = []
    try:
        load_config(args.results / "config.yaml")  # a results folder, not any CSV
        episodes = pd.read_csv(args.results / "episodes.csv")
        for index, policy in enumerate(args.policy):
            roles = Roles(policy, args.deployable, args.hindsight, args.floor, args.oracle)
            runs = args.runs[index] if args.runs is not None else None
            seconds = training_seconds(runs) if runs is not None else []
            sections.append(render(measure(episodes, roles, seconds), roles, command, args.results))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = "\n---\n\n".join(sections)
    write_text_atomically(args.results / "targets.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
