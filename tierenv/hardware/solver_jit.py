"""Compiled (numba) version of the solver's iteration, for hosts of parametric nodes.

It runs the same algorithm as ``tierenv.hardware.solver.solve`` (the reference, which tests
compare it with) one problem at a time with scalar loops, where numpy's per-call overhead
dominates for problems of a few streams and nodes. The whole solve runs here: the starting
mixes, the iteration and the reported quantities at the solution, so that a small problem
(a simulated host's 2 nodes and a few streams, solved every control interval) costs one
compiled call rather than dozens of numpy calls.

Layout for speed (the floating-point operations and their order are those of the plain
loop this replaced, bit for bit): ``_solve_range`` solves a batch problem by problem,
copying each into one work array allocated per call (not per problem) beside a node table
built once per node set (``node_tables``: the fitted curves, their saturation points
``knee`` and integrals there, the quotients the curves take, the bandwidth limits); the
iteration then reads and writes those two arrays only, because in numba every array a
helper takes or a view made costs reference counting (atomic operations), which costs more
than a small problem's arithmetic. What depends on a node's mix only (its capacity, the two
measured mixes it lies between and its weight there) is computed when the mix moves, not at
every evaluation; the starting mixes take the streams' pass only; the state the iteration
ends on is the one reported (it is the last evaluation, at the final latencies and mixes).
Two nodes solve the Newton system in closed form with LAPACK's operations
(``_newton_step``). What is left is mostly the fitted curves' ``pow``, ``log1p`` and
``expm1`` (two measured mixes per node, about seven evaluations per problem).

Threads: ``solve(..., threads=1)`` (default) runs everything in the calling thread.
``threads > 1`` splits the batch into that many contiguous parts solved in parallel by
``_solve_batch_parallel``, a separate kernel compiled with ``parallel=True`` (numba's
``prange``); each problem is the same compiled ``_solve_range`` code on the same inputs, so
the results are those of the serial path, bit for bit. Parallel is opt-in only because numba's
thread pool does not survive ``fork``: a process that has run a parallel kernel and then
forks (multiprocessing's default start method on Linux, SB3's ``SubprocVecEnv``) can hang or
crash in the child with the ``workqueue`` or GNU OpenMP layers, and worker processes of
such a pool should stay serial. Nothing here changes numba's configuration (threading layer,
thread count): the parallel kernel uses numba's pool as configured by the caller's
environment (``NUMBA_NUM_THREADS``, ``NUMBA_THREADING_LAYER``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

try:
    from numba import njit, prange, types
    from numba.core import config as numba_config
    from numba.extending import intrinsic
except ImportError:  # numba is optional: without it the numpy reference runs
    AVAILABLE = False
    prange = range  # type: ignore[misc]
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

# Planes of a node set's table (``node_tables``: (planes, N nodes, C measured mixes, padded)).
# Per node and mix: the measured mixes, the fitted curves' a (ns), exponent p and headroom
# beta, the scaled excess where each saturates (``_knee``, inf: never), ``_power_integral``
# there (0 where it never saturates), and the quotients ``_fitted_mix`` takes: 1 / p,
# beta / (a p) and 1 - 1 / p (the same numbers it computed at every call).
_MIXES, _A, _P, _BETA, _KNEE, _KNEE_INTEGRAL, _INV_P, _SLOPE_SCALE, _ONE_MINUS_Q = range(9)
# Per node (in column 0): bandwidth limits, remote-view link terms, number of measured mixes.
_MEDIA, _PENALTY, _READ_LINK, _WRITE_LINK, _WRITE_IDLE, _RISE_NS, _RISE_GBPS, _COUNT = range(9, 17)
_PLANES = 17


class Problems(NamedTuple):
    """A batch of K problems of J streams on N nodes (C-contiguous, batch axis first)."""

    n: np.ndarray  # (K, J) misses in flight
    z: np.ndarray  # (K, J) think time, ns
    rr: np.ndarray  # (K, J) read fraction
    f: np.ndarray  # (K, J, N) split, rows summing to 1
    bg: np.ndarray  # (K, N) background GB/s
    bg_read: np.ndarray  # (K, N) its read fraction
    idle: np.ndarray  # (N,) idle latency, ns


# Rows of the work array (one per ``_solve_range`` call, reused problem by problem), which
# holds the problem being solved too: the iteration reads and writes two arrays only, this
# and the node table (in numba every array a helper takes costs reference counting).
# An evaluation fills one of two sets of rows (current and line-search trial).
_DELAY, _RATE, _DEMAND, _FRESH, _SUPPLY, _SLOPE = range(6)
_SET = 6  # rows per set: set s starts at row s * _SET
_CAPACITY = 2 * _SET  # the nodes' capacity at their mixes (fixed between mix moves)
_WEIGHT = _CAPACITY + 1  # each node's weight on its upper measured mix
_LOWER = _WEIGHT + 1  # its lower measured mix (an index)
_UPPER = _LOWER + 1  # its upper measured mix
_GRADIENT = _UPPER + 1
_GAP = _GRADIENT + 1
_LAST_GAP = _GAP + 1
_EXPAND = _LAST_GAP + 1
_LOW = _EXPAND + 1
_GAP_LOW = _LOW + 1
_HIGH = _GAP_LOW + 1
_GAP_HIGH = _HIGH + 1
_SIDE = _GAP_HIGH + 1  # the side of the last bracket move: 1, -1 or 0
_TARGET = _SIDE + 1
_TRIAL = _TARGET + 1
_STEP = _TRIAL + 1
# the problem: per stream
_N = _STEP + 1
_Z = _N + 1
_RR = _Z + 1
# per node
_BG = _RR + 1
_BG_READ = _BG + 1
_IDLE = _BG_READ + 1
_LAT = _IDLE + 1  # the latencies being solved
_READS = _LAT + 1  # the node mixes
_PIVOT = _READS + 1  # the Newton system's row swaps
_SPLIT = _PIVOT + 1  # then one row per stream (its split), then the Hessian's, its factors'
_LU_NODES = 4  # systems up to this size are solved as LAPACK does (``_newton_step``)


def _capacity(i, r, t):
    r = min(max(r, 0.0), 1.0)
    peak = t[_MEDIA, i, 0] * (1.0 - t[_PENALTY, i, 0] * min(1.0 - r, WRITE_SHARE_CAP))
    if r > 0.0:
        peak = min(peak, t[_READ_LINK, i, 0] / r)
    if r < 1.0:
        peak = min(peak, t[_WRITE_LINK, i, 0] / (1.0 - r))
    return peak


def _power_integral(x, q):
    return _power_integral_from(x, 1.0 - q)


def _power_integral_from(x, one_minus_q):
    """``_power_integral(x, q)`` given 1 - q."""
    log_term = math.log1p(x)
    if abs(one_minus_q) < 1e-8:
        return log_term
    return math.expm1(one_minus_q * log_term) / one_minus_q


def _knee(p, beta):
    """Scaled excess x where a fitted mix saturates (rho reaches 1), inf where it never does."""
    return (1.0 - 1.0 / beta) ** (-p) - 1.0 if beta > 1.0 else math.inf


def _fitted_mix(excess, t, i, c):
    """Mix c of node i's fitted curve (node table ``t``): (rho, d rho / d excess, integral
    of rho)."""
    # (-1.0 / p is -(1.0 / p) exactly: IEEE division is symmetric in sign)
    a, beta, knee = t[_A, i, c], t[_BETA, i, c], t[_KNEE, i, c]
    x = min(excess / a, 1e200)
    if x >= knee:  # saturated: only the integral is needed, and below = min(x, knee) = knee
        integral = a * (beta * (knee - t[_KNEE_INTEGRAL, i, c]) + max(x - knee, 0.0))
        return 1.0, 0.0, integral
    decay = (1.0 + x) ** (-t[_INV_P, i, c])
    rho = beta * (1.0 - decay)
    slope = t[_SLOPE_SCALE, i, c] * decay / (1.0 + x)
    below = min(x, knee)
    part = below - _power_integral_from(below, t[_ONE_MINUS_Q, i, c])
    integral = a * (beta * part + max(x - knee, 0.0))
    return rho, slope, integral


def _memory_load(ex, i, lower, upper, weight, t):
    """The node's memory curve at excess ``ex`` >= 0: the two neighbouring mixes blended."""
    rho_l, slope_l, int_l = _fitted_mix(ex, t, i, lower)
    rho_h, slope_h, int_h = _fitted_mix(ex, t, i, upper)
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


def _through_link(excess, r, capacity, i, lower, upper, weight, t):
    """A remote view's (ρ, dρ/dE, ∫ρ): curves.load_through_link for one node, compiled."""
    w, c, b = t[_WRITE_IDLE, i, 0], t[_RISE_NS, i, 0], t[_RISE_GBPS, i, 0]
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
            rho, slope, _ = _memory_load(memory, i, lower, upper, weight, t)
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
    rho, slope, integral = _memory_load(memory, i, lower, upper, weight, t)
    traffic = per_load * rho
    rise, rise_slope = _link_rise(traffic, c, b)
    rho_slope = slope / (1.0 + slope * rise_slope * per_load)
    if not per_load > 0:
        per_load = 1.0
    b2 = b * b
    complement = c * (b / per_load * math.atan(traffic / b) - rho * b2 / (traffic * traffic + b2))
    return rho, rho_slope, integral + complement


def _node_table(mixes, a, p, beta, count, per_node):
    """The node table for measured mixes and fitted curves (a, p, beta) ((N, C) each),
    ``count`` (N,) mixes per node and ``per_node`` ((7, N): _MEDIA .. _RISE_GBPS); the
    derived planes computed compiled, as ``_fitted_mix`` computed them."""
    n_nodes, width = p.shape
    t = np.zeros((_PLANES, n_nodes, width))
    for i in range(n_nodes):
        for c in range(width):
            t[_MIXES, i, c] = mixes[i, c]
            t[_A, i, c] = a[i, c]
            t[_P, i, c] = p[i, c]
            t[_BETA, i, c] = beta[i, c]
            knee = _knee(p[i, c], beta[i, c])
            t[_KNEE, i, c] = knee
            if knee < math.inf:
                t[_KNEE_INTEGRAL, i, c] = _power_integral(knee, 1.0 / p[i, c])
            t[_INV_P, i, c] = 1.0 / p[i, c]
            t[_SLOPE_SCALE, i, c] = beta[i, c] / (a[i, c] * p[i, c])
            t[_ONE_MINUS_Q, i, c] = 1.0 - 1.0 / p[i, c]
        for k in range(per_node.shape[0]):
            t[_MEDIA + k, i, 0] = per_node[k, i]
        t[_COUNT, i, 0] = count[i]
    return t


def _set_mixes(w, t, n_nodes):
    """The nodes at mixes ``w[_READS]``: capacity, neighbouring measured mixes and the
    weight between them (what ``_nodes_pass`` reads until the mixes move again)."""
    for i in range(n_nodes):
        r = w[_READS, i]
        w[_CAPACITY, i] = _capacity(i, r, t)
        n = int(t[_COUNT, i, 0])
        rm = min(max(r, t[_MIXES, i, 0]), t[_MIXES, i, n - 1])
        below = -1
        for c in range(n):
            if t[_MIXES, i, c] <= rm:
                below += 1
        lower = min(max(below, 0), max(n - 2, 0))
        upper = min(lower + 1, n - 1)
        w[_LOWER, i] = lower
        w[_UPPER, i] = upper
        mix_low, mix_high = t[_MIXES, i, lower], t[_MIXES, i, upper]
        w[_WEIGHT, i] = (rm - mix_low) / (mix_high - mix_low) if upper > lower else 0.0


def _streams_pass(w, row, s, n_streams, n_nodes):
    """The streams at node latencies ``w[row]``: fill set ``s``'s delay, rate, demand and
    fresh mixes; return the streams' part of Ψ."""
    base = s * _SET
    potential = 0.0
    for i in range(n_nodes):
        w[base + _DEMAND, i] = w[_BG, i]
        w[base + _FRESH, i] = w[_BG, i] * w[_BG_READ, i]
    for j in range(n_streams):
        d = w[_Z, j]
        for i in range(n_nodes):
            d += w[_SPLIT + j, i] * w[row, i]
        w[base + _DELAY, j] = d
        rate = w[_N, j] / d
        w[base + _RATE, j] = rate
        potential -= LINE_BYTES * w[_N, j] * math.log(d)
        for i in range(n_nodes):
            traffic = LINE_BYTES * rate * w[_SPLIT + j, i]
            w[base + _DEMAND, i] += traffic
            w[base + _FRESH, i] += traffic * w[_RR, j]
    for i in range(n_nodes):
        demand = w[base + _DEMAND, i]
        fresh = w[base + _FRESH, i]
        w[base + _FRESH, i] = min(max(fresh / demand, 0.0), 1.0) if demand > 0 else 1.0
    return potential


def _nodes_pass(w, row, s, t, n_nodes, potential):
    """The nodes at latencies ``w[row]`` and mixes ``w[_READS]`` (``_set_mixes``): fill set
    ``s``'s supply and slope; return Ψ, ``potential`` being the streams' part."""
    base = s * _SET
    for i in range(n_nodes):
        capacity = w[_CAPACITY, i]
        excess = w[row, i] - w[_IDLE, i]
        lower, upper, weight = int(w[_LOWER, i]), int(w[_UPPER, i]), w[_WEIGHT, i]
        if t[_WRITE_IDLE, i, 0] == 0.0 and t[_RISE_NS, i, 0] == 0.0:  # local node
            rho, slope, integral = _memory_load(max(excess, 0.0), i, lower, upper, weight, t)
        else:
            rho, slope, integral = _through_link(
                excess, w[_READS, i], capacity, i, lower, upper, weight, t
            )
        w[base + _SUPPLY, i] = rho * capacity
        w[base + _SLOPE, i] = slope * capacity
        potential += capacity * integral - w[_BG, i] * w[row, i]
    return potential


def _evaluate(w, row, s, t, n_streams, n_nodes):
    """Fill set ``s`` at latencies ``w[row]`` and mixes ``w[_READS]``; return Ψ (a call of
    its own: inlined at every site, its arrays' reference counting costs more)."""
    potential = _streams_pass(w, row, s, n_streams, n_nodes)
    return _nodes_pass(w, row, s, t, n_nodes, potential)


def _fma(a, b, c):
    """a * b + c rounded once (compiled: llvm.fma; plain Python, as with NUMBA_DISABLE_JIT:
    exactly, through fractions)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _newton_step(w, h, n_nodes):
    """Row ``_STEP`` of ``w``: the Newton step -H^-1 g for g the ``_GRADIENT`` row and H the
    ``n_nodes`` rows from row ``h`` (left as they are; the factors go to the next rows).

    Up to ``_LU_NODES`` nodes this is LAPACK's dgesv as numba's ``np.linalg.solve`` runs it
    here (OpenBLAS: getf2's left-looking LU with partial pivoting, its dot and gemv sums as
    fused multiply-add chains, the pivot's reciprocal scaling the multipliers, then
    triangular solves by fused axpy), the same operations in the same order, so the same
    results bit for bit, without its copies and call. A zero pivot (never with the Hessian's
    regularisation) and larger systems go to ``np.linalg.solve``.
    """
    if n_nodes == 2:  # the same operations written out (a quarter of the solve's time)
        a00, a01, a10, a11 = w[h, 0], w[h, 1], w[h + 1, 0], w[h + 1, 1]
        b0, b1 = w[_GRADIENT, 0], w[_GRADIENT, 1]
        if abs(a10) > abs(a00):
            a00, a01, a10, a11 = a10, a11, a00, a01
            b0, b1 = b1, b0
        if a00 != 0.0:
            multiplier = a10 * (1.0 / a00)
            u11 = a11 - _fma(multiplier, a01, 0.0)
            if u11 != 0.0:
                x1 = _fma(-b0, multiplier, b1) / u11
                x0 = _fma(-x1, a01, b0) / a00
                w[_STEP, 0] = -x0
                w[_STEP, 1] = -x1
                return
    if n_nodes > _LU_NODES or not _lu_factor(w, h, n_nodes):
        _lapack_step(w, h, n_nodes)  # (a singular system: LAPACK's own error)
        return
    _lu_solve(w, h + n_nodes, n_nodes)


def _lu_factor(w, h, n_nodes):
    """OpenBLAS's getf2 on the ``n_nodes`` rows of ``w`` from row ``h``, into the next
    ``n_nodes`` rows (row swaps in ``_PIVOT``); False at a zero pivot."""
    lu = h + n_nodes
    for i in range(n_nodes):
        for m in range(n_nodes):
            w[lu + i, m] = w[h + i, m]
    for j in range(n_nodes):
        for i in range(j):  # earlier row swaps, on this column
            ip = int(w[_PIVOT, i])
            w[lu + i, j], w[lu + ip, j] = w[lu + ip, j], w[lu + i, j]
        for i in range(1, j):  # U's column: dot products
            dot = 0.0
            for k in range(i):
                dot = _fma(w[lu + i, k], w[lu + k, j], dot)
            w[lu + i, j] -= dot
        for r in range(j, n_nodes):  # the rest of the column: gemv
            total = 0.0
            for k in range(j):
                total = _fma(w[lu + r, k], w[lu + k, j], total)
            w[lu + r, j] -= total
        pivot = j
        for r in range(j + 1, n_nodes):
            if abs(w[lu + r, j]) > abs(w[lu + pivot, j]):
                pivot = r
        w[_PIVOT, j] = pivot
        if w[lu + pivot, j] == 0.0:
            return False
        for c in range(j + 1):
            w[lu + j, c], w[lu + pivot, c] = w[lu + pivot, c], w[lu + j, c]
        scale = 1.0 / w[lu + j, j]
        for r in range(j + 1, n_nodes):
            w[lu + r, j] *= scale
    return True


def _lu_solve(w, lu, n_nodes):
    """Row ``_STEP``: -x for x solving the factored system (rows from ``lu``) with right-hand
    side the ``_GRADIENT`` row, as OpenBLAS's getrs (row swaps, then fused-axpy triangular
    solves)."""
    for i in range(n_nodes):
        w[_STEP, i] = w[_GRADIENT, i]
    for i in range(n_nodes):
        ip = int(w[_PIVOT, i])
        w[_STEP, i], w[_STEP, ip] = w[_STEP, ip], w[_STEP, i]
    for i in range(n_nodes):  # L y = P g (unit diagonal), column by column
        for k in range(i + 1, n_nodes):
            w[_STEP, k] = _fma(-w[_STEP, i], w[lu + k, i], w[_STEP, k])
    for i in range(n_nodes - 1, -1, -1):  # U x = y
        w[_STEP, i] /= w[lu + i, i]
        for k in range(i):
            w[_STEP, k] = _fma(-w[_STEP, i], w[lu + k, i], w[_STEP, k])
    for i in range(n_nodes):
        w[_STEP, i] = -w[_STEP, i]


def _lapack_step(w, h, n_nodes):
    """``_newton_step`` through ``np.linalg.solve`` (a call of its own: its arrays stay out
    of the iteration)."""
    step = -np.linalg.solve(w[h : h + n_nodes, :n_nodes], w[_GRADIENT, :n_nodes])
    for i in range(n_nodes):
        w[_STEP, i] = step[i]


# numba kernel (compiled below): one flat loop over one work array, evaluations inlined
def _solve_one(w, t, n_streams, n_nodes, tolerance, max_iterations):  # noqa: C901
    """Iterate the problem in ``w`` (its latencies ``w[_LAT]`` solved in place, its mixes
    ``w[_READS]``); returns (iterations, converged, current set): the set of ``w`` that
    holds the evaluation at the result.

    The mixes start where the rates at the starting latencies put them.
    """
    h = _SPLIT + n_streams  # the Hessian's first row
    # The fresh mixes do not depend on the node mixes: the streams' pass gives them.
    cur = 0
    _streams_pass(w, _LAT, cur, n_streams, n_nodes)
    for i in range(n_nodes):
        w[_READS, i] = w[cur * _SET + _FRESH, i]
    _set_mixes(w, t, n_nodes)
    potential = _evaluate(w, _LAT, cur, t, n_streams, n_nodes)
    for i in range(n_nodes):
        w[_LAST_GAP, i] = 0.0
        w[_EXPAND, i] = 1.0
        w[_LOW, i] = np.nan
        w[_GAP_LOW, i] = np.nan
        w[_HIGH, i] = np.nan
        w[_GAP_HIGH, i] = np.nan
        w[_SIDE, i] = 0.0
    relax = 1.0
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - returned after the loop
        base = cur * _SET
        solved, near, any_gap, settled = True, True, False, True
        for i in range(n_nodes):
            gradient = w[base + _SUPPLY, i] - w[base + _DEMAND, i]
            w[_GRADIENT, i] = gradient
            projected = 0.0 if (w[_LAT, i] <= w[_IDLE, i] and gradient > 0) else gradient
            capacity = w[_CAPACITY, i]
            if abs(projected) > tolerance * capacity:
                solved = False
            if abs(projected) > REMIX_TOLERANCE * capacity:
                near = False
            gap = w[base + _FRESH, i] - w[_READS, i]
            w[_GAP, i] = gap
            width = w[_HIGH, i] - w[_LOW, i]
            if abs(gap) > MIX_TOLERANCE:
                any_gap = True
                if not (width == width and width <= MIX_TOLERANCE**2):
                    settled = False
        if solved and settled:
            converged = True
            break
        if near and any_gap:
            flipped = False
            for i in range(n_nodes):
                if w[_GAP, i] * w[_LAST_GAP, i] < 0:
                    flipped = True
            relax = max(relax * 0.5, MIN_MIX_RELAXATION) if flipped else min(relax * 1.5, 1.0)
            for i in range(n_nodes):
                gap, last_gap, r = w[_GAP, i], w[_LAST_GAP, i], w[_READS, i]
                ratio = gap / last_gap if last_gap != 0 else 0.0
                creeping = 0.2 < ratio < 0.999
                boost = min(1.0 / (1.0 - (ratio if creeping else 0.0)), MAX_MIX_EXTRAPOLATION)
                w[_EXPAND, i] = min(w[_EXPAND, i] * 2.0, 1e6) if ratio >= 0.999 else 1.0
                boost = max(boost, w[_EXPAND, i])
                w[_LAST_GAP, i] = gap
                damped = min(max(r + relax * boost * gap, 0.0), 1.0)
                # Brackets with regula falsi (Illinois), as _MixBrackets.propose.
                up, down = gap > 0, gap < 0
                if up and r >= w[_HIGH, i]:
                    w[_HIGH, i] = np.nan
                if down and r <= w[_LOW, i]:
                    w[_LOW, i] = np.nan
                if up and w[_SIDE, i] == 1.0:
                    w[_GAP_HIGH, i] *= 0.5
                if down and w[_SIDE, i] == -1.0:
                    w[_GAP_LOW, i] *= 0.5
                if up:
                    w[_LOW, i], w[_GAP_LOW, i], w[_SIDE, i] = r, gap, 1.0
                if down:
                    w[_HIGH, i], w[_GAP_HIGH, i], w[_SIDE, i] = r, gap, -1.0
                proposal = damped
                low, high = w[_LOW, i], w[_HIGH, i]
                if low == low and high == high:
                    gap_low, gap_high = w[_GAP_LOW, i], w[_GAP_HIGH, i]
                    secant = low + gap_low * (high - low) / (gap_low - gap_high)
                    if math.isfinite(secant):
                        proposal = min(max(secant, 0.0), 1.0)
                w[_READS, i] = proposal
            _set_mixes(w, t, n_nodes)
            potential = _evaluate(w, _LAT, cur, t, n_streams, n_nodes)
            for i in range(n_nodes):
                w[_GRADIENT, i] = w[base + _SUPPLY, i] - w[base + _DEMAND, i]
        if solved:
            continue
        for i in range(n_nodes):
            for m in range(n_nodes):
                w[h + i, m] = 1e-12 if i == m else 0.0
            w[h + i, i] += w[base + _SLOPE, i]
        for j in range(n_streams):
            delay = w[base + _DELAY, j]
            weight = LINE_BYTES * w[_N, j] / (delay * delay)
            for i in range(n_nodes):
                for m in range(n_nodes):
                    w[h + i, m] += weight * w[_SPLIT + j, i] * w[_SPLIT + j, m]
        _newton_step(w, h, n_nodes)
        descent = 0.0
        for i in range(n_nodes):
            lat, idle = w[_LAT, i], w[_IDLE, i]
            ceiling = idle * 2 + MAX_EXCESS_GROWTH * (lat - idle)
            target = max(lat + min(w[_STEP, i], ceiling - lat), idle)
            w[_TARGET, i] = target
            descent += w[_GRADIENT, i] * (target - lat)
        if descent >= 0:
            for i in range(n_nodes):
                lat, idle = w[_LAT, i], w[_IDLE, i]
                ceiling = idle * 2 + MAX_EXCESS_GROWTH * (lat - idle)
                gentle = max(lat - w[_GRADIENT, i] / w[h + i, i], idle)
                w[_TARGET, i] = min(gentle, ceiling)
        scale = 1.0
        trial_set = 1 - cur
        for _ in range(MAX_HALVINGS):
            decrease = 0.0
            for i in range(n_nodes):
                lat = w[_LAT, i]
                trial = lat + scale * (w[_TARGET, i] - lat)
                w[_TRIAL, i] = trial
                decrease += w[_GRADIENT, i] * (trial - lat)
            trial_potential = _evaluate(w, _TRIAL, trial_set, t, n_streams, n_nodes)
            negligible = abs(decrease) <= 1e-13 * (abs(potential) + 1.0)
            if trial_potential <= potential + ARMIJO * decrease or negligible:
                for i in range(n_nodes):
                    w[_LAT, i] = w[_TRIAL, i]
                potential = trial_potential
                cur = trial_set
                break
            scale *= 0.5
    return iterations, converged, cur


def _solve_range(pr, t, lat, tolerance, max_iterations, start, stop, out):
    """Solve problems ``start`` to ``stop`` - 1 into ``out`` (``_solve_batch``'s arrays after
    the iterations); returns the most iterations any took."""
    n, z, rr, f, bg, bg_read, idle = pr
    converged, throughput, stream_latency, node_bw, reads, capacity = out
    n_streams, n_nodes = f.shape[1], f.shape[2]
    w = np.zeros((_SPLIT + n_streams + 2 * n_nodes, max(n_streams, n_nodes)))
    most = 0
    for b in range(start, stop):
        for j in range(n_streams):
            w[_N, j], w[_Z, j], w[_RR, j] = n[b, j], z[b, j], rr[b, j]
            for i in range(n_nodes):
                w[_SPLIT + j, i] = f[b, j, i]
        for i in range(n_nodes):
            w[_BG, i], w[_BG_READ, i] = bg[b, i], bg_read[b, i]
            w[_IDLE, i], w[_LAT, i] = idle[i], lat[b, i]
        iterations, ok, cur = _solve_one(w, t, n_streams, n_nodes, tolerance, max_iterations)
        converged[b] = ok
        most = max(most, iterations)
        base = cur * _SET
        for j in range(n_streams):
            throughput[b, j] = LINE_BYTES * w[base + _RATE, j]
            stream_latency[b, j] = w[base + _DELAY, j] - z[b, j]
        for i in range(n_nodes):
            lat[b, i] = w[_LAT, i]
            reads[b, i] = w[_READS, i]
            node_bw[b, i] = min(w[base + _DEMAND, i], w[_CAPACITY, i])
            capacity[b, i] = w[_CAPACITY, i]
    return most


def _outputs(k, n_streams, n_nodes):
    return (
        np.zeros(k, dtype=np.bool_),
        np.empty((k, n_streams)),
        np.empty((k, n_streams)),
        np.empty((k, n_nodes)),
        np.empty((k, n_nodes)),
        np.empty((k, n_nodes)),
    )


def _solve_batch(pr, t, lat, tolerance, max_iterations):
    """Solve every problem (node table ``t``); ``lat`` (warm start) is solved in place.

    Returns (iterations, converged, throughput, stream latency, node bandwidth, node mixes,
    node capacity), the quantities ``solver.solve`` reports, evaluated as the reference does.
    """
    k, n_streams, n_nodes = pr.f.shape
    out = _outputs(k, n_streams, n_nodes)
    most = _solve_range(pr, t, lat, tolerance, max_iterations, 0, k, out)
    return most, out[0], out[1], out[2], out[3], out[4], out[5]


def _solve_batch_parallel(pr, t, lat, tolerance, max_iterations, parts):
    """``_solve_batch`` with the batch cut into ``parts`` contiguous ranges solved in
    parallel (compiled with ``parallel=True``); the same results, bit for bit."""
    k, n_streams, n_nodes = pr.f.shape
    out = _outputs(k, n_streams, n_nodes)
    most = np.zeros(parts, dtype=np.int64)
    for part in prange(parts):
        start = part * k // parts
        stop = (part + 1) * k // parts
        most[part] = _solve_range(pr, t, lat, tolerance, max_iterations, start, stop, out)
    return most.max(), out[0], out[1], out[2], out[3], out[4], out[5]


def _all_within(values, low, high):
    """Whether low <= v <= high for every value (NaN is never within)."""
    for v in values:  # noqa: SIM110 - numba compiles this loop, not all() over a generator
        if not (low <= v <= high):
            return False
    return True


if AVAILABLE and not getattr(numba_config, "DISABLE_JIT", False):

    @intrinsic
    def _llvm_fma(typingctx, a, b, c):
        """llvm.fma.f64: a * b + c with one rounding."""
        signature = types.float64(types.float64, types.float64, types.float64)

        def codegen(context, builder, sig, args):
            return builder.fma(*args)

        return signature, codegen

    def _fma(a, b, c):  # the compiled version of the plain one above
        return _llvm_fma(a, b, c)  # type: ignore[call-arg] # (typed by numba)

    _fma = njit(cache=True, inline="always")(_fma)

if AVAILABLE:
    _capacity = njit(cache=True, inline="always")(_capacity)
    _power_integral = njit(cache=True, inline="always")(_power_integral)
    _power_integral_from = njit(cache=True, inline="always")(_power_integral_from)
    _knee = njit(cache=True)(_knee)
    _fitted_mix = njit(cache=True, inline="always")(_fitted_mix)
    _memory_load = njit(cache=True, inline="always")(_memory_load)
    _link_rise = njit(cache=True)(_link_rise)
    _through_link = njit(cache=True)(_through_link)
    _node_table = njit(cache=True)(_node_table)
    _set_mixes = njit(cache=True)(_set_mixes)
    _streams_pass = njit(cache=True, inline="always")(_streams_pass)
    _nodes_pass = njit(cache=True, inline="always")(_nodes_pass)
    _evaluate = njit(cache=True)(_evaluate)
    _newton_step = njit(cache=True, inline="always")(_newton_step)
    _lapack_step = njit(cache=True)(_lapack_step)
    _lu_factor = njit(cache=True)(_lu_factor)
    _lu_solve = njit(cache=True)(_lu_solve)
    _solve_one = njit(cache=True)(_solve_one)
    _solve_range = njit(cache=True)(_solve_range)
    _outputs = njit(cache=True)(_outputs)
    _solve_batch = njit(cache=True)(_solve_batch)
    _solve_batch_parallel = njit(cache=True, parallel=True)(_solve_batch_parallel)
    _all_within = njit(cache=True)(_all_within)


# Node tables per node set (its arrays do not change once built), so that a single small
# problem does not pay for the knees every solve.
_TABLES: weakref.WeakKeyDictionary[Any, np.ndarray] = weakref.WeakKeyDictionary()


def node_tables(fast_nodes: Any) -> np.ndarray:
    """The kernels' node table ((planes, N, C): ``_MIXES`` .. ``_COUNT``) for a
    ``NodeSet.vectorised``, built once per node set."""
    table = _TABLES.get(fast_nodes)
    if table is None:
        per_node = np.stack(
            [
                fast_nodes.media,
                fast_nodes.penalty,
                fast_nodes.read_link,
                fast_nodes.write_link,
                fast_nodes.write_idle,
                fast_nodes.rise_ns,
                fast_nodes.rise_gbps,
            ]
        ).astype(np.float64)
        table = _node_table(
            np.ascontiguousarray(fast_nodes.mixes, dtype=np.float64),
            np.ascontiguousarray(fast_nodes.a, dtype=np.float64),
            np.ascontiguousarray(fast_nodes.exponent, dtype=np.float64),
            np.ascontiguousarray(fast_nodes.headroom, dtype=np.float64),
            np.ascontiguousarray(fast_nodes.count, dtype=np.int64),
            per_node,
        )
        _TABLES[fast_nodes] = table
    return table


# Threads for this thread's solves where the caller gives none (``parallel``).
_LOCAL = threading.local()
#: A batch is cut into at most one part per this many problems (about 1 us each): smaller
#: parts cost more in waking and joining threads than they save, and the serial path gives
#: the same results.
MIN_PROBLEMS_PER_THREAD = 256


def check_threads(threads: object) -> int:
    """``threads`` as a positive int, else a ValueError naming it."""
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


@contextlib.contextmanager
def parallel(threads: int) -> Iterator[None]:
    """Within the block, batched ``solve`` calls made by this thread (also through
    ``tierenv.hardware.solver.solve``) use ``threads`` threads; 1 is the serial path. Scoped
    to the calling thread and the block: numba's configuration is not touched."""
    threads = check_threads(threads)
    before = getattr(_LOCAL, "threads", 1)
    _LOCAL.threads = threads
    try:
        yield
    finally:
        _LOCAL.threads = before


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
    threads: int | None = None,
) -> tuple:
    """Solve a batch of problems (C-contiguous float arrays, batch axis first) compiled.

    ``latency`` is the warm start, solved in place. Returns (iterations, converged,
    throughput, stream latency, node bandwidth, node mixes, node capacity). ``threads`` > 1
    solves parts of the batch in parallel (default: 1, or what an enclosing ``parallel``
    block sets; see the module docstring: opt-in, not for processes that fork afterwards),
    at least ``MIN_PROBLEMS_PER_THREAD`` problems a part; the results are the serial ones,
    bit for bit.
    """
    problems = Problems(n, z, rr, f, background, background_read, idle)
    nodes = node_tables(fast_nodes)
    threads = getattr(_LOCAL, "threads", 1) if threads is None else check_threads(threads)
    parts = min(threads, f.shape[0] // MIN_PROBLEMS_PER_THREAD)
    if parts > 1:
        return _solve_batch_parallel(
            problems, nodes, latency, float(tolerance), int(max_iterations), parts
        )
    return _solve_batch(problems, nodes, latency, float(tolerance), int(max_iterations))


def all_within(values: np.ndarray, low: float, high: float) -> bool:
    """Whether every value (float array) lies in [low, high]; NaN never does.

    Compiled, because numpy's fixed cost per check dominates for the few numbers of a small
    problem.
    """
    if not AVAILABLE:
        return bool(np.all((values >= low) & (values <= high)))
    return bool(_all_within(values.ravel(), float(low), float(high)))
