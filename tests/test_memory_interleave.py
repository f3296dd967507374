"""The kernel's weighted-interleave arithmetic: weights, auto weights, mempolicy and dests."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierenv.memory.interleave import (
    WeightError,
    auto_weights,
    check_weights,
    dests_nid,
    interleave_targets,
    weighted_interleave_nid,
)

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
)


def walk(ilx: int, nodes: list[int], weights: list[int]) -> int:
    """The kernel's loop, one index at a time (damos_va_migrate_dests_add)."""
    total = sum(weights)
    if total == 0:
        return -1
    target = ilx % total
    for node, weight in zip(nodes, weights, strict=True):
        if target < weight:
            return node
        target -= weight
    raise AssertionError("unreachable")


def test_dests_three_to_one_put_exactly_three_quarters_on_node_0() -> None:
    nodes = dests_nid(np.arange(4000), [0, 1], [3, 1])
    assert np.count_nonzero(nodes == 0) == 3000
    assert np.count_nonzero(nodes == 1) == 1000
    assert nodes[:4].tolist() == [0, 0, 0, 1]


def test_dests_are_walked_in_array_order() -> None:
    assert dests_nid(np.arange(4), [1, 0], [1, 3]).tolist() == [1, 0, 0, 0]
    assert dests_nid(np.arange(4), [0, 1], [3, 1]).tolist() == [0, 0, 0, 1]


def test_dests_with_zero_total_weight_choose_nothing_and_zero_weights_are_skipped() -> None:
    assert dests_nid(np.arange(3), [0, 1], [0, 0]).tolist() == [-1, -1, -1]
    assert dests_nid(np.arange(3), [], []).tolist() == [-1, -1, -1]
    assert dests_nid(np.arange(4), [2, 0, 1], [0, 1, 1]).tolist() == [0, 1, 0, 1]


def test_mempolicy_walks_the_nodemask_in_ascending_node_order() -> None:
    weights = [2, 1, 5]
    ilx = np.arange(20)
    assert weighted_interleave_nid(ilx, weights, nodemask=[2, 0]).tolist() == [
        walk(i, [0, 2], [2, 5]) for i in range(20)
    ]
    assert weighted_interleave_nid(ilx, weights).tolist() == [
        walk(i, [0, 1, 2], weights) for i in range(20)
    ]


@PROPERTY_SETTINGS
@given(
    st.lists(st.integers(1, 255), min_size=1, max_size=6),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=50),
)
def test_mempolicy_equals_dests_listed_in_ascending_node_order(weights, ilx) -> None:
    nodes = list(range(len(weights)))
    assert np.array_equal(
        weighted_interleave_nid(np.array(ilx), weights), dests_nid(np.array(ilx), nodes, weights)
    )


@PROPERTY_SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 20)), max_size=6),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=50),
)
def test_vectorised_targets_equal_the_kernel_loop(dests, ilx) -> None:
    nodes = [n for n, _ in dests]
    weights = [w for _, w in dests]
    expected = [walk(i, nodes, weights) for i in ilx]
    assert interleave_targets(np.array(ilx), nodes, weights).tolist() == expected


def test_auto_weights_reproduce_the_kernels_example_and_edge_cases() -> None:
    assert auto_weights([72.0, 26.0]).tolist() == [23, 8]  # 32*72/98, 32*26/98
    assert auto_weights([50.0, 50.0]).tolist() == [1, 1]  # 16:16 reduced by the gcd
    assert auto_weights([60.0, 30.0]).tolist() == [21, 10]
    assert auto_weights([100.0]).tolist() == [1]
    assert auto_weights([100.0, 0.0]).tolist() == [32, 1]  # no bandwidth data: weight 1
    assert auto_weights([0.0, 0.0]).tolist() == [1, 1]
    assert auto_weights([400.0, 1.0]).tolist() == [31, 1]  # under 1/32 of the total: 1
    with pytest.raises(WeightError, match=r"bandwidth of node 1 is -1\.0"):
        auto_weights([10.0, -1.0])


def test_check_weights_accepts_sequences_arrays_and_mappings() -> None:
    assert check_weights([3, 1], 2).tolist() == [3, 1]
    assert check_weights((3.0, np.int8(1)), 2).tolist() == [3, 1]
    assert check_weights(np.array([255, 1], dtype=np.uint8), 2).tolist() == [255, 1]
    assert check_weights({1: 4}, 3).tolist() == [1, 4, 1]  # unset nodes keep the default 1
    assert check_weights({0: 2, 2: 7}, 3).dtype == np.int64


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([3, 0], "weight of node 1 is 0; the kernel accepts integers 1..255"),
        ([256, 1], "weight of node 0 is 256"),
        (np.array([1, 300]), "weight of node 1 is 300"),
        ([True, 1], "weight of node 0 is True"),
        ([1, 2.5], "weight of node 1 is 2.5"),
        ([1, float("nan")], "weight of node 1 is nan"),
        (["1", 1], "weight of node 0 is '1'"),
        ([1, 1, 1], "expected 2 weights"),
        ({5: 1}, "node 5"),
        ({0: 0}, "weight of node 0 is 0"),
        ("11", "sequence or a mapping"),
    ],
)
def test_check_weights_refuses_what_the_kernel_refuses(weights, message) -> None:
    with pytest.raises(WeightError, match=message):
        check_weights(weights, 2)


def test_nodemask_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="nodemask is empty"):
        weighted_interleave_nid(np.arange(3), [1, 1], nodemask=[])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        weighted_interleave_nid(np.arange(3), [1, 1], nodemask=[0, 2])
    with pytest.raises(WeightError, match="weight of node 1 is 0"):
        weighted_interleave_nid(np.arange(3), [1, 0])
    with pytest.raises(WeightError, match="non-negative"):
        dests_nid(np.arange(3), [0, 1], [1, -1])
    with pytest.raises(WeightError, match="one weight per node"):
        dests_nid(np.arange(3), [0, 1], [1])
