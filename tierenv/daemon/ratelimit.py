"""Limit how far the weight *shares* may move in one control interval.

Why shares: weights [2, 1] and [6, 3] place pages identically, so a limit on raw weights would
be meaningless. A node's share is ``w[i] / sum(w)``, the fraction of new pages (and of DAMOS
migration destinations) it receives. ``limit_shares(current, asked, max_change)`` returns
integer weights whose shares differ from the current ones by at most ``max_change`` (absolute,
e.g. 0.1 = 10 percentage points) on every node: the step is taken along the straight line from
the current to the asked shares, as far as the limit allows, then turned back into integer
weights (1..255). A sudden policy swing thus becomes a ramp over several intervals, which
bounds the migration traffic a single bad decision can cause.
"""

from __future__ import annotations

import numpy as np

MAX_WEIGHT = 255


def shares(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def share_change(a: np.ndarray, b: np.ndarray) -> float:
    """The largest per-node change of share between two weight vectors."""
    return float(np.max(np.abs(shares(a) - shares(b))))


def to_weights(target: np.ndarray) -> np.ndarray:
    """Integer weights 1..255 approximating the shares ``target`` (largest share -> 255)."""
    scaled = np.rint(target / target.max() * MAX_WEIGHT)
    return np.clip(scaled, 1, MAX_WEIGHT).astype(np.int64)


def limit_shares(current: np.ndarray, asked: np.ndarray, max_change: float) -> np.ndarray:
    """``asked`` if its shares are within ``max_change`` of ``current``'s, else the farthest
    step towards it that is (found by bisection, so integer rounding never breaks the limit)."""
    if not max_change > 0:
        raise ValueError(f"max_change_per_interval must be > 0, got {max_change}")
    current = np.asarray(current, dtype=np.int64)
    asked = np.asarray(asked, dtype=np.int64)
    if share_change(current, asked) <= max_change:
        return asked.copy()
    start, end = shares(current), shares(asked)
    best, low, high = current.copy(), 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        candidate = to_weights(start + mid * (end - start))
        if share_change(current, candidate) <= max_change:
            best, low = candidate, mid
        else:
            high = mid
    return best
