"""Opt-in threads of the fluid model and the compiled solver: the same results as the serial
path, bit for bit; and the compiled solver's closed-form 2-node Newton step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tierenv.envs.vector import WeightedInterleaveVectorEnv
from tierenv.hardware import solver_jit
from tierenv.hardware.solver import solve
from tierenv.sim import fluid
from tierenv.sim.fluid import FluidModel
from tierenv.sim.fluid_kernel import advance_parallel
from tierenv.workload.scenario import load_scenario

pytestmark = pytest.mark.skipif(not solver_jit.AVAILABLE, reason="numba is not installed")


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    """Threads for the small batches of these tests too (by default a part has at least 256
    envs or problems)."""
    monkeypatch.setattr(solver_jit, "MIN_PROBLEMS_PER_THREAD", 1)
    monkeypatch.setattr(fluid, "MIN_ENVS_PER_THREAD", 1)


def random_problems(nodes, batch: int, n_streams: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n_nodes = len(nodes)
    split = rng.dirichlet(np.ones(n_nodes), size=(batch, n_streams))
    return {
        "mlp": rng.uniform(1.0, 400.0, (batch, n_streams)),
        "think_ns": rng.choice([0.0, 50.0, 2000.0], (batch, n_streams)),
        "read_fraction": rng.uniform(0.0, 1.0, (batch, n_streams)),
        "split": split,
        "background_gbps": rng.uniform(0.0, 5.0, (batch, n_nodes)),
        "initial_latency_ns": nodes.idle_latency_ns * rng.uniform(1.0, 3.0, (batch, n_nodes)),
    }


@pytest.mark.parametrize("scenario", ["co-runner", "two-socket-cxl", "caption-load-phases"])
def test_threaded_solve_equals_the_serial_one_bit_for_bit(scenario) -> None:
    nodes = FluidModel(load_scenario(scenario)).params.nodes
    kwargs = random_problems(nodes, batch=97, n_streams=3, seed=1)
    serial = solve(nodes, **kwargs)
    with solver_jit.parallel(2):
        threaded = solve(nodes, **kwargs)
    for field in dataclasses.fields(serial):
        np.testing.assert_array_equal(
            getattr(threaded, field.name), getattr(serial, field.name), err_msg=field.name
        )


def test_parallel_is_scoped_to_its_block_and_checks_its_argument() -> None:
    assert getattr(solver_jit._LOCAL, "threads", 1) == 1
    with solver_jit.parallel(3):
        assert solver_jit._LOCAL.threads == 3
    assert solver_jit._LOCAL.threads == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            solver_jit.check_threads(bad)


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
@pytest.mark.parametrize("scenario", ["co-runner", "capacity-pressure", "two-socket-cxl"])
def test_threaded_vector_env_equals_the_serial_one_bit_for_bit(scenario, autoreset_mode) -> None:
    """Whole episodes (and the autoreset after them) under random weights and quotas."""
    envs = [
        WeightedInterleaveVectorEnv(
            13,
            scenario=scenario,
            quota_action=True,
            autoreset_mode=autoreset_mode,
            max_episode_steps=17,
            threads=threads,
        )
        for threads in (1, 2)
    ]
    rng = np.random.default_rng(0)
    results = [[env.reset(seed=0)[0]] for env in envs]
    for _ in range(40):
        actions = rng.uniform(-1.0, 1.0, envs[0].action_space.shape).astype(np.float32)
        for env, result in zip(envs, results, strict=True):
            observations, rewards, _, truncated, info = env.step(actions)
            result += [observations, rewards, truncated, info["weighted_speedup"]]
            result += [info["node_latency_ns"], info["migrated_bytes"]]
    for serial, threaded in zip(*results, strict=True):
        np.testing.assert_array_equal(threaded, serial)
    assert envs[1].model.threads == 2
    assert advance_parallel.signatures and solver_jit._solve_batch_parallel.signatures


def test_threads_are_checked() -> None:
    with pytest.raises(ValueError, match="threads"):
        WeightedInterleaveVectorEnv(2, threads=0)
    with pytest.raises(ValueError, match="threads"):
        FluidModel(load_scenario("co-runner"), threads=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_nodes", [2, 3, 4, 5])
def test_newton_step_solves_the_system(n_nodes) -> None:
    """The compiled Newton step (LAPACK's operations written out up to four nodes, pivoting
    included; ``np.linalg.solve`` beyond) is a backward-stable solve of Hessians of the
    solver's form: regularised diagonal plus rank-one stream terms."""
    rng = np.random.default_rng(n_nodes)
    h = solver_jit._SPLIT  # the Hessian's rows in the work array, then its factors'
    work = np.zeros((h + 2 * n_nodes, n_nodes))
    worst = 0.0
    for _ in range(1000):
        n_streams = rng.integers(1, 5)
        f = rng.dirichlet(np.ones(n_nodes), size=n_streams)
        weight = rng.lognormal(0.0, 3.0, n_streams)
        slope = rng.lognormal(0.0, 3.0, n_nodes) * (rng.random(n_nodes) < 0.8)
        hessian = np.diag(slope + 1e-12) + np.einsum("j,ji,jm->im", weight, f, f)
        gradient = rng.normal(size=n_nodes) * rng.lognormal(0.0, 3.0)
        work[solver_jit._GRADIENT, :n_nodes] = gradient
        work[h : h + n_nodes] = hessian
        solver_jit._newton_step(work, h, n_nodes)
        np.testing.assert_array_equal(work[h : h + n_nodes], hessian)  # left as it was
        step = work[solver_jit._STEP, :n_nodes]
        # backward error: the step solves a system within rounding of this one
        residual = np.abs(hessian @ step + gradient).max()
        scale = np.abs(hessian).max() * np.abs(step).max() + np.abs(gradient).max()
        worst = max(worst, float(residual / scale))
    assert worst < 1e-14
