"""Trained SB3 policies as controllers (``agents.policies.learned``): tiny models trained here
act through the harness path (``decide`` -> ``env.step_weights``) exactly as they do through
``env.step`` with VecNormalize's observations; bad runs are refused with clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import tierenv
from agents.controllers import ControlContext, ControllerError, controller_kinds, make_controller
from agents.policies.learned import LearnedPolicy, load_normalizer, one_torch_thread
from experiments.compare.config import config_from_dict
from experiments.compare.runner import run_compare
from tierenv.contracts.features import resolve_feature_groups
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

SHIPPED = Path(tierenv.__file__).resolve().parent / "workload" / "scenarios"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> str:
    """co-runner in 20 s, the second application running from 6 s to 14 s (so observations
    change mid-episode); a file, so the env and the harness load the same scenario."""
    text = (SHIPPED / "co-runner.toml").read_text()
    text = text.replace('name = "co-runner"', 'name = "tiny-co-runner"')
    text = text.replace("duration_s = 180", "duration_s = 20")
    text = text.replace("start_s = 60", "start_s = 6").replace("stop_s = 120", "stop_s = 14")
    path = tmp_path_factory.mktemp("scenarios") / "tiny-co-runner.toml"
    path.write_text(text)
    return str(path)


def make_venv(scenario: str) -> VecNormalize:
    return VecNormalize(
        DummyVecEnv([lambda: WeightedInterleaveEnv(scenario)]), norm_obs=True, norm_reward=True
    )


def write_run(
    root: Path, model: Any, venv: VecNormalize | None, algorithm: str, **changes: Any
) -> Path:
    """A run directory per the trainer's contract (``changes`` overrides run.json keys)."""
    root.mkdir(parents=True, exist_ok=True)
    model.save(root / "model.zip")
    if venv is not None:
        venv.save(str(root / "vecnormalize.pkl"))
    env = WeightedInterleaveEnv(SHIPPED / "co-runner.toml")
    run = {
        "algorithm": algorithm,
        "seed": 0,
        "timesteps": int(model.num_timesteps),
        "n_nodes": env.n_nodes,
        "features": list(env.observation_names),
        "feature_groups": "default",
        "normalize_observation": venv is not None,
        "migration_cost_per_gib": env.migration_cost_per_gib,
        "quota_action": False,
        "env_backend": "full",
        "tierenv_version": tierenv.__version__,
        "git_commit": "test",
    }
    run.update(changes)
    (root / "run.json").write_text(json.dumps(run, indent=2))
    (root / "config.yaml").write_text(f"algorithm: {algorithm}\n")
    return root


def sharpen(action_net: torch.nn.Linear) -> None:
    """Make a barely trained policy's mean action depend strongly on the observation (node 0's
    action against node 1's, no common offset), so the weights change from step to step and
    the equivalence below is not 1:1 == 1:1."""
    with torch.no_grad():
        action_net.weight[1:] = -action_net.weight[:1]
        action_net.weight.mul_(100.0)
        action_net.bias.zero_()


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory, scenario) -> tuple[Path, PPO, VecNormalize]:
    venv = make_venv(scenario)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    with one_torch_thread():  # threads only slow such tiny nets down
        model.learn(128)
    sharpen(model.policy.action_net)
    root = write_run(tmp_path_factory.mktemp("runs") / "ppo-0", model, venv, "PPO")
    return root, model, venv


def context_for(env: WeightedInterleaveEnv, seed: int | None = 0) -> ControlContext:
    """What the harness gives a controller (experiments/compare/episode.py)."""
    return ControlContext(
        nodes=env.node_info,
        interval_s=env.scenario.control_interval_s,
        initial_weights=env.host.weights,
        migration_cost_per_gib=env.migration_cost_per_gib,
        scenario=env.scenario,
        seed=seed,
        damos=env.damos,
    )


def direct_episode(
    scenario: str, model: Any, venv: VecNormalize | None, seed: int, recurrent: bool = False
) -> dict[str, np.ndarray]:
    """The model stepping the env as in training: VecNormalize's observations, env.step."""
    env = WeightedInterleaveEnv(scenario)
    observation, _ = env.reset(seed=seed)
    state, start = None, True
    rows: dict[str, list] = {"reward": [], "weights": [], "observation": []}
    truncated = False
    while not truncated:
        batch = observation[None, :]
        normalized = venv.normalize_obs(batch) if venv is not None else batch
        rows["observation"].append(normalized[0])
        action, state = model.predict(
            normalized, state=state, episode_start=np.array([start]), deterministic=True
        )
        state, start = (state if recurrent else None), False
        observation, reward, _, truncated, info = env.step(action[0])
        rows["reward"].append(reward)
        rows["weights"].append(info["weights"])
    return {key: np.array(values) for key, values in rows.items()}


def controller_episode(scenario: str, policy: LearnedPolicy, seed: int) -> dict[str, np.ndarray]:
    """The harness loop (experiments/compare/episode.py): decide, then env.step_weights; the
    observation the policy built (and normalised) itself is kept."""
    env = WeightedInterleaveEnv(scenario)
    env.reset(seed=seed)
    policy.reset(context_for(env, seed))
    rows: dict[str, list] = {"reward": [], "weights": [], "observation": []}
    truncated = False
    while not truncated:
        weights = policy.decide(env.last_result.measurements)
        rows["observation"].append(policy.last_observation)
        _, reward, _, truncated, info = env.step_weights(weights)
        rows["reward"].append(reward)
        rows["weights"].append(info["weights"])
    return {key: np.array(values) for key, values in rows.items()}


def assert_same_episode(direct: dict[str, np.ndarray], harness: dict[str, np.ndarray]) -> None:
    for key in ("observation", "weights", "reward"):
        np.testing.assert_array_equal(harness[key], direct[key], err_msg=key)


# ------------------------------------------------------------------------- equivalence
def test_ppo_acts_in_the_harness_exactly_as_through_env_step(ppo_run, scenario) -> None:
    root, model, venv = ppo_run
    for seed in (0, 1):
        direct = direct_episode(scenario, model, venv, seed)
        harness = controller_episode(scenario, LearnedPolicy(root), seed)
        assert_same_episode(direct, harness)
    assert len({tuple(w) for w in direct["weights"]}) > 1, "weights never change: a weak test"


def test_normalizer_reproduces_vecnormalize_bit_for_bit(ppo_run) -> None:
    root, _, venv = ppo_run
    normalizer = load_normalizer(root / "vecnormalize.pkl")
    assert normalizer is not None
    rng = np.random.default_rng(0)
    spread = np.sqrt(venv.obs_rms.var) * 30  # reaches past clip_obs, so clipping is tested
    observations = (venv.obs_rms.mean + rng.normal(size=(200, spread.size)) * spread).astype(
        np.float32
    )
    normalized = normalizer(observations)
    assert normalized.dtype == np.float32
    np.testing.assert_array_equal(normalized, venv.normalize_obs(observations))
    assert np.abs(normalized).max() == venv.clip_obs


def test_recurrent_ppo_carries_its_lstm_state(tmp_path, scenario) -> None:
    from sb3_contrib import RecurrentPPO

    venv = make_venv(scenario)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        venv,
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        policy_kwargs={"lstm_hidden_size": 8, "net_arch": [16]},
        seed=0,
        device="cpu",
    )
    with one_torch_thread():
        model.learn(32)
    sharpen(model.policy.action_net)
    root = write_run(tmp_path / "rppo", model, venv, "RecurrentPPO")
    policy = LearnedPolicy(root)
    direct = direct_episode(scenario, model, venv, 0, recurrent=True)
    assert_same_episode(direct, controller_episode(scenario, policy, 0))
    # Reset starts a fresh episode: the same episode again gives the same weights.
    assert_same_episode(direct, controller_episode(scenario, policy, 0))
    assert policy.describe() == "RecurrentPPO seed 0 (rppo)"


def test_sac_loads_and_acts(tmp_path, scenario) -> None:
    venv = make_venv(scenario)
    model = SAC(
        "MlpPolicy",
        venv,
        buffer_size=64,
        learning_starts=16,
        batch_size=16,
        policy_kwargs={"net_arch": [32, 32]},
        seed=0,
        device="cpu",
    )
    with one_torch_thread():
        model.learn(24)
    root = write_run(tmp_path / "sac", model, venv, "SAC", seed=3)
    policy = LearnedPolicy(root / "model.zip")
    assert policy.describe() == "SAC seed 3 (sac)"
    direct = direct_episode(scenario, model, venv, 0)
    assert_same_episode(direct, controller_episode(scenario, policy, 0))


def test_a_run_without_observation_normalisation_feeds_raw_observations(tmp_path, scenario) -> None:
    env = DummyVecEnv([lambda: WeightedInterleaveEnv(scenario)])
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    sharpen(model.policy.action_net)
    root = write_run(tmp_path / "raw", model, None, "PPO")
    policy = LearnedPolicy(root)
    assert policy.normalizer is None
    direct = direct_episode(scenario, model, None, 0)
    assert_same_episode(direct, controller_episode(scenario, policy, 0))
    # Rewards alone normalised (the trainer still saves vecnormalize.pkl): raw observations.
    rewards_only = VecNormalize(env, norm_obs=False, norm_reward=True)
    root = write_run(tmp_path / "rewards-only", model, rewards_only, "PPO")
    run = json.loads((root / "run.json").read_text())
    (root / "run.json").write_text(json.dumps({**run, "normalize_observation": False}))
    policy = LearnedPolicy(root)
    assert policy.normalizer is None
    assert_same_episode(direct, controller_episode(scenario, policy, 0))


def test_stochastic_actions_are_seeded_and_leave_torch_alone(ppo_run, scenario) -> None:
    root, _, _ = ppo_run
    before = torch.get_rng_state()
    first = controller_episode(scenario, LearnedPolicy(root, deterministic=False), 0)
    again = controller_episode(scenario, LearnedPolicy(root, deterministic=False), 0)
    np.testing.assert_array_equal(first["weights"], again["weights"])
    assert torch.equal(torch.get_rng_state(), before)
    assert LearnedPolicy(root, deterministic=False).describe() == "PPO seed 0 stochastic (ppo-0)"


# ------------------------------------------------------------------------------ errors
def copy_run(source: Path, target: Path, **changes: Any) -> Path:
    shutil.copytree(source, target)
    run = json.loads((target / "run.json").read_text())
    run.update(changes)
    (target / "run.json").write_text(json.dumps(run))
    return target


def test_missing_files_are_named(ppo_run, tmp_path) -> None:
    root, _, _ = ppo_run
    with pytest.raises(ControllerError, match="no such run directory"):
        LearnedPolicy(tmp_path / "nowhere")
    no_model = copy_run(root, tmp_path / "no-model")
    (no_model / "model.zip").unlink()
    with pytest.raises(ControllerError, match=r"no-model.*model\.zip is missing"):
        LearnedPolicy(no_model)
    no_run = copy_run(root, tmp_path / "no-run")
    (no_run / "run.json").unlink()
    with pytest.raises(ControllerError, match=r"no-run.*run\.json is missing"):
        LearnedPolicy(no_run)
    no_stats = copy_run(root, tmp_path / "no-stats")
    (no_stats / "vecnormalize.pkl").unlink()
    with pytest.raises(ControllerError, match=r"no-stats.*vecnormalize\.pkl is missing"):
        LearnedPolicy(no_stats)
    broken = copy_run(root, tmp_path / "broken")
    (broken / "model.zip").write_bytes(b"not a zip")
    with pytest.raises(ControllerError, match=r"broken.*cannot load model\.zip as PPO"):
        LearnedPolicy(broken)


def test_unknown_algorithm_and_a_wrong_quota_action_are_refused(ppo_run, tmp_path) -> None:
    root, _, _ = ppo_run
    with pytest.raises(ControllerError, match=r"unknown algorithm 'DQN'.*PPO, SAC, RecurrentPPO"):
        LearnedPolicy(copy_run(root, tmp_path / "dqn", algorithm="DQN"))
    # a weights-only model whose run.json claims the quota action (tests/test_quota_action.py
    # runs real ones)
    with pytest.raises(ControllerError, match=r"acts \(2,\); .* 2 nodes and the quota"):
        LearnedPolicy(copy_run(root, tmp_path / "quota", quota_action=True))
    with pytest.raises(ControllerError, match=r"quota_action must be true or false"):
        LearnedPolicy(copy_run(root, tmp_path / "quota-text", quota_action="yes"))


def test_node_count_mismatch_is_refused_at_reset(ppo_run, scenario) -> None:
    root, _, _ = ppo_run
    text = Path(scenario).read_text()
    node = '[[nodes]]\nprofile = "generic-cxl-x8"\ncapacity = "128 GiB"\n'
    three_nodes = Path(scenario).with_name("three-nodes.toml")
    three_nodes.write_text(text.replace("[[apps]]", node + "\n[[apps]]", 1))
    env = WeightedInterleaveEnv(three_nodes)
    env.reset(seed=0)
    policy = LearnedPolicy(root)
    with pytest.raises(ControllerError, match=r"ppo-0: trained on 2 memory nodes.*has 3"):
        policy.reset(context_for(env))


def test_feature_mismatch_is_refused(ppo_run, tmp_path) -> None:
    root, _, _ = ppo_run
    run = json.loads((root / "run.json").read_text())
    n = len(run["features"])
    # a group that lost one of its node columns: the rebuilt groups have one more feature
    fewer = copy_run(root, tmp_path / "fewer", features=run["features"][1:])
    extra = r"\(extra bandwidth\[node0\]\)"
    with pytest.raises(ControllerError, match=rf"fewer.*{n} features instead of {n - 1} {extra}"):
        LearnedPolicy(fewer)
    # whole groups dropped: the names agree, the normaliser's statistics do not
    without_apps = copy_run(root, tmp_path / "no-apps", features=run["features"][:-1])
    with pytest.raises(ControllerError, match=rf"no-apps.*statistics for \({n},\).*{n - 1} feat"):
        LearnedPolicy(without_apps)
    renamed = [*run["features"][:-1], "apps-renamed"]
    with pytest.raises(ControllerError, match=r"renamed: features: unknown feature 'apps-renamed'"):
        LearnedPolicy(copy_run(root, tmp_path / "renamed", features=renamed))


def test_a_policy_keeps_its_features_when_the_default_set_grows(scenario, tmp_path) -> None:
    """A run saved as feature set "default" before the set gained ``damos_quota`` observes
    what it was trained on: its feature names, not today's "default"."""
    older = [g for g in resolve_feature_groups("default") if g != "damos_quota"]
    venv = VecNormalize(
        DummyVecEnv([lambda: WeightedInterleaveEnv(scenario, features=older)]), norm_obs=True
    )
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    with one_torch_thread():
        model.learn(32)
    names = list(venv.get_attr("observation_names")[0])
    assert "damos_quota" not in names
    root = write_run(tmp_path / "older", model, venv, "PPO", features=names)
    assert json.loads((root / "run.json").read_text())["feature_groups"] == "default"
    policy = LearnedPolicy(root)
    env = WeightedInterleaveEnv(scenario)
    env.reset(seed=0)
    policy.reset(context_for(env))
    assert policy.spec.names == tuple(names)
    env.step(np.zeros(2))
    weights = policy.decide(env.last_result.measurements)
    assert weights.shape == (2,)
    assert policy.last_observation is not None and policy.last_observation.shape == (len(names),)


def test_privileged_features_are_refused(ppo_run, tmp_path) -> None:
    root, _, _ = ppo_run
    env = WeightedInterleaveEnv(SHIPPED / "co-runner.toml", features="privileged")
    privileged = copy_run(
        root,
        tmp_path / "privileged",
        feature_groups="privileged",
        features=list(env.observation_names),
    )
    with pytest.raises(ControllerError, match=r"simulator-only.*true_access_share"):
        LearnedPolicy(privileged)


def test_bad_parameters_are_named(ppo_run) -> None:
    root, _, _ = ppo_run
    with pytest.raises(ControllerError, match="'deterministic'"):
        LearnedPolicy(root, deterministic="yes")  # type: ignore[arg-type]
    with pytest.raises(ControllerError, match="'path'"):
        LearnedPolicy(3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- harness
def test_registry_finds_the_sb3_kind(ppo_run) -> None:
    root, _, _ = ppo_run
    assert controller_kinds()["sb3"] is LearnedPolicy
    policy = make_controller("sb3", path=str(root))
    assert isinstance(policy, LearnedPolicy)
    assert policy.describe() == "PPO seed 0 (ppo-0)"


def test_tierenv_compare_runs_a_learned_policy(ppo_run, scenario) -> None:
    root, model, venv = ppo_run
    config = config_from_dict(
        {
            "name": "learned",
            "scenarios": [scenario],
            "seeds": [0],
            "policies": [
                {"name": "learned", "kind": "sb3", "path": str(root)},
                {"name": "auto", "kind": "kernel-auto"},
            ],
            "upper_bound": False,
        }
    )
    results = run_compare(config, workers=1, show_progress=False)
    row = results.episodes.set_index("policy").loc["learned"]
    assert row["label"] == "PPO seed 0 (ppo-0)"
    direct = direct_episode(scenario, model, venv, 0)
    assert row["steps"] == len(direct["reward"])
    assert row["return"] == float(direct["reward"].sum())


WORKER_SCRIPT = """
import sys
import torch

torch.set_num_threads(2)
torch.linalg.qr(torch.randn(512, 512))  # an OpenMP thread team now runs in this parent
import agents.policies.learned  # the sb3 kind, without relying on the registry's list
from experiments.compare.config import config_from_dict
from experiments.compare.runner import run_compare

config = config_from_dict(
    {
        "name": "workers",
        "scenarios": [sys.argv[1]],
        "seeds": [0, 1],
        "policies": [{"name": "learned", "kind": "sb3", "path": sys.argv[2]}],
        "upper_bound": False,
    }
)
results = run_compare(config, workers=2, show_progress=False)
print(results.executor, *results.episodes["return"].tolist())
"""


def test_process_workers_run_learned_policies_without_deadlock(ppo_run, scenario) -> None:
    """The harness builds controllers in its parent process, then forks workers: torch must
    not leave an OpenMP team there (libgomp deadlocks in forked children)."""
    root, model, venv = ppo_run
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, scenario, str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a hang can be ended whole
    )
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the harness's worker processes deadlocked running the sb3 policy")
    assert process.returncode == 0, err
    executor, *returns = out.split()
    assert executor == "processes"
    expected = [float(direct_episode(scenario, model, venv, s)["reward"].sum()) for s in (0, 1)]
    assert [float(r) for r in returns] == expected


def test_trainer_seed_directories_are_labelled_with_their_experiment(ppo_run, tmp_path) -> None:
    root, _, _ = ppo_run
    run = copy_run(root, tmp_path / "ppo-default" / "seed_0")
    assert LearnedPolicy(run).describe() == "PPO seed 0 (ppo-default/seed_0)"
    shutil.copy(run / "model.zip", run / "best.zip")
    assert LearnedPolicy(run / "best.zip").describe() == "PPO seed 0 (ppo-default/seed_0/best.zip)"
