"""experiments.learned_targets: the issue-18 targets read off a compare results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.learned_targets import Roles, main, measure, training_seconds

# Mean returns per scenario: the learned policy, deployable static, best static in hindsight,
# kernel auto and the DP oracle. On "co-runner" the oracle beats hindsight by 10 %.
MEANS = {
    "co-runner": {"ppo": 105.0, "deploy": 95.0, "best": 100.0, "auto": 90.0, "dp": 110.0},
    "steady-single": {"ppo": 96.0, "deploy": 100.0, "best": 100.0, "auto": 100.0, "dp": 101.0},
}
ROLES = Roles("ppo", deployable="deploy", hindsight="best", floor="auto", oracle="dp")


def episodes(spread: float = 0.5) -> pd.DataFrame:
    rows = []
    for scenario, means in MEANS.items():
        for policy, mean in means.items():
            for k, seed in enumerate((100, 101, 102)):
                rows.append(
                    {
                        "scenario": scenario,
                        "policy": policy,
                        "seed": seed,
                        "return": mean + (k - 1) * spread,
                    }
                )
    return pd.DataFrame(rows)


def test_the_measurements_follow_their_definitions() -> None:
    measured = measure(episodes(), ROLES, [100.0, 700.0])
    # pooled IQM of return / deploy's mean: between the two scenarios' ratios
    assert 0.96 < measured.iqm < 105 / 95 and measured.n_scenarios == 2
    assert measured.iqm_ci[0] <= measured.iqm <= measured.iqm_ci[1]
    # every ppo episode beats every deploy episode on co-runner, loses on steady-single
    assert measured.improvement == pytest.approx(0.5)
    # only co-runner has a 10 % oracle gap; ppo captures (105 - 100) / (110 - 100) of it
    assert list(measured.gaps.index) == ["co-runner"]
    assert measured.gaps.loc["co-runner", "captured"] == pytest.approx(0.5)
    # the floor, worst first: 96/100 on steady-single, worst seed paired at the same seed
    floor = measured.floor
    assert list(floor["scenario"]) == ["steady-single", "co-runner"]
    assert floor.loc[0, "mean_ratio"] == pytest.approx(0.96)
    assert floor.loc[1, "mean_ratio"] == pytest.approx(105 / 90)


def test_missing_policies_are_named() -> None:
    with pytest.raises(ValueError, match=r"policies \['colloid'\] are not in the results"):
        measure(episodes(), Roles("ppo", "deploy", "best", "colloid", "dp"), [])


def test_main_writes_targets_with_verdicts(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    episodes().to_csv(out / "episodes.csv", index=False)
    config = {
        "name": "t",
        "scenarios": list(MEANS),
        "seeds": [100, 101, 102],
        "policies": [
            {"name": name, "kind": "static", "weights": [1 + k, 1]}
            for k, name in enumerate(MEANS["co-runner"])
        ],
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    for seed, (seconds, resumed) in enumerate([(120.0, False), (900.0, True), (300.0, False)]):
        (runs / f"seed_{seed}").mkdir(parents=True)
        info = {"train_wall_s": seconds, "resumed": resumed}
        (runs / f"seed_{seed}" / "run.json").write_text(json.dumps(info))
    assert training_seconds(runs) == [120.0, 300.0]  # a resumed run's time is partial
    args = [str(out), "--policy", "ppo", "--deployable", "deploy", "--hindsight", "best"]
    args += ["--floor", "auto", "--oracle", "dp", "--runs", str(runs)]
    assert main(args) == 0
    text = (out / "targets.md").read_text()
    assert "| probability of improvement" in text and "0.500" in text
    assert "0.960 (steady-single) | **missed** |" in text  # the floor
    assert "slowest of 2) | | <= 600 s | 300 s | met |" in text
    assert "| co-runner | 1.100 | 1.050 | 0.50 |" in text
    assert main([str(tmp_path / "nowhere"), "--policy", "ppo"]) == 2
    # two policies: one section each, in order; --runs must pair with --policy
    args = [str(out), "--policy", "ppo", "--policy", "auto", "--deployable", "deploy"]
    args += ["--hindsight", "best", "--floor", "best", "--oracle", "dp"]
    assert main(args) == 0
    text = (out / "targets.md").read_text()
    assert text.index("# `ppo` against") < text.index("# `auto` against")
    with pytest.raises(SystemExit):
        main([*args, "--runs", str(runs)])
