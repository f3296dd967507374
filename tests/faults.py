"""Fault injection: SIGKILL the daemon at random moments across application churn on a
``tierenv fakehost`` tree and count how often the next start puts everything back.

    python -m tests.faults --kills 50 --out results/faults.md

Each trial starts ``tierenvd`` (``python -m tierenv.daemon``, static weights) against a fake
host whose applications keep starting and exiting (so our kdamond's targets change every few
intervals, and whenever none runs the kernel stops the kdamond and the daemon stages it
again), waits until the daemon has begun writing (its journal exists), sleeps a random time
and SIGKILLs it. Then a second daemon starts, restores from the journal, runs a few intervals
and stops cleanly. The trial counts as *restored* when the tree's weighted-interleave files
and the whole DAMON kdamonds tree are then exactly as they were before the first daemon
started and no journal is left. The fake host itself must survive every trial (it reads the
files the daemon writes, at the same time).

Every process started here is killed when the harness ends, however it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WI = Path("kernel/mm/mempolicy/weighted_interleave")
KDAMONDS = Path("kernel/mm/damon/admin/kdamonds")
SPEED = 5.0  # simulated seconds per second: a control interval is 0.2 s
WEIGHTS = "[7,2]"
KILL_WINDOW_S = 3.0  # the kill lands this long at most after the journal appears
RESTART_INTERVALS = 3
APPS = 100  # churn applications: 400 simulated seconds (80 s) of churn per fake host
BOUND_S = 300.0  # a hung process, not a slow one, exceeds this


def churn_scenario(apps: int = APPS) -> str:
    """A scenario whose applications overlap in turn (app k runs from 1 + 4k for 6 s), with
    every fifth one left out, so the live set changes every two simulated seconds and
    regularly empties for 2 s (the kernel then stops the kdamond)."""
    lines = [
        'name = "fault-churn"',
        'description = "Applications starting and exiting all the time (tests/faults.py)."',
        f"duration_s = {4 * apps + 10}",
        "control_interval_s = 1.0",
        'page_size = "2 MiB"',
        "",
        '[[nodes]]\nprofile = "spr-8460y-ddr5-socket"\ncapacity = "256 GiB"\n',
        '[[nodes]]\nprofile = "generic-cxl-x8"\ncapacity = "128 GiB"\n',
    ]
    for k in range(apps):
        if k % 5 == 4:
            continue
        lines += [
            "[[apps]]",
            f'name = "churn-{k}"',
            'working_set = "256 MiB"',
            "mlp = 64",
            "think_ns = 10",
            "read_fraction = 0.67",
            f"start_s = {1 + 4 * k}",
            f"stop_s = {7 + 4 * k}",
            "[apps.distribution]",
            'kind = "uniform"',
            "",
        ]
    return "\n".join(lines)


def tree_state(host: Path) -> dict[str, str]:
    """What must be restored: every weighted-interleave file and the whole kdamonds tree."""
    state = {}
    for top in (WI, KDAMONDS):
        for path in sorted((host / "sys" / top).rglob("*")):
            if path.is_file():
                state[str(path.relative_to(host / "sys"))] = path.read_text()
    return state


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TIERENV_ALLOW_REAL_SYSFS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class Processes:
    """Starts processes and kills every one still running on :meth:`stop_all`."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        process = subprocess.Popen(argv, cwd=REPO, env=_env(), text=True, **kwargs)  # type: ignore[call-overload]
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()


@dataclass
class FakeHost:
    directory: Path
    process: subprocess.Popen[str]
    baseline: dict[str, str]
    output: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process.poll() is None

    def daemon_argv(self, log: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "tierenv.daemon", "--fake-kernel",
            "--sysfs-root", str(self.directory / "sys"),
            "--host-config", str(self.directory / "run" / "host.toml"),
            "--page-nodes", "numa_maps", "--journal", str(self.directory / "journal.json"),
            "--interval", f"{1 / SPEED:g}", "--controller", "static",
            "--param", f"weights={WEIGHTS}", "--log", str(log), *extra,
        ]  # fmt: skip


def wait_until(condition: Callable[[], bool], what: str, poll_s: float = 0.002) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {BOUND_S:.0f} s")
        time.sleep(poll_s)


def start_fakehost(processes: Processes, work: Path, index: int, scenario: Path) -> FakeHost:
    directory = work / f"host-{index}"
    process = processes.start(
        [sys.executable, "-m", "tierenv", "fakehost", str(directory), "--scenario", str(scenario),
         "--speed", f"{SPEED:g}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    host = FakeHost(directory, process, {})

    def drain() -> None:  # keep its pipe empty; the last lines explain a crash
        assert process.stdout is not None
        for line in process.stdout:
            host.output = [*host.output[-20:], line.rstrip()]

    threading.Thread(target=drain, daemon=True).start()
    wait_until(lambda: (directory / "run" / "host.toml").is_file() or not host.alive(), "fakehost")
    if not host.alive():
        raise RuntimeError("fakehost exited at start:\n" + "\n".join(host.output))
    host.baseline = tree_state(directory)
    return host


@dataclass
class Trial:
    """One kill: when, what the killed daemon had done, and whether the restart restored."""

    index: int
    host: str
    delay_s: float
    journaled: bool = False
    started: bool = False
    decisions: int = 0
    target_changes: int = 0
    restart_code: int | None = None
    restart_attempts: int = 0
    restored: bool = False
    differences: list[str] = field(default_factory=list)
    note: str = ""


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # the line being written at the kill
            events.append(json.loads(line))
    return events


def run_trial(processes: Processes, host: FakeHost, index: int, rng: random.Random) -> Trial:
    logs = host.directory / "logs"
    logs.mkdir(exist_ok=True)
    journal = host.directory / "journal.json"
    trial = Trial(index, host.directory.name, round(rng.uniform(0.0, KILL_WINDOW_S), 3))
    first_log = logs / f"{index}-killed.jsonl"
    refused = ended = 0
    for _attempt in range(20):
        first = processes.start(host.daemon_argv(first_log), stderr=subprocess.DEVNULL)
        wait_until(lambda: journal.exists() or first.poll() is not None, "the journal")  # noqa: B023
        if not journal.exists():  # it refuses to start while no application runs
            refused += 1
            continue
        time.sleep(trial.delay_s)
        if first.poll() is None:
            break
        # It ended on its own before the kill (its applications all exited while it started
        # its kdamond, which churn makes likely on a slow machine) and restored what it had
        # changed: not a kill; try again so that every trial is one.
        ended += 1
    else:
        raise RuntimeError("the daemon never started: is the fake host running apps?")
    trial.note = "; ".join(
        note
        for count, note in (
            (refused, f"first start refused {refused}x (no application running)"),
            (ended, f"first daemon ended on its own before the kill {ended}x (retried)"),
        )
        if count
    )
    first.kill()
    first.wait()
    trial.journaled = journal.exists()
    events = read_log(first_log)
    trial.started = any(e["event"] == "started" for e in events)
    trial.decisions = sum(e["event"] == "decision" for e in events)
    notes = [e.get("kdamond") or "" for e in events if e["event"] == "decision"]
    trial.target_changes = sum(bool(n) and not n.startswith("could not") for n in notes)

    second_log = logs / f"{index}-restart.jsonl"
    for attempt in range(20):
        trial.restart_attempts = attempt + 1
        second = processes.start(
            host.daemon_argv(second_log, "--max-intervals", str(RESTART_INTERVALS)),
            stderr=subprocess.PIPE,
        )
        _, err = second.communicate(timeout=BOUND_S)
        trial.restart_code = second.returncode
        if second.returncode == 0:
            break
        errors = [e["message"] for e in read_log(second_log) if e["event"] == "error"]
        if not any("none of the managed processes" in message for message in errors):
            trial.note = (errors or err.strip().splitlines() or ["restart failed"])[-1]
            break
        time.sleep(0.05)  # no application right now; the journal was restored already
    after = tree_state(host.directory)
    trial.differences = differences(host.baseline, after)
    trial.restored = not trial.differences and not journal.exists() and trial.restart_code == 0
    if journal.exists():
        trial.differences.append("journal.json left")
    return trial


@contextmanager
def harness() -> Iterator[Processes]:
    processes = Processes()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        yield processes
    finally:
        processes.stop_all()
        signal.signal(signal.SIGTERM, previous)


def run_faults(
    kills: int, seed: int = 0, work: Path | None = None, log: Callable[[str], None] = print
) -> tuple[list[Trial], int]:
    """Run ``kills`` trials; returns them and the number of fake hosts that crashed."""
    rng = random.Random(seed)
    owned = work is None
    if work is None:  # tmpfs, like sysfs, when there is one: the trees are rename-heavy
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        work = Path(tempfile.mkdtemp(prefix="tierenv-faults-", dir=where))
    work.mkdir(parents=True, exist_ok=True)
    scenario = work / "fault-churn.toml"
    scenario.write_text(churn_scenario())
    trials: list[Trial] = []
    crashes = 0
    try:
        with harness() as processes:
            host, hosts = None, 0
            while len(trials) < kills:
                if host is None or not host.alive():
                    if host is not None and host.process.returncode != 0:
                        crashes += 1
                        log("fakehost crashed:\n" + "\n".join(host.output[-5:]))
                    host = start_fakehost(processes, work, hosts, scenario)
                    hosts += 1
                trial = run_trial(processes, host, len(trials) + 1, rng)
                if not host.alive() and host.process.returncode == 0:
                    continue  # the scenario ended under the trial: churn stopped, run it again
                trials.append(trial)
                log(
                    f"kill {trial.index:3d}: {trial.delay_s:5.2f} s after the journal, "
                    f"{trial.decisions:3d} decisions, {trial.target_changes:2d} target changes: "
                    + ("restored" if trial.restored else f"NOT restored {trial.differences[:3]}")
                )
            if host is not None:
                host.process.send_signal(signal.SIGTERM)
                # 0, or -SIGTERM when it was already exiting at the scenario's end
                if host.process.wait(timeout=BOUND_S) not in (0, -signal.SIGTERM):
                    crashes += 1
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)
    return trials, crashes


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"Linux {platform.release()}"
    )


def render(trials: list[Trial], crashes: int, command: str, seconds: float) -> str:
    restored = sum(t.restored for t in trials)
    changes = sum(t.target_changes > 0 for t in trials)
    lines = [
        "# Fault injection: SIGKILL of the daemon across application churn",
        "",
        f"**{restored}/{len(trials)} restored** (tree weights, auto switch, kdamonds and dests "
        "exactly as before the first daemon started, no journal left); fake host crashes: "
        f"{crashes}.",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min). Machine: {machine()}, shared with "
        "other work.",
        "",
        "Each kill: `tierenvd --controller static --param 'weights=[7,2]'` against `tierenv "
        f"fakehost --speed {SPEED:g}` running a churn scenario (applications start and exit "
        "every two simulated seconds (0.4 s), and regularly none runs, so our kdamond's targets "
        "change and the kernel stops it), SIGKILL a random time (uniform, 0 to "
        f"{KILL_WINDOW_S:g} s) after the daemon's journal appears, then a second daemon "
        f"restores, runs {RESTART_INTERVALS} intervals and stops. {changes} of the kills came "
        "after the killed daemon had changed its kdamond's targets at least once. "
        "'Decisions' and 'target changes' are what the killed daemon logged; 'restart "
        "attempts' > 1 means no application ran when it restarted (the daemon then restores "
        "and refuses to start, and is started again).",
        "",
        "| kill | fake host | after journal (s) | started | decisions | target changes "
        "| restart exit | restart attempts | restored | differences |",
        "|---:|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for t in trials:
        lines.append(
            f"| {t.index} | {t.host} | {t.delay_s:.2f} | {'yes' if t.started else 'no'} "
            f"| {t.decisions} | {t.target_changes} | {t.restart_code} | {t.restart_attempts} "
            f"| {'yes' if t.restored else '**no**'} | {', '.join(t.differences[:3]) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--kills", type=int, default=50, help="number of SIGKILLs (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument("--work", type=Path, help="keep the trees and logs here (default: tmp)")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error(f"--kills must be at least 1, got {args.kills}")
    command = "python -m tests.faults " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    trials, crashes = run_faults(args.kills, args.seed, args.work)
    table = render(trials, crashes, command.strip(), time.monotonic() - started)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    restored = sum(t.restored for t in trials)
    print(f"{restored}/{len(trials)} restored; fake host crashes: {crashes}")
    return 0 if restored == len(trials) and crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
