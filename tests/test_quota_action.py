"""The DAMOS quota as an action, end to end: a training config asks for it, the run records
it, the sb3 and ONNX controllers ask for the quota (``Controller.damos_quota``), the compare
harness and the daemon apply it, and the floor guard takes it back when it overrules."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents.controllers import ControlContext
from agents.controllers.base import Controller
from agents.controllers.guard import FALLBACK, FloorGuard, GuardSettings
from agents.controllers.kernel_auto import KernelAutoController
from agents.export import export_policy
from agents.policies.learned import LearnedPolicy
from agents.policies.onnx_policy import OnnxPolicy
from agents.training.config import parse_config
from agents.training.train import train
from experiments.compare.config import PolicySpec
from experiments.compare.episode import Trial, run_trial
from tests.test_daemon import KDS, NODES, fake, make_daemon, measurement
from tests.test_learned_policy import context_for
from tests.test_training import short_scenario
from tierenv.contracts.actions import QUOTA_MAX_BYTES_PER_S, QUOTA_MIN_BYTES_PER_S
from tierenv.contracts.measurements import Measurements
from tierenv.daemon import build_parser, damos_setup
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv


@pytest.fixture(scope="module")
def quota_run(tmp_path_factory) -> Path:
    """A tiny PPO run trained with ``quota_action: true`` on the fluid backend."""
    folder = tmp_path_factory.mktemp("quota")
    scenario = short_scenario(folder, "steady-single", seconds=30)
    config = parse_config(
        {
            "name": "quota",
            "algorithm": "PPO",
            "hyperparameters": {"n_steps": 16, "batch_size": 32, "n_epochs": 1},
            "env": {"backend": "fluid", "n_envs": 4, "scenarios": [scenario], "quota_action": True},
            "eval": {"scenarios": [scenario], "every_steps": 10_000},
            "timesteps": 64,
            "checkpoint_every": 10_000,
        }
    )
    assert config.env.quota_action and config.to_dict()["env"]["quota_action"] is True
    (run,) = train(config, seeds=[0], out_root=folder / "runs", progress=False)
    return run


def sharpen_quota(policy: LearnedPolicy) -> None:
    """Make the quota output depend strongly on the observation (a barely trained net's mean
    action sits near 0, one quota)."""
    net = policy.model.policy.action_net
    with torch.no_grad():
        net.weight[-1] = torch.linspace(-0.5, 0.5, net.weight.shape[1])
        net.bias[-1] = 0.0


def test_the_run_records_the_quota_action_and_the_policy_asks_for_quotas(quota_run) -> None:
    info = json.loads((quota_run / "run.json").read_text())
    assert info["quota_action"] is True
    policy = LearnedPolicy(quota_run)
    assert policy.model.action_space.shape == (info["n_nodes"] + 1,)
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=0)
    policy.reset(context_for(env))
    assert policy.damos_quota() is None  # nothing asked before the first decision
    weights = policy.decide(env.last_result.measurements)
    assert weights.shape == (2,)
    quota = policy.damos_quota()
    assert isinstance(quota, int)
    assert QUOTA_MIN_BYTES_PER_S <= quota <= QUOTA_MAX_BYTES_PER_S


def test_compare_applies_the_quota_the_policy_asks_for(quota_run, monkeypatch) -> None:
    policy = LearnedPolicy(quota_run)
    sharpen_quota(policy)
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=3)
    policy.reset(context_for(env))
    asked, in_force = [], []
    for _ in range(12):
        weights = policy.decide(env.last_result.measurements)
        asked.append(policy.damos_quota())
        env.set_damos_quota(asked[-1])
        _, _, _, _, info = env.step_weights(weights)
        in_force.append(float(info["damos_quota_bytes_per_s"]))
    # the host runs what was asked (whole pages per window), from the interval after
    for want, got in zip(asked, in_force, strict=True):
        assert want is not None and abs(got - want) <= env.scenario.page_size
    assert len(set(asked)) > 1
    # the compare harness does the same for every decision
    set_quota = WeightedInterleaveEnv.set_damos_quota
    calls: list[int] = []

    def recording(self: WeightedInterleaveEnv, bytes_per_s: int) -> None:
        calls.append(bytes_per_s)
        set_quota(self, bytes_per_s)

    monkeypatch.setattr(WeightedInterleaveEnv, "set_damos_quota", recording)
    spec = PolicySpec(name="q", kind="sb3", params={"path": str(quota_run)})
    result = run_trial(Trial(scenario="co-runner", policy=spec, seed=3))
    assert len(calls) == len(result.steps["reward"]) > 0
    assert all(QUOTA_MIN_BYTES_PER_S <= q <= QUOTA_MAX_BYTES_PER_S for q in calls)


def test_the_exported_graph_asks_for_the_same_quota(quota_run, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    exported = export_policy(quota_run, tmp_path / "policy.onnx")
    meta = json.loads(exported.sidecar.read_text())
    assert meta["quota_action"] is True
    assert meta["action_to_quota"]["QUOTA_MAX_BYTES_PER_S"] == QUOTA_MAX_BYTES_PER_S
    onnx = OnnxPolicy(exported.onnx)
    sb3 = LearnedPolicy(quota_run)
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=1)
    onnx.reset(context_for(env))
    sb3.reset(context_for(env))
    for _ in range(6):
        m = env.last_result.measurements
        assert np.array_equal(onnx.decide(m), sb3.decide(m))
        # the graph's actions are within 1e-5 of SB3's: the same quota to a few bytes
        assert onnx.damos_quota() == pytest.approx(sb3.damos_quota(), rel=1e-4)
        env.step_weights(sb3.decide(m))
    # a weights-only sidecar (written before the quota existed) asks for nothing
    meta.pop("quota_action")
    exported.sidecar.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="the graph maps"):
        OnnxPolicy(exported.onnx)


class QuotaScript(Controller):
    """Fixed weights and a scripted quota per decision."""

    kind = "quota-script"

    def __init__(self, quotas: Sequence[Any]) -> None:
        self.quotas = list(quotas)
        self.asked: Any = None

    def decide(self, measurements: Measurements) -> np.ndarray:
        self.asked = self.quotas.pop(0) if len(self.quotas) > 1 else self.quotas[0]
        return np.array([3, 1])

    def damos_quota(self) -> Any:
        if isinstance(self.asked, Exception):
            raise self.asked
        return self.asked


def quota_file(fk: Any) -> int:
    return fk.root.read_int(f"{KDS}/0/contexts/0/schemes/0/quotas/bytes")


def test_the_daemon_commits_quota_changes_to_our_scheme(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    seen: list[int] = []
    script = [None, 1 << 30, 1 << 30, 0, -5, 1.5e9, RuntimeError("boom"), 64 << 20]
    daemon, log = make_daemon(
        fk, tmp_path, QuotaScript(script), probe=lambda k: seen.append(quota_file(k))
    )
    assert daemon.run(max_intervals=len(script)) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    quota_notes = [r.get("damos_quota") for r in records if r["event"] == "decision"]
    default = daemon.damos.quota_per_window(200 << 20, 4096)
    # None leaves the setup's quota; a change is committed once; 0 is unlimited; bad values and
    # a raising controller are logged as errors and change nothing
    assert quota_notes[0] is None and quota_notes[2] is None
    assert quota_notes[1] == {"bytes_per_s": 1 << 30, "quota_bytes": 1 << 30}
    assert quota_notes[3] == {"bytes_per_s": 0, "quota_bytes": 0}
    for bad in quota_notes[4:7]:
        assert "error" in bad
    assert quota_notes[7]["quota_bytes"] == 64 << 20
    # what the kernel's files held at each measurement (the interval after each decision)
    assert seen[1] == default and seen[2] == 1 << 30 and seen[4] == 0 and seen[7] == 0
    assert fk.root.read_int(f"{KDS}/nr_kdamonds") == 0  # removed at exit, quota with it


def test_a_dry_run_only_says_which_quota_it_would_set(tmp_path: Path) -> None:
    fk = fake(tmp_path)
    before = fk.snapshot()
    daemon, log = make_daemon(fk, tmp_path, QuotaScript([1 << 30]), dry_run=True)
    assert daemon.run(max_intervals=2) == 0
    assert fk.snapshot() == before and fk.writes == []
    would = [json.loads(x).get("would_set_quota_bytes") for x in log.read_text().splitlines()]
    assert would.count(1 << 30) == 1


def test_the_guard_takes_the_quota_back_when_it_overrules() -> None:
    policy = QuotaScript([32 << 20])
    guard = FloorGuard(policy, KernelAutoController(), GuardSettings(probe_s=2, settle_s=1))
    guard.reset(ControlContext(nodes=NODES, interval_s=1.0, initial_weights=np.array([1, 1])))
    host_quota = 512 << 20
    guard.decide(with_quota(measurement([1, 1], 0.0), host_quota))
    assert guard.mode == "probe" and guard.damos_quota() == host_quota  # the host's own
    for t in range(1, 4):
        guard.decide(with_quota(measurement([1, 1], float(t)), host_quota))
    assert guard.mode == "policy" and guard.damos_quota() == 32 << 20
    guard.mode = FALLBACK
    assert guard.damos_quota() == host_quota


def with_quota(m: Measurements, quota: float) -> Measurements:
    return dataclasses.replace(m, damos_quota_bytes_per_s=quota)


@pytest.mark.parametrize(("text", "rate"), [(None, 200 << 20), ("1 GiB", 1 << 30), ("0", 0)])
def test_the_operator_sets_the_quota_our_scheme_starts_with(
    tmp_path: Path, text: str | None, rate: int
) -> None:
    """``--damos-quota`` (default damo's 200 MiB/s) is the quota our kdamond starts with."""
    argv = ["--sysfs-root", "/x", "--host-config", "h.toml", "--controller", "kernel-auto"]
    args = build_parser().parse_args(argv + (["--damos-quota", text] if text else []))
    fk = fake(tmp_path)
    seen: list[int] = []
    daemon, _ = make_daemon(
        fk, tmp_path, QuotaScript([None]), probe=lambda k: seen.append(quota_file(k)),
        damos=damos_setup(args.damos_quota),
    )  # fmt: skip
    assert daemon.run(max_intervals=2) == 0
    assert seen == [rate, rate]
