"""``trainer: lean`` through ``train_run``: the config checks, and a lean run folder that is an
SB3 run folder (evaluation, checkpoints, exact resume, ``LearnedPolicy``).

The trained weights are compared with a ``LeanPPO`` trained directly for the same steps:
evaluation and checkpoints must not disturb training, and the saved model must be the lean
model's (not the SB3 model's initialisation).
"""

from __future__ import annotations

import csv
import importlib
import json
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from agents.training import ConfigError, load_config, parse_config, train_run
from agents.training.evaluate import Evaluator
from agents.training.lean_ppo import LeanPPO
from tests.test_training import short_scenario
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

ROOT = Path(__file__).resolve().parents[1]


def lean(**changes: Any) -> dict[str, Any]:
    """A tiny lean config as YAML values: 4 fluid envs, 64 steps per update."""
    data: dict[str, Any] = {
        "name": "lean",
        "algorithm": "PPO",
        "trainer": "lean",
        "hyperparameters": {
            "n_steps": 16,
            "batch_size": 32,
            "n_epochs": 2,
            "learning_rate": "lin_0.001",
            "policy_kwargs": {"net_arch": [16, 16]},
        },
        "env": {"backend": "fluid", "n_envs": 4, "scenarios": ["co-runner"]},
        "eval": {"scenarios": ["co-runner"], "every_steps": 256},
        "timesteps": 1024,
        "checkpoint_every": 384,
    }
    for key, value in changes.items():
        if key in ("env", "eval", "hyperparameters"):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# ------------------------------------------------------------------------------ configs
def test_trainer_defaults_to_sb3_and_is_written_back():
    assert parse_config({**lean(), "trainer": "sb3"}).trainer == "sb3"
    data = lean()
    del data["trainer"]
    assert parse_config(data).trainer == "sb3"
    config = parse_config(lean())
    assert config.trainer == "lean" and config.to_dict()["trainer"] == "lean"
    assert parse_config(config.to_dict()) == config
    assert load_config(ROOT / "experiments/train/ppo-random-lean.yaml").trainer == "lean"


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"trainer": "jax"}, "trainer", r"unknown trainer 'jax'; valid: sb3, lean"),
        ({"algorithm": "SAC", "hyperparameters": None}, "algorithm", r"trainer lean needs PPO"),
        (
            {"algorithm": "RecurrentPPO", "policy": "MlpLstmPolicy", "hyperparameters": None},
            "algorithm",
            r"trainer lean needs PPO, got 'RecurrentPPO'",
        ),
        ({"env": {"backend": "full"}}, "env.backend", r"trainer lean needs fluid, got 'full'"),
        ({"hyperparameters": {"target_kl": 0.02}}, "hyperparameters", r"target_kl"),
        ({"hyperparameters": {"clip_range_vf": 0.2}}, "hyperparameters", r"clip_range_vf"),
        ({"hyperparameters": {"use_sde": True}}, "hyperparameters", r"use_sde"),
        ({"hyperparameters": {"stats_window_size": 10}}, "hyperparameters", r"stats_window_size"),
        (
            {"hyperparameters": {"policy_kwargs": {"activation_fn": "relu"}}},
            "hyperparameters",
            r"tanh activations only, not 'ReLU'",
        ),
        (
            {"hyperparameters": {"policy_kwargs": {"net_arch": {"pi": [8], "vf": [16]}}}},
            "hyperparameters",
            r"same hidden sizes for pi and vf",
        ),
        (
            {"hyperparameters": {"batch_size": 128}},
            "hyperparameters.batch_size",
            r"batch_size <= n_steps x env.n_envs = 64",
        ),
    ],
)
def test_what_lean_cannot_train_fails_at_load_naming_the_field(changes, field, problem):
    data = lean(**{k: v for k, v in changes.items() if v is not None})
    for key, value in changes.items():
        if value is None:
            data[key] = {}
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cfg.yaml")
    assert str(info.value).startswith(f"cfg.yaml: {field}: "), str(info.value)
    assert info.value.path == field
    assert re.search(problem, str(info.value)), str(info.value)


# -------------------------------------------------------------------------------- runs
def read_eval(run: Path) -> list[dict[str, str]]:
    with (run / "eval.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def policy_state(path: Path) -> dict[str, torch.Tensor]:
    return PPO.load(path, device="cpu").policy.state_dict()


@pytest.fixture(scope="module")
def lean_run(tmp_path_factory) -> tuple[Any, Path]:
    folder = tmp_path_factory.mktemp("lean")
    scenario = short_scenario(folder)
    config = parse_config(lean(eval={"scenarios": [scenario]}))
    return config, train_run(config, 2, folder / "run", progress=False)


def test_a_lean_run_folder_is_an_sb3_run_folder(lean_run):
    _, run = lean_run
    for name in ("config.yaml", "model.zip", "vecnormalize.pkl", "run.json", "eval.csv"):
        assert (run / name).is_file(), name
    info = json.loads((run / "run.json").read_text())
    assert (info["trainer"], info["algorithm"], info["env_backend"]) == ("lean", "PPO", "fluid")
    assert info["seed"] == 2 and info["timesteps"] == 1024 and info["resumed"] is False
    assert load_config(run / "config.yaml").trainer == "lean"
    # evaluations every 256 steps on update boundaries (64 steps), then the final one
    steps = sorted({int(row["timesteps"]) for row in read_eval(run)})
    assert steps == [256, 512, 768, 1024]
    assert {row["scenario"] for row in read_eval(run)} == {"steady-single-short"}
    # checkpoints at 384 and 768 (none after the last update, as SB3's)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_384", "step_768"]
    for checkpoint in (run / "checkpoints").iterdir():
        for name in ("model.zip", "vecnormalize.pkl", "lean.pkl.z", "checkpoint.json"):
            assert (checkpoint / name).is_file(), (checkpoint.name, name)
    # TensorBoard: per-update training scalars and the eval scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((run / "tb").glob("sb3_*")))).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/value_loss", "train/policy_gradient_loss", "rollout/ep_rew_mean"} <= tags
    assert "eval/steady-single-short/return" in tags
    assert len(events.Scalars("train/value_loss")) == 1024 // 64


def test_the_saved_model_is_the_lean_model_trained_undisturbed(lean_run):
    """Evaluation and checkpoints do not change what lean trains, and the folder holds the
    lean model: its weights and normalisation statistics."""
    config, run = lean_run
    direct = LeanPPO.from_config(config, seed=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct.learn(config.timesteps)
    finally:
        torch.set_num_threads(threads)
        direct.close()
    saved = policy_state(run / "model.zip")
    expected = direct.net.sb3_state_dict()
    assert saved.keys() == expected.keys()
    for key in expected:
        assert torch.equal(saved[key], expected[key]), key
    normalizer = pickle.loads((run / "vecnormalize.pkl").read_bytes())  # VecNormalize.save's
    assert isinstance(normalizer, VecNormalize)
    np.testing.assert_array_equal(normalizer.obs_rms.mean, direct.normalizer.obs_rms.mean)
    np.testing.assert_array_equal(normalizer.ret_rms.var, direct.normalizer.ret_rms.var)
    # a checkpoint holds the model at its step, not the final one
    early = policy_state(run / "checkpoints" / "step_384" / "model.zip")
    assert not all(torch.equal(early[key], saved[key]) for key in saved)


def test_evaluations_score_the_lean_model_of_their_step(lean_run):
    """The evaluation at 768 ran on the weights and statistics of that step (the checkpoint
    taken right after it holds them), the final one on the saved model."""
    config, run = lean_run
    evaluator = Evaluator(config)
    rows = read_eval(run)
    for step, folder in ((768, run / "checkpoints" / "step_768"), (1024, run)):
        model = PPO.load(folder / "model.zip", device="cpu")
        normalizer = pickle.loads((folder / "vecnormalize.pkl").read_bytes())
        returns = evaluator(model, normalizer)["steady-single-short"]
        logged = [float(row["episode_return"]) for row in rows if int(row["timesteps"]) == step]
        np.testing.assert_allclose(logged, returns, atol=1e-6)


def test_learned_policy_loads_and_runs_a_lean_run(lean_run):
    from agents.policies.learned import LearnedPolicy
    from tests.test_learned_policy import context_for

    _, run = lean_run
    policy = LearnedPolicy(run)
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=5)
    policy.reset(context_for(env, seed=5))
    rewards = []
    for _ in range(5):
        weights = policy.decide(env.last_result.measurements)
        _, reward, _, truncated, _ = env.step_weights(weights)
        rewards.append(reward)
        assert not truncated
    assert np.all(np.isfinite(rewards))


def test_resume_continues_a_lean_run_exactly_and_refuses_mixing(lean_run, tmp_path):
    config, whole = lean_run
    first = whole / "checkpoints" / "step_384"
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copytree(first, cut / "checkpoints" / first.name)
    for name in ("config.yaml", "eval.csv"):  # eval.csv with rows from after the checkpoint
        shutil.copy(whole / name, cut / name)
    marker = cut / "checkpoints" / first.name / "marker"
    marker.touch()  # gone if the resumed run starts over and rewrites the checkpoint
    resumed = train_run(config, 2, cut, resume=True, progress=False)
    assert marker.is_file(), "the run started over instead of resuming"
    a, b = policy_state(whole / "model.zip"), policy_state(resumed / "model.zip")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert read_eval(whole) == read_eval(resumed)
    assert json.loads((resumed / "run.json").read_text())["resumed"] is True
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["step_384", "step_768"]
    # the other trainer's checkpoints and config are refused, never mixed
    with pytest.raises(ConfigError, match=r"cannot resume: the config differs in trainer"):
        train_run(config.replace(trainer="sb3"), 2, cut, resume=True, progress=False)
    bare = tmp_path / "bare"
    (bare / "checkpoints").mkdir(parents=True)
    shutil.copytree(first, bare / "checkpoints" / first.name)
    (bare / "checkpoints" / first.name / "lean.pkl.z").unlink()  # as an SB3 checkpoint
    with pytest.raises(ConfigError, match=rf"{bare}: cannot resume with trainer lean: step_384"):
        train_run(config, 2, bare, resume=True, progress=False)
    shutil.copytree(first, bare / "checkpoints" / "step_512")  # a lean one under SB3
    with pytest.raises(ConfigError, match=rf"{bare}: cannot resume with trainer sb3: step_512"):
        train_run(config.replace(trainer="sb3"), 2, bare, resume=True, progress=False)
    assert sorted(p.name for p in bare.iterdir()) == ["checkpoints"]  # nothing written


def test_cli_trainer_override(tmp_path, capsys):
    from tierenv.cli import main

    config = tmp_path / "cfg.yaml"
    data = lean(timesteps=128, eval={"scenarios": [short_scenario(tmp_path)]})
    data["trainer"] = "sb3"
    config.write_text(json.dumps(data))  # JSON is YAML
    runs = tmp_path / "runs"
    assert main(["train", str(config), "--runs", str(runs), "--trainer", "lean", "--quiet"]) == 0
    run = runs / "lean" / "seed_0"
    assert json.loads((run / "run.json").read_text())["trainer"] == "lean"
    assert load_config(run / "config.yaml").trainer == "lean"
    # the override is checked as the config's own key is
    data["env"]["backend"] = "full"
    config.write_text(json.dumps(data))
    capsys.readouterr()
    argv = ["train", str(config), "--runs", str(tmp_path / "r2"), "--trainer", "lean"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{config} (with --trainer lean): env.backend: trainer lean needs fluid" in err
    assert not (tmp_path / "r2" / "lean").exists()


def test_tune_searches_with_the_lean_trainer(tmp_path, monkeypatch):
    """``tierenv tune`` on a ``trainer: lean`` config trains its trials with the lean
    trainer and scores them by their evaluations, as it does with SB3's."""
    from agents.training.tune import tune

    training = importlib.import_module("agents.training.train")  # the package exports train()

    lean_calls = []
    learn_lean = training._learn_lean

    def counted(*args: Any, **kwargs: Any) -> Any:
        lean_calls.append(1)
        return learn_lean(*args, **kwargs)

    monkeypatch.setattr(training, "_learn_lean", counted)
    data = lean(timesteps=256, eval={"scenarios": [short_scenario(tmp_path)], "every_steps": 64})
    config = parse_config(data, source="lean.yaml")
    result = tune(config, n_trials=2, timesteps=256, out=tmp_path / "t.md", progress=False)
    text = result.report.read_text()
    assert text.count("COMPLETE") >= 2 and all(r["value"] is not None for r in result.trials)
    assert len(lean_calls) == 2
    parse_config({**data, "hyperparameters": result.best_hyperparameters})
