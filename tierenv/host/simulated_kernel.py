"""A simulated kernel behind a sysfs tree: the daemon and the host env run end to end against
files, with the simulator answering as the kernel would.

:class:`SimulatedKernel` is a :class:`~tierenv.host.fake_kernel.FakeKernel` (the validating
``/sys`` tree) plus a ``/proc`` tree, a perf CSV and throughput files, all published from a
:class:`~tierenv.sim.host.SimulatedHost` running a scenario. Each :meth:`advance` is one control
interval:

1. the weights written to ``weighted_interleave/nodeN`` are handed to the simulator (they
   place new pages and are the DAMOS dests the simulator migrates to);
2. the simulator runs the interval;
3. what it measured is published the way a host shows it: ``/proc/PID/numa_maps`` and
   ``maps`` of each running application (each under its own pid, at its own address base),
   ``/proc/vmstat`` migration counters, ``node<N>/meminfo``, perf ``-I -x,`` lines for
   per-node read/write bytes and queue occupancy/inserts, and one throughput file per app.

DAMON state follows the kernel's rules for *our* kdamond: ``update_schemes_stats`` fills the
``migrate_hot`` scheme's ``stats/`` (summed over the simulator's per-application kdamonds),
``update_schemes_tried_regions`` fills a ``stat`` scheme's ``tried_regions/`` with the regions
of the targets the kdamond monitors, and a kdamond whose targets have all exited stops, as
vaddr kdamonds do. :meth:`page_nodes` answers ``move_pages`` from the simulator's memory.

What it does not model: the simulator runs DAMOS with dests equal to the interleave weights
whether or not a kdamond is configured (``dests_in_tree`` lets a test check the daemon keeps
them equal), and the tree's quotas and access pattern do not change the simulator's.

``run/host.toml`` is the host config for the daemon. The tree keeps kernel semantics only
through this object's ``root`` (its writes go through ``FakeKernel``), so the daemon runs in
the same process, as the tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tierenv.contracts.measurements import StepResult
from tierenv.files import write_text_atomically
from tierenv.host.fake_kernel import DAMOS_STAT_FILES, WI, FakeKernel
from tierenv.host.metrics import PidGoneError
from tierenv.host.speed import check_speed
from tierenv.host.sysfs import SysfsRoot, refuse_real_tree
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import Scenario, load_scenario

FIRST_PID = 4000
VMAS_PER_APP = 64
ADDRESS_BASE = 1 << 48  # app i's addresses are offset by (i + 1) * ADDRESS_BASE (no overlaps)


class SimulatedKernel(FakeKernel):
    """See the module docstring. ``scenario``: a shipped name, a file or a ``Scenario``."""

    proc_path: Path  # always set here (optional in FakeKernel)

    def __init__(
        self,
        tmp_path: str | Path,
        scenario: str | Path | Scenario,
        seed: int = 0,
        initial_weights: Sequence[int] | np.ndarray | None = None,
        kernel: str = "6.18",
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        n_nodes = len(self.scenario.nodes)
        tmp_path = Path(tmp_path)
        self.proc_path = tmp_path / "proc"
        self.run_path = tmp_path / "run"
        self.damon_path = self.run_path / "damon.json"
        super().__init__(
            tmp_path, n_nodes=n_nodes, kernel=kernel, proc_path=self.proc_path,
            damon_source=self.damon_path,
        )  # fmt: skip
        weights = np.ones(n_nodes, dtype=np.int64) if initial_weights is None else initial_weights
        self.host = SimulatedHost(self.scenario, weights=weights, seed=seed)
        self.perf_path = self.run_path / "perf.csv"
        self.config_path = self.run_path / "host.toml"
        self.app_pids = {run.app.name: FIRST_PID + i for i, run in enumerate(self.scenario.apps)}
        self._base = {name: (i + 1) * ADDRESS_BASE for i, name in enumerate(self.app_pids)}
        for i, weight in enumerate(np.asarray(weights).tolist()):
            self._put(Path(*WI) / f"node{i}", int(weight))
        if self.profile.auto_name:
            self._put(Path(*WI) / self.profile.auto_name, "false")
        self.proc_path.mkdir(parents=True, exist_ok=True)
        self.run_path.mkdir(parents=True, exist_ok=True)
        (self.run_path / "throughput").mkdir(exist_ok=True)
        self.perf_path.write_text("")
        self.last: StepResult | None = None
        self._publish_static()
        self._write_config()

    @property
    def proc_root(self) -> SysfsRoot:
        return SysfsRoot(self.proc_path)

    # -- one interval --------------------------------------------------------------------------

    def tree_weights(self) -> np.ndarray:
        wi = self.path.joinpath(*WI)
        return np.array(
            [int((wi / f"node{k}").read_text()) for k in range(self.n_nodes)], dtype=np.int64
        )

    def advance(self) -> StepResult:
        """Run one control interval under the weights in the tree and publish it."""
        self.host.set_weights(self.tree_weights())
        result = self.host.step()
        self.last = result
        self._publish(result)
        return result

    def dests_in_tree(self) -> list[np.ndarray]:
        """The dests of every running kdamond's migrate_hot schemes (node-id order)."""
        out = []
        for kd in self._running():
            schemes = kd / "contexts/0/schemes"
            for s in range(int((schemes / "nr_schemes").read_text())):
                d = schemes / str(s)
                if (d / "action").read_text().strip() != "migrate_hot":
                    continue
                weights = np.zeros(self.n_nodes, dtype=np.int64)
                for i in range(int((d / "dests/nr_dests").read_text())):
                    node = int((d / f"dests/{i}/id").read_text())
                    weights[node] = int((d / f"dests/{i}/weight").read_text())
                out.append(weights)
        return out

    def page_nodes(self) -> _SimulatedMovePages:
        return _SimulatedMovePages(self)

    # -- publishing ----------------------------------------------------------------------------

    def _publish_static(self) -> None:
        page = self.scenario.page_size
        for k, node in enumerate(self.scenario.nodes):
            total = node.capacity_bytes // 1024
            self._put(
                f"devices/system/node/node{k}/meminfo",
                f"Node {k} MemTotal: {total} kB\nNode {k} MemFree: {total} kB",
            )
        self._store(self.proc_path / "vmstat", "pgmigrate_success 0\npgmigrate_fail 0\n")
        if page % 1024:
            raise ValueError(f"page_size {page} is not a whole number of KiB (numa_maps)")

    def _publish(self, result: StepResult) -> None:
        m = result.measurements
        memory = self.host.memory
        running = set(m.app_names)
        for name, pid in self.app_pids.items():
            directory = self.proc_path / str(pid)
            if name not in running:
                self._remove_process(directory)
                continue
            resident = m.resident_pages[m.app_names.index(name)]
            if directory.is_dir():
                self._write_process(directory, name, resident)
            else:  # a new process appears with its files, as /proc/PID does
                staging = Path(tempfile.mkdtemp(dir=self._scratch, prefix="proc."))
                staging.chmod(0o755)
                self._write_process(staging, name, resident)
                os.rename(staging, directory)
            throughput = m.app_throughput_gbps[m.app_names.index(name)]
            self._store(self.run_path / "throughput" / name, f"{float(throughput)!r}\n")
        self._store(
            self.proc_path / "vmstat",
            f"pgmigrate_success {memory.pgmigrate_success}\n"
            f"pgmigrate_fail {memory.pgmigrate_fail}\n",
        )
        for k in range(self.n_nodes):
            total = int(self.scenario.nodes[k].capacity_bytes) // 1024
            free = int(m.node_free_bytes[k]) // 1024
            self._put(
                f"devices/system/node/node{k}/meminfo",
                f"Node {k} MemTotal: {total} kB\nNode {k} MemFree: {free} kB",
            )
        self._append_perf(m.time_s, m.interval_s, m.node_bandwidth_gbps, m.node_read_fraction,
                          m.node_latency_ns)  # fmt: skip
        self._publish_damon(result)
        self._stop_orphaned_kdamonds()

    def _write_process(self, directory: Path, name: str, resident: np.ndarray) -> None:
        """numa_maps and maps of one application: its memory as ``VMAS_PER_APP`` equal VMAs,
        so a reader estimating a region's nodes from numa_maps sees where pages are."""
        page = self.scenario.page_size
        base = self._base[name]
        start, end = self.host.address_span(name)
        cuts = np.unique(np.linspace(start // page, end // page, VMAS_PER_APP + 1).astype(np.int64))
        cuts *= page
        pages = self.host.region_pages(name, cuts[:-1], cuts[1:])
        policy = f"weighted interleave:0-{self.n_nodes - 1}"
        numa_lines, map_lines = [], []
        for lo, hi, counts in zip(cuts[:-1], cuts[1:], pages, strict=True):
            total = int(counts.sum())
            line = f"{base + lo:x} {policy} anon={total} dirty={total}"
            line += "".join(f" N{k}={int(c)}" for k, c in enumerate(counts) if c)
            if total:
                line += f" kernelpagesize_kB={page // 1024}"
            numa_lines.append(line)
            map_lines.append(f"{base + lo:x}-{base + hi:x} rw-p 00000000 00:00 0")
        if not np.array_equal(pages.sum(axis=0), resident):
            raise AssertionError(f"{name}: VMAs hold {pages.sum(axis=0)}, resident {resident}")
        self._store(directory / "numa_maps", "\n".join(numa_lines) + "\n")
        self._store(directory / "maps", "\n".join(map_lines) + "\n")

    def _remove_process(self, directory: Path) -> None:
        """An exited process's /proc/PID goes at once (moved aside, then deleted)."""
        if not directory.is_dir():
            return
        gone = Path(tempfile.mkdtemp(dir=self._scratch, prefix="gone."))
        os.rename(directory, gone / directory.name)
        shutil.rmtree(gone, ignore_errors=True)

    def _append_perf(
        self,
        time_s: float,
        interval_s: float,
        gbps: np.ndarray,
        read_fraction: np.ndarray,
        latency_ns: np.ndarray,
    ) -> None:
        lines = []
        run_ns = f"{interval_s * 1e9:.0f}"
        for k in range(self.n_nodes):
            requests = float(gbps[k]) * 1e9 * interval_s / 64  # 64 B per CAS
            reads = requests * float(read_fraction[k])
            counts = {
                "read": reads,
                "write": requests - reads,
                "occupancy": requests * float(latency_ns[k]),  # 1 ns per count
                "inserts": requests,
            }
            lines += [
                f"{time_s!r},{value!r},,sim/node{k}_{kind}/,{run_ns},100.00,,"
                for kind, value in counts.items()
            ]
        with self.perf_path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    def _write_config(self) -> None:
        lines = [
            "# Written by tierenv.host.simulated_kernel: the host config of a simulated host.",
            f"page_size = {self.scenario.page_size}",
            "",
        ]
        for node in self.scenario.nodes:
            lines += ["[[nodes]]", f'profile = "{node.profile.name}"', ""]
        # The managed applications only: a bound co-runner runs on the host but is not
        # the daemon's to manage (as on a real host, it is not in the config).
        managed = {run.app.name for run in self.scenario.managed_apps}
        for name, pid in self.app_pids.items():
            if name not in managed:
                continue
            lines += [
                "[[apps]]",
                f'name = "{name}"',
                f"pid = {pid}",
                f'throughput_file = "throughput/{name}"',
                "",
            ]
        interval_ms = round(self.scenario.control_interval_s * 1000)
        lines += ["[perf]", 'file = "perf.csv"', f"interval_ms = {interval_ms}", ""]
        for k in range(self.n_nodes):
            for kind in ("read", "write", "occupancy", "inserts"):
                lines += [
                    "[[perf.events]]",
                    f'name = "sim/node{k}_{kind}/"',
                    f"node = {k}",
                    f'kind = "{kind}"',
                    "",
                ]
        self.config_path.write_text("\n".join(lines))

    # -- DAMON as the kernel runs it -------------------------------------------------------------

    def _stop_orphaned_kdamonds(self) -> None:
        """A vaddr kdamond stops once every target process has exited.

        The daemon (another process) may be replacing these directories right now: a file
        that vanished or a count that no longer matches means it is, and the check waits
        for the next interval rather than stopping a kdamond it half read."""
        try:
            for kd in self._running():
                pids = self._targets(kd)
                if pids and not any(self._pid_exists(pid) for pid in pids):
                    self._store(kd / "state", "off\n")
                    self._store(kd / "pid", "-1\n")
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return

    def _publish_damon(self, result: StepResult) -> None:
        """What the simulator's kdamonds saw and did, for FakeKernel's update_* commands."""
        m = result.measurements
        published = {
            "pids": {str(self.app_pids[name]): name for name in m.app_names},
            "stats": {
                name: {f: int(getattr(stats, f)) for f in DAMOS_STAT_FILES}
                for name, stats in m.damos_stats.items()
            },
            "regions": {
                name: np.column_stack(
                    [
                        c["start"].astype(np.int64) + self._base[name],
                        c["end"].astype(np.int64) + self._base[name],
                        c["nr_accesses"],
                        c["age"],
                    ]
                ).tolist()
                for name, c in m.damon_regions.items()
            },
        }
        write_text_atomically(self.damon_path, json.dumps(published))


class _SimulatedMovePages:
    """``move_pages(2)`` answered from the simulator's memory (see ``PageNodeQuery``)."""

    def __init__(self, kernel: SimulatedKernel) -> None:
        self.kernel = kernel

    def region_pages(
        self, pid: int, starts: np.ndarray, ends: np.ndarray, n_nodes: int
    ) -> np.ndarray:
        by_pid = {p: name for name, p in self.kernel.app_pids.items()}
        if pid not in by_pid or not self.kernel._pid_exists(pid):
            raise PidGoneError(pid, "move_pages: no such process")
        name = by_pid[pid]
        base = self.kernel._base[name]
        offsets = (np.asarray(starts, dtype=np.uint64) - np.uint64(base)).astype(np.int64)
        ends_off = (np.asarray(ends, dtype=np.uint64) - np.uint64(base)).astype(np.int64)
        return self.kernel.host.region_pages(name, offsets, ends_off).astype(float)


def run_fakehost(directory: Path, scenario: str, seed: int = 0, speed: float = 1.0) -> int:
    """``tierenv fakehost``: advance a simulated kernel in real time until the scenario ends
    or SIGTERM/SIGINT."""
    speed = check_speed(speed)
    directory = refuse_real_tree(directory, "the fake host's trees")
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} is not empty; give a new or empty directory")
    kernel = SimulatedKernel(directory, scenario, seed=seed)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    period = kernel.scenario.control_interval_s / speed
    print(f"simulated host: scenario {kernel.scenario.name!r} in {directory}", flush=True)
    print(
        f"run: tierenv daemon --fake-kernel --sysfs-root {kernel.path} --host-config "
        f"{kernel.config_path} --page-nodes numa_maps --journal {directory / 'journal.json'} "
        f"--interval {period:g} --controller kernel-auto",
        flush=True,
    )
    next_at = time.monotonic()
    while not stop.is_set() and not kernel.host.done:
        m = kernel.advance().measurements
        print(
            f"t={m.time_s:6.1f} s  weights {m.weights.tolist()}  apps {list(m.app_names)}  "
            f"throughput {float(m.app_throughput_gbps.sum()):6.1f} GB/s",
            flush=True,
        )
        next_at += period
        stop.wait(max(next_at - time.monotonic(), 0.0))
    return 0
