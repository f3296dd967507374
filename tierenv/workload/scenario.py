"""Scenarios: a host, applications that start, stop and change, read from TOML files.

A scenario names the memory nodes (shipped profiles or profile files, with capacities), the
applications, and timed events, and says how long to run and how often the controller acts.
The shipped library lives in ``tierenv/workload/scenarios/``; ``tierenv scenarios`` lists it.
Schema (sizes as "16 GiB" or bytes; times in seconds)::

    name = "co-runner"
    description = "one sentence"
    duration_s = 180
    control_interval_s = 1.0          # how often weights may change (default 1)
    page_size = "2 MiB"               # default 2 MiB; 4 KiB works for small memories

    [[nodes]]                         # node 0 is the local DDR the applications run next to
    profile = "bytedance-ddr5-snc"    # a shipped profile name or a path to a profile TOML
    capacity = "64 GiB"

    [[apps]]
    name = "stream-a"
    working_set = "8 GiB"
    mlp = 40                          # 64-byte misses in flight
    think_ns = 5                      # compute time per miss and slot
    read_fraction = 0.67
    start_s = 0                       # default 0
    stop_s = 180                      # default: runs to the end
    growth = "1 GiB"                  # per second; default 0 = whole working set at start
    latency_bound = false
    reward = true                     # counts in the reward (default true)
    bind_node = 0                     # an unmanaged co-runner bound to node 0 (MPOL_BIND):
                                      # outside the weights, DAMOS, the reward and the app
                                      # measurements; its traffic loads the node all the same
    [apps.distribution]               # see tierenv.workload.access
    kind = "hotcold"
    hot_fraction = 0.25
    hot_share = 0.9
    # or, instead of working_set and distribution, a recorded or scripted pattern
    # (tierenv.workload.trace; paths relative to the scenario file):
    # trace = { kind = "masim", path = "stairs.cfg" }   # or kind = "damo-record"

    [[events]]                        # changes of a running application (a phase)
    at_s = 60
    app = "stream-a"
    intensity = 0.5                   # scales mlp (1 = as specified)
    hot_offset = 0.5                  # hotcold: move the hot set
    think_ns = 20                     # new compute time per miss
    read_fraction = 0.5               # new read share

    [[traffic]]                       # open-loop background traffic no policy controls
    node = 1                          # (DMA, another VM's memory, a device)
    gbps = 10.0
    read_fraction = 0.67
    start_s = 0                       # default 0
    stop_s = 90                       # default: to the end

    [damos]                           # the DAMON/DAMOS setup the host runs (all optional)
    enabled = true
    quota_per_s = "200 MiB"           # migrate_hot quota; 0 = unlimited
    min_access_percent = 5.0          # a region is hot when seen in this share of samples

    [variation]                       # how repeated runs differ (tierenv.workload.variation)
    arrival_jitter_s = 2.0            # moments of change move by up to this
    intensity_spread = 0.02           # per-phase lognormal spread of intensity
    layout = true                     # zipf: hot chunks placed anew in every run

Every key is checked: an unknown key, a negative rate, an application larger than the
memory, a bound application that may not fit on its node, or two events at once on one
application give a ``ScenarioError`` naming the file, the line and the key.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierenv.contracts.measurements import NodeInfo
from tierenv.hardware.nodeset import NodeSet
from tierenv.hardware.profile import NodeProfile, ProfileError, load_profile
from tierenv.schema import SchemaError, TomlReader
from tierenv.workload.access import Distribution
from tierenv.workload.application import Application
from tierenv.workload.library import ShippedLibrary
from tierenv.workload.trace import Trace, load_trace
from tierenv.workload.variation import Variation

DEFAULT_PAGE_SIZE = 2 << 20

_TOP_KEYS = (
    "name",
    "description",
    "duration_s",
    "control_interval_s",
    "page_size",
    "nodes",
    "apps",
    "events",
    "traffic",
    "damos",
    "variation",
)
_NODE_KEYS = ("profile", "capacity")
_APP_KEYS = (
    "name",
    "working_set",
    "mlp",
    "think_ns",
    "read_fraction",
    "start_s",
    "stop_s",
    "growth",
    "latency_bound",
    "reward",
    "bind_node",
    "distribution",
    "trace",
)
_TRACE_KEYS = ("kind", "path")
_DISTRIBUTION_KEYS = (
    "kind",
    "exponent",
    "chunk_pages",
    "hot_fraction",
    "hot_share",
    "hot_offset",
    "seed",
)
_EVENT_KEYS = ("at_s", "app", "intensity", "hot_offset", "think_ns", "read_fraction")
_TRAFFIC_KEYS = ("node", "gbps", "read_fraction", "start_s", "stop_s")
_DAMOS_KEYS = ("enabled", "quota_per_s", "min_access_percent")
_VARIATION_KEYS = ("arrival_jitter_s", "intensity_spread", "layout")
# the distribution keys each kind reads ("kind" aside): any other is a mistake
_KIND_KEYS = {
    "uniform": (),
    "sequential": (),
    "zipf": ("exponent", "chunk_pages", "seed"),
    "hotcold": ("hot_fraction", "hot_share", "hot_offset"),
}
DEFAULT_QUOTA_PER_S = 200 << 20  # damo's weighted-interleave recipe (see tierenv.sim.damos_setup)
MAX_TRAFFIC_GBPS = 10_000.0
#: The most control intervals a scenario may have (a day at 1 s is 86,400).
MAX_STEPS = 1_000_000


class ScenarioError(SchemaError):
    """A scenario file is unusable; the message names the file, line, key and problem."""


SCENARIOS = ShippedLibrary("scenarios", "scenario", ScenarioError)


@dataclass(frozen=True)
class HostNode:
    profile: NodeProfile
    capacity_bytes: int


@dataclass(frozen=True)
class AppRun:
    """An application and when it runs.

    ``bind_node`` set: an unmanaged co-runner bound to that node (MPOL_BIND). The weights and
    DAMOS never touch its pages, the host does not report its throughput and it never counts
    in the reward; its misses load its node like any other stream's.
    ``in_reward`` False: a managed application that does not count in the reward (for
    example a co-runner the experiment does not score)."""

    app: Application
    start_s: float = 0.0
    stop_s: float | None = None  # None: to the end of the scenario
    in_reward: bool = True
    bind_node: int | None = None

    @property
    def managed(self) -> bool:
        return self.bind_node is None

    def runs_at(self, moment: float) -> bool:
        return self.start_s <= moment and (self.stop_s is None or self.stop_s > moment)


@dataclass(frozen=True)
class Event:
    """A change to a running application at ``at_s`` (``None``: unchanged)."""

    at_s: float
    app: str
    intensity: float | None = None
    hot_offset: float | None = None
    think_ns: float | None = None
    read_fraction: float | None = None


@dataclass(frozen=True)
class Traffic:
    """Open-loop traffic on one node that no policy controls (GB/s at a read share)."""

    node: int
    gbps: float
    read_fraction: float = 1.0
    start_s: float = 0.0
    stop_s: float | None = None

    def runs_at(self, moment: float) -> bool:
        return self.start_s <= moment and (self.stop_s is None or self.stop_s > moment)


@dataclass(frozen=True)
class DamosSpec:
    """The scenario's DAMON/DAMOS setup (``tierenv.sim.damos_setup.DamosSetup.for_scenario``
    turns it into the kdamond configuration)."""

    enabled: bool = True
    quota_bytes_per_s: int = DEFAULT_QUOTA_PER_S  # 0: unlimited
    min_access_percent: float = 5.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    nodes: tuple[HostNode, ...]
    apps: tuple[AppRun, ...]
    events: tuple[Event, ...] = ()
    traffic: tuple[Traffic, ...] = ()
    damos: DamosSpec = field(default_factory=DamosSpec)
    control_interval_s: float = 1.0
    page_size: int = DEFAULT_PAGE_SIZE
    source: str = "<scenario>"
    # how repeated runs differ; ``tierenv.workload.variation.realise`` draws one run
    variation: Variation = field(default_factory=Variation)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n_steps(self) -> int:
        return round(self.duration_s / self.control_interval_s)

    def app(self, name: str) -> AppRun:
        for run in self.apps:
            if run.app.name == name:
                return run
        raise KeyError(name)

    def node_info(self) -> NodeInfo:
        """The nodes' static facts as a host reports them (``Host.node_info``)."""
        return NodeInfo(
            names=tuple(node.profile.name for node in self.nodes),
            peak_gbps=np.array([float(node.profile.saturation_gbps(1.0)) for node in self.nodes]),
            idle_latency_ns=NodeSet([node.profile for node in self.nodes]).idle_latency_ns.copy(),
            capacity_bytes=np.array([node.capacity_bytes for node in self.nodes], dtype=float),
            page_size=self.page_size,
        )

    @property
    def managed_apps(self) -> tuple[AppRun, ...]:
        """The applications the weights and DAMOS manage (not bound co-runners)."""
        return tuple(run for run in self.apps if run.managed)

    def moments(self) -> list[float]:
        """Every time something in the scenario changes (0, starts, stops, events, traffic),
        ascending: the boundaries of its phases."""
        times = {0.0}
        for run in self.apps:
            times.add(run.start_s)
            if run.stop_s is not None:
                times.add(run.stop_s)
        times.update(event.at_s for event in self.events)
        for flow in self.traffic:
            times.add(flow.start_s)
            if flow.stop_s is not None:
                times.add(flow.stop_s)
        return sorted(t for t in times if t < self.duration_s)


def shipped_scenario_names() -> list[str]:
    return SCENARIOS.names()


def scenario_files(item: str, roots: Sequence[Path] = (Path(),)) -> list[str] | None:
    """The scenario files (sorted) that ``item`` names as a glob pattern or a folder of
    ``*.toml`` files, looked up under each of ``roots`` in turn (the first root where it
    names something wins); None if it is neither a pattern nor a folder. A pattern that
    matches no file, or a folder without scenario files, gives an empty list."""
    if any(char in item for char in "*?["):
        for root in roots:
            pattern = Path(item) if Path(item).is_absolute() else root / item
            files = sorted(path for path in glob.glob(str(pattern)) if Path(path).is_file())
            if files:
                return files
        return []
    for root in roots:
        folder = root / item
        if folder.is_dir():
            return sorted(str(path) for path in folder.glob("*.toml"))
    return None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or a scenario file by path."""
    text, source, base = SCENARIOS.read(name_or_path)
    return parse_scenario(text, source=source, base=base)


def parse_scenario(text: str, source: str = "<text>", base: Path | None = None) -> Scenario:
    """Parse and check a scenario from TOML text."""
    reader = _ScenarioReader(text, source, ScenarioError)
    data = reader.load()
    reader.keys(data, _TOP_KEYS, "")
    name = reader.string(data, "name", "")
    description = reader.string(data, "description", "", default="")
    duration = reader.number(data, "duration_s", "", low=0.0, strict=True)
    interval = reader.number(data, "control_interval_s", "", low=0.0, strict=True, default=1.0)
    if interval > duration:
        reader.fail("control_interval_s", f"{interval} s is longer than duration_s {duration} s")
    if duration / interval > MAX_STEPS:
        reader.fail(
            "control_interval_s",
            f"{interval} s over duration_s {duration} s is {duration / interval:.3g} control "
            f"intervals; at most {MAX_STEPS} (every interval is simulated and kept)",
        )
    page_size = reader.size(data, "page_size", "", default=DEFAULT_PAGE_SIZE)
    if page_size < 4096 or page_size & (page_size - 1):
        reader.fail("page_size", f"{page_size} bytes is not a power of two >= 4096")
    nodes = tuple(
        reader.node(entry, f"nodes[{i}]", base)
        for i, entry in enumerate(reader.tables(data, "nodes"))
    )
    if not nodes:
        reader.fail("nodes", "a scenario needs at least one memory node")
    apps = tuple(
        reader.app(entry, f"apps[{i}]", duration, page_size, base, len(nodes))
        for i, entry in enumerate(reader.tables(data, "apps"))
    )
    if not apps:
        reader.fail("apps", "a scenario needs at least one application")
    if all(run.bind_node is not None for run in apps):
        reader.fail("apps", "a scenario needs at least one managed application (no bind_node)")
    names = [run.app.name for run in apps]
    for i, app_name in enumerate(names):
        if app_name in names[:i]:
            reader.fail(f"apps[{i}].name", f"{app_name!r} is used by two applications")
    events = tuple(
        reader.event(entry, f"events[{i}]", apps, duration)
        for i, entry in enumerate(reader.tables(data, "events"))
    )
    seen: dict[tuple[str, float], int] = {}
    for i, event in enumerate(events):
        key = (event.app, event.at_s)
        if key in seen:
            reader.fail(
                f"events[{i}].at_s",
                f"events[{seen[key]}] already changes {event.app!r} at {event.at_s} s; "
                "put both changes in one event",
            )
        seen[key] = i
    traffic = tuple(
        reader.traffic(entry, f"traffic[{i}]", duration, len(nodes))
        for i, entry in enumerate(reader.tables(data, "traffic"))
    )
    damos = reader.damos(reader.table(data, "damos"))
    variation = reader.variation(reader.table(data, "variation"))
    scenario = Scenario(
        name=name,
        description=description,
        duration_s=duration,
        nodes=nodes,
        apps=apps,
        events=tuple(sorted(events, key=lambda e: e.at_s)),
        traffic=traffic,
        damos=damos,
        control_interval_s=interval,
        page_size=page_size,
        source=source,
        variation=variation,
    )
    _check_capacity(scenario, reader)
    return scenario


def _check_capacity(scenario: Scenario, reader: _ScenarioReader) -> None:
    """Applications that run at the same time must fit in the memory of all nodes, and a
    bound application must fit on its node whatever the policy put there (the simulator
    models no reclaim: an MPOL_BIND allocation on a full node would fail)."""
    total = sum(node.capacity_bytes for node in scenario.nodes)
    moments = sorted({run.start_s for run in scenario.apps})
    page = scenario.page_size
    for moment in moments:
        running = [(i, run) for i, run in enumerate(scenario.apps) if run.runs_at(moment)]
        need = sum(run.app.n_pages(page) * page for _, run in running)
        if need > total:
            first = running[-1][0]
            reader.fail(
                f"apps[{first}].working_set",
                f"at {moment} s the running applications need {need} bytes but all nodes "
                f"together hold {total}",
            )
        for i, run in running:
            if run.bind_node is None:
                continue
            beside = sum(
                other.app.n_pages(page) * page
                for _, other in running
                if other.bind_node in (None, run.bind_node)
            )
            capacity = scenario.nodes[run.bind_node].capacity_bytes
            if beside > capacity:
                reader.fail(
                    f"apps[{i}].bind_node",
                    f"at {moment} s node {run.bind_node} ({capacity} bytes) may have to hold "
                    f"{beside} bytes (this bound application beside the managed ones, which "
                    "the weights may place there); give the node more capacity",
                )


class _ScenarioReader(TomlReader):
    """The shared TOML reader (:mod:`tierenv.schema`) plus the scenario's own tables."""

    def node(self, table: dict, path: str, base: Path | None) -> HostNode:
        self.keys(table, _NODE_KEYS, path)
        name = self.string(table, "profile", path)
        candidate = (base / name) if base is not None and name.endswith(".toml") else name
        try:
            profile = load_profile(candidate)
        except ProfileError as error:
            self.fail(f"{path}.profile", str(error))
        capacity = self.size(table, "capacity", path)
        if capacity <= 0:
            self.fail(f"{path}.capacity", "a memory node needs a capacity > 0")
        return HostNode(profile, capacity)

    def app(
        self,
        table: dict,
        path: str,
        duration: float,
        page_size: int,
        base: Path | None,
        n_nodes: int,
    ) -> AppRun:
        self.keys(table, _APP_KEYS, path)
        name = self.string(table, "name", path)
        trace = self.trace(table, path, page_size, base)
        distribution_table = table.get("distribution", {})
        if not isinstance(distribution_table, dict):
            self.fail(f"{path}.distribution", "expected a table")
        self.keys(distribution_table, _DISTRIBUTION_KEYS, f"{path}.distribution")
        kind = distribution_table.get("kind", "uniform")
        for key in distribution_table:
            if key != "kind" and kind in _KIND_KEYS and key not in _KIND_KEYS[kind]:
                self.fail(
                    f"{path}.distribution.{key}",
                    f"a {kind} distribution has no {key}"
                    + (f"; it takes {', '.join(_KIND_KEYS[kind])}" if _KIND_KEYS[kind] else ""),
                )
        try:
            distribution = Distribution(**distribution_table)
        except (TypeError, ValueError) as error:
            field_name = str(error).split(":", 1)[0]
            self.fail(f"{path}.distribution.{field_name}", str(error).split(": ", 1)[-1])
        start = self.number(table, "start_s", path, low=0.0, default=0.0)
        stop = table.get("stop_s")
        if stop is not None:
            stop = self.number(table, "stop_s", path, low=start, strict=True)
            if stop > duration:
                self.fail(f"{path}.stop_s", f"{stop} s is after the end ({duration} s)")
        if start >= duration:
            self.fail(f"{path}.start_s", f"{start} s is not before the end ({duration} s)")
        if trace is not None and "working_set" in table:
            self.fail(f"{path}.working_set", "an application with a trace takes its size from it")
        fields: dict[str, Any] = {
            "working_set_bytes": (
                trace.n_pages * page_size
                if trace is not None
                else self.size(table, "working_set", path)
            ),
            "mlp": self.number(table, "mlp", path, low=0.0, strict=True),
            "think_ns": self.number(table, "think_ns", path, low=0.0),
            "read_fraction": self.number(table, "read_fraction", path, 0.0, 1.0, default=1.0),
            "growth_bytes_per_s": self.size(table, "growth", path, default=0),
        }
        latency_bound = self.boolean(table, "latency_bound", path, default=False)
        in_reward = self.boolean(table, "reward", path, default=True)
        bind_node = table.get("bind_node")
        if bind_node is not None:
            bind_node = self.node_index(table, "bind_node", path, n_nodes)
            if "reward" in table and in_reward:
                self.fail(
                    f"{path}.reward",
                    "a bound (unmanaged) application never counts in the reward: the host "
                    "does not measure its throughput",
                )
            in_reward = False
        try:
            app = Application(
                name=name,
                distribution=distribution,
                latency_bound=latency_bound,
                trace=trace,
                **fields,
            )
        except ValueError as error:
            self.fail(path, str(error))
        return AppRun(app, start, stop, in_reward=in_reward, bind_node=bind_node)

    def node_index(self, table: dict, key: str, path: str, n_nodes: int) -> int:
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.{key}", f"expected a node index (integer), got {value!r}")
        if not 0 <= value < n_nodes:
            self.fail(
                f"{path}.{key}", f"node {value} does not exist (the scenario has {n_nodes} nodes)"
            )
        return value

    def traffic(self, table: dict, path: str, duration: float, n_nodes: int) -> Traffic:
        self.keys(table, _TRAFFIC_KEYS, path)
        if "node" not in table:
            self.fail(f"{path}.node", "missing (required)")
        node = self.node_index(table, "node", path, n_nodes)
        gbps = self.number(table, "gbps", path, low=0.0, high=MAX_TRAFFIC_GBPS)
        reads = self.number(table, "read_fraction", path, 0.0, 1.0, default=1.0)
        start = self.number(table, "start_s", path, low=0.0, default=0.0)
        if start >= duration:
            self.fail(f"{path}.start_s", f"{start} s is not before the end ({duration} s)")
        stop = table.get("stop_s")
        if stop is not None:
            stop = self.number(table, "stop_s", path, low=start, strict=True)
            if stop > duration:
                self.fail(f"{path}.stop_s", f"{stop} s is after the end ({duration} s)")
        return Traffic(node, gbps, reads, start, stop)

    def damos(self, table: dict) -> DamosSpec:
        self.keys(table, _DAMOS_KEYS, "damos")
        enabled = self.boolean(table, "enabled", "damos", default=True)
        quota = self.size(table, "quota_per_s", "damos", default=DEFAULT_QUOTA_PER_S)
        if quota > 1 << 50:
            self.fail("damos.quota_per_s", f"{quota} bytes/s is beyond any memory system")
        percent = self.number(
            table, "min_access_percent", "damos", low=0.0, high=100.0, strict=True, default=5.0
        )
        return DamosSpec(enabled, quota, percent)

    def variation(self, table: dict) -> Variation:
        self.keys(table, _VARIATION_KEYS, "variation")
        defaults = Variation()
        jitter = self.number(
            table, "arrival_jitter_s", "variation", low=0.0, default=defaults.arrival_jitter_s
        )
        spread = self.number(
            table, "intensity_spread", "variation", low=0.0, default=defaults.intensity_spread
        )
        layout = self.boolean(table, "layout", "variation", default=defaults.layout)
        try:
            return Variation(jitter, spread, layout)
        except ValueError as error:
            self.fail(f"variation.{str(error).split(':', 1)[0]}", str(error).split(": ", 1)[-1])
        raise AssertionError  # unreachable: fail raises

    def trace(self, table: dict, path: str, page_size: int, base: Path | None) -> Trace | None:
        spec = table.get("trace")
        if spec is None:
            return None
        where = f"{path}.trace"
        if not isinstance(spec, dict):
            self.fail(where, 'expected a table such as { kind = "masim", path = "x.cfg" }')
        self.keys(spec, _TRACE_KEYS, where)
        kind = self.string(spec, "kind", where)
        if kind not in ("masim", "damo-record"):
            self.fail(
                f"{where}.kind", f"unknown trace kind {kind!r}; expected masim or damo-record"
            )
        file = Path(self.string(spec, "path", where))
        if not file.is_absolute() and base is not None:
            file = base / file
        if "distribution" in table:
            self.fail(f"{path}.distribution", "an application with a trace has no distribution")
        try:
            return load_trace(kind, file, page_size)
        except (OSError, ValueError) as error:
            self.fail(f"{where}.path", str(error))
        raise AssertionError  # unreachable: fail raises

    def event(self, table: dict, path: str, apps: tuple[AppRun, ...], duration: float) -> Event:
        self.keys(table, _EVENT_KEYS, path)
        at = self.number(table, "at_s", path, low=0.0)
        if at >= duration:
            self.fail(f"{path}.at_s", f"{at} s is not before the end ({duration} s)")
        name = self.string(table, "app", path)
        runs = [run for run in apps if run.app.name == name]
        if not runs:
            self.fail(f"{path}.app", f"no application named {name!r}")
        run = runs[0]
        if at < run.start_s or (run.stop_s is not None and at >= run.stop_s):
            self.fail(f"{path}.at_s", f"{name!r} is not running at {at} s")
        intensity = table.get("intensity")
        if intensity is not None:
            intensity = self.number(table, "intensity", path, low=0.0, strict=True)
        offset = table.get("hot_offset")
        if offset is not None:
            offset = self.number(table, "hot_offset", path, low=0.0)
            if offset >= 1.0:
                self.fail(f"{path}.hot_offset", f"{offset} must lie in [0, 1)")
            if run.app.distribution.kind != "hotcold":
                self.fail(f"{path}.hot_offset", f"{name!r} has no hot set (not hotcold)")
            if run.app.trace is not None:
                self.fail(f"{path}.hot_offset", f"{name!r} follows a trace")
        think = table.get("think_ns")
        if think is not None:
            think = self.number(table, "think_ns", path, low=0.0)
        reads = table.get("read_fraction")
        if reads is not None:
            reads = self.number(table, "read_fraction", path, 0.0, 1.0)
            if run.app.trace is not None and run.app.trace.kind == "masim":
                self.fail(f"{path}.read_fraction", f"{name!r} takes its read share from its trace")
        if intensity is None and offset is None and think is None and reads is None:
            self.fail(path, "an event must change intensity, hot_offset, think_ns or read_fraction")
        return Event(at, name, intensity, offset, think, reads)
