"""The interface every host implements, simulated or real: the env and the daemon drive a
``Host`` and never know which one it is."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from tierenv.contracts.measurements import NodeInfo, StepResult


@runtime_checkable
class Host(Protocol):
    """A machine running applications under interleave weights chosen from outside.

    ``set_weights`` takes integer weights (1..255 per node); they place pages allocated from
    then on and become the DAMOS ``migrate_hot`` dests. ``step`` lets one control interval
    pass and reports it; ``begin`` reports the state before the first ``step``.
    """

    @property
    def node_info(self) -> NodeInfo: ...

    @property
    def control_interval_s(self) -> float: ...

    @property
    def time_s(self) -> float: ...

    @property
    def done(self) -> bool: ...

    @property
    def weights(self) -> np.ndarray: ...

    def set_weights(self, weights: list[int] | np.ndarray) -> None: ...

    def set_damos_quota(self, bytes_per_s: int) -> None: ...

    def begin(self) -> StepResult:
        """What the host looks like before the first decision: a simulated host at time 0
        with nothing started (so the first weights place the first pages), a real host one
        measured interval (its applications already run)."""
        ...

    def step(self) -> StepResult: ...
