"""`tierenv compare`: evaluate policies on scenarios over seeds; tables and plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from agents.ray_session import add_ray_arguments
from tierenv.cli.outputs import check_writable

if TYPE_CHECKING:
    from experiments.compare.config import CompareConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run every policy of an experiment config (YAML: scenarios, seeds, policies; see "
        "experiments/baselines.yaml) on every scenario and seed, then write raw episodes "
        "(CSV), tables with interquartile means and 95% bootstrap confidence intervals, "
        "probability of improvement over the reference policy, plots (PNG) and "
        "TensorBoard scalars. Trials run in local processes, or on Ray with --ray."
    )
    parser.add_argument("config", type=Path, help="experiment config (YAML)")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/compare/NAME)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel trials (default: all CPUs)"
    )
    # A count here, a list in `train --seeds`: both forms are in use (`--seeds 3` is seeds
    # 0, 1, 2 here and seed 3 there), so the help says which one each takes.
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="use seeds 0..N-1 instead of the config's (a count, unlike train's --seeds list)",
    )
    add_ray_arguments(parser, "trials", "its nodes need this version of tierenv installed")
    parser.add_argument(
        "--tensorboard",
        type=Path,
        default=None,
        help="TensorBoard log folder (default runs/compare/NAME)",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard trials kept from an interrupted run of this config and start over "
        "(otherwise a rerun resumes: only unfinished trials run)",
    )


def run(args: argparse.Namespace) -> int:
    from experiments.compare.command import compare_to_folder
    from experiments.compare.config import load_config

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    config = load_config(args.config)
    if args.seeds is not None:
        config = _with_seeds(config, args.seeds)
    out = args.out or Path("results") / "compare" / config.name
    tensorboard = (
        None
        if args.no_tensorboard
        else (args.tensorboard or Path("runs") / "compare" / config.name)
    )
    check_writable("--out", out, folder=True)  # before the trials, not after
    if tensorboard is not None:
        check_writable("--tensorboard", tensorboard, folder=True)
    command = f"tierenv compare {args.config}"  # what reproduces the numbers
    if args.seeds is not None:
        command += f" --seeds {args.seeds}"
    if args.out is not None:
        command += f" --out {args.out}"
    summary = compare_to_folder(
        config,
        out,
        command=command,
        tensorboard_dir=tensorboard,
        workers=args.workers,
        use_ray=args.ray,
        ray_address=args.ray_address,
        show_progress=not args.quiet,
        fresh=args.fresh,
    )
    print(summary.table)
    print(f"results: {out}/ (summary.md, episodes.csv, steps.csv.gz, *.png)")
    if tensorboard is not None:
        print(f"TensorBoard: tensorboard --logdir {tensorboard.parent}")
    return 0


def _with_seeds(config: CompareConfig, count: int) -> CompareConfig:
    """``config`` on seeds 0..count-1; its time-series seed falls back to 0 if dropped."""
    import dataclasses

    if count < 1:
        raise ValueError(f"--seeds must be at least 1, got {count}")
    seeds = tuple(range(count))
    return dataclasses.replace(
        config,
        seeds=seeds,
        timeseries_seed=(
            config.timeseries_seed
            if config.timeseries_seed is None or config.timeseries_seed in seeds
            else 0
        ),
    )
