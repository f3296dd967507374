"""Each scenario that mirrors a published result reproduces the result's claim in the model.

The claims are checked as the sources state them (directions and rough sizes); where the model's
number differs from the published one the test says so in its docstring, and
``results/headroom/README.md`` reports both. Runs use static weights through the simulated host
(full DAMON/DAMOS fidelity); a phase's value is its mean weighted speedup.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tierenv.sim.host import SimulatedHost
from tierenv.sim.run import simulate
from tierenv.workload.scenario import load_scenario

ALL_DDR = [255, 1]


def window(trace, low: float, high: float) -> float:
    """Mean weighted speedup of the intervals ending in (low, high]."""
    times = trace.times
    speedup = np.array([step.truth.weighted_speedup for step in trace.steps])
    return float(speedup[(times > low) & (times <= high)].mean())


def sweep(name: str, weights: list[list[int]], phases: list[tuple[float, float]], **changes):
    scenario = load_scenario(name)
    if changes:
        scenario = dataclasses.replace(scenario, **changes)
    return {
        tuple(w): [window(trace, low, high) for low, high in phases]
        for w in weights
        for trace in [simulate(scenario, w)]
    }


def test_meta_nm_interleave_1_to_1_loses_and_about_5_to_1_wins() -> None:
    """Meta (LKML 2022): 1:1 about -40 %, 5:1 about +8 % over DDR-only, CXL at half the DDR
    bandwidth and +80 ns. The model at the mirror's load: 1:1 about -19 %, 5:1 about +5 %."""
    ratios = [ALL_DDR, [16, 1], [8, 1], [5, 1], [3, 1], [2, 1], [1, 1]]
    values = sweep("meta-nm-interleave", ratios, [(10, 60)], duration_s=60)
    ddr = values[(255, 1)][0]
    assert values[(1, 1)][0] < 0.9 * ddr, values  # 1:1 loses clearly
    assert values[(5, 1)][0] > 1.02 * ddr, values  # 5:1 wins
    best = max(values, key=lambda w: values[w][0])
    assert best in {(8, 1), (5, 1), (3, 1)}, values  # the optimum is near 5:1


def test_merci_weight_switch_from_1_0_to_3_1_speeds_iterations_within_a_few_seconds() -> None:
    """Tabatabai (LKML 2025): 1:0 -> 3:1 mid-run cut the iteration time 7.6 s -> 5.63 s (1.35x
    throughput) with about one transitional iteration (about 7 s), DAMOS moving hot pages."""
    scenario = dataclasses.replace(load_scenario("merci-weight-switch"), duration_s=60)
    host = SimulatedHost(scenario, weights=ALL_DDR, seed=0)
    before = [host.step().measurements.app_throughput_gbps[0] for _ in range(30)]
    host.set_weights([3, 1])
    after = [host.step().measurements.app_throughput_gbps[0] for _ in range(30)]
    speedup = np.mean(after[-10:]) / np.mean(before[-10:])
    assert 1.2 < speedup < 1.5, speedup
    # most of the gain arrives within about one published iteration
    target = before[-1] + 0.9 * (after[-1] - before[-1])
    settled = next(t for t, x in enumerate(after) if x >= target)
    assert settled <= 8, after[:12]


def test_micron_xeon6_interleaving_gains_more_with_mixed_traffic_than_reads_only() -> None:
    """Micron/Intel (arXiv 2412.12491): bandwidth +24 % reads only and +39 % mixed over DDR
    alone. The model, with eight derived CZ122 profiles, gains more (about +40 % reads only
    and +60 % mixed at the best ratio): the ordering holds, the sizes overshoot."""
    ratios = [ALL_DDR, [4, 1], [3, 1], [2, 1], [3, 2]]
    values = sweep("micron-xeon6-cxl", ratios, [(10, 60), (70, 120)])
    reads_gain = max(v[0] for v in values.values()) / values[(255, 1)][0] - 1
    mixed_gain = max(v[1] for v in values.values()) / values[(255, 1)][1] - 1
    assert 0.15 < reads_gain < mixed_gain, (reads_gain, mixed_gain)


def test_colloid_antagonist_makes_packing_hot_pages_locally_lose() -> None:
    """Colloid (SOSP 2024): with the antagonist on the default tier, its loaded latency rises
    far above the alternate tier's and packing hot pages locally loses against the best
    placement (up to 2.3x there; about 1.3x in this mirror on the ByteDance pair)."""
    ratios = [ALL_DDR, [8, 1], [4, 1], [2, 1], [1, 1], [1, 2]]
    values = sweep("colloid-antagonist", ratios, [(20, 100), (120, 200)])
    before = max(values, key=lambda w: values[w][0])
    during = max(values, key=lambda w: values[w][1])
    share = {w: w[0] / sum(w) for w in values}
    assert share[during] < share[before], values  # the antagonist pushes GUPS off DDR
    assert values[(255, 1)][1] < 0.85 * values[during][1], values
    trace = simulate(load_scenario("colloid-antagonist"), ALL_DDR)
    latency = trace.steps[150].measurements.node_latency_ns
    assert latency[0] > 1.5 * latency[1], latency  # the default tier is the slow one now


def test_caption_retuning_as_the_load_changes_beats_the_default_policy() -> None:
    """Caption (MICRO 2023): re-tuning the ratio online gained up to +24 % over the default
    (all-local) policy on a socket with three CXL devices."""
    ratios = [[255, 1, 1, 1], [8, 1, 1, 1], [4, 1, 1, 1], [2, 1, 1, 1]]
    values = sweep("caption-load-phases", ratios, [(10, 60), (70, 120), (130, 180)])
    default = values[(255, 1, 1, 1)]
    per_phase_best = [max(v[p] for v in values.values()) for p in range(3)]
    assert max(b / d for b, d in zip(per_phase_best, default, strict=True)) > 1.1, values
    bests = {max(values, key=lambda w, p=p: values[w][p]) for p in range(3)}
    assert len(bests) > 1, values  # the best ratio changes with the load


def test_seed_toy_example_keeps_one_instance_local_and_spills_two() -> None:
    """The seed thread: one application at ~75 % of local bandwidth belongs (mostly) in DDR;
    with a second instance, spilling pays."""
    ratios = [ALL_DDR, [16, 1], [8, 1], [6, 1], [4, 1], [3, 1], [2, 1]]
    values = sweep("seed-toy-amd", ratios, [(10, 60), (75, 120)])
    alone = max(values, key=lambda w: values[w][0])
    together = max(values, key=lambda w: values[w][1])
    assert alone[0] / sum(alone) > together[0] / sum(together), values
    assert alone[0] / sum(alone) >= 0.8, values
    assert values[together][1] > 1.05 * values[(255, 1)][1], values


def test_serial_phases_want_ddr_and_parallel_phases_want_cxl() -> None:
    ratios = [ALL_DDR, [8, 1], [4, 1], [2, 1], [3, 2]]
    values = sweep("bytedance-serial-parallel", ratios, [(5, 30), (40, 60)], duration_s=60)
    assert max(values, key=lambda w: values[w][0]) == (255, 1), values
    parallel = max(values, key=lambda w: values[w][1])
    assert parallel[0] / sum(parallel) <= 0.8, values
    assert values[parallel][1] > 1.1 * values[(255, 1)][1], values


@pytest.mark.slow
def test_two_socket_three_tiers_spill_to_both_slow_tiers_when_two_streams_run() -> None:
    ratios = [[255, 1, 1], [8, 1, 1], [4, 1, 1], [4, 1, 2], [2, 1, 1], [4, 2, 1]]
    values = sweep("two-socket-cxl", ratios, [(10, 60), (70, 120)])
    together = max(values, key=lambda w: values[w][1])
    assert together != (255, 1, 1) and values[together][1] > 1.05 * values[(255, 1, 1)][1]
