"""Host-mode metric parsers and sources: what the daemon reads from a real Linux host each
control interval to fill :class:`tierenv.contracts.measurements.Measurements`.

Why two layers: the parsers are pure functions on text, so they are tested on recorded real
outputs (tests/data/host/) and raise a ``ValueError`` naming the source and line when the text
is not what the kernel (or perf) prints. The sources add the file access, through an explicit
:class:`~tierenv.host.sysfs.SysfsRoot` (``/proc`` or ``/sys`` on a host, a recorded tree in
tests), and the bookkeeping an interval needs (vmstat deltas, perf interval grouping, a vanished
PID as :class:`PidGoneError` instead of a crash). Nothing here writes anything: DAMOS ``stats/`` are
only as fresh as the kdamond owner's last ``update_schemes_stats`` (or ``refresh_ms``).

Formats: perf-stat(1) CSV output of the uncore IMC/CXL events
(arch/x86/events/intel/uncore_snbep.c, perf's pmu-events JSON); /proc/vmstat, node meminfo
and numa_maps (numa(7)); DAMOS stats and tried_regions
(Documentation/admin-guide/mm/damon/usage.rst).
"""

from __future__ import annotations

import errno
import math
import re
import shlex
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

from tierenv.contracts.measurements import SchemeStats
from tierenv.host.sysfs import SysfsError, SysfsRoot

T_co = TypeVar("T_co", covariant=True)

# /proc/vmstat counters the daemon reports (event counters: deltas are meaningful).
VMSTAT_PREFIXES = ("pgmigrate_", "numa_", "pgpromote_", "pgdemote_", "thp_migration_")

NODE_DIR = "devices/system/node"  # relative to a sysfs root
DAMON_ADMIN = "kernel/mm/damon/admin"  # relative to a sysfs root

# Core stats every DAMOS kernel with sysfs has; sz_ops_filter_passed (6.14+) and the 7.0
# nr_snapshots files are optional.
DAMOS_REQUIRED_STATS = ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds")


class MetricSource(Protocol[T_co]):
    """One host metric, read once per control interval; ``now`` is the daemon's clock (s)."""

    def read(self, now: float) -> T_co: ...


class PidGoneError(Exception):
    """The process is gone (or has no address space left): drop it, don't crash the daemon."""

    def __init__(self, pid: int | str, reason: str) -> None:
        super().__init__(f"process {pid} is gone: {reason}")
        self.pid = pid
        self.reason = reason


PidGone = PidGoneError  # the short name the daemon's design notes use


class AppThroughputError(RuntimeError):
    """The application's throughput could not be read; the message says from where and why."""


def _bad(source: str, lineno: int, line: str, why: str) -> ValueError:
    return ValueError(f"{source}:{lineno}: {why}: {line.strip()!r}")


def _int(source: str, lineno: int, line: str, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad(source, lineno, line, f"{what} {text!r} is not an integer") from None


# --- /proc/PID/numa_maps --------------------------------------------------------------------

_NODE_TOKEN = re.compile(r"N(\d+)=(\d+)")
_KINDS = ("heap", "stack", "huge")


@dataclass(frozen=True)
class NumaMapsVma:
    """One numa_maps line: a VMA's policy and its resident pages per node."""

    address: int
    policy: str  # e.g. "default", "bind:1", "weighted interleave:0-1"
    kind: str  # "heap", "stack", "huge", "file=<path>" or "" (anonymous)
    node_pages: dict[int, int]  # N<node>= counts, in pages of page_bytes
    page_bytes: int  # kernelpagesize_kB * 1024 (hugetlb VMAs count huge pages)
    counters: dict[str, int]  # anon=, dirty=, mapped=, mapmax=, active=, ...

    @property
    def node_bytes(self) -> dict[int, int]:
        return {node: pages * self.page_bytes for node, pages in self.node_pages.items()}


@dataclass(frozen=True)
class NumaMaps:
    """A process's numa_maps: VMAs and resident bytes per node summed over them."""

    vmas: tuple[NumaMapsVma, ...]

    @property
    def node_bytes(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for vma in self.vmas:
            for node, size in vma.node_bytes.items():
                total[node] = total.get(node, 0) + size
        return dict(sorted(total.items()))

    def resident_pages(self, n_nodes: int, page_size: int = 4096) -> np.ndarray:
        """(nodes,) resident pages in ``page_size`` units, the Measurements layout; a node
        beyond ``n_nodes`` is an error because the caller's node list is wrong."""
        out = np.zeros(n_nodes, dtype=np.int64)
        for node, size in self.node_bytes.items():
            if node >= n_nodes:
                raise ValueError(f"numa_maps shows node {node}, but only {n_nodes} nodes given")
            out[node] = size // page_size
        return out


def parse_numa_maps(text: str, source: str = "numa_maps") -> NumaMaps:
    """Parse ``/proc/PID/numa_maps``.

    The policy may hold a space ("weighted interleave:0-1", "prefer (many):0-1"); file paths
    cannot, because the kernel escapes whitespace in them (seq_file_path). A VMA with no
    resident page has no N<node>= and no kernelpagesize_kB token.
    """
    vmas = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise _bad(source, lineno, line, "expected '<address> <policy> ...'")
        try:
            address = int(tokens[0], 16)
        except ValueError:
            raise _bad(source, lineno, line, f"address {tokens[0]!r} is not hex") from None
        policy, rest = tokens[1], tokens[2:]
        if rest and (policy == "weighted" or rest[0].startswith("(")):
            policy, rest = f"{policy} {rest[0]}", rest[1:]
        kind = ""
        node_pages: dict[int, int] = {}
        counters: dict[str, int] = {}
        page_kb: int | None = None
        for token in rest:
            if token in _KINDS or token.startswith("file="):
                kind = token
                continue
            match = _NODE_TOKEN.fullmatch(token)
            if match:
                node_pages[int(match[1])] = int(match[2])
                continue
            key, eq, value = token.partition("=")
            if not eq:
                raise _bad(source, lineno, line, f"unexpected token {token!r}")
            number = _int(source, lineno, line, value, key)
            if key == "kernelpagesize_kB":
                page_kb = number
            else:
                counters[key] = number
        if node_pages and page_kb is None:
            raise _bad(source, lineno, line, "N<node>= counts without kernelpagesize_kB")
        vmas.append(NumaMapsVma(address, policy, kind, node_pages, (page_kb or 4) * 1024, counters))
    return NumaMaps(tuple(vmas))


# --- /proc/vmstat ---------------------------------------------------------------------------


def parse_maps_ranges(text: str, source: str = "maps") -> np.ndarray:
    """``/proc/PID/maps`` as a (VMAs, 2) float array of [start, end) addresses (floats: only
    overlaps are computed from them, and 64-bit addresses fit a double's range)."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        span = line.split(maxsplit=1)[0]
        start, sep, end = span.partition("-")
        try:
            rows.append((int(start, 16), int(end, 16)))
        except ValueError:
            raise _bad(source, lineno, line, "expected 'start-end perms ...' in hex") from None
        if not sep or rows[-1][1] < rows[-1][0]:
            raise _bad(source, lineno, line, "expected 'start-end' with end >= start")
    return np.array(rows, dtype=float).reshape(len(rows), 2)


def parse_vmstat(text: str, source: str = "/proc/vmstat") -> dict[str, int]:
    """Parse ``/proc/vmstat`` (or a node's ``vmstat``): ``name value`` per line."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise _bad(source, lineno, line, "expected '<name> <value>'")
        out[parts[0]] = _int(source, lineno, line, parts[1], parts[0])
    return out


# --- /sys/devices/system/node/nodeN/meminfo -------------------------------------------------

_MEMINFO = re.compile(r"Node\s+(\d+)\s+([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?")


def parse_node_meminfo(
    text: str, source: str = "meminfo", node: int | None = None
) -> dict[str, int]:
    """Parse a node's meminfo ("Node 0 MemFree: 123 kB"). kB fields become bytes; unitless
    fields (HugePages_*) stay counts. ``node`` checks the file is the node it claims to be."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _MEMINFO.fullmatch(line.strip())
        if not match:
            raise _bad(source, lineno, line, "expected 'Node <n> <Field>: <value> [kB]'")
        if node is not None and int(match[1]) != node:
            raise _bad(source, lineno, line, f"line is for node {match[1]}, expected {node}")
        value = int(match[3])
        out[match[2]] = value * 1024 if match[4] else value
    return out


# --- DAMOS stats/ and tried_regions/ --------------------------------------------------------


def parse_damos_stats(files: Mapping[str, str], source: str = "stats") -> dict[str, int]:
    """Parse a scheme's ``stats/`` directory, given as {file name: content}."""
    out: dict[str, int] = {}
    for name, text in sorted(files.items()):
        value = text.strip()
        out[name] = _int(f"{source}/{name}", 1, text, value, name)
    missing = [name for name in DAMOS_REQUIRED_STATS if name not in out]
    if missing:
        raise ValueError(f"{source}: missing DAMOS stats files {missing}")
    return out


def scheme_stats(values: Mapping[str, int]) -> SchemeStats:
    """The contract's :class:`SchemeStats`; sz_ops_filter_passed is 0 on kernels without it."""
    return SchemeStats(
        nr_tried=values["nr_tried"],
        sz_tried=values["sz_tried"],
        nr_applied=values["nr_applied"],
        sz_applied=values["sz_applied"],
        sz_ops_filter_passed=values.get("sz_ops_filter_passed", 0),
        qt_exceeds=values["qt_exceeds"],
    )


@dataclass(frozen=True)
class TriedRegions:
    """A scheme's ``tried_regions/``: the regions it tried in the apply pass after the last
    ``update_schemes_tried_regions`` (empty until someone asks the kernel)."""

    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray
    sz_filter_passed: np.ndarray | None  # None on kernels without the file
    total_bytes: int | None

    def as_region_arrays(self) -> dict[str, np.ndarray]:
        """The Measurements.damon_regions layout (start, end, nr_accesses, age)."""
        return {
            "start": self.start,
            "end": self.end,
            "nr_accesses": self.nr_accesses,
            "age": self.age,
        }


_REGION_FIELDS = ("start", "end", "nr_accesses", "age")
TRIED_REGION_FILES = (*_REGION_FIELDS, "sz_filter_passed")


def parse_tried_regions(
    regions: Mapping[int, Mapping[str, str]],
    total_bytes: str | None = None,
    source: str = "tried_regions",
) -> TriedRegions:
    """Parse ``tried_regions/`` given as {index: {file: content}} plus ``total_bytes``."""
    indices = sorted(regions)
    if indices != list(range(len(indices))):
        raise ValueError(f"{source}: region directories {indices} are not 0..N-1")
    columns: dict[str, list[int]] = {name: [] for name in (*_REGION_FIELDS, "sz_filter_passed")}
    with_filter = all("sz_filter_passed" in regions[i] for i in indices)
    for i in indices:
        files = regions[i]
        for name in _REGION_FIELDS if not with_filter else (*_REGION_FIELDS, "sz_filter_passed"):
            if name not in files:
                raise ValueError(f"{source}/{i}: missing file {name}")
            columns[name].append(
                _int(f"{source}/{i}/{name}", 1, files[name], files[name].strip(), name)
            )
        if columns["end"][-1] < columns["start"][-1]:
            raise ValueError(f"{source}/{i}: end {columns['end'][-1]} < start")
    total = None
    if total_bytes is not None:
        total = _int(f"{source}/total_bytes", 1, total_bytes, total_bytes.strip(), "total_bytes")

    def arr(name: str) -> np.ndarray:
        return np.array(columns[name], dtype=np.uint64 if name in ("start", "end") else np.int64)

    return TriedRegions(
        arr("start"),
        arr("end"),
        arr("nr_accesses"),
        arr("age"),
        arr("sz_filter_passed") if with_filter and indices else None,
        total,
    )


# --- perf stat -I <ms> -x<sep> --------------------------------------------------------------

# Units perf prints after applying an event's .scale/.unit (cas_count_* print MiB).
_BYTE_UNITS = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "kB": 1000,
    "MB": 10**6,
    "GB": 10**9,
}


@dataclass(frozen=True)
class PerfCount:
    """One perf CSV record: an event's count over one interval."""

    time_s: float  # end of the interval, seconds since perf started
    value: float  # nan when perf printed "<not counted>"
    unit: str
    event: str
    run_pct: float  # percentage of the interval the counter ran (multiplexing)


def parse_perf_csv_line(
    line: str, source: str = "perf", lineno: int = 0, sep: str = ",", prefix_fields: int = 0
) -> PerfCount | None:
    """Parse one line of ``perf stat -I <ms> -x<sep>``: time, [prefix], value, unit, event,
    run time, percent running, [metric value, metric unit]. Comment and blank lines give None.

    ``prefix_fields`` skips aggregation fields (--per-socket prints 2: "S0,1"). With sep=","
    raw event names holding commas (``event=0x05,umask=0xcf``) are ambiguous: use perf's named
    aliases or ``-x';'`` (perf-stat(1) recommends a non-comma separator for this reason).
    """
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields = [f.strip() for f in line.rstrip("\n").split(sep)]
    need = 1 + prefix_fields + 3
    if len(fields) < need:
        raise _bad(
            source,
            lineno,
            line,
            f"expected at least {need} {sep!r}-separated fields "
            "(time, value, unit, event) from 'perf stat -I ... -x'",
        )
    try:
        time_s = float(fields[0])
    except ValueError:
        raise _bad(
            source,
            lineno,
            line,
            f"interval time {fields[0]!r} is not a number (was perf run with -I?)",
        ) from None
    value_text, unit, event = fields[1 + prefix_fields : 4 + prefix_fields]
    if value_text == "<not supported>":
        raise _bad(
            source,
            lineno,
            line,
            f"perf reports event {event!r} as not supported "
            "on this host: fix the event mapping in the config",
        )
    if value_text == "<not counted>":
        value = math.nan
    else:
        try:
            value = float(value_text)
        except ValueError:
            raise _bad(source, lineno, line, f"count {value_text!r} is not a number") from None
    if not event:
        raise _bad(source, lineno, line, "empty event name")
    run_pct = math.nan
    rest = fields[4 + prefix_fields :]
    if len(rest) >= 2 and rest[1]:
        try:
            run_pct = float(rest[1])
        except ValueError:
            raise _bad(
                source, lineno, line, f"percent running {rest[1]!r} is not a number"
            ) from None
    return PerfCount(time_s, value, unit, event, run_pct)


@dataclass(frozen=True)
class PerfEvent:
    """Where one perf event's traffic goes. Host-specific: which IMC/CXL PMU serves which
    node (socket, channel, SNC) and the bytes per count come from the host's config, never
    from here. 64 B per CAS for DDR (the cas_count aliases' .scale, 6.103515625e-5 MiB); a
    unit perf prints (MiB for those aliases) overrides ``bytes_per_count``.

    Loaded latency uses Colloid's method: a queue's occupancy (summed each cycle) over its
    inserts is the mean time a request waits, in cycles; ``ns_per_count`` converts occupancy
    counts to ns (1 / the CHA clock in GHz)."""

    node: int
    direction: Literal["read", "write", "total", "occupancy", "inserts"] = "total"
    bytes_per_count: float = 64.0
    ns_per_count: float = 1.0


@dataclass(frozen=True)
class BandwidthSample:
    """Per-node bandwidth over one perf interval."""

    time_s: float  # end of the interval (perf's clock)
    interval_s: float
    node_gbps: np.ndarray  # (nodes,) read + write + total (1e9 bytes/s); nan if not counted
    node_read_fraction: np.ndarray  # (nodes,) nan where reads and writes are not split
    event_bytes: dict[str, float]
    node_latency_ns: np.ndarray | None = None  # (nodes,) nan where not counted


def bandwidth_from_counts(
    counts: Sequence[PerfCount],
    events: Mapping[str, PerfEvent],
    n_nodes: int,
    interval_s: float,
    source: str = "perf",
) -> BandwidthSample:
    """Turn one interval's counts into per-node GB/s; events outside the mapping are ignored,
    mapped events missing from the interval are an error (a name mismatch, most likely)."""
    if interval_s <= 0:
        raise ValueError(f"{source}: interval of {interval_s} s is not positive")
    seen = {c.event: c for c in counts}
    missing = sorted(set(events) - set(seen))
    if missing:
        raise ValueError(
            f"{source}: interval ending at {counts[0].time_s if counts else '?'} s "
            f"lacks mapped events {missing}; perf printed {sorted(seen)}"
        )
    by_dir = {d: np.zeros(n_nodes) for d in ("read", "write", "total")}
    queue = {d: np.zeros(n_nodes) for d in ("occupancy", "inserts")}
    event_bytes: dict[str, float] = {}
    for name, spec in events.items():
        count = seen[name]
        if not 0 <= spec.node < n_nodes:
            raise ValueError(
                f"{source}: event {name!r} maps to node {spec.node}, outside 0..{n_nodes - 1}"
            )
        if spec.direction in queue:
            scale = spec.ns_per_count if spec.direction == "occupancy" else 1.0
            queue[spec.direction][spec.node] += count.value * scale
            continue
        if count.unit in _BYTE_UNITS:
            size = count.value * _BYTE_UNITS[count.unit]
        elif count.unit == "":
            size = count.value * spec.bytes_per_count
        else:
            raise ValueError(
                f"{source}: event {name!r} has unit {count.unit!r}, which is not "
                f"a byte unit ({sorted(_BYTE_UNITS)}) or a raw count"
            )
        event_bytes[name] = size
        by_dir[spec.direction][spec.node] += size
    total = by_dir["read"] + by_dir["write"] + by_dir["total"]
    split = by_dir["read"] + by_dir["write"]
    with np.errstate(invalid="ignore", divide="ignore"):
        read_fraction = np.where(
            (by_dir["total"] == 0) & (split > 0), by_dir["read"] / split, np.nan
        )
        latency = np.where(queue["inserts"] > 0, queue["occupancy"] / queue["inserts"], np.nan)
    return BandwidthSample(
        counts[0].time_s, interval_s, total / interval_s / 1e9, read_fraction, event_bytes, latency
    )


def perf_command(events: Iterable[str], interval_ms: int = 1000, sep: str = ",") -> list[str]:
    """The argv for a system-wide interval perf (for the daemon to spawn; tests never do)."""
    return [
        "perf",
        "stat",
        "-a",
        "--no-merge",
        "-I",
        str(interval_ms),
        f"-x{sep}",
        "-e",
        ",".join(events),
    ]


class PerfBandwidth:
    """Per-node bandwidth from a ``perf stat -I`` CSV stream: feed it lines (from a reader
    thread on perf's stderr, or a recorded file) and :meth:`read` gives the latest complete
    interval. An interval is complete once every mapped event has reported for it."""

    def __init__(
        self,
        events: Mapping[str, PerfEvent],
        n_nodes: int,
        source: str = "perf",
        sep: str = ",",
        prefix_fields: int = 0,
    ) -> None:
        if not events:
            raise ValueError("PerfBandwidth needs at least one event mapping (from config)")
        self.events = dict(events)
        self.n_nodes = n_nodes
        self.source = source
        self.sep = sep
        self.prefix_fields = prefix_fields
        self._lineno = 0
        self._pending: list[PerfCount] = []
        self._last_end = 0.0
        self.latest: BandwidthSample | None = None

    def feed(self, line: str) -> BandwidthSample | None:
        """Consume one line; return the interval it completes, if any."""
        self._lineno += 1
        count = parse_perf_csv_line(line, self.source, self._lineno, self.sep, self.prefix_fields)
        if count is None:
            return None
        if self._pending and count.time_s != self._pending[0].time_s:
            have = {c.event for c in self._pending}
            raise ValueError(
                f"{self.source}:{self._lineno}: new interval at {count.time_s} s "
                f"before the one at {self._pending[0].time_s} s had events "
                f"{sorted(set(self.events) - have)}"
            )
        self._pending.append(count)
        if not set(self.events) <= {c.event for c in self._pending}:
            return None
        counts, self._pending = self._pending, []
        sample = bandwidth_from_counts(
            counts,
            self.events,
            self.n_nodes,
            count.time_s - self._last_end,
            f"{self.source}:{self._lineno}",
        )
        self._last_end = count.time_s
        self.latest = sample
        return sample

    def intervals(self, lines: Iterable[str]) -> Iterator[BandwidthSample]:
        """Every complete interval in ``lines``, in order."""
        for line in lines:
            sample = self.feed(line)
            if sample is not None:
                yield sample

    def read(self, now: float) -> BandwidthSample | None:
        """The latest complete interval (None before the first)."""
        return self.latest


# --- sources --------------------------------------------------------------------------------


class NumaMapsSource:
    """Resident bytes per node of the managed processes, from ``<proc>/<pid>/numa_maps``."""

    @dataclass(frozen=True)
    class Sample:
        time_s: float
        maps: dict[int | str, NumaMaps]
        gone: dict[int | str, str]  # pid -> why it was dropped this read

    def __init__(self, proc: SysfsRoot, pids: Iterable[int | str]) -> None:
        self.proc = proc
        self.pids = list(pids)

    def read_pid(self, pid: int | str) -> NumaMaps:
        """One process's numa_maps; :class:`PidGoneError` if it exited."""
        rel = f"{pid}/numa_maps"
        try:
            text = self.proc.read(rel)
        except SysfsError as error:
            if error.errno in (errno.ENOENT, errno.ESRCH):
                raise PidGoneError(pid, f"{self.proc.resolve(rel)} vanished") from error
            raise
        if not text.strip():
            # Only a process without an mm (exited/zombie, or a kernel thread) has no VMAs.
            raise PidGoneError(pid, f"{self.proc.resolve(rel)} is empty (no address space)")
        return parse_numa_maps(text, str(self.proc.resolve(rel)))

    def read(self, now: float) -> NumaMapsSource.Sample:
        maps: dict[int | str, NumaMaps] = {}
        gone: dict[int | str, str] = {}
        for pid in self.pids:
            try:
                maps[pid] = self.read_pid(pid)
            except PidGoneError as error:
                gone[pid] = error.reason
        return self.Sample(now, maps, gone)


@dataclass(frozen=True)
class VmStatSample:
    time_s: float
    counters: dict[str, int]  # cumulative values of the selected counters
    deltas: dict[str, int] | None  # change since the previous read; None on the first read
    interval_s: float | None

    def delta(self, name: str) -> int:
        """One counter's delta; 0 if the kernel lacks it (e.g. pgpromote_* before 5.18)."""
        if self.deltas is None:
            raise ValueError("the first vmstat read has no interval yet")
        return self.deltas.get(name, 0)


class VmStat:
    """Per-interval deltas of the migration and NUMA event counters in ``/proc/vmstat``."""

    def __init__(self, proc: SysfsRoot, prefixes: Sequence[str] = VMSTAT_PREFIXES) -> None:
        self.proc = proc
        self.prefixes = tuple(prefixes)
        self._last: tuple[float, dict[str, int]] | None = None

    def read(self, now: float) -> VmStatSample:
        text = self.proc.read("vmstat")
        values = parse_vmstat(text, str(self.proc.resolve("vmstat")))
        counters = {k: v for k, v in values.items() if k.startswith(self.prefixes)}
        if self._last is None:
            sample = VmStatSample(now, counters, None, None)
        else:
            then, previous = self._last
            deltas = {k: v - previous.get(k, v) for k, v in counters.items()}
            sample = VmStatSample(now, counters, deltas, now - then)
        self._last = (now, counters)
        return sample


class NodeMemInfo:
    """Per-node meminfo (bytes) from ``<sys>/devices/system/node/node<N>/meminfo``."""

    def __init__(self, sys: SysfsRoot, nodes: Sequence[int] | None = None) -> None:
        self.sys = sys
        self.nodes = list(nodes) if nodes is not None else self.discover()

    def discover(self) -> list[int]:
        """The node directories present (memory-only CXL nodes included)."""
        names = self.sys.listdir(NODE_DIR)
        return sorted(int(n[4:]) for n in names if re.fullmatch(r"node\d+", n))

    def read(self, now: float) -> dict[int, dict[str, int]]:
        out = {}
        for node in self.nodes:
            rel = f"{NODE_DIR}/node{node}/meminfo"
            out[node] = parse_node_meminfo(self.sys.read(rel), str(self.sys.resolve(rel)), node)
        return out

    def free_bytes(self, now: float) -> np.ndarray:
        """(nodes,) MemFree in node order, the Measurements.node_free_bytes layout."""
        info = self.read(now)
        return np.array([info[n]["MemFree"] for n in self.nodes], dtype=np.int64)


class DamosStats:
    """Read-only DAMOS ``stats/`` and ``tried_regions/`` of one kdamond context.

    The files are the kernel's copies as of the last ``update_schemes_stats`` /
    ``update_schemes_tried_regions`` (or ``refresh_ms`` tick); refreshing is the kdamond
    owner's job (:class:`tierenv.host.damon.Kdamond`), so this class never writes.
    """

    def __init__(self, sys: SysfsRoot, kdamond: int, context: int = 0) -> None:
        self.sys = sys
        self.base = f"{DAMON_ADMIN}/kdamonds/{kdamond}/contexts/{context}/schemes"

    def schemes(self) -> list[int]:
        return sorted(int(n) for n in self.sys.listdir(self.base) if n.isdigit())

    def read_scheme(self, scheme: int) -> dict[str, int]:
        rel = f"{self.base}/{scheme}/stats"
        files = {name: self.sys.read(f"{rel}/{name}") for name in self.sys.listdir(rel)}
        return parse_damos_stats(files, str(self.sys.resolve(rel)))

    def read(self, now: float) -> dict[int, SchemeStats]:
        return {i: scheme_stats(self.read_scheme(i)) for i in self.schemes()}

    def tried_regions(self, scheme: int) -> TriedRegions:
        rel = f"{self.base}/{scheme}/tried_regions"
        names = self.sys.listdir(rel)
        # Only the known files: a region directory may hold more (7.3 has a probes/ dir).
        regions = {
            int(n): {
                f: self.sys.read(f"{rel}/{n}/{f}")
                for f in self.sys.listdir(f"{rel}/{n}")
                if f in TRIED_REGION_FILES
            }
            for n in names
            if n.isdigit()
        }
        total = self.sys.read(f"{rel}/total_bytes") if "total_bytes" in names else None
        return parse_tried_regions(regions, total, str(self.sys.resolve(rel)))


def parse_throughput(text: str, source: str) -> float:
    """A throughput report: one finite, non-negative number (surrounding whitespace ok)."""
    stripped = text.strip()
    try:
        value = float(stripped)
    except ValueError:
        shown = stripped if len(stripped) <= 80 else stripped[:77] + "..."
        raise AppThroughputError(f"{source}: expected one number, got {shown!r}") from None
    if not math.isfinite(value) or value < 0:
        raise AppThroughputError(f"{source}: throughput {value} is not a finite number >= 0")
    return value


@dataclass
class AppThroughput:
    """An application's own throughput metric: the stdout of a user-supplied command (run
    without a shell, with a timeout) or the content of a file the application rewrites."""

    command: Sequence[str] | str | None = None
    path: Path | str | None = None
    timeout_s: float = 5.0
    _argv: list[str] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if (self.command is None) == (self.path is None):
            raise ValueError("AppThroughput needs exactly one of command= or path=")
        if self.command is not None:
            argv = (
                shlex.split(self.command) if isinstance(self.command, str) else list(self.command)
            )
            if not argv:
                raise ValueError("AppThroughput command is empty")
            self._argv = argv

    def read(self, now: float) -> float:
        if self.path is not None:
            try:
                text = Path(self.path).read_text(encoding="utf-8")
            except OSError as error:
                raise AppThroughputError(f"throughput file {self.path}: {error}") from error
            return parse_throughput(text, f"throughput file {self.path}")
        shown = shlex.join(self._argv)
        try:
            done = subprocess.run(
                self._argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise AppThroughputError(
                f"throughput command {shown!r} timed out after {self.timeout_s} s"
            ) from None
        except OSError as error:
            raise AppThroughputError(
                f"throughput command {shown!r} failed to start: {error}"
            ) from error
        if done.returncode != 0:
            tail = done.stderr.strip()[-200:]
            raise AppThroughputError(
                f"throughput command {shown!r} exited with {done.returncode}: {tail!r}"
            )
        return parse_throughput(done.stdout, f"throughput command {shown!r}")
