"""`tierenv tune`: search PPO hyperparameters with Optuna."""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Search the hyperparameters of a training config with Optuna (seeded TPE, median "
        "pruning on intermediate evaluations) and write a Markdown report of every trial "
        "and the best hyperparameters (default results/tuning/NAME.md)."
    )
    parser.add_argument("config", type=Path, help="training config (YAML; PPO or RecurrentPPO)")
    parser.add_argument("--trials", type=int, default=8, help="Optuna trials (default 8)")
    parser.add_argument("--timesteps", type=int, default=None, help="steps per trial (default 20k)")
    parser.add_argument("--out", type=Path, default=None, help="report to write")
    parser.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from agents.training import load_config
    from agents.training.tune import tune

    if args.out is not None:
        check_writable("--out", args.out, folder=False)  # before the trials, not after
    command = f"tierenv tune {args.config} --trials {args.trials}"
    if args.timesteps is not None:
        command += f" --timesteps {args.timesteps}"
    result = tune(
        load_config(args.config),
        n_trials=args.trials,
        timesteps=args.timesteps,
        out=args.out,
        seed=args.seed,
        progress=not args.quiet,
        command=command,
    )
    print(result.report)
    return 0
