"""Assemble one control interval's :class:`~tierenv.contracts.measurements.Measurements` on a
host (real, or the simulated kernel's file tree) from the sources in :mod:`tierenv.host.metrics`.

Where each field comes from, and what a host cannot know:

=========================  ================================================================
field                      source
=========================  ================================================================
weights                    ``weighted_interleave/nodeN`` (what is in force)
node_bandwidth_gbps,       ``perf stat -I`` uncore counters named in the host config (NaN
node_read_fraction         without ``[perf]``: policies needing them are refused at start)
node_latency_ns            perf queue occupancy / inserts (NaN without such events)
node_free_bytes            ``node<N>/meminfo`` MemFree
resident_pages             ``/proc/PID/numa_maps`` N<node>= counts
app_throughput_gbps        each app's throughput file or command (NaN when it fails)
pgmigrate_*                ``/proc/vmstat`` deltas
damon_regions,             our kdamond's match-all ``stat`` scheme's ``tried_regions``,
damon_region_pages         assigned to processes by ``/proc/PID/maps``; nodes by ``move_pages``
damos_stats                our ``migrate_hot`` scheme's ``stats/``
migrated_bytes             an estimate: the ``sz_applied`` delta split by the dests' shares,
                           on the diagonal (the kernel does not say where pages came from)
=========================  ================================================================
"""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierenv.contracts.measurements import Measurements, NodeInfo, SchemeStats
from tierenv.host.config import HostConfig
from tierenv.host.damon import Kdamond
from tierenv.host.interleave import WeightedInterleave
from tierenv.host.metrics import (
    AppThroughputError,
    BandwidthSample,
    DamosStats,
    NodeMemInfo,
    NumaMapsSource,
    PerfBandwidth,
    VmStat,
    parse_maps_ranges,
    perf_command,
    scheme_stats,
)
from tierenv.host.page_nodes import PageNodeQuery
from tierenv.host.sysfs import SysfsError, SysfsRoot

# Feature groups each source serves (tierenv.contracts.features); always available: resident,
# free, weights, apps.
GROUPS_NEEDING = {
    "bandwidth": "perf read/write/total events for every node",
    "read_fraction": "perf read and write events for every node",
    "latency": "perf occupancy and inserts events for every node",
    "throughput": "a throughput_file or throughput_command for every app",
    "hotness": "our kdamond (not --no-damos) and --page-nodes move_pages or numa_maps",
    "access_share": "our kdamond (not --no-damos) and --page-nodes move_pages or numa_maps",
    "migrated": "our kdamond (DAMON sysfs with vaddr; not --no-damos)",
    "damos_quota": "our kdamond (DAMON sysfs with vaddr; not --no-damos)",
}


@dataclass(frozen=True)
class _DamonView:
    """What our kdamond showed this interval (the DAMON fields of Measurements)."""

    regions: dict[str, dict[str, np.ndarray]]
    region_pages: dict[str, np.ndarray]
    stats: dict[str, SchemeStats]
    quota_bytes_per_s: float
    migrated_bytes: np.ndarray


class PerfFollower:
    """Feeds :class:`PerfBandwidth` from perf's CSV: lines appended to a file (perf started by
    the user, or the simulated kernel), or the stderr of a perf we spawn."""

    def __init__(self, parser: PerfBandwidth, file: Path | None, argv: list[str] | None) -> None:
        self.parser = parser
        self.file = file
        self._offset = 0
        self._partial = ""
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.error: str | None = None
        if argv is not None:
            self._process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            threading.Thread(target=self._pump, daemon=True, name="perf-reader").start()

    def _pump(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._feed(line)

    def _feed(self, line: str) -> None:
        with self._lock:
            try:
                self.parser.feed(line)
            except ValueError as error:  # a malformed line: report, keep the last good sample
                self.error = str(error)

    def latest(self) -> BandwidthSample | None:
        if self.file is not None:
            try:
                with self.file.open(encoding="utf-8") as handle:
                    handle.seek(self._offset)
                    chunk = handle.read()
                    self._offset = handle.tell()
            except FileNotFoundError:
                chunk = ""
            text = self._partial + chunk
            lines = text.split("\n")
            self._partial = lines.pop()  # an incomplete last line waits for the next read
            for line in lines:
                self._feed(line)
        with self._lock:
            return self.parser.latest

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


class HostMetrics:
    """Measures the host each interval; see the module docstring for every field's source.

    ``page_nodes`` answers which node holds a region's pages (``MovePagesQuery`` on a real
    host). Call :meth:`attach_kdamond` once our kdamond runs, so DAMON's view is read too.
    """

    def __init__(
        self,
        sys: SysfsRoot,
        proc: SysfsRoot,
        config: HostConfig,
        page_nodes: PageNodeQuery | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sys = sys
        self.proc = proc
        self.config = config
        self.page_nodes = page_nodes
        self.interval_s = float(interval_s)
        self.clock = clock
        n = config.n_nodes
        self.wi = WeightedInterleave(sys)
        self.meminfo = NodeMemInfo(sys, nodes=range(n))
        present = self.meminfo.discover()
        if present[:n] != list(range(n)) or len(present) != n:
            raise ValueError(
                f"{config.source} lists {n} memory nodes but {sys.resolve('devices/system/node')} "
                f"has nodes {present}"
            )
        self.vmstat = VmStat(proc)
        self.perf: PerfFollower | None = None
        if config.perf is not None:
            argv = None
            if config.perf.spawn:
                argv = perf_command(config.perf.events, config.perf.interval_ms)
            parser = PerfBandwidth(config.perf.events, n, source=str(config.perf.file or "perf"))
            self.perf = PerfFollower(parser, config.perf.file, argv)
        self._apps = {app.name: app for app in config.apps}
        self.kdamond: Kdamond | None = None
        self.migrate_scheme = 0
        self.monitor_scheme: int | None = None
        self._nr_accesses_max = 1
        self._last_time: float | None = None
        self._last_applied: int | None = None
        self.started = clock()
        self.warnings: list[str] = []

    # -- static facts ------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        """Profiles from the config, capacities from the node meminfo (MemTotal)."""
        info = self.meminfo.read(self.clock())
        profiles = self.config.profiles
        return NodeInfo(
            names=tuple(p.name for p in profiles),
            peak_gbps=np.array([float(p.saturation_gbps(1.0)) for p in profiles]),
            idle_latency_ns=np.array([p.idle_latency_ns for p in profiles], dtype=float),
            capacity_bytes=np.array(
                [info[n]["MemTotal"] for n in range(self.config.n_nodes)], dtype=float
            ),
            page_size=self.config.page_size,
        )

    def unavailable_groups(self, use_damos: bool) -> dict[str, str]:
        """Feature groups this host cannot fill, with what they would need."""
        n = set(range(self.config.n_nodes))
        perf = self.config.perf
        have = {
            "bandwidth": perf is not None and n <= {e.node for e in perf.events.values()
                                                    if e.direction in ("read", "write", "total")},
            "read_fraction": perf is not None and n <= perf.nodes_with("read", "write"),
            "latency": perf is not None and n <= perf.nodes_with("occupancy", "inserts"),
            "throughput": all(app.throughput is not None for app in self.config.apps),
            "hotness": use_damos and self.page_nodes is not None,
            "access_share": use_damos and self.page_nodes is not None,
            "migrated": use_damos,
            "damos_quota": use_damos,
        }  # fmt: skip
        return {group: GROUPS_NEEDING[group] for group, ok in have.items() if not ok}

    def attach_kdamond(self, kdamond: Kdamond | None, monitor_scheme: int | None) -> None:
        """Read DAMON through ``kdamond`` (ours): scheme 0 migrates, ``monitor_scheme`` is the
        match-all ``stat`` scheme whose tried regions show every region."""
        self.kdamond = kdamond
        self.monitor_scheme = monitor_scheme
        if kdamond is not None:
            iv = f"{kdamond.path}/contexts/0/monitoring_attrs/intervals"
            sample, aggr = self.sys.read_int(f"{iv}/sample_us"), self.sys.read_int(f"{iv}/aggr_us")
            self._nr_accesses_max = max(aggr // max(sample, 1), 1)

    def pids(self) -> dict[str, int]:
        """Name -> pid of the configured apps whose pid can be resolved now."""
        out = {}
        for app in self.config.apps:
            try:
                out[app.name] = app.resolve_pid()
            except ValueError as error:
                self.warnings.append(str(error))
        return out

    def live_pids(self) -> tuple[int, ...]:
        """Pids of the configured apps that run now (their /proc directory exists)."""
        present = set(self.proc.listdir())  # one listing, not one per process
        return tuple(pid for pid in self.pids().values() if str(pid) in present)

    # -- one interval --------------------------------------------------------------------------

    def measure(self) -> Measurements:
        """The interval that just ended."""
        now = self.clock()
        interval = now - self._last_time if self._last_time is not None else self.interval_s
        self._last_time = now
        self.warnings = []
        n = self.config.n_nodes
        weights = self.wi.read_weights()
        pids = self.pids()
        maps = NumaMapsSource(self.proc, pids.values()).read(now)
        running = [name for name, pid in pids.items() if pid in maps.maps]
        for pid, why in maps.gone.items():
            self.warnings.append(f"pid {pid}: {why}")
        resident = np.array(
            [maps.maps[pids[name]].resident_pages(n, self.config.page_size) for name in running],
            dtype=np.int64,
        ).reshape(len(running), n)
        vm = self.vmstat.read(now)
        bandwidth = np.full(n, np.nan)
        read_fraction = np.full(n, np.nan)
        latency = np.full(n, np.nan)
        sample = self.perf.latest() if self.perf is not None else None
        if sample is not None:
            bandwidth = sample.node_gbps
            read_fraction = sample.node_read_fraction
            if sample.node_latency_ns is not None:
                latency = sample.node_latency_ns
        damon = self._damon(pids, running, n)
        return Measurements(
            time_s=now - self.started,
            interval_s=interval,
            weights=np.array([weights[k] for k in range(n)], dtype=np.int64),
            node_bandwidth_gbps=np.asarray(bandwidth, dtype=float),
            node_read_fraction=np.asarray(read_fraction, dtype=float),
            node_latency_ns=np.asarray(latency, dtype=float),
            node_free_bytes=self.meminfo.free_bytes(now).astype(float),
            app_names=tuple(running),
            app_throughput_gbps=np.array([self._throughput(name, now) for name in running]),
            resident_pages=resident,
            migrated_bytes=damon.migrated_bytes,
            pgmigrate_success=vm.delta("pgmigrate_success") if vm.deltas is not None else 0,
            pgmigrate_fail=vm.delta("pgmigrate_fail") if vm.deltas is not None else 0,
            damon_regions=damon.regions,
            damon_region_pages=damon.region_pages,
            damos_stats=damon.stats,
            damos_quota_bytes_per_s=damon.quota_bytes_per_s,
            nr_accesses_max=self._nr_accesses_max,
        )

    def _throughput(self, name: str, now: float) -> float:
        app = self._apps[name]
        if app.throughput is None:
            return float("nan")
        try:
            return app.throughput.read(now)
        except AppThroughputError as error:
            self.warnings.append(str(error))
            return float("nan")

    def _damon(self, pids: dict[str, int], running: list[str], n: int) -> _DamonView:
        migrated = np.zeros((n, n))
        kd = self.kdamond
        if kd is None or not kd.is_on():
            if kd is not None:
                self.warnings.append(f"kdamond {kd.index} is not running (its targets exited?)")
            return _DamonView({}, {}, {}, 0.0, migrated)
        reader = DamosStats(self.sys, kd.index)
        raw = kd.read_stats(self.migrate_scheme)  # refreshes stats first
        stats = scheme_stats(raw)
        applied = raw["sz_applied"]
        if self._last_applied is not None:
            dests = kd.read_dests(self.migrate_scheme)
            total = sum(d.weight for d in dests) or 1
            moved = max(applied - self._last_applied, 0)
            for d in dests:
                migrated[d.id, d.id] = moved * d.weight / total
        self._last_applied = applied
        q = f"{kd.path}/contexts/0/schemes/{self.migrate_scheme}/quotas"
        reset_ms = self.sys.read_int(f"{q}/reset_interval_ms")
        quota = self.sys.read_int(f"{q}/bytes") * 1000 / reset_ms if reset_ms else 0.0
        regions: dict[str, dict[str, np.ndarray]] = {}
        pages: dict[str, np.ndarray] = {}
        if self.monitor_scheme is not None and self.page_nodes is not None:
            try:
                kd.update_tried_regions()
                tried = reader.tried_regions(self.monitor_scheme)
            except SysfsError as error:
                if error.errno != errno.EINVAL:
                    raise
                self.warnings.append(f"tried_regions: {error}")
                return _DamonView(regions, pages, {"all": stats}, quota, migrated)
            owners = self._owners(pids, running, tried.start, tried.end)
            all_columns = tried.as_region_arrays()
            for name in running:
                mine = owners == name
                if not mine.any():
                    continue
                columns = {k: v[mine] for k, v in all_columns.items()}
                regions[name] = columns
                pages[name] = self.page_nodes.region_pages(
                    pids[name], columns["start"], columns["end"], n
                )
        return _DamonView(regions, pages, {"all": stats}, quota, migrated)

    def _owners(
        self, pids: dict[str, int], running: list[str], starts: np.ndarray, ends: np.ndarray
    ) -> np.ndarray:
        """The app whose mappings overlap each region most (DAMON lists every target's
        regions in one directory without saying whose they are)."""
        owners = np.full(len(starts), "", dtype=object)
        best = np.zeros(len(starts))
        for name in running:
            try:
                ranges = parse_maps_ranges(
                    self.proc.read(f"{pids[name]}/maps"),
                    str(self.proc.resolve(f"{pids[name]}/maps")),
                )
            except SysfsError:
                continue
            if not ranges.size:
                continue
            lo = np.maximum(starts[:, None].astype(float), ranges[None, :, 0])
            hi = np.minimum(ends[:, None].astype(float), ranges[None, :, 1])
            overlap = np.clip(hi - lo, 0, None).sum(axis=1)
            better = overlap > best
            owners[better] = name
            best[better] = overlap[better]
        return owners

    def close(self) -> None:
        if self.perf is not None:
            self.perf.close()
