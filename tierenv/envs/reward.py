"""The reward: weighted speedup minus a migration cost, reported term by term."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tierenv.contracts.actions import plain
from tierenv.contracts.measurements import GroundTruth, Measurements
from tierenv.damon.abi import GiB


class RewardError(ValueError):
    """A reward that cannot be computed from what the host reported."""


def check_migration_cost(migration_cost_per_gib: float) -> float:
    """The reward's migration coefficient, checked: finite and >= 0."""
    if not np.isfinite(migration_cost_per_gib) or migration_cost_per_gib < 0:
        raise ValueError(
            f"migration_cost_per_gib must be finite and >= 0, got {plain(migration_cost_per_gib)}"
        )
    return float(migration_cost_per_gib)


@dataclass(frozen=True)
class Reward:
    """``throughput - migration``: the terms, so users can reweigh them."""

    throughput: float  # weighted speedup: sum over running apps of throughput / reference
    migration: float  # migration_cost_per_gib x GiB migrated in the interval

    @property
    def total(self) -> float:
        return self.throughput - self.migration


def weighted_speedup(
    measurements: Measurements,
    reference_gbps: np.ndarray,
    counted: np.ndarray | None = None,
) -> float:
    """Sum over running applications (those ``counted``, when given) of throughput over its
    reference throughput (alone on idle local memory in the simulator): the systems
    literature's weighted speedup."""
    if measurements.app_throughput_gbps.size == 0:
        return 0.0
    ratios = measurements.app_throughput_gbps / reference_gbps
    if counted is not None:
        ratios = np.where(counted, ratios, 0.0)
    return float(np.sum(ratios))


def compute_reward(
    measurements: Measurements,
    truth: GroundTruth | None,
    migration_cost_per_gib: float,
    reference_gbps: np.ndarray | None = None,
) -> Reward:
    """The step's reward terms. The references are each application's throughput alone on
    idle local memory: the simulator's ``GroundTruth.app_alone_gbps``, or on a real host
    ``reference_gbps`` (from the host config)."""
    counted = None
    if truth is not None:
        reference_gbps = truth.app_alone_gbps
        counted = truth.app_in_reward
    if reference_gbps is None:
        raise RewardError(
            "the weighted-speedup reward needs each application's reference throughput, which "
            "a real host does not report; give the host backend references"
        )
    migrated_gib = float(measurements.migrated_bytes.sum()) / GiB
    return Reward(
        throughput=weighted_speedup(measurements, reference_gbps, counted),
        migration=migration_cost_per_gib * migrated_gib,
    )
