"""Benchmark the simulated host: simulated seconds per wall-clock second for each scenario.

    python -m experiments.bench_simulate [--repeats 3] [--out results/bench_simulate.md]

Runs every shipped scenario to its end with static weights 3:1 (DAMON and DAMOS on, one
kdamond per application, the solver every control interval), after one untimed run that
loads the compiled kernels, and reports the median of ``--repeats`` timed runs. Prints the
table and writes it, with the machine it ran on, to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tierenv.files import write_text_atomically
from tierenv.provenance import stamp
from tierenv.sim.run import simulate
from tierenv.workload.scenario import load_scenario, shipped_scenario_names

WEIGHTS = [3, 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/bench_simulate.md"))
    args = parser.parse_args(argv)

    rows = []
    for name in shipped_scenario_names():
        scenario = load_scenario(name)
        simulate(scenario, WEIGHTS)  # load compiled code, warm caches
        elapsed = []
        for repeat in range(max(args.repeats, 1)):
            start = time.perf_counter()
            simulate(scenario, WEIGHTS, seed=repeat)
            elapsed.append(time.perf_counter() - start)
        wall = float(np.median(elapsed))
        pages = sum(run.app.n_pages(scenario.page_size) for run in scenario.apps)
        rows.append((name, scenario.duration_s, len(scenario.apps), pages, wall))
        print(f"{name}: {scenario.duration_s / wall:,.0f}x real time", flush=True)
    table = [
        "| scenario | simulated s | applications | pages | wall s (median) | "
        "simulated s per wall s | wall ms per control interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, duration, apps, pages, wall in rows:
        table.append(
            f"| {name} | {duration:g} | {apps} | {pages:,} | {wall:.2f} | "
            f"{duration / wall:,.0f}x | {1e3 * wall / duration:.2f} |"
        )
    text = "\n".join(table) + "\n"
    print(text)
    write_text_atomically(
        args.out,
        "# Simulated host benchmark (`tierenv simulate`)\n\n"
        + stamp("python -m experiments.bench_simulate")
        + f"\nEvery shipped scenario to its end with static weights {WEIGHTS[0]}:{WEIGHTS[1]}, "
        "1 s control intervals, one kdamond per application (damo's weighted-interleave "
        "migrate_hot scheme), the throughput solver every interval; median of "
        f"{args.repeats} runs after an untimed one; one core.\n\n" + text,
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
