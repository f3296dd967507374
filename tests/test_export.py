"""Policy export (``agents.export``) and the ``onnx`` controller: tiny PPO and SAC runs trained
here export to graphs whose actions are SB3's to 1e-5, act in the harness exactly as the
``sb3`` controller does, and are refused when tampered with; no torch on the ONNX path."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime
import pytest
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import tierenv
from agents.controllers import Controller, ControllerError
from agents.export import ExportError, export_policy, sha256_file
from agents.policies.learned import LearnedPolicy, one_torch_thread
from agents.policies.onnx_policy import OnnxPolicy
from tests.test_learned_policy import context_for, sharpen, write_run
from tierenv.contracts import actions
from tierenv.contracts.features import GROUPS_BY_NAME, ObservationSpec
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.workload.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenario() -> Any:
    return dataclasses.replace(load_scenario("co-runner"), duration_s=20.0)


def make_venv(scenario: Any) -> VecNormalize:
    return VecNormalize(
        DummyVecEnv([lambda: WeightedInterleaveEnv(scenario)]), norm_obs=True, norm_reward=True
    )


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory, scenario) -> tuple[Path, PPO, VecNormalize]:
    venv = make_venv(scenario)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    with one_torch_thread():
        model.learn(128)
    sharpen(model.policy.action_net)
    return write_run(tmp_path_factory.mktemp("runs") / "ppo-0", model, venv, "PPO"), model, venv


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory, scenario) -> tuple[Path, SAC, VecNormalize]:
    venv = make_venv(scenario)
    model = SAC(
        "MlpPolicy",
        venv,
        learning_starts=32,
        batch_size=32,
        policy_kwargs={"net_arch": [32, 32]},
        seed=0,
        device="cpu",
    )
    with one_torch_thread():
        model.learn(96)
    sharpen(model.policy.actor.mu)
    model.policy.actor.mu.weight.data.mul_(0.02)  # mostly unsaturated tanh, still varying
    return write_run(tmp_path_factory.mktemp("runs") / "sac-0", model, venv, "SAC"), model, venv


@pytest.fixture(scope="module", params=["PPO", "SAC"])
def exported(request, ppo_run, sac_run, tmp_path_factory) -> tuple[Any, Path, Any, VecNormalize]:
    root, model, venv = ppo_run if request.param == "PPO" else sac_run
    out = tmp_path_factory.mktemp("export") / f"{request.param.lower()}.onnx"
    return export_policy(root, out), root, model, venv


def rollout_observations(scenario: Any, model: Any, venv: VecNormalize) -> np.ndarray:
    """Raw observations of one deterministic episode of the model through env.step."""
    env = WeightedInterleaveEnv(scenario)
    observation, _ = env.reset(seed=3)
    rows, truncated = [observation], False
    while not truncated:
        action, _ = model.predict(venv.normalize_obs(observation[None, :]), deterministic=True)
        observation, _, _, truncated, _ = env.step(action[0])
        rows.append(observation)
    return np.array(rows, dtype=np.float32)


def test_onnx_actions_match_sb3_predict(exported, scenario) -> None:
    result, _, model, venv = exported
    spec = ObservationSpec(result.metadata["n_nodes"], result.metadata["feature_groups"])
    rng = np.random.default_rng(1)
    low, high = spec.low.astype(np.float64), spec.high.astype(np.float64)
    inside = rng.uniform(low, high, size=(200, low.size))
    # Far outside the space and far from the running mean: the normalisation clips these.
    beyond = rng.uniform(low - 50 * (high - low), high + 50 * (high - low), size=(100, low.size))
    raw = np.vstack([rollout_observations(scenario, model, venv), inside, beyond]).astype(
        np.float32
    )
    normalised = venv.normalize_obs(raw)
    assert np.any(np.abs(normalised) == venv.clip_obs), "no observation was clipped"
    session = onnxruntime.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    got = session.run(None, {"observation": raw})[0]
    want, _ = model.predict(normalised, deterministic=True)
    assert got.shape == want.shape == (len(raw), result.metadata["n_nodes"])
    difference = float(np.max(np.abs(got - want)))
    print(f"{result.metadata['algorithm']}: max |onnx - sb3| = {difference:.3g} on {len(raw)}")
    assert difference <= 1e-5
    assert np.ptp(want, axis=0).max() > 0.1, "the test policy's actions barely vary"
    assert result.max_action_difference <= 1e-5


def harness_weights(scenario: Any, policy: Controller, seed: int) -> np.ndarray:
    """The harness loop (experiments/compare/episode.py): decide, then env.step_weights."""
    env = WeightedInterleaveEnv(scenario)
    env.reset(seed=seed)
    policy.reset(context_for(env, seed))
    rows, truncated = [], False
    while not truncated:
        weights = policy.decide(env.last_result.measurements)
        rows.append(weights)
        _, _, _, truncated, _ = env.step_weights(weights)
    return np.array(rows)


def test_onnx_policy_acts_as_the_sb3_controller_in_the_harness(exported, scenario) -> None:
    result, root, _, _ = exported
    onnx_policy = OnnxPolicy(result.onnx)
    want = harness_weights(scenario, LearnedPolicy(root), 0)
    got = harness_weights(scenario, onnx_policy, 0)
    np.testing.assert_array_equal(got, want)
    assert len({tuple(row) for row in want}) > 1, "weights never changed"
    assert onnx_policy.fallbacks == 0
    # The sidecar path works as well.
    np.testing.assert_array_equal(harness_weights(scenario, OnnxPolicy(result.sidecar), 0), want)


def test_sidecar_describes_the_export(exported) -> None:
    result, root, model, venv = exported
    meta = json.loads(result.sidecar.read_text())
    assert meta == result.metadata
    run = json.loads((root / "run.json").read_text())
    assert meta["format_version"] == 1 and meta["tierenv_version"] == tierenv.__version__
    assert meta["run"]["git_commit"] == "test" and meta["algorithm"] == run["algorithm"]
    assert meta["n_nodes"] == run["n_nodes"]
    assert [f["name"] for f in meta["features"]] == run["features"]
    group = GROUPS_BY_NAME["latency"]
    latency = next(f for f in meta["features"] if f["name"] == "latency[node0]")
    assert latency["unit"] == group.unit and latency["per"] == "node"
    assert not any(f["privileged"] for f in meta["features"])
    assert meta["feature_groups"] == list(ObservationSpec(run["n_nodes"]).group_names)
    np.testing.assert_array_equal(meta["normalization"]["mean"], venv.obs_rms.mean)
    np.testing.assert_array_equal(meta["normalization"]["var"], venv.obs_rms.var)
    assert meta["normalization"]["clip_obs"] == venv.clip_obs
    assert meta["action"]["low"] == model.action_space.low.tolist()
    assert meta["action"]["high"] == model.action_space.high.tolist()
    assert meta["action_to_weights"] == {
        "name": "tierenv.contracts.actions.action_to_weights",
        "LOG_RATIO_PER_UNIT": actions.LOG_RATIO_PER_UNIT,
        "SHARE_TOLERANCE": actions.SHARE_TOLERANCE,
        "ACTION_LOW": actions.ACTION_LOW,
        "ACTION_HIGH": actions.ACTION_HIGH,
    }
    assert meta["onnx"]["sha256"] == sha256_file(result.onnx) == result.sha256
    assert sorted(p.name for p in result.onnx.parent.iterdir()) == sorted(
        [result.onnx.name, result.sidecar.name]
    )


def copy_export(result: Any, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for file in (result.onnx, result.sidecar):
        (target / file.name).write_bytes(file.read_bytes())
    return target / result.onnx.name


def test_tampered_graph_and_bad_sidecars_are_refused(ppo_run, tmp_path) -> None:
    result = export_policy(ppo_run[0], tmp_path / "orig" / "policy.onnx")
    onnx = copy_export(result, tmp_path / "tampered")
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ControllerError, match=r"sha256.*not the one exported"):
        OnnxPolicy(onnx)

    onnx = copy_export(result, tmp_path / "version")
    meta = json.loads(onnx.with_suffix(".json").read_text())
    onnx.with_suffix(".json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ControllerError, match="format version 99"):
        OnnxPolicy(onnx)

    onnx = copy_export(result, tmp_path / "mapping")
    meta["action_to_weights"]["SHARE_TOLERANCE"] = 0.5
    onnx.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ControllerError, match="action mapping"):
        OnnxPolicy(onnx)

    with pytest.raises(ControllerError, match="missing"):
        OnnxPolicy(tmp_path / "nowhere.onnx")


def test_node_count_and_feature_mismatches_are_refused(ppo_run, tmp_path, scenario) -> None:
    result = export_policy(ppo_run[0], tmp_path / "policy.onnx")
    policy = OnnxPolicy(result.onnx)
    env = WeightedInterleaveEnv(scenario)
    env.reset(seed=0)
    context = context_for(env)
    one_node = SimpleNamespace(n_nodes=1, names=context.nodes.names[:1])
    fake = dataclasses.replace(context, nodes=one_node)
    with pytest.raises(ControllerError, match="exported for 2 memory nodes"):
        policy.reset(fake)

    onnx = copy_export(result, tmp_path / "features")
    meta = json.loads(onnx.with_suffix(".json").read_text())
    meta["feature_groups"] = ["bandwidth", "latency"]
    onnx.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ControllerError, match=r"features .* differ"):
        OnnxPolicy(onnx)


def test_recurrent_and_privileged_runs_are_refused(ppo_run, tmp_path, scenario) -> None:
    from sb3_contrib import RecurrentPPO

    venv = make_venv(scenario)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        venv,
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"lstm_hidden_size": 8, "net_arch": [16]},
        seed=0,
        device="cpu",
    )
    with one_torch_thread():
        model.learn(16)
    root = write_run(tmp_path / "rppo", model, venv, "RecurrentPPO")
    out = tmp_path / "out" / "rppo.onnx"
    with pytest.raises(ExportError, match="RecurrentPPO is not supported yet"):
        export_policy(root, out)
    assert not out.parent.exists() or not list(out.parent.iterdir())

    # A privileged run: the sb3 loader's refusal, as an export error.
    source = ppo_run[0]
    privileged = tmp_path / "privileged"
    privileged.mkdir()
    for name in ("model.zip", "vecnormalize.pkl"):
        (privileged / name).write_bytes((source / name).read_bytes())
    run = json.loads((source / "run.json").read_text())
    run["feature_groups"] = "privileged"
    run["features"] = list(ObservationSpec(run["n_nodes"], "privileged").names)
    (privileged / "run.json").write_text(json.dumps(run))
    with pytest.raises(ExportError, match="simulator-only \\(privileged\\)"):
        export_policy(privileged, out)
    with pytest.raises(ExportError, match=r"\.onnx file"):
        export_policy(source, tmp_path / "policy.bin")
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_non_finite_actions_fall_back_to_the_initial_weights(ppo_run, tmp_path, scenario, caplog):
    result = export_policy(ppo_run[0], tmp_path / "policy.onnx")
    policy = OnnxPolicy(result.onnx)
    env = WeightedInterleaveEnv(scenario)
    env.reset(seed=0)
    context = context_for(env)
    policy.reset(context)
    measurements = env.last_result.measurements

    class NaNSession:
        def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            batch = next(iter(feeds.values()))
            return [np.full((len(batch), 2), np.nan, dtype=np.float32)]

    real = policy._session
    policy._session = NaNSession()
    with caplog.at_level(logging.WARNING):
        weights = policy.decide(measurements)
    np.testing.assert_array_equal(weights, context.initial_weights)
    assert policy.fallbacks == 1 and "non-finite action" in caplog.text

    # A broken measurement (NaN latency) never reaches the graph's answer either.
    policy._session = real
    broken = dataclasses.replace(
        measurements, node_latency_ns=np.full_like(measurements.node_latency_ns, np.nan)
    )
    with caplog.at_level(logging.WARNING):
        weights = policy.decide(broken)
    np.testing.assert_array_equal(weights, context.initial_weights)
    assert policy.fallbacks == 2 and "non-finite observation" in caplog.text
    policy.decide(measurements)  # healthy again
    assert policy.fallbacks == 2


def test_the_onnx_path_never_imports_torch(ppo_run, tmp_path, scenario) -> None:
    """Loading and deciding needs numpy and onnxruntime only (what the daemon has)."""
    result = export_policy(ppo_run[0], tmp_path / "policy.onnx")
    env = WeightedInterleaveEnv(scenario)
    env.reset(seed=0)
    context = context_for(env)
    state = tmp_path / "state.pkl"
    state.write_bytes(
        pickle.dumps((context.nodes, context.initial_weights, env.last_result.measurements))
    )
    code = f"""
import pickle, sys
from agents.controllers.base import ControlContext
from agents.policies.onnx_policy import OnnxPolicy
nodes, initial, measurements = pickle.loads(open({str(state)!r}, "rb").read())
policy = OnnxPolicy({str(result.onnx)!r})
policy.reset(ControlContext(nodes=nodes, interval_s=1.0, initial_weights=initial))
print(policy.decide(measurements).tolist())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "stable_baselines3"))
assert not heavy, heavy
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    policy = OnnxPolicy(result.onnx)
    policy.reset(context)
    assert done.stdout.strip() == str(policy.decide(env.last_result.measurements).tolist())


def test_a_failed_export_leaves_the_old_pair(ppo_run, tmp_path, monkeypatch) -> None:
    import agents.export

    out = tmp_path / "policy.onnx"
    first = export_policy(ppo_run[0], out)
    before = (out.read_bytes(), first.sidecar.read_text())

    def disagree(*args: Any) -> float:
        raise ExportError("differs")

    monkeypatch.setattr(agents.export, "_check_against_sb3", disagree)
    with pytest.raises(ExportError, match="differs"):
        export_policy(ppo_run[0], out)
    assert (out.read_bytes(), first.sidecar.read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx"]


def test_the_command_line_exports_a_run(ppo_run, tmp_path, capsys) -> None:
    from tierenv.cli import main

    run = ppo_run[0]
    out = tmp_path / "cli" / "policy.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "largest action difference" in printed
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert main(["export", str(tmp_path / "no-such-run")]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_the_pair_lands_together_or_not_at_all(ppo_run, tmp_path, monkeypatch) -> None:
    """Issue 19 item 4: the sidecar was renamed before the graph, so a failure in between left
    a new sidecar beside the old graph. Now the second rename failing undoes the first."""
    import errno
    import os

    out = tmp_path / "policy.onnx"
    out.write_bytes(b"old graph")
    out.with_suffix(".json").write_text("old sidecar")
    targets = {out, out.with_suffix(".json")}
    real_replace = os.replace
    renamed: list[Path] = []

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if Path(target) in targets:
            renamed.append(Path(target))
            if len(renamed) == 2:
                raise OSError(errno.EIO, "injected failure", str(target))
        real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises((ExportError, OSError), match="injected failure"):
        export_policy(ppo_run[0], out)
    assert len(renamed) >= 2
    assert out.read_bytes() == b"old graph"
    assert out.with_suffix(".json").read_text() == "old sidecar"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx"]
    monkeypatch.setattr(os, "replace", real_replace)
    result = export_policy(ppo_run[0], out)  # and without the failure, both are new
    OnnxPolicy(result.onnx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx"]


@pytest.mark.parametrize("directory", ["policy.onnx", "policy.json"])
def test_an_output_that_is_a_directory_is_refused_cleanly(ppo_run, tmp_path, directory) -> None:
    """Issue 19 item 4: ``--out`` naming a directory left an orphan sidecar."""
    (tmp_path / directory).mkdir()
    with pytest.raises(ExportError, match="is a directory"):
        export_policy(ppo_run[0], tmp_path / "policy.onnx")
    assert [p.name for p in tmp_path.iterdir()] == [directory]
    assert list((tmp_path / directory).iterdir()) == []
