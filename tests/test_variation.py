"""A scenario's realisation (``tierenv.workload.variation``): seeded, within its ranges, and
the same run for the full simulator, its oracles and the fluid model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.oracle import load_timeline
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.workload.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    shipped_scenario_names,
)
from tierenv.workload.variation import Variation, realise


def signature(scenario) -> tuple:
    """What a realisation changes (scenarios hold profiles with arrays: no plain ==)."""
    return (
        tuple(scenario.moments()),
        tuple((r.start_s, r.stop_s, r.app.mlp, r.app.distribution.seed) for r in scenario.apps),
        tuple((e.at_s, e.app, e.intensity) for e in scenario.events),
        tuple((f.start_s, f.stop_s) for f in scenario.traffic),
    )


BASE = """
name = "v"
duration_s = 60
[[nodes]]
profile = "bytedance-ddr5-snc"
capacity = "64 GiB"
[[nodes]]
profile = "bytedance-cxl-asic"
capacity = "64 GiB"
[[apps]]
name = "a"
working_set = "4 GiB"
mlp = 40
think_ns = 5
[apps.distribution]
kind = "zipf"
exponent = 1.0
[[apps]]
name = "b"
working_set = "4 GiB"
mlp = 20
think_ns = 5
start_s = 20
stop_s = 40
[[events]]
at_s = 30
app = "b"
intensity = 2.0
"""


def test_realisations_are_seeded_concrete_and_differ_between_seeds() -> None:
    scenario = parse_scenario(BASE)
    one = realise(scenario, np.random.default_rng(5))
    assert signature(realise(scenario, np.random.default_rng(5))) == signature(one)
    assert not one.variation.active
    assert realise(one, np.random.default_rng(9)) is one  # a run realised again is itself
    runs = [realise(scenario, np.random.default_rng(seed)) for seed in range(20)]
    assert len({tuple(r.moments()) for r in runs}) > 1
    assert len({r.apps[0].app.mlp for r in runs}) == 20
    assert len({r.apps[0].app.distribution.seed for r in runs}) == 20


def test_moments_move_within_the_jitter_in_order_and_apps_keep_their_company() -> None:
    scenario = parse_scenario(BASE)
    for seed in range(50):
        run = realise(scenario, np.random.default_rng(seed))
        b = run.app("b")
        event = run.events[0]
        # default jitter 2 s at 1 s intervals: whole intervals, at most 2 away
        for nominal, moved in ((20, b.start_s), (40, b.stop_s), (30, event.at_s)):
            assert moved in {nominal + k for k in range(-2, 3)}, (seed, nominal, moved)
        assert b.start_s < event.at_s < b.stop_s
        assert run.apps[0].start_s == 0 and run.apps[0].stop_s is None


def test_intensity_spreads_per_phase_around_the_nominal() -> None:
    scenario = parse_scenario(BASE + "[variation]\narrival_jitter_s = 0\nlayout = false\n")
    ratios, phase = [], []
    for seed in range(400):
        run = realise(scenario, np.random.default_rng(seed))
        assert run.moments() == scenario.moments() and run.events[0].at_s == 30
        ratios.append(run.apps[0].app.mlp / 40)
        # the event's phase: mlp x intensity against the nominal 20 x 2.0
        phase.append(run.app("b").app.mlp * run.events[0].intensity / 40)
    for values in (np.log(ratios), np.log(phase)):
        assert abs(values.mean()) < 0.005 and values.std() == pytest.approx(0.02, rel=0.15)
    assert np.corrcoef(np.log(ratios), np.log(phase))[0, 1] < 0.2  # phases draw their own


def test_variation_off_gives_the_nominal_run() -> None:
    text = BASE + "[variation]\narrival_jitter_s = 0\nintensity_spread = 0\nlayout = false\n"
    scenario = parse_scenario(text)
    assert realise(scenario, np.random.default_rng(1)) is scenario


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ("arrival_jitter_s = -1", "variation.arrival_jitter_s"),
        ("intensity_spread = 2.0", "variation.intensity_spread"),
        ("layout = 1", "variation.layout"),
        ("jitter = 1", "variation.jitter"),
    ],
)
def test_bad_variation_tables_name_the_field(table: str, field: str) -> None:
    with pytest.raises(ScenarioError, match=f"<text>:\\d+: {field}: "):
        parse_scenario(BASE + f"[variation]\n{table}\n")


def test_a_distribution_refuses_keys_its_kind_does_not_read() -> None:
    text = BASE.replace('kind = "zipf"\nexponent = 1.0', 'kind = "uniform"\nexponent = 1.0')
    with pytest.raises(ScenarioError, match=r"apps\[0\]\.distribution\.exponent: a uniform"):
        parse_scenario(text)


def test_variation_checks_its_ranges() -> None:
    with pytest.raises(ValueError, match="intensity_spread"):
        Variation(intensity_spread=float("nan"))
    assert not Variation.none().active and Variation().active


@pytest.mark.parametrize("name", shipped_scenario_names())
def test_env_seeds_vary_every_shipped_scenario_and_repeat_exactly(name: str) -> None:
    """Issue 20 item 3: seeds vary the workload, not only DAMON's sampling; the same seed
    replays the episode."""

    def run(seed: int) -> tuple[float, object]:
        env = WeightedInterleaveEnv(name)
        env.reset(seed=seed)
        total, done = 0.0, False
        weights = [3, 1] + [1] * (env.n_nodes - 2)
        for _ in range(20):  # enough to see a different run without playing it out
            _, reward, _, done, _ = env.step_weights(weights)
            total += reward
            if done:
                break
        return total, signature(env.scenario)

    first, again, other = run(0), run(0), run(1)
    assert first == again
    assert other[1] != first[1]  # a different run of the scenario
    assert other[0] != first[0]


def test_oracles_see_the_episode_run() -> None:
    """The env's scenario is the realised run: the oracles' timeline of it matches the load the
    episode's host solved, whatever seed the timeline itself is given."""
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=4)
    nominal = load_timeline(env.nominal_scenario)
    run = load_timeline(env.scenario, seed=123)
    assert run.keys != nominal.keys
    loads = []
    while not env.host.done:
        env.step_weights([3, 1])
        loads.append(env.host.current_load())
    assert [tuple(a.mlp for a in step) for step in loads] == [
        tuple(a.mlp for a in step) for step in run.loads
    ]


def test_realised_scenarios_keep_the_template_nodes_and_length() -> None:
    scenario = load_scenario("bytedance-co-runners")
    run = realise(scenario, np.random.default_rng(0))
    assert run.nodes == scenario.nodes and run.duration_s == scenario.duration_s
    assert [r.app.name for r in run.apps] == [r.app.name for r in scenario.apps]
    assert signature(run) != signature(scenario)
    assert signature(dataclasses.replace(run, apps=scenario.apps, events=scenario.events)) == (
        signature(scenario)
    )
