"""``static``: fixed interleave weights, the simplest baseline.

The weights never change; ``static [255, 1]`` is all-DDR, ``static [1, 1]`` uniform, and a
swept best fixed point is ``static-best``. No source to follow beyond the kernel's sysfs
contract (weights 1..255 per node, checked by ``tierenv.memory.interleave.check_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError
from tierenv.contracts.measurements import Measurements
from tierenv.memory.interleave import MAX_WEIGHT, MIN_WEIGHT, WeightError, check_weights

#: Named weights that fit any node count (node 0 is the local DDR the applications run on).
NAMED_WEIGHTS = {
    "all-ddr": lambda n: [MAX_WEIGHT] + [MIN_WEIGHT] * (n - 1),  # the most the kernel allows
    "uniform": lambda n: [1] * n,
}


class StaticController(Controller):
    """Always the same weights (e.g. ``weights=[3, 1]``, or ``"all-ddr"``: 255 on node 0 and
    1 elsewhere, or ``"uniform"``, for any node count)."""

    kind = "static"

    def __init__(self, weights: Sequence[int] | str = (1, 1)) -> None:
        self.named = weights if isinstance(weights, str) else None
        if isinstance(weights, str):
            if weights not in NAMED_WEIGHTS:
                raise ControllerError(
                    f"static: parameter weights={weights!r}: valid names are "
                    f"{', '.join(NAMED_WEIGHTS)}, or a list of integers"
                )
            self.weights = np.ones(0, dtype=np.int64)  # sized at reset
            return
        try:
            # Checked against its own length now; against the host's node count at reset.
            self.weights = check_weights(list(weights), len(weights))
        except (WeightError, TypeError) as error:
            raise ControllerError(f"static: parameter weights={weights!r}: {error}") from None

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        n_nodes = context.nodes.n_nodes
        if self.named is not None:
            self.weights = np.array(NAMED_WEIGHTS[self.named](n_nodes), dtype=np.int64)
        if self.weights.size != n_nodes:
            raise ControllerError(
                f"static: parameter weights={self.weights.tolist()} has {self.weights.size} "
                f"values but the host has {n_nodes} memory nodes"
            )

    def decide(self, measurements: Measurements) -> np.ndarray:
        return self.weights.copy()

    def describe(self) -> str:
        if not self.weights.size:
            return f"static {self.named}"
        return f"static {':'.join(str(int(w)) for w in self.weights)}"
