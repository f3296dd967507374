"""``tierenv demo`` wiring, on a tiny budget: training, then the comparison of the runs just
trained (wherever they went) against baselines, then the files and the printed table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import experiments.demo as demo

SHIPPED = Path(__file__).resolve().parents[1] / "tierenv" / "workload" / "scenarios"


def test_the_demo_trains_compares_and_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    text = (SHIPPED / "co-runner.toml").read_text()
    text = text.replace('name = "co-runner"', 'name = "tiny-co-runner"')
    text = text.replace("duration_s = 180", "duration_s = 12")
    text = text.replace("start_s = 60", "start_s = 4").replace("stop_s = 120", "stop_s = 8")
    scenario = tmp_path / "tiny-co-runner.toml"
    scenario.write_text(text)
    train = tmp_path / "train.yaml"
    train.write_text(
        "name: tiny\nalgorithm: PPO\npolicy: MlpPolicy\n"
        "hyperparameters: {n_steps: 32, batch_size: 32, n_epochs: 1}\n"
        f"env: {{backend: full, n_envs: 2, scenarios: [{scenario}]}}\n"
        f"eval: {{scenarios: [{scenario}], every_steps: 64}}\n"
        "timesteps: 128\nseeds: [0, 1]\ncheckpoint_every: 64\n"
    )
    compare = tmp_path / "compare.yaml"
    compare.write_text(
        f"name: tiny-demo\nscenarios: [{scenario}]\nseeds: [100, 101]\n"
        "policies:\n"
        "  - {name: ppo, kind: sb3, path: 'somewhere/else/seed_{index}'}\n"
        "  - {name: ppo-guarded, kind: sb3, path: 'somewhere/else/seed_{index}', guard: true}\n"
        "  - {name: all-ddr, kind: static, weights: [255, 1]}\n"
        "  - {name: static-deployable, kind: static, weights: [3, 1]}\n"
        "  - {name: static-best, kind: static-best, levels: 3}\n"
        "  - {name: kernel-auto, kind: kernel-auto}\n"
        "  - {name: oracle-dp, kind: oracle-dp}\n"
        "reference: all-ddr\nupper_bound: false\ntimeseries_seed: 100\n"
    )
    monkeypatch.setattr(demo, "TRAIN_CONFIG", train)
    monkeypatch.setattr(demo, "COMPARE_CONFIG", compare)
    out, runs = tmp_path / "results", tmp_path / "runs"

    demo.run_demo(out=out, runs=runs, workers=1, progress=False)

    printed = capsys.readouterr().out
    assert "| ppo |" in printed and "| all-ddr |" in printed
    assert str(out / "summary.md") in printed
    assert sorted(p.name for p in (runs / "tiny").iterdir()) == ["seed_0", "seed_1"]
    episodes = pd.read_csv(out / "episodes.csv")
    learned = episodes[episodes["policy"] == "ppo"]
    assert sorted(learned["seed"]) == [100, 101]
    assert set(learned["label"]) == {"PPO seed 0 (tiny/seed_0)", "PPO seed 1 (tiny/seed_1)"}
    assert (out / "learning_curves.png").is_file()
    assert "command: `tierenv demo`" in (out / "summary.md").read_text()
    # the story: both policies against the deployable weights and the floor, targets.md
    assert "ppo: IQM " in printed and "ppo-guarded: IQM " in printed
    targets = (out / "targets.md").read_text()
    assert "# `ppo-guarded` against the issue-18 targets" in targets
    assert "slowest of 2) | | <= 600 s |" in targets  # both runs trained here, timed
    guarded = episodes[episodes["policy"] == "ppo-guarded"]
    assert all(label.endswith("(floor: kernel-auto 28:3)") for label in guarded["label"])

    # A second run resumes the finished training and redoes only the comparison.
    demo.run_demo(out=out, runs=runs, workers=1, progress=False)
    assert "| ppo |" in capsys.readouterr().out
