"""The compiled DAMOS pass of a scheme with a quota (``kernels.quota_pass``), run alone or
inside the compiled aggregation loop, against the region-by-region pass that follows the
kernel (``Kdamond._apply_to_region``): the same regions, pages, stats, quota state and tried
regions at every step."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_kdamond_paths import (
    COMPILED_ALONE,
    COMPILED_INLINE,
    HOT,
    PAGE,
    REGION_BY_REGION,
    build,
    run,
)
from tierenv.damon.config import AccessPattern, Dest, QuotaGoal, Quotas, Range, Scheme
from tierenv.damon.kdamond import Kdamond

WARM = AccessPattern(nr_accesses=Range(2, 2**32 - 1), age=Range(1, 2**32 - 1))
QUOTA_SCHEMES = {
    "hot-dests-bytes": Scheme(
        action="migrate_hot",
        access_pattern=HOT,
        target_nid=0,
        dests=(Dest(0, 3), Dest(1, 1)),
        apply_interval_us=200_000,
        quotas=Quotas(bytes=9 * PAGE, reset_interval_ms=300),
    ),
    "hot-weighted-scores": Scheme(
        action="migrate_hot",
        access_pattern=HOT,
        target_nid=0,
        quotas=Quotas(
            bytes=7 * PAGE, reset_interval_ms=100, nr_accesses_permil=700, age_permil=300
        ),
    ),
    # not a whole number of pages: the charge window never records where it stopped
    "hot-odd-bytes": Scheme(
        action="migrate_hot",
        access_pattern=WARM,
        target_nid=0,
        quotas=Quotas(bytes=5 * PAGE + 12345, reset_interval_ms=200, age_permil=1000),
    ),
    "cold-bytes": Scheme(
        action="migrate_cold",
        access_pattern=AccessPattern(),
        target_nid=0,
        quotas=Quotas(bytes=11 * PAGE, reset_interval_ms=100, nr_accesses_permil=1000),
    ),
    "stat-bytes": Scheme(
        action="stat", access_pattern=HOT, quotas=Quotas(bytes=4 * PAGE, reset_interval_ms=100)
    ),
    "hot-time": Scheme(
        action="migrate_hot",
        access_pattern=HOT,
        target_nid=0,
        quotas=Quotas(ms=1, reset_interval_ms=100, nr_accesses_permil=1000),
    ),
    "hot-goal": Scheme(
        action="migrate_hot",
        access_pattern=HOT,
        target_nid=0,
        quotas=Quotas(
            reset_interval_ms=100,
            goals=(QuotaGoal(target_metric="node_mem_used_bp", target_value=3000, nid=0),),
        ),
    ),
    "hot-off-aggregation": Scheme(
        action="migrate_hot",
        access_pattern=HOT,
        target_nid=0,
        apply_interval_us=150_000,
        quotas=Quotas(bytes=6 * PAGE, reset_interval_ms=150),
    ),
}


def count_quota_passes(monkeypatch) -> dict[str, int]:
    counts = {"alone": 0, "booked": 0}
    alone, book = Kdamond._apply_compiled_quota_pass, Kdamond._book_compiled_pass

    def apply_compiled_quota_pass(self, *args):
        counts["alone"] += 1
        return alone(self, *args)

    def book_compiled_pass(self, *args):
        counts["booked"] += 1
        return book(self, *args)

    monkeypatch.setattr(Kdamond, "_apply_compiled_quota_pass", apply_compiled_quota_pass)
    monkeypatch.setattr(Kdamond, "_book_compiled_pass", book_compiled_pass)
    return counts


@pytest.mark.parametrize("name", list(QUOTA_SCHEMES))
@pytest.mark.parametrize(("operations", "n_apps"), [("vaddr", 1), ("vaddr", 2), ("paddr", 1)])
def test_compiled_quota_passes_equal_the_region_by_region_pass(
    monkeypatch, name, operations, n_apps
):
    scheme = QUOTA_SCHEMES[name]
    reference_run = run(build(scheme, operations, n_apps), REGION_BY_REGION, steps=10)
    counts = count_quota_passes(monkeypatch)
    assert run(build(scheme, operations, n_apps), COMPILED_ALONE, steps=10) == reference_run
    assert counts["booked"] > 0
    assert run(build(scheme, operations, n_apps), COMPILED_INLINE, steps=10) == reference_run


def test_the_quota_pass_can_be_switched_off_alone(monkeypatch):
    scheme = QUOTA_SCHEMES["hot-dests-bytes"]
    reference_run = run(build(scheme, n_apps=2), REGION_BY_REGION, steps=6)
    monkeypatch.setattr(Kdamond, "quota_pass_enabled", False)
    counts = count_quota_passes(monkeypatch)
    assert run(build(scheme, n_apps=2), COMPILED_INLINE, steps=6) == reference_run
    assert counts["booked"] == 0


def test_committing_new_dests_every_interval_keeps_the_paths_equal():
    """The env's pattern: new weights committed to the kdamond before every interval."""

    def episode(mode):
        kd = build(QUOTA_SCHEMES["hot-dests-bytes"], n_apps=1)
        kd.simple_pass_enabled, kd.inline_pass_enabled = mode
        app = kd.config.targets[0].pid
        draw = np.random.default_rng(3)
        seen = []
        for step in range(12):
            weights = draw.integers(1, 9, 2).tolist()
            scheme = kd.config.schemes[0]
            dests = tuple(Dest(node, int(w)) for node, w in enumerate(weights))
            new = type(scheme)(**{**vars(scheme), "dests": dests})
            kd.commit(type(kd.config)(**{**vars(kd.config), "schemes": (new,)}))
            hot = (np.arange(384) // (19 + 5 * step)) % 2 == 0
            kd.set_access_rates(app, np.where(hot, 500.0, 0.1))
            kd.run(1_000_000)
            runtime = kd.schemes[0]
            seen.append(
                (
                    kd.region_records(),
                    kd.memory.state_arrays()["page_node"].tolist(),
                    vars(runtime.stats).copy(),
                    runtime.tried_regions,
                    vars(runtime.quota).copy(),
                    kd.passed,
                    runtime.next_apply_sis,
                )
            )
        return seen

    assert episode(COMPILED_INLINE) == episode(REGION_BY_REGION)


def test_a_simulated_second_of_the_default_setup_is_one_compiled_call(monkeypatch):
    """damo's weighted-interleave scheme (a size quota applied every second, updates every
    second): after a commit, a second runs in one compiled loop, its pass included."""
    from tierenv.sim.damos_setup import DamosSetup

    kd = build(QUOTA_SCHEMES["stat-bytes"])
    setup = DamosSetup()
    app = kd.config.targets[0].pid
    calls = {"fast": 0, "step": 0}
    fast, after = Kdamond._fast_aggregations, Kdamond._after_samples

    def counted_fast(self, budget):
        done = fast(self, budget)
        calls["fast"] += done
        return done

    def counted_after(self):
        calls["step"] += 1
        return after(self)

    monkeypatch.setattr(Kdamond, "_fast_aggregations", counted_fast)
    monkeypatch.setattr(Kdamond, "_after_samples", counted_after)
    kd.set_access_rates(app, np.full(384, 200.0))
    for step in range(5):
        kd.commit(setup.context(app, [3 + step, 1]))
        kd.run(1_000_000)
    assert calls == {"fast": 5, "step": 0}
    assert kd.schemes[0].stats.nr_tried > 0
