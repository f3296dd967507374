"""The fluid model agrees with the full simulator on the shipped scenarios that mirror
published results (bound co-runners, background load, phase events, per-scenario DAMOS
setups, three and four nodes), under static weights and across a weight change."""

from __future__ import annotations

import numpy as np
import pytest

from tierenv.sim.fluid import FluidModel
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import load_scenario

MIRRORS = [
    "meta-nm-interleave",
    "merci-weight-switch",
    "seed-toy-amd",
    "micron-xeon6-cxl",
    "colloid-antagonist",
    "caption-load-phases",
    "bytedance-co-runners",
    "bytedance-serial-parallel",
    "two-socket-cxl",
]


def speedups(name: str, switch_at: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted speedup per interval, full simulator and fluid model, under 3:1(:1...) and,
    from ``switch_at``, 1:1(:1...)."""
    scenario = load_scenario(name)
    n_nodes = len(scenario.nodes)
    first = np.array([3] + [1] * (n_nodes - 1))
    second = np.ones(n_nodes, dtype=np.int64)
    host = SimulatedHost(scenario, weights=first, seed=0)
    model = FluidModel(scenario)
    state = model.initial_state(1, first)
    full, fluid = [], []
    for t in range(scenario.n_steps):
        weights = second if switch_at is not None and t >= switch_at else first
        host.set_weights(weights)
        full.append(host.step().truth.weighted_speedup)
        fluid.append(model.step(state, weights[None]).weighted_speedup[0])
    return np.array(full), np.array(fluid)


@pytest.mark.parametrize("name", MIRRORS)
def test_static_weights_agree(name: str) -> None:
    full, fluid = speedups(name, None)
    running = full > 0
    error = np.abs(fluid[running] - full[running]) / full[running]
    assert error.mean() < 1e-3 and error.max() < 5e-3, (error.mean(), error.max())


@pytest.mark.parametrize("name", MIRRORS)
def test_a_weight_change_agrees(name: str) -> None:
    full, fluid = speedups(name, switch_at=45)
    running = full > 0
    error = np.abs(fluid[running] - full[running]) / full[running]
    assert error.mean() < 0.01, (error.mean(), error.max())
