"""Scenario features beyond managed applications: bound co-runners, open-loop traffic, phase
events that change compute time and read share, the reward's applications, the per-scenario
DAMOS setup, and the first interval placed by the policy's own weights."""

from __future__ import annotations

import numpy as np
import pytest

from agents.oracle import load_timeline
from agents.oracle.model import modelled_speedup
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.hardware.solver import solve
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import ScenarioError, parse_scenario

BASE = """
name = "features"
duration_s = 12
[[nodes]]
profile = "bytedance-ddr5-snc"
capacity = "16 GiB"
[[nodes]]
profile = "bytedance-cxl-asic"
capacity = "16 GiB"
[[apps]]
name = "managed"
working_set = "1 GiB"
mlp = 64
think_ns = 10
read_fraction = 0.67
"""

BOUND = """
[[apps]]
name = "antagonist"
working_set = "512 MiB"
mlp = 96
think_ns = 5
read_fraction = 0.5
start_s = 4
stop_s = 8
bind_node = 0
"""


def run(text: str, weights=(3, 1), steps: int | None = None, **host) -> list:
    scenario = parse_scenario(text)
    sim = SimulatedHost(scenario, weights=list(weights), seed=0, **host)
    return [sim.step() for _ in range(steps or scenario.n_steps)]


def test_a_bound_co_runner_loads_its_node_but_is_neither_reported_nor_rewarded() -> None:
    scenario = parse_scenario(BASE + BOUND)
    assert [run.managed for run in scenario.apps] == [True, False]
    assert scenario.apps[1].in_reward is False
    host = SimulatedHost(scenario, weights=[3, 1], seed=0)
    alone = [host.step() for _ in range(4)]
    beside = host.step()
    assert beside.measurements.app_names == ("managed",)
    assert beside.truth.app_in_reward.tolist() == [True]
    # its pages sit on node 0 only, outside the managed app's resident counts
    used = beside.measurements.node_free_bytes
    assert alone[-1].measurements.node_free_bytes[0] - used[0] == 512 << 20
    assert alone[-1].measurements.node_free_bytes[1] == used[1]
    # its traffic slows the managed application on the node they share
    before = alone[-1].measurements
    assert beside.measurements.node_bandwidth_gbps[0] > before.node_bandwidth_gbps[0] + 5
    assert beside.measurements.app_throughput_gbps[0] < before.app_throughput_gbps[0] * 0.95
    assert beside.truth.weighted_speedup == pytest.approx(
        beside.measurements.app_throughput_gbps[0] / beside.truth.app_alone_gbps[0]
    )
    # DAMOS watches the managed application only
    assert set(beside.measurements.damos_stats) == {"managed"}
    # and the host's solve is the solver's, with the bound stream on node 0
    after = [host.step() for _ in range(4)]
    assert after[-1].measurements.node_free_bytes[0] == alone[-1].measurements.node_free_bytes[0]


def test_open_loop_traffic_loads_its_node_from_start_to_stop() -> None:
    text = BASE + "[[traffic]]\nnode = 1\ngbps = 20.0\nread_fraction = 0.5\n"
    text += "start_s = 3\nstop_s = 6\n"
    results = run(text, weights=(1, 1), steps=8)
    bandwidth = np.array([r.measurements.node_bandwidth_gbps[1] for r in results])
    throughput = np.array([r.measurements.app_throughput_gbps[0] for r in results])
    assert np.all(bandwidth[3:6] > bandwidth[1] + 15)  # the traffic is on node 1 in [3, 6)
    assert bandwidth[7] == pytest.approx(bandwidth[1], rel=0.02)
    assert np.all(throughput[3:6] < throughput[1])
    # the copies of migrations are reported apart from the scenario's traffic
    assert all(not r.truth.background_gbps.any() for r in results)


def test_phase_events_change_compute_time_and_read_share() -> None:
    text = BASE + '[[events]]\nat_s = 4\napp = "managed"\nthink_ns = 200\nread_fraction = 1.0\n'
    results = run(text, weights=(255, 1), steps=6)
    assert (
        results[4].measurements.app_throughput_gbps[0]
        < 0.5 * (results[2].measurements.app_throughput_gbps[0])
    )
    assert results[4].measurements.node_read_fraction[0] == pytest.approx(1.0, abs=0.01)
    # the reference throughput alone follows the new phase, so the speedup stays near 1
    assert results[4].truth.weighted_speedup == pytest.approx(1.0, abs=0.05)


def test_an_application_left_out_of_the_reward_is_still_reported() -> None:
    text = BASE.replace('name = "managed"', 'name = "managed"\nreward = false')
    text += BASE[BASE.index("[[apps]]") :].replace('"managed"', '"scored"')
    results = run(text, steps=3)
    last = results[-1]
    assert last.measurements.app_names == ("managed", "scored")
    assert last.truth.app_in_reward.tolist() == [False, True]
    scored = last.measurements.app_throughput_gbps[1] / last.truth.app_alone_gbps[1]
    assert last.truth.weighted_speedup == pytest.approx(scored)
    env = WeightedInterleaveEnv(parse_scenario(text))
    env.reset(seed=0)
    _, reward, *_ = env.step_weights([3, 1])
    assert 0 < reward < 1.2  # one application's speedup, not two


def test_the_scenario_sets_the_damos_setup() -> None:
    text = BASE + '[damos]\nquota_per_s = "2 GiB"\nmin_access_percent = 10\n'
    scenario = parse_scenario(text)
    setup = DamosSetup.for_scenario(scenario)
    assert setup.quota_bytes == 2 << 30 and setup.min_access_percent == 10
    env = WeightedInterleaveEnv(scenario)
    assert env.damos == setup
    env.reset(seed=0)
    _, _, _, _, info = env.step_weights([3, 1])
    assert info["damos_quota_bytes_per_s"] == 2 << 30
    unlimited = DamosSetup.for_scenario(parse_scenario(BASE + "[damos]\nquota_per_s = 0\n"))
    assert unlimited.quota_bytes == 0
    off = DamosSetup.for_scenario(parse_scenario(BASE + "[damos]\nenabled = false\n"))
    assert not off.enabled
    assert DamosSetup.for_scenario(parse_scenario(BASE)) == DamosSetup()


@pytest.mark.parametrize("weights", [[255, 1], [1, 1], [1, 255]])
def test_the_first_pages_follow_the_policys_own_weights(weights) -> None:
    """reset() reports the idle host; the first step's weights place the first pages."""
    env = WeightedInterleaveEnv(parse_scenario(BASE), initial_weights="auto")
    env.reset(seed=0)
    assert env.last_result.measurements.app_names == ()
    env.step_weights(weights)
    resident = env.last_result.measurements.resident_pages[0]
    share = resident[0] / resident.sum()
    assert share == pytest.approx(weights[0] / sum(weights), abs=0.01)
    assert env.last_result.measurements.migrated_bytes.sum() == 0


def test_oracles_see_the_bound_co_runner_and_the_traffic() -> None:
    text = BASE + BOUND + "[[traffic]]\nnode = 1\ngbps = 10.0\nstart_s = 6\n"
    scenario = parse_scenario(text)
    timeline = load_timeline(scenario)
    host = SimulatedHost(scenario, weights=[3, 1], seed=0)
    for t in range(scenario.n_steps):
        result = host.step()
        fixed = timeline.fixed[t]
        assert fixed.n_streams == (1 if 4 <= t < 8 else 0)
        assert fixed.traffic_gbps[1] == (10.0 if t >= 6 else 0.0)
        # the oracle model at the run's split reproduces the run's reward term
        if result.truth.background_gbps.any():
            continue
        speedup, _ = modelled_speedup(
            timeline.nodes, timeline.loads[t], result.truth.app_access_split[None], fixed=fixed
        )
        assert speedup[0] == pytest.approx(result.truth.weighted_speedup, rel=1e-6), t
    assert timeline.free_capacity_pages(5)[0] == timeline.capacity_pages[0] - 256


def test_the_solver_sees_bound_streams_as_the_host_does() -> None:
    scenario = parse_scenario(BASE + BOUND)
    host = SimulatedHost(scenario, weights=[255, 1], seed=0)
    for _ in range(5):
        result = host.step()
    fixed = host.current_fixed_load()
    (load,) = host.current_load()
    solution = solve(
        host.nodes,
        np.array([load.mlp, *fixed.mlp]),
        np.array([load.think_ns, *fixed.think_ns]),
        np.array([load.read_fraction, *fixed.read_fraction]),
        np.array([result.truth.app_access_split[0], [1.0, 0.0]]),
    )
    assert solution.throughput_gbps[0] == pytest.approx(
        result.measurements.app_throughput_gbps[0], rel=1e-6
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (BOUND.replace("bind_node = 0", "bind_node = 2"), r"apps\[1\]\.bind_node: node 2 does"),
        (BOUND.replace("bind_node = 0", 'bind_node = "ddr"'), r"bind_node: expected a node index"),
        (BOUND + "reward = true\n", r"apps\[1\]\.reward: a bound"),
        (BOUND.replace('"512 MiB"', '"15.5 GiB"'), r"apps\[1\]\.bind_node: at 4.0 s node 0"),
        ("[[traffic]]\nnode = 1\n", r"traffic\[0\]\.gbps: missing"),
        ("[[traffic]]\ngbps = 1.0\n", r"traffic\[0\]\.node: missing"),
        ("[[traffic]]\nnode = 0\ngbps = -1.0\n", r"traffic\[0\]\.gbps: -1.0 is too small"),
        ("[[traffic]]\nnode = 0\ngbps = 1.0\nstop_s = 20\n", r"traffic\[0\]\.stop_s: 20"),
        ("[[traffic]]\nnode = 0\ngbps = 1.0\nrate = 2\n", r"traffic\[0\]\.rate: unknown key"),
        ("[damos]\nquota = 1\n", r"damos\.quota: unknown key"),
        ('[damos]\nquota_per_s = "lots"\n', r"damos\.quota_per_s"),
        ("[damos]\nmin_access_percent = 0\n", r"damos\.min_access_percent: 0 is too small"),
        ("[damos]\nenabled = 1\n", r"damos\.enabled: expected true or false"),
        ('[[events]]\nat_s = 2\napp = "managed"\nthink_ns = -1\n', r"events\[0\]\.think_ns"),
        ('[[events]]\nat_s = 2\napp = "managed"\nread_fraction = 2\n', r"read_fraction: 2"),
        ('[[events]]\nat_s = 2\napp = "managed"\n', r"must change intensity, hot_offset, think"),
    ],
)
def test_bad_new_keys_name_file_line_and_key(extra: str, expected: str) -> None:
    with pytest.raises(ScenarioError, match=expected) as error:
        parse_scenario(BASE + extra, source="x.toml")
    assert str(error.value).startswith("x.toml:")


def test_a_scenario_needs_a_managed_application() -> None:
    text = BASE.replace("read_fraction = 0.67", "read_fraction = 0.67\nbind_node = 0")
    with pytest.raises(ScenarioError, match="at least one managed application"):
        parse_scenario(text)


def test_moments_list_every_change() -> None:
    text = BASE + BOUND + "[[traffic]]\nnode = 1\ngbps = 1.0\nstart_s = 6\nstop_s = 10\n"
    text += '[[events]]\nat_s = 2\napp = "managed"\nintensity = 2\n'
    assert parse_scenario(text).moments() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
