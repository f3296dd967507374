"""`tierenv bench`: measure environment speed and write results/bench_env.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure env steps per second (one env at full DAMON fidelity under a constant and "
        "a random policy), simulated seconds per wall second and where each step's time "
        "goes, for every shipped scenario (or those named); then aggregate env-steps per "
        "second of the batched fluid env at --batch-sizes. Prints the tables and writes "
        "them, stamped with the machine, to --out."
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
        "--out", type=Path, default=Path("results/bench_env.md"), help="Markdown file to write"
    )


def run(args: argparse.Namespace) -> int:
    from experiments.bench_env import run_benchmark
    from tierenv.files import write_text_atomically
    from tierenv.provenance import stamp

    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    batch_sizes = batch_sizes_of(args.batch_sizes)
    check_writable("--out", args.out, folder=False)  # before minutes of timing
    tables = run_benchmark(args.scenarios or None, args.repeats, batch_sizes, args.batched_scenario)
    print(tables)
    command = " ".join(["tierenv bench", *args.scenarios])
    write_text_atomically(
        args.out, "# Environment speed (`tierenv bench`)\n\n" + stamp(command) + "\n" + tables
    )
    print(f"written to {args.out}")
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
