"""Issue 19, residuals found by the item-by-item audit: what still failed after the earlier
fixes, each checked where it failed.

* item 7 and 10: ``fakehost --speed 1e-300`` died in an ``OverflowError`` traceback (and
  ``--speed nan`` had no test); ``daemon --interval 1e-300`` ran a busy loop; the discrete
  env built any grid (``levels=100000`` ran out of memory) and took ``levels=2.5``.
* item 10, late errors: ``validate --out DIR`` and ``simulate --plot DIR`` failed after the
  work; ``tierenvd --log DIR`` gave a traceback, ``--status DIR`` and ``--journal DIR``
  failed after the host was changed; ``--max-change 5`` gave a traceback; ``weights`` for
  three nodes on a two-node host failed after the journal was written; a binary policy
  sidecar gave a decoder message naming no file.
* item 10, corrupt journal: a journal with values the daemon never writes (weight 1.7,
  auto "maybe", kdamond "x") was restored from and logged "recovered", or failed with a
  ``TypeError``; it is now set aside like any unreadable journal.
* item 10, gym env: a string or ragged action gave a numpy ``ValueError``, not
  ``ActionError``; ``step_weights`` and ``initial_weights`` printed ``np.float64(nan)``.

Processes started here are run to completion by ``subprocess.run`` (killed on its bound);
nothing is timed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.faults import tree_state
from tierenv.cli import main as cli
from tierenv.contracts.actions import ActionError, check_action
from tierenv.daemon import main as daemon_main
from tierenv.daemon.journal import CorruptJournalError, read_journal, recover
from tierenv.envs.discrete import (
    MAX_GRID_POINTS,
    WeightedInterleaveDiscreteEnv,
    check_levels,
    weight_grid,
)
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.host.simulated_kernel import SimulatedKernel
from tierenv.memory.interleave import WeightError

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 300  # a hung process, not a slow one, exceeds this


@pytest.fixture
def host(tmp_path: Path) -> SimulatedKernel:
    kernel = SimulatedKernel(tmp_path / "host", "steady-single")
    kernel.advance()
    return kernel


def daemon_argv(kernel: SimulatedKernel, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--fake-kernel", "--sysfs-root", str(kernel.path),
        "--host-config", str(kernel.config_path), "--page-nodes", "numa_maps",
        "--interval", "0.01", "--max-intervals", "1", *extra,
    ]  # fmt: skip


def with_journal(argv: list[str], tmp_path: Path) -> list[str]:
    return argv if "--journal" in argv else [*argv, "--journal", str(tmp_path / "journal.json")]


# ---------------------------------------------------------------------- fakehost --speed


@pytest.mark.parametrize("speed", ["nan", "inf", "-1", "0", "1e-300", "1e9", "fast"])
def test_fakehost_refuses_a_speed_outside_its_range(tmp_path: Path, speed: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli(["fakehost", str(tmp_path / "host"), "--scenario", "steady-single", "--speed", speed])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--speed" in err and speed in err and "Traceback" not in err
    assert not (tmp_path / "host").exists()  # refused before the tree is built


# ---------------------------------------------------------------- outputs checked first


def test_validate_refuses_a_folder_for_its_table_before_the_checks(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import tierenv.hardware.validation as validation

    def ran(*_args, **_kwargs):
        raise AssertionError("the checks ran before --out was checked")

    monkeypatch.setattr(validation, "run_checks", ran)
    assert cli(["validate", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("plot", ["folder", "under-a-file"])
def test_simulate_refuses_an_unwritable_plot_before_simulating(
    tmp_path: Path, plot: str, monkeypatch, capsys
) -> None:
    import tierenv.sim.run as run

    def ran(*_args, **_kwargs):
        raise AssertionError("the scenario was simulated before --plot was checked")

    monkeypatch.setattr(run, "simulate", ran)
    (tmp_path / "file").write_text("")
    path = tmp_path if plot == "folder" else tmp_path / "file" / "plot.png"
    assert cli(["simulate", "steady-single", "--plot", str(path)]) == 2
    assert f"--plot {path}: " in capsys.readouterr().err


# ------------------------------------------------------------------------- the daemon


@pytest.mark.parametrize("option", ["--log", "--status", "--journal"])
@pytest.mark.parametrize("where", ["folder", "under-a-file"])
def test_daemon_output_paths_are_checked_before_anything_is_written(
    host: SimulatedKernel, tmp_path: Path, option: str, where: str, capsys
) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    path = tmp_path / "folder" if where == "folder" else tmp_path / "file" / "x"
    before = tree_state(host.path.parent)
    argv = with_journal(
        daemon_argv(host, tmp_path, "--controller", "static", "--param", "weights=[7,2]",
                    option, str(path)), tmp_path,
    )  # fmt: skip
    assert daemon_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tierenv daemon: {option} {path}: ") and len(err.splitlines()) == 1
    assert tree_state(host.path.parent) == before  # no weight written, no kdamond
    assert not (tmp_path / "journal.json").exists()


def test_tierenvd_reports_a_folder_for_its_log_in_one_line(
    host: SimulatedKernel, tmp_path: Path
) -> None:
    argv = with_journal(
        daemon_argv(host, tmp_path, "--controller", "kernel-auto", "--log", str(tmp_path)),
        tmp_path,
    )
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    done = subprocess.run(
        [sys.executable, "-m", "tierenv.daemon", *argv],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=BOUND_S,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == f"tierenv daemon: --log {tmp_path}: is a folder; name a file"


def test_controller_parameters_that_do_not_fit_the_host_change_nothing(
    host: SimulatedKernel, tmp_path: Path, capsys
) -> None:
    before = tree_state(host.path.parent)
    log = tmp_path / "log.jsonl"
    argv = with_journal(
        daemon_argv(host, tmp_path, "--controller", "static", "--param", "weights=[7,2,3]",
                    "--log", str(log)), tmp_path,
    )  # fmt: skip
    assert daemon_main(argv) == 2  # a usage error, not a run that failed
    assert "weights=[7, 2, 3] has 3 values but the host has 2" in capsys.readouterr().err
    assert tree_state(host.path.parent) == before
    assert not (tmp_path / "journal.json").exists() and not log.exists()


def test_a_binary_policy_sidecar_is_named(host: SimulatedKernel, tmp_path: Path, capsys) -> None:
    (tmp_path / "policy.onnx").write_bytes(b"\x08\x07\x12\x00")
    (tmp_path / "policy.json").write_bytes(b"\xff\xfe\x00binary")
    argv = with_journal(
        daemon_argv(host, tmp_path, "--policy", str(tmp_path / "policy.onnx")), tmp_path
    )
    assert daemon_main(argv) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'policy.json'}: not a UTF-8 text file (byte 0xff at offset 0)" in err


# -------------------------------------------------------------- journals the daemon never writes


def good_journal(host: SimulatedKernel) -> dict:
    return {
        "sysfs_root": str(host.path), "weights": {"0": 1, "1": 1}, "auto": None,
        "auto_name": None, "kdamond_index": None, "kdamond_reused": False,
        "target_pids": [], "daemon_pid": 1, "started_at": 0.0, "version": 2,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": {"0": 1.7, "1": 1}}, "weights: node 0 has weight 1.7"),
        ({"weights": {"0": 999, "1": 1}}, "weights: node 0 has weight 999"),
        ({"weights": {"0": True, "1": 1}}, "weights: node 0 has weight True"),
        ({"weights": {"x": 1}}, "weights: node 'x'"),
        ({"weights": {}}, "weights: empty"),
        ({"auto": "maybe"}, "auto: 'maybe'"),
        ({"auto_name": "../../x"}, "auto_name: '../../x'"),
        ({"kdamond_index": "x"}, "kdamond_index: 'x'"),
        ({"kdamond_index": -1}, "kdamond_index: -1"),
        ({"kdamond_reused": "yes"}, "kdamond_reused: 'yes'"),
        ({"target_pids": [1.5]}, "target_pids: [1.5]"),
        ({"pending_target_pids": "ab"}, "pending_target_pids: 'ab'"),
        ({"sysfs_root": 7}, "sysfs_root: 7"),
    ],
)
def test_a_journal_with_values_the_daemon_never_writes_is_corrupt(
    host: SimulatedKernel, tmp_path: Path, change: dict, field: str
) -> None:
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({**good_journal(host), **change}))
    with pytest.raises(CorruptJournalError, match=re.escape(field)):
        read_journal(path)
    logged: list[tuple[str, dict]] = []
    before = tree_state(host.path.parent)
    with pytest.raises(ValueError, match="nothing was restored from it"):
        recover(host.root, path, lambda event, **fields: logged.append((event, fields)))
    assert [event for event, _ in logged] == ["recovery"]  # never "recovered"
    assert logged[0][1]["restored"] is False
    assert not path.exists() and (tmp_path / "journal.json.corrupt-1").exists()
    assert tree_state(host.path.parent) == before


def test_a_journal_the_daemon_writes_still_reads(host: SimulatedKernel, tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    data = {**good_journal(host), "auto": True, "auto_name": "__auto_type", "kdamond_index": 0}
    data.update(target_pids=[4000, 4001], pending_target_pids=[4000], kdamond_staging=True)
    path.write_text(json.dumps(data))
    journal = read_journal(path)
    assert journal is not None and journal.weights == {0: 1, 1: 1} and journal.auto is True
    assert journal.target_pids == (4000, 4001) and journal.pending_target_pids == (4000,)
    version_1 = {**good_journal(host), "version": 1}
    path.write_text(json.dumps(version_1))  # no pending fields: their defaults
    assert read_journal(path).kdamond_staging is False


# --------------------------------------------------------------------------- the gym env


@pytest.mark.parametrize("action", ["ab", b"xy", [[1.0], [1.0, 2.0]], [object(), 1.0], {"a": 1}])
def test_actions_that_are_not_numbers_raise_action_error(action) -> None:
    with pytest.raises(ActionError, match=r"^action must be 2 numbers \(one per memory node\)"):
        check_action(action, 2)
    env = WeightedInterleaveEnv()
    env.reset(seed=0)
    with pytest.raises(ActionError):
        env.step(action)


def test_weight_errors_print_plain_numbers() -> None:
    env = WeightedInterleaveEnv()
    env.reset(seed=0)
    for weights, shown in (
        (np.array([np.nan, 1.0]), "nan"),
        ([np.float64(1.5), 1], "1.5"),
        (np.array([300, 1]), "300"),
    ):
        with pytest.raises(WeightError) as error:
            env.step_weights(weights)
        assert str(error.value).startswith(f"weight of node 0 is {shown};")
        with pytest.raises(WeightError) as error:
            WeightedInterleaveEnv(initial_weights=weights)
        assert str(error.value).startswith(f"weight of node 0 is {shown};")
        assert "np." not in str(error.value)


def test_the_discrete_grid_is_bounded_and_its_levels_are_integers() -> None:
    largest = 256  # 256^2 = MAX_GRID_POINTS on two nodes
    assert largest**2 == MAX_GRID_POINTS
    with pytest.raises(ValueError, match=r"levels 100000 on 2 nodes is a grid of 10,000,000,000"):
        check_levels(100_000, 2)  # once 22 GB and more before the kernel killed it
    with pytest.raises(ValueError, match=r"grid of 66,049 points; at most 65,536 .levels <= 256"):
        weight_grid(2, largest + 1)
    with pytest.raises(ValueError, match=r"levels 17 on 4 nodes .* \(levels <= 16 on 4 nodes\)"):
        WeightedInterleaveDiscreteEnv(scenario="caption-load-phases", levels=17)
    for bad in (2.5, 3.0, "5", True):
        with pytest.raises(ValueError, match="levels must be an integer"):
            WeightedInterleaveDiscreteEnv(levels=bad)
    assert WeightedInterleaveDiscreteEnv(levels=np.int64(3)).levels == 3


def test_a_binary_or_huge_sidecar_is_named_to_any_caller(tmp_path: Path) -> None:
    """Not only the daemon: compare's kind onnx (OnnxPolicy directly) names the file too, and
    a sidecar is never read whole when it is far larger than any sidecar."""
    import os

    from agents.controllers.base import ControllerError
    from agents.policies.onnx_policy import MAX_SIDECAR_BYTES, OnnxPolicy

    (tmp_path / "policy.onnx").write_bytes(b"\x08\x07\x12\x00")
    (tmp_path / "policy.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ControllerError, match=r"policy\.json: not a UTF-8 text file \(byte 0xff"):
        OnnxPolicy(tmp_path / "policy.onnx")
    with open(tmp_path / "policy.json", "wb") as handle:
        handle.truncate(MAX_SIDECAR_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ControllerError, match=r"sidecar is at most"):
        OnnxPolicy(tmp_path / "policy.onnx")
    os.remove(tmp_path / "policy.json")


@pytest.mark.parametrize("speed", [float("nan"), float("inf"), 0.0, 1e-300, 1e9])
def test_run_fakehost_called_directly_checks_its_speed(tmp_path: Path, speed: float) -> None:
    """The library entry point, not only the command line, refuses a speed whose control
    interval would overflow the clock's wait or outrun the host; nothing is created."""
    from tierenv.host.simulated_kernel import run_fakehost

    with pytest.raises(ValueError, match=r"speed .* must be in \[0\.001, 1000\]"):
        run_fakehost(tmp_path / "fake", "co-runner", speed=speed)
    assert not (tmp_path / "fake").exists()


def test_weight_errors_show_numpy_values_as_plain_numbers() -> None:
    import numpy as np

    from tierenv.memory.interleave import WeightError, check_weights

    with pytest.raises(WeightError, match=r"weight of node 1 is 300; the kernel accepts"):
        check_weights(np.array([3, 300]), 2)
    with pytest.raises(WeightError, match=r"weight of node 0 is 2\.5;"):
        check_weights([np.float64(2.5), 1], 2)


def test_a_journal_of_another_root_is_not_logged_as_a_recovery(tmp_path: Path) -> None:
    """Two daemons on different roots given one --journal: the second names the first (alive
    or gone) and logs no recovery, and the journal stays for its owner."""
    import os
    import subprocess
    import sys

    from tierenv.daemon.journal import Journal, recover, write_journal
    from tierenv.host.sysfs import SysfsRoot

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path = tmp_path / "journal.json"
    logged: list[str] = []
    write_journal(path, Journal(sysfs_root=str(tmp_path / "a"), weights={0: 1}, auto=None,
                                auto_name=None, daemon_pid=os.getpid()))  # fmt: skip
    with pytest.raises(ValueError, match=r"not .*/b \(daemon pid \d+, still running, uses it\)"):
        recover(SysfsRoot(tmp_path / "b"), path, lambda event, **_: logged.append(event))
    assert logged == [] and path.exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_journal(path, Journal(sysfs_root=str(tmp_path / "a"), weights={0: 1}, auto=None,
                                auto_name=None, daemon_pid=int(gone.stdout)))  # fmt: skip
    with pytest.raises(ValueError, match=r"is gone; recover it with that root"):
        recover(SysfsRoot(tmp_path / "b"), path, lambda event, **_: logged.append(event))
    assert logged == []
