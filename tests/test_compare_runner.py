"""``tierenv compare`` end to end on a small experiment: planning, static-best in hindsight,
the same numbers inline, in processes and on Ray, the files written, the command line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.compare.config import ConfigError, config_from_dict
from experiments.compare.report import write_results
from experiments.compare.runner import BoundTask, plan, run_compare
from tierenv.cli import main
from tierenv.workload.scenario import load_scenario

SHIPPED = Path(__file__).resolve().parents[1] / "tierenv" / "workload" / "scenarios"


@pytest.fixture(scope="module")
def short_scenario(tmp_path_factory) -> str:
    """co-runner in 24 s: the second application runs from 8 s to 16 s."""
    text = (SHIPPED / "co-runner.toml").read_text()
    text = text.replace('name = "co-runner"', 'name = "short-co-runner"')
    text = text.replace("duration_s = 180", "duration_s = 24")
    text = text.replace("start_s = 60", "start_s = 8").replace("stop_s = 120", "stop_s = 16")
    path = tmp_path_factory.mktemp("scenarios") / "short-co-runner.toml"
    path.write_text(text)
    assert load_scenario(path).duration_s == 24
    return str(path)


def small_config(scenario: str, **changes):
    data = {
        "name": "small",
        "scenarios": [scenario],
        "seeds": 2,
        "policies": [
            {"name": "best", "kind": "static-best", "levels": 2},
            {"name": "ddr", "kind": "static", "weights": [255, 1]},
            {"name": "auto", "kind": "kernel-auto"},
        ],
        "upper_bound": False,
    }
    data.update(changes)
    return config_from_dict(data, source="small.yaml")


@pytest.fixture(scope="module")
def inline_results(short_scenario):
    return run_compare(small_config(short_scenario), workers=1, show_progress=False)


def test_plan_expands_static_best_into_its_grid(short_scenario) -> None:
    tasks = plan(small_config(short_scenario, upper_bound=True))
    sweep = [t for t in tasks if not isinstance(t, BoundTask) and t.sweep == "best"]
    # two levels on two nodes: 250:1, 1:1 and 1:250 (and the seeds)
    labels = sorted({t.policy.name for t in sweep})
    assert labels == ["best[1:1]", "best[1:250]", "best[250:1]"]
    assert len(sweep) == 3 * 2
    # one bound per seed: each seed plays its own run of the scenario (its [variation])
    bounds = [(t.scenario, t.seed) for t in tasks if isinstance(t, BoundTask)]
    assert bounds == [(short_scenario, seed) for seed in (0, 1)]


def test_a_bad_policy_fails_before_anything_runs(short_scenario) -> None:
    bad = [{"name": "x", "kind": "no-such-controller"}]
    with pytest.raises(ConfigError, match=r"small\.yaml: policies\[0\] \(x\).*no-such-controller"):
        plan(small_config(short_scenario, policies=bad))
    bad = [{"name": "x", "kind": "static", "weigths": [1, 1]}]
    with pytest.raises(ConfigError, match="unknown parameter 'weigths'"):
        plan(small_config(short_scenario, policies=bad))
    bad = [{"name": "x", "kind": "static-best", "levels": 1}]
    with pytest.raises(ConfigError, match="levels must be an integer >= 2"):
        plan(small_config(short_scenario, policies=bad))
    # a huge grid is refused before it is built (levels 100000 once asked for 22 GB)
    bad = [{"name": "x", "kind": "static-best", "levels": 100_000}]
    with pytest.raises(ConfigError, match=r"grid of 10000000000 points.*levels <= 64 on 2"):
        plan(small_config(short_scenario, policies=bad))
    bad = [{"name": "x", "kind": "static-best", "levels": {2: 65}}]
    with pytest.raises(ConfigError, match="at most 4096"):
        plan(small_config(short_scenario, policies=bad))


def test_results_hold_every_policy_seed_and_step(inline_results, short_scenario) -> None:
    episodes = inline_results.episodes
    assert list(episodes["policy"].unique()) == ["best", "ddr", "auto"]
    assert len(episodes) == 3 * 2
    # reset() only reports the idle host; each step is one interval, to the scenario's end
    assert (episodes["steps"] == load_scenario(short_scenario).n_steps).all()
    steps = inline_results.steps
    assert len(steps) == episodes["steps"].sum()
    for column in ("reward", "weight_0", "share_1", "bandwidth_gbps_0", "latency_ns_1"):
        assert column in steps
    # an episode's return is the sum of its steps' rewards
    ddr = steps[(steps["policy"] == "ddr") & (steps["seed"] == 1)]
    row = episodes[(episodes["policy"] == "ddr") & (episodes["seed"] == 1)].iloc[0]
    assert row["return"] == pytest.approx(ddr["reward"].sum())
    assert (ddr["weight_0"] == 255).all() and (ddr["weight_1"] == 1).all()


def test_static_best_is_the_grid_point_with_the_best_mean_return(inline_results) -> None:
    sweep = inline_results.sweep
    means = sweep.groupby("policy")["return"].mean()
    winner = means.idxmax()
    best = inline_results.episodes[inline_results.episodes["policy"] == "best"]
    chosen = sweep[sweep["policy"] == winner].sort_values("seed")
    np.testing.assert_allclose(best.sort_values("seed")["return"], chosen["return"])
    weights = winner[len("best[") : -1].replace(":", " : ")
    assert weights.split(" : ")[0] in next(iter(inline_results.best_static.values()))


def test_processes_give_the_same_numbers_as_inline(inline_results, short_scenario) -> None:
    parallel = run_compare(small_config(short_scenario), workers=2, show_progress=False)
    assert parallel.executor == "processes"
    columns = ["scenario", "policy", "seed", "return", "migrated_gib"]
    pd.testing.assert_frame_equal(parallel.episodes[columns], inline_results.episodes[columns])


def test_a_local_ray_instance_gives_the_same_numbers(inline_results, short_scenario) -> None:
    pytest.importorskip("ray")
    config = small_config(short_scenario)
    on_ray = run_compare(config, workers=2, use_ray=True, show_progress=False)
    assert on_ray.executor == "ray"
    columns = ["scenario", "policy", "seed", "return", "migrated_gib"]
    pd.testing.assert_frame_equal(on_ray.episodes[columns], inline_results.episodes[columns])


def test_written_results(inline_results, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = write_results(inline_results, out, command="tierenv compare small.yaml")
    for name in ("episodes.csv", "steps.csv.gz", "static_sweep.csv", "summary.md", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "return_by_scenario.png" in pngs and any(p.startswith("weights_") for p in pngs)
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == len(inline_results.episodes)
    with gzip.open(out / "steps.csv.gz", "rt") as handle:
        assert len(pd.read_csv(handle)) == len(inline_results.steps)
    text = (out / "summary.md").read_text()
    assert "command: `tierenv compare small.yaml`" in text and "machine:" in text
    assert "## Return per episode" in text and "Probability of improvement" in text
    assert "| ddr |" in summary.table and "| auto |" in summary.table
    # no temporary files left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # the same results give the same bytes (no file name or time in the gzip header)
    again = tmp_path / "again"
    write_results(inline_results, again, command="tierenv compare small.yaml")
    assert (again / "steps.csv.gz").read_bytes() == (out / "steps.csv.gz").read_bytes()


def test_the_command_line_runs_a_config(short_scenario, tmp_path: Path, capsys) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(
        "name: cli-small\n"
        f"scenarios: [{short_scenario}]\n"
        "seeds: 3\n"
        "policies:\n"
        "  - {name: ddr, kind: static, weights: [255, 1]}\n"
        "  - {name: even, kind: static, weights: [1, 1]}\n"
        "reference: ddr\n"
        "upper_bound: false\n"
    )
    out, logs = tmp_path / "results", tmp_path / "runs"
    code = main(
        [
            "compare",
            str(config),
            "--seeds",
            "2",
            "--workers",
            "1",
            "--quiet",
            "--out",
            str(out),
            "--tensorboard",
            str(logs),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "| even |" in printed and str(out) in printed
    assert sorted(pd.read_csv(out / "episodes.csv")["seed"].unique()) == [0, 1]
    assert f"--seeds 2 --out {out}" in (out / "summary.md").read_text()
    events = list(logs.rglob("events.out.tfevents.*"))
    assert len(events) == 2 * 2  # one run per policy and seed


def test_the_command_line_names_a_bad_config(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("name: bad\nscenarios: all\nseeds: 1\npolicies: []\n")
    code = main(["compare", str(config), "--quiet", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "bad.yaml: policies:" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_policy_beats_the_upper_bound_in_any_step(short_scenario) -> None:
    policies = [
        {"name": "ddr", "kind": "static", "weights": [255, 1]},
        {"name": "spill", "kind": "static", "weights": [1, 3]},
        {"name": "caption", "kind": "caption"},
        {"name": "colloid", "kind": "colloid"},
        {"name": "greedy", "kind": "oracle-greedy"},
        {"name": "dp", "kind": "oracle-dp"},
    ]
    config = small_config(short_scenario, policies=policies, upper_bound=True, seeds=1)
    results = run_compare(config, workers=1, show_progress=False)
    steps = results.steps
    assert steps["bound"].notna().all()
    excess = steps["reward_throughput"] - steps["bound"] * (1 + 1e-6)
    assert (excess <= 0).all(), steps.loc[excess.idxmax()]
    episodes = results.episodes
    assert (episodes["return"] <= episodes["bound_return"]).all()


def test_text_parameters_can_name_the_seed(short_scenario) -> None:
    policies = [{"name": "p", "kind": "static", "weights": [1, 1]}]
    config = small_config(short_scenario, policies=policies, seeds=[5, 7])
    from experiments.compare.runner import for_seed

    params = {"path": "runs/x/seed{index}-{seed}", "levels": 3, "other": "plain"}
    assert for_seed(params, 7, 1) == {"path": "runs/x/seed1-7", "levels": 3, "other": "plain"}
    trials = plan(config)
    assert [t.seed for t in trials] == [5, 7]
