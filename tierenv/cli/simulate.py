"""`tierenv simulate`: run a scenario with static weights, print a table and plot it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a scenario (a shipped name or a TOML file) on the simulated host with static "
        "interleave weights (which also drive the DAMOS migrate_hot dests), print the time "
        "series as a table and write a plot of per-node bandwidth and latency, "
        "per-application throughput and placement."
    )
    parser.add_argument("scenario", help="shipped scenario name or path to a scenario TOML file")
    parser.add_argument(
        "--weights", default="1:1", help="weights per node, node 0 first, e.g. 3:1 (1..255)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--every", type=int, default=10, help="table row every N intervals")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG to write (default results/simulate/SCENARIO-WEIGHTS.png)",
    )


def run(args: argparse.Namespace) -> int:
    from tierenv.sim.run import plot, simulate, table
    from tierenv.workload.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    try:
        weights = [int(w) for w in args.weights.split(":")]
    except ValueError:
        raise ValueError(f"--weights: expected integers like 3:1, got {args.weights!r}") from None
    if len(weights) != len(scenario.nodes):
        raise ValueError(
            f"--weights: {scenario.name} has {len(scenario.nodes)} nodes, got {len(weights)} "
            f"weights ({args.weights})"
        )

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            print(
                f"\rsimulating {scenario.name}: {done}/{total} intervals",
                end="",
                file=sys.stderr,
                flush=True,
            )
            if done == total:
                print(file=sys.stderr)

    label = "-".join(str(w) for w in weights)
    path = args.plot or Path("results") / "simulate" / f"{scenario.name}-{label}.png"
    check_writable("--plot", path, folder=False)  # before the simulation, not after
    trace = simulate(scenario, weights, seed=args.seed, progress=progress)
    print(table(trace, every=max(args.every, 1)))
    print(f"mean weighted speedup {trace.mean_weighted_speedup():.3f}")
    plot(trace, path)
    print(f"plot written to {path}")
    return 0
