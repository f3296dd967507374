"""What the adaptive baselines share: parameter checks, the fastest node, the split of page
shares between the fastest node and the rest, and shares to weights through the project's
one mapping (``tierenv.contracts.actions.shares_to_weights``)."""

from __future__ import annotations

import math

import numpy as np

from agents.controllers.base import ControlContext, ControllerError
from tierenv.contracts.actions import shares_to_weights
from tierenv.contracts.measurements import Measurements, NodeInfo
from tierenv.memory.interleave import MAX_WEIGHT


def check_param(
    controller: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> float:
    """``value`` as a float (int if ``integer``) within [low, high] (low excluded if
    ``low_open``); anything else raises ``ControllerError`` naming the parameter."""
    bad = isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
    number = math.nan if bad else float(value)  # type: ignore[arg-type]
    if integer and not bad and not number.is_integer():
        bad = True
    if bad or not math.isfinite(number):
        kind = "an integer" if integer else "a finite number"
        raise ControllerError(f"{controller}: parameter {name}={value!r} must be {kind}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and number > high
    if too_low or too_high:
        lower = "-inf" if low is None else f"{low:g}"
        upper = "inf" if high is None else f"{high:g}"
        bracket = "(" if low_open else "["
        raise ControllerError(
            f"{controller}: parameter {name}={value!r} must be in {bracket}{lower}, {upper}]"
        )
    return int(number) if integer else number


def require_nodes(controller: str, context: ControlContext, minimum: int = 2) -> None:
    """Adaptive controllers move share between nodes: they need at least two."""
    if context.nodes.n_nodes < minimum:
        raise ControllerError(
            f"{controller} needs at least {minimum} memory nodes, the host has "
            f"{context.nodes.n_nodes}"
        )


def fast_node(nodes: NodeInfo) -> int:
    """The default tier D: the node with the lowest idle latency (lowest id on a tie)."""
    return int(np.argmin(nodes.idle_latency_ns))


def min_slow_share(n_nodes: int) -> float:
    """The smallest share the non-fast nodes can have together: weight 1 each against
    ``MAX_WEIGHT`` on the fast node."""
    return (n_nodes - 1) / (MAX_WEIGHT + n_nodes - 1)


def group_shares(nodes: NodeInfo, fast: int, slow_share: float) -> np.ndarray:
    """Node shares with ``1 - slow_share`` on ``fast`` and ``slow_share`` split over the other
    nodes in proportion to their peak bandwidth (on two nodes simply [1 - x, x])."""
    others = np.arange(nodes.n_nodes) != fast
    bandwidth = np.where(others, np.maximum(nodes.peak_gbps, 1e-9), 0.0)
    shares = slow_share * bandwidth / bandwidth.sum()
    shares[fast] = 1.0 - slow_share
    return shares


def weights_for(shares: np.ndarray) -> np.ndarray:
    """Weights (int64, 1..255) for node shares, by the project's one mapping
    (``shares_to_weights``); shares are floored just above 0 since it needs them positive."""
    return shares_to_weights(np.maximum(np.asarray(shares, dtype=np.float64), 1e-6))


def weight_shares(weights: np.ndarray) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64)
    return values / values.sum()


def total_throughput(measurements: Measurements) -> float:
    """The score the hill climbers maximise: the applications' summed own throughput."""
    return float(np.sum(measurements.app_throughput_gbps))


def check_epoch(controller: str, epoch_intervals: object, settle_intervals: object) -> tuple:
    """A hill climber's epoch: ``epoch_intervals`` control intervals per score, the first
    ``settle_intervals`` of which (migrations still landing) are left out of its mean."""
    epoch = check_param(controller, "epoch_intervals", epoch_intervals, low=1, integer=True)
    settle = check_param(controller, "settle_intervals", settle_intervals, low=0, integer=True)
    if settle >= epoch:
        raise ControllerError(
            f"{controller}: parameter settle_intervals={settle_intervals!r} must be below "
            f"epoch_intervals={epoch_intervals!r}"
        )
    return epoch, settle
