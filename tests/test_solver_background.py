"""Per-node read fraction of the solver's background traffic (e.g. page migration copies)."""

from __future__ import annotations

import numpy as np
import pytest

from tierenv.hardware import solver_jit
from tierenv.hardware.profile import load_profile
from tierenv.hardware.solver import NodeSet, solve
from tierenv.memory.migration_cost import MigrationCost

ENGINES = ["numpy", "numba"] if solver_jit.AVAILABLE else ["numpy"]


@pytest.fixture(scope="module")
def host():
    nodes = NodeSet([load_profile("bytedance-ddr5-snc"), load_profile("bytedance-cxl-asic")])
    streams = {
        "mlp": np.array([200.0, 60.0, 20.0]),
        "think_ns": np.array([0.0, 100.0, 400.0]),
        "read_fraction": np.array([0.67, 1.0, 0.8]),
        "split": np.array([[0.7, 0.3], [0.5, 0.5], [1.0, 0.0]]),
    }
    return nodes, streams


def same(a, b) -> None:
    for field in ("throughput_gbps", "node_latency_ns", "node_read_fraction"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("engine", ENGINES)
def test_a_constant_array_equals_the_scalar(host, engine) -> None:
    nodes, streams = host
    background = np.array([12.0, 6.0])
    scalar = solve(
        nodes, **streams, background_gbps=background, background_read_fraction=0.4, engine=engine
    )
    for fraction in ([0.4, 0.4], np.full(2, 0.4)):
        per_node = solve(
            nodes,
            **streams,
            background_gbps=background,
            background_read_fraction=fraction,
            engine=engine,
        )
        same(per_node, scalar)


@pytest.mark.parametrize("engine", ENGINES)
def test_write_only_background_on_one_node_is_the_scalar_zero_case(host, engine) -> None:
    """Only node 1 carries background: its mix is what matters, node 0's is irrelevant."""
    nodes, streams = host
    background = np.array([0.0, 10.0])
    scalar = solve(
        nodes, **streams, background_gbps=background, background_read_fraction=0.0, engine=engine
    )
    per_node = solve(
        nodes,
        **streams,
        background_gbps=background,
        background_read_fraction=[1.0, 0.0],
        engine=engine,
    )
    same(per_node, scalar)
    reads_only = solve(
        nodes,
        **streams,
        background_gbps=background,
        background_read_fraction=[0.0, 1.0],
        engine=engine,
    )
    # Writes lower node 1's read share compared with reads.
    assert per_node.node_read_fraction[1] < reads_only.node_read_fraction[1]


def test_engines_agree_with_per_node_and_per_problem_fractions(host) -> None:
    if not solver_jit.AVAILABLE:
        pytest.skip("numba is not installed")
    nodes, streams = host
    rng = np.random.default_rng(3)
    batch = {k: np.broadcast_to(v, (4, *v.shape)) for k, v in streams.items()}
    background = rng.uniform(0.0, 15.0, (4, 2))
    fraction = rng.uniform(0.0, 1.0, (4, 2))
    reference = solve(
        nodes,
        **batch,
        background_gbps=background,
        background_read_fraction=fraction,
        engine="numpy",
    )
    compiled = solve(
        nodes,
        **batch,
        background_gbps=background,
        background_read_fraction=fraction,
        engine="numba",
    )
    assert compiled.converged.all() and reference.converged.all()
    assert compiled.throughput_gbps == pytest.approx(reference.throughput_gbps, rel=1e-9)
    assert compiled.node_latency_ns == pytest.approx(reference.node_latency_ns, rel=1e-9)
    # Each batch element solved alone with its own fractions gives the same answer.
    for b in range(4):
        alone = solve(
            nodes,
            **streams,
            background_gbps=background[b],
            background_read_fraction=fraction[b],
            engine="numba",
        )
        assert alone.throughput_gbps == pytest.approx(compiled.throughput_gbps[b], rel=1e-9)


def test_migration_traffic_feeds_the_solver(host) -> None:
    nodes, streams = host
    moved = np.array([[0, 2000], [0, 0]])  # 2000 THPs demoted from DDR to CXL in 1 s
    background, fraction = MigrationCost().background(moved, 2 << 20, 1.0)
    assert fraction.tolist() == [1.0, 0.0]  # the source reads, the destination writes
    with_copies = solve(
        nodes, **streams, background_gbps=background, background_read_fraction=fraction
    )
    without = solve(nodes, **streams)
    assert np.all(with_copies.throughput_gbps <= without.throughput_gbps + 1e-9)
    assert with_copies.node_read_fraction[1] < without.node_read_fraction[1]


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        ([0.5, 1.5], r"got 1\.5 at index \(1,\)"),
        (-0.1, r"got -0\.1"),
        (float("nan"), "got nan"),
        ([0.5, 0.5, 0.5], r"broadcast to shape \(2,\)"),
    ],
)
def test_bad_fractions_are_refused(host, fraction, message) -> None:
    nodes, streams = host
    with pytest.raises(ValueError, match=message):
        solve(nodes, **streams, background_gbps=[1.0, 1.0], background_read_fraction=fraction)
