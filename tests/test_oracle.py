"""The oracles: the load timeline, the per-interval upper bound, OracleGreedy and OracleDP."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest

from agents.controllers.base import ControlContext, Controller, ControllerError
from agents.oracle import (
    OracleDP,
    OracleGreedy,
    OraclePhase,
    interval_bound,
    load_timeline,
    upper_bound,
)
from agents.oracle.model import modelled_speedup
from tierenv.contracts.actions import weights_to_shares
from tierenv.envs.discrete import weight_grid
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.hardware.solver import solve
from tierenv.workload.scenario import load_scenario

SCENARIOS = ["co-runner", "latency-vs-batch", "hot-set-shift", "capacity-pressure", "steady-single"]
RELATIVE_TOLERANCE = 1e-6  # solver tolerance 1e-9 and different warm starts


class _Static(Controller):
    kind: ClassVar[str] = "test-static"

    def __init__(self, weights: list[int]) -> None:
        self.weights = np.array(weights, dtype=np.int64)

    def decide(self, measurements) -> np.ndarray:
        return self.weights


class _Random(Controller):
    kind: ClassVar[str] = "test-random"

    def __init__(self, seed: int, switch: float = 0.2) -> None:
        self.rng = np.random.default_rng(seed)
        self.switch = switch

    def decide(self, measurements) -> np.ndarray:
        # Holds a random choice (half the time an extreme) for a random few intervals, so
        # DAMOS migrates in both directions; the copies' traffic must stay within the bound.
        if not hasattr(self, "weights") or self.rng.random() < self.switch:
            extreme = np.array([[255, 1], [1, 255]][int(self.rng.integers(2))])
            random = self.rng.integers(1, 256, size=2)
            self.weights = extreme if self.rng.random() < 0.5 else random
        return self.weights


def _context(env: WeightedInterleaveEnv, scenario=True) -> ControlContext:
    return ControlContext(
        nodes=env.node_info,
        interval_s=env.scenario.control_interval_s,
        initial_weights=env.host.weights,
        scenario=env.scenario if scenario else None,
        seed=0,
    )


def _episode(name: str, controller: Controller) -> list[dict]:
    """Every interval's info, the controller driving (reset's idle report left out)."""
    env = WeightedInterleaveEnv(name)
    env.reset(seed=0)
    infos = []
    controller.reset(_context(env))
    while True:
        weights = controller.decide(env.last_result.measurements)
        _, _, _, truncated, info = env.step_weights(weights)
        # the running applications' names are in the measurements (info stays numeric)
        infos.append({**info, "app_names": env.last_result.measurements.app_names})
        if truncated:
            return infos


def _realised(name: str, seed: int = 0):
    """The run of ``name`` an env reset with ``seed`` plays (its realised scenario)."""
    env = WeightedInterleaveEnv(name)
    env.reset(seed=seed)
    return env.scenario


@pytest.fixture(scope="module")
def bounds() -> dict:
    # the bound of the very run _episode plays (seed 0), phase times and intensities included
    return {name: upper_bound(_realised(name)) for name in SCENARIOS}


@pytest.mark.parametrize("name", ["co-runner", "latency-vs-batch", "hot-set-shift"])
def test_timeline_is_the_load_the_run_solves(name: str) -> None:
    env = WeightedInterleaveEnv(name)
    env.reset(seed=0)
    results = []
    while not env.host.done:
        env.step_weights(env.host.weights)
        results.append(env.last_result)
    timeline = load_timeline(env.scenario)
    assert timeline.n_intervals == len(results) == env.scenario.n_steps
    nodes = timeline.nodes
    checked = 0
    for t, (apps, result) in enumerate(zip(timeline.loads, results, strict=True)):
        m, truth = result.measurements, result.truth
        assert tuple(a.name for a in apps) == m.app_names, t
        np.testing.assert_allclose([a.alone_gbps for a in apps], truth.app_alone_gbps)
        assert [a.hot_pages for a in apps] == truth.app_hot_pages.sum(axis=1).tolist()
        assert [a.touched_pages for a in apps] == m.resident_pages.sum(axis=1).tolist()
        if apps and not truth.background_gbps.any():
            # The recorded load reproduces the run's solve at its access split.
            solution = solve(
                nodes,
                np.array([a.mlp for a in apps]),
                np.array([a.think_ns for a in apps]),
                np.array([a.read_fraction for a in apps]),
                truth.app_access_split,
            )
            np.testing.assert_allclose(
                solution.throughput_gbps, m.app_throughput_gbps, rtol=RELATIVE_TOLERANCE
            )
            checked += 1
    assert checked > len(results) // 2
    # The run's access split is what the oracle model evaluates too.
    t = len(results) - 1
    speedup, _ = modelled_speedup(nodes, timeline.loads[t], results[t].truth.app_access_split[None])
    assert speedup[0] == pytest.approx(results[t].truth.weighted_speedup, rel=RELATIVE_TOLERANCE)


def _policies() -> list[tuple[str, object]]:
    statics = [
        (f"static {a}:{b}", lambda a=a, b=b: _Static([a, b]))
        for a, b in [(255, 1), (3, 1), (1, 1), (1, 3)]
    ]
    return [
        *statics,
        ("random 0", lambda: _Random(0)),
        ("random 1", lambda: _Random(1)),
        *((f"random 10 wild {seed}", lambda seed=seed: _Random(seed, 1.0)) for seed in range(6)),
        ("random 10 slow", lambda: _Random(10, 0.1)),
        ("greedy", OracleGreedy),
        ("dp", OracleDP),
        ("dp free", lambda: OracleDP(migration_cost_per_gib=0.0)),
    ]


@pytest.mark.parametrize("name", SCENARIOS)
def test_upper_bound_bounds_every_policy(name: str, bounds: dict) -> None:
    bound = bounds[name]
    for label, make in _policies():
        infos = _episode(name, make())
        assert len(infos) == len(bound.values)
        for t, info in enumerate(infos):
            assert round(info["time_s"]) == t + 1
            assert info["app_names"] == bound.app_names[t]
            limit = bound.values[t] * (1 + RELATIVE_TOLERANCE) + 1e-12
            assert info["reward_throughput"] <= limit, (label, t, info["reward_throughput"])


def test_upper_bound_shape_and_known_values(bounds: dict) -> None:
    bound = bounds["co-runner"]
    # One application with room in DDR: all-DDR is its alone run (weighted speedup 1).
    assert bound.values[:60] == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(bound.splits[0], [[1.0, 0.0]], atol=1e-6)
    # Two such applications overload DDR: something is better than both alone-on-DDR halves.
    assert 1.0 < bound.values[90] < 2.0
    assert bound.total == pytest.approx(bound.values.sum())
    # Capacity-pressure: DDR holds at most its pages' worth of the hottest accesses.
    capacity = bounds["capacity-pressure"]
    assert capacity.splits[0][0, 0] == pytest.approx(8192 * 0.95 / 12288, abs=1e-6)


def test_upper_bound_more_nodes_never_lower() -> None:
    """A third node (a copy of the CXL one) can only help; exercises n-node search."""
    scenario = load_scenario("co-runner")
    timeline = load_timeline(scenario)
    apps = timeline.loads[90]
    two = interval_bound(timeline.nodes, apps, timeline.capacity_pages)
    three_scenario = dataclasses.replace(scenario, nodes=(*scenario.nodes, scenario.nodes[1]))
    three = load_timeline(three_scenario)
    found = interval_bound(three.nodes, three.loads[90], three.capacity_pages)
    assert found.split.shape == (2, 3)
    assert found.value >= two.value * (1 - 1e-6)


def test_greedy_keeps_a_light_app_in_ddr_and_spills_an_overload() -> None:
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=0)
    greedy = OracleGreedy()
    greedy.reset(_context(env))
    top = weights_to_shares(weight_grid(2)[0][0])[0]
    shares = weights_to_shares(greedy.schedule)[:, 0]
    assert np.all(shares[1:60] >= top - 1e-12)  # one app: all-DDR (the grid's highest share)
    assert np.all(shares[120:] >= top - 1e-12)
    assert np.all(shares[60:120] < 0.95)  # two apps exceed DDR's bandwidth: spill to CXL
    assert np.all(greedy.schedule >= 1) and np.all(greedy.schedule <= 255)
    assert greedy.schedule.dtype == np.int64
    # decide indexes by the end of the interval just measured.
    first = greedy.decide(env.last_result.measurements)
    np.testing.assert_array_equal(first, greedy.schedule[1])


def test_dp_with_huge_cost_holds_and_with_zero_cost_is_the_argmax() -> None:
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=0)
    held = OracleDP(migration_cost_per_gib=1e9)
    held.reset(_context(env))
    assert np.all(held.schedule == held.schedule[0])
    # The first decision places the first pages for free; holding it, the best fixed choice.
    assert held.index[0] == int(np.argmax(held.rewards.sum(axis=0)))
    free = OracleDP(migration_cost_per_gib=0.0)
    free.reset(_context(env))
    rewards = free.rewards[np.arange(len(free.index)), free.index]
    np.testing.assert_array_equal(rewards, free.rewards.max(axis=1))
    assert free.value == pytest.approx(free.rewards.max(axis=1).sum())
    # Migration cost makes the DP change its weights less often.
    costly = OracleDP(migration_cost_per_gib=10.0)
    costly.reset(_context(env))
    changes = [
        int(np.sum(np.any(np.diff(d.schedule, axis=0) != 0, axis=1))) for d in (free, costly, held)
    ]
    assert changes[0] >= changes[1] >= changes[2] == 0


@pytest.mark.parametrize("controller", [OracleGreedy, OracleDP])
def test_privileged_oracles_refuse_a_real_host(controller) -> None:
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=0)
    oracle = controller()
    assert oracle.privileged
    with pytest.raises(ControllerError, match="privileged"):
        oracle.reset(_context(env, scenario=False))


def test_oracle_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="migration_cost_per_gib"):
        OracleDP(migration_cost_per_gib=-1.0)
    with pytest.raises(ValueError, match="levels"):
        OracleGreedy(levels=1)
    assert OracleGreedy.kind == "oracle-greedy" and OracleDP.kind == "oracle-dp"


def test_oracle_phase_changes_weights_only_where_the_scenario_changes() -> None:
    env = WeightedInterleaveEnv("co-runner")
    env.reset(seed=0)
    phase = OraclePhase()
    phase.reset(_context(env))
    dp = OracleDP()
    dp.reset(_context(env))
    interval = env.scenario.control_interval_s
    boundaries = {round(m / interval) for m in env.scenario.moments()}
    changes = {
        t
        for t in range(1, len(phase.schedule))
        if np.any(phase.schedule[t] != phase.schedule[t - 1])
    }
    assert changes <= boundaries, (changes, boundaries)
    # holding one choice per phase is a restriction of the DP's schedules
    assert phase.value <= dp.value + 1e-9
    # and holding one choice throughout (no migration) is one of its schedules
    assert phase.value >= float(phase.rewards.sum(axis=0).max()) - 1e-9


def _nominal_suite_scenario(name: str):
    """A drawn test-suite scenario with its [variation] off (the run as written)."""
    from pathlib import Path

    from tierenv.workload.scenario import parse_scenario

    path = Path(__file__).resolve().parents[1] / "experiments" / "suites" / "test" / f"{name}.toml"
    off = "[variation]\narrival_jitter_s = 0\nintensity_spread = 0\nlayout = false\n"
    return parse_scenario(path.read_text() + off, source=str(path), base=path.parent)


def test_placement_splits_are_the_simulators_split_under_static_weights() -> None:
    """Long interleave runs (250:250:16:1 over a few hundred pages) put hot pages wherever the
    cycle falls: the oracles' model follows the pages, not the weights' shares."""
    from agents.oracle.model import PlacementSplits

    weights = np.array([251, 251, 16, 1])
    env = WeightedInterleaveEnv(_nominal_suite_scenario("four-node-s1000-006"))
    env.reset(seed=0)
    placement = PlacementSplits(weights[None])
    compared = 0
    for _ in range(40):
        env.step_weights(weights)
        apps = env.host.current_load()
        if not apps:
            continue
        split = placement(apps)[0]
        np.testing.assert_allclose(split, env.last_result.truth.app_access_split, atol=1e-9)
        compared += 1
    assert compared >= 30
    shares = weights / weights.sum()
    assert np.abs(split - shares).max() > 0.05  # the shares would have been far off


def test_dp_oracle_is_not_below_the_static_weights_it_can_hold() -> None:
    """four-node-s1000-006: with the shares as splits the DP picked 250:250:1:1 and earned
    0.934 of holding 251:251:16:1 (one of its own choices)."""
    from experiments.compare.config import PolicySpec
    from experiments.compare.episode import Trial, run_trial

    scenario = _nominal_suite_scenario("four-node-s1000-006")
    returns = {}
    for label, spec in (
        ("dp", PolicySpec("dp", "oracle-dp", {})),
        ("static", PolicySpec("static", "static", {"weights": [251, 251, 16, 1]})),
    ):
        returns[label] = float(run_trial(Trial(scenario, spec, 0, {})).steps["reward"].sum())
    assert returns["dp"] >= 0.999 * returns["static"], returns
