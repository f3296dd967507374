"""The kernel's weighted-interleave arithmetic, shared by mempolicy and DAMOS ``dests``.

Both pick a page's node from its interleave index ``ilx`` (for an anonymous private mapping
the virtual folio number, ``vaddr // folio_size``) by ``target = ilx % Σw`` and a walk over
(node, weight) pairs that subtracts weights until ``target < weight``
(mm/mempolicy.c ``weighted_interleave_nid``; mm/damon/vaddr.c ``damos_va_migrate_dests_add``).
They differ in the walk order: mempolicy walks its nodemask in ascending node id, DAMOS walks
its ``dests`` array as given. The index itself: mm/mempolicy.c ``get_vma_policy``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import SupportsInt, TypeGuard

import numpy as np

MIN_WEIGHT = 1
MAX_WEIGHT = 255
# reduce_interleave_weights scales bandwidth shares to 1..32 before dividing by the gcd.
AUTO_WEIGHTINESS = 32


class WeightError(ValueError):
    """An interleave weight the kernel would refuse."""


def check_weights(
    weights: Sequence[int] | np.ndarray | Mapping[int, int], n_nodes: int
) -> np.ndarray:
    """Per-node mempolicy weights (int64, one per node), checked like sysfs ``nodeN`` writes.

    ``weights`` is a sequence of ``n_nodes`` integers or a mapping {node id: weight}; nodes
    missing from a mapping keep the kernel's default weight 1. Since 6.16 the kernel refuses
    0 and values above 255 (-EINVAL), so they are errors here too.
    """
    if isinstance(weights, Mapping):
        values = np.ones(n_nodes, dtype=np.int64)
        for node, weight in weights.items():
            if not _is_integer(node) or not 0 <= int(node) < n_nodes:
                raise WeightError(f"weight given for node {node!r}; nodes are 0..{n_nodes - 1}")
            values[int(node)] = _checked_weight(int(node), weight)
        return values
    if isinstance(weights, np.ndarray) and weights.ndim == 1 and weights.dtype.kind in "iu":
        # The common case (a policy's action array): checked without a Python loop.
        if weights.size != n_nodes:
            raise WeightError(f"expected {n_nodes} weights (one per node), got {weights.size}")
        bad = np.flatnonzero((weights < MIN_WEIGHT) | (weights > MAX_WEIGHT))
        if bad.size:
            _checked_weight(int(bad[0]), int(weights[bad[0]]))
        return weights.astype(np.int64)
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence | np.ndarray):
        raise WeightError(f"weights must be a sequence or a mapping, got {weights!r}")
    if len(weights) != n_nodes:
        raise WeightError(f"expected {n_nodes} weights (one per node), got {len(weights)}")
    return np.array([_checked_weight(i, w) for i, w in enumerate(weights)], dtype=np.int64)


def auto_weights(bandwidth_gbps: Sequence[float] | np.ndarray) -> np.ndarray:
    """The weights the kernel's auto mode derives from node bandwidths (6.16+).

    mm/mempolicy.c ``reduce_interleave_weights``: with integer MB/s bandwidths ``bw``,
    ``w = 32*bw // Σbw`` where ``Σbw < 32*bw`` and ``bw > 0``, else 1; then all weights are
    divided by their gcd. 72 + 26 GB/s gives 23:8.
    """
    bandwidth = np.asarray(bandwidth_gbps, dtype=float)
    if bandwidth.ndim != 1 or bandwidth.size == 0:
        raise WeightError(f"bandwidth must be one number per node, got shape {bandwidth.shape}")
    bad = np.flatnonzero(~np.isfinite(bandwidth) | (bandwidth < 0))
    if bad.size:
        value = float(bandwidth[bad[0]])
        raise WeightError(f"bandwidth of node {bad[0]} is {value!r}; it must be finite and >= 0")
    bw = np.rint(bandwidth * 1000.0).astype(np.int64)  # GB/s -> MB/s, as HMAT reports
    total = int(bw.sum())
    scaled = AUTO_WEIGHTINESS * bw
    weights = np.where((bw > 0) & (total < scaled), scaled // max(total, 1), 1)
    return weights // math.gcd(*(int(w) for w in weights))


def interleave_targets(
    ilx: np.ndarray,
    node_ids: Sequence[int] | np.ndarray,
    weights: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Node id for each interleave index, walking (node_ids, weights) in the given order.

    Weights are non-negative integers (0 allowed: such a node is never chosen). If they sum
    to 0 every result is -1: DAMOS then migrates nothing.
    """
    ilx = np.asarray(ilx, dtype=np.int64)
    node_ids = np.asarray(node_ids, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.int64)
    if node_ids.shape != weights.shape or node_ids.ndim != 1:
        raise WeightError(
            f"need one weight per node: {node_ids.size} nodes, weights of shape {weights.shape}"
        )
    if np.any(weights < 0):
        raise WeightError(f"weights must be non-negative, got {weights.tolist()}")
    bounds = np.cumsum(weights)
    total = int(bounds[-1]) if bounds.size else 0
    if total == 0:
        return np.full(ilx.shape, -1, dtype=np.int64)
    # The walk stops at the first pair whose cumulative weight exceeds the target.
    return node_ids[np.searchsorted(bounds, ilx % total, side="right")]


def weighted_interleave_nid(
    ilx: np.ndarray,
    weights: Sequence[int] | np.ndarray,
    nodemask: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """mempolicy's node per interleave index: the nodemask's nodes in ascending id order.

    ``weights`` holds one sysfs weight per node (1..255); ``nodemask`` defaults to all nodes.
    """
    if isinstance(weights, Mapping):
        raise WeightError("weighted_interleave_nid needs one weight per node, not a mapping")
    table = check_weights(weights, len(weights))
    nodes = mask_nodes(nodemask, table.size)
    return interleave_targets(ilx, nodes, table[nodes])


def dests_nid(
    ilx: np.ndarray,
    dest_nodes: Sequence[int] | np.ndarray,
    dest_weights: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """DAMOS ``dests`` node per interleave index: the dests in array order (-1 if Σw = 0)."""
    return interleave_targets(ilx, dest_nodes, dest_weights)


def mask_nodes(nodemask: Sequence[int] | np.ndarray | None, n_nodes: int) -> np.ndarray:
    """The nodemask's node ids, ascending and unique (all nodes if None); must be non-empty."""
    if nodemask is None:
        return np.arange(n_nodes, dtype=np.int64)
    nodes = np.unique(np.asarray(nodemask, dtype=np.int64))
    if nodes.size == 0:
        raise ValueError("nodemask is empty; it must name at least one node")
    if nodes[0] < 0 or nodes[-1] >= n_nodes:
        raise ValueError(f"nodemask {nodes.tolist()} names nodes outside 0..{n_nodes - 1}")
    return nodes


def _is_integer(value: object) -> TypeGuard[SupportsInt]:
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()


def _checked_weight(node: int, weight: object) -> int:
    if not _is_integer(weight) or not MIN_WEIGHT <= int(weight) <= MAX_WEIGHT:
        # numpy scalars as plain numbers: "300", not "np.int64(300)"
        shown = weight.item() if isinstance(weight, np.generic) else weight
        raise WeightError(
            f"weight of node {node} is {shown!r}; the kernel accepts integers "
            f"{MIN_WEIGHT}..{MAX_WEIGHT}"
        )
    return int(weight)


def initial_weights(
    spec: str | Sequence[int], bandwidth_gbps: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Weights named by ``spec``: ``"auto"`` (the kernel's auto weights from node bandwidth),
    ``"uniform"`` (1 per node) or a list of integers 1..255, checked."""
    n_nodes = len(bandwidth_gbps)
    if isinstance(spec, str):
        if spec == "auto":
            return auto_weights(bandwidth_gbps)
        if spec == "uniform":
            return np.ones(n_nodes, dtype=np.int64)
        raise WeightError(
            f"initial_weights {spec!r}: use 'auto', 'uniform' or a list of {n_nodes} integers "
            "1..255"
        )
    return check_weights(list(spec), n_nodes)
