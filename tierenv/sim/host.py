"""The simulated host: what a real machine would do with a scenario and a set of weights.

``SimulatedHost`` owns the memory nodes (profiles and capacities), the applications, their
pages (``MemoryState``), one kdamond per application (``Kdamond`` with the ``DamosSetup``
scheme) and the throughput solver. ``step()`` advances simulated time by one control
interval and returns what a real host could measure (``Measurements``) and, kept apart, what
only a simulator knows (``GroundTruth``). Everything random draws from the seed, so the same
seed and weights give the same run; ``snapshot()``/``restore()`` branch a run. The host runs
the scenario it is given as written: a scenario's ``[variation]`` (how repeated runs differ)
is drawn by ``tierenv.workload.variation.realise`` before, as the env does at every reset.

``begin()`` reports the host before anything has run (time 0, idle): the weights set after it
are the ones the applications starting at time 0 allocate under, so every policy, static ones
included, places its first pages by its own weights.

One control interval, in order:
1. scenario changes due by the interval's start take effect (applications start or stop,
   phases change intensity, compute time or read share, hot sets move, background traffic
   starts or stops), and growing applications touch new pages under the weights in force;
2. each kdamond runs for the interval, seeing every page touched at its share of the
   application's misses at the throughput of the previous interval; DAMOS migrates;
3. the solver finds each application's throughput with its pages where they now are, the
   migrations' copy traffic loading the source (reads) and destination (writes) nodes and
   the scenario's open-loop traffic loading its nodes.

Bound co-runners (``bind_node``) are applications like the others for the solver, but their
pages are allocated on their node only (MPOL_BIND), no kdamond watches them, and they are left
out of the applications the host reports (``Measurements``/``GroundTruth`` list the managed
applications only) and so out of the reward.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tierenv.contracts.measurements import (
    GroundTruth,
    Measurements,
    NodeInfo,
    SchemeStats,
    StepResult,
)
from tierenv.damon.kdamond import Kdamond
from tierenv.hardware.solver import NodeSet, alone_throughput_gbps, combine_background, solve
from tierenv.memory.interleave import check_weights
from tierenv.memory.migration_cost import MigrationCost
from tierenv.memory.state import MemoryState
from tierenv.sim.damos_setup import DamosSetup
from tierenv.workload.access import Distribution
from tierenv.workload.scenario import AppRun, Scenario

__all__ = [
    "AppLoad",
    "FixedLoad",
    "GroundTruth",
    "Measurements",
    "NodeInfo",
    "SimulatedHost",
    "StepResult",
]

VMA_BASE = 0x7F00_0000_0000
RATE_TOLERANCE = 0.005  # rebuild DAMON's sampling index only when a rate moved more than this


@dataclass
class _App:
    run: AppRun
    memory_id: int
    n_pages: int
    distribution: Distribution
    shares: np.ndarray
    intensity: float = 1.0
    touched_pages: int = 0
    kdamond: Kdamond | None = None
    throughput_gbps: float = 0.0
    alone_gbps: float = 1.0
    rates_scale: float = -1.0  # throughput the kdamond's rates were last computed for
    segment: int = -1  # the trace's phase or snapshot in force (traced applications)
    hot: np.ndarray | None = None  # the hot set (cached; None when shares changed)
    read_fraction: float = 1.0
    think_ns: float = 0.0
    placement: tuple[np.ndarray, np.ndarray] | None = None  # access split, hot pages per node
    placement_key: tuple[int, int] | None = None  # what ``placement`` was computed for
    shares_version: int = 0  # counts changes of ``shares``

    @property
    def name(self) -> str:
        return self.run.app.name

    @property
    def managed(self) -> bool:
        return self.run.bind_node is None


@dataclass(frozen=True)
class FixedLoad:
    """The load no policy can place in the interval: bound co-runners (closed-loop streams
    pinned to one node) and open-loop background traffic. Oracles add it to every candidate."""

    mlp: np.ndarray  # (streams,)
    think_ns: np.ndarray  # (streams,)
    read_fraction: np.ndarray  # (streams,)
    node: np.ndarray  # (streams,) int64: the node each stream is bound to
    pages: np.ndarray  # (nodes,) int64: pages the bound streams hold on each node
    traffic_gbps: np.ndarray  # (nodes,) open-loop traffic
    traffic_read_fraction: np.ndarray  # (nodes,)

    @property
    def n_streams(self) -> int:
        return int(self.mlp.size)

    @property
    def empty(self) -> bool:
        return self.n_streams == 0 and not np.any(self.traffic_gbps > 0)

    def key(self) -> tuple:
        """A hashable identity (oracles group intervals by load)."""
        arrays: tuple[np.ndarray, ...] = (self.mlp, self.think_ns, self.read_fraction)
        arrays += (self.node, self.pages, self.traffic_gbps, self.traffic_read_fraction)
        return tuple(tuple(np.asarray(v).tolist()) for v in arrays)


@dataclass(frozen=True)
class AppLoad:
    """One running application's demand in the interval (what the solver and DAMON are fed),
    independent of where its pages are: for oracles, which need the load without a policy."""

    name: str
    mlp: float  # misses in flight: the spec's mlp x the current intensity
    think_ns: float
    read_fraction: float
    alone_gbps: float  # the reward's reference throughput
    page_shares: np.ndarray  # (n_pages,) share of accesses per page (read-only view)
    touched_pages: int  # pages [0, touched_pages) are resident (first-touched in page order)
    hot_pages: int  # pages in the hot set (GroundTruth.app_hot_pages counts these per node)
    in_reward: bool = True  # counts in the reward
    # (n_pages,) each page's interleave index (its virtual page number): weighted interleave
    # and DAMOS dests put page p on interleave_targets(index[p], nodes, weights)
    interleave_index: np.ndarray | None = field(default=None, compare=False)


@dataclass
class _State:
    """Everything that changes while the host runs (what a snapshot copies)."""

    time_s: float
    memory: MemoryState
    weights: np.ndarray
    apps: dict[str, _App] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)
    events_done: int = 0
    latency_ns: np.ndarray | None = None
    seed_sequence: np.random.SeedSequence | None = None
    last_pgmigrate: tuple[int, int] = (0, 0)
    # open-loop traffic of the interval in progress: (nodes,) GB/s and read share
    traffic: tuple[np.ndarray, np.ndarray] | None = None


class SimulatedHost:
    """A scenario running on simulated hardware under interleave weights chosen from outside.

    >>> host = SimulatedHost(load_scenario("co-runner"), weights=[3, 1], seed=0)
    >>> result = host.step()   # one control interval
    """

    def __init__(
        self,
        scenario: Scenario,
        weights: Sequence[int] | np.ndarray | None = None,
        seed: int = 0,
        damos: DamosSetup | None = None,
        migration_cost: MigrationCost | None = None,
    ) -> None:
        self.scenario = scenario
        self.damos = damos or DamosSetup.for_scenario(scenario)
        self.migration_cost = migration_cost or MigrationCost()
        self.nodes = NodeSet([node.profile for node in scenario.nodes])
        n_nodes = len(scenario.nodes)
        initial = check_weights(weights if weights is not None else [1] * n_nodes, n_nodes)
        memory = MemoryState(
            [node.capacity_bytes for node in scenario.nodes], page_size=scenario.page_size
        )
        self._node_info = scenario.node_info()
        self._state = _State(
            time_s=0.0,
            memory=memory,
            weights=initial,
            seed_sequence=np.random.SeedSequence(seed),
        )

    # ------------------------------------------------------------------ public interface
    @property
    def n_nodes(self) -> int:
        return len(self.scenario.nodes)

    @property
    def node_info(self) -> NodeInfo:
        return self._node_info

    @property
    def control_interval_s(self) -> float:
        return self.scenario.control_interval_s

    @property
    def time_s(self) -> float:
        return self._state.time_s

    @property
    def done(self) -> bool:
        return self._state.time_s >= self.scenario.duration_s - 1e-9

    @property
    def weights(self) -> np.ndarray:
        return self._state.weights.copy()

    @property
    def memory(self) -> MemoryState:
        return self._state.memory

    def current_load(self) -> tuple[AppLoad, ...]:
        """The running applications' demand as it stands now: after ``step()`` it is the load
        that step's solve used (scenario changes for the next interval apply at its start).
        Read-only: it changes nothing a run depends on (it may fill the hot-set cache)."""
        loads = []
        for app in self._managed():
            spec = app.run.app
            shares = app.shares.view()
            shares.flags.writeable = False
            loads.append(
                AppLoad(
                    name=app.name,
                    mlp=float(spec.mlp * app.intensity),
                    think_ns=float(app.think_ns),
                    read_fraction=float(app.read_fraction),
                    alone_gbps=float(app.alone_gbps),
                    page_shares=shares,
                    touched_pages=int(app.touched_pages),
                    hot_pages=int(np.count_nonzero(_hot_set(app)[: app.touched_pages])),
                    in_reward=app.run.in_reward,
                    interleave_index=self._interleave_index(app),
                )
            )
        return tuple(loads)

    def _interleave_index(self, app: _App) -> np.ndarray:
        """The app's pages' interleave indices (read-only; fixed while the app runs)."""
        vaddr = self.memory.app_page_vaddr(app.memory_id)
        index = np.asarray(vaddr, dtype=np.int64) // self.scenario.page_size
        index.flags.writeable = False
        return index

    def current_fixed_load(self) -> FixedLoad:
        """The bound co-runners' and background traffic's load as it stands now (the same
        moment as ``current_load``)."""
        bound = [app for app in self._running() if not app.managed]
        traffic, reads = self._state.traffic or self._traffic()
        return FixedLoad(
            mlp=np.array([app.run.app.mlp * app.intensity for app in bound], dtype=float),
            think_ns=np.array([app.think_ns for app in bound], dtype=float),
            read_fraction=np.array([app.read_fraction for app in bound], dtype=float),
            node=np.array([app.run.bind_node for app in bound], dtype=np.int64),
            pages=sum(
                (self.memory.resident_pages(app.memory_id) for app in bound),
                np.zeros(self.n_nodes, dtype=np.int64),
            ),
            traffic_gbps=traffic,
            traffic_read_fraction=reads,
        )

    def region_pages(self, app: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """(regions, nodes) resident pages of running application ``app`` in each
        [start, end) of its address space: what move_pages(2) tells a host."""
        if app not in self._state.apps:
            raise KeyError(f"application {app!r} is not running")
        return self.memory.resident_pages_in_ranges(self._state.apps[app].memory_id, starts, ends)

    def address_span(self, app: str) -> tuple[int, int]:
        """[start, end) of running application ``app``'s pages in its address space."""
        if app not in self._state.apps:
            raise KeyError(f"application {app!r} is not running")
        vaddr = self.memory.app_page_vaddr(self._state.apps[app].memory_id)
        return int(vaddr[0]), int(vaddr[-1]) + self.scenario.page_size

    def set_weights(self, weights: list[int] | np.ndarray) -> None:
        """New interleave weights (integers 1..255 per node): they place pages allocated from
        now on and become the DAMOS dests (committed to every kdamond)."""
        checked = check_weights(weights, self.n_nodes)
        state = self._state
        if np.array_equal(checked, state.weights):
            return
        state.weights = checked
        for app in state.apps.values():
            if app.kdamond is not None:
                app.kdamond.commit(self.damos.context(app.memory_id, checked.tolist()))

    def set_damos_quota(self, bytes_per_s: int) -> None:
        """A new ``migrate_hot`` quota (bytes per second; 0 means unlimited), committed to
        every kdamond."""
        per_window = self.damos.quota_per_window(bytes_per_s, self.scenario.page_size)
        if per_window == self.damos.quota_bytes:
            return
        self.damos = dataclasses.replace(self.damos, quota_bytes=per_window)
        weights = self._state.weights.tolist()
        for app in self._state.apps.values():
            if app.kdamond is not None:
                app.kdamond.commit(self.damos.context(app.memory_id, weights))

    def _managed(self) -> list[_App]:
        return [app for app in self._state.apps.values() if app.managed]

    def _traffic(self) -> tuple[np.ndarray, np.ndarray]:
        """(nodes,) open-loop background GB/s of the interval that starts now, and its read
        share per node."""
        gbps = np.zeros(self.n_nodes)
        if not self.scenario.traffic:
            return gbps, np.ones(self.n_nodes)
        reads = np.zeros(self.n_nodes)
        now = self._state.time_s + 1e-9
        for flow in self.scenario.traffic:
            if flow.runs_at(now):
                gbps[flow.node] += flow.gbps
                reads[flow.node] += flow.gbps * flow.read_fraction
        shares = np.divide(reads, gbps, out=np.ones(self.n_nodes), where=gbps > 0)
        return gbps, shares

    def begin(self) -> StepResult:
        """The host before its first interval: time 0, nothing running, idle nodes, the
        weights in force. What a policy sees before it sets the weights the first pages are
        placed under."""
        state = self._state
        memory = state.memory
        n_nodes = self.n_nodes
        interval = self.scenario.control_interval_s
        no_apps = np.zeros((0, n_nodes))
        measurements = Measurements(
            time_s=state.time_s,
            interval_s=interval,
            weights=state.weights.copy(),
            node_bandwidth_gbps=np.zeros(n_nodes),
            node_read_fraction=np.ones(n_nodes),
            node_latency_ns=self.nodes.idle_latency_ns.copy(),
            node_free_bytes=(memory.free_pages * memory.page_size).astype(float),
            app_names=(),
            app_throughput_gbps=np.zeros(0),
            resident_pages=no_apps.astype(np.int64),
            migrated_bytes=np.zeros((n_nodes, n_nodes), dtype=np.int64),
            pgmigrate_success=0,
            pgmigrate_fail=0,
            damon_regions={},
            damon_region_pages={},
            damos_stats={},
            damos_quota_bytes_per_s=self.damos.quota_bytes_per_s,
            nr_accesses_max=self.damos.attrs.max_nr_accesses,
        )
        truth = GroundTruth(
            app_latency_ns=np.zeros(0),
            app_access_split=no_apps,
            app_alone_gbps=np.zeros(0),
            weighted_speedup=0.0,
            app_hot_pages=no_apps.astype(np.int64),
            background_gbps=np.zeros(n_nodes),
            solver_converged=True,
            app_in_reward=np.zeros(0, dtype=bool),
        )
        return StepResult(measurements, truth)

    def step(self) -> StepResult:
        """Advance one control interval."""
        state = self._state
        interval = self.scenario.control_interval_s
        self._apply_scenario_changes()
        state.traffic = self._traffic()
        for app in self._running():
            self._follow_trace(app)
        self._grow()
        moved = np.zeros((self.n_nodes, self.n_nodes), dtype=np.int64)
        for app in self._running():
            if app.kdamond is None:
                continue
            self._feed_rates(app)
            app.kdamond.run(interval * 1e6)
            moved += app.kdamond.take_migrated_pages()
        result = self._solve(moved, interval)
        state.time_s += interval
        return result

    def reference_gbps(self, app_names: tuple[str, ...]) -> np.ndarray:
        """Each named running application's throughput alone on idle local memory (GB/s):
        after a ``step``, the ``GroundTruth.app_alone_gbps`` it reported."""
        apps = self._state.apps
        missing = [name for name in app_names if name not in apps]
        if missing:
            raise ValueError(f"applications {missing} are not running")
        return np.array([apps[name].alone_gbps for name in app_names], dtype=float)

    def close(self) -> list[str]:
        """Nothing to put back on a simulated host."""
        return []

    def snapshot(self) -> _State:
        """The host's state, to ``restore`` later (branching evaluations)."""
        return copy.deepcopy(self._state)

    def restore(self, snapshot: _State) -> None:
        self._state = copy.deepcopy(snapshot)

    # ---------------------------------------------------------------- scenario changes
    def _running(self) -> list[_App]:
        return list(self._state.apps.values())

    def _apply_scenario_changes(self) -> None:
        state = self._state
        now = state.time_s + 1e-9
        for run in self.scenario.apps:
            name = run.app.name
            running = name in state.started and name not in state.stopped
            if running and run.stop_s is not None and run.stop_s <= now:
                self._stop(name)
            if name not in state.started and run.start_s <= now:
                self._start(run)
        events = self.scenario.events
        while state.events_done < len(events) and events[state.events_done].at_s <= now:
            event = events[state.events_done]
            app = state.apps.get(event.app)
            if app is not None:
                if event.intensity is not None:
                    app.intensity = event.intensity
                if event.think_ns is not None:
                    app.think_ns = event.think_ns
                if event.read_fraction is not None:
                    app.read_fraction = event.read_fraction
                if (event.intensity, event.think_ns, event.read_fraction) != (None,) * 3:
                    app.alone_gbps = self._alone(app)
                if event.hot_offset is not None:
                    app.distribution = dataclasses.replace(
                        app.distribution, hot_offset=event.hot_offset
                    )
                    app.shares = app.distribution.page_shares(app.n_pages)
                    app.hot = None
                    app.shares_version += 1
                    app.rates_scale = -1.0
            state.events_done += 1

    def _start(self, run: AppRun) -> None:
        state = self._state
        page_size = self.scenario.page_size
        n_pages = run.app.n_pages(page_size)
        trace = run.app.trace
        vmas = trace.vmas() if trace is not None else [(VMA_BASE, n_pages * page_size)]
        memory_id = state.memory.add_app(vmas)
        app = _App(
            run=run,
            memory_id=memory_id,
            n_pages=n_pages,
            distribution=run.app.distribution,
            shares=run.app.distribution.page_shares(n_pages),
            read_fraction=run.app.read_fraction,
            think_ns=run.app.think_ns,
        )
        self._follow_trace(app)
        app.alone_gbps = self._alone(app)
        app.throughput_gbps = app.alone_gbps
        state.apps[run.app.name] = app
        state.started.add(run.app.name)
        if run.app.growth_bytes_per_s == 0:
            self._touch(app, n_pages)
        if self.damos.enabled and app.managed:
            assert state.seed_sequence is not None  # set by __init__
            (child,) = state.seed_sequence.spawn(1)
            app.kdamond = Kdamond(
                self.damos.context(memory_id, state.weights.tolist()),
                state.memory,
                seed=child,
                migration_cost=self.migration_cost,
            )

    def _follow_trace(self, app: _App) -> None:
        """Traced applications: take the shares and read share of the phase or snapshot in
        force at the interval's start."""
        trace = app.run.app.trace
        if trace is None:
            return
        segment = trace.segment_at(self._state.time_s - app.run.start_s)
        if segment == app.segment:
            return
        app.segment = segment
        app.shares = trace.shares(segment)
        app.hot = None
        app.shares_version += 1
        if trace.kind == "masim":
            app.read_fraction = trace.read_fraction(segment)
        app.rates_scale = -1.0

    def _stop(self, name: str) -> None:
        state = self._state
        app = state.apps.pop(name)
        state.memory.remove_app(app.memory_id)
        state.stopped.add(name)

    def _grow(self) -> None:
        page_size = self.scenario.page_size
        for app in self._running():
            rate = app.run.app.growth_bytes_per_s
            if rate and app.touched_pages < app.n_pages:
                target = min(
                    app.n_pages,
                    int(
                        (self._state.time_s - app.run.start_s + self.scenario.control_interval_s)
                        * rate
                        // page_size
                    ),
                )
                self._touch(app, target)

    def _touch(self, app: _App, up_to: int) -> None:
        """First touch of pages [touched, up_to) under the current weights."""
        if up_to <= app.touched_pages:
            return
        pages = np.arange(app.touched_pages, up_to)
        bind_node = app.run.bind_node
        if bind_node is None:  # managed
            self._state.memory.allocate(app.memory_id, pages, self._state.weights)
        else:
            self._state.memory.allocate_on(app.memory_id, pages, bind_node)
        app.touched_pages = up_to

    def _alone(self, app: _App) -> float:
        spec = app.run.app
        return float(
            alone_throughput_gbps(
                self.nodes,
                np.array([spec.mlp * app.intensity]),
                np.array([app.think_ns]),
                np.array([app.read_fraction]),
            )[0]
        )

    # -------------------------------------------------------------------------- DAMON
    def _feed_rates(self, app: _App) -> None:
        """Give the kdamond per-page touch rates at the app's last throughput (rebuilding its
        sampling index only when the throughput moved noticeably)."""
        scale = app.throughput_gbps
        if app.rates_scale > 0 and abs(scale - app.rates_scale) <= RATE_TOLERANCE * app.rates_scale:
            return
        assert app.kdamond is not None  # only apps with a kdamond are fed
        app.kdamond.set_access_rates(app.memory_id, app.run.app.touch_rates(app.shares, scale))
        app.rates_scale = scale

    # -------------------------------------------------------------------------- solve
    def _solve(self, moved_pages: np.ndarray, interval: float) -> StepResult:
        state = self._state
        memory = state.memory
        apps = self._running()
        n_nodes = self.n_nodes
        split = np.zeros((len(apps), n_nodes))
        resident = np.zeros((len(apps), n_nodes), dtype=np.int64)
        hot = np.zeros((len(apps), n_nodes), dtype=np.int64)
        for j, app in enumerate(apps):
            split[j], hot[j] = _placement(app, memory)
            resident[j] = memory.resident_pages(app.memory_id)
        copies, copy_reads = self.migration_cost.background(
            moved_pages, self.scenario.page_size, interval
        )
        assert state.traffic is not None  # set by step before the solve
        background, background_reads = combine_background(copies, copy_reads, *state.traffic)
        if apps:
            solution = solve(
                self.nodes,
                np.array([a.run.app.mlp * a.intensity for a in apps]),
                np.array([a.think_ns for a in apps]),
                np.array([a.read_fraction for a in apps]),
                split,
                background_gbps=background,
                background_read_fraction=background_reads,
                initial_latency_ns=state.latency_ns,
            )
            throughput = solution.throughput_gbps
            state.latency_ns = solution.node_latency_ns
            node_bandwidth = solution.node_bandwidth_gbps
            node_reads = solution.node_read_fraction
            node_latency = solution.node_latency_ns
            app_latency = solution.stream_latency_ns
            converged = bool(np.asarray(solution.converged).all())
        else:
            throughput = np.zeros(0)
            node_bandwidth = background
            node_reads = background_reads
            node_latency = self.nodes.idle_latency_ns.copy()
            app_latency = np.zeros(0)
            converged = True
        for app, gbps in zip(apps, throughput.tolist(), strict=True):
            app.throughput_gbps = gbps
        # the host reports (and the reward counts) the managed applications only
        managed_flags = [app.managed for app in apps]
        if not all(managed_flags):
            managed = np.array(managed_flags, dtype=bool)
            throughput, app_latency = throughput[managed], app_latency[managed]
            split, hot, resident = split[managed], hot[managed], resident[managed]
            apps = [app for app in apps if app.managed]
        alone = np.array([app.alone_gbps for app in apps])
        in_reward = np.array([app.run.in_reward for app in apps], dtype=bool)
        regions: dict[str, dict[str, np.ndarray]] = {}
        region_pages: dict[str, np.ndarray] = {}
        stats: dict[str, SchemeStats] = {}
        for app in apps:
            kdamond = app.kdamond
            if kdamond is None:
                continue
            columns = kdamond.aggregated_regions(with_target=False)
            regions[app.name] = columns
            region_pages[app.name] = memory.resident_pages_in_ranges(
                app.memory_id, columns["start"], columns["end"]
            )
            if kdamond.schemes:
                stats[app.name] = _copied(kdamond.schemes[0].stats)
        success, fail = memory.pgmigrate_success, memory.pgmigrate_fail
        last_success, last_fail = state.last_pgmigrate
        state.last_pgmigrate = (success, fail)
        measurements = Measurements(
            time_s=state.time_s + interval,
            interval_s=interval,
            weights=state.weights.copy(),
            node_bandwidth_gbps=np.array(node_bandwidth, dtype=float),
            node_read_fraction=np.array(node_reads, dtype=float),
            node_latency_ns=np.array(node_latency, dtype=float),
            node_free_bytes=(memory.free_pages * memory.page_size).astype(float),
            app_names=tuple(app.name for app in apps),
            app_throughput_gbps=np.array(throughput, dtype=float),
            resident_pages=resident,
            migrated_bytes=moved_pages * self.scenario.page_size,
            pgmigrate_success=success - last_success,
            pgmigrate_fail=fail - last_fail,
            damon_regions=regions,
            damon_region_pages=region_pages,
            damos_stats=stats,
            damos_quota_bytes_per_s=self.damos.quota_bytes_per_s,
            nr_accesses_max=self.damos.attrs.max_nr_accesses,
        )
        truth = GroundTruth(
            app_latency_ns=np.array(app_latency, dtype=float),
            app_access_split=split,
            app_alone_gbps=alone,
            weighted_speedup=float(np.where(in_reward, throughput / alone, 0.0).sum())
            if len(apps)
            else 0.0,
            app_hot_pages=hot,
            background_gbps=np.asarray(copies, dtype=float),
            solver_converged=converged,
            app_in_reward=in_reward,
        )
        return StepResult(measurements, truth)


def _copied(stats: SchemeStats) -> SchemeStats:
    """A shallow copy of a scheme's stats (``copy.copy`` without the pickle protocol)."""
    clone = object.__new__(SchemeStats)
    clone.__dict__.update(stats.__dict__)
    return clone


def _placement(app: _App, memory: MemoryState) -> tuple[np.ndarray, np.ndarray]:
    """The app's access split over nodes and its hot pages per node, recomputed only when a
    page moved or the app's access shares changed since the last interval."""
    key = (memory.placement_generation, app.shares_version)
    if app.placement_key != key:
        n_nodes = memory.n_nodes
        per_node, hot_pages = memory.access_split(app.memory_id, app.shares, _hot_set(app))
        total = per_node.sum()
        split = per_node / total if total > 0 else np.full(n_nodes, 1 / n_nodes)
        app.placement = (split, hot_pages)
        app.placement_key = (memory.placement_generation, app.shares_version)
    assert app.placement is not None  # computed at the first call (its key starts unset)
    return app.placement


def _hot_set(app: _App) -> np.ndarray:
    """The application's hot pages: its distribution's hot set, or for traced applications
    the pages that take the top 80% of its accesses."""
    if app.hot is None:
        if app.run.app.trace is None:
            app.hot = app.distribution.hot_pages(app.n_pages)
        else:
            order = np.argsort(-app.shares, kind="stable")
            within = np.cumsum(app.shares[order]) <= 0.8
            within[0] = True
            app.hot = np.zeros(app.n_pages, dtype=bool)
            app.hot[order[within]] = True
    return app.hot
