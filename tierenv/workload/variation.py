"""How repeated runs of one scenario differ: a scenario's realisation, drawn from a seed.

Two runs of the same benchmark script on one machine never match exactly: phases begin a
little earlier or later, an application runs a few percent faster or slower in one run than
in the next, and where a heap's popular objects land in the address space changes with
allocation order. A scenario file states the nominal run; its ``[variation]`` table says how
far a run may stray from it, and ``realise(scenario, rng)`` draws one run: an ordinary,
concrete scenario (its own variation switched off) that the simulated host, the fluid model
and the oracles all run alike. The envs realise their scenario at every ``reset`` from their
own ``np_random``, so a seed fixes the run and every policy evaluated at that seed sees the
same one (paired comparisons stay paired). DAMON's sampling draws from a separate stream.

``[variation]`` (all optional)::

    arrival_jitter_s = 2.0     # each moment something changes (an application starting or
                               # stopping, a phase, background traffic) moves by a whole number
                               # of control intervals, uniformly within +- this; the order of
                               # the moments is kept, so are the applications running together
    intensity_spread = 0.02    # each application phase's intensity is scaled by
                               # exp(N(0, spread^2)): the run-to-run spread of its demand
    layout = true              # zipf applications draw where their popular chunks lie

Defaults and where they come from (assumptions, not fits; set them to 0/false for the
nominal run):

- ``arrival_jitter_s`` 2 s: scripted launches start within a second or two of the intended
  moment (process start-up and initialisation); with 1 s control intervals a phase boundary
  moves by up to two intervals.
- ``intensity_spread`` 0.02: the spread of loaded bandwidth in the shipped Mess curves of a
  Sapphire Rapids DDR5 socket (``bandwidth_std / bandwidth_mean`` over its loaded points:
  median 0.2 %, 90th percentile 2.5 %) is that of a synthetic traffic generator at a fixed
  load; 2 % per phase is taken as the order of an application's run-to-run demand spread.
- ``layout`` on: a zipf application's ranking of chunks is placed by a seed; which address
  ranges are popular is a matter of allocation order, not of the workload.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tierenv.workload.scenario import AppRun, Event, Scenario, Traffic

DEFAULT_ARRIVAL_JITTER_S = 2.0
DEFAULT_INTENSITY_SPREAD = 0.02
MAX_ARRIVAL_JITTER_S = 3600.0
MAX_INTENSITY_SPREAD = 1.0
_MOMENT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Variation:
    """How far one run of a scenario may stray from the nominal one (module docstring)."""

    arrival_jitter_s: float = DEFAULT_ARRIVAL_JITTER_S
    intensity_spread: float = DEFAULT_INTENSITY_SPREAD
    layout: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.arrival_jitter_s) and self.arrival_jitter_s >= 0):
            raise ValueError(
                f"arrival_jitter_s: must be >= 0 seconds, got {self.arrival_jitter_s!r}"
            )
        if self.arrival_jitter_s > MAX_ARRIVAL_JITTER_S:
            raise ValueError(
                f"arrival_jitter_s: {self.arrival_jitter_s!r} s is more than "
                f"{MAX_ARRIVAL_JITTER_S:g} s"
            )
        if not (math.isfinite(self.intensity_spread) and self.intensity_spread >= 0):
            raise ValueError(f"intensity_spread: must be >= 0, got {self.intensity_spread!r}")
        if self.intensity_spread > MAX_INTENSITY_SPREAD:
            raise ValueError(
                f"intensity_spread: {self.intensity_spread!r} is more than "
                f"{MAX_INTENSITY_SPREAD:g} (a factor e per standard deviation)"
            )

    @classmethod
    def none(cls) -> Variation:
        """Every run is the nominal one."""
        return cls(arrival_jitter_s=0.0, intensity_spread=0.0, layout=False)

    @property
    def active(self) -> bool:
        return self.arrival_jitter_s > 0 or self.intensity_spread > 0 or self.layout


def realise(scenario: Scenario, rng: np.random.Generator) -> Scenario:
    """One run of ``scenario`` drawn from ``rng``: a concrete scenario whose variation is off
    (so realising it again changes nothing). Takes one draw from ``rng`` whatever the
    scenario, and gives ``scenario`` itself back when its variation is off."""
    seed = int(rng.integers(2**63 - 1))
    variation = scenario.variation
    if not variation.active:
        return scenario
    moments_rng, intensity_rng, layout_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)
    )
    shift = _moment_shifts(scenario, variation.arrival_jitter_s, moments_rng)
    apps = tuple(
        _realise_app(run, scenario.duration_s, shift, variation, layout_rng)
        for run in scenario.apps
    )
    events = tuple(dataclasses.replace(e, at_s=shift(e.at_s)) for e in scenario.events)
    apps, events = _spread_intensity(apps, events, variation.intensity_spread, intensity_rng)
    traffic = tuple(_realise_traffic(flow, scenario.duration_s, shift) for flow in scenario.traffic)
    return dataclasses.replace(
        scenario,
        apps=apps,
        events=tuple(sorted(events, key=lambda e: e.at_s)),
        traffic=traffic,
        variation=Variation.none(),
    )


def _moment_shifts(scenario: Scenario, jitter_s: float, rng: np.random.Generator):
    """A map from each of the scenario's moments to its moved time. Time 0 and the end stay;
    every other moment moves by a whole number of control intervals within the jitter and
    less than half the gap to each neighbour, so the moments keep their order and at least
    one interval between them."""
    interval = scenario.control_interval_s
    limit = math.floor(jitter_s / interval + _MOMENT_TOLERANCE)
    moments = scenario.moments()
    bounds = [*moments, scenario.duration_s]
    moved: dict[float, float] = {}
    for i, moment in enumerate(moments):
        if i == 0 or limit == 0:
            moved[moment] = moment
            continue
        before = math.floor(((moment - bounds[i - 1]) / interval - 1) / 2 + _MOMENT_TOLERANCE)
        after = math.floor(((bounds[i + 1] - moment) / interval - 1) / 2 + _MOMENT_TOLERANCE)
        low, high = -min(limit, max(before, 0)), min(limit, max(after, 0))
        moved[moment] = moment + int(rng.integers(low, high + 1)) * interval

    def shift(moment: float) -> float:
        for nominal, new in moved.items():
            if abs(nominal - moment) <= _MOMENT_TOLERANCE:
                return new
        return moment  # the scenario's end (not a moment): stays

    return shift


def _realise_app(
    run: AppRun, duration: float, shift, variation: Variation, rng: np.random.Generator
) -> AppRun:
    app = run.app
    # one draw per application whatever its kind, so one app's kind never moves another's
    layout_seed = int(rng.integers(0, 2**31))
    if variation.layout and app.trace is None and app.distribution.kind == "zipf":
        app = dataclasses.replace(
            app, distribution=dataclasses.replace(app.distribution, seed=layout_seed)
        )
    stop = None if run.stop_s is None else shift(run.stop_s)
    return dataclasses.replace(
        run, app=app, start_s=shift(run.start_s), stop_s=None if stop == duration else stop
    )


def _realise_traffic(flow: Traffic, duration: float, shift) -> Traffic:
    stop = None if flow.stop_s is None else shift(flow.stop_s)
    return dataclasses.replace(
        flow, start_s=shift(flow.start_s), stop_s=None if stop == duration else stop
    )


def _spread_intensity(
    apps: tuple[AppRun, ...],
    events: tuple[Event, ...],
    spread: float,
    rng: np.random.Generator,
) -> tuple[tuple[AppRun, ...], tuple[Event, ...]]:
    """Scale every application phase's intensity by its own lognormal factor: the first
    phase through the application's ``mlp``, later ones through their events' intensity
    (which scales that ``mlp``, hence the division by the first factor)."""
    if spread == 0:
        return apps, events
    first: dict[str, float] = {}
    new_apps = []
    for run in apps:
        factor = float(np.exp(spread * rng.standard_normal()))
        first[run.app.name] = factor
        new_apps.append(
            dataclasses.replace(run, app=dataclasses.replace(run.app, mlp=run.app.mlp * factor))
        )
    new_events = []
    for event in sorted(events, key=lambda e: (e.at_s, e.app)):
        factor = float(np.exp(spread * rng.standard_normal()))
        if event.intensity is not None:
            event = dataclasses.replace(
                event, intensity=event.intensity * factor / first[event.app]
            )
        new_events.append(event)
    return tuple(new_apps), tuple(new_events)
