"""Issue 19: one daemon per sysfs root, no pickles on a host, and no file of ours inside the
real /sys or /proc.

The real trees are never touched: tests that need a "real" tree make a temporary directory
count as one (``REAL_TREES`` patched), so a missing guard writes there, harmlessly, and fails.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import tierenv.host.sysfs as sysfs
from agents.controllers import ControllerError, make_controller
from tests.test_daemon import events, fake, make_daemon, reopen, start_child, stop_all
from tierenv.contracts.features import ObservationSpec
from tierenv.daemon import main
from tierenv.daemon.lock import LockHeldError, RootLock, lock_path
from tierenv.host.fake_kernel import FakeKernel
from tierenv.host.simulated_kernel import SimulatedKernel, run_fakehost
from tierenv.host.sysfs import RealSysfsRefusedError

KDS = "kernel/mm/damon/admin/kdamonds"
WI = "kernel/mm/mempolicy/weighted_interleave"


@pytest.fixture
def host(tmp_path: Path) -> SimulatedKernel:
    kernel = SimulatedKernel(tmp_path / "host", "steady-single")
    kernel.advance()
    return kernel


def daemon_argv(kernel: SimulatedKernel, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--fake-kernel", "--sysfs-root", str(kernel.path),
        "--host-config", str(kernel.config_path), "--page-nodes", "numa_maps",
        "--journal", str(tmp_path / "journal.json"), "--interval", "0.01", *extra,
    ]  # fmt: skip


# ----------------------------------------------------------------------------- one per root


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple]:
    """A daemon subprocess on a FakeKernel tree at ``tmp_path`` (killed whatever happens)."""
    fk = fake(tmp_path)
    before = fk.snapshot()
    started: list = []
    try:
        proc, journal, _ = start_child(tmp_path, started)
        yield proc, journal, before
    finally:
        stop_all(started)


def test_a_second_daemon_on_the_same_root_is_refused(child, tmp_path: Path) -> None:
    proc, journal, before = child
    live_journal = journal.read_text()
    fk = reopen(tmp_path)
    live = fk.snapshot()
    daemon, log = make_daemon(fk, tmp_path, make_controller("static", weights=[2, 1]))
    daemon.journal_path = journal
    assert daemon.run(max_intervals=1) == 1
    error = next(e for e in events(log) if e["event"] == "error")
    assert f"another tierenv daemon (pid {proc.pid})" in error["message"]
    assert "recovery" not in [e["event"] for e in events(log)]  # its journal was not touched
    assert journal.read_text() == live_journal
    assert fk.writes == [] and fk.snapshot() == live
    # The first daemon still owns everything and restores it on SIGTERM.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0
    assert reopen(tmp_path).snapshot() == before


def test_another_spelling_of_the_root_is_the_same_lock(tmp_path: Path) -> None:
    fk = FakeKernel(tmp_path / "tree")
    (tmp_path / "link").symlink_to(tmp_path / "tree")
    assert lock_path(tmp_path / "link" / "sys") == lock_path(fk.path)
    assert lock_path(tmp_path / "tree" / "x" / ".." / "sys") == lock_path(fk.path)
    first = RootLock(fk.path)
    first.acquire()
    try:
        with pytest.raises(LockHeldError, match=rf"pid {os.getpid()}\).*{tmp_path / 'link'}"):
            RootLock(tmp_path / "link" / "sys").acquire()
        with pytest.raises(LockHeldError):
            RootLock(fk.path).check_free()  # what a dry run does
    finally:
        first.release()
    second = RootLock(tmp_path / "link" / "sys")
    second.acquire()  # free again
    second.release()


def test_the_real_sysfs_lock_lives_in_run() -> None:
    assert lock_path("/sys") == Path("/run/tierenv/daemon-sys.lock")  # nothing is created


def test_the_cli_refuses_a_second_daemon_with_exit_2(host, tmp_path, capsys) -> None:
    held = RootLock(host.path)
    held.acquire()
    try:
        before = host.snapshot()
        argv = daemon_argv(
            host, tmp_path, "--controller", "static", "--param", "weights=[1,3]",
            "--max-intervals", "1", "--log", str(tmp_path / "log.jsonl"),
        )  # fmt: skip
        assert main(argv) == 2
        assert "another tierenv daemon" in capsys.readouterr().err
        assert host.snapshot() == before
        assert main([*argv, "--dry-run"]) == 2  # a dry run would misread the live journal
    finally:
        held.release()


# ----------------------------------------------------------------------------- no pickles


class RunsCode:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def crafted_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder whose ``vecnormalize.pkl`` creates a marker file when unpickled."""
    run, marker = tmp_path / "run", tmp_path / "marker"
    run.mkdir()
    (run / "vecnormalize.pkl").write_bytes(pickle.dumps(RunsCode(marker)))
    (run / "model.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    spec = ObservationSpec(2, ["bandwidth", "latency"])
    (run / "run.json").write_text(
        json.dumps({
            "algorithm": "PPO", "seed": 0, "n_nodes": 2, "features": list(spec.names),
            "feature_groups": ["bandwidth", "latency"], "normalize_observation": True,
        })
    )  # fmt: skip
    # The payload is live: plain pickle.load runs it (so the tests below can fail).
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(RunsCode(control)))
    assert control.exists()
    return run, marker


def test_the_daemon_refuses_run_folders_and_never_unpickles(host, tmp_path, capsys) -> None:
    run, marker = crafted_run(tmp_path)
    before = host.snapshot()
    argv = daemon_argv(
        host, tmp_path, "--controller", "sb3", "--param", f"path={json.dumps(str(run))}",
        "--max-intervals", "1", "--log", str(tmp_path / "log.jsonl"),
    )  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--controller sb3: refused" in err and "tierenv export" in err
    assert not marker.exists()
    assert host.snapshot() == before
    argv[argv.index("sb3")] = "oracle-dp"  # nothing outside the deployable list
    assert main(argv) == 2 and "not a deployable controller" in capsys.readouterr().err


def test_a_crafted_vecnormalize_pickle_is_refused_without_running(tmp_path: Path) -> None:
    from agents.export import ExportError, export_policy
    from agents.policies.learned import load_normalizer

    run, marker = crafted_run(tmp_path)
    with pytest.raises(ControllerError, match=r"refusing to load (posix|os)\.system"):
        load_normalizer(run / "vecnormalize.pkl")
    with pytest.raises(ControllerError, match="refusing to load"):
        make_controller("sb3", path=run)
    out = tmp_path / "export" / "policy.onnx"
    with pytest.raises(ExportError, match="refusing to load"):
        export_policy(run, out)
    assert not marker.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


# ----------------------------------------------------------------------------- the guard


@pytest.fixture
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory the guard treats as the real /sys."""
    tree = Path(os.path.realpath(tmp_path)) / "realsys"
    tree.mkdir()
    monkeypatch.setattr(sysfs, "REAL_TREES", (*sysfs.REAL_TREES, tree))
    return tree


@pytest.mark.parametrize("option", ["--log", "--status", "--journal"])
def test_daemon_files_inside_a_real_tree_are_refused(host, tmp_path, guarded, option, capsys):
    """Issue 19 item 9: --log and --status even with --dry-run (which writes no journal)."""
    argv = daemon_argv(host, tmp_path, "--controller", "static", "--param", "weights=[1,3]",
                       "--max-intervals", "1")  # fmt: skip
    if option == "--journal":
        argv[argv.index("--journal") + 1] = str(guarded / "j" / "journal.json")
    else:
        argv += [option, str(guarded / "out" / "file.json"), "--dry-run"]
    assert main(argv) == 2
    assert "refusing to write" in capsys.readouterr().err
    assert list(guarded.iterdir()) == []


def test_fakehost_refuses_a_real_tree(guarded: Path) -> None:
    with pytest.raises(RealSysfsRefusedError, match="refusing to write the fake host"):
        run_fakehost(guarded / "kernel" / "host", "steady-single")
    with pytest.raises(RealSysfsRefusedError):
        FakeKernel(guarded / "tree")
    assert list(guarded.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--interval", "inf", "number of seconds in (0, 86400]"),
        ("--interval", "nan", "number of seconds in (0, 86400]"),
        ("--interval", "0", "number of seconds in (0, 86400]"),
        ("--interval", "soon", "expected seconds"),
        ("--max-intervals", "-1", "at least 1"),
        ("--max-intervals", "1.5", "whole number"),
        ("--interval", "1e-300", "at least 0.001 s"),
        ("--interval", "0.0001", "at least 0.001 s"),
        ("--max-change", "5", "share in (0, 1]"),
        ("--max-change", "nan", "share in (0, 1]"),
        ("--max-change", "most", "expected a share"),
        ("--reuse-kdamond", "-1", "at least 0"),
        ("--damos-quota", "-1", "expected a size per second"),
        ("--damos-quota", "lots", "expected a size per second"),
        ("--damos-quota", "2 TiB", "up to 1099511627776 bytes per second"),
    ],
)
def test_bad_interval_options_are_refused_before_anything_runs(
    tmp_path, option: str, value: str, problem: str, capsys
) -> None:
    argv = ["--sysfs-root", str(tmp_path / "sys"), "--host-config", str(tmp_path / "h.toml")]
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--controller", "kernel-auto", option, value])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert option in err and problem in err
    assert f"argument {option}: " in err
    assert list(tmp_path.iterdir()) == []
