"""Experiment configs of ``tierenv compare``: what a good config gives, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.compare.config import ConfigError, config_from_dict, load_config, resolve_path
from tierenv.workload.scenario import shipped_scenario_names

REPO = Path(__file__).resolve().parents[1]


def minimal(**changes) -> dict:
    data = {
        "name": "tiny",
        "scenarios": ["steady-single"],
        "seeds": 2,
        "policies": [{"name": "ddr", "kind": "static", "weights": [255, 1]}],
    }
    data.update(changes)
    return data


def test_a_minimal_config_gets_the_documented_defaults() -> None:
    config = config_from_dict(minimal())
    assert config.seeds == (0, 1)
    assert config.scenarios == ("steady-single",)
    assert config.policies[0].params == {"weights": [255, 1]}
    assert config.reference is None and config.upper_bound and config.timeseries_seed == 0


def test_static_best_becomes_the_default_reference() -> None:
    policies = [
        {"name": "ddr", "kind": "static", "weights": [255, 1]},
        {"name": "best", "kind": "static-best"},
    ]
    assert config_from_dict(minimal(policies=policies)).reference == "best"


def test_all_scenarios_and_explicit_seeds() -> None:
    config = config_from_dict(minimal(scenarios="all", seeds=[3, 7]))
    assert config.scenarios == tuple(shipped_scenario_names())
    assert config.seeds == (3, 7)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("demo.yaml", "static-deployable"),
        ("learned-suite.yaml", "static-deployable"),
        ("learned-three-node.yaml", "static-deployable"),
        ("learned-four-node.yaml", "static-deployable"),
        ("learned.yaml", "static-best"),
    ],
)
def test_the_shipped_learned_policy_configs_load(name: str, reference: str) -> None:
    config = load_config(REPO / "experiments" / name)
    assert config.reference == reference
    learned = [p for p in config.policies if p.kind == "sb3"]
    assert learned and all("{index}" in p.params["path"] for p in learned)


def test_paths_are_taken_beside_the_config_first(tmp_path, monkeypatch) -> None:
    """The demo's config names the suite and the deployable table relative to itself, so it
    loads from any working directory; a path not beside it is taken from the working one."""
    monkeypatch.chdir(tmp_path)
    config = load_config(REPO / "experiments" / "demo.yaml")
    assert len(config.scenarios) == 8
    assert all(Path(s).parent == REPO / "experiments" / "suites" / "test" for s in config.scenarios)
    assert resolve_path("../results/deployable/default/deployable.json", config.source) == str(
        REPO / "experiments" / "../results/deployable/default/deployable.json"
    )
    assert resolve_path("elsewhere.json", config.source) == "elsewhere.json"


def test_the_shipped_baselines_config_loads() -> None:
    config = load_config(REPO / "experiments" / "baselines.yaml")
    assert config.name == "baselines"
    assert len(config.seeds) >= 5
    assert config.scenarios == tuple(shipped_scenario_names())
    assert config.reference == "static-best"
    assert "static-best" in config.text


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"name": "a/b"}, "name", "plain non-empty name"),
        ({"scenarios": ["no-such-scenario"]}, "scenarios", "no-such-scenario"),
        ({"scenarios": []}, "scenarios", "non-empty"),
        ({"scenarios": ["co-runner", "co-runner"]}, "scenarios", "two scenarios are named"),
        ({"seeds": 0}, "seeds", "at least 1"),
        ({"seeds": [1, 1]}, "seeds", "twice"),
        ({"seeds": [-1]}, "seeds", "integers >= 0"),
        ({"env": {"migration_cost": 1}}, "env.migration_cost", "valid are"),
        ({"env": {"migration_cost_per_gib": -1}}, "env.migration_cost_per_gib", ">= 0"),
        ({"policies": []}, "policies", "non-empty"),
        ({"policies": [{"kind": "static"}]}, "policies[0].name", "missing"),
        ({"policies": [{"name": "x"}]}, "policies[0].kind", "missing"),
        (
            {"policies": [{"name": "x", "kind": "static"}, {"name": "x", "kind": "static"}]},
            "policies",
            "used twice",
        ),
        ({"reference": "nobody"}, "reference", "'nobody' is not a policy"),
        ({"upper_bound": "yes"}, "upper_bound", "true or false"),
        ({"timeseries_seed": 9}, "timeseries_seed", "not one of the seeds"),
    ],
)
def test_bad_fields_are_named(changes: dict, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(minimal(**changes), source="exp.yaml")
    message = str(info.value)
    assert message.startswith(f"exp.yaml: {field}:"), message
    assert problem in message


def test_missing_required_field() -> None:
    data = minimal()
    del data["policies"]
    with pytest.raises(ConfigError, match="policies: missing"):
        config_from_dict(data)


def test_unreadable_and_invalid_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.yaml: cannot read"):
        load_config(tmp_path / "nothing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping"):
        load_config(listed)


def test_scenarios_take_folders_and_glob_patterns_of_scenario_files() -> None:
    suite = Path(__file__).resolve().parents[1] / "experiments" / "suites" / "test"
    config = config_from_dict(minimal(scenarios=[str(suite / "three-node-*.toml")]))
    assert [Path(s).name for s in config.scenarios] == [
        f"three-node-s1000-{k:03d}.toml" for k in range(10)
    ]
    assert len(config_from_dict(minimal(scenarios=[str(suite)])).scenarios) == 50
    with pytest.raises(ConfigError, match=r"scenarios: pattern .*nothing-\*\.toml names no"):
        config_from_dict(minimal(scenarios=[str(suite / "nothing-*.toml")]))


@pytest.mark.parametrize(
    ("name", "n_scenarios"),
    [("learned-suite.yaml", 37), ("learned-three-node.yaml", 11), ("learned-four-node.yaml", 11)],
)
def test_the_learned_suite_configs_name_their_static_baseline(
    monkeypatch, name: str, n_scenarios: int
) -> None:
    """Its paths are relative to the repository, like the commands that run it; every
    scenario's hardware has deployable weights in the table the config names."""
    from experiments.compare.runner import _deployable_trials

    monkeypatch.chdir(REPO)
    config = load_config(REPO / "experiments" / name)
    assert config.reference == "static-deployable" and len(config.scenarios) == n_scenarios
    (deployable,) = [p for p in config.policies if p.kind == "static-deployable"]
    trials = _deployable_trials(deployable, config, name)
    assert len(trials) == n_scenarios * len(config.seeds)


def test_a_guard_may_fall_back_to_each_machines_deployable_weights(monkeypatch) -> None:
    """``guard: {fallback: {table: PATH}}``: on each scenario the guard's floor is the
    deployable weights that table gives the scenario's hardware."""
    from experiments.compare.episode import Trial
    from experiments.compare.runner import plan
    from experiments.deployable import load_table, weights_for
    from tierenv.workload.scenario import load_scenario

    monkeypatch.chdir(REPO)
    table = "results/deployable/default/deployable.json"
    scenarios = ["experiments/suites/test/default-s1000-000.toml", "micron-xeon6-cxl"]

    def policies(fallback: object) -> list[dict]:
        guard = {"margin": 0.05, "fallback": fallback}
        return [{"name": "g", "kind": "static", "weights": [1, 1], "guard": guard}]

    config = config_from_dict(minimal(scenarios=scenarios, policies=policies({"table": table})))
    trials = [task for task in plan(config) if isinstance(task, Trial)]  # not the bounds
    assert [(t.scenario, t.seed) for t in trials] == [(s, k) for s in scenarios for k in (0, 1)]
    entries = load_table(table)
    fallbacks = {}
    for trial in trials:
        expected = list(weights_for(entries, load_scenario(trial.scenario), "test").weights)
        assert trial.policy.params["guard"] == {"margin": 0.05, "fallback": expected}
        fallbacks[trial.scenario] = expected
    assert fallbacks[scenarios[0]] != fallbacks[scenarios[1]]  # two machines, two settings
    with pytest.raises(ConfigError, match=r"policies\[0\] \(g\): guard\.fallback: a mapping"):
        plan(config_from_dict(minimal(scenarios=scenarios, policies=policies({"tables": 1}))))
    with pytest.raises(ConfigError, match=r"no-such\.json"):
        plan(config_from_dict(minimal(policies=policies({"table": "no-such.json"}))))


def test_a_summary_names_its_config_relative_to_the_working_folder(tmp_path, monkeypatch):
    from experiments.compare.report import shown_path

    monkeypatch.chdir(REPO)
    assert shown_path(str(REPO / "experiments" / "demo.yaml")) == "experiments/demo.yaml"
    assert shown_path("experiments/demo.yaml") == "experiments/demo.yaml"
    outside = str(tmp_path / "exp.yaml")
    assert shown_path(outside) == outside
