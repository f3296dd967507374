"""``tierenv daemon`` on the real kernel: a baseline controller and an exported policy change
the weights and dests over time, SIGTERM restores everything, and after a SIGKILL the next start
restores from the journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from guestlib import KDAMONDS, WI, Workload, share0, wait_for

# The co-runner scenario's nodes: the exported policy was trained on them (test_realkernel.py).
PROFILES = ("spr-8460y-ddr5-socket", "generic-cxl-x8")
STARTUP_S = 90  # python, numpy and the package import slowly on the emulated CPU


def table() -> tuple[str, str, str]:
    """auto, node0, node1 as the kernel shows them."""
    return tuple((WI / name).read_text().strip() for name in ("auto", "node0", "node1"))  # type: ignore[return-value]


def our_dests() -> list[int] | None:
    """The migrate_hot scheme's dest weights of kdamond 0 (the daemon's), None if absent."""
    if int((KDAMONDS / "nr_kdamonds").read_text()) == 0:
        return None
    schemes = KDAMONDS / "0/contexts/0/schemes"
    if not schemes.exists():
        return None
    for index in range(int((schemes / "nr_schemes").read_text())):
        scheme = schemes / str(index)
        if (scheme / "action").read_text().strip() == "migrate_hot":
            dests = scheme / "dests"
            return [
                int((dests / str(d) / "weight").read_text())
                for d in range(int((dests / "nr_dests").read_text()))
            ]
    return None


def kdamond_on() -> bool:
    count = int((KDAMONDS / "nr_kdamonds").read_text())
    return count > 0 and (KDAMONDS / "0/state").read_text().strip() == "on"


@dataclass
class DaemonRun:
    process: subprocess.Popen[str]
    log: Path
    journal: Path
    throughput: Path
    seen: list[tuple[tuple[str, str, str], list[int] | None]] = field(default_factory=list)

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def decisions(self) -> list[dict]:
        return [e for e in self.events() if e["event"] == "decision"]

    def wait_event(self, name: str, timeout: float = STARTUP_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e["event"] == name]
            if found:
                return found[-1]
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(
            f"no {name!r} event (daemon exit code {self.process.poll()}); log: "
            f"{self.events()[-5:]}; stderr: {self.stderr()}"
        )

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(running)"
        return self.process.stderr.read()[-3000:]

    def observe(self, seconds: float, throughput_step: float = 0.0) -> None:
        """Record (weights table, dests) once a second; optionally raise the app's reported
        throughput each time (a hill climber then keeps climbing)."""
        deadline = time.monotonic() + seconds
        value = float(self.throughput.read_text())
        while time.monotonic() < deadline and self.process.poll() is None:
            value += throughput_step
            self.throughput.write_text(f"{value}\n")
            self.seen.append((table(), our_dests()))
            time.sleep(1)


def host_config(tmp_path: Path, pid: int) -> tuple[Path, Path]:
    throughput = tmp_path / "throughput"
    throughput.write_text("10.0\n")
    config = tmp_path / "host.toml"
    nodes = "".join(f'[[nodes]]\nprofile = "{name}"\n\n' for name in PROFILES)
    app = f'[[apps]]\nname = "memtool"\npid = {pid}\nthroughput_file = "{throughput}"\n'
    config.write_text(nodes + app)
    return config, throughput


@pytest.fixture
def daemon(tmp_path: Path, workload) -> Iterator:
    """``daemon(*controller_args, workload=None, journal=None, extra=())``: start
    ``python -m tierenv daemon`` on /sys for a hot/cold memtool; killed at the end."""
    started: list[subprocess.Popen[str]] = []
    apps: dict[str, Workload] = {}

    def start(*controller: str, max_intervals: int | None = None, run: str = "a") -> DaemonRun:
        if "wl" not in apps:  # allocated under the boot's auto weights, 32 of 128 MiB hot
            apps["wl"] = workload("wi", 128, hot_mb=32)
        wl = apps["wl"]
        config, throughput = host_config(tmp_path, wl.pid)
        log, journal = tmp_path / f"log-{run}.jsonl", tmp_path / "journal.json"
        argv = [
            sys.executable, "-m", "tierenv", "daemon", "--sysfs-root", "/sys",
            "--host-config", str(config), "--interval", "1", "--journal", str(journal),
            "--log", str(log), "--status", str(tmp_path / "status.json"), *controller,
        ]  # fmt: skip
        if max_intervals is not None:
            argv += ["--max-intervals", str(max_intervals)]
        # TIERENV_ALLOW_REAL_SYSFS=1 comes from conftest (set only in the proven VM).
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ
        )
        started.append(process)
        return DaemonRun(process, log, journal, throughput)

    start.workload = lambda: apps["wl"]  # type: ignore[attr-defined]
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def assert_restored(run: DaemonRun, original: tuple[str, str, str]) -> None:
    assert table() == original, f"weights not restored: {table()} != {original}"
    assert int((KDAMONDS / "nr_kdamonds").read_text()) == 0, "our kdamond was left behind"
    assert not run.journal.exists(), "the journal is deleted after a clean restore"


def stop(run: DaemonRun) -> dict:
    run.process.send_signal(signal.SIGTERM)
    try:
        code = run.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the daemon did not stop within 60 s of SIGTERM") from None
    assert code == 0, f"exit code {code}: {run.stderr()}"
    stopped = run.wait_event("stopped", timeout=5)
    assert stopped["reason"] == "SIGTERM" and stopped["restored"] is True, stopped
    return stopped


def weights_seen(run: DaemonRun) -> list[tuple[str, str]]:
    """The distinct manual weight tables seen, in order."""
    out: list[tuple[str, str]] = []
    for (auto, w0, w1), _ in run.seen:
        if auto == "false" and (not out or out[-1] != (w0, w1)):
            out.append((w0, w1))
    return out


def check_dests_follow(run: DaemonRun) -> None:
    """Every weight table the daemon wrote also became our kdamond's dests (the daemon writes
    the weights, then commits the dests: a sample may fall between the two)."""
    matched = {(str(d[0]), str(d[1])) for (_, *_w), d in run.seen if d and len(d) == 2}
    missing = [w for w in weights_seen(run) if w not in matched]
    assert not missing, f"weights never seen as dests: {missing}; samples: {run.seen}"
    (auto, w0, w1), dests = run.seen[-1]
    assert dests == [int(w0), int(w1)], f"last sample: weights {w0}:{w1}, dests {dests}"


def test_baseline_controller_moves_weights_and_sigterm_restores(daemon) -> None:
    original = table()
    assert original[0] == "true"
    # Caption hill-climbs on the app's throughput; rising throughput keeps it stepping
    # toward the slow node, one step per 2-interval epoch.
    run = daemon("--controller", "caption", "--param", "epoch_intervals=2",
                 "--param", "settle_intervals=0", "--param", "max_step=0.1")  # fmt: skip
    started = run.wait_event("started")
    assert started["kdamond"] == 0 and started["auto"] is True
    run.observe(14, throughput_step=1.0)
    decisions = run.decisions()
    assert decisions and all(d["error"] is None for d in decisions), decisions[-3:]
    seen = weights_seen(run)
    assert len(seen) >= 2, f"caption should have moved the weights more than once: {run.seen}"
    shares = [int(w0) / (int(w0) + int(w1)) for w0, w1 in seen]
    assert shares == sorted(shares, reverse=True), f"not climbing toward node1: {seen}"
    check_dests_follow(run)
    assert kdamond_on()
    stop(run)
    assert_restored(run, original)


def test_exported_policy_drives_the_weights(daemon) -> None:
    policy = os.environ.get("TIERENV_VM_POLICY")
    assert policy and Path(policy).exists(), (
        f"no exported policy ({os.environ.get('TIERENV_VM_POLICY_ERROR', 'not given')})"
    )
    original = table()
    run = daemon("--policy", policy)
    run.wait_event("started")
    run.observe(10)
    decisions = run.decisions()
    assert len(decisions) >= 3, decisions
    bad = [d for d in decisions if d["error"] or d["fallback"]]
    assert not bad, f"decisions fell back or failed: {bad[:2]}"
    asked = [tuple(d["asked"]) for d in decisions]
    assert any(a != (int(original[1]), int(original[2])) for a in asked), asked
    assert weights_seen(run), f"the policy's weights never reached the kernel: {run.seen}"
    last = decisions[-1]["applied"]
    assert table()[1:] == (str(last[0]), str(last[1])) or run.seen[-1][0][1:] != table()[1:]
    check_dests_follow(run)
    stop(run)
    assert_restored(run, original)


def test_after_sigkill_the_next_start_restores_from_the_journal(daemon) -> None:
    original = table()
    run = daemon("--controller", "static", "--param", "weights=[1,3]", run="killed")
    run.wait_event("started")
    history = wait_for(lambda: float(table() == ("false", "1", "3")), 1.0, 0, timeout=30)[1]
    assert table() == ("false", "1", "3"), history
    # The daemon's kdamond moves the hot pages to the new 1:3 split (allocated at auto 21:10).
    wl = daemon.workload()
    hot, shares = wait_for(lambda: share0(wl.hot()), 0.25, 0.05)
    assert hot == pytest.approx(0.25, abs=0.05), shares
    run.process.kill()  # SIGKILL: no teardown
    run.process.wait()
    assert table() == ("false", "1", "3") and kdamond_on() and run.journal.exists()
    journal = json.loads(run.journal.read_text())
    assert journal["weights"] == {"0": int(original[1]), "1": int(original[2])}

    # Without recovery this start would take 1:3 as the original and put 1:3 back at exit.
    again = daemon("--controller", "static", "--param", "weights=[2,1]", max_intervals=2,
                   run="next")  # fmt: skip
    assert again.process.wait(timeout=STARTUP_S + 30) == 0, again.stderr()
    events = [e["event"] for e in again.events()]
    assert events[:2] == ["recovery", "recovered"], events
    recovered = again.events()[1]
    assert recovered["kdamond_removed"] is True, recovered
    assert_restored(again, original)
