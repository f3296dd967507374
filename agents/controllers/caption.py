"""``caption``: Caption-style hill climbing on the slow-tier share.

Source: Sun et al., MICRO 2023, artifact ``ece-fast-lab/cxl_type3_tests/caption_ae/algo.py``.
Every tuning epoch the score S is compared with the previous epoch's:

- first epoch (no previous score): treated as an improvement, so the first step is taken;
- ``|ΔS| < noise_threshold``: stable, keep the share, step := ±min_step (same sign);
- ``ΔS > 0``: keep going, same step; ``ΔS < 0``: reverse at half the step
  (never below ``min_step``); the slow share moves by the step, clamped to its range.

Deviations, and why:

- Score. Caption scores with a regression on PCM's IPC and L1/DDR latencies fitted on its
  SPR box. A host here observes the applications' own throughput, so S = Σ app throughput
  (GB/s). Thresholds are relative to |S| (Caption's absolute 0.2 was in its score's units).
- Actuator. Caption tunes DDR:CXL = 10:bot with bot in 1..20 (CXL share 9-67 %) between
  runs. Here the state is the slow share x (fraction of pages off the fast node), stepped in
  share units (``max_step`` = the reset step, Caption's STEP_RESET; ``min_step`` = MIN_STEP),
  bounded by weight 255:1 below and ``max_slow_share`` (Caption's 10:20 = 2/3) above, and
  mapped to weights by ``shares_to_weights``.
- Steps start from the measured placement. Caption's ratio acts on new allocations only, so
  the current ratio is where the pages are. Here the weights move existing pages through DAMOS
  ``migrate_hot``, slowly (tens of MiB/s on the shipped scenarios): stepping from the asked
  share let the ask run far ahead of the pages while the score kept improving, then overshoot.
  Each step is taken from the slow share of the applications' resident pages (numa_maps), so
  the ask stays within one step of the pages; without lag this is Caption's rule exactly.
- Epochs. Caption averages ≥ 20 one-second PCM samples per application run; here an epoch is
  ``epoch_intervals`` control intervals, the first ``settle_intervals`` of which are left out
  of the mean. The first step (at the start and after a re-arm) goes out at once, scored
  against the interval just measured.
- Phase change. Caption resets to 10:1 when |ΔS| > 500. Here the climb re-arms when the
  number of running applications changes: the step returns to ``max_step`` and the previous
  score is replaced (scores across a phase change do not compare); the first step goes toward
  the slow nodes if applications were added (more bandwidth demand) and toward the fast node
  if some left.
- More than two nodes: x is the share of all nodes but the fastest (lowest idle latency),
  split among them in proportion to their peak bandwidth.
"""

from __future__ import annotations

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError
from agents.controllers.shares import (
    check_epoch,
    check_param,
    fast_node,
    group_shares,
    min_slow_share,
    require_nodes,
    total_throughput,
    weight_shares,
    weights_for,
)
from tierenv.contracts.measurements import Measurements


class CaptionController(Controller):
    """Hill-climbs the slow-tier page share on the applications' total throughput."""

    kind = "caption"

    def __init__(
        self,
        max_step: float = 0.08,
        min_step: float = 0.01,
        noise_threshold: float = 0.001,
        max_slow_share: float = 2 / 3,
        epoch_intervals: int = 5,
        settle_intervals: int = 1,
    ) -> None:
        name = self.kind
        self.max_step = check_param(name, "max_step", max_step, low=0, high=1, low_open=True)
        self.min_step = check_param(name, "min_step", min_step, low=0, high=1, low_open=True)
        if self.min_step > self.max_step:
            raise ControllerError(
                f"caption: parameter min_step={min_step!r} must not exceed max_step={max_step!r}"
            )
        self.noise_threshold = check_param(name, "noise_threshold", noise_threshold, low=0)
        self.max_slow_share = check_param(
            name, "max_slow_share", max_slow_share, low=0, high=1, low_open=True
        )
        if self.max_slow_share >= 1:
            raise ControllerError(
                f"caption: parameter max_slow_share={max_slow_share!r} must be below 1"
            )
        self.epoch_intervals, self.settle_intervals = check_epoch(
            name, epoch_intervals, settle_intervals
        )

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        require_nodes(self.kind, context)
        self.fast = fast_node(context.nodes)
        self.low = min_slow_share(context.nodes.n_nodes)
        if self.max_slow_share <= self.low:
            raise ControllerError(
                f"caption: parameter max_slow_share={self.max_slow_share!r} must exceed the "
                f"smallest slow share weights allow ({self.low:.4f})"
            )
        start = 1.0 - weight_shares(context.initial_weights)[self.fast]
        self.slow_share = float(np.clip(start, self.low, self.max_slow_share))
        self.step = self.max_step  # Caption's reset: +STEP_RESET, toward the slow tier
        self.previous_score: float | None = None
        self.samples: list[float] = []
        self.n_apps: int | None = None
        self.weights = np.asarray(context.initial_weights, dtype=np.int64).copy()

    def decide(self, measurements: Measurements) -> np.ndarray:
        n_apps = len(measurements.app_names)
        score = total_throughput(measurements)
        if n_apps == 0 or score <= 0:  # Caption's idle check: nothing to score
            self.n_apps, self.previous_score, self.samples = n_apps, None, []
            return self.weights.copy()
        if self.previous_score is None or n_apps != self.n_apps:
            # (Re-)arm: the first step goes out now, from this interval's score. After a phase
            # change, toward the slow nodes if applications came, toward the fast one if some
            # left; at the start toward the slow nodes, as Caption's first step.
            if self.n_apps is not None and self.n_apps > 0 and n_apps != self.n_apps:
                self.step = self.max_step if n_apps > self.n_apps else -self.max_step
            self.n_apps, self.previous_score, self.samples = n_apps, score, []
            self._move(self._placed_slow_share(measurements), self.step)
            return self.weights.copy()
        self.samples.append(score)
        if len(self.samples) < self.epoch_intervals:
            return self.weights.copy()
        epoch_score = float(np.mean(self.samples[self.settle_intervals :]))
        self.samples = []
        self._climb(epoch_score, self._placed_slow_share(measurements))
        return self.weights.copy()

    def _placed_slow_share(self, m: Measurements) -> float:
        """Share of the applications' resident pages off the fast node (numa_maps)."""
        resident = np.asarray(m.resident_pages, dtype=np.float64)
        total = resident.sum()
        if total <= 0:
            return self.slow_share
        return float(1.0 - resident[:, self.fast].sum() / total)

    def _climb(self, score: float, placed: float) -> None:
        """One Caption tuning step from this epoch's score, taken from where the pages are
        (``placed``), not from the share asked for."""
        previous, self.previous_score = self.previous_score, score
        change = (score - (previous or 0.0)) / max(abs(previous or 0.0), 1e-12)
        sign = 1.0 if self.step >= 0 else -1.0
        if abs(change) < self.noise_threshold:
            self.step = sign * self.min_step  # stable: hold, and restart small
            return
        step = self.step if change > 0 else -self.step / 2
        if abs(step) < self.min_step:
            step = np.sign(step) * self.min_step
        self._move(placed, float(step))

    def _move(self, base: float, step: float) -> None:
        self.step = step
        self.slow_share = float(np.clip(base + step, self.low, self.max_slow_share))
        self.weights = weights_for(group_shares(self.context.nodes, self.fast, self.slow_share))

    def describe(self) -> str:
        return f"{self.kind} (step {self.max_step:g}..{self.min_step:g})"
