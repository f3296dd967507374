"""``bwap``: BWAP's canonical weights plus its DWP climb toward the fast node.

Source: Gureya et al., IPDPS 2020, code ``gureya/bwap`` (``AdaptiveMode.cpp``,
``WeightedAdaptiveMode.cpp``). Stage 1, canonical: page shares in proportion to each node's
bandwidth. Stage 2, DWP: move ``s`` of the total share from the other nodes (each in
proportion to its canonical share) to the worker node, ``s`` growing by ``step`` (BWAP's
ADAPTATION_STEP, 10 percentage points) per measurement while the score does not worsen::

    s = 0; best = None
    each epoch: S = score at s
        if best is None or S >= best·(1 - tolerance): best = max(best, S); s += step
        else: confirm over a 2x-long epoch; if still worse: s -= last step, stop
    stop also when s reaches its bound (the other nodes at weight 1).

Deviations, and why:

- Score. BWAP minimises the stall rate (RESOURCE_STALLS per TSC cycle, LIKWID). Stall
  counters are not among a host's measurements here; the applications' summed throughput is,
  so the climb maximises that and "worse" is S < best·(1 - tolerance) (BWAP: r > best·1.001).
- Worker node. BWAP's worker nodes are where the threads run; here the one node with the
  lowest idle latency (DDR), and the canonical shares use the nodes' peak bandwidth as seen
  from the CPUs (``NodeInfo.peak_gbps``), not BWAP's offline-measured table.
- Epochs. BWAP averages 20 polls 200 ms apart (trimming 5+5 outliers) after each move; here
  an epoch is ``epoch_intervals`` control intervals, the first ``settle_intervals`` left out.
- Re-arm. BWAP climbs once per run. Here it restarts from s = 0 when the set of running
  applications changes, or, once stopped, when the score moves more than ``rearm_threshold``
  (relative, default 20 %) from the score it stopped at: far above what one weight step
  changes on a steady workload (a few %), well below what a co-runner arriving or leaving
  does (30-50 % on the co-runner scenario).
"""

from __future__ import annotations

import numpy as np

from agents.controllers.base import ControlContext, Controller
from agents.controllers.shares import (
    check_epoch,
    check_param,
    fast_node,
    group_shares,
    min_slow_share,
    require_nodes,
    total_throughput,
    weights_for,
)
from tierenv.contracts.measurements import Measurements

CLIMBING, CONFIRMING, STOPPED = "climbing", "confirming", "stopped"


class BwapController(Controller):
    """Canonical bandwidth-proportional shares, then a monotone climb toward the fast node."""

    kind = "bwap"

    def __init__(
        self,
        step: float = 0.10,
        tolerance: float = 0.001,
        rearm_threshold: float = 0.2,
        epoch_intervals: int = 4,
        settle_intervals: int = 1,
    ) -> None:
        name = self.kind
        self.step = check_param(name, "step", step, low=0, high=1, low_open=True)
        self.tolerance = check_param(name, "tolerance", tolerance, low=0, high=1)
        self.rearm_threshold = check_param(
            name, "rearm_threshold", rearm_threshold, low=0, low_open=True
        )
        self.epoch_intervals, self.settle_intervals = check_epoch(
            name, epoch_intervals, settle_intervals
        )

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        require_nodes(self.kind, context)
        nodes = context.nodes
        self.fast = fast_node(nodes)
        canonical = np.maximum(nodes.peak_gbps, 1e-9) / np.maximum(nodes.peak_gbps, 1e-9).sum()
        # s moves share from the others to the fast node until they sit at weight 1 each.
        self.canonical_slow = float(max(1.0 - canonical[self.fast], min_slow_share(nodes.n_nodes)))
        self.max_shift = self.canonical_slow - min_slow_share(nodes.n_nodes)
        self.app_set: frozenset[str] | None = None
        self._rearm()

    def _rearm(self) -> None:
        self.shift = 0.0
        self.last_move = 0.0
        self.best: float | None = None
        self.state = CLIMBING
        self.samples: list[float] = []
        self.weights = weights_for(self._shares())

    def _shares(self) -> np.ndarray:
        return group_shares(self.context.nodes, self.fast, self.canonical_slow - self.shift)

    def decide(self, measurements: Measurements) -> np.ndarray:
        app_set = frozenset(measurements.app_names)
        if self.app_set is not None and app_set != self.app_set:
            self.app_set = app_set
            self._rearm()
            return self.weights.copy()
        self.app_set = app_set
        score = total_throughput(measurements)
        if not app_set or score <= 0:
            return self.weights.copy()
        self.samples.append(score)
        needed = self.epoch_intervals * (2 if self.state == CONFIRMING else 1)
        if len(self.samples) < needed:
            return self.weights.copy()
        epoch_score = float(np.mean(self.samples[self.settle_intervals :]))
        self.samples = []
        if self.state == STOPPED:
            reference = max(abs(self.best or 0.0), 1e-12)
            if abs(epoch_score - (self.best or 0.0)) / reference > self.rearm_threshold:
                self._rearm()
            return self.weights.copy()
        worse = self.best is not None and epoch_score < self.best * (1.0 - self.tolerance)
        if self.state == CONFIRMING:
            if worse:  # confirmed: undo the last move and stop
                self.shift -= self.last_move
                self.state = STOPPED
            else:
                self.state = CLIMBING
                self._advance(epoch_score)
        elif worse:
            self.state = CONFIRMING  # BWAP re-measures with twice the samples first
        else:
            self._advance(epoch_score)
        self.weights = weights_for(self._shares())
        return self.weights.copy()

    def _advance(self, score: float) -> None:
        """The score held up: remember it and move one more step toward the fast node."""
        self.best = score if self.best is None else max(self.best, score)
        move = min(self.step, self.max_shift - self.shift)
        if move <= 1e-12:
            self.state = STOPPED  # the other nodes are at weight 1: nothing left to move
            return
        self.shift += move
        self.last_move = move

    def describe(self) -> str:
        return f"{self.kind} (step {self.step:g})"
