"""End to end against the simulated kernel (tierenv.host.simulated_kernel): an exported policy
run by the daemon through sysfs/procfs files and the real parsers makes the decisions the same
policy makes in the simulator env, and the host-side observations are the simulator's own."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.controllers.base import ControlContext
from agents.export import export_policy
from agents.policies.learned import LearnedPolicy, one_torch_thread
from agents.policies.onnx_policy import OnnxPolicy
from tests.test_learned_policy import sharpen, write_run
from tierenv.contracts.features import DEFAULT_GROUPS, ObservationSpec
from tierenv.daemon import Daemon, JsonLog
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.host.collector import HostMetrics
from tierenv.host.config import load_host_config
from tierenv.host.simulated_kernel import SimulatedKernel
from tierenv.host.sysfs import SysfsRoot
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import load_scenario

# "migrated" is an estimate on a host (the kernel does not say where migrated pages came
# from), so a policy observing it would see slightly different numbers there; every other
# host-observable group is measured exactly.
GROUPS = [g for g in DEFAULT_GROUPS if g != "migrated"]
SEED = 5
INITIAL = [2, 1]


@pytest.fixture(scope="module")
def scenario() -> Any:
    # co-runner cut short around the second application's start and stop (60 s and 120 s
    # shipped; here 6 s and 14 s) so processes appear and exit during the run.
    shipped = load_scenario("co-runner")
    apps = tuple(
        dataclasses.replace(run, start_s=6.0, stop_s=14.0) if run.start_s > 0 else run
        for run in shipped.apps
    )
    return dataclasses.replace(shipped, duration_s=20.0, apps=apps, events=())


def train_and_export(
    root: Path, scenario: Any, groups: list[str], seed: int = 0
) -> tuple[Path, Path]:
    """A tiny PPO observing ``groups``, sharpened so its weights vary, exported:
    (run dir, onnx file). Whether a barely trained net's weights vary on a scenario depends
    on its initial parameters: ``seed`` picks them."""
    venv = VecNormalize(
        DummyVecEnv([lambda: WeightedInterleaveEnv(scenario, features=groups)]),
        norm_obs=True,
        norm_reward=True,
    )
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=2, seed=seed, device="cpu")
    with one_torch_thread():
        model.learn(128)
    sharpen(model.policy.action_net)
    n_nodes = len(scenario.nodes)
    names = ObservationSpec(n_nodes, groups).names
    run = write_run(
        root / "ppo", model, venv, "PPO", features=list(names), feature_groups=list(groups),
        n_nodes=n_nodes,
    )  # fmt: skip
    exported = export_policy(run, run / "policy.onnx")
    return run, exported.onnx


@pytest.fixture(scope="module")
def policy(tmp_path_factory, scenario) -> tuple[Path, Path]:
    return train_and_export(tmp_path_factory.mktemp("runs"), scenario, GROUPS)


def env_decisions(
    scenario: Any, run: Path, steps: int, initial: list[int] = INITIAL, seed: int = SEED
) -> tuple[list[list[int]], list[Any]]:
    """The SB3 policy in the simulator env: weights in force each interval, and the
    simulator's measurements."""
    env = WeightedInterleaveEnv(
        scenario,
        features=GROUPS,
        initial_weights=initial,
        host_factory=lambda _seed, weights: SimulatedHost(scenario, weights=weights, seed=seed),
    )
    env.reset(seed=0)
    # A host's applications already run when the daemon starts: the simulated kernel ran
    # its first interval under the initial weights, so the env does the same before the
    # policy's first decision.
    env.step_weights(initial)
    policy = LearnedPolicy(run / "model.zip")
    policy.reset(
        ControlContext(
            nodes=env.node_info, interval_s=1.0, initial_weights=np.array(initial), seed=0
        )
    )
    weights, measurements = [], []
    for _ in range(steps):
        m = env.last_result.measurements
        measurements.append(m)
        chosen = policy.decide(m)
        weights.append(chosen.tolist())
        env.step_weights(chosen)
    return weights, measurements


class Recording:
    """Wraps the daemon's controller to keep what it observed."""

    def __init__(self, inner: OnnxPolicy) -> None:
        self.inner = inner
        self.observations: list[np.ndarray] = []
        self.kind, self.privileged, self.spec = inner.kind, inner.privileged, inner.spec

    def reset(self, context: ControlContext) -> None:
        self.inner.reset(context)

    def decide(self, m: Any) -> np.ndarray:
        weights = self.inner.decide(m)
        self.observations.append(self.inner.last_observation.copy())
        return weights

    def describe(self) -> str:
        return self.inner.describe()


def run_daemon_on(
    kernel: SimulatedKernel, onnx: Path, tmp: Path, steps: int, damos: DamosSetup | None = None
) -> dict:
    """The daemon running the exported policy on ``kernel`` for ``steps`` intervals, with
    ``damos`` (default: damo's recipe, 200 MiB/s) as an operator sets it with --damos-quota."""
    config = load_host_config(kernel.config_path)
    clock = {"t": 0.0}
    metrics = HostMetrics(
        kernel.root, kernel.proc_root, config, kernel.page_nodes(), clock=lambda: clock["t"]
    )
    dests: list[list[np.ndarray]] = []
    first = {"done": False}

    def sleep(_seconds: float) -> None:
        # The kernel ran its first interval when built (as env.reset does); each later sleep
        # is one interval under the weights the daemon wrote.
        if first["done"]:
            kernel.advance()
        first["done"] = True
        clock["t"] += 1.0
        dests.append(kernel.dests_in_tree())

    controller = Recording(OnnxPolicy(onnx))
    log_path = tmp / "decisions.jsonl"
    log = JsonLog(log_path, clock=lambda: clock["t"])
    daemon = Daemon(
        kernel.root, controller, metrics.measure, metrics.node_info(), 1.0, tmp / "journal.json",
        metrics.live_pids, log=log, clock=lambda: clock["t"], sleep=sleep,
        on_kdamond=metrics.attach_kdamond, damos=damos,
    )  # fmt: skip
    code = daemon.run(max_intervals=steps, handle_signals=False)
    log.close()
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    return {
        "code": code,
        "records": records,
        "decisions": [r for r in records if r["event"] == "decision"],
        "observations": controller.observations,
        "dests": dests,
        "metrics": metrics,
    }


def test_the_daemon_decides_as_the_policy_does_in_the_simulator(scenario, policy, tmp_path):
    run, onnx = policy
    steps = 18
    expected, sim_measurements = env_decisions(scenario, run, steps)
    assert len({tuple(w) for w in expected}) > 2, "the test policy must vary its weights"

    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=SEED, initial_weights=INITIAL)
    kernel.advance()
    before = kernel.snapshot()
    out = run_daemon_on(kernel, onnx, tmp_path, steps)

    assert out["code"] == 0, out["records"][-3:]
    decided = [d["asked"] for d in out["decisions"]]
    assert decided == expected
    assert all(d["error"] is None and d["fallback"] is None for d in out["decisions"])
    # The observations the daemon built from files are the simulator's own.
    spec = ObservationSpec(2, GROUPS)
    nodes = WeightedInterleaveEnv(scenario, features=GROUPS).node_info
    for step, (seen, m) in enumerate(zip(out["observations"], sim_measurements, strict=True)):
        truth = spec.build(m, None, nodes)
        np.testing.assert_allclose(seen, truth, atol=2e-6, err_msg=f"interval {step}")
    # DAMOS dests followed the weights; the kdamond followed the second app in and out.
    for applied, dests in zip(decided[:-1], out["dests"][1:], strict=False):
        assert all(d.tolist() == applied for d in dests)
    notes = [d.get("kdamond") for d in out["decisions"] if d.get("kdamond")]
    assert any("4001" in n for n in notes) and any(n.endswith("[4000]") for n in notes)
    # Everything put back: weights, auto switch and no kdamond of ours.
    after = kernel.snapshot()
    wi = "kernel/mm/mempolicy/weighted_interleave"
    assert {k: v for k, v in after.items() if k.startswith(wi)} == {
        k: v for k, v in before.items() if k.startswith(wi)
    }
    assert after["kernel/mm/damon/admin/kdamonds/nr_kdamonds"].strip() == "0"
    assert not (tmp_path / "journal.json").exists()


def test_the_cli_runs_against_a_simulated_kernel(scenario, tmp_path, monkeypatch, capsys):
    """tierenv daemon with a baseline controller on files only (no move_pages): weights move,
    the host is restored, the decision log is JSON lines."""
    from tierenv.cli import main

    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=SEED, initial_weights=INITIAL)
    kernel.advance()
    advanced = []

    def sleep(self: Daemon, _seconds: float) -> None:
        advanced.append(kernel.advance())

    monkeypatch.setattr(Daemon, "_interruptible_sleep", sleep)
    # The tree behaves like a kernel only through the kernel object's files layer.
    monkeypatch.setattr(
        "tierenv.daemon.SysfsRoot",
        lambda path: kernel.root if Path(path) == kernel.path else SysfsRoot(path),
    )
    log = tmp_path / "log.jsonl"
    code = main([
        "daemon", "--sysfs-root", str(kernel.path), "--host-config", str(kernel.config_path),
        "--page-nodes", "none", "--controller", "static", "--param", "weights=[1,3]",
        "--journal", str(tmp_path / "j.json"), "--log", str(log), "--max-intervals", "4",
        "--status", str(tmp_path / "status.json"),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "features" and events[-1] == "stopped"
    assert [r.measurements.weights.tolist() for r in advanced][1:] == [[1, 3]] * 3
    assert kernel.tree_weights().tolist() == INITIAL
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "stopped"


def test_a_policy_for_another_node_count_is_refused(policy, scenario, tmp_path):
    from agents.controllers.base import HostNeeds
    from agents.controllers.static import StaticController
    from tierenv.daemon import check_controller_fits

    class ThreeNodes(StaticController):
        def needs(self) -> HostNeeds:
            return HostNeeds(n_nodes=3)

    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=SEED)
    metrics = HostMetrics(
        kernel.root, kernel.proc_root, load_host_config(kernel.config_path), kernel.page_nodes()
    )
    with pytest.raises(ValueError, match=r"the policy is for 3 memory nodes; .* lists 2"):
        check_controller_fits(ThreeNodes(weights=[1, 1, 1]), metrics, use_damos=True)
    check_controller_fits(OnnxPolicy(policy[1]), metrics, use_damos=True)  # fits: no error


def test_a_policy_needing_unmeasurable_features_is_refused(policy, scenario, tmp_path, capsys):
    from tierenv.cli import main

    _, onnx = policy
    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=SEED)
    kernel.advance()
    code = main([
        "daemon", "--sysfs-root", str(kernel.path), "--host-config", str(kernel.config_path),
        "--page-nodes", "none", "--policy", str(onnx), "--journal", str(tmp_path / "j.json"),
    ])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "hotness needs our kdamond (not --no-damos) and --page-nodes" in err
    assert kernel.writes == []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def run_static(kernel: SimulatedKernel, tmp: Path, steps: int, schedule: list, faults=None):
    """The daemon with a controller following ``schedule`` (weights per interval);
    ``faults[i]()`` runs before interval i (fault injection)."""
    config = load_host_config(kernel.config_path)
    clock = {"t": 0.0, "n": 0}
    metrics = HostMetrics(kernel.root, kernel.proc_root, config, kernel.page_nodes(),
                          clock=lambda: clock["t"])  # fmt: skip

    class Schedule:
        kind, privileged = "schedule", False

        def reset(self, context):
            self.i = 0

        def decide(self, m):
            self.i += 1
            return np.array(schedule[(self.i - 1) % len(schedule)])

        def describe(self):
            return "schedule"

    def sleep(_s: float) -> None:
        if clock["n"]:
            kernel.advance()
        if faults and clock["n"] in faults:
            faults[clock["n"]]()
        clock["n"] += 1
        clock["t"] += 1.0

    log_path = tmp / "log.jsonl"
    log = JsonLog(log_path, clock=lambda: clock["t"])
    daemon = Daemon(
        kernel.root, Schedule(), metrics.measure, metrics.node_info(), 1.0, tmp / "j.json",
        metrics.live_pids, log=log, clock=lambda: clock["t"], sleep=sleep,
        on_kdamond=metrics.attach_kdamond,
    )  # fmt: skip
    code = daemon.run(max_intervals=steps, handle_signals=False)
    log.close()
    return code, [json.loads(line) for line in log_path.read_text().splitlines()]


def test_the_daemon_rides_out_a_stopping_kdamond_and_refused_writes(tmp_path):
    """The only application exits mid-run (its pid vanishes, the kernel stops our kdamond),
    one weight write is refused with EBUSY and one dests commit with EINVAL: each interval
    logs what happened, the weights stay consistent, and the host is put back at the end."""
    import errno

    shipped = load_scenario("steady-single")
    apps = (dataclasses.replace(shipped.apps[0], stop_s=5.0),)
    scenario = dataclasses.replace(shipped, duration_s=12.0, apps=apps, events=())
    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=0, initial_weights=[1, 1])
    kernel.advance()
    wi = "kernel/mm/mempolicy/weighted_interleave"
    scheme = "kernel/mm/damon/admin/kdamonds/0"
    faults = {
        1: lambda: kernel.fail_write(1, errno.EBUSY, f"{wi}/node1"),
        # measure writes update_schemes_stats and _tried_regions first; the third is commit
        2: lambda: kernel.fail_write(3, errno.EINVAL, f"{scheme}/state"),
    }
    schedule = [[3, 1], [1, 3], [2, 1], [5, 1]]
    code, records = run_static(kernel, tmp_path, 8, schedule, faults)
    decisions = [r for r in records if r["event"] == "decision"]
    assert code == 0
    assert decisions[0]["applied"] == [3, 1] and decisions[0]["error"] is None
    # EBUSY on node1's file: the transaction put node0 back, the old weights stay.
    assert "EBUSY" in decisions[1]["error"] and decisions[1]["applied"] == [3, 1]
    # EINVAL on the dests commit: weights put back too.
    assert "dests commit failed" in decisions[2]["error"] and decisions[2]["applied"] == [3, 1]
    assert decisions[3]["applied"] == [5, 1] and decisions[3]["error"] is None
    # After the app exits, no processes: the daemon keeps setting weights without DAMON.
    late = decisions[5:]
    assert all(d["measurements"]["n_apps"] == 0 for d in late)
    assert all(d["error"] is None for d in late)
    assert kernel.tree_weights().tolist() == [1, 1]
    assert kernel.snapshot()["kernel/mm/damon/admin/kdamonds/nr_kdamonds"].strip() == "0"
