"""Statistical checks of the simulated DAMON against what the kernel's algorithm produces.

1. The binomial shortcut: drawing a region's access count per stretch of samples must have
   the same distribution as the kernel's way (a fresh random page per sample, each accessed
   with its own probability). Compared by a chi-square test against an explicit per-sample
   simulation of heterogeneous pages.
2. Hot-set detection: on a synthetic program with a known hot set, the monitor's regions
   must find it (size-weighted precision and recall), keep their count within the kernel's
   bounds, and show the bimodal nr_accesses distribution that real DAMON records show. The
   real record in data/damo (a real kernel, a program with hot and idle memory) is
   read to state that distribution's real-world value next to the simulated one.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
from scipy import stats

from tests.shared_data import DAMO_RECORD, data_path, needs_data
from tierenv.damon import kernels
from tierenv.damon.config import ContextConfig, MonitoringAttrs, Target
from tierenv.damon.kdamond import Kdamond
from tierenv.damon.regions import RegionTable
from tierenv.damon.rng import new_state
from tierenv.memory.state import MemoryState

MiB = 1 << 20
GiB = 1 << 30
PAGE = 4096


def test_binomial_shortcut_matches_per_sample_checks_of_random_pages():
    rng = np.random.default_rng(11)
    n_pages, samples, rounds = 64, 20, 20000
    p_page = rng.beta(0.5, 0.8, n_pages)  # heterogeneous pages: some hot, some cold
    # the kernel's way: every sample picks a uniform random page and checks it
    picks = rng.integers(0, n_pages, size=(rounds, samples))
    explicit = (rng.random((rounds, samples)) < p_page[picks]).sum(axis=1)
    # the simulator's way: one region over the pages, one stretch of 20 samples per round
    table = RegionTable(8)
    index = kernels.sampling_index([np.arange(n_pages) * PAGE], [p_page], PAGE)
    state = new_state(5)
    shortcut = np.empty(rounds, dtype=np.int64)
    for i in range(rounds):
        table.replace([0], [n_pages * PAGE], [0])
        kernels.sample_segment(1, *table.arrays()[:6], *index, PAGE, samples, samples, state)
        shortcut[i] = table.nr_accesses[0]
    counts = np.array(
        [np.bincount(explicit, minlength=samples + 1), np.bincount(shortcut, minlength=samples + 1)]
    )
    counts = counts[:, counts.sum(axis=0) >= 10]  # chi-square needs populated cells
    _, p_value, _, _ = stats.chi2_contingency(counts)
    assert p_value > 0.001, f"distributions differ (p={p_value:.2g})"
    expected = stats.binom(samples, p_page.mean())
    assert abs(shortcut.mean() - expected.mean()) < 0.1


def detection_run(seed: int) -> dict[str, float]:
    """A 1 GiB program (4 KiB pages) with a 64 MiB hot set that is touched all the time,
    and idle memory touched about once a minute per page."""
    memory = MemoryState([4 * GiB, 4 * GiB], page_size=PAGE)
    base = 0x7F00_0000_0000
    n_pages = GiB // PAGE
    app = memory.add_app([(base, GiB)])
    memory.allocate(app, np.arange(n_pages), np.array([1, 1]))
    hot_first = n_pages // 3
    hot = np.zeros(n_pages, dtype=bool)
    hot[hot_first : hot_first + (64 * MiB) // PAGE] = True
    rates = np.where(hot, 2000.0, 1.0 / 60)
    config = ContextConfig(attrs=MonitoringAttrs(), targets=(Target(pid=app),))
    kd = Kdamond(config, memory, seed=seed)
    kd.set_access_rates(app, rates)
    kd.run(3_000_000)  # warm-up: regions adapt from the initial even split
    hot_lo = base + hot_first * PAGE
    hot_hi = hot_lo + 64 * MiB
    precision, recall, counts, extremes = [], [], [], []
    for _ in range(50):
        kd.run(100_000)
        records = kd.region_records()
        counts.append(len(records))
        starts = np.array([r["start"] for r in records])
        ends = np.array([r["end"] for r in records])
        nr = np.array([r["nr_accesses"] for r in records])
        detected = nr >= 10
        overlap = np.clip(np.minimum(ends, hot_hi) - np.maximum(starts, hot_lo), 0, None)
        found = overlap[detected].sum()
        precision.append(found / max((ends - starts)[detected].sum(), 1))
        recall.append(found / (64 * MiB))
        extremes.extend(((nr <= 1) | (nr >= 19)).tolist())
    return {
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "min_regions": min(counts),
        "max_regions": max(counts),
        "extreme_share": float(np.mean(extremes)),
    }


def real_record_summary() -> dict[str, float]:
    """The same statistics from the real kernel's record (default 5 ms / 100 ms intervals,
    10..1000 regions, a 40 MB program)."""
    raw = data_path(DAMO_RECORD).read_bytes()
    snapshots = json.loads(zlib.decompress(raw))[0]["snapshots"]
    nr = np.array([r["nr_accesses"]["samples"] for s in snapshots for r in s["regions"]])
    counts = [len(s["regions"]) for s in snapshots]
    return {
        "min_regions": min(counts),
        "max_regions": max(counts),
        "extreme_share": float(np.mean((nr <= 1) | (nr >= 19))),
    }


@needs_data(DAMO_RECORD)
def test_monitor_finds_a_known_hot_set_like_the_kernel():
    result = detection_run(seed=1)
    # regions of nr_accesses >= half the maximum are the hot set, and they cover it
    assert result["precision"] > 0.9, result
    assert result["recall"] > 0.9, result
    real = real_record_summary()
    # with a two-level pattern, merging (limited by sz_limit = total / min_nr_regions) brings
    # each aggregation back to about min_nr_regions plus the hot set's edges: the real record
    # (min_nr_regions 10 as here) shows 7..21 regions per aggregation
    assert real["min_regions"] >= 5 and real["max_regions"] <= 30, real
    assert result["min_regions"] >= 5 and result["max_regions"] <= 30, result
    # bimodal counts: most regions read (nearly) never or (nearly) always accessed; the real
    # record shows the same shape (about 80% of region snapshots at the extremes)
    assert real["extreme_share"] > 0.7, real
    assert result["extreme_share"] > 0.7, result
