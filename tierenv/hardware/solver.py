"""Closed-loop throughput solver: who gets how much bandwidth, at what latency.

Model
-----
A *stream* is an application (or a migration copy) that keeps ``mlp`` 64-byte misses in
flight; each slot computes ``think_ns`` between misses and then waits for the memory
latency of the node its miss goes to. A fraction ``split[j, i]`` of stream j's misses go to
node i (the weighted-interleave page split, or the access split of its hot pages). By
Little's law stream j completes::

    X_j = mlp_j / (think_ns_j + sum_i split_ji * L_i)        misses per ns; 64·X_j in GB/s

Node i carries ``B_i = sum_j 64·X_j·split_ji + background_i`` and its latency follows its
loaded-latency curve ``L_i = L_i(B_i, r_i)`` (``r_i`` the node's read fraction). The curve is
capped at the node's saturation bandwidth: at capacity the node serves exactly Bsat and the
closed loop sets the latency (Little's law), which is how MLC's zero-delay rows behave.

Solving
-------
With the node read fractions held fixed, the fixed point in node latencies Λ is the minimiser
of the strictly convex function::

    Ψ(Λ) = Σ_i ∫ served_i(s) ds  -  Σ_j 64·mlp_j·log(think_j + split_j·Λ)  -  Σ_i background_i·Λ_i

(served_i is the inverse curve, increasing), so it exists and is unique. Damped Newton steps
on ∇Ψ = served - demand with an Armijo line search on Ψ find it; the Hessian is
diag(d served/dΛ) plus a positive semi-definite sum of rank-one terms. The read fractions are
an outer fixed point (a node's capacity depends on its mix, the mix on the rates): they are
moved towards the mix the solved rates produce, with damping, extrapolation and per-node
brackets (regula falsi). Where the solved rates jump as a mix crosses some value (a node on a
flat stretch of its curve) there is no exact mix fixed point; the mix then settles at the
jump, within about a percent. Every quantity is vectorised over leading batch dimensions.
A problem that does not converge within ``max_iterations`` is flagged in
``Solution.converged`` and reported with a RuntimeWarning.

Units: bandwidth GB/s (= bytes/ns), latency and think time ns.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from tierenv.hardware.nodeset import NodeSet

LINE_BYTES = 64.0
# Open-loop background traffic is served up to this share of the least a node can serve at
# any mix; the rest is refused (reported in ``background_served_gbps``) because an open loop
# above capacity has no steady state.
BACKGROUND_CAP = 0.9
MAX_HALVINGS = 40
MAX_EXCESS_GROWTH = 3.0
ARMIJO = 1e-4
MIX_TOLERANCE = 1e-5
REMIX_TOLERANCE = 1e-4
MIN_MIX_RELAXATION = 1.0 / 64
MAX_MIX_EXTRAPOLATION = 20.0
# Range ends that make ``low <= x <= high`` the checks "x > 0" and "x finite".
_SMALLEST = 5e-324
_LARGEST = sys.float_info.max


@dataclass(frozen=True)
class Solution:
    """Steady state of one or a batch of solver problems (leading axes = batch)."""

    throughput_gbps: np.ndarray  # (..., streams) bytes moved per ns by each stream
    stream_latency_ns: np.ndarray  # (..., streams) mean memory latency each stream sees
    node_bandwidth_gbps: np.ndarray  # (..., nodes)
    node_latency_ns: np.ndarray  # (..., nodes)
    node_read_fraction: np.ndarray  # (..., nodes)
    node_saturation_gbps: np.ndarray  # (..., nodes) capacity at the node's current mix
    background_served_gbps: np.ndarray  # (..., nodes)
    iterations: int
    converged: np.ndarray  # (...,) bool

    @property
    def node_utilization(self) -> np.ndarray:
        return self.node_bandwidth_gbps / self.node_saturation_gbps


def combine_background(
    gbps_a: np.ndarray, reads_a: np.ndarray, gbps_b: np.ndarray, reads_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two open-loop loads on the same nodes as one (``solve``'s ``background_gbps`` and
    ``background_read_fraction``): the GB/s add, the read shares are weighted by GB/s (1 on
    a node with neither)."""
    gbps = np.asarray(gbps_a, dtype=float) + gbps_b
    reads = np.divide(
        gbps_a * np.asarray(reads_a, dtype=float) + gbps_b * np.asarray(reads_b, dtype=float),
        gbps,
        out=np.ones(gbps.shape),
        where=gbps > 0,
    )
    return gbps, reads


def solve(
    nodes: NodeSet,
    mlp: ArrayLike,
    think_ns: ArrayLike,
    read_fraction: ArrayLike,
    split: ArrayLike,
    background_gbps: ArrayLike | None = None,
    background_read_fraction: ArrayLike = 1.0,
    initial_latency_ns: ArrayLike | None = None,
    tolerance: float = 1e-9,
    max_iterations: int = 400,
    engine: str = "auto",
) -> Solution:
    """Solve the closed loop for every stream's throughput and every node's load.

    Shapes: ``mlp``, ``think_ns``, ``read_fraction``: (..., J); ``split``: (..., J, I) with rows
    summing to 1; ``background_gbps``: (..., I) open-loop traffic (e.g. page migration
    copies) whose read fraction ``background_read_fraction`` is one number or per node,
    broadcast to (..., I) (a migration reads its source node and writes its destination);
    ``initial_latency_ns`` (..., I) warm-starts Newton from a previous solution.
    ``engine``: "numpy" runs the reference iteration; "numba" the compiled one (parametric
    node profiles only); "auto" (default) the compiled one where it applies.
    """
    n_nodes = len(nodes)
    split = np.asarray(split, dtype=float)
    if split.ndim < 2 or split.shape[-1] != n_nodes:
        raise ValueError(f"split must have shape (..., streams, {n_nodes}), got {split.shape}")
    batch_shape = split.shape[:-2]
    n_streams = split.shape[-2]
    k = math.prod(batch_shape)
    # Problems are solved as rows of (k, ...) C-contiguous arrays, as the compiled code takes.
    n = _stream_rows("mlp", mlp, batch_shape, n_streams)
    z = _stream_rows("think_ns", think_ns, batch_shape, n_streams)
    rr = _stream_rows("read_fraction", read_fraction, batch_shape, n_streams)
    f = np.ascontiguousarray(split.reshape(k, n_streams, n_nodes))
    sums = _check_inputs(n, z, rr, f)
    f = f / sums[..., None]  # a new array: f may be a view of the caller's split
    idle = np.asarray(nodes.idle_latency_ns, dtype=float)

    background_read = _background_reads(background_read_fraction, batch_shape, n_nodes)
    if background_gbps is None:
        background = np.zeros((k, n_nodes))
    else:
        background = _broadcast(np.asarray(background_gbps, float), (*batch_shape, n_nodes))
        background = background.reshape(k, n_nodes)
        if not _all_within(background, 0.0, _LARGEST):
            raise ValueError("background_gbps must be finite and non-negative")
        background = np.minimum(background, BACKGROUND_CAP * nodes.min_servable_gbps)

    if initial_latency_ns is None:
        latency = np.repeat(idle[None], k, axis=0)
    else:
        latency = _broadcast(np.asarray(initial_latency_ns, float), (*batch_shape, n_nodes))
        latency = np.maximum(latency.reshape(k, n_nodes), idle)
        latency = np.where(np.isfinite(latency), latency, idle)

    if engine not in ("auto", "numpy", "numba"):
        raise ValueError(f"engine must be 'auto', 'numpy' or 'numba', got {engine!r}")
    compiled = nodes.vectorised is not None and engine != "numpy" and _jit_available()
    if engine == "numba" and not compiled:
        raise ValueError("engine='numba' needs numba installed and parametric node profiles")
    if compiled:
        from tierenv.hardware import solver_jit

        # One compiled call: starting mixes, iteration and the reported quantities. Inputs
        # are C-contiguous (the kernel is compiled for that layout); latency is solved in place.
        latency = np.ascontiguousarray(latency)
        iterations, converged, throughput, stream_latency, node_bw, node_reads, capacity = (
            solver_jit.solve(
                n,
                z,
                rr,
                f,
                np.ascontiguousarray(background),
                background_read,
                idle,
                latency,
                nodes.vectorised,
                tolerance,
                max_iterations,
            )
        )
    else:
        problem = (n, z, rr, f, background, background_read)
        latency, state, iterations, converged = _iterate(
            nodes, latency, np.broadcast_to(idle, (k, n_nodes)), problem, tolerance, max_iterations
        )
        throughput = LINE_BYTES * state.rate
        node_bw = np.minimum(state.demand, state.capacity)
        stream_latency = state.stream_delay - z
        node_reads, capacity = state.node_reads, state.capacity

    if not np.all(converged):
        warnings.warn(
            f"throughput solver: {int(np.sum(~converged))} of {k} problems did not converge in "
            f"{max_iterations} iterations; their results are approximate (Solution.converged)",
            RuntimeWarning,
            stacklevel=2,
        )

    def shaped(values: np.ndarray, last: int) -> np.ndarray:
        return values.reshape(*batch_shape, last)

    return Solution(
        throughput_gbps=shaped(throughput, n_streams),
        stream_latency_ns=shaped(stream_latency, n_streams),
        node_bandwidth_gbps=shaped(node_bw, n_nodes),
        node_latency_ns=shaped(latency, n_nodes),
        node_read_fraction=shaped(node_reads, n_nodes),
        node_saturation_gbps=shaped(capacity, n_nodes),
        background_served_gbps=shaped(background, n_nodes),
        iterations=iterations,
        converged=converged.reshape(batch_shape),
    )


# n, z, rr, f, background, background_read: what _evaluate takes after the latencies
_Problem = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _iterate(nodes, latency, idle, problem: _Problem, tolerance, max_iterations):
    """The reference iteration (numpy, batched); returns (latency, state, iterations, converged)."""
    n, _, _, f, _, _ = problem
    k, n_nodes = latency.shape
    # Tiny diagonal regularisation keeps H invertible where a node serves nothing and sits
    # beyond its last measured point (flat inverse curve).
    regularisation = 1e-12 * np.eye(n_nodes)
    iterations = 0
    state = _evaluate(nodes, latency, *problem)
    # Node mixes are an outer fixed point: held fixed while Newton minimises the (then
    # well-defined, convex) potential, then moved towards the mixes the solved rates produce,
    # damped element by element where successive moves oscillate (and undamped again while
    # they keep one direction).
    relax = np.ones((k, 1))
    last_gap = np.zeros((k, n_nodes))
    brackets = _MixBrackets((k, n_nodes))
    expand = np.ones((k, n_nodes))
    converged = np.zeros(k, dtype=bool)
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - reported after the loop
        gradient = state.supply - state.demand  # ∇Ψ at the pinned mixes
        # At the idle bound a node that could serve more than it is offered is optimal
        # (the projected gradient vanishes): it runs at idle latency.
        at_idle = (latency <= idle) & (gradient > 0)
        projected = np.where(at_idle, 0.0, gradient)
        solved = np.all(np.abs(projected) <= tolerance * state.capacity, axis=-1)
        mix_gap = state.fresh_reads - state.node_reads
        # A node's mix is settled when its gap is small, or when the bracket around it has
        # closed (the gap jumps sign there: the solved rates change abruptly with the mix).
        settled = (np.abs(mix_gap) <= MIX_TOLERANCE) | (brackets.width() <= MIX_TOLERANCE**2)
        converged = solved & np.all(settled, axis=-1)
        if np.all(converged):
            break
        # Mixes move once Newton is close (not only when it has converged): the two loops then
        # finish together instead of one after the other.
        near = np.all(np.abs(projected) <= REMIX_TOLERANCE * state.capacity, axis=-1)
        remix = near & ~converged & np.any(np.abs(mix_gap) > MIX_TOLERANCE, axis=-1)
        if remix.any():
            rows = remix[:, None] & np.ones((1, n_nodes), dtype=bool)
            flipped = np.any(mix_gap * last_gap < 0, axis=-1, keepdims=True) & remix[:, None]
            grown = np.where(remix[:, None], np.minimum(relax * 1.5, 1.0), relax)
            relax = np.where(flipped, np.maximum(relax * 0.5, MIN_MIX_RELAXATION), grown)
            # Aitken: where the gap shrinks by a steady ratio q (a slow creep towards the fixed
            # point), jump to where the geometric series ends.
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(last_gap != 0, mix_gap / last_gap, 0.0)
            creeping = (ratio > 0.2) & (ratio < 0.999) & rows
            boost = np.minimum(1.0 / (1.0 - np.where(creeping, ratio, 0.0)), MAX_MIX_EXTRAPOLATION)
            # A gap that does not shrink at all: lengthen the step until the sign changes
            # (the brackets then take over).
            stuck = (ratio >= 0.999) & rows
            expand = np.where(stuck, np.minimum(expand * 2.0, 1e6), np.where(rows, 1.0, expand))
            boost = np.maximum(boost, expand)
            last_gap = np.where(rows, mix_gap, last_gap)
            damped = np.clip(state.node_reads + relax * boost * mix_gap, 0.0, 1.0)
            mixes = brackets.propose(state.node_reads, mix_gap, rows, damped)
            state = _evaluate(nodes, latency, *problem, node_reads=mixes)
            gradient = state.supply - state.demand
        active = ~solved
        if not active.any():
            continue
        hessian = state.supply_slope[:, :, None] * np.eye(n_nodes)
        weight = LINE_BYTES * n / state.stream_delay**2
        hessian = hessian + np.einsum("kj,kji,kjl->kil", weight, f, f) + regularisation
        step = -np.linalg.solve(hessian, gradient[..., None])[..., 0]
        # Trust region: a node's excess latency may grow at most MAX_EXCESS_GROWTH-fold (plus
        # one idle latency) per iteration; far beyond saturation supply and demand both
        # flatten and one long step could land anywhere.
        ceiling = idle * 2 + MAX_EXCESS_GROWTH * (latency - idle)
        step = np.minimum(step, ceiling - latency)
        target = np.maximum(latency + step, idle)
        descent = np.sum(gradient * (target - latency), axis=-1)
        # Where clipping spoiled the Newton direction, fall back to scaled steepest descent.
        fallback = descent >= 0
        if fallback.any():
            diagonal = np.diagonal(hessian, axis1=1, axis2=2)
            gentle = np.maximum(latency - gradient / diagonal, idle)
            gentle = np.minimum(gentle, ceiling)
            target = np.where(fallback[:, None], gentle, target)
        state, latency = _line_search(nodes, state, latency, target, gradient, active, problem)

    return latency, state, iterations, converged


def _jit_available() -> bool:
    from tierenv.hardware import solver_jit

    return solver_jit.AVAILABLE


@dataclass
class _State:
    rate: np.ndarray  # (k, J) misses per ns
    stream_delay: np.ndarray  # (k, J) think + memory latency per miss
    demand: np.ndarray  # (k, I) GB/s offered to each node
    supply: np.ndarray  # (k, I) GB/s the node serves at its current latency
    supply_slope: np.ndarray  # (k, I) d supply / d latency
    capacity: np.ndarray  # (k, I)
    node_reads: np.ndarray  # (k, I) mixes the capacities and curves were evaluated at
    fresh_reads: np.ndarray  # (k, I) mixes the current rates produce
    potential: np.ndarray  # (k,) Ψ at this point (node mixes held at their current values)


def _evaluate(nodes, latency, n, z, rr, f, background, background_read, node_reads=None) -> _State:
    """Everything at one iterate; ``node_reads`` pins the node mixes (else they follow rates)."""
    delay = z + np.einsum("kji,ki->kj", f, latency)
    rate = n / delay
    per_node = LINE_BYTES * rate[:, :, None] * f
    demand = per_node.sum(axis=1) + background
    read_traffic = np.einsum("kji,kj->ki", per_node, rr) + background * background_read
    with np.errstate(invalid="ignore", divide="ignore"):
        fresh_reads = np.where(demand > 0, read_traffic / demand, 1.0)
    fresh_reads = np.clip(fresh_reads, 0.0, 1.0)
    if node_reads is None:
        node_reads = fresh_reads
    capacity = nodes.saturation_gbps(node_reads)
    load, load_slope, load_integral = nodes.load_at(latency, node_reads)
    potential = np.sum(
        capacity * load_integral - background * latency, axis=-1
    ) - LINE_BYTES * np.sum(n * np.log(delay), axis=-1)
    return _State(
        rate=rate,
        stream_delay=delay,
        demand=demand,
        supply=load * capacity,
        supply_slope=load_slope * capacity,
        capacity=capacity,
        node_reads=node_reads,
        fresh_reads=fresh_reads,
        potential=potential,
    )


class _MixBrackets:
    """Per node, the mixes seen with a positive and with a negative gap (fresh - pinned).

    Once a sign change brackets a node's mix, regula falsi with the Illinois fix proposes
    the next mix: it converges superlinearly and cannot cycle, where the damped update can
    crawl. Other nodes' mixes can move a root out of its bracket; an observation that
    contradicts a bound reopens that side.
    """

    def __init__(self, shape: tuple[int, int]):
        self.low = np.full(shape, np.nan)
        self.gap_low = np.full(shape, np.nan)
        self.high = np.full(shape, np.nan)
        self.gap_high = np.full(shape, np.nan)
        self.side = np.zeros(shape, dtype=int)

    def width(self) -> np.ndarray:
        """Bracket width per node (inf while a side is unknown)."""
        width = self.high - self.low
        return np.where(np.isfinite(width), width, np.inf)

    def propose(self, reads, gap, rows, fallback) -> np.ndarray:
        up = rows & (gap > 0)
        down = rows & (gap < 0)
        # Contradicted bounds: the root now lies beyond them.
        self.high = np.where(up & (reads >= self.high), np.nan, self.high)
        self.low = np.where(down & (reads <= self.low), np.nan, self.low)
        # Illinois: when the same side is replaced twice, halve the kept side's gap.
        self.gap_high = np.where(up & (self.side == 1), self.gap_high * 0.5, self.gap_high)
        self.gap_low = np.where(down & (self.side == -1), self.gap_low * 0.5, self.gap_low)
        self.low = np.where(up, reads, self.low)
        self.gap_low = np.where(up, gap, self.gap_low)
        self.high = np.where(down, reads, self.high)
        self.gap_high = np.where(down, gap, self.gap_high)
        self.side = np.where(up, 1, np.where(down, -1, self.side))
        bracketed = rows & np.isfinite(self.low) & np.isfinite(self.high)
        with np.errstate(invalid="ignore", divide="ignore"):
            secant = self.low + self.gap_low * (self.high - self.low) / (
                self.gap_low - self.gap_high
            )
        use = bracketed & np.isfinite(secant)
        return np.where(use, np.clip(secant, 0.0, 1.0), np.where(rows, fallback, reads))


def _line_search(nodes, state, latency, target, gradient, active, problem: _Problem):
    """Armijo backtracking on the convex potential Ψ from ``latency`` towards ``target``."""
    scale = np.ones(latency.shape[0])
    pending = active.copy()
    for _ in range(MAX_HALVINGS):
        trial_latency = latency + scale[:, None] * (target - latency)
        trial = _evaluate(nodes, trial_latency, *problem, node_reads=state.node_reads)
        decrease = np.sum(gradient * (trial_latency - latency), axis=-1)
        # Near the solution Ψ's change drops below rounding; Newton steps are then safe.
        negligible = np.abs(decrease) <= 1e-13 * (np.abs(state.potential) + 1.0)
        accept = pending & ((trial.potential <= state.potential + ARMIJO * decrease) | negligible)
        latency = np.where(accept[:, None], trial_latency, latency)
        state = _select(accept, trial, state)
        pending &= ~accept
        if not pending.any():
            break
        scale = np.where(pending, scale * 0.5, scale)
    return state, latency


def _select(mask: np.ndarray, new: _State, old: _State) -> _State:
    """Per batch element, the new state where ``mask`` holds, else the old one."""
    return _State(
        *(
            np.where(mask.reshape(-1, *([1] * (a.ndim - 1))), a, b)
            for a, b in zip(vars(new).values(), vars(old).values(), strict=True)
        )
    )


def _broadcast(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``np.broadcast_to``, skipped where the shape already fits (its cost matters here)."""
    return array if array.shape == shape else np.broadcast_to(array, shape)


def _all_within(values: np.ndarray, low: float, high: float) -> bool:
    """Every value in [low, high] (NaN never is): compiled where numba is, as it is cheaper."""
    from tierenv.hardware import solver_jit

    return solver_jit.all_within(values, low, high)


def _stream_rows(name: str, values, batch_shape: tuple[int, ...], n_streams: int) -> np.ndarray:
    """A per-stream input broadcast to the batch, as (problems, streams) C-contiguous rows."""
    array = np.asarray(values, dtype=float)
    try:
        array = _broadcast(array, (*batch_shape, n_streams))
    except ValueError:
        raise ValueError(
            f"{name} must broadcast to shape {(*batch_shape, n_streams)}, got {array.shape}"
        ) from None
    return np.ascontiguousarray(array.reshape(-1, n_streams))


def _background_reads(fraction, batch_shape: tuple[int, ...], n_nodes: int) -> np.ndarray:
    """The background's read fraction per problem and node, shape (k, nodes)."""
    array = np.asarray(fraction, dtype=float)
    if not _all_within(array, 0.0, 1.0):
        bad = ~np.isfinite(array) | (array < 0) | (array > 1)
        index = tuple(int(i) for i in np.unravel_index(np.argmax(bad), array.shape))
        where = f" at index {index}" if array.ndim else ""
        value = float(array.flat[np.argmax(bad)])
        raise ValueError(f"background_read_fraction must lie in [0, 1], got {value!r}{where}")
    if array.ndim == 0:  # the common case, one number: no broadcasting needed
        return np.full((math.prod(batch_shape), n_nodes), float(array))
    try:
        shaped = _broadcast(array, (*batch_shape, n_nodes))
    except ValueError:
        raise ValueError(
            f"background_read_fraction must be a number or broadcast to shape "
            f"{(*batch_shape, n_nodes)} (batch, nodes), got shape {array.shape}"
        ) from None
    return np.ascontiguousarray(shaped.reshape(-1, n_nodes))


def _check_inputs(mlp, think, reads, split) -> np.ndarray:
    """Refuse invalid streams with the field named; returns each stream's split sum."""
    if not _all_within(mlp, _SMALLEST, _LARGEST):
        raise ValueError(
            "mlp (misses in flight) must be positive and finite for every stream: a stream "
            "with zero or negative demand has no throughput to solve for; leave it out"
        )
    if not _all_within(think, 0.0, _LARGEST):
        raise ValueError("think_ns must be finite and non-negative for every stream")
    if not _all_within(reads, 0.0, 1.0):
        raise ValueError("read_fraction must lie in [0, 1] for every stream")
    if not _all_within(split, 0.0, _LARGEST):
        raise ValueError("split must be finite and non-negative")
    sums = split.sum(axis=-1)
    if not _all_within(np.abs(sums - 1.0), 0.0, 1e-6):
        worst = float(sums.flat[np.argmax(np.abs(sums - 1.0))])
        raise ValueError(f"every stream's split over nodes must sum to 1, one sums to {worst:g}")
    return sums


def alone_throughput_gbps(
    nodes: NodeSet,
    mlp: np.ndarray,
    think_ns: np.ndarray,
    read_fraction: np.ndarray,
    home_node: int = 0,
) -> np.ndarray:
    """Each stream's throughput running alone with all its memory on ``home_node``."""
    if not 0 <= home_node < len(nodes):
        raise ValueError(f"home_node must be a node index in 0..{len(nodes) - 1}, got {home_node}")
    mlp = np.atleast_1d(np.asarray(mlp, dtype=float))
    n_streams = mlp.shape[-1]
    split = np.zeros((*mlp.shape, len(nodes)))
    split[..., home_node] = 1.0
    # Each stream is its own batch element, so they do not load each other.
    solution = solve(
        nodes,
        mlp[..., None],
        np.broadcast_to(think_ns, mlp.shape)[..., None],
        np.broadcast_to(read_fraction, mlp.shape)[..., None],
        split[..., None, :],
    )
    return solution.throughput_gbps[..., 0].reshape(*mlp.shape[:-1], n_streams)


def weighted_speedup(throughput_gbps: np.ndarray, alone_gbps: np.ndarray) -> np.ndarray:
    """Sum over streams of throughput / throughput alone on idle local memory."""
    return np.sum(np.asarray(throughput_gbps) / np.asarray(alone_gbps), axis=-1)
