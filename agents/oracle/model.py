"""The modelled reward term the oracles optimise: weighted speedup from the project's solver.

Every oracle evaluates candidate access splits with ``tierenv.hardware.solver.solve``, the
function the simulated host calls, with the interval's load (``AppLoad``) and no migration
copy traffic; weighted speedup is Σ throughput / alone, the reward's throughput term.
"""

from __future__ import annotations

import warnings

import numpy as np

from tierenv.contracts.actions import weights_to_shares
from tierenv.hardware.solver import NodeSet, combine_background, solve
from tierenv.memory.interleave import interleave_targets
from tierenv.sim.host import AppLoad, FixedLoad

#: Slack when asking whether k pages give a share p (rounding in cumulative sums).
SHARE_SLACK = 1e-9


def modelled_speedup(
    nodes: NodeSet,
    apps: tuple[AppLoad, ...],
    split: np.ndarray,
    background_gbps: np.ndarray | None = None,
    background_read_fraction: np.ndarray | float = 1.0,
    fixed: FixedLoad | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted speedup (B,) of the apps that count in the reward and throughput (B, apps)
    for a batch of access splits ``split`` (B, apps, nodes), solved in one call; optional
    migration copy traffic ``background_gbps`` (B, nodes) with its read fraction (as the host
    passes it) and the load no policy places (``fixed``: bound co-runners and open-loop
    traffic, as the host adds them)."""
    split = np.asarray(split, dtype=float)
    batch = split.shape[0]
    if not apps or batch == 0:
        return np.zeros(batch), np.zeros((batch, len(apps)))
    n_apps, n_nodes = len(apps), len(nodes)
    mlp = np.array([a.mlp for a in apps])
    think = np.array([a.think_ns for a in apps])
    reads = np.array([a.read_fraction for a in apps])
    alone = np.array([a.alone_gbps for a in apps])
    counted = np.array([a.in_reward for a in apps], dtype=bool)
    split = np.clip(split, 0.0, None)
    split = split / split.sum(axis=-1, keepdims=True)
    if fixed is not None and not fixed.empty:
        mlp = np.concatenate([mlp, fixed.mlp])
        think = np.concatenate([think, fixed.think_ns])
        reads = np.concatenate([reads, fixed.read_fraction])
        bound = np.zeros((batch, fixed.n_streams, n_nodes))
        bound[:, np.arange(fixed.n_streams), fixed.node] = 1.0
        split = np.concatenate([split, bound], axis=1)
        copies = np.zeros((batch, n_nodes)) if background_gbps is None else background_gbps
        copies = np.broadcast_to(np.asarray(copies, dtype=float), (batch, n_nodes))
        copy_reads = np.broadcast_to(
            np.asarray(background_read_fraction, dtype=float), (batch, n_nodes)
        )
        background_gbps, background_read_fraction = combine_background(
            copies, copy_reads, fixed.traffic_gbps, fixed.traffic_read_fraction
        )
    n_streams = mlp.size
    with warnings.catch_warnings():
        # Hundreds of candidates, some deep in saturation: a rare unconverged one is still a
        # close estimate and must not flood the output.
        warnings.simplefilter("ignore", RuntimeWarning)
        solution = solve(
            nodes,
            np.broadcast_to(mlp, (batch, n_streams)),
            np.broadcast_to(think, (batch, n_streams)),
            np.broadcast_to(reads, (batch, n_streams)),
            split,
            background_gbps=background_gbps,
            background_read_fraction=background_read_fraction,
        )
    throughput = solution.throughput_gbps[:, :n_apps]
    return np.sum(np.where(counted, throughput / alone, 0.0), axis=-1), throughput


def cumulative_shares(app: AppLoad) -> np.ndarray:
    """``c[k]`` = the largest access share any k resident pages of ``app`` take (its k
    hottest), k = 0..touched; the shares are those of resident pages, renormalised as the
    host's access split is."""
    shares = np.asarray(app.page_shares[: app.touched_pages], dtype=float)
    total = shares.sum()
    ordered = np.sort(shares)[::-1] / (total if total > 0 else 1.0)
    return np.concatenate(([0.0], np.cumsum(ordered)))


def pages_needed(cumulative: np.ndarray, share: np.ndarray) -> np.ndarray:
    """The fewest pages that can carry access share ``share`` (hottest first): the inverse
    of ``cumulative_shares``; a share above 1 needs more pages than exist."""
    return np.searchsorted(cumulative, np.asarray(share) - SHARE_SLACK, side="left")


def capacity_limits(apps: tuple[AppLoad, ...], capacity_pages: np.ndarray) -> np.ndarray:
    """(apps, nodes) the highest access share each app can have on each node if the node's
    capacity is split between the apps in proportion to their resident pages (all of it to
    each when their pages fit): the oracles' model of capacity for shared weights."""
    touched = np.array([a.touched_pages for a in apps], dtype=float)
    total = max(touched.sum(), 1.0)
    limits = np.ones((len(apps), len(capacity_pages)))
    for i, capacity in enumerate(capacity_pages):
        room = touched if total <= capacity else np.floor(capacity * touched / total).astype(float)
        for a, app in enumerate(apps):
            cumulative = cumulative_shares(app)
            limits[a, i] = cumulative[int(min(room[a], app.touched_pages))]
    return limits


def clip_to_capacity(shares: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Access splits (B, apps, nodes) for node shares ``shares`` (B, nodes): each app's split
    is the shares with every node capped at its capacity limit and the excess moved to the
    nodes with room, in proportion to their shares (two nodes: exact)."""
    shares = np.asarray(shares, dtype=float)
    split = np.broadcast_to(shares[:, None, :], (shares.shape[0], *limits.shape))
    return clip_splits_to_capacity(split, limits)


def clip_splits_to_capacity(splits: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """``clip_to_capacity`` for per-application splits (B, apps, nodes)."""
    split = np.array(splits, dtype=float)
    for _ in range(limits.shape[1]):
        over = np.clip(split - limits, 0.0, None)
        excess = over.sum(axis=-1, keepdims=True)
        if not np.any(excess > 0):
            break
        split = split - over
        room = np.clip(limits - split, 0.0, None)
        headroom = np.where(room > 0, split + 1e-12, 0.0)
        weight = headroom / np.maximum(headroom.sum(axis=-1, keepdims=True), 1e-300)
        split = split + np.minimum(excess * weight, room)
    return split / split.sum(axis=-1, keepdims=True)


class PlacementSplits:
    """Each application's access split under every weight choice with each resident page
    where that choice's weighted interleave puts it: page p on ``interleave_targets(index[p],
    nodes, weights)``, as first touch and DAMOS dests place it in the simulator.

    The weights' node shares are not the split: a node gets runs of pages as long as its
    weight, so with weights such as 250:16:1:1 and a working set of a few hundred pages the
    hot pages land wherever the interleave cycle happens to fall (the DP oracle scored choices
    by their shares and lost up to 7 % to the best static weights on drawn four-node
    scenarios). Applications without page indices fall back to the shares."""

    def __init__(self, choices: np.ndarray) -> None:
        self.choices = np.asarray(choices, dtype=np.int64)
        self._shares = weights_to_shares(self.choices)
        self._nodes: dict[str, np.ndarray] = {}  # app -> (K, pages) node of each page
        # (app, shares identity) -> (shares, (K, nodes, pages + 1) cumulative split)
        self._cumulative: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, apps: tuple[AppLoad, ...]) -> np.ndarray:
        """(K, apps, nodes) access splits over the apps' resident pages."""
        n_choices, n_nodes = self.choices.shape
        out = np.empty((n_choices, len(apps), n_nodes))
        for a, app in enumerate(apps):
            if app.interleave_index is None or app.touched_pages == 0:
                out[:, a] = self._shares
                continue
            cumulative = self._cumulative_split(app)
            split = cumulative[:, :, app.touched_pages]
            total = split.sum(axis=1, keepdims=True)
            out[:, a] = np.where(total > 0, split / np.where(total > 0, total, 1.0), self._shares)
        return out

    def _cumulative_split(self, app: AppLoad) -> np.ndarray:
        assert app.interleave_index is not None
        base = app.page_shares.base if app.page_shares.base is not None else app.page_shares
        key = (app.name, id(base))
        cached = self._cumulative.get(key)
        if cached is not None and cached[0] is base:
            return cached[1]
        nodes = self._nodes.get(app.name)
        if nodes is None or nodes.shape[1] != app.interleave_index.size:
            node_ids = np.arange(self.choices.shape[1])
            nodes = np.stack(
                [interleave_targets(app.interleave_index, node_ids, w) for w in self.choices]
            )
            self._nodes[app.name] = nodes
        shares = np.asarray(app.page_shares, dtype=float)
        per_node = np.stack(
            [np.where(nodes == n, shares[None, :], 0.0) for n in range(self.choices.shape[1])],
            axis=1,
        )  # (K, nodes, pages)
        cumulative = np.concatenate(
            [np.zeros((*per_node.shape[:2], 1)), np.cumsum(per_node, axis=2)], axis=2
        )
        if len(self._cumulative) > 256:  # many hot-set moves: keep memory bounded
            self._cumulative.clear()
        self._cumulative[key] = (base, cumulative)  # the array is kept: its id stays unique
        return cumulative
