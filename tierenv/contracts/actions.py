"""The action → interleave-weights mapping: one function for the env, the baselines, the
exported policy and the daemon.

An action is one number per memory node in [-1, 1]. It becomes node shares by a softmax
scaled so that the full action range spans the kernel's full weight range: on two nodes,
``[1, -1]`` asks for 255:1 and ``[0, 0]`` for 1:1; adding a constant to every entry changes
nothing. The shares become the smallest integer weights (1..255, as sysfs ``nodeN`` takes)
whose shares are each within ``SHARE_TOLERANCE`` (relative) of the asked ones. Small weights
keep the kernel's interleave runs short (a weight is how many consecutive pages a node gets),
so every stretch of the address space sees the asked split.

Finite actions outside [-1, 1] are clipped; NaN, infinity or a wrong length are errors.
"""

from __future__ import annotations

import math

import numpy as np

from tierenv.damon.jit import njit
from tierenv.memory.interleave import MAX_WEIGHT, MIN_WEIGHT

ACTION_LOW = -1.0
ACTION_HIGH = 1.0
# An action difference of 2 (the full range) is a weight ratio of MAX_WEIGHT : MIN_WEIGHT.
LOG_RATIO_PER_UNIT = math.log(MAX_WEIGHT / MIN_WEIGHT) / (ACTION_HIGH - ACTION_LOW)
SHARE_TOLERANCE = 0.02
_TOTALS_PER_PASS = 32  # weight sums tried at once while searching for the smallest weights


class ActionError(ValueError):
    """An action the env cannot turn into weights (NaN, infinite or wrongly shaped)."""


def plain(value: object) -> str:
    """``value`` as plain Python numbers for messages (numpy 2 reprs read
    ``np.float64(nan)`` and ``array([...])``)."""
    if isinstance(value, np.ndarray | np.generic | list | tuple):
        try:
            return repr(np.asarray(value).tolist())
        except ValueError:  # ragged
            return repr(value)
    return repr(value)


def _shown(value: object, limit: int = 80) -> str:
    """``value`` in a message: plain numbers, its type, at most ``limit`` characters."""
    text = plain(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"


def check_action(action: np.ndarray | list[float], n_nodes: int) -> np.ndarray:
    """``action`` as float64 of shape (..., n_nodes), clipped to [-1, 1]; NaN, infinity or a
    wrong last dimension raise ``ActionError``, and so does anything that is not numbers (a
    string, None inside a list, a ragged list)."""
    try:
        values = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise ActionError(
            f"action must be {n_nodes} numbers (one per memory node), got {_shown(action)}"
        ) from None
    if values.ndim == 0 or values.shape[-1] != n_nodes:
        raise ActionError(
            f"action must have {n_nodes} values (one per memory node), got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        # plain numbers: numpy 2 reprs would print np.float64(nan) at (np.int64(0),)
        where = bad[0] if len(bad) == 1 else bad
        raise ActionError(f"action has a non-finite value {float(values[bad])} at index {where}")
    return np.clip(values, ACTION_LOW, ACTION_HIGH)


def action_to_shares(action: np.ndarray | list[float], n_nodes: int) -> np.ndarray:
    """Node shares (summing to 1 along the last axis) asked for by ``action``."""
    scaled = check_action(action, n_nodes) * LOG_RATIO_PER_UNIT
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def shares_to_weights(shares: np.ndarray) -> np.ndarray:
    """The smallest integer weights (int64, 1..255) whose shares are each within
    ``SHARE_TOLERANCE`` of ``shares`` (relative); the closest found if none is. Works on a
    batch (shape (..., n_nodes))."""
    batch = _checked_shares(shares)
    return _smallest_weights(batch, SHARE_TOLERANCE).reshape(np.shape(shares))


def reference_shares_to_weights(shares: np.ndarray) -> np.ndarray:
    """``shares_to_weights`` in numpy (the compiled one is tested against it)."""
    batch = _checked_shares(shares)
    n_nodes = batch.shape[1]
    result = np.zeros(batch.shape, dtype=np.int64)
    best_error = np.full(batch.shape[0], np.inf)
    pending = np.arange(batch.shape[0])
    for first_total in range(n_nodes, MAX_WEIGHT * n_nodes + 1, _TOTALS_PER_PASS):
        totals = np.arange(first_total, first_total + _TOTALS_PER_PASS, dtype=np.float64)
        wanted = batch[pending]  # (p, n)
        weights = np.clip(
            np.rint(wanted[:, None, :] * totals[None, :, None]), MIN_WEIGHT, MAX_WEIGHT
        )  # (p, totals, n)
        got = weights / weights.sum(axis=2, keepdims=True)
        error = np.max(np.abs(got / wanted[:, None, :] - 1.0), axis=2)  # (p, totals)
        within = error <= SHARE_TOLERANCE
        found = within.any(axis=1)
        # Rows without a fit keep the closest so far, the answer if none ever fits.
        closest = np.argmin(error, axis=1)
        rows = np.arange(pending.size)
        better = error[rows, closest] < best_error[pending]
        result[pending[better]] = weights[rows[better], closest[better]]
        best_error[pending[better]] = error[rows[better], closest[better]]
        first_fit = np.argmax(within, axis=1)
        result[pending[found]] = weights[rows[found], first_fit[found]]
        pending = pending[~found]
        if pending.size == 0:
            break
    divisor = np.gcd.reduce(result, axis=1)
    return (result // divisor[:, None]).reshape(np.shape(shares))


def _checked_shares(shares: np.ndarray) -> np.ndarray:
    values = np.asarray(shares, dtype=np.float64)
    if values.ndim == 0 or np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ActionError(f"shares must be finite and positive, got {plain(shares)}")
    batch = values.reshape(-1, values.shape[-1])
    return batch / batch.sum(axis=1, keepdims=True)


@njit(cache=True)
def _smallest_weights(shares: np.ndarray, tolerance: float) -> np.ndarray:
    rows, n_nodes = shares.shape
    result = np.ones((rows, n_nodes), dtype=np.int64)
    weights = np.empty(n_nodes, dtype=np.int64)
    for row in range(rows):
        best_error = np.inf
        for total in range(n_nodes, MAX_WEIGHT * n_nodes + 1):
            weight_sum = 0
            for node in range(n_nodes):
                weight = np.rint(shares[row, node] * total)
                weights[node] = min(max(int(weight), MIN_WEIGHT), MAX_WEIGHT)
                weight_sum += weights[node]
            error = 0.0
            for node in range(n_nodes):
                error = max(error, abs(weights[node] / weight_sum / shares[row, node] - 1.0))
            if error < best_error:
                best_error = error
                result[row] = weights
            if error <= tolerance:
                result[row] = weights
                break
        divisor = result[row, 0]
        for node in range(1, n_nodes):
            a, b = divisor, result[row, node]
            while b:
                a, b = b, a % b
            divisor = a
        result[row] //= divisor
    return result


def action_to_weights(action: np.ndarray | list[float], n_nodes: int) -> np.ndarray:
    """Interleave weights (int64, 1..255 per node) for ``action``; works on a batch of actions
    (shape (..., n_nodes)) too."""
    return shares_to_weights(action_to_shares(action, n_nodes))


def weights_to_shares(weights: np.ndarray | list[int]) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64)
    return values / values.sum(axis=-1, keepdims=True)


def weights_to_action(weights: np.ndarray | list[int]) -> np.ndarray:
    """The centred action (float32, in [-1, 1]) whose weights are ``weights``: the inverse of
    ``action_to_weights`` for weights it can produce (baselines act through it)."""
    values = np.asarray(weights, dtype=np.float64)
    if values.ndim == 0 or np.any(values < MIN_WEIGHT) or np.any(values > MAX_WEIGHT):
        raise ActionError(f"weights must be in {MIN_WEIGHT}..{MAX_WEIGHT}, got {plain(weights)}")
    logs = np.log(values) / LOG_RATIO_PER_UNIT
    centre = (logs.max(axis=-1, keepdims=True) + logs.min(axis=-1, keepdims=True)) / 2
    return np.clip(logs - centre, ACTION_LOW, ACTION_HIGH).astype(np.float32)


# The optional extra action dimension: the DAMOS migrate_hot quota, log-spaced.
QUOTA_MIN_BYTES_PER_S = 16 << 20
QUOTA_MAX_BYTES_PER_S = 2 << 30


def action_to_quota(value: float) -> int:
    """DAMOS quota in bytes/s for the quota action dimension: -1 → 16 MiB/s, 1 → 2 GiB/s,
    log-spaced (finite values outside [-1, 1] are clipped)."""
    checked = float(check_action(np.array([value]), 1)[0])
    fraction = (checked - ACTION_LOW) / (ACTION_HIGH - ACTION_LOW)
    low, high = math.log(QUOTA_MIN_BYTES_PER_S), math.log(QUOTA_MAX_BYTES_PER_S)
    return round(math.exp(low + fraction * (high - low)))


def weights_mapping() -> dict[str, object]:
    """What an exported policy's sidecar records of ``action_to_weights`` (its constants); a
    loader refuses a sidecar whose record differs from this tierenv's."""
    return {
        "name": "tierenv.contracts.actions.action_to_weights",
        "LOG_RATIO_PER_UNIT": LOG_RATIO_PER_UNIT,
        "SHARE_TOLERANCE": SHARE_TOLERANCE,
        "ACTION_LOW": ACTION_LOW,
        "ACTION_HIGH": ACTION_HIGH,
    }


def quota_mapping() -> dict[str, object]:
    """What an exported policy's sidecar records of ``action_to_quota``, as ``weights_mapping``."""
    return {
        "name": "tierenv.contracts.actions.action_to_quota",
        "QUOTA_MIN_BYTES_PER_S": QUOTA_MIN_BYTES_PER_S,
        "QUOTA_MAX_BYTES_PER_S": QUOTA_MAX_BYTES_PER_S,
    }
