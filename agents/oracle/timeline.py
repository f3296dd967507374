"""The load timeline: what each control interval of a scenario asks of the memory, whatever
the policy.

Oracles need the demand of every interval before the run (which applications run, their misses
in flight, think time, read share, throughput alone, and how their accesses spread over their
pages). Rather than re-implementing the scenario's start/stop times, intensity events, hot-set
moves, traces and growth, the timeline steps the simulator itself (``SimulatedHost`` with
DAMOS disabled, so nothing migrates and the run is cheap) and records
``SimulatedHost.current_load()`` after each step: the load that step's solve used. None of
these quantities depends on the weights or on DAMOS (they depend on time only), so interval
t's entry is the load of interval t in any run of the scenario.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tierenv.hardware.solver import NodeSet
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import AppLoad, FixedLoad, SimulatedHost
from tierenv.workload.scenario import Scenario

__all__ = ["AppLoad", "FixedLoad", "LoadTimeline", "load_key", "load_timeline"]


def load_key(apps: tuple[AppLoad, ...]) -> tuple:
    """A hashable identity of one interval's load: intervals with equal keys have equal
    oracle values, so oracles compute each distinct load once."""
    return tuple(
        (
            a.name,
            a.mlp,
            a.think_ns,
            a.read_fraction,
            a.alone_gbps,
            a.touched_pages,
            a.hot_pages,
            a.in_reward,
            _digest(a.page_shares),
        )
        for a in apps
    )


_DIGESTS: dict[int, tuple[np.ndarray, bytes]] = {}


def _digest(shares: np.ndarray) -> bytes:
    # Cached by the array's identity (the host reuses one array until the shares change);
    # the array is kept alive with its digest so the identity cannot be recycled.
    base = shares.base if shares.base is not None else shares
    cached = _DIGESTS.get(id(base))
    if cached is not None and cached[0] is base:
        return cached[1]
    digest = hashlib.blake2b(np.ascontiguousarray(shares).tobytes(), digest_size=16).digest()
    if len(_DIGESTS) > 4096:
        _DIGESTS.clear()
    _DIGESTS[id(base)] = (base, digest)
    return digest


@dataclass(frozen=True)
class LoadTimeline:
    """Per control interval (index t covers [t·Δ, (t+1)·Δ)), the running applications' load."""

    scenario: Scenario
    loads: tuple[tuple[AppLoad, ...], ...]
    keys: tuple[tuple, ...] = field(repr=False)
    # per interval, the load no policy places (bound co-runners, open-loop traffic)
    fixed: tuple[FixedLoad, ...] = field(default=(), repr=False)

    @property
    def n_intervals(self) -> int:
        return len(self.loads)

    @property
    def interval_s(self) -> float:
        return self.scenario.control_interval_s

    @property
    def nodes(self) -> NodeSet:
        return NodeSet([node.profile for node in self.scenario.nodes])

    @property
    def capacity_pages(self) -> np.ndarray:
        page = self.scenario.page_size
        return np.array([node.capacity_bytes // page for node in self.scenario.nodes])

    def free_capacity_pages(self, t: int) -> np.ndarray:
        """Node capacity left to the managed applications in interval t (bound co-runners'
        pages taken out)."""
        if not self.fixed:
            return self.capacity_pages
        return self.capacity_pages - self.fixed[t].pages

    def fixed_load(self, t: int) -> FixedLoad | None:
        return self.fixed[t] if self.fixed else None

    def app_names(self, t: int) -> tuple[str, ...]:
        return tuple(a.name for a in self.loads[t])

    def distinct(self) -> dict[tuple, list[int]]:
        """The intervals of each distinct load, in order of first appearance."""
        groups: dict[tuple, list[int]] = {}
        for t, key in enumerate(self.keys):
            groups.setdefault(key, []).append(t)
        return groups


def load_timeline(scenario: Scenario, seed: int = 0) -> LoadTimeline:
    """Step ``scenario`` on a DAMOS-less simulated host and record each interval's load.
    (``seed`` only seeds the host; the load does not depend on it.)"""
    host = SimulatedHost(scenario, seed=seed, damos=DamosSetup(enabled=False))
    loads, fixed = [], []
    while not host.done:
        host.step()
        loads.append(host.current_load())
        fixed.append(host.current_fixed_load())
    keys = tuple((load_key(apps), f.key()) for apps, f in zip(loads, fixed, strict=True))
    return LoadTimeline(scenario, tuple(loads), keys, tuple(fixed))
