"""The kdamond's fast paths against its reference paths, which must agree exactly.

- A DAMOS pass of a lone scheme without quota or filters runs compiled
  (``kernels.simple_pass``), alone or inside the compiled aggregation loop; the general
  region-by-region pass (``Kdamond._apply_to_region``, following the kernel) is its reference.
- Whole aggregation intervals run in one compiled call (``kernels.run_aggregations``); the
  step-by-step Python path and the pure-Python monitor in ``tierenv.damon.reference`` are its
  references.
"""

from __future__ import annotations

import numpy as np
import pytest

from tierenv.damon import kernels, reference
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
from tierenv.damon.reference import Region
from tierenv.damon.regions import RegionTable
from tierenv.damon.rng import PyRandom, new_state
from tierenv.memory.state import MemoryState

MiB = 1 << 20
PAGE = 2 * MiB
BASE = 0x7F00_0000_0000
HOT = AccessPattern(nr_accesses=Range(1, 2**32 - 1))
N_PAGES = 384

# pass modes: (simple_pass_enabled, inline_pass_enabled)
REGION_BY_REGION = (False, False)
COMPILED_ALONE = (True, False)
COMPILED_INLINE = (True, True)


def build(scheme: Scheme, operations: str = "vaddr", n_apps: int = 1, seed: int = 5) -> Kdamond:
    memory = MemoryState([200 * PAGE, 4 * GiB])
    apps = []
    for a in range(n_apps):
        app = memory.add_app([(BASE + a * 64 * GiB, N_PAGES * PAGE)])
        memory.allocate_on(app, np.arange(N_PAGES), 1)
        apps.append(app)
    if operations == "paddr":
        targets = (Target(pid=apps[0], regions=(memory.node_phys_range(1),)),)
    else:
        targets = tuple(Target(pid=app) for app in apps)
    config = ContextConfig(
        operations=operations,
        attrs=MonitoringAttrs(update_us=1_000_000),
        targets=targets,
        schemes=(scheme,),
    )
    return Kdamond(config, memory, seed=seed)


def run(kd: Kdamond, mode: tuple[bool, bool], steps: int = 8) -> dict[str, object]:
    """Run with changing access rates; everything a pass touches, per step."""
    kd.simple_pass_enabled, kd.inline_pass_enabled = mode
    apps = [target.pid for target in kd.config.targets]
    rng = np.random.default_rng(11)
    seen: dict[str, object] = {}
    for step in range(steps):
        for app in apps:
            hot = (np.arange(N_PAGES) // (23 + 7 * step + app)) % 3 == 0
            kd.set_access_rates(app, np.where(hot, 1e3, 0.2) * rng.uniform(0.5, 2.0, N_PAGES))
        kd.run(650_000 + 17_000 * step)
        for app in apps:  # demote a third of node 0's pages, so that passes keep moving some
            on_node0 = np.flatnonzero(kd.memory.node_of_page(app) == 0)
            kd.memory.migrate_pages(app, on_node0[on_node0 % 3 == step % 3], 1)
        runtime = kd.schemes[0]
        quota = runtime.quota
        seen[f"{step}"] = (
            kd.region_records(),
            kd.memory.state_arrays()["page_node"].tolist(),
            kd.take_migrated_pages().tolist(),
            (kd.memory.pgmigrate_success, kd.memory.pgmigrate_fail, kd.passed),
            runtime.next_apply_sis,
            vars(runtime.stats).copy(),
            runtime.tried_regions,
            (quota.charged_sz, quota.total_charged_ns, quota.esz),
        )
    return seen


def count_passes(monkeypatch) -> dict[str, int]:
    """Count compiled passes run alone and inside the compiled aggregation loop (spying on
    the kdamond's methods: the kernels module's functions are globals of compiled code)."""
    counts = {"alone": 0, "booked": 0}
    alone, book = Kdamond._apply_compiled_pass, Kdamond._book_compiled_pass

    def apply_compiled_pass(self, *args):
        counts["alone"] += 1
        return alone(self, *args)

    def book_compiled_pass(self, *args):
        counts["booked"] += 1
        return book(self, *args)

    monkeypatch.setattr(Kdamond, "_apply_compiled_pass", apply_compiled_pass)
    monkeypatch.setattr(Kdamond, "_book_compiled_pass", book_compiled_pass)
    return counts


SCHEMES = {
    "hot-dests": Scheme(
        action="migrate_hot", access_pattern=HOT, target_nid=0, dests=(Dest(0, 2), Dest(1, 1))
    ),
    "cold": Scheme(action="migrate_cold", access_pattern=AccessPattern(), target_nid=0),
    "stat": Scheme(action="stat", access_pattern=HOT),
    "hot-every-2-aggregations": Scheme(
        action="migrate_hot", access_pattern=HOT, target_nid=0, apply_interval_us=200_000
    ),
    "hot-off-aggregation": Scheme(
        action="migrate_hot", access_pattern=HOT, target_nid=0, apply_interval_us=150_000
    ),
}


@pytest.mark.parametrize("name", list(SCHEMES))
@pytest.mark.parametrize(("operations", "n_apps"), [("vaddr", 1), ("vaddr", 2), ("paddr", 1)])
def test_compiled_passes_equal_the_region_by_region_pass(monkeypatch, name, operations, n_apps):
    scheme = SCHEMES[name]
    reference_run = run(build(scheme, operations, n_apps), REGION_BY_REGION)
    counts = count_passes(monkeypatch)
    assert run(build(scheme, operations, n_apps), COMPILED_ALONE) == reference_run
    assert counts["alone"] > 0 and counts["booked"] == counts["alone"]
    counts["alone"] = counts["booked"] = 0
    assert run(build(scheme, operations, n_apps), COMPILED_INLINE) == reference_run
    inline = counts["booked"] - counts["alone"]
    if operations == "vaddr" and name != "hot-off-aggregation":
        assert inline > 0  # applied at aggregation ends inside the compiled loop
    else:  # paddr's sampling index changes as pages move; off-aggregation applications
        assert inline == 0 and counts["alone"] > 0


@pytest.mark.parametrize(
    "scheme",
    [
        SCHEMES["hot-dests"],
        SCHEMES["hot-every-2-aggregations"],
        Scheme(
            action="migrate_hot",
            access_pattern=HOT,
            target_nid=0,
            quotas=Quotas(bytes=12 * PAGE, reset_interval_ms=100, nr_accesses_permil=1000),
        ),
    ],
)
def test_compiled_aggregations_equal_the_step_by_step_path(monkeypatch, scheme):
    fast = run(build(scheme, n_apps=2), COMPILED_INLINE)
    monkeypatch.setattr(Kdamond, "_fast_aggregations", lambda self, budget: False)
    assert run(build(scheme, n_apps=2), COMPILED_INLINE) == fast


def test_the_placeholder_pass_has_the_types_of_a_real_one():
    """``run_aggregations`` is compiled once whether it applies a scheme or not."""
    numba = pytest.importorskip("numba")
    kd = build(SCHEMES["hot-dests"])
    scheme, results = kd._no_pass()
    assert not scheme.enabled
    assert numba.typeof(scheme) == numba.typeof(kd._pass_params(kd.schemes[0]))
    real = kernels.PassResults.zeros(kd.regions.capacity, kd.memory.n_nodes)
    assert numba.typeof(results) == numba.typeof(real)


def test_three_regions_are_computed_once_per_mapping_layout():
    kd = build(SCHEMES["stat"], n_apps=2)
    memory = kd.memory
    first, second = (target.pid for target in kd.config.targets)
    gappy = memory.add_app([(BASE, 4 * PAGE), (BASE + 64 * PAGE, 8 * PAGE), (BASE + GiB, PAGE)])
    for app in (first, second, gappy):
        assert kd._three_regions(app) == kd._three_regions(app) == list(kd._three_regions_of(app))
    assert kd._three_regions(gappy) == [
        (BASE, BASE + 4 * PAGE),
        (BASE + 64 * PAGE, BASE + 72 * PAGE),
        (BASE + GiB, BASE + GiB + PAGE),
    ]
    memory.remove_app(gappy)
    with pytest.raises(ValueError, match="unknown app"):
        kd._three_regions(gappy)  # as without the cache: the application is gone


# ------------------------------------------------------- the compiled loop vs reference.py
def reference_aggregations(
    regions: list[Region],
    pages: list[list[tuple[int, float]]],
    count: int,
    first_samples: int,
    params: kernels.MonitorParams,
    last_nr_regions: int,
    rng: PyRandom,
    pattern: tuple[int, ...] | None,
    next_apply: int,
    apply_samples: int,
):
    """kdamond_fn's aggregations on the pure-Python monitor, with a stat scheme's pass."""
    snapshot, tried, passed = [], [], 0
    nr_tried = sz_tried = 0
    for j in range(count):
        samples = first_samples if j == 0 else params.aggr_samples
        largest = reference.sample(
            regions, pages, params.min_region, samples, params.len_window, rng
        )
        passed += samples
        regions = reference.merge_regions(
            regions, largest // 10, params.sz_limit, params.max_nr_regions, params.aggr_samples
        )
        if pattern is not None and passed >= next_apply:
            tried = [
                (r.target, r.start, r.end, r.nr_accesses_bp // 10000, r.age, 0)
                for r in regions
                if pattern[0] <= r.size <= pattern[1]
                and pattern[2] <= r.nr_accesses_bp // 10000 <= pattern[3]
                and pattern[4] <= r.age <= pattern[5]
            ]
            next_apply = passed + apply_samples
            nr_tried += len(tried)
            sz_tried += sum(end - start for _, start, end, *_ in tried)
        snapshot = [(r.target, r.start, r.end, r.nr_accesses, r.age) for r in regions]
        reference.reset_aggregated(regions)
        n = len(regions)
        if n > params.max_nr_regions // 2:
            continue
        three = last_nr_regions == n and n < params.max_nr_regions // 3
        regions = reference.split_regions(regions, 3 if three else 2, params.min_region, rng)
        last_nr_regions = n
    totals = kernels.PassTotals(nr_tried, sz_tried, 0, 0, 0, 0, 0)  # stat: no walk, no move
    return regions, snapshot, last_nr_regions, tried, next_apply - passed, totals


def rows(columns: tuple[np.ndarray, ...], n: int) -> list[tuple[int, ...]]:
    return list(zip(*(column[:n].tolist() for column in columns), strict=True))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_pass", [False, True])
def test_run_aggregations_matches_the_reference_monitor(seed, with_pass):
    page = 4096
    draw = np.random.default_rng(seed)
    regions, pages = [], []
    for target in range(2):
        address = int(draw.integers(0, 100)) * page
        mine = []
        for _ in range(int(draw.integers(2, 12))):
            size = int(draw.integers(1, 60)) * page
            mine.append(Region(address, address + size, target))
            address += size + (int(draw.integers(1, 4)) * page if draw.random() < 0.2 else 0)
        regions += mine
        addresses = [a for a in range(mine[0].start, mine[-1].end, page) if draw.random() < 0.8]
        pages.append([(a, float(draw.uniform(0, 0.6)) ** 2) for a in addresses])
    params = kernels.MonitorParams(
        min_region=page,
        aggr_samples=int(draw.integers(5, 30)),
        len_window=20,
        sz_limit=int(draw.integers(20, 200)) * page,
        max_nr_regions=int(draw.integers(8, 60)),
    )
    count, first_samples, last_nr_regions = 7, int(draw.integers(1, 30)), len(regions)
    pattern = (0, 2**40, 1, 2**40, 2, 2**40)
    next_apply, apply_samples = 2 * params.aggr_samples + first_samples, 3 * params.aggr_samples

    table = RegionTable(8)
    table.replace([r.start for r in regions], [r.end for r in regions], [r.target for r in regions])
    table.reserve(3 * params.max_nr_regions + 3 * table.n)
    capacity = table.capacity
    snapshot = kernels.Snapshot(*(np.zeros(capacity, dtype=np.int64) for _ in range(5)))
    state = new_state(seed)
    rng = PyRandom(state)
    memory = MemoryState([64 * MiB], page_size=page)
    mem, shift = memory.compiled_tables()
    nothing = np.zeros(1, dtype=np.int64)
    scheme = kernels.PassParams(
        with_pass,
        next_apply,
        apply_samples,
        np.array(pattern, dtype=np.int64),
        False,  # stat: looks, moves nothing
        False,
        nothing,
        nothing,
        nothing,
        mem,
        shift,
        0,
    )
    out = kernels.PassResults.zeros(capacity, 1)
    index = kernels.sampling_index(
        [[a for a, _ in t] for t in pages], [[p for _, p in t] for t in pages], page
    )
    buffers = kernels.MonitorBuffers(
        kernels.Regions(*table.arrays()), kernels.Regions(*table.spare_arrays()), snapshot, state
    )
    done = kernels.run_aggregations(
        count, first_samples, table.n, last_nr_regions, params, buffers, index, scheme, out
    )
    if done.swapped:
        table.swap_spare(done.n)
    else:
        table.n = done.n

    expected, expected_snapshot, expected_last, expected_tried, expected_next, expected_totals = (
        reference_aggregations(
            regions,
            pages,
            count,
            first_samples,
            params,
            last_nr_regions,
            rng,
            pattern if with_pass else None,
            next_apply,
            apply_samples,
        )
    )
    assert [tuple(r.values()) for r in table.records()] == [
        (r.start, r.end, r.target, r.nr_accesses, r.nr_accesses_bp, r.last_nr_accesses, r.age)
        for r in expected
    ]
    assert rows(snapshot, done.snapshot_n) == expected_snapshot
    assert done.last_nr_regions == expected_last
    assert rng.state == int(state[0])  # the same numbers were drawn
    if with_pass:
        assert done.next_apply == expected_next
        assert rows(out.tried, done.tried_n) == expected_tried
        # totals add up over every pass of the call
        assert kernels.PassTotals(*out.totals.tolist()) == expected_totals
    else:
        assert done.tried_n == -1
