"""The envs driven by the RL tools researchers use: TorchRL, rl_zoo3 with the shipped
hyperparameter file, and the CleanRL-style PPO example (issue 20)."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import tierenv  # noqa: F401 - registers the env ids
from tierenv.workload.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
ZOO_DIR = ROOT / "agents" / "training" / "rl_zoo3"
ENV_ID = "tierenv/WeightedInterleave-v0"
FLUID_ID = "tierenv/WeightedInterleaveFluid-v0"

needs_torchrl = pytest.mark.skipif(
    importlib.util.find_spec("torchrl") is None,
    reason="torchrl is not installed (pip install torch==2.13.0 -e '.[test]' installs it)",
)
needs_rl_zoo3 = pytest.mark.skipif(
    importlib.util.find_spec("rl_zoo3") is None,
    reason="rl_zoo3 is not installed (pip install torch==2.13.0 -e '.[zoo]' installs it)",
)


# --- TorchRL ------------------------------------------------------------------------------------


@needs_torchrl
@pytest.mark.parametrize("env_id", [ENV_ID, "tierenv/WeightedInterleave-Discrete-v0"])
def test_torchrl_gym_env_passes_check_env_specs_with_the_info_read(env_id):
    """TorchRL's GymEnv passes frameskip (dropped on Python's TypeError wording) and reads
    every info key into the rollout (numeric info only)."""
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    env = GymEnv(env_id)
    env.auto_register_info_dict()
    check_env_specs(env, seed=0)
    rollout = env.rollout(3)
    assert rollout["next", "app_running"].shape == (3, 2)
    assert rollout["next", "weights"].shape == (3, 2)
    assert rollout["next", "observation"].shape[0] == 3
    env.close()


@needs_torchrl
@pytest.mark.parametrize("mode", ["same_step", "disabled"])
def test_torchrl_drives_the_fluid_vector_env_across_episode_ends(mode):
    from torchrl.envs import GymWrapper
    from torchrl.envs.utils import check_env_specs

    scenario = dataclasses.replace(load_scenario("co-runner"), duration_s=4.0)
    envs = gym.make_vec(FLUID_ID, num_envs=3, scenario=scenario, autoreset_mode=mode)
    env = GymWrapper(envs)
    check_env_specs(env, seed=0)
    rollout = env.rollout(10, break_when_any_done=False)
    truncated = rollout["next", "truncated"].squeeze(-1).numpy()
    # episodes of 4 steps, restarted by TorchRL or by the env: truncated at steps 4 and 8
    assert truncated.shape == (3, 10)
    assert truncated.any(axis=0).nonzero()[0].tolist() == [3, 7]
    assert np.all(np.isfinite(rollout["next", "reward"].numpy()))


# --- rl_zoo3 ------------------------------------------------------------------------------------


def _load_zoo(name: str) -> dict:
    return yaml.safe_load((ZOO_DIR / name).read_text())


def test_zoo_hyperparameters_are_the_tuned_training_settings():
    """The rl_zoo3 file carries experiments/train/ppo-tuned.yaml and sac-default.yaml."""
    for zoo_file, train_file in [("ppo.yml", "ppo-tuned.yaml"), ("sac.yml", "sac-default.yaml")]:
        zoo = _load_zoo(zoo_file)[ENV_ID]
        config = yaml.safe_load((ROOT / "experiments" / "train" / train_file).read_text())
        for key, value in config["hyperparameters"].items():
            if key == "policy_kwargs":
                assert zoo[key] == f"dict(net_arch={value['net_arch']})"
            else:
                assert zoo[key] == pytest.approx(value), (zoo_file, key)
        assert zoo["n_envs"] == config["env"]["n_envs"]
        assert zoo["n_timesteps"] == config["timesteps"]
        assert zoo["policy"] == config["policy"]
        assert zoo["normalize"] is True and config["env"]["normalize"] == {
            "observation": True,
            "reward": True,
        }
    ppo = _load_zoo("ppo.yml")
    assert ppo["tierenv/WeightedInterleave-Discrete-v0"] == ppo[ENV_ID]


@needs_rl_zoo3
def test_rl_zoo3_trains_with_the_shipped_hyperparameters(tmp_path):
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV_ID,
        "--gym-packages", "tierenv", "--conf-file", str(ZOO_DIR / "ppo.yml"),
        "-n", "128", "--eval-freq", "-1", "--seed", "0", "--log-folder", str(tmp_path),
        "--env-kwargs", "scenario:'steady-single'",
        "-params", "n_steps:32", "n_epochs:1",  # a tiny budget: 4 envs x 32 steps
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ppo" / "tierenv-WeightedInterleave-v0_1"
    assert (run / "tierenv-WeightedInterleave-v0.zip").is_file()
    assert (run / "tierenv-WeightedInterleave-v0" / "vecnormalize.pkl").is_file()
    used = yaml.unsafe_load((run / "tierenv-WeightedInterleave-v0" / "config.yml").read_text())
    used = dict(used)
    assert used["learning_rate"] == pytest.approx(6.87e-4)  # the tuned values, not rl_zoo3's
    assert used["gamma"] == 0.9 and used["gae_lambda"] == 0.9 and used["batch_size"] == 32


# --- the CleanRL-style example ------------------------------------------------------------------


def test_the_cleanrl_style_ppo_example_trains_on_same_step_infos(tmp_path):
    from experiments.cleanrl_ppo import Args, parse_args, train

    args = Args(
        scenario="steady-single",
        total_timesteps=256,
        num_envs=4,
        num_steps=32,
        minibatch_size=64,
        update_epochs=2,
        max_episode_steps=12,
        save=str(tmp_path / "agent.pt"),
    )
    result = train(args)
    assert result["steps"] == 256
    # 4 envs x 64 steps in episodes of 12: 20 episodes ended, each bootstrapped from final_obs
    assert len(result["episode_returns"]) == 20 == result["bootstrapped"]
    assert all(np.isfinite(r) and r > 0 for r in result["episode_returns"])
    assert all(np.isfinite(v) for v in result["losses"].values())
    assert (tmp_path / "agent.pt").is_file()
    assert parse_args(["--num-envs", "2", "--no-anneal-lr"]) == Args(num_envs=2, anneal_lr=False)
