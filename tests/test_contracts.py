"""The shared contracts: action → weights mapping and the observation feature list."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tierenv.contracts import (
    ActionError,
    FeatureError,
    ObservationSpec,
    action_to_shares,
    action_to_weights,
    feature_table,
    shares_to_weights,
    weights_to_action,
    weights_to_shares,
)
from tierenv.contracts.actions import (
    QUOTA_MAX_BYTES_PER_S,
    QUOTA_MIN_BYTES_PER_S,
    SHARE_TOLERANCE,
    action_to_quota,
    reference_shares_to_weights,
)
from tierenv.contracts.features import FEATURE_GROUPS, HOTNESS_BINS
from tierenv.memory.interleave import check_weights

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def actions(n_nodes: int):
    return hnp.arrays(np.float64, n_nodes, elements=st.floats(-1, 1))


@pytest.mark.parametrize(
    ("action", "weights"),
    [([0, 0], [1, 1]), ([1, -1], [250, 1]), ([-1, 1], [1, 250]), ([0.2, -0.2], [3, 1])],
)
def test_known_actions_give_known_weights(action, weights):
    assert action_to_weights(action, 2).tolist() == weights


@PROPERTY_SETTINGS
@given(st.integers(2, 4).flatmap(actions))
def test_weights_are_kernel_valid_and_near_the_asked_shares(action):
    n_nodes = action.size
    weights = action_to_weights(action, n_nodes)
    check_weights(weights, n_nodes)  # 1..255, one per node
    asked = action_to_shares(action, n_nodes)
    got = weights_to_shares(weights)
    if np.max(np.abs(got / asked - 1)) > SHARE_TOLERANCE + 1e-12:
        # Only when no weights 1..255 come that close (3+ nodes near the 255:1 range's ends,
        # e.g. shares 1.1 %, 98.5 %, 0.4 %): then the closest are taken.
        assert not _any_weights_within_tolerance(asked), (asked, weights)
    assert np.gcd.reduce(weights) == 1  # smallest form: short interleave runs


def _any_weights_within_tolerance(shares: np.ndarray) -> bool:
    totals = np.arange(shares.size, 255 * shares.size + 1)[:, None]
    weights = np.clip(np.rint(shares * totals), 1, 255)
    errors = np.abs(weights / weights.sum(axis=1, keepdims=True) / shares - 1).max(axis=1)
    return bool(np.any(errors <= SHARE_TOLERANCE))


@PROPERTY_SETTINGS
@given(st.integers(2, 4).flatmap(actions), st.floats(-0.5, 0.5))
def test_adding_a_constant_to_every_entry_changes_nothing(action, shift):
    shifted = np.clip(action + shift, -1, 1)
    assume(np.allclose(shifted - action, shift))  # no entry clipped
    assert np.allclose(
        action_to_shares(action, action.size), action_to_shares(shifted, action.size)
    )


@PROPERTY_SETTINGS
@given(actions(2), st.floats(0.0, 0.5))
def test_raising_a_nodes_action_never_lowers_its_asked_share(action, step):
    raised = action.copy()
    raised[0] = min(1.0, raised[0] + step)
    assert action_to_shares(raised, 2)[0] >= action_to_shares(action, 2)[0] - 1e-15


@PROPERTY_SETTINGS
@given(st.integers(2, 4).flatmap(lambda n: hnp.arrays(np.int64, n, elements=st.integers(1, 255))))
def test_weights_to_action_round_trips_within_the_tolerance(weights):
    action = weights_to_action(weights)
    assert action.dtype == np.float32 and np.all(np.abs(action) <= 1)
    got = weights_to_shares(action_to_weights(action, weights.size))
    # float32 rounding of the action adds a little to the mapping's own tolerance
    assert np.max(np.abs(got / weights_to_shares(weights) - 1)) <= SHARE_TOLERANCE + 1e-4


def test_compiled_mapping_equals_the_numpy_reference():
    rng = np.random.default_rng(7)
    for n_nodes in (2, 3, 4):
        shares = action_to_shares(rng.uniform(-1, 1, (500, n_nodes)), n_nodes)
        assert np.array_equal(shares_to_weights(shares), reference_shares_to_weights(shares))


def test_batches_map_row_by_row():
    batch = np.random.default_rng(3).uniform(-1, 1, (4, 5, 2))
    mapped = action_to_weights(batch, 2)
    assert mapped.shape == (4, 5, 2)
    assert np.array_equal(mapped[2, 3], action_to_weights(batch[2, 3], 2))


def test_out_of_range_actions_are_clipped():
    assert np.array_equal(action_to_weights([7.0, -3.0], 2), action_to_weights([1, -1], 2))


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ([np.nan, 0.0], "non-finite"),
        ([np.inf, 0.0], "non-finite"),
        ([0.0], "2 values"),
        ([[0.0, 1.0, 2.0]], "2 values"),
        (0.5, "2 values"),
    ],
)
def test_bad_actions_are_refused(action, problem):
    with pytest.raises(ActionError, match=problem):
        action_to_weights(action, 2)


def test_quota_dimension_spans_its_range_log_spaced():
    assert action_to_quota(-1) == QUOTA_MIN_BYTES_PER_S
    assert action_to_quota(1) == QUOTA_MAX_BYTES_PER_S
    middle = action_to_quota(0)
    assert middle == pytest.approx(np.sqrt(QUOTA_MIN_BYTES_PER_S * QUOTA_MAX_BYTES_PER_S), rel=1e-6)
    with pytest.raises(ActionError):
        action_to_quota(float("nan"))


def test_default_features_are_all_host_observable_and_privileged_ones_are_flagged():
    default = ObservationSpec(2)
    assert default.host_observable
    privileged = ObservationSpec(2, "privileged")
    assert not privileged.host_observable
    assert set(default.names) < set(privileged.names)
    assert {g.name for g in privileged.groups if not g.host_observable} == {
        "true_access_share",
        "true_hot_share",
        "true_speedup",
    }


def test_feature_names_match_the_bounds_and_count():
    spec = ObservationSpec(3, ["bandwidth", "hotness", "apps"])
    assert spec.names[:3] == ("bandwidth[node0]", "bandwidth[node1]", "bandwidth[node2]")
    assert len(spec.names) == 3 + 3 * len(HOTNESS_BINS) + 1 == spec.low.size == spec.high.size
    assert "hotness[node2,hottest]" in spec.names


@pytest.mark.parametrize(
    ("features", "problem"),
    [
        ("everything", "unknown feature set 'everything'; sets: default, privileged"),
        (["bandwidth", "bogus"], "unknown feature group"),
        ([], "unknown feature group"),
        (["apps", "apps"], "listed twice"),
    ],
)
def test_unknown_features_are_refused_with_the_valid_ones(features, problem):
    with pytest.raises(FeatureError, match=problem) as error:
        ObservationSpec(2, features)
    if "unknown" in problem:
        assert "bandwidth" in str(error.value)


def test_feature_table_lists_every_group_and_the_readme_carries_it():
    from pathlib import Path

    table = feature_table()
    for group in FEATURE_GROUPS:
        assert f"`{group.pattern}`" in table
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert table in readme, "README's feature table differs from feature_table(); paste it"
