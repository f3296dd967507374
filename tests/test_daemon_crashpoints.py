"""A daemon killed at every single point of a run with process churn is put back exactly by the
next start.

Killing the process is modelled in-process, deterministically: the Nth sysfs or journal write
raises ``Killed`` (a ``BaseException``, so no handler of the daemon runs), and so does every
write after it, so the teardown in ``finally`` cannot write anything either; the tree and the
journal are left exactly as a SIGKILL before that write would leave them. Then a new daemon
starts on the same tree and stops cleanly, and the whole tree must equal its state before the
first daemon started. The run covers what changes our kdamond: staging it, processes
appearing and exiting (new targets committed), every process exiting (the kernel stops the
kdamond) and a new one appearing (staged and started again), and weight changes (dests).
``tests/faults.py`` does the same with real SIGKILLs against ``tierenv fakehost``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tierenv.daemon.loop as loop
from agents.controllers import make_controller
from tests.test_daemon import NODES, Clock, Scripted, measurement
from tierenv.daemon import Daemon, JsonLog
from tierenv.host.fake_kernel import FakeKernel
from tierenv.host.interleave import WeightedInterleave

KDS = "kernel/mm/damon/admin/kdamonds"
# The live processes in each interval: a second one appears, the first exits, all exit (the
# kernel stops the kdamond), a new one appears (restaged), then two at once.
SCHEDULE: list[set[int]] = [{11}, {11, 12}, {12}, set(), {13}, {13, 11}, {11}]
WEIGHTS = [[3, 1], [3, 1], [1, 2], [1, 2], [5, 4], [2, 1], [2, 1]]


class Killed(BaseException):
    """The process died here."""


class Crash:
    """Counts writes; the ``at``-th one and every later one raise ``Killed``."""

    def __init__(self, at: int | None) -> None:
        self.at, self.count = at, 0

    def point(self) -> None:
        self.count += 1
        if self.at is not None and self.count >= self.at:
            raise Killed(f"killed at write {self.at}")


class CrashingKernel(FakeKernel):
    crash: Crash

    def write_text(self, path: Path, value: str) -> None:
        self.crash.point()
        super().write_text(path, value)


def kernel(tmp_path: Path, pids: set[int], crash: Crash) -> CrashingKernel:
    fk = CrashingKernel(tmp_path, pids=set(pids), auto_weights=[1, 1], build=False)
    fk.crash = crash
    return fk


def stop_orphaned(fk: FakeKernel) -> None:
    """What the kernel does when every target of a vaddr kdamond has exited."""
    for kd in fk._running():
        targets = fk._targets(kd)
        if targets and not any(fk._pid_exists(p) for p in targets):
            fk._store(kd / "state", "off\n")
            fk._store(kd / "pid", "-1\n")


def run_until_killed(tmp_path: Path, at: int | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """The first daemon's run with churn; returns the number of writes it made."""
    crash = Crash(at)
    fk = kernel(tmp_path, SCHEDULE[0], crash)
    real_write_journal = loop.write_journal

    def write_journal(path: Path, journal: Any) -> None:
        crash.point()
        real_write_journal(path, journal)

    monkeypatch.setattr(loop, "write_journal", write_journal)
    clock = Clock()
    interval = [0]

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        interval[0] += 1
        fk.pids = set(SCHEDULE[min(interval[0], len(SCHEDULE) - 1)])
        stop_orphaned(fk)

    wi = WeightedInterleave(fk.root)
    daemon = Daemon(
        fk.root, Scripted(WEIGHTS), lambda: measurement(list(wi.read_weights().values())),
        NODES, 1.0, tmp_path / "journal.json", lambda: sorted(fk.pids),
        log=JsonLog(tmp_path / "first.jsonl", clock=clock), clock=clock, sleep=sleep,
    )  # fmt: skip
    try:
        daemon.run(max_intervals=len(SCHEDULE) - 1, handle_signals=False)
    except Killed:
        pass
    finally:
        daemon.lock.release()  # the kernel drops a killed process's flock
        monkeypatch.setattr(loop, "write_journal", real_write_journal)
    return crash.count


def restart(tmp_path: Path) -> int:
    fk = kernel(tmp_path, {11}, Crash(None))
    wi = WeightedInterleave(fk.root)
    clock = Clock()
    daemon = Daemon(
        fk.root, make_controller("static", weights=[7, 2]),
        lambda: measurement(list(wi.read_weights().values())), NODES, 1.0,
        tmp_path / "journal.json", [11], log=JsonLog(tmp_path / "second.jsonl", clock=clock),
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    return daemon.run(max_intervals=1, handle_signals=False)


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one (each trial renames hundreds of files, ten
    times faster there than on ext4), else ``tmp_path``."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(dir=shm, prefix="tierenv-crashpoints-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def kill_everywhere(root: Path, monkeypatch: pytest.MonkeyPatch, stride: int) -> None:
    base = root / "base"
    FakeKernel(base, pids={11}, auto_weights=[1, 1])
    before = FakeKernel(base, build=False).snapshot()
    total = run_until_killed(base, None, monkeypatch)  # an uninterrupted run: every write
    assert FakeKernel(base, build=False).snapshot() == before
    assert total > 100
    failures = []
    for at in range(1, total + 1, stride):
        tree = root / f"kill-{at}"
        FakeKernel(tree, pids={11}, auto_weights=[1, 1])
        run_until_killed(tree, at, monkeypatch)
        code = restart(tree)
        after = FakeKernel(tree, build=False).snapshot()
        if code != 0 or after != before or (tree / "journal.json").exists():
            changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
            failures.append(f"kill at write {at}: exit {code}, changed {changed[:4]}")
        shutil.rmtree(tree)
    assert failures == [], "\n".join(failures[:5])


def test_a_kill_at_every_fourth_write_is_undone_by_the_next_start(fast_dir, monkeypatch):
    kill_everywhere(fast_dir, monkeypatch, stride=4)


@pytest.mark.slow
def test_a_kill_at_any_write_is_undone_by_the_next_start(fast_dir, monkeypatch) -> None:
    kill_everywhere(fast_dir, monkeypatch, stride=1)


def test_targets_changed_then_killed_is_ours_at_the_next_start(tmp_path, monkeypatch) -> None:
    """Issue 19 item 1: a process joins, our kdamond follows it, the daemon is killed; the next
    start must recognise the kdamond (its targets are no longer the first ones) and remove it,
    not refuse to start because a kdamond "already runs"."""
    FakeKernel(tmp_path, pids={11}, auto_weights=[1, 1])
    before = FakeKernel(tmp_path, build=False).snapshot()
    crash = Crash(None)
    fk = kernel(tmp_path, {11}, crash)
    wi = WeightedInterleave(fk.root)
    daemon = Daemon(
        fk.root, make_controller("static", weights=[7, 2]),
        lambda: measurement(list(wi.read_weights().values())), NODES, 1.0,
        tmp_path / "journal.json", lambda: sorted(fk.pids), log=JsonLog(tmp_path / "a.jsonl"),
    )  # fmt: skip
    daemon.setup()
    daemon.step()
    fk.pids = {11, 12}
    daemon.step()
    assert fk.root.read(f"{KDS}/0/contexts/0/targets/nr_targets") == "2"
    daemon.lock.release()  # killed here: nothing is torn down
    assert restart(tmp_path) == 0
    assert FakeKernel(tmp_path, build=False).snapshot() == before


# --------------------------------------------------------------- the fake kernel under SIGKILL

KILL_IN_RECREATE = """
import os, signal, sys
from pathlib import Path
from tierenv.host.fake_kernel import FakeKernel
fk = FakeKernel(Path(sys.argv[1]), pids={11}, build=False)
built = []
original = FakeKernel._target
def target(self, d):
    built.append(d)
    if len(built) == 2:  # the second new target: the kill lands inside the nr_targets write
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, d)
FakeKernel._target = target
fk.root.write(sys.argv[2], 3)
"""


def test_a_kill_inside_an_nr_write_leaves_the_tree_consistent(tmp_path: Path) -> None:
    """Issue 19 item 6: a SIGKILL inside ``FakeKernel._recreate`` left the children deleted
    while ``nr_*`` still counted them; now the old children stay, matching ``nr_*``."""
    fk = FakeKernel(tmp_path, pids={11})
    fk.root.write(f"{KDS}/nr_kdamonds", 1)
    fk.root.write(f"{KDS}/0/contexts/nr_contexts", 1)
    nr = f"{KDS}/0/contexts/0/targets/nr_targets"
    fk.root.write(nr, 2)
    fk.root.write(f"{KDS}/0/contexts/0/targets/1/pid_target", 11)
    before = fk.snapshot()
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    done = subprocess.run(
        [sys.executable, "-c", KILL_IN_RECREATE, str(tmp_path), nr],
        cwd=Path(__file__).parents[1], env=env, timeout=120, capture_output=True,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert fk.snapshot() == before
    targets = fk.path / nr.rsplit("/", 1)[0]
    assert sorted(p.name for p in targets.iterdir() if p.is_dir()) == ["0", "1"]


def test_nr_writes_and_reads_in_another_process_never_see_half_a_file(tmp_path: Path) -> None:
    """Issue 19 item 6: every file of the tree is replaced atomically, so a reader in another
    process (``tierenv fakehost`` reading weights, the daemon reading meminfo) never sees an
    empty or partial file. A writer process rewrites the weights as fast as it can."""
    fk = FakeKernel(tmp_path, auto_weights=[1, 1])
    code = (
        "import sys\nfrom pathlib import Path\nfrom tierenv.host.fake_kernel import FakeKernel\n"
        "fk = FakeKernel(Path(sys.argv[1]), build=False)\n"
        "for i in range(3000):\n"
        "    fk.root.write('kernel/mm/mempolicy/weighted_interleave/node0', 1 + i % 200)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    writer = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                              cwd=Path(__file__).parents[1])  # fmt: skip
    node0 = fk.path / "kernel/mm/mempolicy/weighted_interleave/node0"
    seen: set[str] = set()
    try:
        while writer.poll() is None:
            seen.add(node0.read_text())
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert writer.returncode == 0
    assert all(text.endswith("\n") and 1 <= int(text) <= 200 for text in seen), sorted(seen)[:3]
    assert len(seen) > 1  # the reader did see the writer's changes


def test_temporary_files_stay_out_of_the_tree(tmp_path: Path) -> None:
    """Temporary files and directories are made beside ``sys``, never in a directory a reader
    lists (``stats/`` is read by listing it), and none is left behind."""
    fk = FakeKernel(tmp_path)
    fk.root.write(f"{KDS}/nr_kdamonds", 1)
    fk.root.write(f"{KDS}/0/contexts/nr_contexts", 1)
    fk.root.write(f"{KDS}/0/contexts/0/schemes/nr_schemes", 2)
    fk.root.write(f"{KDS}/0/contexts/0/schemes/1/action", "migrate_hot")
    names = {p.name for p in fk.path.rglob("*")}
    assert not any(name.startswith(("file.", "dir.", ".")) for name in names)
    assert list((tmp_path / ".fake-kernel-tmp").iterdir()) == []


class ExitsAtStart(FakeKernel):
    """Process 12 exits just before our kdamond's first ``state on`` (the kernel then refuses
    it with EINVAL: a target has no process)."""

    def write_text(self, path: Path, value: str) -> None:
        if Path(path).name == "state" and value == "on" and 12 in (self.pids or set()):
            self.pids = {11}
        super().write_text(path, value)


def test_a_target_exiting_while_the_kdamond_starts_is_followed(tmp_path: Path) -> None:
    fk = ExitsAtStart(tmp_path, pids={11, 12}, auto_weights=[1, 1])
    before = fk.snapshot()
    wi = WeightedInterleave(fk.root)
    clock = Clock()
    daemon = Daemon(
        fk.root, make_controller("static", weights=[7, 2]),
        lambda: measurement(list(wi.read_weights().values())), NODES, 1.0,
        tmp_path / "journal.json", lambda: sorted(fk.pids or ()),
        log=JsonLog(tmp_path / "log.jsonl", clock=clock), clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    daemon.setup()
    assert daemon.pids == (11,) and fk.root.read(f"{KDS}/0/state") == "on"
    assert fk.root.read(f"{KDS}/0/contexts/0/targets/nr_targets") == "1"
    journal = daemon.journal
    assert journal is not None and journal.target_pids == (11,)
    assert journal.pending_target_pids is None and not journal.kdamond_staging
    daemon.request_stop()
    assert daemon.teardown() == []
    assert fk.snapshot() == before
