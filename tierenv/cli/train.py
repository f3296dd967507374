"""`tierenv train`: train policies with stable-baselines3 from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.ray_session import add_ray_arguments
from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train one agent per seed (PPO, SAC or RecurrentPPO; experiments/train/*.yaml) "
        "into RUNS/NAME/seed_SEED/: the model, VecNormalize statistics, run.json, "
        "evaluation returns on the held-out scenarios (eval.csv), TensorBoard logs (tb/) "
        "and checkpoints; --resume continues interrupted runs exactly."
    )
    parser.add_argument("config", type=Path, help="training config (YAML)")
    parser.add_argument(
        "--seeds",
        default=None,
        metavar="S1,S2,...",
        help="comma-separated seeds (default: the config's); a list, unlike compare's "
        "--seeds N, so --seeds 3 trains seed 3 only",
    )
    parser.add_argument("--workers", type=int, default=1, help="seeds trained in parallel")
    parser.add_argument(
        "--runs", type=Path, default=Path("runs/train"), help="where run folders go"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoints"
    )
    parser.add_argument(
        "--trainer",
        choices=("sb3", "lean"),
        default=None,
        help="override the config's trainer: sb3, or lean (PPO + MlpPolicy on the fluid "
        "backend only; about 2.7x faster, the same run folder)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_arguments(parser, "training seeds", "its nodes must see --runs (a shared filesystem)")


def run(args: argparse.Namespace) -> int:
    from agents.training import load_config, train

    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(part) for part in args.seeds.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--seeds: {args.seeds!r} is not a comma-separated list") from None
    check_writable("--runs", args.runs, folder=True)
    config = load_config(args.config)
    if args.trainer is not None:
        from agents.training.config import with_trainer

        config = with_trainer(config, args.trainer)
    runs = train(
        config,
        seeds=seeds,
        out_root=args.runs,
        workers=args.workers,
        resume=args.resume,
        progress=not args.quiet,
        use_ray=args.ray,
        ray_address=args.ray_address,
    )
    for run_folder in runs:
        print(f"trained: {run_folder}")
    print(f"TensorBoard: tensorboard --logdir {args.runs}")
    return 0
