"""The comparison statistics: IQM, bootstrap CIs, probability of improvement, summary tables."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu, trim_mean

from experiments.compare import stats

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def brute_force_poi(x, y) -> float:
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    return wins / (len(x) * len(y))


def episodes_table(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["scenario", "policy", "seed", "return"])


# --------------------------------------------------------------------------------------------
# IQM


@pytest.mark.parametrize("n", [*range(1, 21), 40, 41, 42, 43, 101])
def test_iqm_matches_scipy_trim_mean(n: int) -> None:
    x = np.random.default_rng(n).standard_t(2, size=n)  # heavy tails: the trimming matters
    assert stats.iqm(x) == pytest.approx(trim_mean(x, 0.25), rel=1e-12, abs=1e-12)


@PROPERTY_SETTINGS
@given(st.lists(finite, min_size=1, max_size=60))
def test_iqm_matches_trim_mean_property(values: list[float]) -> None:
    assert stats.iqm(values) == pytest.approx(trim_mean(values, 0.25), rel=1e-9, abs=1e-6)


def test_iqm_small_samples_are_the_mean_and_outliers_are_cut() -> None:
    assert stats.iqm([3.0]) == 3.0
    assert stats.iqm([1.0, 2.0, 6.0]) == 3.0  # n < 4: nothing is cut
    assert stats.iqm([1.0, 2.0, 3.0, 1000.0]) == 2.5  # n = 4: one cut from each end
    assert stats.iqm(np.arange(8.0)) == 3.5


@pytest.mark.parametrize(("values", "message"), [([], "empty"), ([1.0, np.nan], "NaN")])
def test_iqm_rejects_empty_and_nan(values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.iqm(values)


# --------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_ci_contains_the_statistic_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(7)
    small, large = rng.normal(10.0, 2.0, 12), rng.normal(10.0, 2.0, 400)
    widths = []
    for x in (small, large):
        low, high = stats.bootstrap_ci(x, seed=3)
        assert low <= stats.iqm(x) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(n): 400 / 12 runs gives ~ 5.8 times narrower


def test_bootstrap_ci_is_deterministic_given_the_seed() -> None:
    x = np.random.default_rng(0).normal(size=15)
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)
    assert stats.bootstrap_ci(x, seed=5) != stats.bootstrap_ci(x, seed=6)


def test_bootstrap_ci_of_a_constant_is_that_point() -> None:
    assert stats.bootstrap_ci([4.0] * 6) == (4.0, 4.0)
    assert stats.bootstrap_ci([4.0]) == (4.0, 4.0)


def test_bootstrap_ci_any_statistic_and_higher_confidence_is_wider() -> None:
    x = np.random.default_rng(1).normal(size=30)
    fast = stats.bootstrap_ci(x, statistic=np.mean, seed=2)
    slow = stats.bootstrap_ci(x, statistic=lambda v: float(np.mean(v)), seed=2)
    assert fast == pytest.approx(slow, rel=1e-12)
    low90, high90 = stats.bootstrap_ci(x, confidence=0.9, seed=2)
    low99, high99 = stats.bootstrap_ci(x, confidence=0.99, seed=2)
    assert low99 <= low90 and high90 <= high99


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"resamples": 0}, "resamples"),
        ({"resamples": 2.5}, "resamples"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bootstrap_ci_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.bootstrap_ci([1.0, 2.0, 3.0], **kwargs)


def test_stratified_bootstrap_keeps_every_task_in_its_proportion() -> None:
    # Every stratified resample holds 8 zeros and 8 tens, so its IQM is always 5; a plain
    # bootstrap of the pooled runs would vary the mix and give a wide interval.
    by_task = {"a": [0.0] * 8, "b": [10.0] * 8}
    assert stats.stratified_bootstrap_ci(by_task) == (5.0, 5.0)
    low, high = stats.bootstrap_ci(by_task["a"] + by_task["b"])
    assert high - low > 2.0


def test_stratified_bootstrap_two_tasks() -> None:
    rng = np.random.default_rng(11)
    by_task = {"mixed": rng.normal(1.0, 0.1, 10), "steady": rng.normal(2.0, 0.3, 6)}
    low, high = stats.stratified_bootstrap_ci(by_task, seed=4)
    pooled = stats.aggregate(by_task)
    assert pooled == pytest.approx(trim_mean(np.concatenate(list(by_task.values())), 0.25))
    assert low <= pooled <= high
    # Deterministic, and independent of the mapping's order.
    reordered = {"steady": by_task["steady"], "mixed": by_task["mixed"]}
    assert stats.stratified_bootstrap_ci(reordered, seed=4) == (low, high)


def test_stratified_bootstrap_rejects_empty_tasks() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        stats.stratified_bootstrap_ci({})
    with pytest.raises(ValueError, match=r"\['b'\] is empty"):
        stats.stratified_bootstrap_ci({"a": [1.0], "b": []})


# --------------------------------------------------------------------------------------------
# Probability of improvement


def test_probability_of_improvement_extremes() -> None:
    assert stats.probability_of_improvement([3.0, 4.0, 5.0], [1.0, 2.0]) == 1.0
    assert stats.probability_of_improvement([1.0, 2.0], [3.0, 4.0, 5.0]) == 0.0
    assert stats.probability_of_improvement([1.0, 2.0, 2.0], [1.0, 2.0, 2.0]) == 0.5
    assert stats.probability_of_improvement([7.0] * 3, [7.0] * 5) == 0.5


@PROPERTY_SETTINGS
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
)
def test_probability_of_improvement_matches_brute_force(x: list[int], y: list[int]) -> None:
    expected = brute_force_poi(x, y)
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected, abs=1e-12)
    # The vectorised rank form used by the bootstraps agrees.
    rows = stats._poi_rows(np.asarray([x], float), np.asarray([y], float))
    assert rows[0] == pytest.approx(expected, abs=1e-12)
    # P(X > Y) + P(Y > X) + P(X = Y) = 1.
    assert stats.probability_of_improvement(y, x) == pytest.approx(1.0 - expected, abs=1e-12)


def test_probability_of_improvement_is_mann_whitney_u_over_nm() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=9), rng.normal(0.5, size=14)
    u = mannwhitneyu(x, y).statistic
    assert stats.probability_of_improvement(x, y) == pytest.approx(u / (9 * 14))


def test_probability_of_improvement_ci() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(0.3, 1.0, 10), rng.normal(0.0, 1.0, 10)
    low, high = stats.probability_of_improvement_ci(x, y, seed=1)
    assert 0.0 <= low <= stats.probability_of_improvement(x, y) <= high <= 1.0
    assert stats.probability_of_improvement_ci(x, y, seed=1) == (low, high)
    assert stats.probability_of_improvement_ci([5.0, 6.0], [1.0, 2.0, 3.0]) == (1.0, 1.0)


def test_aggregate_probability_of_improvement_averages_tasks() -> None:
    x = {"a": [3.0, 4.0], "b": [1.0, 1.0]}
    y = {"a": [1.0, 2.0], "b": [1.0, 1.0, 1.0]}
    assert stats.aggregate_probability_of_improvement(x, y) == 0.75  # (1 + 0.5) / 2
    assert stats.aggregate_probability_of_improvement_ci(x, y) == (0.75, 0.75)
    rng = np.random.default_rng(9)
    x = {"a": rng.normal(1.0, size=8), "b": rng.normal(0.2, size=8)}
    y = {"a": rng.normal(0.0, size=8), "b": rng.normal(0.0, size=8)}
    p = stats.aggregate_probability_of_improvement(x, y)
    low, high = stats.aggregate_probability_of_improvement_ci(x, y, seed=2)
    assert low <= p <= high
    assert stats.aggregate_probability_of_improvement_ci(x, y, seed=2) == (low, high)


def test_aggregate_probability_of_improvement_needs_the_same_tasks() -> None:
    with pytest.raises(ValueError, match=r"only in x_by_task \['c'\]"):
        stats.aggregate_probability_of_improvement({"a": [1.0], "c": [1.0]}, {"a": [1.0]})


# --------------------------------------------------------------------------------------------
# Tables

ROWS = [
    ("mixed", "static", 0, 1.0),
    ("mixed", "static", 1, 2.0),
    ("mixed", "static", 2, 3.0),
    ("mixed", "static", 3, 10.0),
    ("mixed", "ppo", 0, 4.0),
    ("mixed", "ppo", 1, 4.0),
    ("mixed", "ppo", 2, 4.0),
    ("steady", "static", 0, 2.0),
    ("steady", "static", 1, 2.0),
    ("steady", "ppo", 0, 1.0),
    ("steady", "ppo", 1, 3.0),
]


def test_summarise_exact_values() -> None:
    summary = stats.summarise(episodes_table(ROWS), resamples=500, seed=0)
    assert list(summary.columns) == ["scenario", "policy", "n", "mean", "iqm", "ci_low", "ci_high"]
    assert list(zip(summary["scenario"], summary["policy"], strict=True)) == [
        ("mixed", "ppo"),
        ("mixed", "static"),
        ("steady", "ppo"),
        ("steady", "static"),
    ]
    assert summary["n"].tolist() == [3, 4, 2, 2]
    assert summary["mean"].tolist() == [4.0, 4.0, 2.0, 2.0]
    assert summary["iqm"].tolist() == [4.0, 2.5, 2.0, 2.0]
    constant = summary["policy"].eq("ppo") & summary["scenario"].eq("mixed")
    assert summary.loc[constant, ["ci_low", "ci_high"]].values.tolist() == [[4.0, 4.0]]
    assert (summary["ci_low"] <= summary["iqm"]).all()
    assert (summary["iqm"] <= summary["ci_high"]).all()
    # Deterministic, whatever the row index and other columns, and a group's interval does not
    # depend on the other groups of the table.
    relabelled = episodes_table(ROWS).set_index(pd.Index([3] * len(ROWS))).assign(x="x")
    again = stats.summarise(relabelled, resamples=500, seed=0)
    pd.testing.assert_frame_equal(summary, again)
    alone = stats.summarise(episodes_table(ROWS[:4]), resamples=500, seed=0)
    assert alone.iloc[0].to_dict() == summary.iloc[1].to_dict()


def test_summarise_by_one_column() -> None:
    summary = stats.summarise(episodes_table(ROWS), by="policy", resamples=100)
    assert list(summary.columns[:2]) == ["policy", "n"]
    assert summary["n"].tolist() == [5, 6]


def test_tables_name_missing_columns_and_reject_empty_input() -> None:
    table = episodes_table(ROWS).drop(columns="return")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['return'\]"):
        stats.summarise(table)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['speedup'\]"):
        stats.improvement_table(episodes_table(ROWS), "static", metric="speedup")
    with pytest.raises(ValueError, match="empty"):
        stats.summarise(pd.DataFrame(columns=["scenario", "policy", "return"]))
    with pytest.raises(ValueError, match="empty"):
        stats.normalised_scores(pd.DataFrame(), "static")
    nan_rows = [*ROWS, ("steady", "ppo", 2, float("nan"))]
    with pytest.raises(ValueError, match="'return' has 1 NaN"):
        stats.summarise(episodes_table(nan_rows))


def test_normalised_scores() -> None:
    episodes = episodes_table(ROWS).set_index(pd.Index(range(100, 100 + len(ROWS))))
    scores = stats.normalised_scores(episodes, "static")
    assert "score" in scores and "return" in scores  # the input's columns are kept
    assert scores.index.equals(episodes.index)  # and its index
    assert "score" not in episodes  # a copy
    # The reference's mean is 4 on mixed and 2 on steady.
    assert scores["score"].tolist() == pytest.approx(
        [0.25, 0.5, 0.75, 2.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.5]
    )
    mean = scores[scores["policy"] == "static"].groupby("scenario")["score"].mean()
    assert mean.tolist() == pytest.approx([1.0, 1.0])


def test_normalised_scores_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown reference policy 'oracle'.*\['ppo', 'static'\]"):
        stats.normalised_scores(episodes_table(ROWS), "oracle")
    negative = [(s, p, seed, -v if s == "steady" else v) for s, p, seed, v in ROWS]
    with pytest.raises(ValueError, match=r"scenario 'steady'.*<= 0"):
        stats.normalised_scores(episodes_table(negative), "static")
    missing = [*ROWS, ("bursty", "ppo", 0, 1.0)]
    with pytest.raises(ValueError, match=r"no episodes on scenario\(s\) \['bursty'\]"):
        stats.normalised_scores(episodes_table(missing), "static")


def test_improvement_table() -> None:
    rows = [(s, "static", seed, 1.0 + 0.1 * seed) for s in ("a", "b") for seed in range(4)]
    rows += [(s, "ppo", seed, 2.0 + 0.1 * seed) for s in ("a", "b") for seed in range(4)]
    rows += [("a", "auto", seed, 1.0 + 0.1 * seed) for seed in range(4)]
    table = stats.improvement_table(episodes_table(rows), "static", resamples=300)
    assert list(table.columns) == [
        "scenario",
        "policy",
        "reference",
        "n_scenarios",
        "n",
        "n_reference",
        "probability",
        "ci_low",
        "ci_high",
    ]
    keyed = table.set_index(["scenario", "policy"])
    for key in [("a", "ppo"), ("b", "ppo"), (stats.ACROSS_SCENARIOS, "ppo")]:
        assert keyed.loc[key, ["probability", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert keyed.loc[("a", "auto"), "probability"] == 0.5  # the same runs: no difference
    overall = keyed.loc[(stats.ACROSS_SCENARIOS, "ppo")]
    assert (overall["n_scenarios"], overall["n"], overall["n_reference"]) == (2, 8, 8)
    assert keyed.loc[(stats.ACROSS_SCENARIOS, "auto"), "n_scenarios"] == 1
    assert "static" not in set(table["policy"])
    # For a cost, lower wins.
    cost = stats.improvement_table(episodes_table(rows), "static", higher_is_better=False)
    assert cost.set_index(["scenario", "policy"]).loc[("a", "ppo"), "probability"] == 0.0


def test_improvement_table_unknown_reference_lists_policies() -> None:
    with pytest.raises(ValueError, match=r"available policies: \['ppo', 'static'\]"):
        stats.improvement_table(episodes_table(ROWS), "best-static")


def test_aggregate_summary() -> None:
    scores = stats.normalised_scores(episodes_table(ROWS), "static")
    table = stats.aggregate_summary(scores, resamples=300)
    assert list(table.columns) == [
        "policy",
        "n_tasks",
        "n",
        "mean",
        "iqm",
        "ci_low",
        "ci_high",
    ]
    ppo = table.set_index("policy").loc["ppo"]
    pooled = [1.0, 1.0, 1.0, 0.5, 1.5]
    assert (ppo["n_tasks"], ppo["n"]) == (2, 5)
    assert ppo["iqm"] == pytest.approx(trim_mean(pooled, 0.25))
    assert ppo["ci_low"] <= ppo["iqm"] <= ppo["ci_high"]


def test_regret_per_episode() -> None:
    steps = pd.DataFrame(
        {
            "scenario": ["a"] * 4,
            "policy": ["q", "p", "q", "p"],
            "seed": [0, 0, 0, 0],
            "reward_throughput": [3.0, 1.0, 3.0, 2.0],
            "bound": [3.0, 2.0, 3.0, 4.0],
        }
    )
    table = stats.regret_per_episode(steps)
    assert list(table.columns) == ["scenario", "policy", "seed", "regret"]
    assert table["policy"].tolist() == ["p", "q"]
    assert table["regret"].tolist() == pytest.approx([0.5, 0.0])
    with pytest.raises(ValueError, match="no 'bound' column"):
        stats.regret_per_episode(steps.drop(columns="bound"))


def test_a_tie_band_makes_near_equal_episodes_ties() -> None:
    from experiments.compare.stats import probability_of_improvement

    assert probability_of_improvement([1.0001], [1.0]) == 1.0
    assert probability_of_improvement([1.0001], [1.0], tolerance=1e-3) == 0.5
    assert probability_of_improvement([1.01, 0.99], [1.0], tolerance=1e-3) == 0.5
    assert probability_of_improvement([1.01, 1.0005], [1.0], tolerance=1e-3) == 0.75


def test_improvement_table_tie_tolerance_is_relative_to_the_reference() -> None:
    from experiments.compare.stats import improvement_table

    episodes = pd.DataFrame(
        {
            "scenario": ["s"] * 6,
            "policy": ["ref"] * 3 + ["new"] * 3,
            "seed": [0, 1, 2] * 2,
            "return": [200.0, 200.0, 200.0, 200.1, 200.1, 200.1],
        }
    )
    strict = improvement_table(episodes, "ref", resamples=200).set_index("scenario")
    banded = improvement_table(episodes, "ref", resamples=200, tie_tolerance=1e-3)
    banded = banded.set_index("scenario")
    assert strict.loc["s", "probability"] == 1.0
    assert banded.loc["s", "probability"] == 0.5
    assert banded.loc["s", "ci_low"] == banded.loc["s", "ci_high"] == 0.5


@pytest.mark.parametrize(
    "call",
    [
        lambda table: stats.summarise(table),
        lambda table: stats.aggregate_summary(table, "return"),
        lambda table: stats.normalised_scores(table, "static"),
        lambda table: stats.improvement_table(table, "static"),
        lambda table: stats.regret_per_episode(table),
    ],
)
def test_tables_take_dataframes_only(call) -> None:
    mapping = episodes_table(ROWS).to_dict(orient="list")
    with pytest.raises(TypeError, match="must be a pandas DataFrame, got dict"):
        call(mapping)


def test_tables_reject_missing_group_keys() -> None:
    episodes = episodes_table([*ROWS, (None, "ppo", 4, 1.0)])
    with pytest.raises(
        ValueError, match=r"missing values in grouping column\(s\) \{'scenario': 1\}"
    ):
        stats.summarise(episodes)


def pinned_episodes() -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    rows = [
        (scenario, policy, seed, float(rng.normal(loc + shift, 1.0)))
        for scenario, loc in (("mixed", 10.0), ("steady", 20.0))
        for policy, shift in (("static", 0.0), ("ppo", 0.5))
        for seed in range(6)
    ]
    return episodes_table(rows)


def test_tables_reproduce_pinned_numbers() -> None:
    """The intervals of the tables, pinned: per-group seeds (including integer keys), the order
    of the resamples and the tie band are part of the results. A change here means the
    numbers of every committed comparison would change (or numpy's random streams did)."""
    episodes = pinned_episodes()
    summary = stats.summarise(episodes, resamples=300, seed=0)
    np.testing.assert_allclose(
        summary[["ci_low", "ci_high"]].to_numpy(),
        [
            [10.451660606644047, 11.750410788320949],
            [9.077104161710698, 11.24105399345407],
            [19.243016758091876, 20.798559010861112],
            [18.84101125804994, 20.957310922854624],
        ],
        rtol=1e-12,
        atol=0,
    )
    by_seed = stats.summarise(episodes, by="seed", resamples=300, seed=0)
    assert by_seed["seed"].tolist() == list(range(6))
    np.testing.assert_allclose(
        by_seed[["ci_low", "ci_high"]].to_numpy()[[0, 5]],
        [[11.107824209399178, 19.208908366652004], [9.768677478770753, 20.663788572200982]],
        rtol=1e-12,
        atol=0,
    )
    scores = stats.normalised_scores(episodes, "static")
    pooled = stats.aggregate_summary(scores, resamples=300)
    np.testing.assert_allclose(
        pooled[["ci_low", "ci_high"]].to_numpy(),
        [[0.9955595035869033, 1.0783992391864525], [0.9501174065975286, 1.0637618233550767]],
        rtol=1e-12,
        atol=0,
    )
    improvement = stats.improvement_table(episodes, "static", resamples=300, tie_tolerance=0.05)
    assert improvement["scenario"].tolist() == ["mixed", "steady", stats.ACROSS_SCENARIOS]
    np.testing.assert_allclose(
        improvement[["probability", "ci_low", "ci_high"]].to_numpy(),
        [
            [0.7222222222222222, 0.4788194444444445, 0.9444444444444444],
            [0.5277777777777778, 0.2777777777777778, 0.7572916666666664],
            [0.625, 0.4093750000000001, 0.7847222222222223],
        ],
        rtol=1e-12,
        atol=0,
    )
