"""`tierenv fakehost`: a simulated host behind sysfs/procfs trees, for the daemon."""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.host.speed import MAX_SPEED, MIN_SPEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build a simulated kernel's sys and proc trees in DIR (tierenv.host."
        "simulated_kernel) and run SCENARIO on them in real time: every control interval "
        "(divided by --speed) the weights written to DIR/sys place the simulator's pages "
        "and the interval's numa_maps, vmstat, meminfo, DAMON results, perf lines and "
        "throughput files are published. Run tierenv daemon --fake-kernel against it "
        "with the command it prints. Stops at the scenario's end or on SIGTERM/SIGINT. "
        "DIR must not lie inside /sys or /proc."
    )
    parser.add_argument("dir", type=Path, help="directory for the trees (new or empty)")
    parser.add_argument("--scenario", default="co-runner", help="scenario name or file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--speed",
        type=speed,
        default=1.0,
        help=f"simulated seconds per second, {MIN_SPEED:g} to {MAX_SPEED:g} (default 1)",
    )


def run(args: argparse.Namespace) -> int:
    from tierenv.host.simulated_kernel import run_fakehost

    return run_fakehost(args.dir, args.scenario, args.seed, args.speed)


def speed(text: str) -> float:
    """``--speed``: a number in [MIN_SPEED, MAX_SPEED] (NaN and infinity refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 5, got {text!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"simulated seconds per second must be in [{MIN_SPEED:g}, {MAX_SPEED:g}], got {text!r}"
        )
    return value
