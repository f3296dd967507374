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

import errno
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tierenv.contracts.measurements import StepResult
from tierenv.host.fake_kernel import WI, FakeKernel, _fail
from tierenv.host.metrics import PidGoneError
from tierenv.host.sysfs import SysfsRoot
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import Scenario, load_scenario

FIRST_PID = 4000
ADDRESS_BASE = 1 << 48  # app i's addresses are offset by (i + 1) * ADDRESS_BASE (no overlaps)
DAMOS_STAT_FILES = ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds")


class SimulatedKernel(FakeKernel):
    """See the module docstring. ``scenario``: a shipped name, a file or a ``Scenario``."""

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
        super().__init__(Path(tmp_path), n_nodes=n_nodes, kernel=kernel, pids=set())
        weights = np.ones(n_nodes, dtype=np.int64) if initial_weights is None else initial_weights
        self.host = SimulatedHost(self.scenario, weights=weights, seed=seed)
        self.proc_path = Path(tmp_path) / "proc"
        self.run_path = Path(tmp_path) / "run"
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
        (self.proc_path / "vmstat").write_text("pgmigrate_success 0\npgmigrate_fail 0\n")
        if page % 1024:
            raise ValueError(f"page_size {page} is not a whole number of KiB (numa_maps)")

    def _publish(self, result: StepResult) -> None:
        m = result.measurements
        memory = self.host.memory
        running = set(m.app_names)
        self.pids = {self.app_pids[name] for name in running}
        for name, pid in self.app_pids.items():
            directory = self.proc_path / str(pid)
            if name not in running:
                shutil.rmtree(directory, ignore_errors=True)
                continue
            directory.mkdir(exist_ok=True)
            self._write_process(directory, name, m.resident_pages[m.app_names.index(name)])
            throughput = m.app_throughput_gbps[m.app_names.index(name)]
            (self.run_path / "throughput" / name).write_text(f"{float(throughput)!r}\n")
        (self.proc_path / "vmstat").write_text(
            f"pgmigrate_success {memory.pgmigrate_success}\n"
            f"pgmigrate_fail {memory.pgmigrate_fail}\n"
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
        self._stop_orphaned_kdamonds()

    def _write_process(self, directory: Path, name: str, resident: np.ndarray) -> None:
        page = self.scenario.page_size
        base = self._base[name]
        nodes = " ".join(f"N{k}={int(p)}" for k, p in enumerate(resident) if p)
        total = int(resident.sum())
        policy = f"weighted interleave:0-{self.n_nodes - 1}"
        line = f"{base:x} {policy} anon={total} dirty={total} {nodes}"
        if total:
            line += f" kernelpagesize_kB={page // 1024}"
        (directory / "numa_maps").write_text(line + "\n")
        (directory / "maps").write_text(f"{base:x}-{base + ADDRESS_BASE:x} rw-p 00000000 00:00 0\n")

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
        for name, pid in self.app_pids.items():
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
        """A vaddr kdamond stops once every target process has exited."""
        for kd in self._running():
            targets = kd / "contexts/0/targets"
            pids = [
                int((targets / str(t) / "pid_target").read_text())
                for t in range(int((targets / "nr_targets").read_text()))
            ]
            if pids and not any(pid in self.pids for pid in pids):
                (kd / "state").write_text("off\n")
                (kd / "pid").write_text("-1\n")

    def _state(self, path: Path, command: str) -> None:
        super()._state(path, command)
        if command == "update_schemes_stats":
            self._fill_stats(path.parent)
        elif command == "update_schemes_tried_regions":
            self._fill_tried_regions(path.parent)

    def _schemes(self, kd: Path) -> list[tuple[Path, str]]:
        schemes = kd / "contexts/0/schemes"
        return [
            (schemes / str(s), (schemes / str(s) / "action").read_text().strip())
            for s in range(int((schemes / "nr_schemes").read_text()))
        ]

    def _target_apps(self, kd: Path) -> list[str]:
        targets = kd / "contexts/0/targets"
        by_pid = {pid: name for name, pid in self.app_pids.items()}
        pids = [
            int((targets / str(t) / "pid_target").read_text())
            for t in range(int((targets / "nr_targets").read_text()))
        ]
        return [by_pid[p] for p in pids if p in by_pid]

    def _fill_stats(self, kd: Path) -> None:
        if self.last is None:
            return
        stats = self.last.measurements.damos_stats
        targets = self._target_apps(kd)
        for scheme, action in self._schemes(kd):
            if action != "migrate_hot":
                continue
            for name in DAMOS_STAT_FILES:
                total = sum(getattr(stats[app], name) for app in targets if app in stats)
                (scheme / "stats" / name).write_text(f"{int(total)}\n")

    def _fill_tried_regions(self, kd: Path) -> None:
        if self.last is None:
            raise _fail(errno.EINVAL, kd / "state")
        regions = self.last.measurements.damon_regions
        for scheme, action in self._schemes(kd):
            tried = scheme / "tried_regions"
            for child in tried.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
            if action != "stat":
                (tried / "total_bytes").write_text("0\n")
                continue
            index, total = 0, 0
            for app in self._target_apps(kd):
                if app not in regions:
                    continue
                columns = regions[app]
                base = self._base[app]
                for i in range(len(columns["start"])):
                    start, end = int(columns["start"][i]) + base, int(columns["end"][i]) + base
                    self._put(tried / str(index) / "start", start)
                    self._put(tried / str(index) / "end", end)
                    self._put(tried / str(index) / "nr_accesses", int(columns["nr_accesses"][i]))
                    self._put(tried / str(index) / "age", int(columns["age"][i]))
                    total += end - start
                    index += 1
            (tried / "total_bytes").write_text(f"{total}\n")


class _SimulatedMovePages:
    """``move_pages(2)`` answered from the simulator's memory (see ``PageNodeQuery``)."""

    def __init__(self, kernel: SimulatedKernel) -> None:
        self.kernel = kernel

    def region_pages(
        self, pid: int, starts: np.ndarray, ends: np.ndarray, n_nodes: int
    ) -> np.ndarray:
        by_pid = {p: name for name, p in self.kernel.app_pids.items()}
        if pid not in by_pid or pid not in self.kernel.pids:
            raise PidGoneError(pid, "move_pages: no such process")
        name = by_pid[pid]
        base = self.kernel._base[name]
        offsets = (np.asarray(starts, dtype=np.uint64) - np.uint64(base)).astype(np.int64)
        ends_off = (np.asarray(ends, dtype=np.uint64) - np.uint64(base)).astype(np.int64)
        return self.kernel.host.region_pages(name, offsets, ends_off).astype(float)
