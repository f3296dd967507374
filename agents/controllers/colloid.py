"""``colloid``: balance the tiers' loaded latencies (Colloid).

Source: Vuppalapati & Agarwal, SOSP 2024; HeMem integration ``webglider/hemem`` (sosp24ae,
``src/pebs.c``), update ``COLLOID_EXPR3``. With D the default (fast) tier, p the measured
share of accesses served by D and L the loaded latencies::

    L_D > L_A: move access share away from D;  L_D < L_A: move it toward D
    Δp = p(1-p)·|L_D - L_A| / ((1-p)·L_D + p·L_A)      (EXPR3: the one-step jump to the
                                                       balance point of a linear latency model)
    Δp = min(Δp, max_step)                             (stands in for the migration cap)

plus Colloid's "L_D < L_A: move toward D" taken to its end for a lightly loaded D: when D's
loaded latency is below every other node's idle latency no shift can balance them, so D takes
everything (p = 1, i.e. 255:1). Latencies are held for ``|L_D - L_A| < delta·L_D``
(COLLOID_DELTA). EXPR3 is used, not the binary-search variant: it is the artifact's final
choice (``webglider/hemem`` commit 3f8207c went back to it).

Signals: per-node loaded latency (the CHA TOR occupancy/inserts a host reads) and the access
share from per-node bandwidth. O = L·B and R = B are smoothed with Colloid's EWMA (α = 0.0625
per 10 ms quantum, i.e. 1 - (1-α)^(interval/10 ms) per control interval: about 1 at 1 s,
since each interval already averages 100 quanta).

Deviations, and why:

- Δp is applied to the weight share this controller asked for, not to the measured p.
  Weights are the actuator and DAMOS ``migrate_hot`` moves only hot pages, slowly: the
  measured share can stay short of the weight share for minutes (cold pages never follow),
  and re-deriving the target from it each interval would stall the controller there. Δp
  itself uses the measured p, as Colloid does.
- Node bandwidth includes migration copy traffic (the uncore counters see it too).
- More than two nodes: each interval moves Δp, computed by EXPR3 on the pair, from the node
  with the highest loaded latency to the one with the lowest (Δp scaled by the pair's
  weight share); the p = 1 rule uses the smallest idle latency among the other nodes.
"""

from __future__ import annotations

import numpy as np

from agents.controllers.base import ControlContext, Controller
from agents.controllers.shares import (
    check_param,
    fast_node,
    group_shares,
    min_slow_share,
    require_nodes,
    weight_shares,
    weights_for,
)
from tierenv.contracts.measurements import Measurements

COLLOID_QUANTUM_S = 0.01  # HeMem's PEBS_KSWAPD_INTERVAL


class ColloidController(Controller):
    """Moves weight share toward the node with the lower loaded latency (EXPR3 steps)."""

    kind = "colloid"

    def __init__(
        self, max_step: float = 0.1, delta: float = 0.05, ewma_alpha: float = 0.0625
    ) -> None:
        name = self.kind
        self.max_step = check_param(name, "max_step", max_step, low=0, high=1, low_open=True)
        self.delta = check_param(name, "delta", delta, low=0, high=1)
        self.ewma_alpha = check_param(name, "ewma_alpha", ewma_alpha, low=0, high=1, low_open=True)

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        require_nodes(self.kind, context)
        nodes = context.nodes
        self.fast = fast_node(nodes)
        self.min_share = min_slow_share(nodes.n_nodes) / (nodes.n_nodes - 1)
        self.all_fast = group_shares(nodes, self.fast, min_slow_share(nodes.n_nodes))
        self.shares = weight_shares(context.initial_weights)
        self.alpha = 1.0 - (1.0 - self.ewma_alpha) ** (context.interval_s / COLLOID_QUANTUM_S)
        self.occupancy: np.ndarray | None = None  # O = L·B per node (GB/s·ns)
        self.rate: np.ndarray | None = None  # R = B per node (GB/s)
        self.weights = np.asarray(context.initial_weights, dtype=np.int64).copy()

    def decide(self, measurements: Measurements) -> np.ndarray:
        latency = self._smoothed(measurements)
        nodes = self.context.nodes
        others = np.arange(nodes.n_nodes) != self.fast
        if latency[self.fast] < nodes.idle_latency_ns[others].min():
            self.shares = self.all_fast.copy()  # D beats even idle A: p = 1
        else:
            self._shift(latency)
        self.weights = weights_for(self.shares)
        return self.weights.copy()

    def _smoothed(self, m: Measurements) -> np.ndarray:
        """Loaded latency per node from EWMA-smoothed occupancy and request rate."""
        rate = np.maximum(np.asarray(m.node_bandwidth_gbps, dtype=np.float64), 0.0)
        occupancy = np.asarray(m.node_latency_ns, dtype=np.float64) * rate
        if self.rate is None or self.occupancy is None:
            self.rate, self.occupancy = rate, occupancy
        else:
            self.rate = (1 - self.alpha) * self.rate + self.alpha * rate
            self.occupancy = (1 - self.alpha) * self.occupancy + self.alpha * occupancy
        # An idle node has no requests to time: take the measured (idle) latency as is.
        busy = self.rate > 1e-9
        return np.where(busy, self.occupancy / np.where(busy, self.rate, 1.0), m.node_latency_ns)

    def _shift(self, latency: np.ndarray) -> None:
        """One EXPR3 step from the slowest node (loaded) to the fastest, in weight share."""
        low, high = int(np.argmin(latency)), int(np.argmax(latency))
        l_low, l_high = float(latency[low]), float(latency[high])
        # Colloid's balance test is relative to L_D (the pair's lower latency if D is not in it).
        l_default = float(latency[self.fast]) if self.fast in (low, high) else l_low
        if low == high or l_high - l_low < self.delta * l_default:
            return
        pair_rate = self.rate[low] + self.rate[high]  # type: ignore[index]
        if pair_rate <= 1e-9:
            return
        p = float(self.rate[low] / pair_rate)  # type: ignore[index]  # access share of `low`
        dp = p * (1 - p) * (l_high - l_low) / ((1 - p) * l_low + p * l_high)
        dp = min(dp, self.max_step) * (self.shares[low] + self.shares[high])
        dp = min(dp, self.shares[high] - self.min_share)
        if dp > 0:
            self.shares = self.shares.copy()
            self.shares[high] -= dp
            self.shares[low] += dp

    def describe(self) -> str:
        return f"{self.kind} (max step {self.max_step:g})"
