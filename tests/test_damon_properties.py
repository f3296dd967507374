"""Properties of the simulated kdamond over random programs and scheme configurations."""

from __future__ import annotations

import itertools
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from tierenv.memory.state import MemoryState

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
MiB = 1 << 20
BASE = 0x7F00_0000_0000


@st.composite
def setups(draw):
    page_size = draw(st.sampled_from([4096, 2 * MiB]))
    n_pages = draw(st.integers(16, 600))
    capacity_pages = [draw(st.integers(n_pages // 3, 2 * n_pages)), 2 * n_pages]
    rates = np.array(
        draw(st.lists(st.sampled_from([0.0, 0.5, 20.0, 1e3, 1e4]), min_size=8, max_size=8))
    )
    chunk = np.repeat(rates, -(-n_pages // 8))[:n_pages]  # eight contiguous hotness bands
    bytes_quota = draw(st.sampled_from([0, 1, 3, 40])) * page_size
    scheme = Scheme(
        action=draw(st.sampled_from(["migrate_hot", "migrate_cold"])),
        access_pattern=AccessPattern(
            nr_accesses=Range(draw(st.integers(0, 5)), draw(st.integers(5, 2**32 - 1)))
        ),
        dests=tuple(Dest(node, draw(st.integers(0, 4))) for node in draw(st.permutations([0, 1]))),
        apply_interval_us=draw(st.sampled_from([0, 100_000, 300_000])),
        quotas=Quotas(
            bytes=bytes_quota,
            reset_interval_ms=draw(st.sampled_from([0, 100, 1000])),
            nr_accesses_permil=draw(st.sampled_from([0, 1000])),
            age_permil=draw(st.sampled_from([0, 500])),
        ),
    )
    attrs = MonitoringAttrs(
        min_nr_regions=draw(st.integers(3, 12)), max_nr_regions=draw(st.integers(12, 200))
    )
    return page_size, n_pages, capacity_pages, chunk, scheme, attrs, draw(st.integers(0, 99))


def build(setup):
    page_size, n_pages, capacity_pages, rates, scheme, attrs, seed = setup
    memory = MemoryState([c * page_size for c in capacity_pages], page_size=page_size)
    app = memory.add_app([(BASE, n_pages * page_size)])
    memory.allocate(app, np.arange(n_pages), np.array([1, 1]))
    config = ContextConfig(attrs=attrs, targets=(Target(pid=app),), schemes=(scheme,))
    kdamond = Kdamond(config, memory, seed=seed)
    kdamond.set_access_rates(app, rates)
    return memory, app, kdamond


@PROPERTY_SETTINGS
@given(setups())
def test_quota_conservation_and_capacity_hold_at_every_apply(setup):
    memory, app, kdamond = build(setup)
    scheme = setup[4]
    step = scheme.apply_interval_us or kdamond.attrs.aggr_us
    n_pages = setup[1]
    for _ in range(25):
        applied_before = kdamond.schemes[0].stats.sz_applied
        kdamond.run(step)
        quota = kdamond.schemes[0].quota
        moved = kdamond.schemes[0].stats.sz_applied - applied_before
        if scheme.quotas.bytes:
            # one pass per step: charged bytes never pass the effective quota, and a pass
            # migrates at most what it charged
            assert quota.esz == scheme.quotas.bytes
            assert quota.charged_sz <= quota.esz
            assert moved <= quota.esz
        # pages are conserved and no node holds more than it can
        assert memory.resident_pages(app).sum() == n_pages
        assert np.all(memory.used_pages <= memory.capacity_pages)
        assert np.all(memory.free_pages >= 0)
    # regions tile what they cover, in order, without overlap
    records = kdamond.region_records()
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(records))


@PROPERTY_SETTINGS
@given(setups())
def test_same_seed_same_run(setup):
    runs = []
    for _ in range(2):
        memory, app, kdamond = build(setup)
        kdamond.run(2_000_000)
        runs.append(
            (
                kdamond.region_records(),
                memory.node_of_page(app).tolist(),
                kdamond.schemes[0].stats,
            )
        )
    assert runs[0] == runs[1]
