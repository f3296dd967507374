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
    pass and reports it; ``begin`` reports the state before the first ``step``;
    ``reference_gbps`` gives the reward's reference throughputs and ``close`` puts the host
    back.
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

    def reference_gbps(self, app_names: tuple[str, ...]) -> np.ndarray:
        """Each named running application's reference throughput (GB/s alone on idle local
        memory), in the order given: the denominators of the weighted-speedup reward. A
        simulated host computes them (the same values as its ``GroundTruth.app_alone_gbps``,
        which the env uses when a step reports ground truth); a real host reads them from its
        config and raises ``ValueError`` for an application without one. The env asks only
        for steps whose ``StepResult.truth`` is ``None``."""
        ...

    def close(self) -> list[str]:
        """Put the host back as it was found: a real host restores the weights, the auto
        switch and removes its kdamond (``env.close()`` calls this); a simulated host has
        nothing to restore. Returns what could not be restored (empty when everything was);
        calling it again is harmless."""
        ...
