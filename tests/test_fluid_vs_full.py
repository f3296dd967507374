"""``python -m experiments.fluid_vs_full`` on a small ``tierenv compare`` folder: the full
replay reproduces the recorded episodes exactly, the fluid model agrees with it within the
tolerances of ``tests/test_fluid_scenarios.py``, a record the replay does not reproduce is
reported, and bad input exits 2 naming the file or field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.compare.config import config_from_dict
from experiments.compare.report import write_results
from experiments.compare.runner import run_compare
from experiments.fluid_vs_full import main, read_results, recorded_episode, replay
from tierenv.workload.scenario import load_scenario

SHIPPED = Path(__file__).resolve().parents[1] / "tierenv" / "workload" / "scenarios"
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A compare folder: co-runner in 24 s (the second application runs from 8 s to 16 s)
    under Caption, which moves the weights every few steps (migrating pages), and under
    static 3:1."""
    folder = tmp_path_factory.mktemp("compare")
    text = (SHIPPED / "co-runner.toml").read_text()
    text = text.replace('name = "co-runner"', 'name = "short-co-runner"')
    text = text.replace("duration_s = 180", "duration_s = 24")
    text = text.replace("start_s = 60", "start_s = 8").replace("stop_s = 120", "stop_s = 16")
    scenario = folder / "short-co-runner.toml"
    scenario.write_text(text)
    assert load_scenario(scenario).duration_s == 24
    config = config_from_dict(
        {
            "name": "small",
            "scenarios": [str(scenario)],
            "seeds": SEEDS,
            "env": {"migration_cost_per_gib": 0.1},
            "policies": [
                {"name": "caption", "kind": "caption"},
                {"name": "three-one", "kind": "static", "weights": [3, 1]},
            ],
            "upper_bound": False,
        },
        source="small.yaml",
    )
    out = folder / "results"
    write_results(run_compare(config, workers=1, show_progress=False), out, "tierenv compare")
    return out


def replays(results: Path, policy: str) -> list:
    config, episodes, steps = read_results(results)
    out = []
    for seed in SEEDS:
        recorded = recorded_episode(
            config, episodes, steps, policy, "short-co-runner", seed, results
        )
        out.append((recorded, *replay(recorded, config.env)))
    return out


def test_the_full_replay_reproduces_the_recorded_episodes(results: Path) -> None:
    for policy in ("caption", "three-one"):
        for recorded, full, _ in replays(results, policy):
            # the CSV keeps 6 significant digits; the replay is the same run to the bit
            assert float(f"{full.episode_return:.6g}") == recorded.episode_return
            assert [float(f"{r:.6g}") for r in full.reward] == recorded.reward.tolist()
    assert len({tuple(w) for w in replays(results, "caption")[0][0].weights}) > 2


def test_the_fluid_model_agrees_with_the_full_replay(results: Path) -> None:
    # Static weights: tests/test_fluid_scenarios.py's bounds on weighted speedup (mean
    # relative error < 1e-3, largest < 5e-3); nothing migrates in either.
    for _, full, fluid in replays(results, "three-one"):
        error = np.abs(fluid.reward - full.reward) / np.abs(full.reward)
        assert error.mean() < 1e-3 and error.max() < 5e-3, (error.mean(), error.max())
        assert fluid.migrated_gib.sum() == full.migrated_gib.sum() == 0
    # Weights changing every few steps: the weight-change bound (mean relative error < 1 %)
    # and the fluid model's documented migration gap under frequent changes (5 %).
    for _, full, fluid in replays(results, "caption"):
        error = np.abs(fluid.reward - full.reward) / np.abs(full.reward)
        assert error.mean() < 0.01, (error.mean(), error.max())
        assert full.migrated_gib.sum() > 0.5
        assert fluid.migrated_gib.sum() == pytest.approx(full.migrated_gib.sum(), rel=0.05)


def test_the_command_prints_and_writes_the_table(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.md"
    assert main([str(results), "--policy", "caption", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() + "\n" == printed  # print adds a newline
    assert "command: `python -m experiments.fluid_vs_full" in printed
    assert "Every full replay (2) reproduced its recorded episode exactly" in printed
    rows = [line for line in printed.splitlines() if line.startswith("| short-co-runner |")]
    assert len(rows) == len(SEEDS)
    episodes = pd.read_csv(results / "episodes.csv").set_index(["policy", "seed"])
    for row, seed in zip(rows, SEEDS, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == str(seed) and cells[2] == "24" and cells[6] == "yes"
        recorded = episodes.loc[("caption", seed), "return"]
        assert float(cells[3]) == float(cells[4]) == recorded
        assert float(cells[5]) == pytest.approx(recorded, rel=0.01)
    # one scenario and seed only
    assert main([str(results), "--policy", "caption", "--scenario", "short-co-runner"]) == 0
    assert main([str(results), "--policy", "caption", "--seed", "1"]) == 0
    assert "| short-co-runner | 1 |" in capsys.readouterr().out


def test_a_replay_that_differs_from_the_record_is_reported(
    results: Path, tmp_path: Path, capsys
) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(results, changed)
    episodes = pd.read_csv(changed / "episodes.csv")
    row = (episodes["policy"] == "caption") & (episodes["seed"] == 1)
    episodes.loc[row, "return"] += 0.5
    episodes.to_csv(changed / "episodes.csv", index=False)
    assert main([str(changed), "--policy", "caption"]) == 1
    printed = capsys.readouterr().out
    assert "**1 of 2 full replays did not reproduce the recorded episode**" in printed
    assert "| short-co-runner | 1 |" in printed and "| **no** |" in printed


def with_policy(results: Path, folder: Path, spec: dict) -> Path:
    """A copy of ``results`` whose config gives policy ``caption`` another kind."""
    shutil.copytree(results, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["policies"][0] = {"name": "caption", **spec}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_a_policy_that_sets_the_damos_quota_is_refused(
    results: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"algorithm": "PPO", "quota_action": True}))
    quota = with_policy(results, tmp_path / "quota", {"kind": "sb3", "path": str(run)})
    assert main([str(quota), "--policy", "caption"]) == 2
    error = capsys.readouterr().err
    assert f"{run / 'run.json'}: quota_action: true" in error and "cannot be replayed" in error
    # a run file that cannot be read: replayed, and the report says the check was not made
    missing = tmp_path / "missing-run"
    unknown = with_policy(results, tmp_path / "unknown", {"kind": "sb3", "path": str(missing)})
    assert main([str(unknown), "--policy", "caption"]) == 0
    assert f"Note: quota_action not checked ({missing / 'run.json'} unreadable)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--policy", "nobody"], "episodes.csv: no policy 'nobody'; it has caption, three-one"),
        (["--policy", "caption", "--scenario", "co-runner"], "no episodes of scenario 'co-runner'"),
        (["--policy", "caption", "--seed", "7"], "has no episode at seed 7; its seeds are 0, 1"),
    ],
)
def test_bad_input_exits_2_naming_the_file(
    results: Path, arguments: list[str], message: str, capsys
) -> None:
    assert main([str(results), *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and "Traceback" not in error


def test_a_missing_folder_or_file_exits_2(results: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nowhere"), "--policy", "caption"]) == 2
    assert "nowhere: no such results folder" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(results, partial)
    (partial / "steps.csv.gz").unlink()
    assert main([str(partial), "--policy", "caption"]) == 2
    assert f"{partial / 'steps.csv.gz'}: missing" in capsys.readouterr().err
