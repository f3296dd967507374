"""``kernel-auto``: the weights Linux's weighted-interleave auto mode sets.

Source: mm/mempolicy.c ``reduce_interleave_weights`` (Joshua Hahn, commit e341f9c3c841,
v6.16): ``w_i = floor(32·bw_i / Σbw)`` (1 where that is not above 1), divided by the gcd.
The arithmetic is ``tierenv.memory.interleave.auto_weights``, reused here; 300 : 64 GB/s
gives 26 : 5. Auto mode recomputes only when HMAT/CDAT bandwidth data arrives (boot or
hotplug), never with load, so the controller is static after reset.

Deviation: the kernel uses min(read, write) bandwidth from HMAT; the host's ``NodeInfo``
knows the 100 %-read saturation bandwidth (``peak_gbps``), which is what this uses (and what
the env's ``initial_weights="auto"`` uses, so both agree).
"""

from __future__ import annotations

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError
from tierenv.contracts.measurements import Measurements
from tierenv.memory.interleave import WeightError, auto_weights


class KernelAutoController(Controller):
    """The kernel's auto weights from the nodes' peak bandwidth, fixed for the episode."""

    kind = "kernel-auto"

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        try:
            self.weights = auto_weights(context.nodes.peak_gbps).astype(np.int64)
        except WeightError as error:
            raise ControllerError(f"kernel-auto: node bandwidth unusable: {error}") from None

    def decide(self, measurements: Measurements) -> np.ndarray:
        return self.weights.copy()

    def describe(self) -> str:
        weights = getattr(self, "weights", None)
        if weights is None:
            return self.kind
        return f"{self.kind} {':'.join(str(int(w)) for w in weights)}"
