"""Weights written by the backend give the expected page split; the auto switch and restore."""

from __future__ import annotations

import pytest
from guestlib import WI, share0

from tierenv.host.interleave import WeightedInterleave

# With THP off, weighted interleave places pages in exact rounds of w0 + w1 pages; 0.5 % allows
# for the one partial round at the end and the workload's page tables.
TOLERANCE = 0.005


@pytest.mark.parametrize("weights", [(3, 1), (1, 1), (2, 5), (1, 4), (7, 3)])
def test_weights_give_the_page_split(root, workload, weights: tuple[int, int]) -> None:
    wi = WeightedInterleave(root)
    original = wi.write_weights(list(weights))
    assert original.auto is True, "the VM boots in auto mode"
    assert wi.snapshot().weights == {0: weights[0], 1: weights[1]}
    assert wi.read_auto() is False, "a node write switches the kernel to manual weights"
    counts = workload("wi", 64).nodes()
    expected = weights[0] / sum(weights)
    assert share0(counts) == pytest.approx(expected, abs=TOLERANCE), counts


def test_plain_interleave_ignores_the_weights(root, workload) -> None:
    WeightedInterleave(root).write_weights([5, 1])
    assert share0(workload("il", 32).nodes()) == pytest.approx(0.5, abs=TOLERANCE)


def test_auto_weights_come_from_hmat_and_restore_brings_them_back(root, workload) -> None:
    wi = WeightedInterleave(root)
    auto = wi.snapshot()
    # node1 ("CXL") has half node0's HMAT bandwidth (vm.py), so auto weights are about 2:1.
    assert auto.auto is True and auto.weights[0] / auto.weights[1] == pytest.approx(2, rel=0.1)
    auto_share = auto.weights[0] / sum(auto.weights.values())
    assert share0(workload("wi", 64).nodes()) == pytest.approx(auto_share, abs=TOLERANCE)

    original = wi.write_weights([1, 3])
    assert original == auto
    assert wi.snapshot().auto is False
    assert share0(workload("wi", 64).nodes()) == pytest.approx(0.25, abs=TOLERANCE)

    wi.restore(original)
    assert wi.snapshot() == auto  # auto mode back on, with the HMAT weights
    assert share0(workload("wi", 64).nodes()) == pytest.approx(auto_share, abs=TOLERANCE)


def test_restore_of_a_manual_table_keeps_manual_mode(root) -> None:
    wi = WeightedInterleave(root)
    wi.write_weights([2, 1])
    manual = wi.snapshot()
    assert manual.auto is False
    assert wi.write_weights([9, 4]) == manual
    wi.restore(manual)
    assert wi.snapshot() == manual
    assert (WI / "node0").read_text() == "2\n"
