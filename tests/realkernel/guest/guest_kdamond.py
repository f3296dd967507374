"""The backend's kdamond (as the daemon builds it) moves hot pages to the weight split."""

from __future__ import annotations

import time

import pytest
from guestlib import KDAMONDS, share0, wait_for

from tierenv.damon.config import Dest
from tierenv.host.damon import Kdamond, probe
from tierenv.sim.damos_setup import DamosSetup

# DAMON's regions are not page-exact: the hot set's split is checked to 5 %, as in the study.
TOLERANCE = 0.05


def test_probe_sees_every_feature(root) -> None:
    features = probe(root, scratch=True)
    assert features.complete and features.auto_file == "auto", features.explain()
    assert int((KDAMONDS / "nr_kdamonds").read_text()) == 0, "the scratch kdamond is removed"


def test_migrate_hot_dests_follow_the_weights(root, workload) -> None:
    # 256 MiB on node1 (the "CXL" node), the first 64 MiB written in a loop.
    wl = workload("bind1", 256, hot_mb=64)
    assert share0(wl.nodes()) == 0
    kd = Kdamond.create(root)
    # The daemon's kdamond (tierenv/daemon/loop.py _start_kdamond): DamosSetup's context.
    kd.stage(DamosSetup().context(wl.pid, [3, 1]))
    kd.start()
    assert kd.is_on() and kd.pid() > 0
    assert kd.read_dests() == [Dest(0, 3), Dest(1, 1)]

    hot, history = wait_for(lambda: share0(wl.hot()), 0.75, TOLERANCE)
    assert hot == pytest.approx(0.75, abs=TOLERANCE), f"hot node0 share over time: {history}"
    stats = kd.read_stats()
    assert stats["nr_applied"] > 0 and stats["sz_applied"] >= 16 << 20, stats
    cold = wl.cold()
    assert share0(cold) < 0.10, f"cold pages moved: {cold.tolist()} (node0, node1)"

    # New weights while running: set_dests commits them online.
    kd.set_dests([1, 1])
    assert kd.read_dests() == [Dest(0, 1), Dest(1, 1)]
    hot, history = wait_for(lambda: share0(wl.hot()), 0.5, TOLERANCE)
    assert hot == pytest.approx(0.5, abs=TOLERANCE), f"hot node0 share over time: {history}"
    assert share0(wl.cold()) < 0.10

    kd.remove()
    assert int((KDAMONDS / "nr_kdamonds").read_text()) == 0
    before = share0(wl.hot())
    time.sleep(3)  # three DAMOS apply intervals
    assert share0(wl.hot()) == pytest.approx(before, abs=0.001), "pages moved after remove()"
