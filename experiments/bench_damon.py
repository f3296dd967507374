"""Benchmark the DAMON/DAMOS simulator: simulated seconds per wall-clock second.

    python -m experiments.bench_damon [--seconds 60] [--out results/bench_damon.md]

One kdamond (vaddr, the kernel's default 5 ms sample / 100 ms aggregation intervals, 10..1000
regions) watches one program whose memory is a heap of chunks of random size, each chunk
with its own access rate drawn log-uniformly over six decades, so that DAMON keeps many
regions. Cases: monitoring only; with a ``migrate_hot`` scheme with weighted dests as damo's
weighted_interleave.sh sets it up (apply every 1 s, 200 MiB/s quota); the same with new access
rates every second (a simulated host does this when throughputs change; each change rebuilds
the sampling index); with the scheme applied every aggregation without a quota; the same
program with 4 KiB pages. Each case runs
``--seconds`` of simulated time (after a 61 s warm-up that is not timed) on one core. Prints the
table and writes it, with the machine it ran on, to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierenv.damon.abi import GiB
from tierenv.damon.config import (
    AccessPattern,
    ContextConfig,
    Dest,
    MonitoringAttrs,
    Quotas,
    Range,
    Scheme,
    Target,
)
from tierenv.damon.kdamond import Kdamond
from tierenv.files import write_text_atomically
from tierenv.memory.state import MemoryState
from tierenv.provenance import stamp

MiB = 1 << 20
BASE = 0x7F00_0000_0000
TARGET_SPEEDUP = 2000

WEIGHTED_INTERLEAVE = Scheme(
    action="migrate_hot",
    access_pattern=AccessPattern(nr_accesses=Range(1, 2**32 - 1)),  # 5% of 20 samples
    dests=(Dest(0, 3), Dest(1, 1)),
    apply_interval_us=1_000_000,
    quotas=Quotas(bytes=200 * MiB, reset_interval_ms=1000),
)
EVERY_AGGREGATION = Scheme(
    action="migrate_hot",
    access_pattern=AccessPattern(nr_accesses=Range(1, 2**32 - 1)),
    dests=(Dest(0, 3), Dest(1, 1)),
)


@dataclass(frozen=True)
class Case:
    name: str
    memory_bytes: int
    page_size: int
    schemes: tuple[Scheme, ...]
    new_rates_every_second: bool = False  # as a simulated host does when throughput changes
    default: bool = False  # the target configuration: default DAMON attributes


CASES = (
    Case("monitoring only, 32 GiB, 2 MiB pages", 32 * GiB, 2 * MiB, (), default=True),
    Case(
        "migrate_hot dests 3:1, apply 1 s, 200 MiB/s quota",
        32 * GiB,
        2 * MiB,
        (WEIGHTED_INTERLEAVE,),
        default=True,
    ),
    Case(
        "the same, access rates renewed every second",
        32 * GiB,
        2 * MiB,
        (WEIGHTED_INTERLEAVE,),
        new_rates_every_second=True,
    ),
    Case(
        "migrate_hot dests 3:1, every aggregation, no quota",
        32 * GiB,
        2 * MiB,
        (EVERY_AGGREGATION,),
    ),
    Case("monitoring only, 1 GiB, 4 KiB pages", 1 * GiB, 4096, ()),
    Case(
        "migrate_hot dests 3:1, apply 1 s, 1 GiB, 4 KiB pages",
        1 * GiB,
        4096,
        (WEIGHTED_INTERLEAVE,),
    ),
)


NOTES = """\
Where the time goes. Monitoring (per region and aggregation: one exact binomial draw, the
merge, the split) runs in one compiled call between DAMOS passes. A DAMOS pass walks every page
of the regions it applies to, as the kernel's page-table walk does: a scheme applied every
aggregation without a quota walks most of the program's memory ten times a second, and a 200
MiB/s quota over 4 KiB pages walks 51,200 pages a second (and quota-limited passes still step
through their regions in Python). New access rates rebuild the sampling index (one exp per
page).
"""


def heap_rates(n_pages: int, rng: np.random.Generator) -> np.ndarray:
    """Per-page touch rates: chunks of 1..64 pages, each at one rate in 1e-2..1e4 per second."""
    rates = np.empty(n_pages)
    page = 0
    while page < n_pages:
        size = int(rng.integers(1, 65))
        rates[page : page + size] = 10.0 ** rng.uniform(-2, 4)
        page += size
    return rates


def run_case(case: Case, seconds: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    memory = MemoryState([2 * case.memory_bytes, 2 * case.memory_bytes], page_size=case.page_size)
    app = memory.add_app([(BASE, case.memory_bytes)])
    n_pages = case.memory_bytes // case.page_size
    memory.allocate(app, np.arange(n_pages), np.array([1, 1]))
    config = ContextConfig(
        attrs=MonitoringAttrs(), targets=(Target(pid=app),), schemes=case.schemes
    )
    kdamond = Kdamond(config, memory, seed=seed)
    rates = heap_rates(n_pages, rng)
    kdamond.set_access_rates(app, rates)
    kdamond.run(61_000_000)  # warm-up, past one ops update (loads every compiled path)
    region_counts = []
    scales = rng.uniform(0.95, 1.05, int(seconds))
    start = time.perf_counter()
    step_us = 1_000_000
    for second in range(int(seconds)):
        if case.new_rates_every_second:
            kdamond.set_access_rates(app, rates * scales[second])
        kdamond.run(step_us)
        region_counts.append(kdamond.nr_regions)
    elapsed = time.perf_counter() - start
    return {
        "speedup": seconds / elapsed,
        "wall_ms_per_simulated_s": elapsed / seconds * 1e3,
        "regions": float(np.mean(region_counts)),
        "migrated_gib": memory.pgmigrate_success * case.page_size / GiB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench_damon.md"))
    args = parser.parse_args(argv)

    rows = []
    for case in CASES:
        result = run_case(case, args.seconds, args.seed)
        rows.append((case, result))
        print(
            f"{case.name}: {result['speedup']:,.0f}x real time "
            f"({result['regions']:.0f} regions on average)",
            flush=True,
        )
    table = [
        "| case | regions (mean) | wall ms per simulated s | simulated s per wall s | "
        f"target {TARGET_SPEEDUP:,}x (default configuration) |",
        "|---|---|---|---|---|",
    ]
    for case, result in rows:
        verdict = "met" if result["speedup"] >= TARGET_SPEEDUP else "missed"
        verdict = verdict if case.default else "(not a target)"
        table.append(
            f"| {case.name} | {result['regions']:.0f} | {result['wall_ms_per_simulated_s']:.3f} "
            f"| {result['speedup']:,.0f}x | {verdict} |"
        )
    text = "\n".join(table) + "\n\n" + NOTES
    print(text)
    write_text_atomically(
        args.out,
        "# DAMON/DAMOS simulator benchmark\n\n"
        + stamp("python -m experiments.bench_damon")
        + f"\nOne kdamond, vaddr, 5 ms / 100 ms intervals, 10..1000 regions; one program "
        f"whose heap has chunks of random hotness; {args.seconds:g} simulated seconds per "
        "case after a 61 s warm-up; one core.\n\n" + text,
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
