"""`tierenv demo`, the main job: train a policy, compare it with the baselines and oracle."""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "End to end in about 10 minutes on 2 cores: train PPO (experiments/train/demo.yaml,"
        " 5 seeds) choosing weights and the DAMOS quota on the two-node scenario distribution, "
        "then compare it, with and without "
        "the floor guard, with the deployable static weights, the best static weights in "
        "hindsight, the kernel's auto weights and the DP oracle on a held-out slice of the "
        "test suite (experiments/demo.yaml); prints the tables and the targets, and writes "
        "tables and plots to --out."
    )
    parser.add_argument("--out", type=Path, default=Path("results/demo"), help="results folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"), help="training runs folder")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from experiments.demo import run_demo

    # Training takes minutes: a bad folder must fail before it, not after.
    check_writable("--out", args.out, folder=True)
    check_writable("--runs", args.runs, folder=True)
    run_demo(out=args.out, runs=args.runs, workers=args.workers, progress=not args.quiet)
    return 0
