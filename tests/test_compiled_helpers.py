"""Small compiled helpers of the env's step against their plain references: the hot score,
the rescaling of regions to new intervals, the rate check, and the memory state's per-range
and per-node page counts (compiled against ``engine="reference"``)."""

from __future__ import annotations

import numpy as np
import pytest

from tierenv.damon import kernels
from tierenv.damon.quota import hot_score, hot_scores
from tierenv.memory.state import MemoryState

MIB = 1 << 20


def test_compiled_hot_score_equals_the_reference_arithmetic():
    draw = np.random.default_rng(0)
    for _ in range(300):
        nr, age = int(draw.integers(0, 40)), int(draw.integers(0, 5000))
        max_nr, aggr_us = int(draw.integers(1, 40)), int(draw.choice([5_000, 100_000, 2_000_000]))
        nr_permil, age_permil = (int(v) for v in draw.integers(0, 1001, 2))
        args = (nr, age, max_nr, aggr_us, nr_permil, age_permil)
        assert kernels.hot_score(*args) == hot_score(*args)
        column = hot_scores(np.array([nr]), np.array([age]), *args[2:])
        assert kernels.hot_score(*args) == int(column[0])


@pytest.mark.parametrize("aggregating", [False, True])
@pytest.mark.parametrize(("old_max", "new_max"), [(20, 20), (20, 7), (3, 11), (13, 13)])
def test_rescale_regions_equals_the_numpy_rescaling(aggregating, old_max, new_max):
    draw = np.random.default_rng(old_max * new_max)
    n = 50
    nr, bp, last, age = (draw.integers(0, 30, n + 5) for _ in range(4))
    expected = [a.copy() for a in (nr, bp, last, age)]
    e_nr, e_bp, e_last, e_age = (a[:n] for a in expected)
    if aggregating:
        e_last[:] = e_last * 10000 // old_max * new_max // 10000
        e_bp[:] = e_last * 10000
        e_nr[:] = 0
    else:
        e_nr[:] = e_nr * 10000 // old_max * new_max // 10000
        e_bp[:] = e_nr * 10000
    e_age[:] = e_age * 300_000 // 100_000
    kernels.rescale_regions(n, nr, bp, last, age, old_max, new_max, 300_000, 100_000, aggregating)
    for got, want in zip((nr, bp, last, age), expected, strict=True):
        assert got.tolist() == want.tolist()


def test_finite_non_negative():
    assert kernels.finite_non_negative(np.array([0.0, 1.5, 3e9]))
    assert kernels.finite_non_negative(np.zeros(0))
    for bad in (-1e-9, np.nan, np.inf):
        assert not kernels.finite_non_negative(np.array([1.0, bad]))


def _filled(engine: str) -> tuple[MemoryState, list[int]]:
    state = MemoryState([40 * MIB, 64 * MIB, 0, 64 * MIB], page_size=MIB, engine=engine)
    first = state.add_app([(0x10_0000_0000, 48 * MIB), (0x20_0000_0000, 16 * MIB)])
    second = state.add_app([(0x30_0000_0000, 32 * MIB)])
    state.allocate(first, np.arange(0, 60, 2), [3, 1, 1, 2])
    state.allocate(second, np.arange(25), [1, 1, 1, 1])
    state.migrate_pages(first, np.arange(0, 20, 2), 3)
    return state, [first, second]


def test_page_counts_equal_the_reference_engine():
    compiled, apps = _filled("auto")
    reference, _ = _filled("reference")
    draw = np.random.default_rng(4)
    for app in apps:
        vaddr = compiled.app_page_vaddr(app)
        edges = np.sort(draw.integers(vaddr[0] - 3 * MIB, vaddr[-1] + 3 * MIB, 12))
        starts, ends = edges[:-1], edges[1:]
        assert (
            compiled.resident_pages_in_ranges(app, starts, ends).tolist()
            == reference.resident_pages_in_ranges(app, starts, ends).tolist()
        )
        shares = draw.random(vaddr.size)
        hot = draw.random(vaddr.size) < 0.3
        per_node, hot_pages = compiled.access_split(app, shares, hot)
        ref_node, ref_hot = reference.access_split(app, shares, hot)
        assert per_node.tobytes() == ref_node.tobytes()  # the same float sums, bit for bit
        assert hot_pages.tolist() == ref_hot.tolist()


def test_damon_pages_equal_the_numpy_reference():
    from tierenv.contracts.features import Report
    from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

    env = WeightedInterleaveEnv("two-socket-cxl")
    env.reset(seed=1)
    draw = np.random.default_rng(1)
    for _ in range(70):
        env.step(draw.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        result = env.last_result
        assert result is not None
        report = Report(result.measurements, result.truth, env.node_info)
        pages, accesses = report.damon_pages
        ref_pages, ref_accesses = report.damon_pages_reference()
        assert pages.tobytes() == ref_pages.tobytes()
        assert accesses.tobytes() == ref_accesses.tobytes()


def test_migration_background_of_page_counts_equals_the_float_path():
    from tierenv.memory.migration_cost import MigrationCost

    cost = MigrationCost()
    draw = np.random.default_rng(2)
    for n in (1, 2, 3, 4):
        for _ in range(50):
            moved = draw.integers(0, 5000, (n, n))
            moved[draw.random((n, n)) < 0.4] = 0
            compiled = cost.background(moved, 2 * MIB, 0.7)
            plain = cost.background(moved.astype(float), 2 * MIB, 0.7)
            for got, want in zip(compiled, plain, strict=True):
                assert got.tobytes() == want.tobytes()
    with pytest.raises(ValueError, match=">= 0"):
        cost.background(np.array([[0, -1], [0, 0]]), 2 * MIB, 1.0)


def test_replaced_equals_dataclasses_replace_and_checks_what_changed():
    import dataclasses

    from tierenv.damon.config import DamonConfigError, Dest, Scheme
    from tierenv.sim.damos_setup import DamosSetup

    context = DamosSetup().context(3, [5, 2])
    scheme = context.schemes[0]
    dests = (Dest(0, 1), Dest(1, 9))
    assert scheme.replaced(dests=dests) == dataclasses.replace(scheme, dests=dests)
    assert scheme.replaced(dests=list(dests)).dests == dests  # normalised as when built
    with pytest.raises(DamonConfigError, match="dests"):
        scheme.replaced(dests=(object(),))
    with pytest.raises(DamonConfigError, match="no destination"):
        scheme.replaced(dests=(), target_nid=-1)
    with pytest.raises(TypeError, match="no field"):
        scheme.replaced(colour="red")
    assert isinstance(scheme.replaced(), Scheme)
