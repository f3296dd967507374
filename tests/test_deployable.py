"""Deployable static weights (experiments/deployable.py): tuned per host on the
distribution's own draws, read back by ``tierenv compare`` as ``kind: static-deployable``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import deployable
from experiments.compare.config import ConfigError, PolicySpec, config_from_dict
from experiments.compare.episode import Trial, TrialResult
from experiments.compare.runner import plan
from tierenv.workload.generator import Span, load_distribution
from tierenv.workload.scenario import load_scenario


def result(scenario: str, weights: str, ret: float) -> TrialResult:
    trial = Trial(scenario, PolicySpec(weights, "static", {}), 0)
    return TrialResult(trial, f"static {weights}", 0.0, {"reward": np.array([ret])})


def test_choice_maximises_the_mean_ratio_not_the_mean_return():
    # load a has ten times the returns of load b: the mean return would pick 3:1 (a's best),
    # the mean ratio picks 1:1, which loses 2 % on a and nothing on b (3:1 loses 30 % on b)
    results = [
        result("a", "3:1", 100.0),
        result("a", "1:1", 98.0),
        result("b", "3:1", 7.0),
        result("b", "1:1", 10.0),
    ]
    winner, ratios = deployable.choose(results)
    assert winner == "1:1"
    assert ratios.loc["a", "1:1"] == pytest.approx(0.98)
    assert ratios.loc["b", "3:1"] == pytest.approx(0.7)


def small_distribution():
    default = load_distribution("default")
    return dataclasses.replace(default, hosts=default.hosts[:2], duration_s=Span(20.0, 20.0, False))


def test_tuning_draws_per_host_and_is_reproducible(tmp_path):
    distribution = small_distribution()
    files = deployable.host_draws(distribution, 2, 0, tmp_path)
    for host in distribution.hosts:
        assert len(files[host.name]) == 2
        for path in files[host.name]:
            nodes = tuple(n.profile.name for n in load_scenario(path).nodes)
            assert nodes == tuple(profile for profile, _ in host.nodes)
    hosts, ratios = deployable.tune(distribution, draws=1, levels=2, workers=1, show_progress=False)
    again, _ = deployable.tune(distribution, draws=1, levels=2, workers=1, show_progress=False)
    assert hosts == again
    assert [h.host for h in hosts] == [h.name for h in distribution.hosts]
    for entry in hosts:
        table = ratios[entry.host]
        assert table.to_numpy().max() == pytest.approx(1.0)
        assert entry.mean_ratio == pytest.approx(table.mean().max())
    with pytest.raises(ValueError, match="seed 1000 drew the test suite"):
        deployable.tune(distribution, draws=1, seed=1000)


@pytest.mark.slow
def test_tuning_on_ray_chooses_what_local_processes_choose(tmp_path):
    pytest.importorskip("ray")
    distribution = small_distribution()
    local, _ = deployable.tune(distribution, draws=1, levels=2, workers=1, show_progress=False)
    on_ray, _ = deployable.tune(
        distribution, draws=1, levels=2, workers=2, show_progress=False, use_ray=True,
        draws_dir=tmp_path / "draws",
    )  # fmt: skip
    assert on_ray == local
    assert len(list((tmp_path / "draws").glob("*.toml"))) == 2  # kept for the cluster's nodes
    with pytest.raises(ValueError, match="--draws-dir"):
        deployable.tune(distribution, draws=1, ray_address="ray://nowhere:1")


def write_table(path: Path, weights: list[int]) -> Path:
    table = {
        "version": 1,
        "hosts": [
            {
                "host": "bytedance-cxl",
                "profiles": ["bytedance-ddr5-snc", "bytedance-cxl-asic"],
                "weights": weights,
                "mean_ratio": 0.99,
                "worst_ratio": 0.95,
                "draws": 4,
            }
        ],
    }
    path.write_text(json.dumps(table))
    return path


def compare_config(table: Path, scenarios: list[str]):
    return config_from_dict(
        {
            "name": "t",
            "scenarios": scenarios,
            "seeds": 2,
            "policies": [{"name": "deploy", "kind": "static-deployable", "table": str(table)}],
            "upper_bound": False,
        },
        source="t.yaml",
    )


def test_compare_runs_the_weights_of_the_scenarios_hardware(tmp_path):
    table = write_table(tmp_path / "deployable.json", [5, 2])
    tasks = plan(compare_config(table, ["bytedance-co-runners", "colloid-antagonist"]))
    assert len(tasks) == 4
    for task in tasks:
        assert task.policy == PolicySpec("deploy", "static", {"weights": [5, 2]})
    # another machine's scenario has no entry: refused before anything runs, naming both
    with pytest.raises(ConfigError, match=r"t\.yaml: .*'seed-toy-amd'.*amd-ddr5-72gbs.*bytedance"):
        plan(compare_config(table, ["seed-toy-amd"]))


def test_bad_tables_are_named(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(ConfigError, match=r"none\.json: no such deployable-weights table"):
        plan(compare_config(missing, ["co-runner"]))
    (tmp_path / "bad.json").write_bytes(b"\x00\xff")
    with pytest.raises(deployable.DeployableError, match=r"bad\.json: not a deployable"):
        deployable.load_table(tmp_path / "bad.json")
    zero = write_table(tmp_path / "zero.json", [0, 2])
    with pytest.raises(deployable.DeployableError, match=r"hosts\[0\]: weights must be .*1\.\.255"):
        deployable.load_table(zero)
    config = config_from_dict(
        {
            "name": "t",
            "scenarios": ["co-runner"],
            "seeds": 1,
            "policies": [{"name": "d", "kind": "static-deployable", "path": "x"}],
        },
        source="t.yaml",
    )
    with pytest.raises(ConfigError, match="takes one parameter, table"):
        plan(config)


def test_the_command_refuses_a_foreign_folder_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert deployable.main(["default", "--draws", "1", "--out", str(out), "--quiet"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_the_command_writes_table_summary_and_plot_together(tmp_path):
    text = (
        Path(__file__).resolve().parents[1] / "tierenv/workload/distributions/default.toml"
    ).read_text()
    head, *hosts = text.split("[[hosts]]")
    last = hosts[-1]
    rest = last[last.index("[apps]") :]
    one_host = (
        head.replace("duration_s = [120, 300]", "duration_s = [40, 40]")
        + "[[hosts]]"
        + hosts[0]
        + rest
    )
    source = tmp_path / "one-host.toml"
    source.write_text(one_host)
    out = tmp_path / "out"
    args = [str(source), "--draws", "1", "--levels", "2", "--out", str(out), "--workers", "1"]
    assert deployable.main([*args, "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(deployable.OUTPUTS)
    (entry,) = deployable.load_table(out / deployable.TABLE_FILE)
    assert entry.host == "bytedance-cxl" and len(entry.weights) == 2
    assert "| bytedance-cxl |" in (out / deployable.SUMMARY_FILE).read_text()
