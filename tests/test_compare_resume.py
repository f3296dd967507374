"""``tierenv compare`` under kills (issue 19 item 5): the results folder is replaced whole or
not at all, a lost worker is named in one line, and a rerun resumes from the kept tasks to
exactly the numbers of an uninterrupted run, but never from tasks of another config or code.

Kills are injected at fixed points (after the k-th kept task, after the first results file),
never timed, and every process a test starts is ended by the test."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import experiments.compare.checkpoint as checkpoint
import experiments.compare.folders as folders
import experiments.compare.report as report
import experiments.compare.runner as runner
from experiments.compare.checkpoint import Checkpoint, partial_dir, source_digest
from experiments.compare.command import compare_to_folder
from experiments.compare.config import config_from_dict
from experiments.compare.folders import FolderError, replaced_folder
from experiments.compare.report import is_results_file, write_results
from experiments.compare.runner import WorkerLostError, run_compare
from tierenv.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "tierenv" / "workload" / "scenarios"
FORK_ONLY = pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork",
    reason="the injected worker death is patched into this process and reaches forked workers",
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> str:
    """co-runner in 12 s (12 steps), the second application from 4 s to 8 s."""
    text = (SHIPPED / "co-runner.toml").read_text()
    text = text.replace('name = "co-runner"', 'name = "tiny-co-runner"')
    text = text.replace("duration_s = 180", "duration_s = 12")
    text = text.replace("start_s = 60", "start_s = 4").replace("stop_s = 120", "stop_s = 8")
    path = tmp_path_factory.mktemp("scenarios") / "tiny-co-runner.toml"
    path.write_text(text)
    return str(path)


def config_data(scenario: str, **changes: Any) -> dict[str, Any]:
    """10 tasks: a 3-point static grid and kernel-auto on 2 seeds, and the upper bound of
    each seed's run."""
    data: dict[str, Any] = {
        "name": "tiny",
        "scenarios": [scenario],
        "seeds": 2,
        "policies": [
            {"name": "best", "kind": "static-best", "levels": 2},
            {"name": "auto", "kind": "kernel-auto"},
        ],
        "upper_bound": True,
    }
    data.update(changes)
    return data


N_TASKS = 10


@pytest.fixture(autouse=True)
def pinned_code_version(monkeypatch) -> None:
    """Others edit this checkout while tests run: resuming must not depend on that."""
    monkeypatch.setattr(checkpoint, "code_version", lambda: "test")


@pytest.fixture(scope="module")
def reference(scenario, tmp_path_factory) -> Path:
    """The results of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "tiny"
    config = config_from_dict(config_data(scenario), source="tiny.yaml")
    compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    return out


def outputs(out: Path) -> dict[str, Any]:
    """What a run decides, comparably: the tables without wall times, the steps' bytes."""
    return {
        "files": sorted(p.name for p in out.iterdir()),
        "episodes": pd.read_csv(out / "episodes.csv").drop(columns="wall_s"),
        "sweep": pd.read_csv(out / "static_sweep.csv").drop(columns="wall_s"),
        "steps": (out / "steps.csv.gz").read_bytes(),
        "config": (out / "config.yaml").read_text(),
    }


def assert_same_outputs(out: Path, expected: Path) -> None:
    got, want = outputs(out), outputs(expected)
    assert got["files"] == want["files"]
    pd.testing.assert_frame_equal(got["episodes"], want["episodes"], check_exact=True)
    pd.testing.assert_frame_equal(got["sweep"], want["sweep"], check_exact=True)
    assert got["steps"] == want["steps"]
    assert got["config"] == want["config"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def hidden_siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith("."))


class Counting:
    """``runner.run_task`` counting the tasks it runs (inline: in this process)."""

    def __init__(self) -> None:
        self.real = runner.run_task
        self.ran: list[Any] = []

    def __call__(self, task: Any) -> Any:
        self.ran.append(task)
        return self.real(task)


class InjectedError(Exception):
    pass


def interrupt_after(monkeypatch, count: int) -> None:
    """Stop a run (as a kill would, minus the kill) once ``count`` tasks are kept."""
    save = Checkpoint.save
    saved = []

    def save_then_stop(self: Checkpoint, task: Any, result: Any) -> None:
        save(self, task, result)
        saved.append(task)
        if len(saved) == count:
            raise InjectedError

    monkeypatch.setattr(Checkpoint, "save", save_then_stop)


# --- (a) the results folder is replaced whole or not at all ---------------------------------


def test_a_failure_while_writing_leaves_the_previous_results_whole(
    scenario, reference, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "tiny"
    previous = run_compare(
        config_from_dict(config_data(scenario, seeds=[7]), source="tiny.yaml"),
        workers=1,
        show_progress=False,
    )
    write_results(previous, out, command="previous")
    before = snapshot(out)
    results = run_compare(
        config_from_dict(config_data(scenario), source="tiny.yaml"), workers=1, show_progress=False
    )
    write_csv = report._write_csv

    def write_one_then_fail(frame: pd.DataFrame, path: Path) -> None:
        write_csv(frame, path)
        raise InjectedError  # episodes.csv is written, steps.csv.gz is not

    monkeypatch.setattr(report, "_write_csv", write_one_then_fail)
    with pytest.raises(InjectedError):
        write_results(results, out, command="new")
    assert snapshot(out) == before  # not the new episodes beside the previous steps
    assert hidden_siblings(out) == []
    monkeypatch.undo()
    write_results(results, out, command="new")
    assert_same_outputs(out, reference)


def test_the_folder_is_replaced_whole_and_foreign_files_are_refused(
    scenario, reference, tmp_path
) -> None:
    out, logs = tmp_path / "tiny", tmp_path / "logs"
    out.mkdir()
    (out / "weights_gone-scenario.png").write_bytes(b"a plot of an earlier config")
    (out / ".episodes.csv.x1y2z3").write_text("an atomic write cut short")
    results = run_compare(
        config_from_dict(config_data(scenario, upper_bound=False), source="tiny.yaml"),
        workers=1,
        show_progress=False,
    )
    write_results(results, out, command="test", tensorboard_dir=logs)
    assert not (out / "weights_gone-scenario.png").exists()  # no stale plots stay behind
    assert all(is_results_file(Path(p.name), False) for p in out.iterdir())
    assert len(list(logs.rglob("events.out.tfevents.*"))) == 2 * 2  # policies x seeds
    # Again: the logs are replaced, not appended to (one event file per run).
    write_results(results, out, command="test", tensorboard_dir=logs)
    assert len(list(logs.rglob("events.out.tfevents.*"))) == 2 * 2

    (out / "notes.md").write_text("mine")
    with pytest.raises(FolderError, match=r"tiny: the results folder .* \(notes\.md\)"):
        write_results(results, out, command="test")
    assert (out / "notes.md").read_text() == "mine"
    (out / "notes.md").unlink()
    (logs / "model.zip").write_text("a training run")
    with pytest.raises(FolderError, match=r"logs: the TensorBoard folder .*model\.zip"):
        write_results(results, out, command="test", tensorboard_dir=logs)
    # compare_to_folder refuses before running anything
    config = config_from_dict(config_data(scenario), source="tiny.yaml")
    # A link to a results folder stays a link; the folder it names is replaced.
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    write_results(results, link, command="test")
    write_results(results, link, command="test")
    assert link.is_symlink() and (tmp_path / "elsewhere" / "episodes.csv").is_file()
    assert hidden_siblings(link) == []
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FolderError, match="must be a folder"):
        compare_to_folder(config, tmp_path / "a-file", command="x", show_progress=False)
    assert not partial_dir(tmp_path / "a-file").exists()


def test_without_an_exchange_two_renames_and_the_recovery_after_a_kill(
    tmp_path, monkeypatch
) -> None:
    def owned(_: Any, is_dir: bool) -> bool:
        return not is_dir

    out = tmp_path / "out"
    monkeypatch.setattr(folders, "exchange", lambda a, b: False)  # e.g. not Linux
    for text in ("first", "second"):
        with replaced_folder(out, owned, "folder") as stage:
            (stage / "file").write_text(text)
        assert (out / "file").read_text() == text
    assert hidden_siblings(out) == []
    # A run killed between the two renames left the previous folder aside and its staging
    # folder behind; the next run puts the previous folder back before anything else.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    out.rename(tmp_path / f".out.old-{pid}")
    (tmp_path / f".out.writing-{pid}").mkdir()
    with pytest.raises(InjectedError), replaced_folder(out, owned, "folder"):
        assert (out / "file").read_text() == "second"
        raise InjectedError
    assert (out / "file").read_text() == "second"
    assert hidden_siblings(out) == []


# --- (c) resume after a kill, to the numbers of an uninterrupted run -----------------------

KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path
import experiments.compare.checkpoint as checkpoint
import experiments.compare.report as report
from experiments.compare.command import compare_to_folder
from experiments.compare.config import config_from_dict

checkpoint.code_version = lambda: "test"  # as the test process pins it
data, out, mode = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if mode.startswith("after-saves="):
    save, count, saved = checkpoint.Checkpoint.save, int(mode.split("=")[1]), []
    def save_then_die(self, task, result):
        save(self, task, result)
        saved.append(task)
        if len(saved) == count:
            die()
    checkpoint.Checkpoint.save = save_then_die
elif mode == "while-writing":
    write_csv = report._write_csv
    def write_then_die(frame, path):
        write_csv(frame, path)
        die()
    report._write_csv = write_then_die
config = config_from_dict(data, source="tiny.yaml")
compare_to_folder(config, out, command="test", workers=1, show_progress=False)
"""


def run_killed(data: dict[str, Any], out: Path, mode: str) -> tuple[int, str]:
    """Run compare in a child that SIGKILLs itself at ``mode``'s point; (returncode, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, json.dumps(data), str(out), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, ended whole below
    )
    try:
        _, err = process.communicate(timeout=600)  # a safety net, not a measurement
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, err


def test_a_killed_run_keeps_the_previous_results_and_resumes_exactly(
    scenario, reference, tmp_path, capsys
) -> None:
    out = tmp_path / "tiny"
    previous = config_from_dict(config_data(scenario, seeds=[7]), source="tiny.yaml")
    compare_to_folder(previous, out, command="previous", workers=1, show_progress=False)
    before = snapshot(out)
    data = config_data(scenario)

    code, err = run_killed(data, out, "after-saves=3")
    assert code == -signal.SIGKILL, err
    assert snapshot(out) == before
    assert len(list(partial_dir(out).glob("*.npz"))) == 3

    code, err = run_killed(data, out, "while-writing")  # runs the other 6, killed writing
    assert code == -signal.SIGKILL, err
    assert f"resuming: 3 of {N_TASKS} tasks" in err
    assert snapshot(out) == before  # the new episodes.csv went to the staging folder
    assert len(list(partial_dir(out).glob("*.npz"))) == N_TASKS

    config = config_from_dict(data, source="tiny.yaml")
    counting = Counting()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "run_task", counting)
        compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    assert counting.ran == []
    assert f"resuming: {N_TASKS} of {N_TASKS} tasks" in capsys.readouterr().err
    assert_same_outputs(out, reference)
    assert hidden_siblings(out) == []  # checkpoint and the killed run's staging are gone


def test_an_interrupted_run_reruns_only_the_unfinished_tasks(
    scenario, reference, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "tiny"
    config = config_from_dict(config_data(scenario), source="tiny.yaml")
    interrupt_after(monkeypatch, 4)
    with pytest.raises(InjectedError):
        compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint, "code_version", lambda: "test")
    counting = Counting()
    monkeypatch.setattr(runner, "run_task", counting)
    compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    assert len(counting.ran) == N_TASKS - 4
    assert f"resuming: 4 of {N_TASKS} tasks" in capsys.readouterr().err
    assert_same_outputs(out, reference)


# --- a changed config or code never reuses kept tasks ----------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"env": {"migration_cost_per_gib": 0.5}}, "env"),
        ({"seeds": [0, 1, 2]}, "seeds"),
        ({"policies": [{"name": "auto", "kind": "kernel-auto"}]}, "policies"),
        ("code", "code"),
        ("scenario file", "scenarios"),
        ("fresh", None),
    ],
)
def test_a_changed_run_starts_fresh(
    scenario, tmp_path, monkeypatch, capsys, change: Any, named: str | None
) -> None:
    out = tmp_path / "tiny"
    local = tmp_path / "tiny-co-runner.toml"  # a copy this test may change
    local.write_text(Path(scenario).read_text())
    interrupt_after(monkeypatch, 2)
    config = config_from_dict(config_data(str(local)), source="tiny.yaml")
    with pytest.raises(InjectedError):
        compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint, "code_version", lambda: "test")
    capsys.readouterr()

    fresh = change == "fresh"
    if change == "code":
        monkeypatch.setattr(checkpoint, "code_version", lambda: "changed")
    elif change == "scenario file":
        local.write_text(local.read_text().replace("duration_s = 12", "duration_s = 11"))
    elif isinstance(change, dict):
        config = config_from_dict(config_data(str(local), **change), source="tiny.yaml")
    counting = Counting()
    monkeypatch.setattr(runner, "run_task", counting)
    results = run_compare(
        config, workers=1, show_progress=False, checkpoint=Checkpoint(partial_dir(out), fresh)
    )
    assert len(counting.ran) == len(runner.plan(config))  # every task ran again
    err = capsys.readouterr().err
    assert "resuming" not in err
    if named is not None:
        assert f"from a different run (changed: {named}); discarding them" in err
    assert len(results.episodes) == len(config.seeds) * len(config.policies)


def test_kept_tasks_are_only_numbers_and_damaged_ones_run_again(
    scenario, reference, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "tiny"
    config = config_from_dict(config_data(scenario), source="tiny.yaml")
    interrupt_after(monkeypatch, N_TASKS)
    with pytest.raises(InjectedError):
        compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint, "code_version", lambda: "test")
    kept = sorted(partial_dir(out).glob("*.npz"))
    assert len(kept) == N_TASKS
    kept[0].write_bytes(b"cut short")
    with np.load(kept[1]) as data:  # the same task, but as an object that needs unpickling
        arrays = dict(data)
    arrays["task"] = np.array([str(arrays["task"])], dtype=object)
    np.savez(kept[1], **arrays)
    with np.load(kept[2]) as data:  # another task's numbers under this task's name
        arrays = dict(data)
    arrays["task"] = np.array("Trial(something else)")
    np.savez(kept[2], **arrays)
    counting = Counting()
    monkeypatch.setattr(runner, "run_task", counting)
    compare_to_folder(config, out, command="test", workers=1, show_progress=False)
    assert len(counting.ran) == 3
    assert_same_outputs(out, reference)


def test_the_code_digest_follows_every_code_and_data_file(tmp_path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "profile.toml").write_text("peak = 1\n")
    first = source_digest([tmp_path / "pkg"])
    (tmp_path / "pkg" / "__pycache__" / "a.cpython.pyc").write_bytes(b"cache")
    assert source_digest([tmp_path / "pkg"]) == first
    (tmp_path / "pkg" / "profile.toml").write_text("peak = 2\n")
    assert source_digest([tmp_path / "pkg"]) != first


def test_the_files_a_policy_loads_are_part_of_the_fingerprint(scenario, tmp_path) -> None:
    model = tmp_path / "policy.onnx"
    model.write_bytes(b"graph")
    (tmp_path / "policy.json").write_text("{}")  # its sidecar
    config = config_from_dict(config_data(scenario), source="tiny.yaml")
    policy = runner.PolicySpec("learned", "onnx", {"path": str(model)})
    tasks = [runner.Trial(scenario, policy, 0)]
    first = checkpoint.fingerprint(config, tasks)
    assert checkpoint.fingerprint(config, tasks) == first
    (tmp_path / "policy.json").write_text('{"retrained": true}')
    changed = checkpoint.fingerprint(config, tasks)
    assert [key for key in first if first[key] != changed[key]] == ["policy files"]
    run = tmp_path / "run"  # a training run folder
    (run / "checkpoints").mkdir(parents=True)
    tasks = [runner.Trial(scenario, runner.PolicySpec("ppo", "sb3", {"path": str(run)}), 0)]
    first = checkpoint.fingerprint(config, tasks)
    (run / "checkpoints" / "model.zip").write_bytes(b"weights")
    assert checkpoint.fingerprint(config, tasks)["policy files"] != first["policy files"]


# --- (b) a lost worker: one line naming it, finished tasks kept ------------------------------


def die_on_auto_seed_1(task: Any) -> Any:
    """``run_task`` in a worker that the out-of-memory killer ends under one trial."""
    if isinstance(task, runner.Trial) and task.policy.name == "auto" and task.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return REAL_RUN_TASK(task)


REAL_RUN_TASK = runner.run_task


@FORK_ONLY
def test_a_killed_worker_is_named_and_the_rest_is_kept(
    scenario, reference, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "tiny"
    config = config_from_dict(config_data(scenario), source="tiny.yaml")
    monkeypatch.setattr(runner, "run_task", die_on_auto_seed_1)
    with pytest.raises(WorkerLostError) as caught:
        run_compare(config, workers=2, show_progress=False, checkpoint=Checkpoint(partial_dir(out)))
    message = str(caught.value)
    assert "\n" not in message
    assert "killed by SIGKILL" in message and "out-of-memory killer" in message
    assert f"while running auto on {scenario} seed 1" in message
    assert f"tasks that finished are kept in {partial_dir(out)}" in message
    assert "run the same command again to resume" in message
    kept = len(list(partial_dir(out).glob("*.npz")))
    assert f"the {kept} of {N_TASKS} tasks" in message
    assert 0 < kept < N_TASKS

    monkeypatch.setattr(runner, "run_task", REAL_RUN_TASK)
    capsys.readouterr()
    compare_to_folder(config, out, command="test", workers=2, show_progress=False)
    assert f"resuming: {kept} of {N_TASKS} tasks" in capsys.readouterr().err
    assert_same_outputs(out, reference)


@FORK_ONLY
def test_the_command_line_reports_a_killed_worker_in_one_line(
    scenario, tmp_path, monkeypatch, capsys
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(config_data(scenario)))  # JSON is YAML
    monkeypatch.setattr(runner, "run_task", die_on_auto_seed_1)
    code = main(
        [
            "compare",
            str(config),
            "--workers",
            "2",
            "--quiet",
            "--no-tensorboard",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tierenv compare: error: worker process")
    assert f"auto on {scenario} seed 1" in lines[0]
    assert not (tmp_path / "out").exists()
