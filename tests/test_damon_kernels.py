"""The compiled monitor kernels against the pure-Python reference, and hand-computed cases."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierenv.damon import kernels, reference
from tierenv.damon.reference import Region
from tierenv.damon.regions import FIELDS, RegionTable
from tierenv.damon.rng import PyRandom, new_state

PAGE = 4096
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def table_from(regions: list[Region]) -> RegionTable:
    table = RegionTable(4 * len(regions) + 8)
    table.replace([r.start for r in regions], [r.end for r in regions], [r.target for r in regions])
    table.nr_accesses[:] = [r.nr_accesses for r in regions]
    table.nr_accesses_bp[:] = [r.nr_accesses_bp for r in regions]
    table.last_nr_accesses[:] = [r.last_nr_accesses for r in regions]
    table.age[:] = [r.age for r in regions]
    return table


def as_tuples(table: RegionTable) -> list[tuple[int, ...]]:
    return [tuple(r[name] for name in FIELDS) for r in table.records()]


def ref_tuples(regions: list[Region]) -> list[tuple[int, ...]]:
    return [
        (r.start, r.end, r.target, r.nr_accesses, r.nr_accesses_bp, r.last_nr_accesses, r.age)
        for r in regions
    ]


@st.composite
def region_lists(draw, max_regions: int = 30) -> list[Region]:
    """Adjacent (sometimes gapped) page-aligned regions over two targets, with counters."""
    regions = []
    for target in range(draw(st.integers(1, 2))):
        address = draw(st.integers(0, 100)) * PAGE
        for _ in range(draw(st.integers(1, max_regions // 2))):
            if draw(st.integers(0, 4)) == 0:
                address += draw(st.integers(1, 5)) * PAGE  # a hole
            size = draw(st.integers(1, 40)) * PAGE
            nr = draw(st.integers(0, 20))
            last = draw(st.integers(0, 20))
            regions.append(
                Region(
                    address, address + size, target, nr, nr * 10000, last, draw(st.integers(0, 50))
                )
            )
            address += size
    return regions


@PROPERTY_SETTINGS
@given(region_lists(), st.integers(0, 5), st.integers(1, 200), st.integers(3, 40))
def test_merge_matches_reference(regions, threshold, limit_pages, max_regions):
    table = table_from(regions)
    table.n = kernels.merge_regions(
        table.n, *table.arrays(), threshold, limit_pages * PAGE, max_regions, 20
    )
    expected = reference.merge_regions(
        [Region(**vars(r)) for r in regions], threshold, limit_pages * PAGE, max_regions, 20
    )
    assert as_tuples(table) == ref_tuples(expected)


@PROPERTY_SETTINGS
@given(region_lists(), st.sampled_from([2, 3]), st.integers(0, 2**32))
def test_split_matches_reference(regions, nr_subs, seed):
    table = table_from(regions)
    state = new_state(seed)
    rng = PyRandom(state)
    table.reserve(table.n * nr_subs)
    written = kernels.split_regions(
        table.n, *table.arrays(), *table.spare_arrays(), nr_subs, PAGE, state
    )
    table.swap_spare(written)
    expected = reference.split_regions([Region(**vars(r)) for r in regions], nr_subs, PAGE, rng)
    assert as_tuples(table) == ref_tuples(expected)
    assert rng.state == int(state[0])  # the same numbers were drawn


@PROPERTY_SETTINGS
@given(region_lists(), st.integers(1, 20), st.integers(0, 2**32), st.data())
def test_sampling_matches_reference(regions, samples, seed, data):
    n_targets = max(r.target for r in regions) + 1
    pages = []
    for target in range(n_targets):
        mine = [r for r in regions if r.target == target]
        addresses = list(range(mine[0].start, mine[-1].end, PAGE))
        # some slots unmapped: drop every page whose index hits a drawn modulus
        modulus = data.draw(st.integers(2, 7))
        addresses = [a for i, a in enumerate(addresses) if i % modulus]
        probabilities = data.draw(
            st.lists(st.floats(0, 1), min_size=len(addresses), max_size=len(addresses))
        )
        pages.append(list(zip(addresses, probabilities, strict=True)))
    index = kernels.sampling_index(
        [[a for a, _ in t] for t in pages], [[p for _, p in t] for t in pages], PAGE
    )
    table = table_from(regions)
    state = new_state(seed)
    rng = PyRandom(state)
    largest = kernels.sample_segment(table.n, *table.arrays()[:6], *index, PAGE, samples, 20, state)
    copies = [Region(**vars(r)) for r in regions]
    expected_largest = reference.sample(copies, pages, PAGE, samples, 20, rng)
    assert largest == expected_largest
    assert as_tuples(table) == ref_tuples(copies)


def test_merge_hand_case_threshold_and_size_weighted_average():
    # three adjacent regions; threshold 2 merges the first two (|4-6| <= 2), not the third
    regions = [
        Region(0, 1 * PAGE, 0, 4, 40000, 4, 3),
        Region(1 * PAGE, 4 * PAGE, 0, 6, 60000, 6, 7),
        Region(4 * PAGE, 5 * PAGE, 0, 10, 100000, 2, 9),
    ]
    table = table_from(regions)
    table.n = kernels.merge_regions(table.n, *table.arrays(), 2, 100 * PAGE, 1000, 20)
    records = table.records()
    assert len(records) == 2
    # nr: (4*1 + 6*3) // 4 = 5; ages after +1: 4 and 8 -> (4*1 + 8*3) // 4 = 7
    assert records[0] == {
        "start": 0,
        "end": 4 * PAGE,
        "target": 0,
        "nr": 5,
        "bp": 50000,
        "last": 4,
        "age": 7,
    }
    # third region's count moved by 8 > 2 since last aggregation: its age resets
    assert records[1]["age"] == 0


def test_merge_respects_size_limit_and_target_boundary():
    regions = [
        Region(0, 2 * PAGE, 0, 0, 0, 0, 0),
        Region(2 * PAGE, 4 * PAGE, 0, 0, 0, 0, 0),
        Region(4 * PAGE, 6 * PAGE, 1, 0, 0, 0, 0),  # adjacent address, other target
    ]
    table = table_from(regions)
    table.n = kernels.merge_regions(table.n, *table.arrays(), 0, 3 * PAGE, 1000, 20)
    assert table.n == 3  # 2+2 pages exceed the 3-page limit; targets never merge
    table = table_from(regions)
    table.n = kernels.merge_regions(table.n, *table.arrays(), 0, 4 * PAGE, 1000, 20)
    assert [(r["start"], r["end"]) for r in table.records()] == [
        (0, 4 * PAGE),
        (4 * PAGE, 6 * PAGE),
    ]


def test_merge_raises_threshold_until_under_max_regions():
    # counts 0, 3, 6, 9 alternate so threshold 0 merges nothing; max 1 region forces doubling
    regions = [Region(i * PAGE, (i + 1) * PAGE, 0, 3 * i, 30000 * i, 3 * i, 0) for i in range(4)]
    table = table_from(regions)
    table.n = kernels.merge_regions(table.n, *table.arrays(), 0, 100 * PAGE, 1, 20)
    assert table.n == 1


def test_split_pieces_are_between_10_and_90_percent_and_aligned():
    state = new_state(7)
    size_pages = 1000
    for _ in range(200):
        table = table_from([Region(0, size_pages * PAGE, 0, 3, 30000, 2, 5)])
        table.reserve(4)
        written = kernels.split_regions(
            table.n, *table.arrays(), *table.spare_arrays(), 2, PAGE, state
        )
        table.swap_spare(written)
        assert table.n == 2
        left = table.end[0] - table.start[0]
        assert left % PAGE == 0
        assert 0.1 * size_pages * PAGE <= left <= 0.9 * size_pages * PAGE
        assert list(table.nr_accesses) == [3, 3] and list(table.age) == [5, 5]


def test_regions_of_two_pages_or_less_never_split():
    state = new_state(1)
    table = table_from([Region(0, 2 * PAGE, 0), Region(2 * PAGE, 3 * PAGE, 0)])
    table.reserve(6)
    written = kernels.split_regions(table.n, *table.arrays(), *table.spare_arrays(), 3, PAGE, state)
    assert written == 2


def test_binomial_shortcut_has_the_binomial_distribution():
    state = new_state(3)
    draws = np.array([kernels.binomial(state, 20, 0.3) for _ in range(20000)])
    assert abs(draws.mean() - 6.0) < 0.06
    assert abs(draws.var() - 20 * 0.3 * 0.7) < 0.15


def test_long_stretches_keep_the_binomial_mean_and_match_the_reference():
    # (1 - p) ** n underflows for n in the thousands: drawn as sums of shorter binomials
    for trials, p in ((1100, 0.5), (2000, 0.4), (5000, 0.2), (2000, 0.0), (2000, 1.0)):
        state = new_state(4)
        draws = np.array([kernels.binomial(state, trials, p) for _ in range(400)])
        assert abs(draws.mean() - trials * p) < 4 * np.sqrt(trials * p * (1 - p) / 400) + 1e-9
    regions = [Region(0, 64 * PAGE, 0)]
    pages = [[(a * PAGE, 0.3) for a in range(64)]]
    index = kernels.sampling_index([[a for a, _ in pages[0]]], [[p for _, p in pages[0]]], PAGE)
    table = table_from(regions)
    state = new_state(8)
    rng = PyRandom(state)
    kernels.sample_segment(table.n, *table.arrays()[:6], *index, PAGE, 1500, 1500, state)
    reference.sample(regions, pages, PAGE, 1500, 1500, rng)
    assert table.nr_accesses[0] == regions[0].nr_accesses
    assert rng.state == int(state[0])
    assert abs(regions[0].nr_accesses - 450) < 80
