"""Benchmark the throughput solver: solver calls per second for 8 applications x 4 nodes.

    python -m experiments.bench_solver [--seconds 3] [--out results/bench_solver.md]

Random problems on four shipped nodes (two DDR5, two CXL), eight streams with random MLP,
compute time, read share and page split. Measured for the numpy reference and the compiled
(numba) iteration: single problems solved from idle latencies (cold), single problems
warm-started from the previous interval's latencies (what a simulator stepping in time does),
and batches solved in one call (what batched environments do). Prints the table and writes
it, with the machine it ran on, to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from tierenv.files import write_text_atomically
from tierenv.hardware import solver_jit
from tierenv.hardware.profile import load_profile
from tierenv.hardware.solver import NodeSet, solve
from tierenv.provenance import stamp

NODES = ["spr-8460y-ddr5-socket", "bytedance-ddr5-snc", "generic-cxl-x8", "bytedance-cxl-asic"]
N_STREAMS = 8


# mlp, think_ns, read_fraction and split of a batch of problems
Problems = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def random_problems(rng: np.random.Generator, batch: int) -> Problems:
    mlp = rng.uniform(1.0, 600.0, (batch, N_STREAMS))
    think = rng.uniform(0.0, 400.0, (batch, N_STREAMS))
    reads = rng.uniform(0.6, 1.0, (batch, N_STREAMS))
    split = rng.dirichlet(np.ones(len(NODES)), (batch, N_STREAMS))
    return mlp, think, reads, split


def timed(run, seconds: float) -> tuple[int, float]:
    """Call ``run`` until ``seconds`` pass; returns (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        run()
        calls += 1
    return calls, elapsed


def measure(nodes: NodeSet, engine: str, seconds: float, rng: np.random.Generator) -> list:
    """(engine, case, problems per call, solved problems per second) rows for one engine."""
    rows = []
    pool = random_problems(rng, 64)
    counter = itertools.count()

    def cold() -> None:
        i = next(counter) % 64
        solve(nodes, pool[0][i], pool[1][i], pool[2][i], pool[3][i], engine=engine)

    calls, elapsed = timed(cold, seconds)
    rows.append((engine, "single problem, from idle latencies", 1, calls / elapsed))

    # A simulator's next interval differs a little from the last one: warm start.
    mlp, think, reads, split = (part[0] for part in pool)
    previous = solve(nodes, mlp, think, reads, split, engine=engine).node_latency_ns

    def warm() -> None:
        nonlocal previous
        jitter = rng.uniform(0.97, 1.03, N_STREAMS)
        result = solve(
            nodes, mlp * jitter, think, reads, split, initial_latency_ns=previous, engine=engine
        )
        previous = result.node_latency_ns

    calls, elapsed = timed(warm, seconds)
    rows.append((engine, "single problem, warm start (±3 % demand change)", 1, calls / elapsed))

    for batch in (64, 1024):
        problems = random_problems(rng, batch)

        def solve_batch(problems: Problems = problems) -> None:
            solve(nodes, *problems, engine=engine)

        calls, elapsed = timed(solve_batch, seconds)
        rows.append(
            (engine, f"batch of {batch} problems in one call", batch, calls * batch / elapsed)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case")
    parser.add_argument("--out", type=Path, default=Path("results/bench_solver.md"))
    args = parser.parse_args(argv)

    nodes = NodeSet([load_profile(name) for name in NODES])
    rng = np.random.default_rng(0)
    engines = ["numpy", "numba"] if solver_jit.AVAILABLE else ["numpy"]
    mlp, think, reads, split = (part[0] for part in random_problems(rng, 1))
    solve(nodes, mlp, think, reads, split, engine=engines[-1])  # compile before timing
    rows = [row for engine in engines for row in measure(nodes, engine, args.seconds, rng)]

    table = [
        f"| engine | case | problems per call | solved problems per second ({N_STREAMS} apps x "
        f"{len(NODES)} nodes) |",
        "|---|---|---|---|",
    ]
    table += [f"| {eng} | {name} | {batch} | {rate:,.0f} |" for eng, name, batch, rate in rows]
    text = "\n".join(table) + "\n"
    print(text)
    write_text_atomically(
        args.out,
        "# Throughput solver benchmark\n\n"
        + stamp("python -m experiments.bench_solver")
        + f"\nNodes: {', '.join(NODES)}. Each case runs for {args.seconds:g} s.\n\n"
        + text,
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
