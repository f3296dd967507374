"""Compiled (numba) version of the solver's iteration, for hosts of parametric nodes.

It runs the same algorithm as ``tierenv.hardware.solver.solve`` (the reference, which tests
compare it with) one problem at a time with scalar loops, where numpy's per-call overhead
dominates for problems of a few streams and nodes. The whole solve runs here: the starting
mixes, the iteration and the reported quantities at the solution, so that a small problem
(a simulated host's 2 nodes and a few streams, solved every control interval) costs one
compiled call rather than dozens of numpy calls.
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is optional: without it the numpy reference runs
    AVAILABLE = False
else:
    AVAILABLE = True

from tierenv.hardware.bandwidth import WRITE_SHARE_CAP
from tierenv.hardware.curves import LINK_MAX_STEPS, LINK_STEP_TOLERANCE
from tierenv.hardware.solver import (
    ARMIJO,
    LINE_BYTES,
    MAX_EXCESS_GROWTH,
    MAX_HALVINGS,
    MAX_MIX_EXTRAPOLATION,
    MIN_MIX_RELAXATION,
    MIX_TOLERANCE,
    REMIX_TOLERANCE,
)


def _capacity(i, r, media, penalty, read_link, write_link):
    r = min(max(r, 0.0), 1.0)
    peak = media[i] * (1.0 - penalty[i] * min(1.0 - r, WRITE_SHARE_CAP))
    if r > 0.0:
        peak = min(peak, read_link[i] / r)
    if r < 1.0:
        peak = min(peak, write_link[i] / (1.0 - r))
    return peak


def _power_integral(x, q):
    one_minus_q = 1.0 - q
    log_term = math.log1p(x)
    if abs(one_minus_q) < 1e-8:
        return log_term
    return math.expm1(one_minus_q * log_term) / one_minus_q


def _fitted_mix(excess, a, p, beta):
    x = min(excess / a, 1e200)
    decay = (1.0 + x) ** (-1.0 / p)
    rho = beta * (1.0 - decay)
    slope = beta / (a * p) * decay / (1.0 + x)
    knee = (1.0 - 1.0 / beta) ** (-p) - 1.0 if beta > 1.0 else math.inf
    below = min(x, knee)
    integral = a * (beta * (below - _power_integral(below, 1.0 / p)) + max(x - knee, 0.0))
    if x >= knee:
        return 1.0, 0.0, integral
    return rho, slope, integral


def _memory_load(ex, i, lower, upper, weight, a, p, beta):
    """The node's memory curve at excess ``ex`` >= 0: the two neighbouring mixes blended."""
    rho_l, slope_l, int_l = _fitted_mix(ex, a[i, lower], p[i, lower], beta[i, lower])
    rho_h, slope_h, int_h = _fitted_mix(ex, a[i, upper], p[i, upper], beta[i, upper])
    return (
        (1 - weight) * rho_l + weight * rho_h,
        (1 - weight) * slope_l + weight * slope_h,
        (1 - weight) * int_l + weight * int_h,
    )


def _link_rise(traffic, rise_ns, rise_gbps):
    x2 = traffic * traffic
    b2 = rise_gbps * rise_gbps
    denominator = x2 + b2
    return rise_ns * x2 / denominator, rise_ns * 2.0 * traffic * b2 / (denominator * denominator)


def _through_link(excess, r, capacity, w, c, b, i, lower, upper, weight, a, p, beta):
    """A remote view's (ρ, dρ/dE, ∫ρ): curves.load_through_link for one node, compiled."""
    r = min(max(r, 0.0), 1.0)
    per_load = max(r, 1.0 - r) * capacity
    head = excess - w * min(1.0 - r, WRITE_SHARE_CAP)
    if not head >= 0:  # below the offset the view serves nothing (flat, no slope)
        return 0.0, 0.0, 0.0
    tolerance = LINK_STEP_TOLERANCE * max(head, 1.0)
    lo = 0.0
    hi = head
    memory = head
    if head > 0:
        for _ in range(LINK_MAX_STEPS):
            rho, slope, _ = _memory_load(memory, i, lower, upper, weight, a, p, beta)
            rise, rise_slope = _link_rise(per_load * rho, c, b)
            gap = memory + rise - head
            if gap == 0:
                break
            if gap > 0:
                hi = memory
            else:
                lo = memory
            step = gap / (1.0 + rise_slope * per_load * slope)
            newton = memory - step
            small = abs(step) <= tolerance
            proposal = newton if (small or lo < newton < hi) else 0.5 * (lo + hi)
            moved = abs(proposal - memory)
            memory = min(max(proposal, 0.0), head)
            if small or not moved > tolerance:
                break
    rho, slope, integral = _memory_load(memory, i, lower, upper, weight, a, p, beta)
    traffic = per_load * rho
    rise, rise_slope = _link_rise(traffic, c, b)
    rho_slope = slope / (1.0 + slope * rise_slope * per_load)
    if not per_load > 0:
        per_load = 1.0
    b2 = b * b
    complement = c * (b / per_load * math.atan(traffic / b) - rho * b2 / (traffic * traffic + b2))
    return rho, rho_slope, integral + complement


def _node_load(i, excess, r, capacity, count, mixes, a, p, beta, write_idle, rise_ns, rise_gbps):
    n = count[i]
    rm = min(max(r, mixes[i, 0]), mixes[i, n - 1])
    below = -1
    for c in range(n):
        if mixes[i, c] <= rm:
            below += 1
    lower = min(max(below, 0), max(n - 2, 0))
    upper = min(lower + 1, n - 1)
    weight = (rm - mixes[i, lower]) / (mixes[i, upper] - mixes[i, lower]) if upper > lower else 0.0
    if write_idle[i] == 0.0 and rise_ns[i] == 0.0:  # a local node (or a link that adds nothing)
        return _memory_load(max(excess, 0.0), i, lower, upper, weight, a, p, beta)
    return _through_link(
        excess,
        r,
        capacity,
        write_idle[i],
        rise_ns[i],
        rise_gbps[i],
        i,
        lower,
        upper,
        weight,
        a,
        p,
        beta,
    )


def _evaluate(lat, reads, n, z, rr, f, bg, bg_read, idle, nodes, out):
    """Fill ``out`` (delay, rate, demand, fresh, capacity, supply, slope) and return Ψ."""
    delay, rate, demand, fresh, capacity, supply, slope = out
    (media, penalty, read_link, write_link, count, mixes, a, p, beta) = nodes[0:9]
    (write_idle, rise_ns, rise_gbps) = nodes[9:12]
    n_streams, n_nodes = f.shape
    potential = 0.0
    for i in range(n_nodes):
        demand[i] = bg[i]
        fresh[i] = bg[i] * bg_read[i]
    for j in range(n_streams):
        d = z[j]
        for i in range(n_nodes):
            d += f[j, i] * lat[i]
        delay[j] = d
        rate[j] = n[j] / d
        potential -= LINE_BYTES * n[j] * math.log(d)
        for i in range(n_nodes):
            traffic = LINE_BYTES * rate[j] * f[j, i]
            demand[i] += traffic
            fresh[i] += traffic * rr[j]
    for i in range(n_nodes):
        fresh[i] = min(max(fresh[i] / demand[i], 0.0), 1.0) if demand[i] > 0 else 1.0
        capacity[i] = _capacity(i, reads[i], media, penalty, read_link, write_link)
        rho, s, integral = _node_load(
            i,
            lat[i] - idle[i],
            reads[i],
            capacity[i],
            count,
            mixes,
            a,
            p,
            beta,
            write_idle,
            rise_ns,
            rise_gbps,
        )
        supply[i] = rho * capacity[i]
        slope[i] = s * capacity[i]
        potential += capacity[i] * integral - bg[i] * lat[i]
    return potential


def _buffers(n_streams, n_nodes):
    """Scratch arrays for _evaluate: delay, rate (streams); demand .. slope (nodes)."""
    return (
        np.empty(n_streams),
        np.empty(n_streams),
        np.empty(n_nodes),
        np.empty(n_nodes),
        np.empty(n_nodes),
        np.empty(n_nodes),
        np.empty(n_nodes),
    )


# numba kernel (compiled below): one flat loop, as helper calls in the iteration cost speed
def _solve_one(n, z, rr, f, bg, bg_read, idle, lat, reads, nodes, tolerance, max_iterations):  # noqa: C901
    """Iterate one problem in place (lat, reads); returns (iterations, converged).

    ``reads`` is overwritten first: the mixes start where the rates at ``lat`` put them.
    """
    n_streams, n_nodes = f.shape
    out = _buffers(n_streams, n_nodes)
    trial_out = _buffers(n_streams, n_nodes)
    delay, rate, demand, fresh, capacity, supply, slope = out
    # The fresh mixes do not depend on the pinned ones (any valid values do here).
    reads[:] = 1.0
    _evaluate(lat, reads, n, z, rr, f, bg, bg_read, idle, nodes, out)
    reads[:] = fresh
    potential = _evaluate(lat, reads, n, z, rr, f, bg, bg_read, idle, nodes, out)
    gradient = np.empty(n_nodes)
    gap = np.empty(n_nodes)
    last_gap = np.zeros(n_nodes)
    expand = np.ones(n_nodes)
    low = np.full(n_nodes, np.nan)
    gap_low = np.full(n_nodes, np.nan)
    high = np.full(n_nodes, np.nan)
    gap_high = np.full(n_nodes, np.nan)
    side = np.zeros(n_nodes, dtype=np.int64)
    relax = 1.0
    target = np.empty(n_nodes)
    trial = np.empty(n_nodes)
    hessian = np.empty((n_nodes, n_nodes))
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - returned after the loop
        solved, near, any_gap, settled = True, True, False, True
        for i in range(n_nodes):
            gradient[i] = supply[i] - demand[i]
            projected = 0.0 if (lat[i] <= idle[i] and gradient[i] > 0) else gradient[i]
            if abs(projected) > tolerance * capacity[i]:
                solved = False
            if abs(projected) > REMIX_TOLERANCE * capacity[i]:
                near = False
            gap[i] = fresh[i] - reads[i]
            width = high[i] - low[i]
            if abs(gap[i]) > MIX_TOLERANCE:
                any_gap = True
                if not (width == width and width <= MIX_TOLERANCE**2):
                    settled = False
        if solved and settled:
            converged = True
            break
        if near and any_gap:
            flipped = False
            for i in range(n_nodes):
                if gap[i] * last_gap[i] < 0:
                    flipped = True
            relax = max(relax * 0.5, MIN_MIX_RELAXATION) if flipped else min(relax * 1.5, 1.0)
            for i in range(n_nodes):
                ratio = gap[i] / last_gap[i] if last_gap[i] != 0 else 0.0
                creeping = 0.2 < ratio < 0.999
                boost = min(1.0 / (1.0 - (ratio if creeping else 0.0)), MAX_MIX_EXTRAPOLATION)
                expand[i] = min(expand[i] * 2.0, 1e6) if ratio >= 0.999 else 1.0
                boost = max(boost, expand[i])
                last_gap[i] = gap[i]
                damped = min(max(reads[i] + relax * boost * gap[i], 0.0), 1.0)
                # Brackets with regula falsi (Illinois), as _MixBrackets.propose.
                up, down = gap[i] > 0, gap[i] < 0
                if up and reads[i] >= high[i]:
                    high[i] = np.nan
                if down and reads[i] <= low[i]:
                    low[i] = np.nan
                if up and side[i] == 1:
                    gap_high[i] *= 0.5
                if down and side[i] == -1:
                    gap_low[i] *= 0.5
                if up:
                    low[i], gap_low[i], side[i] = reads[i], gap[i], 1
                if down:
                    high[i], gap_high[i], side[i] = reads[i], gap[i], -1
                proposal = damped
                if low[i] == low[i] and high[i] == high[i]:
                    secant = low[i] + gap_low[i] * (high[i] - low[i]) / (gap_low[i] - gap_high[i])
                    if math.isfinite(secant):
                        proposal = min(max(secant, 0.0), 1.0)
                reads[i] = proposal
            potential = _evaluate(lat, reads, n, z, rr, f, bg, bg_read, idle, nodes, out)
            for i in range(n_nodes):
                gradient[i] = supply[i] - demand[i]
        if solved:
            continue
        for i in range(n_nodes):
            for m in range(n_nodes):
                hessian[i, m] = 1e-12 if i == m else 0.0
            hessian[i, i] += slope[i]
        for j in range(n_streams):
            weight = LINE_BYTES * n[j] / (delay[j] * delay[j])
            for i in range(n_nodes):
                for m in range(n_nodes):
                    hessian[i, m] += weight * f[j, i] * f[j, m]
        step = -np.linalg.solve(hessian, gradient)
        descent = 0.0
        for i in range(n_nodes):
            ceiling = idle[i] * 2 + MAX_EXCESS_GROWTH * (lat[i] - idle[i])
            target[i] = max(lat[i] + min(step[i], ceiling - lat[i]), idle[i])
            descent += gradient[i] * (target[i] - lat[i])
        if descent >= 0:
            for i in range(n_nodes):
                ceiling = idle[i] * 2 + MAX_EXCESS_GROWTH * (lat[i] - idle[i])
                gentle = max(lat[i] - gradient[i] / hessian[i, i], idle[i])
                target[i] = min(gentle, ceiling)
        scale = 1.0
        for _ in range(MAX_HALVINGS):
            decrease = 0.0
            for i in range(n_nodes):
                trial[i] = lat[i] + scale * (target[i] - lat[i])
                decrease += gradient[i] * (trial[i] - lat[i])
            trial_potential = _evaluate(
                trial, reads, n, z, rr, f, bg, bg_read, idle, nodes, trial_out
            )
            negligible = abs(decrease) <= 1e-13 * (abs(potential) + 1.0)
            if trial_potential <= potential + ARMIJO * decrease or negligible:
                lat[:] = trial
                potential = trial_potential
                delay[:] = trial_out[0]
                rate[:] = trial_out[1]
                demand[:] = trial_out[2]
                fresh[:] = trial_out[3]
                capacity[:] = trial_out[4]
                supply[:] = trial_out[5]
                slope[:] = trial_out[6]
                break
            scale *= 0.5
    return iterations, converged


def _solve_batch(n, z, rr, f, bg, bg_read, idle, lat, nodes, tolerance, max_iterations):
    """Solve every problem; ``lat`` (warm start) is solved in place.

    Returns (iterations, converged, throughput, stream latency, node bandwidth, node mixes,
    node capacity), the quantities ``solver.solve`` reports, evaluated as the reference does.
    """
    k, n_streams, n_nodes = f.shape
    converged = np.zeros(k, dtype=np.bool_)
    throughput = np.empty((k, n_streams))
    stream_latency = np.empty((k, n_streams))
    node_bw = np.empty((k, n_nodes))
    reads = np.empty((k, n_nodes))
    capacity = np.empty((k, n_nodes))
    out = _buffers(n_streams, n_nodes)
    delay, rate, demand, _, cap, _, _ = out
    most = 0
    for b in range(k):
        iterations, ok = _solve_one(
            n[b],
            z[b],
            rr[b],
            f[b],
            bg[b],
            bg_read[b],
            idle,
            lat[b],
            reads[b],
            nodes,
            tolerance,
            max_iterations,
        )
        converged[b] = ok
        most = max(most, iterations)
        _evaluate(lat[b], reads[b], n[b], z[b], rr[b], f[b], bg[b], bg_read[b], idle, nodes, out)
        for j in range(n_streams):
            throughput[b, j] = LINE_BYTES * rate[j]
            stream_latency[b, j] = delay[j] - z[b, j]
        for i in range(n_nodes):
            node_bw[b, i] = min(demand[i], cap[i])
            capacity[b, i] = cap[i]
    return most, converged, throughput, stream_latency, node_bw, reads, capacity


def _all_within(values, low, high):
    """Whether low <= v <= high for every value (NaN is never within)."""
    for v in values:  # noqa: SIM110 - numba compiles this loop, not all() over a generator
        if not (low <= v <= high):
            return False
    return True


if AVAILABLE:
    _capacity = njit(cache=True)(_capacity)
    _power_integral = njit(cache=True)(_power_integral)
    _fitted_mix = njit(cache=True)(_fitted_mix)
    _memory_load = njit(cache=True)(_memory_load)
    _link_rise = njit(cache=True)(_link_rise)
    _through_link = njit(cache=True)(_through_link)
    _node_load = njit(cache=True)(_node_load)
    _evaluate = njit(cache=True)(_evaluate)
    _buffers = njit(cache=True)(_buffers)
    _solve_one = njit(cache=True)(_solve_one)
    _solve_batch = njit(cache=True)(_solve_batch)
    _all_within = njit(cache=True)(_all_within)


def solve(
    n: np.ndarray,
    z: np.ndarray,
    rr: np.ndarray,
    f: np.ndarray,
    background: np.ndarray,
    background_read: np.ndarray,
    idle: np.ndarray,
    latency: np.ndarray,
    fast_nodes,
    tolerance: float,
    max_iterations: int,
) -> tuple:
    """Solve a batch of problems (C-contiguous float arrays, batch axis first) compiled.

    ``latency`` is the warm start, solved in place. Returns (iterations, converged,
    throughput, stream latency, node bandwidth, node mixes, node capacity).
    """
    nodes = (
        fast_nodes.media,
        fast_nodes.penalty,
        fast_nodes.read_link,
        fast_nodes.write_link,
        fast_nodes.count,
        fast_nodes.mixes,
        fast_nodes.a,
        fast_nodes.exponent,
        fast_nodes.headroom,
        fast_nodes.write_idle,
        fast_nodes.rise_ns,
        fast_nodes.rise_gbps,
    )
    return _solve_batch(
        n,
        z,
        rr,
        f,
        background,
        background_read,
        idle,
        latency,
        nodes,
        float(tolerance),
        int(max_iterations),
    )


def all_within(values: np.ndarray, low: float, high: float) -> bool:
    """Whether every value (float array) lies in [low, high]; NaN never does.

    Compiled, because numpy's fixed cost per check dominates for the few numbers of a small
    problem.
    """
    if not AVAILABLE:
        return bool(np.all((values >= low) & (values <= high)))
    return bool(_all_within(values.ravel(), float(low), float(high)))
