"""The host config: what the daemon and the host env must be told about a real machine.

A TOML file (``tierenv daemon --host-config FILE``); every error names the file, line and key::

    page_size = 4096                 # bytes per page in numa_maps counts (default: the OS's)

    [[nodes]]                        # one table per memory node, in node-id order
    profile = "bytedance-ddr5-snc"   # a shipped profile name or a profile TOML: peak
                                     # bandwidth and idle latency normalise the features
    [[nodes]]
    profile = "cxl-..."

    [[apps]]                         # the managed processes
    name = "redis"
    pid = 1234                       # or pid_file = "/run/redis.pid"
    throughput_file = "/run/redis.gbps"      # its own metric (GB/s) as one number, or
    # throughput_command = "redis-gbps --now"
    reference_gbps = 80.0            # its throughput alone on idle DDR (the env's reward)

    [perf]                           # per-node bandwidth and latency from uncore counters
    file = "/run/tierenvd/perf.csv"  # a file that `perf stat -I MS -x,` appends to, or
    # spawn = true                   # let the daemon run perf itself (stderr is read)
    interval_ms = 1000

    [[perf.events]]                  # which counter serves which node (host-specific)
    name = "uncore_imc_0/cas_count_read/"
    node = 0
    kind = "read"                    # read | write | total (bytes), occupancy | inserts
    bytes_per_count = 64             # raw counts only; perf's own units win (MiB...)
    # ns_per_count = 0.5             # occupancy: ns per count (1 / the CHA clock in GHz)

Capacities come from the host's node meminfo, not from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tierenv.hardware.profile import NodeProfile, ProfileError, load_profile
from tierenv.host.metrics import AppThroughput, PerfEvent
from tierenv.schema import SchemaError, TomlReader

_TOP_KEYS = ("page_size", "nodes", "apps", "perf")
_NODE_KEYS = ("profile",)
_APP_KEYS = (
    "name", "pid", "pid_file", "throughput_file", "throughput_command", "reference_gbps",
)  # fmt: skip
_PERF_KEYS = ("file", "spawn", "interval_ms", "events")
_EVENT_KEYS = ("name", "node", "kind", "bytes_per_count", "ns_per_count")
EVENT_KINDS = ("read", "write", "total", "occupancy", "inserts")


class HostConfigError(SchemaError):
    """A host config is unusable; the message names the file, line, key and problem."""


@dataclass(frozen=True)
class AppConfig:
    name: str
    pid: int | None
    pid_file: Path | None
    throughput: AppThroughput | None
    reference_gbps: float | None = None  # throughput alone on idle local memory (reward)

    def resolve_pid(self) -> int:
        """The pid (read from ``pid_file`` each time: a restarted service gets a new one)."""
        if self.pid is not None:
            return self.pid
        assert self.pid_file is not None
        try:
            text = self.pid_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise HostConfigError(f"app {self.name}: pid_file {self.pid_file}: {error}") from None
        if not text.isdigit() or int(text) <= 0:
            raise HostConfigError(
                f"app {self.name}: pid_file {self.pid_file} holds {text!r}, not a pid"
            )
        return int(text)


@dataclass(frozen=True)
class PerfConfig:
    file: Path | None
    spawn: bool
    interval_ms: int
    events: dict[str, PerfEvent]

    def nodes_with(self, *kinds: str) -> set[int]:
        """Nodes that have at least one event of each kind in ``kinds``."""
        sets = [{e.node for e in self.events.values() if e.direction == k} for k in kinds]
        return set.intersection(*sets) if sets else set()


@dataclass(frozen=True)
class HostConfig:
    source: str
    page_size: int
    profiles: tuple[NodeProfile, ...]
    apps: tuple[AppConfig, ...]
    perf: PerfConfig | None

    @property
    def n_nodes(self) -> int:
        return len(self.profiles)


def load_host_config(path: str | Path) -> HostConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HostConfigError(f"host config {path}: {error}") from None
    except UnicodeDecodeError as error:
        raise HostConfigError(
            f"host config {path}: not a UTF-8 text file (byte {error.object[error.start]:#04x} "
            f"at offset {error.start})"
        ) from None
    return parse_host_config(text, str(path), path.parent)


def parse_host_config(text: str, source: str = "<text>", base: Path | None = None) -> HostConfig:
    """Parse and check a host config (relative paths are relative to ``base``)."""
    reader = TomlReader(text, source, HostConfigError)
    data = reader.load()
    reader.keys(data, _TOP_KEYS, "")
    page_size = reader.integer(data, "page_size", "", low=1, default=os.sysconf("SC_PAGE_SIZE"))
    nodes = reader.tables(data, "nodes")
    if not nodes:
        reader.fail("nodes", "at least one [[nodes]] table (one per memory node) is required")
    profiles = []
    for i, table in enumerate(nodes):
        where = f"nodes[{i}]"
        reader.keys(table, _NODE_KEYS, where)
        name = reader.string(table, "profile", where)
        candidate = base / name if base is not None and name.endswith(".toml") else name
        try:
            profiles.append(load_profile(candidate))
        except ProfileError as error:
            reader.fail(f"{where}.profile", str(error))
    apps = tuple(
        _app(reader, table, f"apps[{i}]", base)
        for i, table in enumerate(reader.tables(data, "apps"))
    )
    names = [app.name for app in apps]
    if len(set(names)) != len(names):
        reader.fail("apps", f"application names must differ, got {names}")
    perf = (
        _perf(reader, reader.table(data, "perf"), len(profiles), base) if "perf" in data else None
    )
    return HostConfig(source, page_size, tuple(profiles), apps, perf)


def _path(value: str, base: Path | None) -> Path:
    p = Path(value)
    return p if p.is_absolute() or base is None else base / p


def _app(reader: TomlReader, table: dict, where: str, base: Path | None) -> AppConfig:
    reader.keys(table, _APP_KEYS, where)
    name = reader.string(table, "name", where)
    if ("pid" in table) == ("pid_file" in table):
        reader.fail(where, "give exactly one of pid or pid_file")
    pid = reader.integer(table, "pid", where, low=1) if "pid" in table else None
    pid_file = _path(reader.string(table, "pid_file", where), base) if "pid_file" in table else None
    if "throughput_file" in table and "throughput_command" in table:
        reader.fail(where, "give at most one of throughput_file or throughput_command")
    throughput = None
    if "throughput_file" in table:
        throughput = AppThroughput(path=_path(reader.string(table, "throughput_file", where), base))
    elif "throughput_command" in table:
        throughput = AppThroughput(command=reader.string(table, "throughput_command", where))
    reference = None
    if "reference_gbps" in table:
        reference = reader.number(table, "reference_gbps", where, low=0, strict=True)
    return AppConfig(name, pid, pid_file, throughput, reference)


def _perf(reader: TomlReader, table: dict, n_nodes: int, base: Path | None) -> PerfConfig:
    reader.keys(table, _PERF_KEYS, "perf")
    spawn = reader.boolean(table, "spawn", "perf", default=False)
    if ("file" in table) == spawn:
        reader.fail("perf", "give either file = PATH (perf run by you) or spawn = true")
    file = _path(reader.string(table, "file", "perf"), base) if "file" in table else None
    interval_ms = reader.integer(table, "interval_ms", "perf", low=10, default=1000)
    events: dict[str, PerfEvent] = {}
    entries = reader.tables(table, "events")
    if not entries:
        reader.fail("perf.events", "at least one [[perf.events]] table is required")
    for i, entry in enumerate(entries):
        where = f"perf.events[{i}]"
        reader.keys(entry, _EVENT_KEYS, where)
        name = reader.string(entry, "name", where)
        if name in events:
            reader.fail(f"{where}.name", f"event {name!r} is listed twice")
        node = reader.number(entry, "node", where, low=0)
        if node != int(node) or node >= n_nodes:
            reader.fail(f"{where}.node", f"{node!r} is not a node id 0..{n_nodes - 1}")
        kind = reader.string(entry, "kind", where, "total")
        if kind not in EVENT_KINDS:
            reader.fail(f"{where}.kind", f"{kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        events[name] = PerfEvent(
            node=int(node),
            direction=kind,  # type: ignore[arg-type]
            bytes_per_count=reader.number(
                entry, "bytes_per_count", where, low=0, strict=True, default=64.0
            ),
            ns_per_count=reader.number(
                entry, "ns_per_count", where, low=0, strict=True, default=1.0
            ),
        )
    return PerfConfig(file, spawn, interval_ms, events)
