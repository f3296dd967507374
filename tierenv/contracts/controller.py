"""The interface every controller implements: measurements in, interleave weights out.

A controller runs in the simulator (through the env's ``step_weights``), in the experiment
harness and, when it is not privileged, in the daemon on a real host: it only ever sees the
``Measurements`` a host reports and the ``NodeInfo`` it knows before it starts. The library
(daemon, host backend) drives controllers through this contract; the implementations live in
``agents`` (``agents.controllers``, which re-exports these names).

Timing: ``reset`` comes after the host's ``begin`` (in the simulator: time 0, nothing running
yet); then each ``decide(m)`` receives the interval that just ended (``m.time_s`` is its end;
the first call gets ``begin``'s report) and returns the weights for the next one. So the first
decision sets the weights the first pages are placed under. A controller that also chooses the
DAMOS quota (a policy trained with ``quota_action``) says so through ``damos_quota`` after each
``decide``; the harness and the daemon apply it with the weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tierenv.contracts.measurements import Measurements, NodeInfo

if TYPE_CHECKING:  # annotations only: the scenario module imports the contracts
    from tierenv.sim.damos_setup import DamosSetup
    from tierenv.workload.scenario import Scenario


class ControllerError(ValueError):
    """A controller that cannot be built or run as configured."""


def require_node_count(where: str, made: str, n_nodes: int, nodes: NodeInfo) -> None:
    """A policy ``made`` ("trained on", "exported for") ``n_nodes`` nodes refuses another host."""
    if nodes.n_nodes != n_nodes:
        raise ControllerError(
            f"{where}: {made} {n_nodes} memory nodes, but this host has "
            f"{nodes.n_nodes} ({', '.join(nodes.names)})"
        )


@dataclass(frozen=True)
class ControlContext:
    """What a controller may know before the first decision."""

    nodes: NodeInfo
    interval_s: float
    initial_weights: np.ndarray  # (nodes,) int64, the weights in force at reset
    # The reward's migration coefficient (controllers that trade throughput against
    # migration use it; None: not known).
    migration_cost_per_gib: float | None = None
    # The simulator's scenario, seed and DAMOS setup: only privileged controllers (oracles)
    # may use them; None on a real host.
    scenario: Scenario | None = None
    seed: int | None = None
    damos: DamosSetup | None = None


@dataclass(frozen=True)
class HostNeeds:
    """What a controller needs of a host, checked before the daemon changes anything."""

    n_nodes: int | None = None  # the node count it was made for; None: any
    feature_groups: tuple[str, ...] = ()  # the observation feature groups it reads

    def merged(self, other: HostNeeds) -> HostNeeds:
        """The needs of two controllers run together (a guard and what it guards)."""
        if None not in (self.n_nodes, other.n_nodes) and self.n_nodes != other.n_nodes:
            raise ControllerError(
                f"controllers made for {self.n_nodes} and {other.n_nodes} memory nodes "
                "cannot run together"
            )
        groups = self.feature_groups + tuple(
            group for group in other.feature_groups if group not in self.feature_groups
        )
        return HostNeeds(self.n_nodes if self.n_nodes is not None else other.n_nodes, groups)


class Controller(ABC):
    """Chooses weighted-interleave weights (integers 1..255 per node) every control interval.

    Subclasses take their parameters as keyword arguments of ``__init__`` (checked there, with
    errors naming the parameter), keep their state in attributes set by ``reset``, and never
    read anything but the context and the measurements unless they are ``privileged``.
    """

    #: The name experiment configs use for this controller.
    kind: ClassVar[str]
    #: True when the controller needs the simulator's knowledge (scenario, ground truth): it
    #: can be evaluated in the simulator but never deployed on a real host.
    privileged: ClassVar[bool] = False

    def reset(self, context: ControlContext) -> None:
        """Start a new episode (called once before the first ``decide``)."""
        if self.privileged and context.scenario is None:
            raise ControllerError(
                f"controller {self.kind!r} is privileged (it needs the simulator's scenario) "
                "and cannot run on a real host"
            )
        self.context = context

    @abstractmethod
    def decide(self, measurements: Measurements) -> np.ndarray:
        """The weights (int64, (nodes,), each 1..255) for the next control interval."""

    def damos_quota(self) -> int | None:
        """The DAMOS migrate_hot quota (bytes/s, 0: unlimited) the last ``decide`` asked for,
        in force from the next interval with its weights; None (the default) leaves the
        quota as it is."""
        return None

    def needs(self) -> HostNeeds:
        """What this controller needs of a host (default: nothing in particular); the daemon
        refuses a host that cannot offer it before it writes anything."""
        return HostNeeds()

    def describe(self) -> str:
        """A short label for tables and plots (the kind and any distinguishing parameters)."""
        return self.kind

    def log_fields(self) -> dict[str, Any]:
        """What the controller adds to the daemon's record of its last decision (JSON
        values; none by default)."""
        return {}
