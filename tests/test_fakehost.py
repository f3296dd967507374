"""``tierenv fakehost`` and ``tierenv daemon --fake-kernel`` as separate processes, the way a
user tries the daemon without root: weights reach the simulated host; SIGTERM restores; after
SIGKILL the next start restores from the journal before doing anything else.

Every process a test starts goes through the ``spawn`` fixture, which kills whatever is still
running at teardown, so a failing test leaves no daemon or fake host behind. Waits have
generous bounds (a hung process, not a slow one, fails them): nothing here is timed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

WI = Path("sys/kernel/mm/mempolicy/weighted_interleave")
NR_KDAMONDS = Path("sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds")


def tierenv(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    return subprocess.Popen([sys.executable, "-m", "tierenv", *args], text=True, env=env, **kwargs)


def weights(host: Path) -> list[int]:
    return [int((host / WI / f"node{k}").read_text()) for k in range(2)]


def wait_for(condition, timeout: float = 300.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


Spawn = Callable[..., subprocess.Popen]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """``spawn(*args, **popen_kwargs)`` starts ``tierenv ARGS``; all are killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str, **kwargs) -> subprocess.Popen:
        process = tierenv(*args, **kwargs)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def fakehost(tmp_path, spawn) -> Iterator[tuple[Path, list[str]]]:
    """A fake host (steady-single at 5x: one minute) and the daemon command it prints. At
    teardown its output must show no error: it reads the files the daemon writes, and a torn
    read used to crash it."""
    host = tmp_path / "host"
    process = spawn(
        "fakehost", str(host), "--scenario", "steady-single", "--speed", "5",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    command = None
    for line in process.stdout:
        if line.startswith("run: tierenv "):
            command = line.removeprefix("run: tierenv ").split()
            break
    assert command is not None, "fakehost did not print the daemon command"
    output: list[str] = []  # kept read, so a full pipe never blocks it
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    wait_for(lambda: (host / "proc/4000").is_dir(), what="the simulated app")
    yield host, command
    process.send_signal(signal.SIGTERM)
    # 0, or killed by the SIGTERM when it had just reached the scenario's end and was exiting.
    assert process.wait(timeout=300) in (0, -signal.SIGTERM)
    reader.join(timeout=300)
    errors = [line for line in output if "Traceback" in line or "error" in line.lower()]
    assert errors == [], "fakehost failed while the daemon ran:\n" + "".join(output[-20:])


@pytest.fixture(scope="module")
def policy_onnx(tmp_path_factory) -> Path:
    """A tiny exported PPO observing every host-observable feature."""
    from tests.test_host_end_to_end import train_and_export
    from tierenv.contracts.features import DEFAULT_GROUPS
    from tierenv.workload.scenario import load_scenario

    scenario = dataclasses.replace(load_scenario("steady-single"), duration_s=20.0)
    return train_and_export(tmp_path_factory.mktemp("runs"), scenario, list(DEFAULT_GROUPS))[1]


def daemon_args(host: Path, command: list[str], *extra: str) -> list[str]:
    base = [a for a in command if a != "kernel-auto" and a != "--controller"]
    return [*base, "--controller", "static", "--param", "weights=[1,3]", *extra]


def test_sigterm_restores_the_simulated_host(fakehost, spawn, tmp_path):
    host, command = fakehost
    log = tmp_path / "log.jsonl"
    daemon = spawn(*daemon_args(host, command, "--log", str(log)))
    wait_for(lambda: weights(host) == [1, 3], what="the daemon's weights")
    assert int((host / NR_KDAMONDS).read_text()) == 1
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=300) == 0
    assert weights(host) == [1, 1]
    assert int((host / NR_KDAMONDS).read_text()) == 0
    assert not (host / "journal.json").exists()
    stopped = json.loads(log.read_text().splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["reason"] == "SIGTERM"
    assert stopped["restored"] is True


def test_after_sigkill_the_next_start_restores_from_the_journal(fakehost, spawn, tmp_path):
    host, command = fakehost
    first = spawn(*daemon_args(host, command, "--log", str(tmp_path / "first.jsonl")))
    wait_for(lambda: weights(host) == [1, 3], what="the daemon's weights")
    first.kill()
    first.wait(timeout=300)
    assert (host / "journal.json").exists()
    assert weights(host) == [1, 3] and int((host / NR_KDAMONDS).read_text()) == 1

    log = tmp_path / "second.jsonl"
    second = spawn(*daemon_args(host, command, "--log", str(log), "--max-intervals", "2"))
    assert second.wait(timeout=300) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.index("recovered") < names.index("started")
    assert events[names.index("recovered")]["kdamond_removed"] is True
    assert weights(host) == [1, 1]
    assert int((host / NR_KDAMONDS).read_text()) == 0
    assert not (host / "journal.json").exists()


def test_the_daemon_process_never_imports_torch(fakehost, tmp_path, policy_onnx):
    """An exported policy runs with numpy and onnxruntime: the daemon process imports no
    torch (nor SB3), so a host needs neither at run time."""
    _, command = fakehost
    base = [a for a in command if a not in ("--controller", "kernel-auto")]
    args = [*base, "--policy", str(policy_onnx),
            "--max-intervals", "3", "--log", str(tmp_path / "log.jsonl")]  # fmt: skip
    code = (
        "import sys; from tierenv.cli import main; rc = main(sys.argv[1:]); "
        "heavy = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout
    decisions = [
        json.loads(line)
        for line in (tmp_path / "log.jsonl").read_text().splitlines()
        if '"decision"' in line
    ]
    assert len(decisions) == 3 and all(d["fallback"] is None for d in decisions)
