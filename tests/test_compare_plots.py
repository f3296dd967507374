"""The comparison figures: each writes a whole PNG, or nothing at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from experiments.compare import plots, stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POLICIES = ("static-1to1", "bandwidth-proportional", "ppo")


def assert_png(path: Path) -> None:
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over


def summary_table(scenarios: list[str]) -> pd.DataFrame:
    """A table like stats.summarise's."""
    rng = np.random.default_rng(0)
    rows = [(s, p) for s in scenarios for p in POLICIES]
    iqm = rng.normal(1.0, 0.1, len(rows))
    return pd.DataFrame(
        {
            "scenario": [s for s, _ in rows],
            "policy": [p for _, p in rows],
            "n": np.full(len(rows), 5),
            "iqm": iqm,
            "ci_low": iqm - 0.05,
            "ci_high": iqm + 0.08,
        }
    )


def steps_table(
    scenarios: list[str], seeds=(0, 1), n_steps: int = 40, bound: bool = True
) -> pd.DataFrame:
    """Steps of a 2-node run whose load goes 1, 2, 3, 1 apps; ppo follows it, statics do not."""
    rng = np.random.default_rng(1)
    rows: list[dict] = []
    for scenario in scenarios:
        for policy, share in zip(POLICIES, (0.5, 0.74, None), strict=True):
            for seed in seeds:
                for step in range(n_steps):
                    apps = (1, 2, 3, 1)[step * 4 // n_steps]
                    s0 = share if share is not None else 0.9 - 0.15 * apps
                    total = 60.0 * apps * (0.9 + 0.1 * rng.random())
                    row = {
                        "scenario": scenario,
                        "policy": policy,
                        "seed": seed,
                        "step": step,
                        "time_s": 0.5 * step,
                        "reward": total / 100 - 0.01,
                        "reward_throughput": total / 100,
                        "reward_migration": -0.01,
                        "n_apps": apps,
                        "total_throughput_gbps": total,
                        "weight_0": round(255 * s0),
                        "weight_1": 255 - round(255 * s0),
                        "share_0": s0,
                        "share_1": 1.0 - s0,
                        "bandwidth_gbps_0": total * s0,
                        "bandwidth_gbps_1": total * (1.0 - s0),
                        "latency_ns_0": 110.0,
                        "latency_ns_1": 250.0,
                    }
                    if bound:
                        row["bound"] = 0.75 * apps
                    rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("scenarios", [["mixed"], ["mixed", "steady", "bursty", "co-runner"]])
def test_plot_scenario_bars(tmp_path: Path, scenarios: list[str]) -> None:
    path = tmp_path / "bars.png"
    out = plots.plot_scenario_bars(
        summary_table(scenarios), path, "return (sum of rewards)", reference="static-1to1"
    )
    assert Path(out) == path
    assert_png(path)


def test_plot_scenario_bars_from_summarise(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    episodes = pd.DataFrame(
        [
            {"scenario": s, "policy": p, "seed": seed, "return": rng.normal()}
            for s in ("a", "b")
            for p in POLICIES
            for seed in range(4)
        ]
    )
    summary = stats.summarise(episodes, resamples=200)
    assert_png(plots.plot_scenario_bars(summary, tmp_path / "bars.png", "return"))


def test_plot_scenario_bars_errors(tmp_path: Path) -> None:
    path = tmp_path / "bars.png"
    with pytest.raises(ValueError, match=r"unknown reference policy 'oracle'"):
        plots.plot_scenario_bars(summary_table(["a"]), path, "return", reference="oracle")
    table = summary_table(["a"])
    del table["ci_high"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ci_high'\]"):
        plots.plot_scenario_bars(table, path, "return")
    with pytest.raises(ValueError, match=r"summary is empty"):
        plots.plot_scenario_bars(summary_table(["a"]).iloc[:0], path, "return")
    with pytest.raises(ValueError, match=r"summary column 'iqm' has 1 NaN value"):
        plots.plot_scenario_bars(summary_table(["a"]).assign(iqm=[1.0, np.nan, 1.0]), path, "r")
    with pytest.raises(ValueError, match="PNG"):
        plots.plot_scenario_bars(summary_table(["a"]), tmp_path / "bars.pdf", "return")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scenarios", [["mixed"], ["mixed", "steady", "bursty"]])
def test_plot_weight_timeseries(tmp_path: Path, scenarios: list[str]) -> None:
    steps = steps_table(scenarios)
    path = plots.plot_weight_timeseries(steps, scenarios[-1], 1, tmp_path / "weights.png")
    assert_png(path)
    again = plots.plot_weight_timeseries(
        steps,
        scenarios[0],
        0,
        tmp_path / "weights.png",  # overwritten in place
        policies=["ppo", "static-1to1"],
        bandwidth_policy="ppo",
    )
    assert_png(again)


def test_plot_weight_timeseries_errors(tmp_path: Path) -> None:
    steps = steps_table(["mixed"])
    path = tmp_path / "w.png"
    with pytest.raises(ValueError, match=r"no steps for scenario 'x'; scenarios: \['mixed'\]"):
        plots.plot_weight_timeseries(steps, "x", 0, path)
    with pytest.raises(ValueError, match=r"seed 9 .* seeds: \[0, 1\]"):
        plots.plot_weight_timeseries(steps, "mixed", 9, path)
    with pytest.raises(ValueError, match="unknown policies"):
        plots.plot_weight_timeseries(steps, "mixed", 0, path, policies=["sac"])
    with pytest.raises(ValueError, match="unknown bandwidth_policy"):
        plots.plot_weight_timeseries(steps, "mixed", 0, path, bandwidth_policy="sac")
    del steps["share_0"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['share_0'\]"):
        plots.plot_weight_timeseries(steps, "mixed", 0, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scenarios", [["mixed"], ["mixed", "steady"]])
def test_plot_regret(tmp_path: Path, scenarios: list[str]) -> None:
    path = plots.plot_regret(steps_table(scenarios), tmp_path / "regret.png", resamples=200)
    assert_png(path)


def test_plot_regret_needs_a_bound(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'bound' column"):
        plots.plot_regret(steps_table(["mixed"], bound=False), tmp_path / "regret.png")
    assert list(tmp_path.iterdir()) == []


def learning_curves(policies=("ppo", "sac"), seeds=range(5)) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [
        (p, s, t, np.log1p(t / 1e4) + rng.normal(0.0, 0.2))
        for p in policies
        for s in seeds
        for t in range(0, 50_001, 5_000)
    ]
    return pd.DataFrame(rows, columns=["policy", "seed", "timesteps", "eval_return"])


def test_plot_learning_curves(tmp_path: Path) -> None:
    assert_png(plots.plot_learning_curves(learning_curves(), tmp_path / "curves.png"))
    one_seed = learning_curves(policies=("ppo",), seeds=[0])
    assert_png(plots.plot_learning_curves(one_seed, tmp_path / "curves.png"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['eval_return'\]"):
        plots.plot_learning_curves(
            pd.DataFrame({"policy": ["a"], "seed": [0], "timesteps": [0]}), tmp_path / "x.png"
        )


def test_tables_must_be_dataframes(tmp_path: Path) -> None:
    """The mappings of column name to values taken before are refused, naming the table."""
    summary = {name: column.to_numpy() for name, column in summary_table(["a"]).items()}
    steps = {name: column.to_numpy() for name, column in steps_table(["a"]).items()}
    curves = {name: column.to_numpy() for name, column in learning_curves().items()}
    path = tmp_path / "x.png"
    with pytest.raises(TypeError, match="summary must be a pandas DataFrame, got dict"):
        plots.plot_scenario_bars(summary, path, "return")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="steps must be a pandas DataFrame, got dict"):
        plots.plot_weight_timeseries(steps, "a", 0, path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="steps must be a pandas DataFrame, got dict"):
        plots.plot_regret(steps, path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="curves must be a pandas DataFrame, got dict"):
        plots.plot_learning_curves(curves, path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_row_order_and_index_do_not_change_the_weights_plot(tmp_path: Path) -> None:
    """Each policy's run is drawn in time order whatever the order and index of the rows
    (policies in a given order: by default they come in order of first appearance)."""
    steps = steps_table(["mixed"])
    shuffled = steps.sample(frac=1.0, random_state=4)
    shuffled.index = shuffled.index + 1000
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for table, path in zip((steps, shuffled), paths, strict=True):
        plots.plot_weight_timeseries(
            table, "mixed", 1, path, policies=list(POLICIES), bandwidth_policy="ppo"
        )
    first, second = paths
    assert first.read_bytes() == second.read_bytes()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bars.png"
    path.write_bytes(b"old")

    def broken_savefig(self: Figure, fname, **kwargs) -> None:
        Path(fname).write_bytes(PNG_MAGIC + b"half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_scenario_bars(summary_table(["a", "b"]), path, "return")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["bars.png"]
