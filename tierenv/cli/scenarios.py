"""`tierenv scenarios`: list the shipped scenarios, show one, or draw new ones (generate)."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tierenv.workload.scenario import Scenario

MAX_GENERATED = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "With no argument, list the shipped scenarios; with a name or file, show it. "
        "`tierenv scenarios generate DIST --seed N --count K --out DIR` draws K scenarios "
        "from a scenario distribution (a shipped name or a TOML file) and writes them as "
        "scenario files; `tierenv scenarios generate` lists the shipped distributions."
    )
    parser.add_argument(
        "name", nargs="?", help="a shipped scenario name or a scenario file, or `generate`"
    )
    # `generate` has options of its own, parsed by its own parser (generate_parser).
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from tierenv.workload.scenario import load_scenario, shipped_scenario_names

    if args.name == "generate":
        return run_generate(args.rest)
    if args.rest:
        raise ValueError(f"unexpected arguments after the scenario: {' '.join(args.rest)}")
    if args.name is None:
        for name in shipped_scenario_names():
            scenario = load_scenario(name)
            summary = " ".join(scenario.description.split())
            print(f"{name:<20} {scenario.duration_s:>5.0f} s  {summary}")
        return 0
    _show(load_scenario(args.name))
    return 0


def _show(scenario: Scenario) -> None:
    from tierenv.workload.units import format_size

    print(f"{scenario.name}: {' '.join(scenario.description.split())}")
    print(
        f"duration {scenario.duration_s:g} s, control interval {scenario.control_interval_s:g} s, "
        f"pages of {format_size(scenario.page_size)}"
    )
    for i, node in enumerate(scenario.nodes):
        print(
            f"  node{i}: {node.profile.name} ({node.profile.kind}), "
            f"{format_size(node.capacity_bytes)}"
        )
    _show_apps(scenario)
    for traffic in scenario.traffic:
        until = f"{traffic.stop_s:g}" if traffic.stop_s is not None else "end"
        print(
            f"  background traffic on node{traffic.node}: {traffic.gbps:g} GB/s, "
            f"reads {traffic.read_fraction:.0%}, {traffic.start_s:g} s to {until}"
        )
    _show_events(scenario)
    _show_damos_and_variation(scenario)


def _show_apps(scenario: Scenario) -> None:
    from tierenv.workload.units import format_size

    for app_run in scenario.apps:
        app = app_run.app
        until = f"{app_run.stop_s:g}" if app_run.stop_s is not None else "end"
        notes = ""
        if app_run.bind_node is not None:
            notes += f", bound to node{app_run.bind_node} (unmanaged)"
        if not app_run.in_reward:
            notes += ", not in the reward"
        print(
            f"  {app.name}: {format_size(app.working_set_bytes)} "
            f"{app.distribution.kind}, mlp {app.mlp:g}, think {app.think_ns:g} ns, "
            f"reads {app.read_fraction:.0%}, runs {app_run.start_s:g} s to {until}{notes}"
        )


def _show_events(scenario: Scenario) -> None:
    for event in scenario.events:
        changes = []
        if event.intensity is not None:
            changes.append(f"intensity {event.intensity:g}")
        if event.hot_offset is not None:
            changes.append(f"hot set moves to {event.hot_offset:g}")
        if event.think_ns is not None:
            changes.append(f"think {event.think_ns:g} ns")
        if event.read_fraction is not None:
            changes.append(f"reads {event.read_fraction:.0%}")
        print(f"  at {event.at_s:g} s: {event.app}: {', '.join(changes)}")


def _show_damos_and_variation(scenario: Scenario) -> None:
    from tierenv.workload.units import format_size

    damos = scenario.damos
    if not damos.enabled:
        print("  DAMOS migrate_hot: off")
    else:
        quota = (
            "unlimited"
            if damos.quota_bytes_per_s == 0
            else f"{format_size(damos.quota_bytes_per_s)}/s"
        )
        print(
            f"  DAMOS migrate_hot: quota {quota}, "
            f"hot above {damos.min_access_percent:g} % of samples"
        )
    variation = scenario.variation
    if not variation.active:
        print("  runs vary: no (every seed runs the scenario as written)")
    else:
        print(
            f"  runs vary per seed: moments by up to {variation.arrival_jitter_s:g} s, "
            f"phase intensity spread {variation.intensity_spread:g}, "
            f"zipf layout {'per run' if variation.layout else 'fixed'}"
        )


def generate_parser() -> argparse.ArgumentParser:
    """The parser of `tierenv scenarios generate` (the arguments after `generate`)."""
    p = argparse.ArgumentParser(
        prog="tierenv scenarios generate",
        description=(
            "Draw scenarios from a scenario distribution and write each as a scenario file "
            "DIR/NAME.toml (NAME = DIST-sSEED-INDEX). Scenario INDEX of a seed is the same "
            "whatever --count is. All files land together: they are written to a temporary "
            "folder that is renamed to DIR."
        ),
    )
    p.add_argument(
        "distribution",
        nargs="?",
        metavar="DIST",
        help="a shipped distribution name or a distribution file (none: list the shipped)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--count", type=int, default=10, help="scenarios to draw (default 10)")
    p.add_argument("--first", type=int, default=0, help="index of the first (default 0)")
    p.add_argument("--out", type=Path, help="folder to create (new, or empty)")
    return p


def run_generate(argv: list[str]) -> int:
    """`tierenv scenarios generate ARGV...`: list the distributions, or draw from one."""
    from tierenv.workload.generator import generate, load_distribution, shipped_distribution_names

    args = generate_parser().parse_args(argv)
    if args.distribution is None:
        for name in shipped_distribution_names():
            d = load_distribution(name)
            print(f"{name:<12} {d.n_nodes} nodes  {' '.join(d.description.split())}")
        return 0
    if args.out is None:
        raise ValueError("generate: --out DIR is required (the folder to write)")
    if not 1 <= args.count <= MAX_GENERATED:
        raise ValueError(f"generate: --count must be in 1..{MAX_GENERATED}, got {args.count}")
    if args.first < 0 or args.seed < 0:
        raise ValueError("generate: --seed and --first must be >= 0")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"generate: {out} exists and is not an empty folder")
    distribution = load_distribution(args.distribution)
    drawn = generate(distribution, args.seed, args.count, args.first)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        staging.mkdir()
        for name, text in drawn:
            (staging / f"{name}.toml").write_text(text)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(drawn)} scenarios from '{distribution.name}' (seed {args.seed}) to {out}")
    return 0
