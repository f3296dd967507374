"""Training pipeline: config checking, multi-scenario envs, learning, exact resume, the run
directory contract and the hyperparameter search."""

from __future__ import annotations

import csv
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from agents.training import ConfigError, RunExistsError, load_config, parse_config, train_run
from agents.training.config import algorithm_class
from agents.training.envs import MultiScenarioEnv, ScenarioMismatchError
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

TRAIN_CONFIGS = sorted(Path(__file__).parents[1].glob("experiments/train/*.yaml"))
RUN_JSON_KEYS = {
    "algorithm",
    "seed",
    "timesteps",
    "n_nodes",
    "features",
    "feature_groups",
    "normalize_observation",
    "migration_cost_per_gib",
    "quota_action",
    "env_backend",
    "tierenv_version",
    "git_commit",
    "train_wall_s",
    "resumed",
    "machine",
}


def short_scenario(folder: Path, name: str = "steady-single", seconds: int = 20) -> str:
    """A shipped scenario cut to ``seconds`` (a TOML file in ``folder``)."""
    text = (resources.files("tierenv.workload") / "scenarios" / f"{name}.toml").read_text()
    lines = [
        f"duration_s = {seconds}" if ln.startswith("duration_s") else ln for ln in text.splitlines()
    ]
    lines = [f'name = "{name}-short"' if ln.startswith("name =") else ln for ln in lines]
    path = folder / f"{name}-short.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "algorithm": "PPO",
        "hyperparameters": {"n_steps": 32, "batch_size": 32, "n_epochs": 2},
        "env": {"backend": "full", "n_envs": 2, "scenarios": ["co-runner"]},
        "eval": {"scenarios": ["co-runner"], "every_steps": 64},
        "timesteps": 128,
        "checkpoint_every": 64,
    }
    for key, value in changes.items():
        if key in ("env", "eval"):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# ------------------------------------------------------------------------------ configs
def test_unknown_algorithm_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"cfg\.yaml: algorithm: .*'A2X'.*PPO, SAC, RecurrentPPO"):
        parse_config(base(algorithm="A2X"), source="cfg.yaml")


def test_unknown_hyperparameter_is_named_with_valid_ones():
    with pytest.raises(ConfigError, match=r"hyperparameters\.learning_rat: .*learning_rate"):
        parse_config(base(hyperparameters={"learning_rat": 0.1}))


def test_unknown_policy_kwarg_and_reserved_hyperparameter():
    with pytest.raises(ConfigError, match=r"policy_kwargs\.net_arc: .*net_arch"):
        parse_config(base(hyperparameters={"policy_kwargs": {"net_arc": [8]}}))
    with pytest.raises(ConfigError, match=r"hyperparameters\.seed: is set by the trainer"):
        parse_config(base(hyperparameters={"seed": 3}))


def test_policy_must_suit_algorithm():
    with pytest.raises(ConfigError, match=r"policy: 'MlpLstmPolicy' .* valid: MlpPolicy"):
        parse_config(base(policy="MlpLstmPolicy"))


def test_bad_scenario_named():
    with pytest.raises(ConfigError, match=r"env\.scenarios: bad scenario 'no-such'.*co-runner"):
        parse_config(base(env={"scenarios": ["co-runner", "no-such"]}))
    with pytest.raises(ConfigError, match=r"eval\.scenarios: bad scenario 'nope'"):
        parse_config(base(eval={"scenarios": ["nope"]}))


def test_bad_backend_feature_and_unknown_field():
    with pytest.raises(ConfigError, match=r"env\.backend: .*'gpu'.*full, fluid"):
        parse_config(base(env={"backend": "gpu"}))
    with pytest.raises(ConfigError, match=r"env\.features: .*'nope'"):
        parse_config(base(env={"features": ["nope"]}))
    with pytest.raises(ConfigError, match=r"timestep: unknown field; valid: name"):
        parse_config({**base(), "timestep": 3})
    with pytest.raises(ConfigError, match=r"env\.n_envs: backend fluid .* \(1\) .* \(2\)"):
        parse_config(
            base(env={"backend": "fluid", "n_envs": 1, "scenarios": ["co-runner", "steady-single"]})
        )


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(base(timesteps=0)))
    with pytest.raises(ConfigError, match=rf"{path}: timesteps: must be a positive integer"):
        load_config(path)


def test_scenarios_with_different_node_counts_are_rejected(tmp_path):
    text = (resources.files("tierenv.workload") / "scenarios" / "steady-single.toml").read_text()
    one_node = text.split("[[nodes]]")
    one_node = one_node[0] + "[[nodes]]" + one_node[1] + "[[apps]]" + text.split("[[apps]]")[1]
    path = tmp_path / "one-node.toml"
    path.write_text(one_node.replace('name = "steady-single"', 'name = "one-node"'))
    with pytest.raises(ConfigError, match=r"same number of memory nodes.*one-node 1"):
        parse_config(base(eval={"scenarios": ["co-runner", str(path)]}))
    with pytest.raises(ScenarioMismatchError, match="one-node"):
        MultiScenarioEnv(["co-runner", str(path)])


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_shipped_training_configs_load(path):
    config = load_config(path)
    assert config.name == path.stem
    assert parse_config(yaml.safe_load(config.to_yaml())) == config.replace(source="<config>")


# --------------------------------------------------------------------------------- envs
def test_multi_scenario_env_draws_scenarios_from_its_seed():
    def sequence(seed: int) -> list[str]:
        env = MultiScenarioEnv(["co-runner", "steady-single", "latency-vs-batch"])
        env.reset(seed=seed)
        return [env.scenario] + [env.reset()[1]["scenario"] for _ in range(7)]

    assert sequence(3) == sequence(3)
    assert len(set(sequence(3))) > 1


# ----------------------------------------------------------------------------- training
def random_policy_return(scenario: str, episodes: int = 2) -> float:
    env = WeightedInterleaveEnv(scenario)
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=1000 + episode)
        total, truncated = 0.0, False
        while not truncated:
            _, reward, _, truncated, _ = env.step(env.action_space.sample())
            total += reward
        returns.append(total)
    return float(np.mean(returns))


def test_short_training_beats_a_random_policy(tmp_path):
    scenario = "steady-single"  # random weights spill to CXL: ~79 against ~123 all-DDR
    config = parse_config(
        base(
            hyperparameters={
                "learning_rate": 0.001,
                "n_steps": 64,
                "batch_size": 64,
                "n_epochs": 5,
                "policy_kwargs": {"net_arch": [32, 32]},
            },
            env={"backend": "fluid", "n_envs": 16, "scenarios": [scenario]},
            eval={"scenarios": [scenario], "every_steps": 2048, "episodes": 1},
            timesteps=8192,
            checkpoint_every=10**9,
        )
    )
    run = train_run(config, 0, tmp_path / "run", progress=False)
    rows = read_eval(run)
    first, last = float(rows[0]["episode_return"]), float(rows[-1]["episode_return"])
    random_return = random_policy_return(scenario)
    assert last > random_return + 20.0, (first, last, random_return)
    assert last > first


def read_eval(run: Path) -> list[dict[str, str]]:
    with (run / "eval.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def tiny_config(tmp_path: Path, algorithm: str) -> Any:
    scenario = short_scenario(tmp_path, "steady-single", seconds=20)
    hyper: dict[str, Any] = {"n_steps": 32, "batch_size": 32, "n_epochs": 2}
    policy = "MlpPolicy"
    if algorithm == "SAC":
        hyper = {"learning_starts": 40, "batch_size": 32, "buffer_size": 1000}
    if algorithm == "RecurrentPPO":
        policy = "MlpLstmPolicy"
        hyper |= {"policy_kwargs": {"lstm_hidden_size": 16, "net_arch": [16]}}
    n_envs = 1 if algorithm == "SAC" else 2
    return parse_config(
        base(
            algorithm=algorithm,
            policy=policy,
            hyperparameters=hyper,
            env={"n_envs": n_envs, "scenarios": [scenario, "co-runner"]},
            eval={"scenarios": [scenario, "co-runner"], "every_steps": 64},
            timesteps=256 if algorithm != "SAC" else 160,
            checkpoint_every=128 if algorithm != "SAC" else 80,
        )
    )


@pytest.mark.parametrize("algorithm", ["PPO", "SAC", "RecurrentPPO"])
def test_resume_from_checkpoint_continues_exactly(tmp_path, algorithm):
    config = tiny_config(tmp_path, algorithm)
    whole = train_run(config, 0, tmp_path / "whole", progress=False)
    checkpoints = sorted((whole / "checkpoints").iterdir(), key=lambda p: int(p.name[5:]))
    assert checkpoints, "no checkpoint written"
    first = checkpoints[0]
    # the run as an interruption right after the first checkpoint leaves it
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copytree(first, cut / "checkpoints" / first.name)
    shutil.copy(whole / "config.yaml", cut / "config.yaml")
    shutil.copy(whole / "eval.csv", cut / "eval.csv")  # with rows from after the checkpoint
    resumed = train_run(config, 0, cut, resume=True, progress=False)
    cls = algorithm_class(algorithm)
    a = cls.load(whole / "model.zip", device="cpu").policy.state_dict()
    b = cls.load(resumed / "model.zip", device="cpu").policy.state_dict()
    assert a.keys() == b.keys()
    at_checkpoint = cls.load(first / "model.zip", device="cpu").policy.state_dict()
    assert not all(torch.equal(a[key], at_checkpoint[key]) for key in a)  # trained after it
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert read_eval(whole) == read_eval(resumed)
    assert (
        json.loads((whole / "run.json").read_text())["timesteps"]
        == json.loads((resumed / "run.json").read_text())["timesteps"]
    )


def test_run_directory_contract(tmp_path):
    config = tiny_config(tmp_path, "PPO")
    run = train_run(config, 3, tmp_path / "run", progress=False)
    for name in ("config.yaml", "model.zip", "vecnormalize.pkl", "run.json", "eval.csv"):
        assert (run / name).is_file(), name
    assert any((run / "tb").rglob("events.out.tfevents.*"))
    assert (run / "checkpoints" / "step_128" / "model.zip").is_file()
    info = json.loads((run / "run.json").read_text())
    assert set(info) == RUN_JSON_KEYS
    env = WeightedInterleaveEnv(config.env.scenarios[0], features=config.env.features)
    assert info["features"] == list(env.observation_names)
    assert info["n_nodes"] == env.n_nodes == 2
    assert (info["algorithm"], info["seed"], info["env_backend"]) == ("PPO", 3, "full")
    assert info["timesteps"] >= config.timesteps and info["quota_action"] is False
    assert info["feature_groups"] == "default" and info["normalize_observation"] is True
    assert info["train_wall_s"] > 0 and info["resumed"] is False and "CPU" in info["machine"]
    rows = read_eval(run)
    assert list(rows[0]) == ["timesteps", "scenario", "episode_return"]
    scenarios = {row["scenario"] for row in rows}
    assert scenarios == {"steady-single-short", "co-runner"}
    assert int(rows[-1]["timesteps"]) == info["timesteps"]
    as_run = load_config(run / "config.yaml")
    assert as_run.seeds == (3,) and as_run.env == config.env
    with pytest.raises(RunExistsError, match="resume"):
        train_run(config, 3, run, progress=False)
    assert train_run(config, 3, run, resume=True, progress=False) == run  # finished: no-op
    with pytest.raises(ConfigError, match="differs in hyperparameters"):
        changed = config.replace(hyperparameters={**config.hyperparameters, "n_epochs": 3})
        train_run(changed, 3, run, resume=True, progress=False)


def test_tune_writes_a_report(tmp_path):
    from agents.training.tune import tune

    config = tiny_config(tmp_path, "PPO")
    result = tune(config, n_trials=2, timesteps=128, out=tmp_path / "t.md", progress=False)
    text = result.report.read_text()
    assert "| trial | learning_rate |" in text and "COMPLETE" in text
    snippet = text.split("```yaml\n")[1].split("```")[0]
    hyper = yaml.safe_load(snippet)["hyperparameters"]
    assert hyper == result.best_hyperparameters
    parse_config(base(hyperparameters=hyper))
    with pytest.raises(ConfigError, match="tune supports PPO, RecurrentPPO"):
        tune(tiny_config(tmp_path, "SAC"), out=tmp_path / "s.md")


def test_train_seeds_in_parallel_workers(tmp_path):
    from agents.training import train

    config = tiny_config(tmp_path, "PPO").replace(seeds=(0, 1))
    dirs = train(config, out_root=tmp_path, workers=2, progress=False)
    assert [d.name for d in dirs] == ["seed_0", "seed_1"]
    params = [algorithm_class("PPO").load(d / "model.zip").policy.state_dict() for d in dirs]
    serial = train_run(config, 1, tmp_path / "serial", progress=False)
    again = algorithm_class("PPO").load(serial / "model.zip").policy.state_dict()
    assert all(torch.equal(params[1][k], again[k]) for k in again)
    assert not all(torch.equal(params[0][k], params[1][k]) for k in again)


@pytest.mark.slow
def test_seeds_trained_as_ray_tasks_are_the_seeds_trained_here(tmp_path):
    """A local Ray instance (as a cluster would, with --ray-address) gives bit-identical
    models: each task trains one seed with one torch thread."""
    pytest.importorskip("ray")
    from agents.training import train

    config = tiny_config(tmp_path, "PPO").replace(seeds=(0, 1))
    dirs = train(config, out_root=tmp_path / "ray", workers=2, progress=False, use_ray=True)
    assert [d.name for d in dirs] == ["seed_0", "seed_1"]
    serial = train_run(config, 1, tmp_path / "serial", progress=False)
    on_ray = algorithm_class("PPO").load(dirs[1] / "model.zip").policy.state_dict()
    here = algorithm_class("PPO").load(serial / "model.zip").policy.state_dict()
    assert all(torch.equal(on_ray[k], here[k]) for k in here)


def test_a_fluid_training_venv_round_trips_through_a_checkpoint_snapshot() -> None:
    """Checkpoints pickle the training envs; the fluid backend's SB3 wrappers cache
    unpicklable class members, which the snapshot drops and rebuilds."""
    from agents.training import load_config
    from agents.training.envs import dumps_state, loads_state, make_train_venv, venv_state

    config = load_config(Path(__file__).resolve().parents[1] / "experiments/train/ppo-fluid.yaml")
    venv = make_train_venv(config)
    venv.seed(0)
    venv.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (venv.num_envs, 2)).astype(np.float32)
    venv.step(actions)
    copy = loads_state(dumps_state(venv_state(venv)))["inner"]
    inner = venv.venv
    for original, restored in zip(inner.step(actions)[:3], copy.step(actions)[:3], strict=True):
        np.testing.assert_array_equal(original, restored)


# ----------------------------------------------------------- distributions and suites
SUITE = Path(__file__).resolve().parents[1] / "experiments" / "suites" / "test"


def test_configs_train_on_a_distribution_and_evaluate_on_a_suite(tmp_path):
    config_file = tmp_path / "cfg.yaml"
    shutil.copytree(SUITE, tmp_path / "suite")
    data = base(
        env={"backend": "fluid", "n_envs": 4, "scenarios": ["random:default"]},
        eval={"scenarios": ["suite/default-s1000-00[0-2].toml"]},
    )
    config_file.write_text(yaml.safe_dump(data))
    config = load_config(config_file)
    assert config.env.scenarios == ("random:default",) and config.n_nodes == 2
    assert [Path(s).name for s in config.eval.scenarios] == [
        f"default-s1000-00{k}.toml" for k in range(3)
    ]
    # a folder expands to its scenario files, a distribution file is taken beside the config
    (tmp_path / "mine.toml").write_text(
        (
            Path(__file__).resolve().parents[1] / "tierenv/workload/distributions/default.toml"
        ).read_text()
    )
    data["env"]["scenarios"] = ["random:mine.toml"]
    data["eval"]["scenarios"] = ["suite"]
    config_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"same number of memory nodes.*three-node-s1000"):
        load_config(config_file)  # the suite folder mixes two-, three- and four-node scenarios
    data["eval"]["scenarios"] = ["random:default"]
    config_file.write_text(yaml.safe_dump(data))
    config = load_config(config_file)
    assert config.env.scenarios == (f"random:{(tmp_path / 'mine.toml').resolve()}",)


def test_bad_distribution_and_empty_pattern_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"env\.scenarios: bad scenario 'random:nope'.*default"):
        parse_config(base(env={"scenarios": ["random:nope"]}))
    with pytest.raises(ConfigError, match=r"eval\.scenarios: .*'none-\*\.toml' names no scenario"):
        parse_config(base(eval={"scenarios": ["none-*.toml"]}), base=tmp_path)
    with pytest.raises(ConfigError, match=r"same number of memory nodes.*random:three-node 3"):
        parse_config(base(eval={"scenarios": ["co-runner", "random:three-node"]}))


def test_fluid_training_batches_vary_runs_with_the_seed():
    """The fluid backend draws a run of each scenario per episode (its [variation]), as the
    full env does: the same seed repeats the rewards, another seed changes them."""
    from agents.training.envs import make_base_venv

    config = parse_config(
        base(env={"backend": "fluid", "n_envs": 4, "scenarios": ["co-runner", "random:default"]})
    )

    def rewards(seed: int) -> np.ndarray:
        venv = make_base_venv(config)
        venv.seed(seed)
        venv.reset()
        actions = np.zeros((venv.num_envs, 2), dtype=np.float32)
        return np.concatenate([venv.step(actions)[1] for _ in range(40)])

    np.testing.assert_array_equal(rewards(0), rewards(0))
    assert not np.array_equal(rewards(0), rewards(1))


def test_a_distribution_is_named_by_its_reference():
    env = MultiScenarioEnv(["random:default"])
    _, info = env.reset(seed=0)
    assert info["scenario"] == "random:default"
