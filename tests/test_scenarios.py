"""Shipped scenarios show the dynamics they are named for; scenario files are checked."""

from __future__ import annotations

import numpy as np
import pytest

from tierenv.cli import main
from tierenv.sim.host import SimulatedHost
from tierenv.sim.run import simulate
from tierenv.workload.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    shipped_scenario_names,
)

ALL_LOCAL = [255, 1]  # the closest weighted interleave gets to all-local (1 page in 256 spills)


def phase_mean(trace, low, high):
    times = trace.times
    speedup = np.array([step.truth.weighted_speedup for step in trace.steps])
    return float(speedup[(times > low) & (times <= high)].mean())


def test_library_has_the_required_scenarios():
    assert {
        "co-runner",
        "latency-vs-batch",
        "hot-set-shift",
        "capacity-pressure",
        "steady-single",
    } <= set(shipped_scenario_names())


@pytest.mark.parametrize("name", shipped_scenario_names())
def test_every_shipped_scenario_runs(name):
    scenario = load_scenario(name)
    host = SimulatedHost(scenario, weights=[4] + [1] * (len(scenario.nodes) - 1), seed=0)
    for _ in range(5):
        result = host.step()
    assert result.truth.solver_converged
    assert np.all(result.measurements.app_throughput_gbps > 0)
    assert np.all(result.measurements.resident_pages.sum(axis=1) > 0)


def test_co_runner_all_local_alone_and_a_spill_with_two_instances():
    scenario = load_scenario("co-runner")
    sweep = {}
    for weights in (ALL_LOCAL, [16, 1], [8, 1], [6, 1], [4, 1], [2, 1]):
        trace = simulate(scenario, weights)
        sweep[weights[0]] = (
            phase_mean(trace, 0, 60),
            phase_mean(trace, 61, 120),
            phase_mean(trace, 121, 180),
        )
    alone_best = max(sweep, key=lambda w: sweep[w][0])
    together_best = max(sweep, key=lambda w: sweep[w][1])
    assert alone_best == 255, sweep  # one instance: keep its data local
    assert sweep[255][2] == max(v[2] for v in sweep.values())  # after the second one leaves
    assert together_best <= 8, sweep  # two instances: spill
    assert sweep[together_best][1] > 1.05 * sweep[255][1], sweep
    # one instance alone uses about 70% of the local DDR's bandwidth
    first = simulate(scenario, ALL_LOCAL).steps[10]
    local_peak = scenario.nodes[0].profile.saturation_gbps(0.67)
    assert 0.6 < first.measurements.node_bandwidth_gbps[0] / local_peak < 0.8


def test_latency_bound_service_loses_whenever_it_spills():
    scenario = load_scenario("latency-vs-batch")
    service, batch = {}, {}
    for weights in (ALL_LOCAL, [8, 1], [3, 1]):
        trace = simulate(scenario, weights)
        during = (trace.times > 40) & (trace.times <= 120)
        # speedups (throughput over throughput alone on idle DDR)
        per_app = trace.app_series(
            lambda s, j: s.measurements.app_throughput_gbps[j] / s.truth.app_alone_gbps[j]
        )
        service[weights[0]] = np.nanmean(per_app["service"][during])
        batch[weights[0]] = np.nanmean(per_app["batch"][during])
    assert service[255] > service[8] > service[3]
    total = {w: service[w] + batch[w] for w in service}
    assert max(total, key=total.get) == 255


def test_hot_set_shift_is_redetected_by_damon():
    scenario = load_scenario("hot-set-shift")
    host = SimulatedHost(scenario, weights=[4, 1], seed=0)
    app = scenario.apps[0].app
    page_size = scenario.page_size
    n_pages = app.n_pages(page_size)

    def hot_coverage(result, offset):
        """Share of DAMON's hot bytes (nr_accesses >= half) inside the hot set at offset."""
        regions = result.measurements.damon_regions[app.name]
        hot = regions["nr_accesses"] >= result.measurements.nr_accesses_max // 2
        first = 0x7F00_0000_0000 + int(offset * n_pages) * page_size
        last = first + round(app.distribution.hot_fraction * n_pages) * page_size
        overlap = np.clip(
            np.minimum(regions["end"], last) - np.maximum(regions["start"], first), 0, None
        )
        return overlap[hot].sum() / max((regions["end"] - regions["start"])[hot].sum(), 1)

    results = [host.step() for _ in range(75)]
    assert hot_coverage(results[58], 0.0) > 0.8  # before the move: the old hot set
    assert hot_coverage(results[74], 0.4) > 0.8  # 15 s after it: the new one


def test_capacity_pressure_keeps_part_of_the_hot_set_off_ddr():
    scenario = load_scenario("capacity-pressure")
    host = SimulatedHost(scenario, weights=ALL_LOCAL, seed=0)
    # the 200 MiB/s DAMOS quota walks the address space 100 pages a second: the pages that
    # fell back to CXL at allocation (beyond the first 8192) are reached after ~80 s
    results = [host.step() for _ in range(100)]
    last = results[-1]
    hot = last.truth.app_hot_pages[0]
    assert hot[0] / hot.sum() < 0.7  # 16 GiB of DDR for a 24 GiB hot set
    assert host.memory.free_pages[0] == 0
    assert sum(r.measurements.pgmigrate_fail for r in results) > 0  # DDR is full: no reclaim


def test_steady_single_has_one_best_static_weight_throughout():
    scenario = load_scenario("steady-single")
    first_half, second_half = {}, {}
    for weights in (ALL_LOCAL, [8, 1], [5, 1], [4, 1], [3, 1], [2, 1]):
        trace = simulate(scenario, weights)
        first_half[weights[0]] = phase_mean(trace, 0, 60)
        second_half[weights[0]] = phase_mean(trace, 60, 120)
    best = max(first_half, key=first_half.get)
    assert best == max(second_half, key=second_half.get)
    assert best != 255  # the optimum spills: more bandwidth than the DDR has
    assert first_half[best] > 1.05 * first_half[255]


def test_same_seed_same_run_and_snapshots_branch_exactly():
    scenario = load_scenario("co-runner")
    host = SimulatedHost(scenario, weights=[6, 1], seed=3)
    for _ in range(58):
        host.step()
    saved = host.snapshot()
    ahead = [host.step() for _ in range(5)]
    host.restore(saved)
    again = [host.step() for _ in range(5)]
    for a, b in zip(ahead, again, strict=True):
        assert np.array_equal(
            a.measurements.app_throughput_gbps, b.measurements.app_throughput_gbps
        )
        assert np.array_equal(a.measurements.resident_pages, b.measurements.resident_pages)
        assert np.array_equal(
            a.measurements.damon_regions["bw-a"]["start"],
            b.measurements.damon_regions["bw-a"]["start"],
        )
    other = SimulatedHost(scenario, weights=[6, 1], seed=3)
    replay = [other.step() for _ in range(63)][-5:]
    for a, b in zip(ahead, replay, strict=True):
        assert np.array_equal(a.measurements.resident_pages, b.measurements.resident_pages)


def test_changing_weights_moves_hot_pages_by_damos():
    scenario = load_scenario("steady-single")
    host = SimulatedHost(scenario, weights=[1, 1], seed=0)
    before = host.step().measurements.resident_pages[0]
    host.set_weights([3, 1])
    for _ in range(30):
        result = host.step()
    after = result.measurements.resident_pages[0]
    # 1:1 to 3:1 moves every page whose interleave index is 1 mod 4 (a quarter of them); the
    # 200 MiB/s quota walks 100 pages of 2 MiB a second, so 30 s move about 30 * 25 pages
    assert 600 <= after[0] - before[0] <= 30 * 100
    assert after.sum() == before.sum()
    assert result.measurements.damos_stats["bw"].sz_applied > 0


GOOD = """
name = "tiny"
duration_s = 10
[[nodes]]
profile = "bytedance-ddr5-snc"
capacity = "4 GiB"
[[apps]]
name = "a"
working_set = "1 GiB"
mlp = 10
think_ns = 5
"""


def test_a_minimal_scenario_parses():
    scenario = parse_scenario(GOOD, source="tiny.toml")
    assert scenario.apps[0].app.working_set_bytes == 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour = 3\n" + GOOD, r"tiny.toml:1: colour: unknown key"),
        (GOOD.replace("mlp = 10", "mlp = -1"), r"tiny.toml:10: apps\[0\].mlp: -1 is too small"),
        (GOOD.replace('"1 GiB"', '"9 GiB"'), r"apps\[0\].working_set: .*need .* hold"),
        (GOOD.replace('"1 GiB"', '"1 GB!"'), r"apps\[0\].working_set: expected a size"),
        (GOOD + "stop_s = 0\n", r"apps\[0\].stop_s"),
        (
            GOOD.replace("[[apps]]", "[[apps]]\nspeed = 1"),
            r"tiny.toml:8: apps\[0\].speed: unknown key",
        ),
        (
            GOOD
            + '[[events]]\nat_s = 2\napp = "a"\nintensity = 2\n[[events]]\nat_s = 2\napp = "a"\n'
            "intensity = 1\n",
            r"events\[1\].at_s: events\[0\] already changes",
        ),
        (GOOD + '[[events]]\nat_s = 2\napp = "b"\nintensity = 2\n', r"no application named 'b'"),
        (GOOD + '[[events]]\nat_s = 2\napp = "a"\nhot_offset = 0.5\n', r"has no hot set"),
        (GOOD.replace("duration_s = 10", "duration_s = 10\nduration_s = 11"), r"tiny.toml: .*"),
        (GOOD.replace('profile = "bytedance-ddr5-snc"', 'profile = "nope"'), r"nodes\[0\].profile"),
        (
            GOOD.replace("duration_s = 10", "duration_s = 10\ncontrol_interval_s = 1e-9"),
            r"tiny.toml:4: control_interval_s: 1e-09 s over duration_s 10.0 s is 1e\+10 control "
            r"intervals; at most 1000000",
        ),
    ],
)
def test_bad_scenarios_are_refused_with_file_line_and_key(text, expected):
    with pytest.raises(ScenarioError, match=expected):
        parse_scenario(text, source="tiny.toml")


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="co-runner"):
        load_scenario("no-such-scenario")


def test_cli_lists_and_simulates(tmp_path, capsys):
    assert main(["scenarios"]) == 0
    assert "co-runner" in capsys.readouterr().out
    assert main(["scenarios", "latency-vs-batch"]) == 0
    assert "service" in capsys.readouterr().out
    plot = tmp_path / "run.png"
    assert main(["simulate", "steady-single", "--weights", "3:1", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "mean weighted speedup" in out and plot.stat().st_size > 10_000
    assert main(["simulate", "steady-single", "--weights", "3:1:1"]) == 2
    assert "has 2 nodes" in capsys.readouterr().err


def test_a_growing_application_touches_pages_over_time_under_the_weights_then():
    text = GOOD.replace('working_set = "1 GiB"', 'working_set = "1 GiB"\ngrowth = "128 MiB"')
    text = text.replace(
        '[[nodes]]\nprofile = "bytedance-ddr5-snc"\ncapacity = "4 GiB"',
        '[[nodes]]\nprofile = "bytedance-ddr5-snc"\ncapacity = "4 GiB"\n'
        '[[nodes]]\nprofile = "bytedance-cxl-asic"\ncapacity = "4 GiB"',
    )
    host = SimulatedHost(parse_scenario(text, source="grow.toml"), weights=[1, 1], seed=0)
    resident = [host.step().measurements.resident_pages[0].sum() for _ in range(3)]
    assert resident == [64, 128, 192]  # 128 MiB a second in 2 MiB pages
    host.set_weights([3, 1])
    for _ in range(4):
        last = host.step().measurements.resident_pages[0]
    # pages touched after the change follow 3:1 (DAMOS also moves the older ones)
    assert last.sum() == 448 and last[0] > last[1]
