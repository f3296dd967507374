"""``static``: fixed interleave weights, the simplest baseline (reference §6, items 2-3).

The weights never change; ``static [255, 1]`` is all-DDR, ``static [1, 1]`` uniform, and a
swept best fixed point is ``static-best``. No source to follow beyond the kernel's sysfs
contract (weights 1..255 per node, checked by ``tierenv.memory.interleave.check_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError
from tierenv.contracts.measurements import Measurements
from tierenv.memory.interleave import WeightError, check_weights


class StaticController(Controller):
    """Always the same weights (e.g. ``weights=[3, 1]``)."""

    kind = "static"

    def __init__(self, weights: Sequence[int] = (1, 1)) -> None:
        try:
            # Checked against its own length now; against the host's node count at reset.
            self.weights = check_weights(list(weights), len(weights))
        except (WeightError, TypeError) as error:
            raise ControllerError(f"static: parameter weights={weights!r}: {error}") from None

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        n_nodes = context.nodes.n_nodes
        if self.weights.size != n_nodes:
            raise ControllerError(
                f"static: parameter weights={self.weights.tolist()} has {self.weights.size} "
                f"values but the host has {n_nodes} memory nodes"
            )

    def decide(self, measurements: Measurements) -> np.ndarray:
        return self.weights.copy()

    def describe(self) -> str:
        return f"static {':'.join(str(int(w)) for w in self.weights)}"
