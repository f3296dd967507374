"""``upper_bound``: the per-interval optimum with full knowledge and free placement.

For every control interval t, OPT_t is the largest weighted speedup (the reward's throughput
term, Σ throughput / alone) over *per-application* access splits across the nodes, solved with
the project's ``solve`` at interval t's load (``load_timeline``). Σ_t OPT_t bounds the
throughput term of every policy, because it assumes:

- free, instantaneous placement: any split is available at once, whatever the previous one;
- migration copy traffic at its most favourable: copies load the nodes (reads at the
  source, writes at the destination) and usually only slow the applications, but a node's
  capacity depends on its read/write mix, so a little copy traffic can raise the weighted
  speedup (by ~1e-4 in co-runner). The bound therefore also maximises over the pages moved in
  the interval, node to node, up to what DAMOS can move: per running application its quota
  for every quota window the interval touches (``ceil(interval / window) + 1``), at most its
  resident bytes (``damos`` gives the setup, the env's default unless given; a larger quota
  set through the env's quota action needs a matching ``damos``); copies become node traffic
  by the host's own ``MigrationCost.background``;
- per-application splits: global weights, allocation timing and DAMOS can only produce some
  of these, so the bound covers them all;
- capacity through necessary conditions only: an access share p on node i needs at least
  m_a(p) of app a's resident pages there (its hottest first: the inverse of its cumulative
  sorted access shares), Σ_a m_a(p_{a,i}) ≤ capacity_i on every node, and
  Σ_i m_a(p_{a,i}) ≤ the app's resident pages (the nodes hold disjoint pages).

Search: a grid over every app's split at zero copy traffic (a simplex grid of ``resolution``
steps per app, coarsened until the product over apps has at most ``max_grid`` points), then
local refinement from the best feasible point, moving share δ between two nodes for one app or
swapping δ of one node between two apps; then the best of a small grid of copy volumes at that
split, and a joint refinement that also changes one node-to-node copy volume by δ of its
maximum; δ halves down to ``min_step``, and a move that leaves the feasible set is shortened by
bisection to its boundary (capacity optima sit there). Works for n nodes; the grid has
C(resolution + n − 1, n − 1) points per app, so many nodes and many apps get a coarse grid and
lean on the refinement (2 nodes is the shipped case and the one the tests check against runs).
The result is the best point found: a local search of a smooth function, so it can fall short
of the exact maximum by about the refinement's tolerance where the optimum is interior.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from agents.oracle.model import cumulative_shares, modelled_speedup, pages_needed
from agents.oracle.timeline import LoadTimeline, load_timeline
from tierenv.hardware.solver import NodeSet
from tierenv.memory.migration_cost import MigrationCost
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import AppLoad, FixedLoad
from tierenv.workload.scenario import Scenario

__all__ = ["IntervalBound", "UpperBound", "interval_bound", "max_moved_bytes", "upper_bound"]


@dataclass(frozen=True)
class IntervalBound:
    value: float  # the best weighted speedup found
    split: np.ndarray  # (apps, nodes) the access split reaching it
    moved_bytes: np.ndarray  # (nodes, nodes) copies in the interval at the optimum


@dataclass(frozen=True)
class UpperBound:
    """Per-interval optimum of the reward's throughput term over a scenario."""

    values: np.ndarray  # (intervals,)
    splits: tuple[np.ndarray, ...]  # per interval, (apps, nodes)
    app_names: tuple[tuple[str, ...], ...]

    @property
    def total(self) -> float:
        return float(self.values.sum())


def upper_bound(
    scenario: Scenario | LoadTimeline,
    damos: DamosSetup | None = None,
    resolution: int = 32,
    max_grid: int = 4096,
    min_step: float = 1e-7,
) -> UpperBound:
    """OPT_t for every interval of ``scenario`` (or of a precomputed timeline)."""
    timeline = scenario if isinstance(scenario, LoadTimeline) else load_timeline(scenario)
    damos = damos or DamosSetup.for_scenario(timeline.scenario)
    nodes = timeline.nodes
    page_size, interval_s = timeline.scenario.page_size, timeline.interval_s
    values = np.zeros(timeline.n_intervals)
    splits: list[np.ndarray | None] = [None] * timeline.n_intervals
    for intervals in timeline.distinct().values():
        apps = timeline.loads[intervals[0]]
        found = interval_bound(
            nodes,
            apps,
            timeline.free_capacity_pages(intervals[0]),
            page_size=page_size,
            interval_s=interval_s,
            max_moved_bytes=max_moved_bytes(apps, damos, page_size, interval_s),
            resolution=resolution,
            max_grid=max_grid,
            min_step=min_step,
            fixed=timeline.fixed_load(intervals[0]),
        )
        for t in intervals:
            values[t] = found.value
            splits[t] = found.split
    names = tuple(timeline.app_names(t) for t in range(timeline.n_intervals))
    found_splits = tuple(split for split in splits if split is not None)
    assert len(found_splits) == len(splits)  # the distinct loads cover every interval
    return UpperBound(values, found_splits, names)


def max_moved_bytes(
    apps: tuple[AppLoad, ...], damos: DamosSetup, page_size: int, interval_s: float
) -> float:
    """The most DAMOS can migrate in one interval for ``apps`` (one kdamond each)."""
    total = 0.0
    for app in apps:
        resident = float(app.touched_pages * page_size)
        if damos.enabled and damos.quota_bytes > 0:
            windows = math.ceil(interval_s * 1000.0 / damos.quota_reset_interval_ms) + 1
            total += min(resident, float(damos.quota_bytes * windows))
        elif damos.enabled:
            total += resident
    return total


def interval_bound(
    nodes: NodeSet,
    apps: tuple[AppLoad, ...],
    capacity_pages: np.ndarray,
    page_size: int = 2 << 20,
    interval_s: float = 1.0,
    max_moved_bytes: float = 0.0,
    resolution: int = 32,
    max_grid: int = 4096,
    min_step: float = 1e-7,
    fixed: FixedLoad | None = None,
) -> IntervalBound:
    """OPT for one interval's load (see the module docstring) beside the ``fixed`` load no
    policy places; ``max_moved_bytes`` bounds the interval's migrations (0: no copy
    traffic)."""
    n_nodes = len(nodes)
    if not apps:
        return IntervalBound(0.0, np.zeros((0, n_nodes)), np.zeros((n_nodes, n_nodes)))
    problem = _Problem(nodes, apps, np.asarray(capacity_pages), page_size, interval_s, fixed)
    problem.max_moved = float(max_moved_bytes)
    n_split = len(apps) * n_nodes
    steps = resolution
    while steps > 1 and math.comb(steps + n_nodes - 1, n_nodes - 1) ** len(apps) > max_grid:
        steps -= 1
    per_app = _simplex_grid(n_nodes, max(steps, 1))
    combos = np.array(list(itertools.product(range(len(per_app)), repeat=len(apps))))
    grid = per_app[combos].reshape(len(combos), n_split)
    candidates = np.hstack([grid, np.zeros((len(grid), problem.n_moved))])
    candidates = candidates[problem.feasible(candidates)]
    if len(candidates) == 0:  # the grid misses a narrow feasible set: start from its edge
        candidates = problem.fallback()[None]
    values = problem.evaluate(candidates)
    best = int(np.argmax(values))
    point, value = candidates[best], float(values[best])
    unit = _moves(len(apps), n_nodes)
    split_moves = np.hstack([unit, np.zeros((len(unit), problem.n_moved))])
    point, value = _refine(problem, point, value, split_moves, 1.0 / max(steps, 1), min_step)
    if problem.max_moved > 0 and problem.n_moved:
        levels = np.linspace(0.0, 1.0, 5)
        if len(levels) ** problem.n_moved <= max_grid:
            volumes = np.array(list(itertools.product(levels, repeat=problem.n_moved)))
        else:  # many nodes: no copies, or one node pair's at a few volumes
            units = np.eye(problem.n_moved)
            volumes = np.vstack([np.zeros(problem.n_moved), *(units * v for v in levels[1:])])
        trials = np.hstack([np.repeat(point[None, :n_split], len(volumes), 0), volumes])
        trials = trials[problem.feasible(trials)]
        values = problem.evaluate(trials)
        if values.max() > value:
            point, value = trials[int(np.argmax(values))], float(values.max())
        copies = np.eye(problem.n_moved)
        all_moves = np.vstack([split_moves, np.hstack([np.zeros((len(copies), n_split)), copies])])
        all_moves = np.vstack([all_moves, -all_moves[len(split_moves) :]])
        point, value = _refine(problem, point, value, all_moves, 0.25, min_step)
    split = point[:n_split].reshape(len(apps), n_nodes)
    return IntervalBound(value, split, problem.moved_matrix(point[None])[0])


def _simplex_grid(n_nodes: int, steps: int) -> np.ndarray:
    """All splits over ``n_nodes`` in multiples of 1/steps (node 0's share descending)."""
    points = [c for c in itertools.product(range(steps + 1), repeat=n_nodes) if sum(c) == steps]
    return np.array(sorted(points, reverse=True), dtype=float) / steps


class _Problem:
    """The search space: flat points (apps·nodes split entries, then the off-diagonal
    node-to-node copy volumes as fractions of ``max_moved``), their feasibility and value."""

    def __init__(self, nodes, apps, capacity_pages, page_size, interval_s, fixed) -> None:
        self.nodes, self.apps, self.fixed = nodes, apps, fixed
        self.n_nodes = len(nodes)
        self.cumulative = [cumulative_shares(a) for a in apps]
        self.touched = np.array([a.touched_pages for a in apps])
        self.capacity = capacity_pages
        self.page_size, self.interval_s = page_size, interval_s
        self.off_diagonal = ~np.eye(self.n_nodes, dtype=bool)
        self.n_moved = int(self.off_diagonal.sum())
        self.n_split = len(apps) * self.n_nodes
        self.max_moved = 0.0

    def splits(self, points: np.ndarray) -> np.ndarray:
        return points[:, : self.n_split].reshape(-1, len(self.apps), self.n_nodes)

    def moved_matrix(self, points: np.ndarray) -> np.ndarray:
        """(B, nodes, nodes) bytes moved from row to column node."""
        moved = np.zeros((len(points), self.n_nodes, self.n_nodes))
        moved[:, self.off_diagonal] = points[:, self.n_split :] * self.max_moved
        return moved

    def feasible(self, points: np.ndarray) -> np.ndarray:
        splits = self.splits(points)
        pages = np.stack(
            [pages_needed(c, splits[:, a, :]) for a, c in enumerate(self.cumulative)], axis=1
        )
        fits_nodes = np.all(pages.sum(axis=1) <= self.capacity, axis=-1)
        fits_apps = np.all(pages.sum(axis=2) <= self.touched, axis=-1)
        volumes = points[:, self.n_split :]
        copies_ok = np.all(volumes >= 0, axis=-1) & (volumes.sum(axis=-1) <= 1 + 1e-12)
        return fits_nodes & fits_apps & copies_ok & np.all(splits >= -1e-15, axis=(1, 2))

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        if self.max_moved <= 0:
            return modelled_speedup(self.nodes, self.apps, self.splits(points), fixed=self.fixed)[0]
        # Whole pages: what the host turns into traffic.
        moved_pages = self.moved_matrix(points) / self.page_size
        background, reads = MigrationCost().background(moved_pages, self.page_size, self.interval_s)
        return modelled_speedup(
            self.nodes, self.apps, self.splits(points), background, reads, fixed=self.fixed
        )[0]

    def fallback(self) -> np.ndarray:
        """A feasible point: each app's pages spread over the nodes by capacity, no copies."""
        share = self.capacity / self.capacity.sum()
        split = np.repeat(share[None], len(self.apps), axis=0).astype(float).ravel()
        return np.concatenate([split, np.zeros(self.n_moved)])


def _moves(n_apps: int, n_nodes: int) -> np.ndarray:
    """Unit split moves (K, apps·nodes): one app shifts share from node j to node i, or two
    apps swap share on a pair of nodes (moves along a shared capacity limit)."""
    moves = []
    for a in range(n_apps):
        for i, j in itertools.permutations(range(n_nodes), 2):
            move = np.zeros((n_apps, n_nodes))
            move[a, i], move[a, j] = 1.0, -1.0
            moves.append(move.ravel())
    for a, b in itertools.permutations(range(n_apps), 2):
        for i, j in itertools.permutations(range(n_nodes), 2):
            move = np.zeros((n_apps, n_nodes))
            move[a, i], move[a, j], move[b, i], move[b, j] = 1.0, -1.0, -1.0, 1.0
            moves.append(move.ravel())
    return np.array(moves).reshape(len(moves), n_apps * n_nodes)


def _refine(problem, point, value, moves, step, min_step):
    """Pattern search from ``point``: try every move of size ``step``; take the best that
    improves, else halve ``step``."""
    while step >= min_step:
        trials = _feasible_moves(problem, point, moves, step, min_step)
        if len(trials) == 0:
            step /= 2
            continue
        values = problem.evaluate(trials)
        best = int(np.argmax(values))
        if values[best] > value + 1e-13:
            point, value = trials[best], float(values[best])
        else:
            step /= 2
    return point, value


def _feasible_moves(problem, point, moves, step, min_step) -> np.ndarray:
    """``point + t·move`` with t = ``step`` where feasible, else the largest feasible t
    (bisection: along a move the conditions hold on an interval starting at 0). Moves that
    reach less than ``min_step`` are dropped: along a capacity boundary such slivers each
    gain ~1e-12 and would keep the search zigzagging at one step size for hours."""
    # No entry below zero: shorten the move to what the losing entries hold.
    losing = np.where(moves < 0, point[None] / np.maximum(-moves, 1e-300), np.inf)
    reach = np.minimum(step, losing.min(axis=1))
    useful = reach >= min_step
    moves, reach = moves[useful], reach[useful]
    trials = point[None] + reach[:, None] * moves
    ok = problem.feasible(trials)
    if not np.all(ok):
        low, high = np.zeros(int((~ok).sum())), reach[~ok]
        bad_moves = moves[~ok]
        for _ in range(50):
            middle = (low + high) / 2
            fits = problem.feasible(point[None] + middle[:, None] * bad_moves)
            low, high = np.where(fits, middle, low), np.where(fits, high, middle)
        trials[~ok] = point[None] + low[:, None] * bad_moves
        keep = np.ones(len(trials), dtype=bool)
        keep[np.flatnonzero(~ok)[low < min_step]] = False
        trials = trials[keep]
    return np.clip(trials, 0.0, None)
