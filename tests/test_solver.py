"""Properties of the closed-loop throughput solver over random profiles and demands."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tierenv.hardware import solver_jit
from tierenv.hardware.bandwidth import SaturationBandwidth
from tierenv.hardware.curves import ParametricCurve, PiecewiseCurve, SocketLink
from tierenv.hardware.profile import REMOTE_KINDS, NodeProfile, load_profile
from tierenv.hardware.solver import (
    LINE_BYTES,
    NodeSet,
    alone_throughput_gbps,
    solve,
    weighted_speedup,
)

# The default suite draws a modest number of examples; TIERENV_HYPOTHESIS_EXAMPLES raises it
# (CI's slow stage does).
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,  # the same examples on every run: CI results are reproducible
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def profiles(draw, index: int = 0, extreme: bool = False) -> NodeProfile:
    """Random nodes over the range real ones span (smooth curves that reach their peak).

    ``extreme`` widens every range (jagged curves, steep write penalties, narrow links): the
    solver must stay finite and bounded there, but need not converge to the last digit.
    """
    n_mixes = draw(st.integers(1, 3))
    reads = sorted(
        draw(
            st.sets(
                st.sampled_from(np.linspace(0, 1, 11).tolist()), min_size=n_mixes, max_size=n_mixes
            )
        )
    )
    a_range, p_range = ((1.0, 800.0), (0.02, 4.0)) if extreme else ((5.0, 300.0), (0.05, 2.0))
    if draw(st.booleans()):
        curve = ParametricCurve(
            np.array(reads),
            np.array([draw(st.floats(*a_range)) for _ in reads]),
            np.array([draw(st.floats(*p_range)) for _ in reads]),
            np.array([draw(st.floats(1.0, 2.0)) for _ in reads]),
        )
    else:
        loads, excess = [], []
        for _ in reads:
            count = draw(st.integers(2, 10))
            steps = np.cumsum([draw(st.floats(0.05, 1.0)) for _ in range(count)])
            if extreme:
                loads.append(steps / steps[-1] * draw(st.floats(0.3, 1.2)))
                excess.append(np.cumsum([draw(st.floats(0.0, 200.0)) for _ in range(count)]))
            else:
                # Points of a smooth measured-like curve up to (about) the peak.
                # Measured curves rise by tens to hundreds of ns up to their peak.
                load = steps / steps[-1] * draw(st.floats(0.9, 1.1))
                p = draw(st.floats(*p_range))
                shape = (1 - load / (load[-1] * 1.02)) ** -p - 1
                loads.append(load)
                excess.append(shape / shape[-1] * draw(st.floats(20.0, 1000.0)))
        curve = PiecewiseCurve(np.array(reads), tuple(loads), tuple(excess))
    media = draw(st.floats(5.0 if extreme else 20.0, 400.0))
    low, high = (0.05, 3.0) if extreme else (0.5, 2.0)
    optional_link = st.one_of(st.none(), st.floats(low * media, high * media))
    bandwidth = SaturationBandwidth(
        media_gbps=media,
        write_penalty=draw(st.floats(0.0, 1.9 if extreme else 1.0)),
        read_link_gbps=draw(optional_link),
        write_link_gbps=draw(optional_link),
    )
    return NodeProfile(f"node{index}", "ddr", draw(st.floats(60.0, 500.0)), bandwidth, curve)


@st.composite
def problems(draw, extreme: bool = False):
    n_nodes = draw(st.integers(1, 4))
    n_streams = draw(st.integers(1, 8))
    nodes = NodeSet([draw(profiles(i, extreme)) for i in range(n_nodes)])
    mlp = np.array([draw(st.floats(0.05, 1e5 if extreme else 4000.0)) for _ in range(n_streams)])
    think = np.array([draw(st.one_of(st.just(0.0), st.floats(0.0, 5e4))) for _ in range(n_streams)])
    reads = np.array([draw(st.floats(0.0, 1.0)) for _ in range(n_streams)])
    raw = np.array([[draw(st.floats(0.0, 1.0)) for _ in range(n_nodes)] for _ in range(n_streams)])
    raw[:, 0] += 1e-3  # every stream has somewhere to go
    split = raw / raw.sum(axis=1, keepdims=True)
    background = None
    if draw(st.booleans()):
        background = np.array([draw(st.floats(0.0, 200.0)) for _ in range(n_nodes)])
    return nodes, mlp, think, reads, split, background


def served_at(nodes: NodeSet, solution) -> np.ndarray:
    return np.array(
        [
            float(p.served_gbps(solution.node_latency_ns[i], solution.node_read_fraction[i]))
            for i, p in enumerate(nodes.profiles)
        ]
    )


@PROPERTY_SETTINGS
@given(problems())
def test_solution_is_a_finite_conserving_fixed_point(problem) -> None:
    nodes, mlp, think, reads, split, background = problem
    solution = solve(nodes, mlp, think, reads, split, background_gbps=background)
    assert solution.converged
    for values in (
        solution.throughput_gbps,
        solution.node_latency_ns,
        solution.node_bandwidth_gbps,
        solution.node_read_fraction,
    ):
        assert np.all(np.isfinite(values))
    assert np.all(solution.throughput_gbps > 0)
    assert np.all(solution.node_bandwidth_gbps >= 0)
    # Never above the node's capacity at its mix.
    assert np.all(solution.node_bandwidth_gbps <= solution.node_saturation_gbps * (1 + 1e-6))
    assert np.all(solution.node_latency_ns >= nodes.idle_latency_ns - 1e-9)
    # Conservation: what the streams and the background move is what the nodes carry.
    carried = solution.node_bandwidth_gbps.sum()
    moved = solution.throughput_gbps.sum() + solution.background_served_gbps.sum()
    assert carried == pytest.approx(moved, rel=1e-6)
    # Little's law for every stream at the solved latencies.
    delay = think + split @ solution.node_latency_ns
    assert solution.throughput_gbps == pytest.approx(LINE_BYTES * mlp / delay, rel=1e-9)
    # The node latencies are where each node serves exactly what it is offered.
    assert served_at(nodes, solution) == pytest.approx(
        solution.node_bandwidth_gbps, rel=1e-4, abs=1e-6 * solution.node_saturation_gbps.max()
    )
    # The mix each node was evaluated at is the mix its traffic has: to the solver's mix
    # tolerance, or where the solved rates jump with the mix (nodes in a flat stretch of
    # their curve) to within a percent, which moves a capacity by about 1 % at most.
    reads_carried = (solution.throughput_gbps * reads) @ split
    reads_carried = reads_carried + solution.background_served_gbps
    with np.errstate(invalid="ignore"):
        mix = np.where(
            solution.node_bandwidth_gbps > 0, reads_carried / solution.node_bandwidth_gbps, 1.0
        )
    # where the rates jump as a mix crosses some value there is no exact mix fixed point and
    # the mix settles at the jump, within about a percent (solver docstring, README)
    assert solution.node_read_fraction == pytest.approx(mix, abs=1.5e-2)


def _tolerance(solution) -> float:
    return 1e-5 * float(solution.node_saturation_gbps.max())


@PROPERTY_SETTINGS
@given(problems(extreme=True))
def test_extreme_inputs_stay_finite_bounded_and_conserving(problem) -> None:
    nodes, mlp, think, reads, split, background = problem
    solution = solve(nodes, mlp, think, reads, split, background_gbps=background)
    for values in (
        solution.throughput_gbps,
        solution.node_latency_ns,
        solution.node_bandwidth_gbps,
        solution.node_read_fraction,
    ):
        assert np.all(np.isfinite(values))
    assert np.all(solution.throughput_gbps > 0)
    assert np.all(solution.node_bandwidth_gbps >= 0)
    assert np.all(solution.node_bandwidth_gbps <= solution.node_saturation_gbps * (1 + 1e-6))
    carried = solution.node_bandwidth_gbps.sum()
    moved = solution.throughput_gbps.sum() + solution.background_served_gbps.sum()
    assert carried == pytest.approx(moved, rel=1e-4)


@PROPERTY_SETTINGS
@given(problems(), st.integers(0, 7), st.floats(1.1, 10.0))
def test_more_outstanding_misses_never_lower_a_streams_own_throughput(problem, which, factor):
    """At one read/write mix. (With mixes that differ, a stream adding writes to a node whose
    capacity falls with the write share can lose: the model gives all traffic on a node one
    latency.)"""
    nodes, mlp, think, reads, split, background = problem
    reads = np.full_like(reads, reads[0])
    which %= mlp.size
    before = solve(nodes, mlp, think, reads, split, background_gbps=background)
    more = mlp.copy()
    more[which] *= factor
    after = solve(nodes, more, think, reads, split, background_gbps=background)
    assert after.throughput_gbps[which] >= before.throughput_gbps[which] - _tolerance(before)


@PROPERTY_SETTINGS
@given(problems(), st.integers(0, 7), st.floats(1.1, 10.0))
def test_on_one_node_load_is_monotone_in_demand(problem, which, factor) -> None:
    """On a shared node more demand means more load, more latency and less for the others.

    (With several nodes a latency can fall when demand rises: a stream slowed on one node
    sends less to another.)
    """
    nodes, mlp, think, reads, split, _ = problem
    nodes = NodeSet(nodes.profiles[:1])
    split = np.ones((mlp.size, 1))
    reads = np.full_like(reads, reads[0])
    which %= mlp.size
    before = solve(nodes, mlp, think, reads, split)
    more = mlp.copy()
    more[which] *= factor
    after = solve(nodes, more, think, reads, split)
    tol = _tolerance(before)
    assert after.node_latency_ns[0] >= before.node_latency_ns[0] * (1 - 1e-9)
    assert after.node_bandwidth_gbps[0] >= before.node_bandwidth_gbps[0] - tol
    others = np.arange(mlp.size) != which
    assert np.all(after.throughput_gbps[others] <= before.throughput_gbps[others] + tol)
    assert after.throughput_gbps[which] >= before.throughput_gbps[which] - tol


@PROPERTY_SETTINGS
@given(problems())
def test_background_load_only_slows_streams_on_one_node(problem) -> None:
    nodes, mlp, think, reads, split, _ = problem
    nodes = NodeSet(nodes.profiles[:1])
    split = np.ones((mlp.size, 1))
    reads = np.full_like(reads, reads[0])
    quiet = solve(nodes, mlp, think, reads, split, background_read_fraction=reads[0])
    loaded = solve(
        nodes,
        mlp,
        think,
        reads,
        split,
        background_read_fraction=reads[0],
        background_gbps=0.5 * nodes.min_servable_gbps,
    )
    assert np.all(loaded.throughput_gbps <= quiet.throughput_gbps + _tolerance(quiet))
    assert np.all(loaded.node_latency_ns >= quiet.node_latency_ns * (1 - 1e-9))


@PROPERTY_SETTINGS
@given(profiles(), st.floats(0.0, 1.0))
def test_latency_rises_with_offered_load(profile, read_fraction) -> None:
    capacity = float(profile.saturation_gbps(read_fraction))
    grid = np.linspace(0.0, capacity, 200)
    latency = profile.latency_ns(grid, read_fraction)
    finite = np.isfinite(latency)
    assert finite[0] and latency[0] == pytest.approx(profile.idle_latency_ns)
    assert np.all(np.diff(latency[finite]) >= -1e-9)
    assert not np.any(np.isnan(latency))


def test_batch_equals_one_by_one_and_warm_start_agrees() -> None:
    rng = np.random.default_rng(7)
    nodes = NodeSet(
        [
            load_profile("spr-8460y-ddr5-socket"),
            load_profile("generic-cxl-x8"),
            load_profile("bytedance-cxl-asic"),
        ]
    )
    mlp = rng.uniform(1, 800, (5, 4))
    think = rng.uniform(0, 400, (5, 4))
    reads = rng.uniform(0.5, 1.0, (5, 4))
    split = rng.dirichlet(np.ones(3), (5, 4))
    batch = solve(nodes, mlp, think, reads, split)
    for b in range(5):
        single = solve(nodes, mlp[b], think[b], reads[b], split[b])
        assert single.throughput_gbps == pytest.approx(batch.throughput_gbps[b], rel=1e-4)
        warm = solve(
            nodes,
            mlp[b],
            think[b],
            reads[b],
            split[b],
            initial_latency_ns=single.node_latency_ns * 1.3,
        )
        assert warm.throughput_gbps == pytest.approx(single.throughput_gbps, rel=1e-4)


def test_saturated_stream_reproduces_littles_law_like_mlc_zero_delay_rows() -> None:
    """16 MLC threads at delay 0 on the ASIC CXL: bandwidth at the peak, latency N*64/B."""
    nodes = NodeSet([load_profile("bytedance-cxl-asic")])
    solution = solve(nodes, mlp=600.0, think_ns=0.0, read_fraction=1.0, split=[[1.0]])
    bandwidth = solution.node_bandwidth_gbps[0]
    assert bandwidth == pytest.approx(48.0, rel=0.02)  # measured read peak 48.0 GB/s
    assert solution.node_latency_ns[0] == pytest.approx(600 * 64 / bandwidth, rel=1e-6)


def test_weighted_speedup_of_one_app_alone_on_local_memory_is_one() -> None:
    nodes = NodeSet([load_profile("bytedance-ddr5-snc"), load_profile("bytedance-cxl-asic")])
    mlp, think, reads = np.array([300.0, 20.0]), np.array([0.0, 500.0]), np.array([0.75, 0.9])
    alone = alone_throughput_gbps(nodes, mlp, think, reads)
    single = solve(nodes, mlp[:1], think[:1], reads[:1], [[1.0, 0.0]])
    assert alone[0] == pytest.approx(single.throughput_gbps[0])
    together = solve(nodes, mlp, think, reads, [[1.0, 0.0], [1.0, 0.0]])
    speedup = weighted_speedup(together.throughput_gbps, alone)
    assert 1.0 < speedup < 2.0  # they slow each other down on the shared node


@pytest.mark.parametrize(
    ("field", "kwargs", "message"),
    [
        ("mlp", {"mlp": [0.0]}, "mlp"),
        ("mlp", {"mlp": [-3.0]}, "zero or negative demand"),
        ("think", {"think_ns": [-1.0]}, "think_ns"),
        ("reads", {"read_fraction": [1.5]}, "read_fraction"),
        ("split", {"split": [[0.5, 0.2]]}, "sum to 1"),
        ("split", {"split": [[1.2, -0.2]]}, "non-negative"),
        ("nan", {"mlp": [float("nan")]}, "mlp"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(field, kwargs, message) -> None:
    nodes = NodeSet([load_profile("bytedance-ddr5-snc"), load_profile("bytedance-cxl-asic")])
    args = {"mlp": [10.0], "think_ns": [0.0], "read_fraction": [1.0], "split": [[0.5, 0.5]]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        solve(nodes, **args)


@PROPERTY_SETTINGS
@given(
    st.lists(
        profiles().filter(lambda p: isinstance(p.latency, ParametricCurve)), min_size=1, max_size=4
    ),
    st.integers(0, 2**31 - 1),
)
def test_vectorised_nodes_match_the_per_node_reference(node_profiles, seed) -> None:
    fast, reference = NodeSet(node_profiles), NodeSet(node_profiles, vectorised=False)
    assert fast.vectorised is not None and reference.vectorised is None
    rng = np.random.default_rng(seed)
    reads = rng.uniform(0.0, 1.0, (32, len(node_profiles)))
    latency = fast.idle_latency_ns + rng.exponential(300.0, (32, len(node_profiles)))
    assert fast.saturation_gbps(reads) == pytest.approx(reference.saturation_gbps(reads))
    for ours, theirs in zip(
        fast.load_at(latency, reads), reference.load_at(latency, reads), strict=True
    ):
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


@st.composite
def parametric_problems(draw):
    nodes, mlp, think, reads, split, background = draw(problems())
    assume(all(isinstance(p.latency, ParametricCurve) for p in nodes.profiles))
    return nodes, mlp, think, reads, split, background


@pytest.mark.skipif(not solver_jit.AVAILABLE, reason="numba is not installed")
@PROPERTY_SETTINGS
@given(parametric_problems())
def test_compiled_iteration_matches_the_numpy_reference(problem) -> None:
    nodes, mlp, think, reads, split, background = problem
    reference = solve(nodes, mlp, think, reads, split, background_gbps=background, engine="numpy")
    compiled = solve(nodes, mlp, think, reads, split, background_gbps=background, engine="numba")
    assert compiled.converged == reference.converged
    assert compiled.iterations == reference.iterations
    assert compiled.throughput_gbps == pytest.approx(reference.throughput_gbps, rel=1e-9)
    assert compiled.node_latency_ns == pytest.approx(reference.node_latency_ns, rel=1e-9)


SOLUTION_FIELDS = (
    "throughput_gbps",
    "stream_latency_ns",
    "node_bandwidth_gbps",
    "node_latency_ns",
    "node_read_fraction",
    "node_saturation_gbps",
    "background_served_gbps",
)


@st.composite
def parametric_batches(draw):
    """A batch of problems on one parametric host with what a caller may pass: per-problem
    demands, broadcast splits, per-node background mixes and warm starts, some unusable."""
    nodes, mlp, think, reads, split, background = draw(parametric_problems())
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    k = draw(st.integers(1, 3))
    n_streams, n_nodes = split.shape
    kwargs = {
        "mlp": mlp * rng.uniform(0.2, 5.0, (k, n_streams)),
        "think_ns": think,
        "read_fraction": np.broadcast_to(reads, (k, n_streams)),
        "split": np.broadcast_to(split, (k, n_streams, n_nodes)),
    }
    if background is not None:
        kwargs["background_gbps"] = background * rng.uniform(0.0, 1.0, (k, n_nodes))
    if draw(st.booleans()):
        kwargs["background_read_fraction"] = rng.uniform(0.0, 1.0, (k, n_nodes))
    if draw(st.booleans()):
        warm = nodes.idle_latency_ns * rng.uniform(0.5, 4.0, (k, n_nodes))
        warm[rng.uniform(size=warm.shape) < 0.2] = draw(st.sampled_from([np.nan, np.inf]))
        kwargs["initial_latency_ns"] = warm
    return nodes, kwargs


@pytest.mark.skipif(not solver_jit.AVAILABLE, reason="numba is not installed")
@PROPERTY_SETTINGS
@given(parametric_batches())
def test_compiled_solve_reports_what_the_numpy_reference_does(problem) -> None:
    """The compiled path (starting mixes, iteration and reporting in one call) against the
    numpy reference: every reported field, the iteration count, convergence and warnings.

    Both stop the mix loop once every gap is within MIX_TOLERANCE; rarely (warm starts,
    per-node background mixes) a gap sits so close to that threshold that round-off decides
    which iteration stops, and the two settle at different points within the documented
    settling. Such a problem is told by its node mixes, which otherwise agree to round-off.
    """
    nodes, kwargs = problem
    with warnings.catch_warnings(record=True) as reference_warnings:
        warnings.simplefilter("always")
        reference = solve(nodes, **kwargs, engine="numpy")
    with warnings.catch_warnings(record=True) as compiled_warnings:
        warnings.simplefilter("always")
        compiled = solve(nodes, **kwargs, engine="numba")
    assert [str(w.message) for w in compiled_warnings] == [
        str(w.message) for w in reference_warnings
    ]
    assert np.array_equal(compiled.converged, reference.converged)
    for field in SOLUTION_FIELDS:
        assert getattr(compiled, field).shape == getattr(reference, field).shape, field
    mix_gap = np.abs(compiled.node_read_fraction - reference.node_read_fraction).max(axis=-1)
    same_path = mix_gap <= 1e-12
    if same_path.all():
        assert compiled.iterations == reference.iterations
    for field in SOLUTION_FIELDS:
        ours, theirs = getattr(compiled, field), getattr(reference, field)
        assert ours[same_path] == pytest.approx(theirs[same_path], rel=1e-9, abs=1e-12), field
    # Elsewhere: the same settling bound as the fixed-point property test, and a solution.
    assert np.all(mix_gap[~same_path] <= 1.5e-2)
    delay = kwargs["think_ns"] + np.einsum("kji,ki->kj", kwargs["split"], compiled.node_latency_ns)
    assert compiled.throughput_gbps == pytest.approx(LINE_BYTES * kwargs["mlp"] / delay, rel=1e-9)
    assert np.all(compiled.node_bandwidth_gbps <= compiled.node_saturation_gbps * (1 + 1e-9))


@pytest.mark.parametrize("engine", ["numpy", "numba"] if solver_jit.AVAILABLE else ["numpy"])
def test_inputs_of_any_layout_give_the_same_solution_and_stay_untouched(engine) -> None:
    """The solver works on its own contiguous copies: strided, Fortran-ordered and read-only
    inputs solve like fresh arrays, and nothing the caller passed is written to."""
    nodes = NodeSet([load_profile("spr-8460y-ddr5-socket"), load_profile("generic-cxl-x8")])
    rng = np.random.default_rng(11)
    kwargs = {
        "mlp": rng.uniform(50, 500, (3, 2)),
        "think_ns": rng.uniform(0, 100, (3, 2)),
        "read_fraction": rng.uniform(0.5, 1.0, (3, 2)),
        "split": rng.dirichlet(np.ones(2), (3, 2)) * 1.0000001,  # normalised by the solver
        "background_gbps": rng.uniform(0, 20, (3, 2)),
        "background_read_fraction": rng.uniform(0, 1, (3, 2)),
        "initial_latency_ns": nodes.idle_latency_ns * rng.uniform(1.0, 2.0, (3, 2)),
    }
    originals = {name: value.copy() for name, value in kwargs.items()}
    fresh = solve(nodes, **kwargs, engine=engine)
    odd = {}
    for name, value in originals.items():
        wide = np.zeros((*value.shape[:-1], 2 * value.shape[-1]))
        wide[..., ::2] = value
        strided = wide[..., ::2]
        odd[name] = np.asfortranarray(value) if name.endswith("gbps") else strided
    odd["mlp"].flags.writeable = False
    again = solve(nodes, **odd, engine=engine)
    for name, value in originals.items():
        assert np.array_equal(kwargs[name], value), name
        assert np.array_equal(odd[name], value), name
    for field in SOLUTION_FIELDS:
        assert np.array_equal(getattr(again, field), getattr(fresh, field)), field


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 1.0],
        [-0.0, 5e-324],
        [np.nan],
        [np.inf],
        [-np.inf],
        [0.5, np.nextafter(1.0, 2.0)],
        [],
    ],
)
def test_the_compiled_range_check_matches_numpy(values) -> None:
    array = np.array(values, dtype=float)
    for low, high in ((0.0, 1.0), (5e-324, np.finfo(float).max), (0.0, np.finfo(float).max)):
        expected = bool(np.all((array >= low) & (array <= high)))
        assert solver_jit.all_within(array, low, high) == expected
        assert solver_jit.all_within(array.reshape(-1, 1)[::-1], low, high) == expected


# --- Remote views: nodes behind a socket link (mix-dependent idle, early rise) ------------------


@st.composite
def remote_views(draw, index: int = 0) -> NodeProfile:
    """A random parametric node seen across a socket link, over the range measured views span
    (idle +0-400 ns per write share, an early rise of up to 200 ns half-reached at 1-50 % of
    the capacity)."""
    base = draw(profiles(index).filter(lambda p: isinstance(p.latency, ParametricCurve)))
    capacity = float(base.saturation_gbps(1.0))
    link = SocketLink(
        draw(st.floats(0.0, 400.0)),
        draw(st.floats(0.0, 200.0)),
        capacity * draw(st.floats(0.01, 0.5)),
    )
    return replace(base, kind=draw(st.sampled_from(REMOTE_KINDS)), link=link)


@st.composite
def remote_problems(draw):
    """Problems on hosts of one to four parametric nodes, the first a remote view."""
    n_nodes = draw(st.integers(1, 4))
    n_streams = draw(st.integers(1, 8))
    local = profiles().filter(lambda p: isinstance(p.latency, ParametricCurve))
    node_list = [draw(remote_views(0))]
    for i in range(1, n_nodes):
        node = draw(st.one_of(remote_views(i), local))
        node_list.append(replace(node, name=f"node{i}"))
    nodes = NodeSet(node_list)
    mlp = np.array([draw(st.floats(0.05, 4000.0)) for _ in range(n_streams)])
    think = np.array([draw(st.one_of(st.just(0.0), st.floats(0.0, 5e4))) for _ in range(n_streams)])
    reads = np.array([draw(st.floats(0.0, 1.0)) for _ in range(n_streams)])
    raw = np.array([[draw(st.floats(0.0, 1.0)) for _ in range(n_nodes)] for _ in range(n_streams)])
    raw[:, 0] += 1e-3
    split = raw / raw.sum(axis=1, keepdims=True)
    background = None
    if draw(st.booleans()):
        background = np.array([draw(st.floats(0.0, 200.0)) for _ in range(n_nodes)])
    return nodes, mlp, think, reads, split, background


@PROPERTY_SETTINGS
@given(remote_problems())
def test_remote_views_solve_to_a_conserving_fixed_point(problem) -> None:
    nodes, mlp, think, reads, split, background = problem
    solution = solve(nodes, mlp, think, reads, split, background_gbps=background)
    assert solution.converged
    assert np.all(np.isfinite(solution.node_latency_ns)) and np.all(solution.throughput_gbps > 0)
    assert np.all(solution.node_bandwidth_gbps <= solution.node_saturation_gbps * (1 + 1e-6))
    assert np.all(solution.node_latency_ns >= nodes.idle_latency_ns - 1e-9)
    carried = solution.node_bandwidth_gbps.sum()
    moved = solution.throughput_gbps.sum() + solution.background_served_gbps.sum()
    assert carried == pytest.approx(moved, rel=1e-6)
    delay = think + split @ solution.node_latency_ns
    assert solution.throughput_gbps == pytest.approx(LINE_BYTES * mlp / delay, rel=1e-9)
    assert served_at(nodes, solution) == pytest.approx(
        solution.node_bandwidth_gbps, rel=1e-4, abs=1e-6 * solution.node_saturation_gbps.max()
    )


@PROPERTY_SETTINGS
@given(st.lists(remote_views(), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
def test_vectorised_remote_views_match_the_per_node_reference(node_profiles, seed) -> None:
    fast, reference = NodeSet(node_profiles), NodeSet(node_profiles, vectorised=False)
    assert fast.vectorised is not None
    rng = np.random.default_rng(seed)
    reads = rng.uniform(0.0, 1.0, (32, len(node_profiles)))
    latency = fast.idle_latency_ns + rng.exponential(300.0, (32, len(node_profiles)))
    latency[:4] = fast.idle_latency_ns  # at idle, where the offset's flat stretch starts
    for ours, theirs in zip(
        fast.load_at(latency, reads), reference.load_at(latency, reads), strict=True
    ):
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


@pytest.mark.skipif(not solver_jit.AVAILABLE, reason="numba is not installed")
@PROPERTY_SETTINGS
@given(remote_problems())
def test_compiled_iteration_matches_the_numpy_reference_on_remote_views(problem) -> None:
    nodes, mlp, think, reads, split, background = problem
    reference = solve(nodes, mlp, think, reads, split, background_gbps=background, engine="numpy")
    compiled = solve(nodes, mlp, think, reads, split, background_gbps=background, engine="numba")
    assert compiled.converged == reference.converged
    assert compiled.iterations == reference.iterations
    assert compiled.throughput_gbps == pytest.approx(reference.throughput_gbps, rel=1e-9)
    assert compiled.node_latency_ns == pytest.approx(reference.node_latency_ns, rel=1e-9)
