"""`tierenv bench`: measure environment speed beside CartPole's and write results/bench_env.md,
appending the figures to its history (results/bench_env_history.csv)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure env steps per second (one env at full DAMON fidelity under a constant and "
        "a random policy), simulated seconds per wall second and where each step's time "
        "goes, for every shipped scenario (or those named); then aggregate env-steps per "
        "second of the batched fluid env at --batch-sizes; then PPO training env-steps per "
        "second (SB3 and the lean trainer); each beside Gymnasium's CartPole "
        "timed the same way in the same run. Prints the tables, appends the figures to "
        "--history and writes the tables with the history by commit, stamped with the "
        "machine, to --out."
    )
    parser.add_argument("scenarios", nargs="*", help="scenario names (default: all shipped)")
    parser.add_argument("--repeats", type=int, default=3, help="timed episodes per row (median)")
    parser.add_argument(
        "--batch-sizes",
        default="1,64,1024,4096",
        help="comma-separated numbers of batched fluid envs to time, each at most 65,536 "
        "('' or 0: none)",
    )
    parser.add_argument(
        "--batched-scenario", default="co-runner", help="scenario of the batched rows"
    )
    parser.add_argument(
        "--batched-threads",
        type=int,
        default=2,
        help="also time the largest batch on this many of the env's opt-in threads (1: no)",
    )
    parser.add_argument(
        "--training-steps",
        type=int,
        default=245_760,
        help="env-steps of PPO training timed per trainer (SB3 and the lean trainer) and for "
        "SB3 on CartPole (default: 80 of the demo's updates; 0: no training rows)",
    )
    parser.add_argument(
        "--training-scenario",
        default="random:default",
        help="scenario or distribution the training rows train on",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results/bench_env.md"), help="Markdown file to write"
    )
    parser.add_argument(
        "--history",
        type=Path,
        help="CSV file of every run's figures, appended to (default: NAME_history.csv beside "
        "--out)",
    )


def run(args: argparse.Namespace) -> int:
    from experiments.bench_env import run_benchmark
    from experiments.bench_history import Run, history_csv, history_table, read_history
    from tierenv.cli.outputs import same_place, staged
    from tierenv.envs.weighted_interleave import DEFAULT_SCENARIO
    from tierenv.provenance import git_commit, machine_summary, stamp

    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    batch_sizes = batch_sizes_of(args.batch_sizes)
    history_path = args.history or args.out.with_name(args.out.stem + "_history.csv")
    # before minutes of timing: both places writable, distinct, and the history readable
    check_writable("--out", args.out, folder=False)
    check_writable("--history", history_path, folder=False)
    if same_place(args.out, history_path):
        raise ValueError(f"--history {history_path}: is also --out; name another file")
    runs = read_history(history_path)
    measured = run_benchmark(
        args.scenarios or None,
        args.repeats,
        batch_sizes,
        args.batched_scenario,
        training_steps=args.training_steps,
        training_scenario=args.training_scenario,
        batched_threads=args.batched_threads,
    )
    print(measured.markdown)
    runs.append(
        Run(
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            commit=git_commit(),
            machine=machine_summary(),
            figures=measured.figures,
        )
    )
    command = " ".join(["tierenv bench", *args.scenarios])
    report = (
        "# Environment speed (`tierenv bench`)\n\n"
        + stamp(command)
        + "\n"
        + measured.markdown
        + "\n## History by commit\n\n"
        + f"Headline figures of every run recorded in `{history_path.name}` (all figures are "
        "there), each with its ratio to CartPole measured in the same run where one was: "
        "rates from different machines compare only through the ratio.\n\n"
        + history_table(runs, DEFAULT_SCENARIO, args.batched_scenario)
    )
    with staged([args.out, history_path]) as (out_temp, history_temp):
        out_temp.write_text(report)
        history_temp.write_text(history_csv(runs))
    print(f"written to {args.out} and {history_path}")
    return 0


def batch_sizes_of(text: str) -> list[int]:
    """``--batch-sizes``: positive integers separated by commas; empty or 0 means none."""
    sizes = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        if not part.isdigit():
            raise ValueError(f"--batch-sizes: {part!r} is not a whole number of envs")
        if int(part) > 0:
            sizes.append(int(part))
    return sizes
