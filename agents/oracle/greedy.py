"""``OracleGreedy``: each interval, the global weights that maximise the next interval's
modelled weighted speedup, with full knowledge of that interval's load.

Assumes:
- every application's access split equals the weights' node shares (DAMOS ``migrate_hot``
  interleaves hot pages by the weights and new pages are allocated by them), capped where a
  node's capacity cannot hold that share of an app's accesses (``clip_to_capacity``: the
  node's room shared between apps by resident pages, hottest pages first). That holds when
  the interleave's runs of pages (as long as each weight) are short against the working set;
  with long runs over a small set the pages' real placement differs (``OracleDP`` models it,
  ``agents.oracle.model.PlacementSplits``; this search over continuous shares does not);
- placement follows at once: no migration lag (DAMOS's quota) and no copy traffic; the
  migration cost term is ignored.
It is "greedy" because it never weighs a change's migration cost against later gains
(``OracleDP`` does). Two nodes: a 1-D search over node 0's share in [1/256, 255/256] (the
weights' range), on a grid uniform in log-ratio refined twice around the best point. More
nodes: the best of the discrete weight grid (``weight_grid(n, levels)``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError
from agents.oracle.model import capacity_limits, clip_to_capacity, modelled_speedup
from agents.oracle.timeline import LoadTimeline, load_timeline
from tierenv.contracts.actions import shares_to_weights, weights_to_shares
from tierenv.contracts.measurements import Measurements
from tierenv.envs.discrete import default_levels, weight_grid
from tierenv.hardware.solver import NodeSet
from tierenv.memory.interleave import MAX_WEIGHT, MIN_WEIGHT
from tierenv.sim.host import AppLoad, FixedLoad

__all__ = ["OracleGreedy", "best_shares"]

GRID_POINTS = 65
REFINE_POINTS = 33
REFINE_ROUNDS = 2


def best_shares(
    nodes: NodeSet,
    apps: tuple[AppLoad, ...],
    capacity_pages: np.ndarray,
    levels: int | None,
    fixed: FixedLoad | None = None,
) -> tuple[np.ndarray, float]:
    """The node shares with the highest modelled weighted speedup for ``apps`` (splits =
    shares, capped by capacity) beside the ``fixed`` load, and that speedup."""
    n_nodes = len(nodes)
    if not apps:
        return np.full(n_nodes, 1.0 / n_nodes), 0.0
    limits = capacity_limits(apps, capacity_pages)

    def evaluate(shares: np.ndarray) -> np.ndarray:
        return modelled_speedup(nodes, apps, clip_to_capacity(shares, limits), fixed=fixed)[0]

    if n_nodes != 2:
        grid_levels = default_levels(n_nodes) if levels is None else levels
        shares = weights_to_shares(weight_grid(n_nodes, grid_levels)[0])
        values = evaluate(shares)
        best = int(np.argmax(values))
        return shares[best], float(values[best])
    edge = np.log(MAX_WEIGHT / MIN_WEIGHT)
    low, high = -edge, edge
    points = GRID_POINTS
    best_ratio, best_value = 0.0, -np.inf
    for _ in range(REFINE_ROUNDS + 1):
        ratios = np.linspace(low, high, points)
        shares0 = 1.0 / (1.0 + np.exp(-ratios))
        values = evaluate(np.stack([shares0, 1.0 - shares0], axis=1))
        # Ties come from capacity caps (asking for more of a full node changes nothing in the
        # model): take the highest node-0 share, which pushes the hottest pages hardest.
        best = int(np.flatnonzero(values >= values.max() - 1e-12)[-1])
        if values[best] >= best_value:
            best_ratio, best_value = float(ratios[best]), float(values[best])
        spacing = (high - low) / (points - 1)
        low, high = max(best_ratio - spacing, -edge), min(best_ratio + spacing, edge)
        points = REFINE_POINTS
    share0 = 1.0 / (1.0 + np.exp(-best_ratio))
    return np.array([share0, 1.0 - share0]), best_value


class OracleGreedy(Controller):
    """Per-interval best global weights under the modelled split (see the module docstring)."""

    kind: ClassVar[str] = "oracle-greedy"
    privileged: ClassVar[bool] = True

    def __init__(self, levels: int | None = None) -> None:
        if levels is not None and levels < 2:
            raise ControllerError(
                f"oracle-greedy: parameter levels must be at least 2, got {levels}"
            )
        self.levels = levels

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        assert context.scenario is not None  # Controller.reset refuses a privileged one without
        self.timeline: LoadTimeline = load_timeline(context.scenario, seed=context.seed or 0)
        timeline = self.timeline
        n_nodes = context.nodes.n_nodes
        levels = default_levels(n_nodes) if self.levels is None else self.levels
        by_load = {
            key: best_shares(
                timeline.nodes,
                timeline.loads[intervals[0]],
                timeline.free_capacity_pages(intervals[0]),
                levels,
                timeline.fixed_load(intervals[0]),
            )
            for key, intervals in timeline.distinct().items()
        }
        self.shares = np.array([by_load[key][0] for key in self.timeline.keys])
        self.modelled = np.array([by_load[key][1] for key in self.timeline.keys])
        unique, inverse = np.unique(self.shares, axis=0, return_inverse=True)
        self.schedule = shares_to_weights(unique)[inverse.reshape(-1)].astype(np.int64)

    def decide(self, measurements: Measurements) -> np.ndarray:
        return self.schedule[_next_interval(measurements, self.context, len(self.schedule))].copy()


def _next_interval(measurements: Measurements, context: ControlContext, n: int) -> int:
    """Index of the interval the decision is for: the one starting at ``time_s``."""
    return min(max(round(measurements.time_s / context.interval_s), 0), n - 1)
