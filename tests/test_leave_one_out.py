"""experiments.leave_one_out: hold a host out of training, compare on its hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.training import load_config as load_train_config
from experiments.compare.config import load_config as load_compare_config
from experiments.leave_one_out import (
    LeaveOneOutError,
    held_out_training,
    host_comparison,
    host_profiles,
    main,
    on_hardware,
    training_distribution,
)
from tierenv.workload.generator import load_distribution

AMD = ("amd-ddr5-72gbs", "cxl-26gbs")


def write_configs(tmp_path: Path, eval_scenarios: list[str]) -> tuple[Path, Path]:
    train = {
        "name": "tiny",
        "algorithm": "PPO",
        "policy": "MlpPolicy",
        "hyperparameters": {"n_steps": 16, "batch_size": 32, "n_epochs": 1,
                            "policy_kwargs": {"net_arch": [8]}},
        "env": {"backend": "fluid", "n_envs": 4, "scenarios": ["random:default"]},
        "eval": {"scenarios": eval_scenarios, "every_steps": 1000},
        "timesteps": 64,
        "seeds": [0],
        "checkpoint_every": 1000,
    }  # fmt: skip
    compare = {
        "name": "tiny-compare",
        "scenarios": ["merci-weight-switch", "steady-single"],
        "seeds": [100],
        "policies": [
            {"name": "ppo", "kind": "sb3", "path": "unused/seed_{index}"},
            {"name": "ppo-guarded", "kind": "sb3", "path": "unused/seed_{index}", "guard": True},
            {"name": "static-deployable", "kind": "static", "weights": [3, 1]},
            {"name": "static-best", "kind": "static-best", "levels": 3},
            {"name": "kernel-auto", "kind": "kernel-auto"},
            {"name": "oracle-dp", "kind": "oracle-dp"},
        ],
        "reference": "static-deployable",
        "upper_bound": False,
        "timeseries_seed": None,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(compare))
    return tmp_path / "train.yaml", tmp_path / "compare.yaml"


def test_plumbing_holds_the_host_out_everywhere(tmp_path: Path) -> None:
    train_file, compare_file = write_configs(tmp_path, ["merci-weight-switch", "steady-single"])
    train_config = load_train_config(train_file)
    spec, distribution = training_distribution(train_config)
    assert spec == "random:default" and host_profiles(distribution, "amd-damos-v4") == AMD
    assert on_hardware(("merci-weight-switch", "steady-single", "seed-toy-amd"), AMD) == (
        "merci-weight-switch",
        "seed-toy-amd",
    )
    held = held_out_training(train_config, spec, "amd-damos-v4", AMD)
    assert held.name == "tiny-no-amd-damos-v4"
    assert held.env.scenarios == ("random:default?exclude=amd-damos-v4",)
    assert held.eval.scenarios == ("steady-single",)  # its hardware is not even evaluated on
    compare = host_comparison(
        load_compare_config(compare_file), "amd-damos-v4", ("merci-weight-switch",),
        tmp_path / "runs/tiny-no-amd-damos-v4", tmp_path / "runs/tiny",
    )  # fmt: skip
    # the policy trained on every host joins only when its runs exist
    assert compare.policy_names[:2] == ("ppo-no-amd-damos-v4", "ppo-guarded-no-amd-damos-v4")
    assert "ppo" not in compare.policy_names
    assert compare.policies[0].params["path"].endswith("tiny-no-amd-damos-v4/seed_{index}")
    assert compare.policies[1].params["guard"] is True
    with pytest.raises(LeaveOneOutError, match=r"no host 'nope'.*amd-damos-v4"):
        host_profiles(load_distribution("default"), "nope")
    with pytest.raises(LeaveOneOutError, match="every eval scenario runs on amd-damos-v4"):
        held_out_training(
            load_train_config(write_configs(tmp_path, ["merci-weight-switch"])[0]),
            spec, "amd-damos-v4", AMD,
        )  # fmt: skip


@pytest.mark.slow
def test_the_command_trains_compares_and_writes_one_table(tmp_path: Path) -> None:
    train_file, compare_file = write_configs(tmp_path, ["merci-weight-switch", "steady-single"])
    out = tmp_path / "out"
    args = ["amd-damos-v4", "--train", str(train_file), "--compare", str(compare_file)]
    args += ["--runs", str(tmp_path / "runs"), "--out", str(out), "--workers", "1", "--quiet"]
    assert main(args) == 0
    assert (tmp_path / "runs/tiny-no-amd-damos-v4/seed_0/model.zip").is_file()
    summary = (out / "summary.md").read_text()
    assert "| amd-damos-v4 | 1 | `ppo-no-amd-damos-v4` |" in summary
    assert "| amd-damos-v4 | 1 | `ppo-guarded-no-amd-damos-v4` |" in summary
    assert (out / "amd-damos-v4" / "episodes.csv").is_file()
    # a folder holding someone else's file is refused before any training
    (out / "notes.txt").write_text("mine")
    assert main(args) == 2
    assert main(["no-such-host", *args[1:]]) == 2
