"""A reduced-fidelity "fluid" model of the simulated host that steps many envs at once.

``SimulatedHost`` tracks every page and runs one DAMON kdamond per application: faithful, but
about half a millisecond per control interval. The fluid model keeps the same scenario, the
same node profiles, the same throughput solver and the same DAMOS recipe (damo's
weighted-interleave ``migrate_hot``: regions accessed in >= 5 % of samples, weighted dests
equal to the interleave weights, a 200 MiB/s quota, applied every second; or what the
scenario's ``[damos]`` table sets, ``DamosSetup.for_scenario``), but replaces pages
and DAMON regions by expectations over *chunks*, so a batch of B envs is a handful of arrays
with a leading env axis stepped by one compiled loop and one batched ``solve`` call.

What it simplifies, relative to the full simulator:

- **Pages → chunks.** Each application's address space is cut into ``n_chunks`` contiguous
  chunks (boundaries placed where the access distribution changes, e.g. at a hot set's
  edges, when that needs few enough chunks; otherwise evenly, snapped to such edges). Within
  a chunk, pages are interchangeable: the state is, per chunk, how many of its pages sit on
  each node *and* which node the current weights' interleave pattern assigns them to (a
  nodes x nodes table). The second index is what makes migration counts right: weighted
  interleave gives page i the node of ``i mod sum(weights)``, so after 3:1 becomes 2:1 a
  walk over the pages moves 5/12 of them (the two patterns disagree there), not the 1/12 a
  pure share difference would suggest. When the weights change, each (node, old target)
  class is redistributed over the new targets by the exact joint frequency of the two
  periodic patterns (``pattern_transition``); this treats pages of a class as a random sample
  of its interleave indices, exact for one change from a freshly placed state.
- **DAMON → expected access counts.** A chunk's per-sample access probability p is
  ``(touched/size) * (1 - exp(-rate * sample_interval))`` at the page rate the application's
  last throughput implies (the host feeds DAMON the same rates). DAMOS matches a region by
  its ``nr_accesses_bp`` moving sum, whose integer part is close to the rounded-down mean,
  so a chunk is eligible when ``p * max_nr_accesses`` reaches the scheme's minimum (1 of 20
  samples: the "5 % of samples" rule). The reported hotness histogram uses each aggregation's
  count, taken as Binomial(max_nr_accesses, p) (the full simulator's merged regions scatter
  somewhat less: on hot-set-shift its cold pages are 53 % idle, the fluid model's 44 %); the
  access share uses p. No region splitting/merging, no sampling noise, no detection lag
  after a hot set moves.
- **DAMOS → a fluid walk.** With the recipe's quota priority weights all zero, every matching
  region has the same score, so the kernel walks them in address order (not hottest first),
  resuming where the last quota window stopped (``charge_addr_from``) and restarting at the
  lowest address when a pass reaches the end. The fluid walk does the same over chunks,
  charging eligible chunks' pages against the quota and moving the walked pages whose target
  differs from their node; the part of the cursor's chunk already walked in this pass is
  kept apart (``walked_pages``) so that a pass never walks a page twice. A quota that runs
  out exactly where no eligible page follows leaves the next window nothing to walk (the
  kernel resumes after where it stopped), so a quota dividing the eligible pages wastes a
  window per pass as the kernel does. Migration into a full node fails (counted as
  pgmigrate_fail), allowing frames freed by the same pass. Not modelled: a window that stops
  inside the kernel's *last region* makes the kernel skip the rest of that region in the
  next window; the fluid walk finishes the pass.
- **Timing.** The quota is one budget per control interval (the recipe's apply interval and
  quota window both equal 1 s); migrations happen before the interval's solve, as in the
  host; kdamond start-up (first aggregations) is not modelled.

Everything else follows the host step for step: scenario changes at the interval's start
(starts, stops, phase events changing intensity, compute time or read share, hot sets moving,
traces' phases, open-loop traffic starting or stopping), growth touching new pages under the
current weights with the kernel's fallback to the next node with free memory, migration copy
traffic and the scenario's traffic as open-loop background (read shares weighted by GB/s),
the solver warm-started from the last latencies and solving only running applications, and
each application's reference throughput alone on idle local memory (recomputed when an event
changes intensity, compute time or read share). Bound co-runners (``bind_node``) allocate on
their node only (all of a first touch or nothing, as MPOL_BIND without reclaim), no kdamond
walks them and the weights never re-target them; they are solved like every stream but left
out of the reported applications (``FluidOutputs`` covers the managed ones) and of the reward,
which also skips applications with ``reward = false``.

The first interval: ``begin(state)`` reports a fresh state as ``SimulatedHost.begin`` does (time
0, idle nodes, nothing allocated, the weights in force); the weights of the first ``step`` are
the ones the applications starting at time 0 allocate under.

Checked against the full simulator (``tests/test_fluid.py``, 32 chunks): under static weights
1:1, 3:1 and 255:1 on co-runner and steady-single, per-application throughput, DDR resident
share and pages migrated agree to 1e-4; after a 3:1 -> 2:1 switch throughput agrees within
0.2 % on average, the DDR share within 1e-4 and migrated pages exactly; with new random
weights every 5 s (co-runner) throughput within 1.5 %, DDR share within 5e-4, migrations
within 1.3 % (every second: 1.8 %, 1e-3, 5 %). The co-runner optimum over static weights
is the full simulator's (spill while two instances run, all-local while one does); a batch's
env b equals that env run alone, bit for bit. Largest gaps seen: hot-set-shift after a
weight change (2-4 % throughput), where the full simulator's walk sometimes also charges cold
regions. On small scenarios with a bound co-runner, traffic switching on, phase events, an
unrewarded application or a 2 GiB/s quota, throughput and weighted speedup agree to 1e-6
under static weights and within 0.05 % after a weight switch; on three nodes within 0.1 %
(chunks that are not multiples of the weight sum interleave slightly off the weights).

State layout: ``FluidState`` arrays have a leading env axis B; ``step(state, weights)``
advances every env one control interval (or only the ``active`` ones), updating ``state`` in
place (``state.copy()`` branches a run), and returns ``FluidOutputs``. ``observe(outputs,
spec)`` builds the observation features of ``tierenv.contracts.features`` for the whole batch.
Everything of an interval before the solve (weight change, scenario changes, first touches,
DAMON, the DAMOS walk and migrations) is one compiled step in ``tierenv.sim.fluid_kernel``,
``advance(state, params, weights, active, out)``, over three structs of arrays:
``KernelState`` (the parts of ``FluidState`` it updates), ``KernelParams``
(``FluidParams.kernel``) and ``KernelOutputs``; it is built from small helpers, one per step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierenv.contracts.features import HOTNESS_BINS, FeatureError, ObservationSpec, quota_gibs
from tierenv.contracts.measurements import GroundTruth, Measurements, NodeInfo, StepResult
from tierenv.damon.abi import GiB
from tierenv.hardware.solver import NodeSet, alone_throughput_gbps, combine_background, solve
from tierenv.hardware.solver_jit import check_threads
from tierenv.hardware.solver_jit import parallel as parallel_solves
from tierenv.memory.interleave import MAX_WEIGHT, MIN_WEIGHT
from tierenv.memory.migration_cost import MigrationCost
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.fluid_kernel import (
    KernelOutputs,
    KernelParams,
    KernelState,
    advance,
    advance_parallel,
)
from tierenv.sim.fluid_kernel import pattern_transition as pattern_transition  # re-exported
from tierenv.workload.application import LINE_BYTES
from tierenv.workload.scenario import Event, Scenario

DEFAULT_CHUNKS = 32
#: With ``FluidModel(threads=...)``, a batch is cut into at most one part per this many envs
#: (about 1 us each in the compiled interval): smaller parts cost more in waking and joining
#: threads than they save (the batched solve has ``solver_jit.MIN_PROBLEMS_PER_THREAD``).
MIN_ENVS_PER_THREAD = 256
MAX_CHUNKS = 1024
TIME_EPSILON = 1e-9  # the host's tolerance when comparing times with scenario moments


class FluidModelError(ValueError):
    """A scenario, DAMOS setup, input or state the fluid model cannot handle."""


# ------------------------------------------------------------------------- static parameters
@dataclass(frozen=True, eq=False)
class FluidParams:
    """Everything about a scenario the fluid model needs, built once (``build_params``).

    Shapes: T control intervals, A applications (all of the scenario's, bound co-runners
    included), K chunks, P phases per application (padded), N nodes. A *phase* is one
    combination of access distribution, intensity, read share and compute time;
    ``phase[k, a]`` says which is in force in interval k. The host reports the *managed*
    applications only (``managed_apps``, M of them): ``FluidOutputs`` has their columns.
    """

    scenario: Scenario
    node_info: NodeInfo
    nodes: NodeSet
    page_size: int
    interval_s: float
    app_names: tuple[str, ...]  # (A,) every application, bound ones included
    managed_apps: np.ndarray  # (M,) int64: the applications the weights and DAMOS manage
    managed_names: tuple[str, ...]  # (M,) the reported applications' names
    in_reward: np.ndarray  # (A,) bool: counts in the reward (never a bound app)
    bind_node: np.ndarray  # (A,) int64: a bound app's node, -1 for managed apps
    step_start_s: np.ndarray  # (T,) time at each interval's start, accumulated as the host does
    capacity_pages: np.ndarray  # (N,)
    chunk_first_page: np.ndarray  # (A, K) int64
    chunk_pages: np.ndarray  # (A, K) pages per chunk (0: padding)
    running: np.ndarray  # (T, A) bool: the app runs during interval k
    starting: np.ndarray  # (T, A) bool: started at interval k's start
    stopping: np.ndarray  # (T, A) bool: stopped at interval k's start (its pages freed)
    phase: np.ndarray  # (T, A) int64
    new_pages: np.ndarray  # (T, A, K) pages first touched in interval k
    touched_pages: np.ndarray  # (T, A, K) pages touched by the end of interval k's first touches
    phase_share: np.ndarray  # (A, P, K) share of the app's accesses per chunk
    phase_hot: np.ndarray  # (A, P, K) share of the chunk's pages in the app's hot set
    phase_mlp: np.ndarray  # (A, P) misses in flight (intensity applied)
    phase_read_fraction: np.ndarray  # (A, P)
    phase_think_ns: np.ndarray  # (A, P) compute time between misses
    phase_alone_gbps: np.ndarray  # (A, P) throughput alone on idle local memory
    traffic_gbps: np.ndarray  # (T, N) open-loop background traffic in interval k
    traffic_read_fraction: np.ndarray  # (T, N) its read share (1 where there is none)
    running_set: np.ndarray  # (T,) int64: index into running_apps
    running_apps: tuple[np.ndarray, ...]  # the distinct sets of running apps
    running_apps_count: np.ndarray  # (sets,) applications in each set
    damos_enabled: bool
    sample_s: float
    max_nr_accesses: int
    min_nr_accesses: int
    hotness_thresholds: np.ndarray  # (bins - 1,) int64: least nr_accesses of each upper bin
    quota_pages: float  # default DAMOS charge budget per interval and app (inf: unlimited)
    quota_reset_interval_ms: int
    migration_cost: MigrationCost

    @property
    def n_steps(self) -> int:
        return int(self.step_start_s.size)

    @property
    def n_nodes(self) -> int:
        return int(self.capacity_pages.size)

    @property
    def n_apps(self) -> int:
        """All applications (the model's app axis), bound co-runners included."""
        return len(self.app_names)

    @property
    def n_chunks(self) -> int:
        return int(self.chunk_pages.shape[1])

    @functools.cached_property
    def all_managed(self) -> bool:
        """No bound co-runner: the reported applications are the model's."""
        return self.managed_apps.size == self.n_apps

    @functools.cached_property
    def has_traffic(self) -> bool:
        return bool(np.any(self.traffic_gbps > 0))

    @functools.cached_property
    def kernel(self) -> KernelParams:
        """What the compiled interval reads, as one struct."""
        return KernelParams(
            running=self.running,
            starting=self.starting,
            stopping=self.stopping,
            phase=self.phase,
            new_pages=self.new_pages,
            touched_pages=self.touched_pages,
            chunk_pages=self.chunk_pages,
            phase_share=self.phase_share,
            share_per_page=_per_page(self.phase_share, self.chunk_pages[:, None, :]),
            touched_share=_per_page(self.touched_pages, self.chunk_pages[None]),
            phase_hot=self.phase_hot,
            phase_alone_gbps=self.phase_alone_gbps,
            capacity_pages=self.capacity_pages,
            bind_node=self.bind_node,
            hotness_thresholds=self.hotness_thresholds,
            damos_enabled=bool(self.damos_enabled),
            misses_per_gbps_sample=float(self.sample_s * 1e9 / LINE_BYTES),
            max_nr_accesses=int(self.max_nr_accesses),
            min_nr_accesses=int(self.min_nr_accesses),
        )

    def quota_pages_for(self, bytes_per_s: np.ndarray) -> np.ndarray:
        """Charge budget per interval (pages) for DAMOS quotas in bytes/s, as
        ``SimulatedHost.set_damos_quota`` rounds them (whole pages per window, at least one;
        0 means unlimited)."""
        rate = np.asarray(bytes_per_s, dtype=np.float64)
        if not np.all(np.isfinite(rate)) or np.any(rate < 0):
            bad = rate[~np.isfinite(rate) | (rate < 0)][0]
            raise FluidModelError(f"DAMOS quota must be finite and >= 0 bytes/s, got {bad!r}")
        page = self.page_size
        per_window = np.floor(rate * self.quota_reset_interval_ms / 1000) // page * page
        per_window = np.where(rate > 0, np.maximum(per_window, page), 0.0)
        windows = self.interval_s * 1000 / self.quota_reset_interval_ms
        return np.where(per_window > 0, per_window / page * windows, np.inf)


def _per_page(values: np.ndarray, pages: np.ndarray) -> np.ndarray:
    """``values / pages`` (broadcast), 0 where a chunk has no pages (padding): the kernel's
    per-page quotients, divided once (the same IEEE divisions it made per interval)."""
    shape = np.broadcast_shapes(values.shape, pages.shape)
    out = np.zeros(shape)
    np.divide(values, pages, out=out, where=np.broadcast_to(pages > 0, shape))
    return out


def build_params(
    scenario: Scenario,
    n_chunks: int = DEFAULT_CHUNKS,
    damos: DamosSetup | None = None,
    migration_cost: MigrationCost | None = None,
) -> FluidParams:
    """The fluid model's static parameters for ``scenario`` (see the module docstring);
    ``damos`` defaults to the scenario's (``DamosSetup.for_scenario``), as the host's."""
    if not isinstance(n_chunks, int | np.integer) or not 1 <= n_chunks <= MAX_CHUNKS:
        raise FluidModelError(f"n_chunks must be an integer in 1..{MAX_CHUNKS}, got {n_chunks!r}")
    damos = damos or DamosSetup.for_scenario(scenario)
    migration_cost = migration_cost or MigrationCost()
    _check_damos(damos, scenario.control_interval_s, scenario.page_size)
    nodes = NodeSet([node.profile for node in scenario.nodes])
    page_size = scenario.page_size
    node_info = scenario.node_info()
    timeline = _Timeline(scenario)
    n_steps, n_apps = timeline.running.shape
    chunk_first = np.zeros((n_apps, n_chunks), dtype=np.int64)
    chunk_pages = np.zeros((n_apps, n_chunks))
    n_phases = max(len(keys) for keys in timeline.phase_keys)
    phase_share = np.zeros((n_apps, n_phases, n_chunks))
    phase_hot = np.zeros((n_apps, n_phases, n_chunks))
    phase_mlp = np.ones((n_apps, n_phases))
    phase_reads = np.ones((n_apps, n_phases))
    phase_think = np.zeros((n_apps, n_phases))
    phase_alone = np.ones((n_apps, n_phases))
    new_pages = np.zeros((n_steps, n_apps, n_chunks))
    for a, run in enumerate(scenario.apps):
        app = run.app
        shares = [timeline.page_shares(a, key) for key in timeline.phase_keys[a]]
        hots = [timeline.hot_mask(a, key) for key in timeline.phase_keys[a]]
        if run.managed:
            bounds = chunk_bounds(shares, hots, timeline.n_pages[a], n_chunks)
        else:  # a bound app's pages all sit on its node: one chunk is exact
            bounds = np.array([0, timeline.n_pages[a]], dtype=np.int64)
        count = bounds.size - 1
        chunk_first[a, :count] = bounds[:-1]
        chunk_first[a, count:] = bounds[-1]
        chunk_pages[a, :count] = np.diff(bounds)
        for p, key in enumerate(timeline.phase_keys[a]):
            phase_share[a, p, :count] = np.add.reduceat(shares[p], bounds[:-1])
            phase_hot[a, p, :count] = np.add.reduceat(hots[p].astype(float), bounds[:-1])
            phase_hot[a, p, :count] /= np.maximum(np.diff(bounds), 1)
            _, intensity, read_fraction, think_ns, alone_reads = key
            phase_mlp[a, p] = app.mlp * intensity
            phase_reads[a, p] = read_fraction
            phase_think[a, p] = think_ns
            phase_alone[a, p] = float(
                alone_throughput_gbps(
                    nodes, np.array([app.mlp * intensity]), think_ns, alone_reads
                )[0]
            )
        # Pages touched in [before, after) fill chunks in address order.
        before = np.concatenate([[0], timeline.touched[:-1, a]])
        after = timeline.touched[:, a]
        firsts, lasts = bounds[:-1], bounds[1:]
        filled = np.clip(after[:, None], firsts, lasts) - np.clip(before[:, None], firsts, lasts)
        new_pages[:, a, :count] = np.maximum(filled, 0)
    running_sets, running_set = np.unique(timeline.running, axis=0, return_inverse=True)
    attrs = damos.attrs
    pattern = damos.context(0, [1] * len(scenario.nodes)).schemes[0].access_pattern
    max_nr = attrs.max_nr_accesses
    edges = [edge for _, edge in HOTNESS_BINS[1:]]
    # the least nr_accesses whose rate nr / max lands in each upper bin (as searchsorted does)
    thresholds = np.array(
        [next(nr for nr in range(max_nr + 2) if nr > max_nr or nr / max_nr >= e) for e in edges],
        dtype=np.int64,
    )
    quota_window_pages = damos.quota_bytes // page_size
    windows = scenario.control_interval_s * 1000 / damos.quota_reset_interval_ms
    managed = np.array([run.managed for run in scenario.apps], dtype=bool)
    return FluidParams(
        scenario=scenario,
        node_info=node_info,
        nodes=nodes,
        page_size=page_size,
        interval_s=scenario.control_interval_s,
        app_names=tuple(run.app.name for run in scenario.apps),
        managed_apps=np.flatnonzero(managed).astype(np.int64),
        managed_names=tuple(run.app.name for run in scenario.apps if run.managed),
        in_reward=np.array([run.in_reward and run.managed for run in scenario.apps], dtype=bool),
        bind_node=np.array(
            [-1 if run.managed else run.bind_node for run in scenario.apps], dtype=np.int64
        ),
        step_start_s=timeline.start_s,
        capacity_pages=np.array([n.capacity_bytes // page_size for n in scenario.nodes], float),
        chunk_first_page=chunk_first,
        chunk_pages=chunk_pages,
        running=timeline.running,
        starting=timeline.starting,
        stopping=timeline.stopping,
        phase=timeline.phase,
        new_pages=new_pages,
        touched_pages=np.cumsum(new_pages, axis=0) * timeline.running[:, :, None],
        phase_share=phase_share,
        phase_hot=phase_hot,
        phase_mlp=phase_mlp,
        phase_read_fraction=phase_reads,
        phase_think_ns=phase_think,
        phase_alone_gbps=phase_alone,
        traffic_gbps=timeline.traffic_gbps,
        traffic_read_fraction=timeline.traffic_read_fraction,
        running_set=running_set.reshape(-1).astype(np.int64),
        running_apps=tuple(np.flatnonzero(row) for row in running_sets),
        running_apps_count=running_sets.sum(axis=1),
        damos_enabled=damos.enabled,
        sample_s=attrs.sample_us * 1e-6,
        max_nr_accesses=int(max_nr),
        min_nr_accesses=int(min(pattern.nr_accesses.min, max_nr + 1)),
        hotness_thresholds=thresholds,
        quota_pages=quota_window_pages * windows if damos.quota_bytes else math.inf,
        quota_reset_interval_ms=damos.quota_reset_interval_ms,
        migration_cost=migration_cost,
    )


def _check_damos(damos: DamosSetup, interval_s: float, page_size: int) -> None:
    """Refuse DAMOS setups the fluid walk does not model, naming the field."""
    interval_us = round(interval_s * 1e6)
    if damos.quota_bytes % page_size:
        # the kernel then never records where a window stopped and every window starts over
        # at the lowest address (see damos_setup); the fluid walk always resumes
        raise FluidModelError(
            f"damos.quota_bytes {damos.quota_bytes} is not a whole number of {page_size}-byte "
            "pages; the fluid model needs a quota the kernel can reach exactly"
        )
    if damos.attrs.intervals_goal.aggrs:
        raise FluidModelError(
            "damos.attrs.intervals_goal: interval auto-tuning is not modelled by the fluid model"
        )
    if damos.apply_interval_us != damos.quota_reset_interval_ms * 1000:
        raise FluidModelError(
            f"damos.apply_interval_us {damos.apply_interval_us} must equal the quota reset "
            f"interval ({damos.quota_reset_interval_ms} ms): the fluid model charges one quota "
            "window per DAMOS pass"
        )
    if interval_us % damos.apply_interval_us:
        raise FluidModelError(
            f"damos.apply_interval_us {damos.apply_interval_us} must divide the control "
            f"interval ({interval_us} us) for the fluid model"
        )


class _Timeline:
    """The host's scenario bookkeeping replayed once, interval by interval: which apps run,
    which phase each is in, how many pages each has touched, the open-loop traffic on each
    node (``SimulatedHost.step`` order: stops and starts, events, traffic, traces' phases,
    growth)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        starts: list[float] = []
        now = 0.0
        # the host's own float accumulation, so boundary moments compare the same way
        while now < scenario.duration_s - TIME_EPSILON:
            starts.append(now)
            now += scenario.control_interval_s
        self.start_s = np.array(starts)
        n_steps, n_apps, n_nodes = len(starts), len(scenario.apps), len(scenario.nodes)
        self.n_pages = [run.app.n_pages(scenario.page_size) for run in scenario.apps]
        self.running = np.zeros((n_steps, n_apps), dtype=bool)
        self.starting = np.zeros((n_steps, n_apps), dtype=bool)
        self.stopping = np.zeros((n_steps, n_apps), dtype=bool)
        self.phase = np.zeros((n_steps, n_apps), dtype=np.int64)
        self.touched = np.zeros((n_steps, n_apps), dtype=np.int64)
        self.traffic_gbps = np.zeros((n_steps, n_nodes))
        self.traffic_read_fraction = np.ones((n_steps, n_nodes))
        # phase key: (hot_offset or trace segment, intensity, read fraction, think_ns, and the
        # read fraction the reference throughput alone was computed with)
        self.phase_keys: list[list[tuple]] = [[] for _ in scenario.apps]
        # the host's per-application state as the replay goes on
        self._status = ["waiting"] * n_apps
        self._intensity = [1.0] * n_apps
        self._where = [run.app.distribution.hot_offset for run in scenario.apps]  # or segment
        self._reads = [run.app.read_fraction for run in scenario.apps]
        self._think = [run.app.think_ns for run in scenario.apps]
        self._alone_reads = list(self._reads)
        self._touched_now = [0] * n_apps
        self._events_done = 0
        for k, start in enumerate(starts):
            moment = start + TIME_EPSILON
            self._stops_and_starts(k, start, moment)
            self._events(moment)
            self._traffic(k, moment)
            self._run(k, start)
        for a, run in enumerate(scenario.apps):
            if not self.phase_keys[a]:  # never runs within the scenario: one dummy phase
                d = run.app.distribution
                reads, think = self._reads[a], self._think[a]
                self.phase_keys[a].append((d.hot_offset, 1.0, reads, think, reads))

    def _stops_and_starts(self, k: int, start: float, moment: float) -> None:
        """Applications stopping, then starting, at interval ``k``'s start."""
        status, where, reads = self._status, self._where, self._reads
        for a, run in enumerate(self.scenario.apps):
            if status[a] == "running" and run.stop_s is not None and run.stop_s <= moment:
                status[a] = "stopped"
                self.stopping[k, a] = True
            if status[a] == "waiting" and run.start_s <= moment:
                status[a] = "running"
                self.starting[k, a] = True
                where[a] = self._follow_trace(a, start, where[a], reads)
                self._alone_reads[a] = reads[a]
                if run.app.growth_bytes_per_s == 0:
                    self._touched_now[a] = self.n_pages[a]

    def _events(self, moment: float) -> None:
        """The scenario's events due by ``moment``, on the applications they name (an event
        naming an application that is not running is used up without effect)."""
        events = self.scenario.events
        while self._events_done < len(events) and events[self._events_done].at_s <= moment:
            event = events[self._events_done]
            a = next(i for i, run in enumerate(self.scenario.apps) if run.app.name == event.app)
            if self._status[a] == "running":
                self._apply_event(a, event)
            self._events_done += 1

    def _apply_event(self, a: int, event: Event) -> None:
        """An event's changes to a running application's phase."""
        if event.intensity is not None:
            self._intensity[a] = event.intensity
        if event.think_ns is not None:
            self._think[a] = event.think_ns
        if event.read_fraction is not None:
            self._reads[a] = event.read_fraction
        if (event.intensity, event.think_ns, event.read_fraction) != (None,) * 3:
            self._alone_reads[a] = self._reads[a]  # the host recomputes alone here only
        if event.hot_offset is not None:
            self._where[a] = event.hot_offset

    def _traffic(self, k: int, moment: float) -> None:
        """Open-loop traffic in interval ``k`` as the host sums it (``SimulatedHost._traffic``):
        GB/s per node and the read share of it."""
        read_gbps = np.zeros(self.traffic_gbps.shape[1])
        for flow in self.scenario.traffic:
            if flow.runs_at(moment):
                self.traffic_gbps[k, flow.node] += flow.gbps
                read_gbps[flow.node] += flow.gbps * flow.read_fraction
        np.divide(
            read_gbps,
            self.traffic_gbps[k],
            out=self.traffic_read_fraction[k],
            where=self.traffic_gbps[k] > 0,
        )

    def _run(self, k: int, start: float) -> None:
        """The running applications in interval ``k``: traces' phases, growth (pages touched
        by the interval's end) and the phase in force."""
        scenario = self.scenario
        touched, where = self._touched_now, self._where  # pages touched so far, per app
        for a, run in enumerate(scenario.apps):
            if self._status[a] != "running":
                continue
            where[a] = self._follow_trace(a, start, where[a], self._reads)
            rate = run.app.growth_bytes_per_s
            if rate and touched[a] < self.n_pages[a]:
                elapsed = start - run.start_s + scenario.control_interval_s
                target = int(elapsed * rate // scenario.page_size)
                touched[a] = max(touched[a], min(self.n_pages[a], target))
            key = (
                where[a],
                self._intensity[a],
                self._reads[a],
                self._think[a],
                self._alone_reads[a],
            )
            if key not in self.phase_keys[a]:
                self.phase_keys[a].append(key)
            self.phase[k, a] = self.phase_keys[a].index(key)
            self.running[k, a] = True
            self.touched[k, a] = touched[a]

    def _follow_trace(self, a: int, start: float, where: float, reads: list[float]) -> float:
        run = self.scenario.apps[a]
        trace = run.app.trace
        if trace is None:
            return where
        segment = trace.segment_at(start - run.start_s)
        if trace.kind == "masim":
            reads[a] = trace.read_fraction(segment)
        return segment

    def page_shares(self, a: int, key: tuple) -> np.ndarray:
        app = self.scenario.apps[a].app
        if app.trace is not None:
            return np.asarray(app.trace.shares(int(key[0])), dtype=float)
        distribution = app.distribution
        if distribution.kind == "hotcold":
            distribution = dataclasses.replace(distribution, hot_offset=key[0])
        return distribution.page_shares(self.n_pages[a])

    def hot_mask(self, a: int, key: tuple) -> np.ndarray:
        """The host's hot set: the distribution's, or the pages taking the top 80 % of a
        trace's accesses."""
        app = self.scenario.apps[a].app
        if app.trace is None:
            distribution = app.distribution
            if distribution.kind == "hotcold":
                distribution = dataclasses.replace(distribution, hot_offset=key[0])
            return distribution.hot_pages(self.n_pages[a])
        shares = self.page_shares(a, key)
        order = np.argsort(-shares, kind="stable")
        within = np.cumsum(shares[order]) <= 0.8
        within[0] = True
        mask = np.zeros(shares.size, dtype=bool)
        mask[order[within]] = True
        return mask


def chunk_bounds(
    shares: Sequence[np.ndarray], hot_masks: Sequence[np.ndarray], n_pages: int, n_chunks: int
) -> np.ndarray:
    """Chunk boundaries (page indices, ascending, from 0 to ``n_pages``, at most ``n_chunks``
    chunks). Where the access shares or the hot set change between neighbouring pages (in any
    phase) is a boundary when there are few enough such places; the longest chunks are then
    halved until there are ``n_chunks``. With too many such places the chunks are even,
    each boundary snapped to the nearest such place."""
    if n_pages <= 0:
        return np.array([0, 0], dtype=np.int64)
    changes = [np.zeros(0, dtype=np.int64)]
    for values in shares:
        differs = ~np.isclose(values[1:], values[:-1], rtol=1e-9, atol=0.0)
        changes.append(np.flatnonzero(differs) + 1)
    changes.extend(np.flatnonzero(mask[1:] != mask[:-1]) + 1 for mask in hot_masks)
    breaks = np.unique(np.concatenate(changes))
    if breaks.size + 1 <= n_chunks:
        bounds = sorted({0, n_pages, *breaks.tolist()})
        while len(bounds) - 1 < n_chunks:
            sizes = np.diff(bounds)
            longest = int(np.argmax(sizes))
            if sizes[longest] < 2:
                break
            bounds.insert(longest + 1, bounds[longest] + int(sizes[longest]) // 2)
        return np.array(bounds, dtype=np.int64)
    targets = np.linspace(0, n_pages, n_chunks + 1)[1:-1]
    after = np.clip(np.searchsorted(breaks, targets), 0, breaks.size - 1)
    before = np.clip(after - 1, 0, breaks.size - 1)
    nearer = np.where(
        np.abs(breaks[before] - targets) <= np.abs(breaks[after] - targets),
        breaks[before],
        breaks[after],
    )
    return np.unique(np.concatenate([[0], nearer, [n_pages]])).astype(np.int64)


# ---------------------------------------------------------------------------- dynamic state
@dataclass(eq=False)
class FluidState:
    """Per env (leading axis B): everything that changes while the model runs."""

    step: np.ndarray  # (B,) int64 control intervals done
    weights: np.ndarray  # (B, N) int64 interleave weights in force
    pages: np.ndarray  # (B, A, K, N, N) resident pages by (node, node the weights assign)
    throughput_gbps: np.ndarray  # (B, A) last interval's throughput (DAMON's access rates)
    latency_ns: np.ndarray  # (B, N) last solved node latencies (the solver's warm start)
    cursor: np.ndarray  # (B, A) DAMOS walk position in chunks (where the last window stopped)
    walked_pages: np.ndarray  # (B, A, N, N) pages of the cursor's chunk walked in this pass
    used_pages: np.ndarray  # (B, N) pages of all applications per node
    quota_pages: np.ndarray  # (B,) DAMOS charge budget per interval and application
    pgmigrate_success: np.ndarray  # (B,) cumulative pages migrated
    pgmigrate_fail: np.ndarray  # (B,) cumulative pages that found their target node full
    # the last solve's inputs and results per env: an env whose inputs repeat exactly (static
    # weights once migrations settle) reuses them instead of solving again
    solved_set: np.ndarray  # (B,) int64 running set (-1: never solved)
    solved_phase: np.ndarray  # (B, A) int64
    solved_split: np.ndarray  # (B, A, N)
    solved_background: np.ndarray  # (B, N)
    solved_background_reads: np.ndarray  # (B, N)
    solved_throughput: np.ndarray  # (B, A)
    solved_app_latency: np.ndarray  # (B, A)
    solved_bandwidth: np.ndarray  # (B, N)
    solved_reads: np.ndarray  # (B, N)
    solved_latency: np.ndarray  # (B, N) reported node latency
    solved_converged: np.ndarray  # (B,) bool

    @property
    def batch_size(self) -> int:
        return int(self.step.size)

    def kernel(self) -> KernelState:
        """The arrays the compiled interval updates, as one struct (views, not copies)."""
        return KernelState(
            step=self.step,
            weights=self.weights,
            pages=self.pages,
            walked_pages=self.walked_pages,
            used_pages=self.used_pages,
            throughput_gbps=self.throughput_gbps,
            cursor=self.cursor,
            quota_pages=self.quota_pages,
        )

    def copy(self) -> FluidState:
        return FluidState(
            **{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)}
        )

    def take(self, envs: np.ndarray | slice) -> FluidState:
        """The state of some envs (a copy), e.g. ``state.take([3])``."""
        return FluidState(
            **{f.name: getattr(self, f.name)[envs].copy() for f in dataclasses.fields(self)}
        )

    def put(self, envs: np.ndarray, source: FluidState) -> None:
        """Overwrite the envs ``envs`` (an index array or mask) with ``source``'s rows
        (broadcast when ``source`` has one env)."""
        for f in dataclasses.fields(self):
            getattr(self, f.name)[envs] = getattr(source, f.name)


@dataclass(frozen=True, eq=False)
class FluidOutputs:
    """What one interval produced, per env (leading axis B); app arrays cover the scenario's
    managed applications (``FluidParams.managed_names``: bound co-runners are solved but not
    reported, as on the host), with ``app_running`` saying which ran (the rest are 0)."""

    time_s: np.ndarray  # (B,) end of the interval
    interval_s: float
    weights: np.ndarray  # (B, N) int64 weights in force during the interval
    node_bandwidth_gbps: np.ndarray  # (B, N) all traffic, migrations included
    node_read_fraction: np.ndarray  # (B, N)
    node_latency_ns: np.ndarray  # (B, N)
    node_free_bytes: np.ndarray  # (B, N)
    app_running: np.ndarray  # (B, A) bool
    app_throughput_gbps: np.ndarray  # (B, A)
    app_alone_gbps: np.ndarray  # (B, A) reference: alone on idle local memory
    app_latency_ns: np.ndarray  # (B, A) mean memory latency each app sees
    app_access_split: np.ndarray  # (B, A, N)
    app_hot_pages: np.ndarray  # (B, A, N) pages of each app's hot set per node
    resident_pages: np.ndarray  # (B, A, N)
    migrated_pages: np.ndarray  # (B, N, N) moved from row to column node this interval
    failed_pages: np.ndarray  # (B,) migrations refused by a full node this interval
    damon_hotness_pages: np.ndarray  # (B, N, bins) expected monitored pages per hotness bin
    damon_access_pages: np.ndarray  # (B, N) expected pages x nr_accesses / max
    background_gbps: np.ndarray  # (B, N) migration copy traffic (not the scenario's traffic)
    weighted_speedup: np.ndarray  # (B,) over the running applications that count
    solver_converged: np.ndarray  # (B,) bool
    damos_quota_bytes_per_s: np.ndarray  # (B,) quota in force (0: unlimited)
    page_size: int

    @property
    def batch_size(self) -> int:
        return int(self.time_s.size)

    @property
    def migrated_bytes(self) -> np.ndarray:
        return self.migrated_pages * self.page_size

    def step_result(self, env: int, params: FluidParams) -> StepResult:
        """One env's interval as the host contract reports it (``Measurements`` and
        ``GroundTruth``) for tools written against a host. Page counts are fluid (float) ones,
        pgmigrate counters rounded.
        DAMON regions are not reported (the fluid model has chunks, not regions): features
        built from them come from ``observe``."""
        running = np.flatnonzero(self.app_running[env])
        names = tuple(params.managed_names[a] for a in running)
        measurements = Measurements(
            time_s=float(self.time_s[env]),
            interval_s=self.interval_s,
            weights=self.weights[env].copy(),
            node_bandwidth_gbps=self.node_bandwidth_gbps[env].copy(),
            node_read_fraction=self.node_read_fraction[env].copy(),
            node_latency_ns=self.node_latency_ns[env].copy(),
            node_free_bytes=self.node_free_bytes[env].copy(),
            app_names=names,
            app_throughput_gbps=self.app_throughput_gbps[env, running].copy(),
            resident_pages=self.resident_pages[env, running].copy(),
            migrated_bytes=self.migrated_bytes[env].copy(),
            pgmigrate_success=round(float(self.migrated_pages[env].sum())),
            pgmigrate_fail=round(float(self.failed_pages[env])),
            damon_regions={},
            damon_region_pages={},
            damos_stats={},
            damos_quota_bytes_per_s=float(self.damos_quota_bytes_per_s[env]),
            nr_accesses_max=params.max_nr_accesses,
        )
        truth = GroundTruth(
            app_latency_ns=self.app_latency_ns[env, running].copy(),
            app_access_split=self.app_access_split[env, running].copy(),
            app_alone_gbps=self.app_alone_gbps[env, running].copy(),
            weighted_speedup=float(self.weighted_speedup[env]),
            app_hot_pages=self.app_hot_pages[env, running].copy(),
            background_gbps=self.background_gbps[env].copy(),
            solver_converged=bool(self.solver_converged[env]),
            app_in_reward=params.in_reward[params.managed_apps][running],
        )
        return StepResult(measurements, truth)


# ------------------------------------------------------------------------------------ model
class FluidModel:
    """The fluid model of one scenario: ``initial_state``, ``begin`` and ``step`` for a batch
    of envs. ``damos`` defaults to the scenario's setup (``DamosSetup.for_scenario``).

    >>> model = FluidModel(load_scenario("co-runner"))
    >>> state = model.initial_state(1024, weights=[3, 1])
    >>> before = model.begin(state)  # time 0: idle, nothing allocated
    >>> outputs = model.step(state, np.tile([3, 1], (1024, 1)))  # interval 0

    ``threads`` (default 1: everything in the calling thread) > 1 runs the compiled interval
    (``advance_parallel``) and the batched solve (``solver_jit.parallel``) over that many
    parts of the batch in numba's thread pool, at least ``MIN_ENVS_PER_THREAD`` envs a
    part. The results are the serial ones, bit for bit (envs share nothing; each part runs
    the same compiled code). On a machine whose cores are busy with other work, threads can
    be much slower than serial (a part waits for a core). It is opt-in because numba's
    thread pool does not survive ``fork``: use it in a main process, and keep models in
    worker processes that are forked (SB3's ``SubprocVecEnv``, ``multiprocessing`` on Linux)
    serial, or start workers with ``spawn``/``forkserver``. Nothing changes numba's global
    configuration; its pool size is ``NUMBA_NUM_THREADS`` (default: the CPU count).
    """

    threads = 1  # (class default: also for models pickled before the option existed)

    def __init__(
        self,
        scenario: Scenario,
        n_chunks: int = DEFAULT_CHUNKS,
        damos: DamosSetup | None = None,
        migration_cost: MigrationCost | None = None,
        threads: int = 1,
    ) -> None:
        self.params = build_params(scenario, n_chunks, damos, migration_cost)
        self.threads = check_threads(threads)
        # cumulative wall seconds per part of ``step`` (for profiling the batched path)
        self.timings: dict[str, float] = {"advance": 0.0, "solve": 0.0, "outputs": 0.0}

    @property
    def n_nodes(self) -> int:
        return self.params.n_nodes

    @property
    def node_info(self) -> NodeInfo:
        return self.params.node_info

    def initial_state(
        self, batch_size: int, weights: Sequence[int] | np.ndarray | None = None
    ) -> FluidState:
        """B envs at time 0 with nothing allocated and ``weights`` (one row for all, or (B, N);
        default 1 per node) in force."""
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise FluidModelError(f"batch_size must be a positive integer, got {batch_size!r}")
        p = self.params
        initial = np.ones(p.n_nodes, dtype=np.int64) if weights is None else weights
        rows = self._checked_weights(np.broadcast_to(initial, (batch_size, p.n_nodes)))
        shape = (batch_size, p.n_apps, p.n_chunks, p.n_nodes, p.n_nodes)
        return FluidState(
            step=np.zeros(batch_size, dtype=np.int64),
            weights=rows.copy(),
            pages=np.zeros(shape),
            throughput_gbps=np.zeros((batch_size, p.n_apps)),
            latency_ns=np.tile(p.node_info.idle_latency_ns, (batch_size, 1)),
            cursor=np.zeros((batch_size, p.n_apps)),
            walked_pages=np.zeros((batch_size, p.n_apps, p.n_nodes, p.n_nodes)),
            used_pages=np.zeros((batch_size, p.n_nodes)),
            quota_pages=np.full(batch_size, p.quota_pages),
            pgmigrate_success=np.zeros(batch_size),
            pgmigrate_fail=np.zeros(batch_size),
            solved_set=np.full(batch_size, -1, dtype=np.int64),
            solved_phase=np.zeros((batch_size, p.n_apps), dtype=np.int64),
            solved_split=np.zeros((batch_size, p.n_apps, p.n_nodes)),
            solved_background=np.zeros((batch_size, p.n_nodes)),
            solved_background_reads=np.zeros((batch_size, p.n_nodes)),
            solved_throughput=np.zeros((batch_size, p.n_apps)),
            solved_app_latency=np.zeros((batch_size, p.n_apps)),
            solved_bandwidth=np.zeros((batch_size, p.n_nodes)),
            solved_reads=np.ones((batch_size, p.n_nodes)),
            solved_latency=np.tile(p.node_info.idle_latency_ns, (batch_size, 1)),
            solved_converged=np.ones(batch_size, dtype=bool),
        )

    def done(self, state: FluidState) -> np.ndarray:
        """(B,) bool: the env has reached the scenario's end."""
        return state.step >= self.params.n_steps

    def begin(self, state: FluidState) -> FluidOutputs:
        """What ``SimulatedHost.begin`` reports, for every env of ``state`` (changed in
        nothing): the host before its next interval with nothing reported running, idle
        nodes and the weights in force. On a fresh state (``initial_state``) that is the host
        at time 0, before the first weights place the first pages."""
        p = self.params
        batch, n_nodes, n_reported = state.batch_size, p.n_nodes, p.managed_apps.size
        time_s = np.where(
            state.step < p.n_steps,
            p.step_start_s[np.minimum(state.step, p.n_steps - 1)],
            p.step_start_s[-1] + p.interval_s,
        )
        free = np.maximum(p.capacity_pages - state.used_pages, 0.0)
        reported = (batch, n_reported)
        return FluidOutputs(
            time_s=time_s,
            interval_s=p.interval_s,
            weights=state.weights.copy(),
            node_bandwidth_gbps=np.zeros((batch, n_nodes)),
            node_read_fraction=np.ones((batch, n_nodes)),
            node_latency_ns=np.tile(p.node_info.idle_latency_ns, (batch, 1)),
            node_free_bytes=free * p.page_size,
            app_running=np.zeros(reported, dtype=bool),
            app_throughput_gbps=np.zeros(reported),
            app_alone_gbps=np.zeros(reported),
            app_latency_ns=np.zeros(reported),
            app_access_split=np.zeros((*reported, n_nodes)),
            app_hot_pages=np.zeros((*reported, n_nodes)),
            resident_pages=np.zeros((*reported, n_nodes)),
            migrated_pages=np.zeros((batch, n_nodes, n_nodes)),
            failed_pages=np.zeros(batch),
            damon_hotness_pages=np.zeros((batch, n_nodes, len(HOTNESS_BINS))),
            damon_access_pages=np.zeros((batch, n_nodes)),
            background_gbps=np.zeros((batch, n_nodes)),
            weighted_speedup=np.zeros(batch),
            solver_converged=np.ones(batch, dtype=bool),
            damos_quota_bytes_per_s=self._quota_bytes_per_s(state),
            page_size=p.page_size,
        )

    def step(
        self,
        state: FluidState,
        weights: np.ndarray,
        quota_bytes_per_s: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> FluidOutputs:
        """Advance every env one control interval under ``weights`` ((B, N) integers 1..255,
        in force from the interval's start) and, if given, DAMOS quotas ((B,) bytes/s, 0 =
        unlimited). ``state`` is updated in place.

        ``active`` ((B,) bool, default all): envs left out are not advanced (their state,
        weights and quota stay as they are) and their rows report what ``begin`` reports."""
        p = self.params
        batch = state.batch_size
        started = time.perf_counter()
        weights = self._checked_weights(weights, batch)
        if active is not None:
            active = np.broadcast_to(np.asarray(active, dtype=bool), (batch,))
            if active.all():
                active = None
            elif not active.any():
                return self.begin(state)
        idle = None if active is None else self.begin(state)
        self._check_not_ended(state, active)
        if quota_bytes_per_s is not None:
            self._set_quota(state, quota_bytes_per_s, active)
        n_nodes, n_apps = p.n_nodes, p.n_apps
        out = KernelOutputs.zeros(batch, n_apps, n_nodes)
        envs = np.ones(batch, dtype=bool) if active is None else np.ascontiguousarray(active)
        parts = min(self.threads, batch // MIN_ENVS_PER_THREAD)
        if parts > 1:
            advance_parallel(state.kernel(), p.kernel, weights, envs, out, parts)
        else:
            advance(state.kernel(), p.kernel, weights, envs, out)
        moved, split = out.moved, out.split
        solved = time.perf_counter()
        self.timings["advance"] += solved - started
        copies, copy_reads = p.migration_cost.background(moved, p.page_size, p.interval_s)
        steps = state.step.copy() if active is None else np.where(active, state.step, 0)
        if p.has_traffic:
            # the scenario's open-loop traffic beside the copies, read shares weighted by GB/s
            background, background_reads = combine_background(
                copies, copy_reads, p.traffic_gbps[steps], p.traffic_read_fraction[steps]
            )
        else:
            background, background_reads = copies, copy_reads
        phase = p.phase[steps]  # (B, A)
        alone = p.phase_alone_gbps[np.arange(n_apps), phase]
        throughput, app_latency, bandwidth, reads, latency, converged = self._solve(
            state, steps, split, background, background_reads, active
        )
        finished = time.perf_counter()
        self.timings["solve"] += finished - solved
        running_mask = p.running[steps]
        if active is not None:
            running_mask &= active[:, None]
        # DAMON's rates for the next interval follow this interval's throughput (as the host)
        state.throughput_gbps[:] = np.where(running_mask, throughput, state.throughput_gbps)
        state.pgmigrate_success += moved.sum(axis=(1, 2))
        state.pgmigrate_fail += out.failed
        if active is None:
            state.weights[:] = weights
            state.step += 1
        else:
            state.weights[active] = weights[active]
            state.step += active
        counted = running_mask if p.in_reward.all() else running_mask & p.in_reward
        with np.errstate(divide="ignore", invalid="ignore"):
            speedup = np.where(counted, throughput / alone, 0.0).sum(axis=1)
        alone = np.where(running_mask, alone, 0.0)
        hot_pages, resident = out.hot_pages, out.resident
        if not p.all_managed:  # report the managed applications only, as the host
            cols = p.managed_apps
            running_mask, throughput = running_mask[:, cols], throughput[:, cols]
            alone, app_latency, split = alone[:, cols], app_latency[:, cols], split[:, cols]
            hot_pages, resident = hot_pages[:, cols], resident[:, cols]
        outputs = FluidOutputs(
            time_s=p.step_start_s[steps] + p.interval_s,
            interval_s=p.interval_s,
            weights=weights.copy(),
            node_bandwidth_gbps=bandwidth,
            node_read_fraction=reads,
            node_latency_ns=latency,
            node_free_bytes=np.maximum(out.free, 0.0) * p.page_size,
            app_running=running_mask,
            app_throughput_gbps=throughput,
            app_alone_gbps=alone,
            app_latency_ns=app_latency,
            app_access_split=split,
            app_hot_pages=hot_pages,
            resident_pages=resident,
            migrated_pages=moved,
            failed_pages=out.failed,
            damon_hotness_pages=out.hotness,
            damon_access_pages=out.access,
            background_gbps=copies,
            weighted_speedup=speedup,
            solver_converged=converged,
            damos_quota_bytes_per_s=self._quota_bytes_per_s(state),
            page_size=p.page_size,
        )
        if idle is not None and active is not None:  # idle is set exactly when active is
            outputs = _merge_rows(outputs, idle, ~active)
        self.timings["outputs"] += time.perf_counter() - finished
        return outputs

    def _check_not_ended(self, state: FluidState, active: np.ndarray | None) -> None:
        """Refuse to step envs (the ``active`` ones, default all) past the scenario's end."""
        n_steps = self.params.n_steps
        waiting = state.step >= n_steps
        past = np.flatnonzero(waiting if active is None else waiting & active)
        if past.size:
            raise FluidModelError(
                f"env(s) {past[:8].tolist()} reached the scenario's end ({n_steps} intervals);"
                " reset them before stepping"
            )

    def _set_quota(
        self, state: FluidState, quota_bytes_per_s: np.ndarray, active: np.ndarray | None
    ) -> None:
        """DAMOS quotas ((B,) bytes/s, 0 = unlimited) in force from now in the ``active`` envs
        (default all)."""
        p = self.params
        quota = np.broadcast_to(np.asarray(quota_bytes_per_s, dtype=float), (state.batch_size,))
        if active is None:
            state.quota_pages[:] = p.quota_pages_for(quota)
        else:
            state.quota_pages[active] = p.quota_pages_for(quota[active])

    def _quota_bytes_per_s(self, state: FluidState) -> np.ndarray:
        """(B,) the DAMOS quota in force, bytes/s (0: unlimited)."""
        p = self.params
        limited = np.isfinite(state.quota_pages)
        return np.where(limited, state.quota_pages, 0.0) * p.page_size / p.interval_s

    def _solve(
        self,
        state: FluidState,
        steps: np.ndarray,
        split: np.ndarray,
        background: np.ndarray,
        background_reads: np.ndarray,
        active: np.ndarray | None = None,
    ) -> tuple[np.ndarray, ...]:
        """The batched throughput solve: one ``solve`` call per set of running applications
        (only running streams are solved), skipping envs whose inputs are exactly those of
        their last solve (static weights once migrations settle) and envs not ``active``.
        Returns (throughput, app_latency, node bandwidth, node read fraction, node latency,
        converged)."""
        p = self.params
        sets = p.running_set[steps]
        phase = p.phase[steps]
        stale = ~(
            (state.solved_set == sets)
            & np.all(state.solved_phase == phase, axis=1)
            & np.all(state.solved_split == split, axis=(1, 2))
            & np.all(state.solved_background == background, axis=1)
            & np.all(state.solved_background_reads == background_reads, axis=1)
        )
        if active is not None:
            stale &= active
        if stale.any():
            first = int(sets[0])
            if stale.all() and np.all(sets == first):
                groups: list[tuple[int, slice | np.ndarray]] = [(first, slice(None))]
            else:
                groups = [
                    (int(s), np.flatnonzero(stale & (sets == s))) for s in np.unique(sets[stale])
                ]
            for set_index, rows in groups:
                running = p.running_apps[set_index]
                self._solve_group(state, running, rows, phase, split, background, background_reads)
            state.solved_set[stale] = sets[stale]
            state.solved_phase[stale] = phase[stale]
            state.solved_split[stale] = split[stale]
            state.solved_background[stale] = background[stale]
            state.solved_background_reads[stale] = background_reads[stale]
            # no application running: only the migration traffic, at idle latency (as the host)
            idle = stale & (p.running_apps_count[sets] == 0)
            state.solved_bandwidth[idle] = background[idle]
            state.solved_reads[idle] = background_reads[idle]
        return (
            state.solved_throughput.copy(),
            state.solved_app_latency.copy(),
            state.solved_bandwidth.copy(),
            state.solved_reads.copy(),
            state.solved_latency.copy(),
            state.solved_converged.copy(),
        )

    def _solve_group(
        self,
        state: FluidState,
        running: np.ndarray,
        rows: slice | np.ndarray,
        phase: np.ndarray,
        split: np.ndarray,
        background: np.ndarray,
        background_reads: np.ndarray,
    ) -> None:
        """Solve the envs ``rows``, which all run the applications ``running``, into the
        ``solved_*`` fields of ``state``."""
        p = self.params
        n_apps = p.n_apps
        if running.size == 0:
            state.solved_throughput[rows] = 0.0
            state.solved_app_latency[rows] = 0.0
            state.solved_latency[rows] = p.node_info.idle_latency_ns
            state.solved_converged[rows] = True
            return
        every = running.size == n_apps
        rows_phase = phase[rows] if every else phase[rows][:, running]
        with parallel_solves(self.threads):
            solution = solve(
                p.nodes,
                p.phase_mlp[running, rows_phase],
                p.phase_think_ns[running, rows_phase],
                p.phase_read_fraction[running, rows_phase],
                split[rows] if every else split[rows][:, running],
                background_gbps=background[rows],
                background_read_fraction=background_reads[rows],
                initial_latency_ns=state.latency_ns[rows],
            )
        if every:
            state.solved_throughput[rows] = solution.throughput_gbps
            state.solved_app_latency[rows] = solution.stream_latency_ns
        else:
            index = np.ix_(np.arange(state.batch_size)[rows], running)
            state.solved_throughput[rows] = 0.0
            state.solved_app_latency[rows] = 0.0
            state.solved_throughput[index] = solution.throughput_gbps
            state.solved_app_latency[index] = solution.stream_latency_ns
        state.solved_bandwidth[rows] = solution.node_bandwidth_gbps
        state.solved_reads[rows] = solution.node_read_fraction
        state.solved_latency[rows] = solution.node_latency_ns
        state.solved_converged[rows] = solution.converged
        state.latency_ns[rows] = solution.node_latency_ns

    def _checked_weights(self, weights: np.ndarray, batch: int | None = None) -> np.ndarray:
        """``weights`` as C-contiguous int64 (B, N), refusing non-integers and values outside
        1..255 with the offending entry named."""
        values = np.asarray(weights)
        n_nodes = self.params.n_nodes
        rows = values.shape[0] if batch is None and values.ndim == 2 else batch
        if values.ndim != 2 or values.shape != (rows, n_nodes):
            raise FluidModelError(f"weights must have shape {(rows, n_nodes)}, got {values.shape}")
        if values.dtype.kind == "f":
            whole = np.isfinite(values) & (values == np.round(values))
            if not whole.all():
                env, node = np.argwhere(~whole)[0]
                raise FluidModelError(
                    f"weights[{env}, {node}] is {values[env, node]!r}; weights are integers"
                )
        elif values.dtype.kind not in "iu":
            raise FluidModelError(f"weights must be integers, got dtype {values.dtype}")
        values = values.astype(np.int64)
        outside = (values < MIN_WEIGHT) | (values > MAX_WEIGHT)
        if outside.any():
            env, node = np.argwhere(outside)[0]
            raise FluidModelError(
                f"weights[{env}, {node}] is {values[env, node]}; the kernel accepts integers "
                f"{MIN_WEIGHT}..{MAX_WEIGHT}"
            )
        return np.ascontiguousarray(values)


def _merge_rows(outputs: FluidOutputs, other: FluidOutputs, rows: np.ndarray) -> FluidOutputs:
    """``outputs`` with the envs ``rows`` (a (B,) mask) taken from ``other``."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(outputs):
        value = getattr(outputs, f.name)
        if isinstance(value, np.ndarray):
            mask = rows.reshape(rows.shape + (1,) * (value.ndim - 1))
            changes[f.name] = np.where(mask, getattr(other, f.name), value)
    return dataclasses.replace(outputs, **changes)


# ------------------------------------------------------------------------------- features
def _batch_shares(values: np.ndarray) -> np.ndarray:
    """``values / sum`` along the last axis, 0 where the sum is 0 (features.py's ``_shares``)."""
    total = values.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, values / np.where(total > 0, total, 1.0), 0.0)


FluidFeature = Callable[[FluidOutputs, FluidParams], np.ndarray]

# One function per feature group of tierenv.contracts.features, computing the same quantity
# for the whole batch: (B, width) in the group's own order.
FLUID_FEATURES: dict[str, FluidFeature] = {
    "bandwidth": lambda o, p: o.node_bandwidth_gbps / p.node_info.peak_gbps,
    "latency": lambda o, p: o.node_latency_ns / p.node_info.idle_latency_ns,
    "read_fraction": lambda o, p: o.node_read_fraction,
    "resident": lambda o, p: _batch_shares(o.resident_pages.sum(axis=1)),
    "free": lambda o, p: o.node_free_bytes / np.maximum(p.node_info.capacity_bytes, 1.0),
    "hotness": lambda o, p: _batch_shares(
        o.damon_hotness_pages.reshape(o.batch_size, -1)
    ),  # node-major, bins inner: the order of FeatureGroup.names
    "access_share": lambda o, p: _batch_shares(o.damon_access_pages),
    "weights": lambda o, p: _batch_shares(o.weights.astype(float)),
    "migrated": lambda o, p: o.migrated_bytes.sum(axis=1) / GiB / o.interval_s,
    "damos_quota": lambda o, p: quota_gibs(o.damos_quota_bytes_per_s)[:, None],
    "throughput": lambda o, p: (
        o.app_throughput_gbps.sum(axis=1, keepdims=True) / p.node_info.peak_gbps.sum()
    ),
    "apps": lambda o, p: o.app_running.sum(axis=1, keepdims=True).astype(float),
    "true_access_share": lambda o, p: _batch_shares(
        np.einsum("ba,ban->bn", o.app_throughput_gbps, o.app_access_split)
    ),
    "true_hot_share": lambda o, p: _batch_shares(o.app_hot_pages.sum(axis=1)),
    "true_speedup": lambda o, p: (o.weighted_speedup / np.maximum(o.app_running.sum(axis=1), 1))[
        :, None
    ],
}


def check_features(spec: ObservationSpec) -> None:
    """Raise ``FeatureError`` naming any group of ``spec`` the fluid model cannot produce."""
    missing = [name for name in spec.group_names if name not in FLUID_FEATURES]
    if missing:
        raise FeatureError(
            f"feature group(s) {', '.join(missing)} cannot be produced by the fluid model "
            f"(it produces: {', '.join(FLUID_FEATURES)})"
        )


def observe(outputs: FluidOutputs, params: FluidParams, spec: ObservationSpec) -> np.ndarray:
    """(B, features) float32 observations: ``spec``'s features in its order, clipped to its
    bounds, as ``ObservationSpec.build`` computes them for one host report."""
    check_features(spec)
    columns = [FLUID_FEATURES[name](outputs, params) for name in spec.group_names]
    values = np.concatenate(columns, axis=1)
    return np.clip(values, spec.low, spec.high).astype(np.float32)
