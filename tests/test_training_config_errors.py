"""Issue 19 item 10: every bad training config fails up front with one ``file: field: problem``
line, before anything is written (``n_steps: "many"``, ``batch_size: 0`` and ``net_arch:
[-16]`` gave raw tracebacks and left ``runs/.../seed_0/config.yaml``; ``name: ".."`` trained
outside ``--runs``)."""

from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.training import ConfigError, load_config, parse_config, train
from agents.training.config import (
    ENV_KEYS,
    EVAL_KEYS,
    MAX_BUFFER_SIZE,
    MAX_LAYER_WIDTH,
    MAX_N_ENVS,
    MAX_ROLLOUT_STEPS,
    MAX_SEED,
    NORMALIZE_KEYS,
    TOP_LEVEL_KEYS,
    EnvConfig,
    EvalConfig,
    build_hyperparameters,
)
from tierenv.cli import main
from tierenv.schema import SchemaError

# the module (the package exports its ``train`` function under the same name)
train_module = importlib.import_module("agents.training.train")


def config(**changes: Any) -> dict[str, Any]:
    """A small valid PPO config with ``changes`` (``hyperparameters``, ``policy_kwargs``,
    ``env`` and ``eval`` are merged into the defaults)."""
    data: dict[str, Any] = {
        "name": "t",
        "algorithm": "PPO",
        "hyperparameters": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
        "env": {"backend": "fluid", "n_envs": 1, "scenarios": ["co-runner"]},
        "eval": {"scenarios": ["co-runner"], "every_steps": 64},
        "timesteps": 64,
    }
    for key, value in changes.items():
        if key == "policy_kwargs":
            data["hyperparameters"]["policy_kwargs"] = value
        elif key in ("hyperparameters", "env", "eval"):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# case -> (config, field named, problem pattern)
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "n_steps_text": (config(hyperparameters={"n_steps": "many"}), "hyperparameters.n_steps",
                     "must be an integer in 1..1,000,000, got 'many'"),
    "batch_size_0": (config(hyperparameters={"batch_size": 0}), "hyperparameters.batch_size",
                     "got 0"),
    "batch_size_1": (config(hyperparameters={"batch_size": 1}), "hyperparameters.batch_size",
                     "in 2.."),
    "net_arch_negative": (config(policy_kwargs={"net_arch": [-16]}),
                          "hyperparameters.policy_kwargs.net_arch", "layer width -16"),
    "net_arch_huge": (config(policy_kwargs={"net_arch": [10**8]}),
                      "hyperparameters.policy_kwargs.net_arch", f"1..{MAX_LAYER_WIDTH}"),
    "net_arch_deep": (config(policy_kwargs={"net_arch": [8] * 9}),
                      "hyperparameters.policy_kwargs.net_arch", "at most 8 layer widths"),
    "net_arch_text": (config(policy_kwargs={"net_arch": "64,64"}),
                      "hyperparameters.policy_kwargs.net_arch", "list"),
    "net_arch_part": (config(policy_kwargs={"net_arch": {"pi": [8], "q": [8]}}),
                      "hyperparameters.policy_kwargs.net_arch", "exactly pi and vf"),
    "net_arch_sac_vf": (config(algorithm="SAC", policy_kwargs={"net_arch": {"pi": [8], "vf": [8]}}),
                        "hyperparameters.policy_kwargs.net_arch", "exactly pi and qf"),
    "net_arch_bool": (config(policy_kwargs={"net_arch": [True]}),
                      "hyperparameters.policy_kwargs.net_arch", "True"),
    "ortho_init_text": (config(policy_kwargs={"ortho_init": "yes"}),
                        "hyperparameters.policy_kwargs.ortho_init", "true or false"),
    "object_kwarg": (config(policy_kwargs={"optimizer_class": "Adam"}),
                     "hyperparameters.policy_kwargs.optimizer_class",
                     "cannot be set in a training config"),
    "object_hyperparameter": (config(hyperparameters={"rollout_buffer_class": "x"}),
                              "hyperparameters.rollout_buffer_class",
                              "cannot be set in a training config"),
    "gamma_above_1": (config(hyperparameters={"gamma": 1.5}), "hyperparameters.gamma",
                      "<= 1, got 1.5"),
    "learning_rate_nan": (config(hyperparameters={"learning_rate": float("nan")}),
                          "hyperparameters.learning_rate", "in (0, 1]"),
    "learning_rate_zero": (config(hyperparameters={"learning_rate": 0}),
                           "hyperparameters.learning_rate", "in (0, 1]"),
    "learning_rate_huge": (config(hyperparameters={"learning_rate": "lin_100"}),
                           "hyperparameters.learning_rate", "in (0, 1]"),
    "clip_range_overflow": (config(hyperparameters={"clip_range": 1e308}),
                            "hyperparameters.clip_range", "in (0, 10]"),
    "ent_coef_overflow": (config(hyperparameters={"ent_coef": 1e308}),
                          "hyperparameters.ent_coef", "<= 10"),
    "clip_range_lin_negative": (config(hyperparameters={"clip_range": "lin_-0.2"}),
                                "hyperparameters.clip_range", "lin_"),
    "ent_coef_bool": (config(hyperparameters={"ent_coef": True}), "hyperparameters.ent_coef",
                      "number"),
    "target_kl_zero": (config(hyperparameters={"target_kl": 0.0}), "hyperparameters.target_kl",
                       "> 0"),
    "rollout_over_limit": (config(hyperparameters={"n_steps": MAX_ROLLOUT_STEPS // 2},
                                  env={"n_envs": 4, "scenarios": ["co-runner"]}),
                           "hyperparameters.n_steps", "rollout limit of 1,000,000"),
    "rollout_of_1": (config(hyperparameters={"n_steps": 1, "batch_size": 2}),
                     "hyperparameters.n_steps", "at least 2"),
    "n_envs_over_limit": (config(env={"n_envs": MAX_N_ENVS + 1}), "env.n_envs",
                          f"at most {MAX_N_ENVS}"),
    "seeds_count": (config(seeds=10**8), "seeds", "1..1000"),
    "seed_too_big": (config(seeds=[MAX_SEED + 1]), "seeds", f"0..{MAX_SEED}"),
    "eval_seed_text": (config(eval={"seed": "x"}), "eval.seed", "integer"),
    "name_dotdot": (config(name=".."), "name", "plain folder name"),
    "name_dot": (config(name="."), "name", "plain folder name"),
    "name_hidden": (config(name=".hidden"), "name", "plain folder name"),
    "name_slash": (config(name="a/b"), "name", "plain folder name"),
    "name_backslash": (config(name="a\\b"), "name", "plain folder name"),
    "name_nul": (config(name="a\0b"), "name", "plain folder name"),
    "name_number": (config(name=5), "name", "plain folder name"),
    "algorithm_list": (config(algorithm=["PPO"]), "algorithm", "unknown algorithm"),
    "description_list": (config(description=["a"]), "description", "string"),
    "sac_buffer": (config(algorithm="SAC", hyperparameters={"buffer_size": MAX_BUFFER_SIZE + 1}),
                   "hyperparameters.buffer_size", "in 1..10,000,000"),
    "sac_ent_coef": (config(algorithm="SAC", hyperparameters={"ent_coef": "auto_0"}),
                     "hyperparameters.ent_coef", "auto_<number in (0, 10]>"),
    "sac_train_freq": (config(algorithm="SAC", hyperparameters={"train_freq": [4, "epoch"]}),
                       "hyperparameters.train_freq", "step|episode"),
    "sac_episodes_with_2_envs": (
        config(algorithm="SAC", hyperparameters={"train_freq": [1, "episode"]},
               env={"n_envs": 2, "scenarios": ["co-runner"]}),
        "hyperparameters.train_freq", "env.n_envs 1"),
    "sac_tau_zero": (config(algorithm="SAC", hyperparameters={"tau": 0}), "hyperparameters.tau",
                     "> 0"),
    "lstm_shared_and_critic": (
        config(algorithm="RecurrentPPO", policy="MlpLstmPolicy",
               policy_kwargs={"shared_lstm": True}),
        "hyperparameters.policy_kwargs.shared_lstm", "enable_critic_lstm"),
    "lstm_minibatch_of_1": (
        config(algorithm="RecurrentPPO", policy="MlpLstmPolicy",
               hyperparameters={"n_steps": 8, "batch_size": 3},
               env={"n_envs": 2, "scenarios": ["co-runner"]}),
        "hyperparameters.batch_size", "last minibatch of 1 step"),
    "lstm_state": (
        config(algorithm="RecurrentPPO", policy="MlpLstmPolicy",
               hyperparameters={"n_steps": 100_000},
               policy_kwargs={"lstm_hidden_size": 2048, "n_lstm_layers": 1}),
        "hyperparameters.policy_kwargs.lstm_hidden_size", "LSTM state"),
}  # fmt: skip
for _data, *_ in BAD.values():  # SAC and RecurrentPPO take their own hyperparameters
    if _data["algorithm"] == "SAC":
        _data["hyperparameters"].pop("n_steps")
        _data["hyperparameters"].pop("n_epochs")


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "bad.yaml"
    # YAML cannot hold NUL in a plain dump; json-style escapes keep every case a file
    path.write_text(yaml.safe_dump(data, allow_unicode=False))
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_config_is_one_line_naming_file_and_field(tmp_path: Path, case: str) -> None:
    data, field, problem = BAD[case]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert re.search(re.escape(problem), message), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "case", ["n_steps_text", "batch_size_0", "net_arch_negative", "name_dotdot", "seeds_count"]
)
def test_train_writes_nothing_for_a_bad_config(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BAD[case][0])
    runs = tmp_path / "runs" / "inner"
    assert main(["train", str(path), "--runs", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"tierenv train: error: {path}: "), err
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_what_sb3_still_refuses_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is built before the run folder exists: a constructor assertion the checks
    above missed is a ConfigError, and nothing is left behind."""
    monkeypatch.setattr(train_module, "build_hyperparameters", lambda _config: {"batch_size": 1})
    parsed = parse_config(config(), source="cfg.yaml")
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: hyperparameters: PPO refused them: "):
        train(parsed, out_root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "data",
    [
        config(hyperparameters={"learning_rate": "lin_0.001", "clip_range_vf": None}),
        config(policy_kwargs={"net_arch": {"pi": [8], "vf": [8]}, "activation_fn": "relu"}),
        config(name="ppo-v1.2_b+c"),
        config(seeds=[0, MAX_SEED]),
        config(
            algorithm="SAC",
            hyperparameters={"train_freq": [1, "episode"], "ent_coef": "auto_0.1"},
            policy_kwargs={"net_arch": {"pi": [8], "qf": [8]}, "n_critics": 1},
        ),
        config(
            algorithm="RecurrentPPO",
            policy="MlpLstmPolicy",
            policy_kwargs={"lstm_hidden_size": 8, "shared_lstm": True, "enable_critic_lstm": False},
        ),
    ],
    ids=["schedules", "pi-vf", "name", "seeds", "sac", "recurrent"],
)
def test_valid_edge_configs_build_a_model(tmp_path: Path, data: dict[str, Any]) -> None:
    if data["algorithm"] == "SAC":
        data["hyperparameters"] = {
            k: v for k, v in data["hyperparameters"].items() if k not in ("n_steps", "n_epochs")
        }
    parsed = parse_config(data)
    assert parse_config(yaml.safe_load(parsed.to_yaml())) == parsed
    model = train_module._new_model(parsed, 0, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # building a model writes nothing
    model.learn(16)
    if data["algorithm"] == "SAC":
        assert build_hyperparameters(parsed)["train_freq"] == (1, "episode")


def test_a_config_error_is_a_schema_error_naming_its_parts() -> None:
    with pytest.raises(SchemaError) as info:
        parse_config(config(env={"n_envs": 0}), source="cfg.yaml")
    error = info.value
    assert isinstance(error, ConfigError)
    assert (error.source, error.path, error.line) == ("cfg.yaml", "env.n_envs", None)
    assert error.problem == "must be a positive integer, got 0"
    # Ray sends a seed's error back to the driver
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


@pytest.mark.parametrize(
    "field", ["timesteps", "checkpoint_every", "env.n_envs", "eval.every_steps", "eval.episodes"]
)
def test_a_count_written_as_a_float_is_refused(field: str) -> None:
    """Unlike the TOML readers' whole numbers, a training config's counts are YAML integers."""
    section, _, key = field.rpartition(".")
    data = config(**{section: {key: 2.0}}) if section else config(**{key: 2.0})
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cfg.yaml")
    assert str(info.value) == f"cfg.yaml: {field}: must be a positive integer, got 2.0"


def test_the_yaml_keys_and_defaults_are_the_dataclass_fields() -> None:
    defaults = parse_config({"name": "t", "algorithm": "PPO", "timesteps": 5})
    assert (defaults.env, defaults.eval) == (EnvConfig(), EvalConfig())
    assert (defaults.seeds, defaults.checkpoint_every, defaults.description) == ((0,), 20_000, "")
    written = defaults.to_dict()
    assert tuple(written) == TOP_LEVEL_KEYS
    assert tuple(written["env"]) == ENV_KEYS
    assert tuple(written["env"]["normalize"]) == NORMALIZE_KEYS == ("observation", "reward")
    assert tuple(written["eval"]) == EVAL_KEYS
    # every env and eval key away from its default is kept as written
    env = {
        "backend": "full",
        "n_envs": 2,
        "scenarios": ["co-runner", "steady-single"],
        "features": ["bandwidth", "latency"],
        "migration_cost_per_gib": 0.5,
        "quota_action": True,
        "normalize": {"observation": False, "reward": True},
    }
    evaluation = {"scenarios": ["hot-set-shift"], "every_steps": 128, "episodes": 2, "seed": 7}
    parsed = parse_config(config(env=env, eval=evaluation))
    assert parsed.to_dict()["env"] == env and parsed.to_dict()["eval"] == evaluation
    # one true/false stands for both normalize switches
    switched = parse_config(config(env={"normalize": False}))
    assert switched.to_dict()["env"]["normalize"] == {"observation": False, "reward": False}
