"""Plot every shipped scenario under the static weights that show its dynamics.

    python -m experiments.plot_scenarios [--out results/simulate]

Writes one PNG per (scenario, weights) pair, as ``tierenv simulate`` would, and an index
README.md in ``--out`` with each run's mean weighted speedup and the machine it ran on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.files import write_text_atomically
from tierenv.provenance import stamp
from tierenv.sim.run import plot, simulate
from tierenv.workload.scenario import load_scenario

RUNS = (
    ("co-runner", (255, 1), "all-local: the second instance saturates DDR"),
    ("co-runner", (6, 1), "a spill: good with two instances, a loss with one"),
    ("steady-single", (255, 1), "all-local: DDR alone cannot carry the demand"),
    ("steady-single", (5, 1), "near the best static weights"),
    ("latency-vs-batch", (255, 1), "all-local: the service stays fast"),
    ("latency-vs-batch", (4, 1), "a spill: the service slows down"),
    ("hot-set-shift", (4, 1), "the hot set moves at 60 s and 120 s"),
    ("capacity-pressure", (255, 1), "DDR fills up; part of the hot set stays on CXL"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/simulate"))
    args = parser.parse_args(argv)
    lines = [
        "| scenario | weights | what it shows | mean weighted speedup | plot |",
        "|---|---|---|---|---|",
    ]
    for name, weights, note in RUNS:
        trace = simulate(load_scenario(name), list(weights))
        label = "-".join(str(w) for w in weights)
        path = args.out / f"{name}-{label}.png"
        plot(trace, path)
        speedup = trace.mean_weighted_speedup()
        lines.append(
            f"| {name} | {':'.join(map(str, weights))} | {note} | {speedup:.3f} | "
            f"[{path.name}]({path.name}) |"
        )
        print(f"{name} {weights}: mean weighted speedup {speedup:.3f} -> {path}", flush=True)
    write_text_atomically(
        args.out / "README.md",
        "# Shipped scenarios under static weights\n\n"
        + stamp("python -m experiments.plot_scenarios")
        + "\nEach plot: per-node bandwidth and latency, per-application throughput, and the "
        "share of each application's pages (solid) and hot pages (dashed) on node 0 (DDR). "
        "The same as `tierenv simulate SCENARIO --weights W`.\n\n" + "\n".join(lines) + "\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
