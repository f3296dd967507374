"""``OracleDP``: the best weight schedule on the discrete grid, trading throughput against
migration cost over the whole scenario (a switching-cost-aware oracle).

Dynamic programming over the choices (``weight_grid(n_nodes, levels)``, plus the initial
weights so that holding them is always possible) and the intervals 0..T−1 (the first decision
sets the weights interval 0's first pages are placed under, before anything is allocated)::

    V_t(k) = r_t(k) + max_k' [V_{t-1}(k') − c · bytes_t(k' → k)] / GiB,   V_0(k) = r_0(k)

Assumes (the model, not the simulator):
- r_t(k): the modelled weighted speedup at interval t's load with every resident page where
  choice k's weighted interleave puts it (``PlacementSplits``: a node gets runs of pages as
  long as its weight, so the access split is not the weights' node shares when runs are long
  against the working set), capped by capacity as ``OracleGreedy`` does; the placement is
  reached at once (no DAMOS lag: with the default 200 MiB/s quota a large change really
  takes tens of seconds, so the DP's value overestimates what following it earns; cold pages
  that DAMOS leaves behind after a switch are counted where k would put them);
- bytes_t(k' → k) = Σ over applications running in both t−1 and t of
  mismatch(k', k) × hot bytes_t(k, app), each capped at what the DAMOS quota can still move
  before the scenario ends (quota × remaining intervals): ``mismatch`` is the fraction of
  interleave indices whose node differs between the two weight vectors (DAMOS dests follow
  the page's interleave index, so 3:1 → 2:1 moves 5/12 of the pages, not |Δshare| = 1/12);
  the hot bytes are the resident pages DAMOS ``migrate_hot`` sees as hot: a page of access
  share s at the app's modelled throughput X is touched λ = s·X/64 B times a second and is
  hot when it is seen in at least ``min_access_percent`` of the samples (1 − e^{−λ·sample} ≥
  min_access_percent/100);
- applications starting in t are allocated under the new weights and migrate nothing; hot
  pages that appear by a hot-set move or a trace phase are not charged (their cost hardly
  depends on the weights); the copies' own memory traffic is not modelled.
``c`` is ``migration_cost_per_gib`` (the env's default unless given). The realised return is
what the simulator gives when the schedule is followed; ``value`` is the modelled one.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError
from agents.oracle.greedy import _next_interval
from agents.oracle.model import (
    PlacementSplits,
    capacity_limits,
    clip_splits_to_capacity,
    modelled_speedup,
)
from agents.oracle.timeline import LoadTimeline, load_timeline
from tierenv.contracts.measurements import Measurements
from tierenv.envs.discrete import default_levels, weight_grid
from tierenv.envs.reward import GiB
from tierenv.envs.weighted_interleave import DEFAULT_MIGRATION_COST_PER_GIB
from tierenv.memory.interleave import interleave_targets
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import AppLoad

__all__ = ["OracleDP", "OraclePhase", "interleave_mismatch"]

LINE_BYTES = 64.0
MISMATCH_INDICES = 1 << 15  # interleave indices compared (weight sums are at most 255·nodes)


def interleave_mismatch(weights: np.ndarray, n_indices: int = MISMATCH_INDICES) -> np.ndarray:
    """(K, K) fraction of interleave indices whose node differs between weight vectors."""
    weights = np.asarray(weights, dtype=np.int64)
    nodes = np.arange(weights.shape[1])
    indices = np.arange(n_indices)
    targets = np.stack([interleave_targets(indices, nodes, w) for w in weights])
    return np.array([np.mean(targets != row, axis=1) for row in targets])


class OracleDP(Controller):
    """The schedule maximising modelled Σ_t [weighted speedup − c·GiB migrated]."""

    kind: ClassVar[str] = "oracle-dp"
    privileged: ClassVar[bool] = True

    def __init__(
        self,
        migration_cost_per_gib: float | None = None,
        levels: int | None = None,
        damos: DamosSetup | None = None,
    ) -> None:
        if migration_cost_per_gib is not None and (
            not np.isfinite(migration_cost_per_gib) or migration_cost_per_gib < 0
        ):
            raise ControllerError(
                f"oracle-dp: parameter migration_cost_per_gib must be finite and >= 0, got "
                f"{migration_cost_per_gib!r}"
            )
        if levels is not None and levels < 2:
            raise ControllerError(f"oracle-dp: parameter levels must be at least 2, got {levels}")
        self._cost_given = migration_cost_per_gib
        self._damos_given = damos
        self.migration_cost_per_gib = (
            DEFAULT_MIGRATION_COST_PER_GIB
            if migration_cost_per_gib is None
            else float(migration_cost_per_gib)
        )
        self.levels = levels
        self.damos = damos or DamosSetup()

    def describe(self) -> str:
        return f"{self.kind}(c={self.migration_cost_per_gib:g})"

    def reset(self, context: ControlContext) -> None:
        # Unless given, the reward's coefficient and the host's DAMOS setup come from the
        # context, so the schedule optimises the reward the env actually pays.
        if self._cost_given is None and context.migration_cost_per_gib is not None:
            self.migration_cost_per_gib = float(context.migration_cost_per_gib)
        if self._damos_given is None and context.damos is not None:
            self.damos = context.damos
        super().reset(context)
        assert context.scenario is not None  # Controller.reset refuses a privileged one without
        self.timeline: LoadTimeline = load_timeline(context.scenario, seed=context.seed or 0)
        n_nodes = context.nodes.n_nodes
        levels = default_levels(n_nodes) if self.levels is None else self.levels
        grid = weight_grid(n_nodes, levels)[0]
        initial = np.asarray(context.initial_weights, dtype=np.int64)
        matches = np.flatnonzero(np.all(grid == initial, axis=1))
        if matches.size:
            self.choices, start = grid, int(matches[0])
        else:
            self.choices, start = np.vstack([grid, initial[None]]), len(grid)
        self.switch_intervals = self._switch_intervals()
        self.rewards, hot_bytes = self._rewards()
        self.mismatch = interleave_mismatch(self.choices)
        self.index = self._solve(start, hot_bytes)
        self.schedule = self.choices[self.index]

    def decide(self, measurements: Measurements) -> np.ndarray:
        return self.schedule[_next_interval(measurements, self.context, len(self.schedule))].copy()

    # ----------------------------------------------------------------------- internals
    def _switch_intervals(self) -> set[int] | range:
        """The intervals whose start may bring new weights (all of them here)."""
        return range(self.timeline.n_intervals)

    def _rewards(self) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """r[t, k] and, per interval, each app's DAMOS-hot bytes for every choice (K,)."""
        timeline = self.timeline
        nodes = timeline.nodes
        placement = PlacementSplits(self.choices)
        rewards = np.zeros((timeline.n_intervals, len(self.choices)))
        hot: list[dict[str, np.ndarray]] = [{} for _ in range(timeline.n_intervals)]
        for intervals in timeline.distinct().values():
            apps = timeline.loads[intervals[0]]
            if not apps:
                continue
            capacity = timeline.free_capacity_pages(intervals[0])
            splits = clip_splits_to_capacity(placement(apps), capacity_limits(apps, capacity))
            values, throughput = modelled_speedup(
                nodes, apps, splits, fixed=timeline.fixed_load(intervals[0])
            )
            per_app = {
                app.name: self._hot_bytes(app, throughput[:, a]) for a, app in enumerate(apps)
            }
            for t in intervals:
                rewards[t] = values
                hot[t] = per_app
        return rewards, hot

    def _hot_bytes(self, app: AppLoad, throughput_gbps: np.ndarray) -> np.ndarray:
        """Bytes of the app's resident pages DAMOS sees as hot at each throughput."""
        shares = np.sort(np.asarray(app.page_shares[: app.touched_pages], dtype=float))
        shares = shares / max(shares.sum(), 1e-300)
        sample_s = self.damos.attrs.sample_us * 1e-6
        touches = np.maximum(throughput_gbps, 1e-12) * 1e9 / LINE_BYTES * sample_s
        threshold = -np.log1p(-self.damos.min_access_percent / 100.0) / touches
        hot_pages = len(shares) - np.searchsorted(shares, threshold, side="left")
        return hot_pages * float(self.timeline.scenario.page_size)

    def _solve(self, start: int, hot_bytes: list[dict[str, np.ndarray]]) -> np.ndarray:
        timeline = self.timeline
        n_intervals, n_choices = self.rewards.shape
        index = np.full(n_intervals, start, dtype=np.int64)
        if n_intervals == 0:
            self.value = 0.0
            return index
        quota_per_s = self.damos.quota_bytes_per_s
        # Interval 0: any choice may place the first pages; nothing is migrated yet.
        value = self.rewards[0].copy()
        back = np.zeros((n_intervals, n_choices), dtype=np.int64)
        for t in range(1, n_intervals):
            staying = set(timeline.app_names(t - 1)) & set(timeline.app_names(t))
            cost = np.zeros((n_choices, n_choices))  # [from, to]
            cap = quota_per_s * timeline.interval_s * (n_intervals - t) if quota_per_s else np.inf
            for name in staying:
                moved = self.mismatch * hot_bytes[t][name][None, :]
                cost += np.minimum(moved, cap)
            total = value[:, None] - self.migration_cost_per_gib * cost / GiB
            if t not in self.switch_intervals:
                total = np.where(np.eye(n_choices, dtype=bool), total, -np.inf)
            back[t] = np.argmax(total, axis=0)
            value = total[back[t], np.arange(n_choices)] + self.rewards[t]
        last = int(np.argmax(value))
        self.value = float(value[last])
        index[-1] = last
        for t in range(n_intervals - 1, 0, -1):
            index[t - 1] = back[t, index[t]]
        return index


class OraclePhase(OracleDP):
    """The best *phase schedule*: ``oracle-dp`` allowed to change the weights only where the
    scenario changes (an application starts or stops, an event, background traffic), so it
    holds one setting per phase, as an operator with a perfect schedule of the load would. The
    gap between it and ``static-best`` is what re-tuning at phase changes is worth; the gap
    from it to ``oracle-dp`` what reacting within a phase (for example to DAMOS's progress)
    adds."""

    kind: ClassVar[str] = "oracle-phase"

    def _switch_intervals(self) -> set[int] | range:
        scenario = self.timeline.scenario
        interval = scenario.control_interval_s
        # the host applies a change at the first interval starting at or after its moment
        return {
            int(np.ceil(moment / interval - 1e-9)) for moment in scenario.moments() if moment > 0
        }
