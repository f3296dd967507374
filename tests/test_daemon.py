"""The daemon's safety core on FakeKernel trees: journal, loop, rate limit, restore, signals."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.controllers import make_controller
from agents.controllers.base import Controller
from tierenv.contracts.measurements import Measurements, NodeInfo
from tierenv.daemon import Daemon, JsonLog, limit_shares, read_journal
from tierenv.daemon.journal import Journal, write_journal
from tierenv.daemon.ratelimit import share_change
from tierenv.host.fake_kernel import FakeKernel
from tierenv.host.interleave import WeightedInterleave

PID = 4242
KDS = "kernel/mm/damon/admin/kdamonds"
WI = "kernel/mm/mempolicy/weighted_interleave"
AUTO = f"{WI}/__auto_type"  # FakeKernel's default kernel is 6.18
NODES = NodeInfo(
    names=("ddr", "cxl"),
    peak_gbps=np.array([100.0, 30.0]),
    idle_latency_ns=np.array([100.0, 250.0]),
    capacity_bytes=np.array([64 << 30, 64 << 30]),
    page_size=4096,
)


def fake(tmp_path: Path, **kw: Any) -> FakeKernel:
    return FakeKernel(tmp_path, pids={PID}, auto_weights=[1, 1], **kw)


def reopen(tree: Path) -> FakeKernel:
    """A FakeKernel on an existing tree (the constructor would rebuild it from scratch)."""
    fk = FakeKernel(tree / "scratch", pids={PID}, auto_weights=[1, 1])
    fk.path = tree / "sys"
    return fk


def measurement(weights: Sequence[int], t: float = 0.0) -> Measurements:
    w = np.asarray(weights, dtype=np.int64)
    return Measurements(
        time_s=t, interval_s=1.0, weights=w,
        node_bandwidth_gbps=np.array([10.0, 3.0]), node_read_fraction=np.full(2, 0.67),
        node_latency_ns=np.array([110.0, 260.0]), node_free_bytes=np.full(2, 1e9),
        app_names=("app",), app_throughput_gbps=np.array([13.0]),
        resident_pages=np.zeros((1, 2), dtype=np.int64),
        migrated_bytes=np.zeros((2, 2), dtype=np.int64), pgmigrate_success=0,
        pgmigrate_fail=0, damon_regions={}, damon_region_pages={}, damos_stats={},
        damos_quota_bytes_per_s=0.0, nr_accesses_max=20,
    )  # fmt: skip


class Scripted(Controller):
    """Returns the scripted outputs in turn (an Exception instance is raised). No ``kind``:
    it must not register as a deployable controller."""

    def __init__(self, script: Sequence[Any]) -> None:
        self.script = list(script)

    def decide(self, measurements: Measurements) -> np.ndarray:
        out = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(out, Exception):
            raise out
        return np.asarray(out)

    def describe(self) -> str:
        return "scripted"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def make_daemon(
    fk: FakeKernel,
    tmp_path: Path,
    controller: Controller,
    probe: Callable[[FakeKernel], None] | None = None,
    **kw: Any,
) -> tuple[Daemon, Path]:
    clock = Clock()
    log_path = tmp_path / "log.jsonl"
    wi = WeightedInterleave(fk.root)

    def measure() -> Measurements:
        if probe is not None:
            probe(fk)
        return measurement(list(wi.read_weights().values()), clock())

    daemon = Daemon(
        fk.root, controller, measure, NODES, 1.0, tmp_path / "state" / "journal.json", [PID],
        log=JsonLog(log_path, clock=clock), status_path=tmp_path / "status.json",
        clock=clock, sleep=clock.sleep, **kw,
    )  # fmt: skip
    return daemon, log_path


def events(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def decisions(log_path: Path) -> list[dict[str, Any]]:
    return [e for e in events(log_path) if e["event"] == "decision"]


def assert_restored(fk: FakeKernel, before: dict[str, str], journal: Path) -> None:
    assert fk.snapshot() == before  # weights, auto switch, no kdamond left
    assert fk.root.read(AUTO) == "true"
    assert fk.root.read_int(f"{KDS}/nr_kdamonds") == 0
    assert not journal.exists()


# ----------------------------------------------------------------------------- normal runs


def test_static_run_applies_then_restores_everything(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    seen: list[tuple[list[int], list[int], str]] = []
    journals = []

    def probe(fk: FakeKernel) -> None:
        d = f"{KDS}/0/contexts/0/schemes/0/dests"
        dests = [fk.root.read_int(f"{d}/{i}/weight") for i in range(2)]
        weights = list(WeightedInterleave(fk.root).read_weights().values())
        seen.append((weights, dests, fk.root.read(f"{KDS}/0/state")))
        journals.append(read_journal(tmp_path / "state" / "journal.json"))

    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[3, 1]), probe)
    assert daemon.run(max_intervals=3) == 0
    # First measurement under the originals (dests follow them), then [3, 1] everywhere.
    assert seen == [([1, 1], [1, 1], "on"), ([3, 1], [3, 1], "on"), ([3, 1], [3, 1], "on")]
    journal = journals[0]
    assert journal is not None and journal.weights == {0: 1, 1: 1} and journal.auto is True
    assert journal.auto_name == "__auto_type" and journal.kdamond_index == 0
    assert not journal.kdamond_reused and journal.target_pids == (PID,)
    assert [d["applied"] for d in decisions(log)] == [[3, 1]] * 3
    assert [d["changed"] for d in decisions(log)] == [True, False, False]
    assert fk.writes.count((f"{KDS}/0/state", "commit")) == 1  # dests committed only on change
    assert_restored(fk, before, tmp_path / "state" / "journal.json")
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "stopped" and status["intervals"] == 3
    assert status["counts"]["applied"] == 1 and status["last_decision"]["applied"] == [3, 1]
    assert events(log)[-1]["event"] == "stopped" and events(log)[-1]["restored"] is True


@pytest.mark.parametrize("kernel", ["6.12", "6.16"])
def test_a_kernel_without_vaddr_dests_runs_weights_only(tmp_path: Path, kernel: str) -> None:
    """6.11 to 6.16 have migrate_hot for paddr only and no dests: the daemon says so, removes
    the kdamond it had added and keeps setting weights."""
    fk = fake(tmp_path, kernel=kernel)
    before = fk.snapshot()
    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[3, 1]))
    assert daemon.run(max_intervals=2) == 0
    warnings = [e["message"] for e in events(log) if e["event"] == "warning"]
    assert any("no dests directory" in w and "weights only" in w for w in warnings)
    assert [d["applied"] for d in decisions(log)] == [[3, 1]] * 2
    assert fk.snapshot() == before
    assert fk.root.read_int(f"{KDS}/nr_kdamonds") == 0


def test_scripted_controller_changes_weights_and_dests(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    script = [[3, 1], [3, 1], [1, 2], [5, 4]]
    daemon, log = make_daemon(fk, tmp_path, Scripted(script))
    assert daemon.run(max_intervals=4) == 0
    assert [d["applied"] for d in decisions(log)] == script
    assert fk.writes.count((f"{KDS}/0/state", "commit")) == 3
    dest_writes = [v for p, v in fk.writes if p.endswith("dests/0/weight")]
    assert dest_writes == ["1", "3", "1", "5"]  # staged at start, then each change
    assert_restored(fk, before, tmp_path / "state" / "journal.json")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    daemon, log = make_daemon(fk, tmp_path, Scripted([[3, 1], [1, 2]]), dry_run=True)
    assert daemon.run(max_intervals=2) == 0
    assert fk.snapshot() == before and fk.writes == []
    assert not (tmp_path / "state" / "journal.json").exists()
    would = [e["would_write_weights"] for e in events(log) if "would_write_weights" in e]
    assert would == [[3, 1], [1, 2]]
    assert [d["applied"] for d in decisions(log)] == [[3, 1], [1, 2]]


# ----------------------------------------------------------------------------- faults


def test_einval_midway_through_weight_write_keeps_previous_weights(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    fk.fail_write(nth=1, path=f"{WI}/node1")  # the first node1 write: node0 already written
    seen: list[list[int]] = []

    def probe(fk: FakeKernel) -> None:
        seen.append(list(WeightedInterleave(fk.root).read_weights().values()))

    daemon, log = make_daemon(fk, tmp_path, Scripted([[3, 2], [4, 1]]), probe)
    assert daemon.run(max_intervals=3) == 0
    first, second, _ = decisions(log)
    assert "EINVAL" in first["error"] and first["applied"] == [1, 1] and not first["changed"]
    assert seen[1] == [1, 1]  # node0=3 was undone: the previous weights stayed in force
    assert second["error"] is None and second["applied"] == [4, 1]
    assert seen[2] == [4, 1]
    assert_restored(fk, before, tmp_path / "state" / "journal.json")


def test_ebusy_at_kdamond_start_is_a_clear_error_and_restores(tmp_path: Path) -> None:
    fk = fake(tmp_path, busy=True)
    before = fk.snapshot()
    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[3, 1]))
    assert daemon.run(max_intervals=3) == 1
    error = next(e for e in events(log) if e["event"] == "error")
    assert "EBUSY" in error["message"] and "DAMON_STAT" in error["message"]
    assert decisions(log) == []
    assert_restored(fk, before, tmp_path / "state" / "journal.json")


def test_nan_and_exceptions_from_the_controller_keep_safe_weights(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    script = [[3, 1], [np.nan, 1], RuntimeError("boom"), [0, 1], [np.inf, 2], [2, 1]]
    daemon, log = make_daemon(fk, tmp_path, Scripted(script))
    assert daemon.run(max_intervals=6) == 0
    ds = decisions(log)
    assert [d["applied"] for d in ds] == [[3, 1]] * 5 + [[2, 1]]
    fallbacks = [d["fallback"] for d in ds]
    assert fallbacks[0] is None and fallbacks[5] is None
    assert "non-finite" in fallbacks[1] and "boom" in fallbacks[2]
    assert "invalid" in fallbacks[3] and "non-finite" in fallbacks[4]
    assert daemon.counts["fallbacks"] == 4


def test_rate_limit_bounds_share_moves(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    daemon, log = make_daemon(
        fk, tmp_path, make_controller("static", weights=[255, 1]), max_change_per_interval=0.1
    )
    assert daemon.run(max_intervals=8) == 0
    applied = [np.array([1, 1])] + [np.array(d["applied"]) for d in decisions(log)]
    for a, b in itertools.pairwise(applied):
        assert share_change(a, b) <= 0.1 + 1e-12
    assert applied[-1].tolist() == [255, 1]  # 0.5 -> 0.996 in steps of at most 0.1
    assert decisions(log)[0]["rate_limited"] is True
    assert daemon.counts["rate_limited"] >= 4


def test_limit_shares_returns_asked_when_within_the_limit() -> None:
    assert limit_shares(np.array([1, 1]), np.array([3, 2]), 0.15).tolist() == [3, 2]
    step = limit_shares(np.array([1, 1, 1]), np.array([1, 1, 200]), 0.05)
    assert share_change(np.array([1, 1, 1]), step) <= 0.05 and step[2] > step[0]


# ----------------------------------------------------------------------------- signals, crash


def child(tree: str, journal: str, status: str, log: str) -> None:
    """Run by a subprocess: the daemon against the FakeKernel tree at ``tree`` until killed."""
    fk = reopen(Path(tree))
    wi = WeightedInterleave(fk.root)
    daemon = Daemon(
        fk.root, make_controller("static", weights=[3, 1]),
        lambda: measurement(list(wi.read_weights().values()), time.time()), NODES, 0.02,
        journal, [PID], log=JsonLog(log), status_path=status,
    )  # fmt: skip
    sys.exit(daemon.run())


def stop_all(processes: Sequence[subprocess.Popen[Any]]) -> None:
    """Kill whatever is still running and reap it (a failing test leaves no daemon behind)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        stop_all(started)


def start_child(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """A daemon subprocess on the FakeKernel tree at ``tmp_path``, registered in ``children``
    (killed at teardown), once it made two decisions."""
    journal, status = tmp_path / "journal.json", tmp_path / "status.json"
    code = (
        "from tests.test_daemon import child; "
        f"child({str(tmp_path)!r}, {str(journal)!r}, {str(status)!r}, "
        f"{str(tmp_path / 'child.jsonl')!r})"
    )
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1], env=env)
    children.append(proc)
    deadline = time.monotonic() + 300  # a bound for a hung child, not a timing assertion
    while time.monotonic() < deadline:
        if status.exists() and json.loads(status.read_text())["intervals"] >= 2:
            return proc, journal, status
        assert proc.poll() is None, "daemon subprocess exited early"
        time.sleep(0.02)
    raise AssertionError("daemon subprocess made no decisions")


def test_sigterm_restores(tmp_path: Path, children) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    proc, journal, status = start_child(tmp_path, children)
    assert fk.root.read(f"{WI}/node0") == "3" and journal.exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0
    assert_restored(reopen(tmp_path), before, journal)
    assert json.loads(status.read_text())["stop_reason"] == "SIGTERM"


def test_sigkill_then_restart_restores_from_journal_first(tmp_path: Path, children) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    proc, journal, _ = start_child(tmp_path, children)
    proc.kill()
    proc.wait(timeout=30)
    assert journal.exists()  # nothing was restored: the kernel state outlived the daemon
    assert fk.root.read(f"{WI}/node0") == "3" and fk.root.read(f"{KDS}/0/state") == "on"

    again = reopen(tmp_path)
    daemon, log = make_daemon(again, tmp_path, make_controller("static", weights=[2, 1]))
    daemon.journal_path = journal
    assert daemon.run(max_intervals=1) == 0
    names = [e["event"] for e in events(log)]
    assert names[:2] == ["recovery", "recovered"] and names.index("started") > 1
    # The killed daemon's lock was released by the kernel; its pid was still in the file.
    assert events(log)[names.index("started")]["stale_lock_owner"] == str(proc.pid)
    # The first writes put the host back before our new kdamond was created.
    first = again.writes[: again.writes.index((f"{KDS}/nr_kdamonds", "1"))]
    assert (f"{KDS}/0/state", "off") in first and (f"{KDS}/nr_kdamonds", "0") in first
    assert (f"{WI}/node0", "1") in first and (AUTO, "true") in first
    assert [d["applied"] for d in decisions(log)] == [[2, 1]]
    assert_restored(again, before, journal)


# ------------------------------------------------------------------------ corrupt journals


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"version": 2}', "[1, 2]", "\udcff"],
    ids=["syntax", "fields", "list", "binary"],
)
def test_a_corrupt_journal_is_kept_aside_and_never_reported_restored(
    tmp_path: Path, content: str
) -> None:
    """Issue 19 item 10: a corrupt journal logged "restored": true though nothing was
    restored, and the operator was told to delete the only evidence."""
    fk = fake(tmp_path)
    before = fk.snapshot()
    journal = tmp_path / "state" / "journal.json"
    journal.parent.mkdir()
    journal.write_bytes(content.encode("utf-8", "surrogateescape"))
    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[2, 1]))
    assert daemon.run(max_intervals=1) == 1
    kept = tmp_path / "state" / "journal.json.corrupt-1"
    assert not journal.exists() and kept.read_bytes() == content.encode("utf-8", "surrogateescape")
    found = {e["event"]: e for e in events(log)}
    assert found["recovery"]["restored"] is False and found["recovery"]["kept_as"] == str(kept)
    assert found["recovery"]["reason"].startswith("unreadable: ")
    assert found["stopped"]["restored"] is False
    assert "nothing was restored" in found["stopped"]["failures"][0]
    assert fk.snapshot() == before  # nothing was written to the host

    # The next start refuses too (its weights may be the crashed run's, not the originals);
    # an earlier kept journal is never replaced.
    journal.write_text("{again")
    again, log2 = make_daemon(fk, tmp_path / "second", make_controller("static", weights=[2, 1]))
    again.journal_path = journal
    assert again.run(max_intervals=1) == 1
    stopped = events(log2)[-1]
    assert stopped["event"] == "stopped" and stopped["restored"] is False
    assert f"kept at {kept}" in stopped["failures"][0]
    assert journal.read_text() == "{again"
    assert kept.read_bytes() == content.encode("utf-8", "surrogateescape")
    assert fk.snapshot() == before

    # Once the operator deleted the kept file, the next start sets the new one aside.
    kept.unlink()
    third, _ = make_daemon(fk, tmp_path / "third", make_controller("static", weights=[2, 1]))
    third.journal_path = journal
    assert third.run(max_intervals=1) == 1
    assert kept.read_text() == "{again" and not journal.exists()


def test_a_dry_run_leaves_a_corrupt_journal_where_it_is(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    journal = tmp_path / "state" / "journal.json"
    journal.parent.mkdir()
    journal.write_text("{not json")
    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[2, 1]), dry_run=True)
    assert daemon.run(max_intervals=1) == 1
    assert journal.read_text() == "{not json" and sorted(journal.parent.iterdir()) == [journal]
    found = {e["event"]: e for e in events(log)}
    assert found["recovery"]["restored"] is False and found["stopped"]["restored"] is False


def test_a_journal_that_cannot_be_restored_is_not_reported_restored(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    journal = tmp_path / "state" / "journal.json"
    write_journal(journal, Journal(sysfs_root="/elsewhere", weights={0: 1, 1: 1}, auto=True,
                                   auto_name="__auto_type"))  # fmt: skip
    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[2, 1]))
    assert daemon.run(max_intervals=1) == 1
    stopped = events(log)[-1]
    assert stopped["restored"] is False and "/elsewhere" in stopped["failures"][0]
    assert read_journal(journal) is not None  # kept for the next start to retry
