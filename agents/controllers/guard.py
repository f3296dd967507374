"""A floor under any policy: fall back to the kernel's auto weights (or an operator's static
weights) on a load where the policy measurably does worse than they would.

The guard wraps a controller (a learned policy, usually) and the fallback: ``kernel-auto``
unless told otherwise, or fixed weights (``fallback: [w0, w1, ...]`` in the guard's
settings), such as the deployable weights an operator tuned for the machine, which make the
floor that setting instead of the kernel's. It keys what it learns by the *load*: the set of managed
applications running in the interval (``Measurements.app_names``). A host cannot run the
counterfactual, so the guard measures it:

1. **Probe.** When a load appears for the first time, the fallback's weights are applied for
   ``probe_s`` seconds, so the load's first pages are placed as the kernel would place them;
   each application's throughput over the probe's last ``probe_s - settle_s`` seconds is the
   load's *reference*.
2. **Trust, and check.** Then the policy decides. After ``settle_s`` seconds (pages follow new
   weights over time), every interval is scored by the applications' mean throughput
   relative to their reference. When the mean score over the last ``window_s`` seconds falls
   below ``1 - margin``, the policy has lost on this load: the fallback's weights are applied
   until the load changes, and whenever the load comes back.
3. A load seen before starts from its reference (no second probe), under the policy unless it
   lost there. With no application running the fallback's weights are in force (they place
   the first pages of whatever starts next).

Both controllers see every measurement, so a policy with memory (a frame stack, an LSTM)
keeps its history while it is overruled. ``events`` records every change of mode. A policy
that also sets the DAMOS quota is overruled on it too: the fallback's quota, or the quota the
host ran when the guard started, is in force whenever the fallback's weights are.

What it cannot see: a phase change inside a load (a stage of one application that needs less
bandwidth) moves the score as a worse policy would, so the guard may fall back where the
policy was not to blame (losing the policy's gain, never the floor); a rise hides a loss until
the window catches it. The probe costs its seconds at auto weights on every new load, which
is the price of a measured floor. Both controllers run in the same process, and the guard is
what ``tierenv compare`` (``guard:`` on a policy) and the daemon (``--guard``) run, so the
numbers a comparison reports are those of the guarded policy a host would run.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.controllers.base import ControlContext, Controller, ControllerError, HostNeeds
from tierenv.contracts.measurements import Measurements

# Modes: which controller's weights are in force for the next interval.
PROBE, POLICY, FALLBACK = "probe", "policy", "fallback"
IDLE = ()  # the load of an interval with no managed application running


@dataclass(frozen=True)
class GuardEvent:
    """A change of the guard's mode: at ``time_s``, on ``load``, to ``mode`` (and the window's
    mean score when the policy lost)."""

    time_s: float
    load: tuple[str, ...]
    mode: str
    score: float | None = None


@dataclass(frozen=True)
class GuardSettings:
    """The guard's parameters (module docstring); seconds are whole control intervals,
    rounded up."""

    margin: float = 0.03
    probe_s: float = 8.0
    settle_s: float = 3.0
    window_s: float = 10.0

    @classmethod
    def from_mapping(cls, value: Any, where: str = "guard") -> GuardSettings:
        """``true`` (the defaults) or a mapping of fields; errors name the field."""
        if value is True:
            return cls()
        if not isinstance(value, dict):
            raise ControllerError(f"{where}: must be true or a mapping of {_FIELDS}, got {value!r}")
        unknown = sorted(set(value) - _NAMES)
        if unknown:
            raise ControllerError(f"{where}: unknown field {unknown[0]!r}; valid: {_FIELDS}")
        for name, number in value.items():
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ControllerError(f"{where}.{name}: must be a number, got {number!r}")
        settings = cls(**{name: float(number) for name, number in value.items()})
        settings.check(where)
        return settings

    def check(self, where: str = "guard") -> None:
        if not (math.isfinite(self.margin) and 0 <= self.margin < 1):
            raise ControllerError(f"{where}.margin: must be in [0, 1), got {self.margin}")
        for name in ("probe_s", "settle_s", "window_s"):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and 0 < seconds <= 3600):
                raise ControllerError(f"{where}.{name}: must be in (0, 3600] s, got {seconds}")
        if self.settle_s >= self.probe_s:
            raise ControllerError(
                f"{where}: settle_s ({self.settle_s}) must be below probe_s ({self.probe_s}): "
                "the reference is measured after the settling"
            )


#: The guard mapping's one field that is not a setting: which weights the guard falls back to.
FALLBACK_FIELD = "fallback"
_FIELDS = ", ".join([*GuardSettings.__dataclass_fields__, FALLBACK_FIELD])
_NAMES = frozenset(GuardSettings.__dataclass_fields__)


def load_of(measurements: Measurements) -> tuple[str, ...]:
    """The load an interval ran: its managed applications, sorted."""
    return tuple(sorted(measurements.app_names))


class FloorGuard(Controller):
    """``policy``'s weights while it holds its own against ``fallback`` on the running load,
    the fallback's where it does not (module docstring). It has no ``kind`` of its own:
    ``make_controller(kind, guard=...)`` wraps the controller of that kind."""

    def __init__(
        self, policy: Controller, fallback: Controller, settings: GuardSettings | None = None
    ) -> None:
        self.policy = policy
        self.fallback = fallback
        self.settings = settings or GuardSettings()
        self.settings.check()
        # named after what it guards; a guard around an oracle is as privileged as the oracle
        self.kind = f"guarded {policy.kind}"  # type: ignore[misc]
        self.privileged = policy.privileged or fallback.privileged  # type: ignore[misc]

    def needs(self) -> HostNeeds:
        """The guarded policy's needs and the fallback's: both run on the host."""
        return self.policy.needs().merged(self.fallback.needs())

    def reset(self, context: ControlContext) -> None:
        super().reset(context)
        self.policy.reset(context)
        self.fallback.reset(context)
        interval = context.interval_s
        s = self.settings
        self._probe_n = max(2, math.ceil(s.probe_s / interval - 1e-9))
        self._settle_n = min(self._probe_n - 1, math.ceil(s.settle_s / interval - 1e-9))
        self._window_n = max(1, math.ceil(s.window_s / interval - 1e-9))
        self.references: dict[tuple[str, ...], dict[str, float]] = {}
        self.lost: set[tuple[str, ...]] = set()
        self.events: list[GuardEvent] = []
        self.mode = FALLBACK
        self._load: tuple[str, ...] | None = None
        self._age = 0  # intervals measured under the current mode on this load
        self._samples: list[dict[str, float]] = []
        self._scores: deque[float] = deque(maxlen=self._window_n)
        self._start_quota: int | None = None

    def decide(self, measurements: Measurements) -> np.ndarray:
        if self._start_quota is None:  # the host's own, before anyone asked for another
            self._start_quota = round(measurements.damos_quota_bytes_per_s)
        chosen = {POLICY: self.policy.decide(measurements)}
        chosen[FALLBACK] = chosen[PROBE] = self.fallback.decide(measurements)
        load = load_of(measurements)
        if load != self._load:
            self._enter(load, measurements.time_s)
        else:
            self._observe(measurements)
        return chosen[self.mode]

    def damos_quota(self) -> int | None:
        if self.mode == POLICY:
            return self.policy.damos_quota()
        asked = self.fallback.damos_quota()
        if asked is not None or self.policy.damos_quota() is None:
            return asked
        return self._start_quota  # undo what the overruled policy set

    def _enter(self, load: tuple[str, ...], time_s: float) -> None:
        """A new load begins with the next interval."""
        self._load = load
        if load == IDLE or load in self.lost:
            mode = FALLBACK
        elif load in self.references:
            mode = POLICY
        else:
            mode = PROBE
        self._switch(mode, time_s)

    def _switch(self, mode: str, time_s: float, score: float | None = None) -> None:
        self.mode = mode
        self._age = 0
        self._samples = []
        self._scores.clear()
        assert self._load is not None
        self.events.append(GuardEvent(time_s, self._load, mode, score))

    def _observe(self, m: Measurements) -> None:
        """The interval just measured ran under ``self.mode`` on the current load."""
        self._age += 1
        throughput = dict(zip(m.app_names, map(float, m.app_throughput_gbps), strict=True))
        if self.mode == PROBE:
            if self._age > self._settle_n:
                self._samples.append(throughput)
            if self._age >= self._probe_n:
                assert self._load is not None
                self.references[self._load] = {
                    app: float(np.mean([sample[app] for sample in self._samples]))
                    for app in self._load
                }
                self._switch(POLICY, m.time_s)
        elif self.mode == POLICY and self._age > self._settle_n:
            self._scores.append(self._score(throughput))
            if len(self._scores) == self._window_n:
                mean = float(np.mean(self._scores))
                if mean < 1.0 - self.settings.margin:
                    assert self._load is not None
                    self.lost.add(self._load)
                    self._switch(FALLBACK, m.time_s, mean)

    def _score(self, throughput: dict[str, float]) -> float:
        """The applications' mean throughput relative to their reference (those with one)."""
        assert self._load is not None
        reference = self.references[self._load]
        ratios = [throughput[app] / reference[app] for app in self._load if reference[app] > 0]
        return float(np.mean(ratios)) if ratios else 1.0

    def describe(self) -> str:
        return f"{self.policy.describe()} (floor: {self.fallback.describe()})"

    def log_fields(self) -> dict[str, Any]:
        """The daemon logs which weights are in force and the loads the policy lost."""
        return {"guard": self.mode, "guard_lost_loads": sorted(map(list, self.lost))}


def guarded(policy: Controller, guard: Any) -> FloorGuard:
    """``policy`` under a floor guard configured by ``guard`` (``true`` or a mapping of
    ``GuardSettings`` fields and optionally ``fallback``, as experiment configs and the
    daemon give it)."""
    settings = guard
    fallback: Controller = _kernel_auto()
    if isinstance(guard, dict) and FALLBACK_FIELD in guard:
        settings = {name: value for name, value in guard.items() if name != FALLBACK_FIELD}
        fallback = fallback_controller(guard[FALLBACK_FIELD])
    return FloorGuard(policy, fallback, GuardSettings.from_mapping(settings))


def fallback_controller(value: Any, where: str = f"guard.{FALLBACK_FIELD}") -> Controller:
    """The controller a guard falls back to: ``"kernel-auto"`` (the kernel's auto weights)
    or a list of static weights, one per node (``ControllerError`` naming ``where``)."""
    from agents.controllers.static import StaticController

    if value == "kernel-auto":
        return _kernel_auto()
    if not isinstance(value, list | tuple) or not value:
        raise ControllerError(
            f"{where}: must be kernel-auto or a list of weights, one per node (e.g. [250, 1]), "
            f"got {value!r}"
        )
    try:
        return StaticController(weights=list(value))
    except ControllerError as err:
        raise ControllerError(f"{where}: {err}") from None


def _kernel_auto() -> Controller:
    from agents.controllers.kernel_auto import KernelAutoController

    return KernelAutoController()
