"""The fluid model's compiled interval: what happens to a batch of envs before the solve.

``tierenv.sim.fluid`` holds the model (scenario replay, batched solve, outputs, features);
this module holds the part compiled with numba, in gymnax's shape: frozen parameters
(``KernelParams``), the state it updates in place (``KernelState``), what it reports
(``KernelOutputs``) and one step, ``advance(state, params, weights, active, out)``, made of
small named steps, each over the whole batch, in the host's order:

1. ``_change_weights``: new weights re-target resident pages (``pattern_transition``: the
   joint frequency of the old and new interleave patterns).
2. ``_scenario_changes``: stopped applications free their pages; started or stopped ones
   restart their DAMOS walk; a started one gets its reference throughput as DAMON's rate.
3. ``_first_touches``: growth places new pages under the weights (``_allocate``: the kernel's
   fallback to the next node with free frames) or on a bound application's node.
4. ``_damon_and_damos``: per monitored application, DAMON's view of its chunks
   (``_damon_access``), the quota-limited walk in address order (``_walk``: the quota
   accounting), the moves it asks for (``_walked_flows``), how many find free frames
   (``_admit``), the migrations (``_migrate``) and DAMON's hotness view (``_report_damon``).
5. ``_report``: each application's placement, access split and hot pages per node.
6. ``_commit_used``: the frames in use, from the free ones.

Envs share nothing, so running each step over the batch in turn is each env's interval in
the host's order, and so is running the steps over contiguous ranges of envs
(``_advance_range``): ``advance_parallel`` runs ranges in numba's thread pool (opt-in,
``FluidModel(threads=...)``) with the results of ``advance`` bit for bit. The
floating-point operations and their order are those of the single loop this replaced, bit
for bit (accumulations stay in the arrays they accumulate into).

Layout for speed: only ``advance`` and its steps see the structs; what runs per env,
application or chunk takes the batch arrays and indices (env, app, chunk), never a view. In
numba a struct of arrays passed, or a view made, inside a loop costs reference counting on
every iteration (a struct of 13 arrays: about 100 ns a call), while indexing arrays that
exist costs nothing. Steps and loop helpers are inlined (``inline="always"``); the larger
kernels called once per application or on rare paths (``_walk``, ``_allocate``,
``_retarget``, ``_retarget_chunks``, ``pattern_transition``, ``_hotness_bins``) stay
calls. Without numba (``tierenv.damon.jit``) the same functions run as plain Python: that
is the reference path.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tierenv.contracts.features import HOTNESS_BINS
from tierenv.damon.jit import njit

try:
    from numba import prange
except ImportError:  # pragma: no cover - without numba the kernels run as plain Python
    prange = range  # type: ignore[misc]

SCALE_ROUNDS = 4  # fixed-point rounds for migrations into nearly full nodes
ENV_BLOCK = 32  # envs taken through all of an interval's steps together (_advance_range)
QUOTA_EXACT = 1e-9  # pages: a DAMOS budget this close to 0 ran out exactly


# ----------------------------------------------------------------------------------- structs
class KernelParams(NamedTuple):
    """The static arrays and numbers ``advance`` reads (``FluidParams.kernel``; shapes: T
    intervals, A applications, K chunks, P phases, N nodes)."""

    running: np.ndarray  # (T, A) bool
    starting: np.ndarray  # (T, A) bool
    stopping: np.ndarray  # (T, A) bool
    phase: np.ndarray  # (T, A) int64
    new_pages: np.ndarray  # (T, A, K)
    touched_pages: np.ndarray  # (T, A, K)
    chunk_pages: np.ndarray  # (A, K)
    phase_share: np.ndarray  # (A, P, K)
    share_per_page: np.ndarray  # (A, P, K) phase_share / chunk_pages (0 on padding)
    touched_share: np.ndarray  # (T, A, K) touched_pages / chunk_pages (0 on padding)
    phase_hot: np.ndarray  # (A, P, K)
    phase_alone_gbps: np.ndarray  # (A, P)
    capacity_pages: np.ndarray  # (N,)
    bind_node: np.ndarray  # (A,) int64: the node a bound app's pages go to (-1: managed)
    hotness_thresholds: np.ndarray  # (bins - 1,) int64
    damos_enabled: bool
    misses_per_gbps_sample: float  # misses per sample interval per GB/s of throughput
    max_nr_accesses: int
    min_nr_accesses: int


class KernelState(NamedTuple):
    """The parts of ``FluidState`` that ``advance`` reads and updates in place (leading env
    axis B)."""

    step: np.ndarray  # (B,) int64
    weights: np.ndarray  # (B, N) int64 weights in force before the interval
    pages: np.ndarray  # (B, A, K, N, N)
    walked_pages: np.ndarray  # (B, A, N, N)
    used_pages: np.ndarray  # (B, N)
    throughput_gbps: np.ndarray  # (B, A)
    cursor: np.ndarray  # (B, A)
    quota_pages: np.ndarray  # (B,)


class KernelOutputs(NamedTuple):
    """What ``advance`` reports per env (all apps, bound ones included); zeroed on entry."""

    moved: np.ndarray  # (B, N, N) pages migrated from row to column node
    failed: np.ndarray  # (B,) migrations refused by a full node
    split: np.ndarray  # (B, A, N) access split
    resident: np.ndarray  # (B, A, N)
    hot_pages: np.ndarray  # (B, A, N)
    hotness: np.ndarray  # (B, N, bins) DAMON-monitored pages per hotness bin
    access: np.ndarray  # (B, N) DAMON's access-weighted pages
    free: np.ndarray  # (B, N) free pages after the interval

    @classmethod
    def zeros(cls, batch: int, n_apps: int, n_nodes: int) -> KernelOutputs:
        return cls(
            moved=np.zeros((batch, n_nodes, n_nodes)),
            failed=np.zeros(batch),
            split=np.zeros((batch, n_apps, n_nodes)),
            resident=np.zeros((batch, n_apps, n_nodes)),
            hot_pages=np.zeros((batch, n_apps, n_nodes)),
            hotness=np.zeros((batch, n_nodes, len(HOTNESS_BINS))),
            access=np.zeros((batch, n_nodes)),
            free=np.zeros((batch, n_nodes)),
        )


class Scratch(NamedTuple):
    """Work arrays of one ``advance`` call, allocated once and reused env by env and app by
    app, so that nothing is allocated inside the loops (each is written before it is read)."""

    transition: np.ndarray  # (N, N) the env's old-to-new target shares (pattern_transition)
    mixed: np.ndarray  # (N,) one re-targeted row (_retarget)
    prob: np.ndarray  # (K,) per-sample access probability of the app's chunks
    eligible: np.ndarray  # (K,) 1 where a chunk matches the scheme's access pattern
    walked: np.ndarray  # (K,) share of each chunk's not-yet-walked pages walked now
    flows: np.ndarray  # (N, N) pages the pass asks to move from row to column node
    unwalked: np.ndarray  # (N, N) one chunk's walked pages by (node, target)
    inflow: np.ndarray  # (N,) pages asked into each node
    outflow: np.ndarray  # (N,) pages leaving each node (frames freed by the same pass)
    scale: np.ndarray  # (N,) share of the moves into each node that find free frames
    bin_probability: np.ndarray  # (bins,) one chunk's hotness-bin probabilities


@njit(cache=True, inline="always")
def _scratch(n_chunks: int, n_nodes: int, n_bins: int) -> Scratch:
    return Scratch(
        transition=np.empty((n_nodes, n_nodes)),
        mixed=np.empty(n_nodes),
        prob=np.zeros(n_chunks),
        eligible=np.zeros(n_chunks),
        walked=np.zeros(n_chunks),
        flows=np.empty((n_nodes, n_nodes)),
        unwalked=np.empty((n_nodes, n_nodes)),
        inflow=np.empty(n_nodes),
        outflow=np.empty(n_nodes),
        scale=np.empty(n_nodes),
        bin_probability=np.empty(n_bins),
    )


# ------------------------------------------------------------------------------ the interval
@njit(cache=True)
def advance(
    state: KernelState,
    params: KernelParams,
    weights: np.ndarray,
    active: np.ndarray,
    out: KernelOutputs,
) -> None:
    """Everything of one interval before the solve, for every env with ``active[b]`` (the
    others are left untouched): ``weights`` ((B, N) int64) are the interval's; ``state`` is
    updated in place and ``out`` (zeroed) filled. Each step runs over the whole batch in
    turn; envs share nothing, so this is each env's interval in the host's order."""
    _advance_range(state, params, weights, active, out, 0, active.size)


@njit(cache=True, parallel=True)
def advance_parallel(
    state: KernelState,
    params: KernelParams,
    weights: np.ndarray,
    active: np.ndarray,
    out: KernelOutputs,
    parts: int,
) -> None:
    """``advance`` with the envs cut into ``parts`` contiguous ranges advanced in parallel
    (numba's ``prange``; opt-in, see ``tierenv.sim.fluid.FluidModel``'s ``threads``). Envs
    share nothing and each range runs ``advance``'s compiled steps, so the results are the
    serial ones, bit for bit."""
    batch = active.size
    for part in prange(parts):
        _advance_range(
            state, params, weights, active, out, part * batch // parts, (part + 1) * batch // parts
        )


@njit(cache=True)
def _advance_range(
    state: KernelState,
    params: KernelParams,
    weights: np.ndarray,
    active: np.ndarray,
    out: KernelOutputs,
    start: int,
    stop: int,
) -> None:
    """``advance`` for envs ``start`` to ``stop`` - 1, with its own scratch arrays, in
    blocks of ``ENV_BLOCK`` envs: each block goes through all the steps while its pages are
    still in the CPU's cache (a batch's pages are megabytes, a block's some kilobytes)."""
    _, _, n_chunks, n_nodes, _ = state.pages.shape
    work = _scratch(n_chunks, n_nodes, out.hotness.shape[2])
    # each env's free frames as the interval goes on, which is also what it reports
    free = out.free
    for first in range(start, stop, ENV_BLOCK):
        last = min(first + ENV_BLOCK, stop)
        _change_weights(state, params, weights, active, work, first, last)
        _scenario_changes(state, params, active, free, first, last)
        _first_touches(state, params, weights, active, free, first, last)
        _damon_and_damos(state, params, active, out, work, first, last)
        _report(state, params, active, out, first, last)
        _commit_used(state.used_pages, params.capacity_pages, free, active, first, last)


# ---------------------------------------------------------------------------- weight change
@njit(cache=True, inline="always")
def _change_weights(
    state: KernelState,
    params: KernelParams,
    weights: np.ndarray,
    active: np.ndarray,
    work: Scratch,
    start: int,
    stop: int,
) -> None:
    """New weights re-target resident pages: in each active env whose weights change, every
    running, interleaved app's pages (and the walked part of its cursor's chunk) move to the
    targets the new pattern gives them, by the joint frequency of the old and new patterns.
    Stopped apps are skipped (they are freed next) and bound apps are not interleaved."""
    old, pages, walked_pages, steps = state.weights, state.pages, state.walked_pages, state.step
    running, bind_node = params.running, params.bind_node
    transition, mixed = work.transition, work.mixed
    for b in range(start, stop):
        if not active[b] or not _weights_differ(old, weights, b):
            continue
        k = steps[b]
        pattern_transition(old[b], weights[b], transition)
        for a in range(bind_node.size):
            if not running[k, a] or bind_node[a] >= 0:
                continue
            _retarget(walked_pages[b, a], transition, mixed)
            _retarget_chunks(pages, b, a, transition, mixed)


@njit(cache=True, inline="always")
def _weights_differ(old: np.ndarray, new: np.ndarray, b: int) -> bool:
    """Env ``b``'s weights change (``old``, ``new``: (B, N))."""
    changed = False  # a flag, not any(): numba compiles no generator here
    for n in range(new.shape[1]):
        if new[b, n] != old[b, n]:
            changed = True
    return changed


@njit(cache=True)
def _retarget(table: np.ndarray, transition: np.ndarray, mixed: np.ndarray) -> None:
    """Pages by (node, target) after the weights changed: each old target's pages spread over
    the new targets by the patterns' joint frequency (``mixed``: scratch of N values)."""
    n_nodes = table.shape[0]
    for n in range(n_nodes):
        for u in range(n_nodes):
            total = 0.0
            for t in range(n_nodes):
                total += table[n, t] * transition[t, u]
            mixed[u] = total
        for u in range(n_nodes):
            table[n, u] = mixed[u]


@njit(cache=True)
def _retarget_chunks(
    pages: np.ndarray, b: int, a: int, transition: np.ndarray, mixed: np.ndarray
) -> None:
    """``_retarget`` of every chunk of app ``a`` in env ``b`` (``pages``: (B, A, K, N, N)),
    indexing the batch array rather than making a view per chunk. Two nodes are written out
    (the same sums in the same order, four at once instead of one after another)."""
    n_nodes = pages.shape[3]
    if n_nodes == 2:
        t00, t01, t10, t11 = transition[0, 0], transition[0, 1], transition[1, 0], transition[1, 1]
        for c in range(pages.shape[2]):
            p00, p01 = pages[b, a, c, 0, 0], pages[b, a, c, 0, 1]
            p10, p11 = pages[b, a, c, 1, 0], pages[b, a, c, 1, 1]
            pages[b, a, c, 0, 0] = (0.0 + p00 * t00) + p01 * t10
            pages[b, a, c, 0, 1] = (0.0 + p00 * t01) + p01 * t11
            pages[b, a, c, 1, 0] = (0.0 + p10 * t00) + p11 * t10
            pages[b, a, c, 1, 1] = (0.0 + p10 * t01) + p11 * t11
        return
    for c in range(pages.shape[2]):
        for n in range(n_nodes):
            for u in range(n_nodes):
                total = 0.0
                for t in range(n_nodes):
                    total += pages[b, a, c, n, t] * transition[t, u]
                mixed[u] = total
            for u in range(n_nodes):
                pages[b, a, c, n, u] = mixed[u]


@njit(cache=True)
def _cyclic_overlap(first_a: int, length_a: int, first_b: int, length_b: int, size: int) -> int:
    """Points shared by [first_a, +length_a) and [first_b, +length_b) on a circle of ``size``
    (each length < size)."""
    offset = (first_b - first_a) % size
    direct = max(0, min(length_a, offset + length_b) - offset)
    wrapped = max(0, min(length_a, offset + length_b - size))
    return direct + wrapped


@njit(cache=True)
def pattern_transition(old: np.ndarray, new: np.ndarray, out: np.ndarray) -> None:
    """``out[t, u]``: of the interleave indices weights ``old`` give node t, the share that
    weights ``new`` give node u (both patterns periodic; exact over a common period).

    Index i goes to the node whose cumulative-weight interval holds ``i mod sum(weights)``.
    Over a common period the pair (i mod P, i mod Q) takes every value with equal residues
    mod g = gcd(P, Q) once, so the count for (t, u) is a sum over residues r mod g of the
    counts of r in each node's interval; each count is ``length // g`` plus one for residues
    in a cyclic stretch of ``length % g``, which makes the sum closed-form.
    """
    n_nodes = old.size
    period_old = 0
    period_new = 0
    for node in range(n_nodes):
        period_old += old[node]
        period_new += new[node]
    a, b = period_old, period_new
    while b:
        a, b = b, a % b
    common = a
    low_old = 0
    for t in range(n_nodes):
        length_old = old[t]
        whole_old, rest_old = length_old // common, length_old % common
        low_new = 0
        for u in range(n_nodes):
            length_new = new[u]
            whole_new, rest_new = length_new // common, length_new % common
            pairs = (
                common * whole_old * whole_new
                + whole_old * rest_new
                + whole_new * rest_old
                + _cyclic_overlap(low_old % common, rest_old, low_new % common, rest_new, common)
            )
            # pairs / (P Q / g) is the joint frequency; divided by old[t] / P, the conditional
            out[t, u] = pairs * common / (period_new * length_old)
            low_new += length_new
        low_old += length_old


# ------------------------------------------------------------------ scenario and first touch
@njit(cache=True, inline="always")
def _scenario_changes(
    state: KernelState,
    params: KernelParams,
    active: np.ndarray,
    free: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """Starts and stops at the interval's start: a stopped app's pages are freed; a started
    or stopped app's DAMOS walk starts over (a new kdamond); a started app's DAMON rate is
    its reference throughput until it has run an interval. Then ``free`` ((B, N)) holds
    each env's free frames."""
    pages, used, steps = state.pages, state.used_pages, state.step
    walked_pages, cursor, throughput = state.walked_pages, state.cursor, state.throughput_gbps
    stopping, starting, phase = params.stopping, params.starting, params.phase
    alone, capacity = params.phase_alone_gbps, params.capacity_pages
    for b in range(start, stop):
        if not active[b]:
            continue
        k = steps[b]
        for a in range(stopping.shape[1]):
            if stopping[k, a]:
                _free_pages(pages, used, b, a)
            if stopping[k, a] or starting[k, a]:
                walked_pages[b, a] = 0.0
                cursor[b, a] = 0.0
            if starting[k, a]:
                throughput[b, a] = alone[a, phase[k, a]]
        for n in range(capacity.size):
            free[b, n] = capacity[n] - used[b, n]


@njit(cache=True, inline="always")
def _free_pages(pages: np.ndarray, used: np.ndarray, b: int, a: int) -> None:
    """App ``a`` of env ``b`` stops: its pages leave their nodes' used frames."""
    n_chunks, n_nodes = pages.shape[2], pages.shape[3]
    for c in range(n_chunks):
        for n in range(n_nodes):
            for t in range(n_nodes):
                used[b, n] -= pages[b, a, c, n, t]
    pages[b, a] = 0.0


@njit(cache=True, inline="always")
def _first_touches(
    state: KernelState,
    params: KernelParams,
    weights: np.ndarray,
    active: np.ndarray,
    free: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """Pages running apps touch for the first time, app by app: a managed app's under the
    interval's weights (``_allocate``: the kernel's fallback to the next node with free
    frames), a bound app's on its node only, all of a chunk's new pages or none (MPOL_BIND
    without reclaim). ``free`` ((B, N)) is updated."""
    pages, steps = state.pages, state.step
    new_pages, running, bind_node = params.new_pages, params.running, params.bind_node
    for b in range(start, stop):
        if not active[b]:
            continue
        k = steps[b]
        weight_sum = _weight_sum(weights, b)
        for a in range(bind_node.size):
            if not running[k, a]:
                continue
            node = bind_node[a]
            for c in range(new_pages.shape[2]):
                count = new_pages[k, a, c]
                if count <= 0.0:
                    continue
                if node < 0:
                    _allocate(pages, b, a, c, count, weights, weight_sum, free)
                elif count <= free[b, node]:
                    pages[b, a, c, node, node] += count
                    free[b, node] -= count


@njit(cache=True, inline="always")
def _weight_sum(weights: np.ndarray, b: int) -> float:
    """The interleave period of env ``b``'s weights, as a float for the shares."""
    total = 0.0
    for n in range(weights.shape[1]):
        total += weights[b, n]
    return total


@njit(cache=True)
def _allocate(
    pages: np.ndarray,
    b: int,
    a: int,
    c: int,
    count: float,
    weights: np.ndarray,
    weight_sum: float,
    free: np.ndarray,
) -> None:
    """First touch of ``count`` pages of chunk ``c`` of app ``a`` in env ``b``
    (``pages[b, a, c]``: (N, N) pages by node and target): each target gets its weight share
    (``weights[b]``); a full node falls back to the next node with free frames
    (``free[b]``), cyclically (the kernel's fallback)."""
    n_nodes = free.shape[1]
    for target in range(n_nodes):
        wanted = count * weights[b, target] / weight_sum
        for step in range(n_nodes):
            if wanted <= 0.0:
                break
            node = (target + step) % n_nodes
            placed = min(wanted, max(free[b, node], 0.0))
            pages[b, a, c, node, target] += placed
            free[b, node] -= placed
            wanted -= placed


# ------------------------------------------------------------------------------ DAMON/DAMOS
@njit(cache=True, inline="always")
def _damon_and_damos(
    state: KernelState,
    params: KernelParams,
    active: np.ndarray,
    out: KernelOutputs,
    work: Scratch,
    start: int,
    stop: int,
) -> None:
    """Each active env's kdamonds, app by app (a pass sees the frames the previous one left):
    DAMON's view of the app's chunks (``_damon_access``), the quota-limited walk from the
    cursor (``_walk``), the moves it asks for (``_walked_flows``), how many find free frames
    (``_admit``; the rest count as failed), the migrations (``_migrate``), and DAMON's
    hotness view of the app after them (``_report_damon``). The helpers index the batch
    arrays with (env, app): no view per env or app."""
    if not params.damos_enabled:
        return
    pages, kept, cursor, steps = state.pages, state.walked_pages, state.cursor, state.step
    throughput, quota = state.throughput_gbps, state.quota_pages
    running, phase, bind_node = params.running, params.phase, params.bind_node
    sizes, share, touched = params.chunk_pages, params.share_per_page, params.touched_share
    max_nr, min_nr = params.max_nr_accesses, params.min_nr_accesses
    per_gbps, thresholds = params.misses_per_gbps_sample, params.hotness_thresholds
    prob, eligible, walked, flows = work.prob, work.eligible, work.walked, work.flows
    inflow, outflow, scale, unwalked = work.inflow, work.outflow, work.scale, work.unwalked
    bins, failed = work.bin_probability, out.failed
    free, moved, hotness, access = out.free, out.moved, out.hotness, out.access
    for b in range(start, stop):
        if not active[b]:
            continue
        k = steps[b]
        for a in range(bind_node.size):
            if not running[k, a] or bind_node[a] >= 0:
                continue  # no kdamond watches a bound app
            samples = throughput[b, a] * per_gbps
            _damon_access(
                sizes, share, touched, a, phase[k, a], k, samples, max_nr, min_nr, prob, eligible
            )
            first = int(cursor[b, a])
            cursor[b, a], exhausted = _walk(eligible, sizes, a, quota[b], cursor[b, a], walked)
            last = int(cursor[b, a]) if exhausted else walked.size
            _walked_flows(pages, kept, b, a, walked, first, last, flows)
            _admit(flows, free, b, inflow, outflow, scale)
            for t in range(scale.size):
                failed[b] += (1.0 - scale[t]) * inflow[t]
            _migrate(
                pages, kept, b, a, walked, first, last, exhausted, scale, unwalked, free, moved
            )
            _report_damon(pages, b, a, sizes, prob, max_nr, thresholds, bins, hotness, access)


@njit(cache=True, inline="always")
def _damon_access(
    sizes: np.ndarray,
    share: np.ndarray,
    touched: np.ndarray,
    a: int,
    ph: int,
    k: int,
    samples_per_share: float,
    max_nr: int,
    min_nr: int,
    prob: np.ndarray,
    eligible: np.ndarray,
) -> None:
    """DAMON's view of app ``a``'s chunks (``sizes[a]``: pages; ``share[a, ph]``: share of
    the app's accesses per page of each chunk in its phase ``ph``; ``touched[k, a]``: share
    of each chunk's pages touched so far) at the rate its last throughput implies
    (``samples_per_share``: misses per sample interval): ``prob[c]``, the chance that a
    sample finds chunk c accessed, and ``eligible[c]``, 1 where the scheme's access pattern
    (at least ``min_nr`` of ``max_nr`` samples) matches. (The quotients per page are
    ``KernelParams``' tables: the same divisions, made once.)"""
    for c in range(prob.size):
        if sizes[a, c] <= 0.0:
            prob[c] = 0.0
            eligible[c] = 0.0
            continue
        # DAMON checks one random page of the region per sample; untouched pages are never
        # accessed
        per_page = share[a, ph, c] * samples_per_share
        accessed = 1.0 if per_page > 40.0 else -math.expm1(-per_page)
        prob[c] = touched[k, a, c] * accessed
        # merged regions report the size-weighted mean count, rounded down: the expected
        # count against the scheme's integer minimum
        eligible[c] = 1.0 if prob[c] * max_nr >= min_nr else 0.0


@njit(cache=True)
def _walk(
    eligible: np.ndarray,
    sizes: np.ndarray,
    a: int,
    budget: float,
    position: float,
    walked: np.ndarray,
) -> tuple[float, bool]:
    """The DAMOS pass of app ``a``'s kdamond: chunks (``sizes[a]``: pages) in address order
    from ``position`` (in chunks), charging eligible pages until ``budget`` runs out.
    ``walked[c]`` becomes the share of chunk c's not-yet-walked pages (in this pass) that get
    the action. Returns the new position and whether the quota ran out (else the pass reached
    the end: restart at 0).

    A quota that runs out exactly where no eligible page follows does not end the pass: the
    kernel recorded where it stopped (``charge_addr_from``), so its next window resumes
    there and walks nothing; the position is then the end (a quota that divides the
    eligible pages wastes one window per pass)."""
    n_chunks = sizes.shape[1]
    walked[:] = 0.0
    c = int(position)
    start_fraction = position - c
    while c < n_chunks:
        per_unit = eligible[c] * sizes[a, c]
        remaining = 1.0 - start_fraction
        if per_unit * remaining <= budget:
            budget -= per_unit * remaining
            walked[c] = eligible[c]
        else:
            reach = budget / per_unit
            walked[c] = eligible[c] * reach / remaining
            return c + start_fraction + reach, True
        c += 1
        start_fraction = 0.0
    if budget <= QUOTA_EXACT:
        return float(n_chunks), True
    return 0.0, False


@njit(cache=True, inline="always")
def _walked_part(
    pages: np.ndarray,
    kept: np.ndarray,
    b: int,
    a: int,
    c: int,
    is_first: bool,
    share: float,
    out: np.ndarray,
) -> None:
    """``out[n, t]``: the pages of chunk ``c`` (``pages[b, a]``: (K, N, N) by node and target)
    that this walk reaches, ``share`` of those not walked yet in this pass; in the cursor's
    chunk (``is_first``) the part walked by earlier windows (``kept[b, a]``) is left out."""
    n_nodes = out.shape[0]
    for n in range(n_nodes):
        for t in range(n_nodes):
            rest = pages[b, a, c, n, t]
            if is_first:
                rest -= kept[b, a, n, t]
            out[n, t] = share * rest


@njit(cache=True, inline="always")
def _walked_flows(
    pages: np.ndarray,
    kept: np.ndarray,
    b: int,
    a: int,
    walked: np.ndarray,
    first: int,
    last: int,
    flows: np.ndarray,
) -> None:
    """``flows[n, t]``: walked pages of app ``a`` in env ``b`` on node n whose target t is
    another node, over the chunks ``first``..``last`` the walk reached."""
    n_nodes = flows.shape[0]
    flows[:] = 0.0
    for c in range(first, min(last + 1, walked.size)):
        if walked[c] > 0.0:
            for n in range(n_nodes):
                for t in range(n_nodes):
                    if t != n:
                        rest = pages[b, a, c, n, t]
                        if c == first:
                            rest -= kept[b, a, n, t]
                        flows[n, t] += walked[c] * rest


@njit(cache=True, inline="always")
def _admit(
    flows: np.ndarray,
    free: np.ndarray,
    b: int,
    inflow: np.ndarray,
    outflow: np.ndarray,
    scale: np.ndarray,
) -> None:
    """``scale[t]``: the share of the moves into node t that succeed. A migration into a full
    node fails, but frames the same pass frees there count as room: a few fixed-point rounds
    over (free[b] + outflow) / inflow, never above 1. Sets ``inflow`` too."""
    n_nodes = scale.size
    for t in range(n_nodes):
        scale[t] = 1.0
        inflow[t] = 0.0
        for n in range(n_nodes):
            inflow[t] += flows[n, t]
    for _ in range(SCALE_ROUNDS):
        for n in range(n_nodes):
            outflow[n] = 0.0
            for t in range(n_nodes):
                outflow[n] += flows[n, t] * scale[t]
        for t in range(n_nodes):
            if inflow[t] > 0.0:
                room = max(free[b, t], 0.0) + outflow[t]
                scale[t] = min(scale[t], room / inflow[t])


@njit(cache=True, inline="always")
def _migrate(
    pages: np.ndarray,
    kept: np.ndarray,
    b: int,
    a: int,
    walked: np.ndarray,
    first: int,
    last: int,
    exhausted: bool,
    scale: np.ndarray,
    unwalked: np.ndarray,
    free: np.ndarray,
    moved: np.ndarray,
) -> None:
    """Migrate the walked pages of app ``a`` in env ``b`` to their targets as far as
    ``scale`` admits, and keep (``kept[b, a]``: (N, N)) the walked part of the chunk where an
    exhausted quota stopped the pass, so that the next window does not walk it again."""
    n_chunks = walked.size
    for c in range(first, min(last + 1, n_chunks)):
        if walked[c] <= 0.0:
            continue
        _walked_part(pages, kept, b, a, c, c == first, walked[c], unwalked)
        _move(pages, b, a, c, unwalked, scale, free, moved)
        if exhausted and c == last:
            # the part of the chunk where this pass stopped, for the next window
            _keep(kept, b, a, unwalked, c != first)
    if not exhausted or (last != first and (last >= n_chunks or walked[last] <= 0.0)):
        # the pass ended, or stopped at a chunk boundary: nothing walked is kept
        for n in range(unwalked.shape[0]):
            for t in range(unwalked.shape[0]):
                kept[b, a, n, t] = 0.0


@njit(cache=True, inline="always")
def _move(
    pages: np.ndarray,
    b: int,
    a: int,
    c: int,
    unwalked: np.ndarray,
    scale: np.ndarray,
    free: np.ndarray,
    moved: np.ndarray,
) -> None:
    """Move ``scale[t]`` of chunk ``c``'s walked pages on node n != t to their target t: in
    ``pages[b, a]``, in ``unwalked`` (the walked pages, now on their target), in
    ``moved[b]`` and in ``free[b]``."""
    n_nodes = unwalked.shape[0]
    for n in range(n_nodes):
        for t in range(n_nodes):
            if t != n:
                amount = scale[t] * unwalked[n, t]
                pages[b, a, c, n, t] -= amount
                pages[b, a, c, t, t] += amount
                unwalked[n, t] -= amount
                unwalked[t, t] += amount
                moved[b, n, t] += amount
                free[b, t] -= amount
                free[b, n] += amount


@njit(cache=True, inline="always")
def _keep(kept: np.ndarray, b: int, a: int, walked: np.ndarray, restart: bool) -> None:
    """Add a chunk's just-walked pages (``walked``: (N, N)) to ``kept[b, a]``, the walked part
    of the chunk where the pass stopped (``restart``: a new chunk, so the old part goes)."""
    n_nodes = walked.shape[0]
    if restart:
        for n in range(n_nodes):
            for t in range(n_nodes):
                kept[b, a, n, t] = 0.0
    for n in range(n_nodes):
        for t in range(n_nodes):
            kept[b, a, n, t] += walked[n, t]


# ----------------------------------------------------------------------------------- report
@njit(cache=True, inline="always")
def _report(
    state: KernelState,
    params: KernelParams,
    active: np.ndarray,
    out: KernelOutputs,
    start: int,
    stop: int,
) -> None:
    """Each running app's placement after the interval's moves: resident and hot pages per
    node and the split of its accesses over the nodes (``_report_placement``)."""
    pages, steps = state.pages, state.step
    running, phase, sizes = params.running, params.phase, params.chunk_pages
    share, hot = params.share_per_page, params.phase_hot
    split, resident, hot_pages = out.split, out.resident, out.hot_pages
    for b in range(start, stop):
        if not active[b]:
            continue
        k = steps[b]
        for a in range(running.shape[1]):
            if running[k, a]:
                _report_placement(
                    pages, b, a, phase[k, a], sizes, share, hot, split, resident, hot_pages
                )


@njit(cache=True, inline="always")
def _report_placement(
    pages: np.ndarray,
    b: int,
    a: int,
    ph: int,
    sizes: np.ndarray,
    share: np.ndarray,
    hot: np.ndarray,
    split: np.ndarray,
    resident: np.ndarray,
    hot_pages: np.ndarray,
) -> None:
    """Add app ``a``'s pages in env ``b`` (``pages[b, a]``: (K, N, N)) per node to
    ``resident[b, a]`` and its hot pages (``hot[a, ph, c]``: the hot share of chunk c in
    phase ``ph``) to ``hot_pages[b, a]``, and set ``split[b, a]``, the share of its accesses
    per node (``share[a, ph, c]``: chunk c's share of the app's accesses per page)."""
    n_chunks, n_nodes = pages.shape[2], pages.shape[3]
    total_split = 0.0
    for c in range(n_chunks):
        if sizes[a, c] <= 0.0:
            continue
        per_page_share = share[a, ph, c]
        for n in range(n_nodes):
            on_node = 0.0
            for t in range(n_nodes):
                on_node += pages[b, a, c, n, t]
            resident[b, a, n] += on_node
            split[b, a, n] += per_page_share * on_node
            total_split += per_page_share * on_node
            hot_pages[b, a, n] += hot[a, ph, c] * on_node
    for n in range(n_nodes):  # shares of the accesses (even before the app has pages)
        if total_split > 0.0:
            split[b, a, n] /= total_split
        else:
            split[b, a, n] = 1.0 / n_nodes


@njit(cache=True, inline="always")
def _report_damon(
    pages: np.ndarray,
    b: int,
    a: int,
    sizes: np.ndarray,
    prob: np.ndarray,
    max_nr: int,
    thresholds: np.ndarray,
    bins: np.ndarray,
    hotness: np.ndarray,
    access: np.ndarray,
) -> None:
    """Add app ``a``'s pages in env ``b`` (``pages[b, a]``: (K, N, N)) to DAMON's view per
    node: ``hotness[b]`` ((N, bins)) by the bin of each chunk's nr_accesses (``prob[c]``: its
    per-sample access probability, over ``max_nr`` samples) and ``access[b]`` ((N,))
    weighted by that probability. ``bins`` is scratch."""
    n_chunks, n_nodes = pages.shape[2], pages.shape[3]
    full = _bin_of(max_nr, thresholds)  # a chunk accessed in every sample
    for c in range(n_chunks):
        if sizes[a, c] <= 0.0:
            continue
        p = prob[c]
        # the one bin when the count is certain (p = 0 or 1: the usual case); else the
        # regions' reported counts scatter around the mean as binomial samples
        certain = 0 if p <= 0.0 else (full if p >= 1.0 else -1)
        if certain < 0:
            _hotness_bins(max_nr, p, thresholds, bins)
        for n in range(n_nodes):
            on_node = 0.0
            for t in range(n_nodes):
                on_node += pages[b, a, c, n, t]
            if certain >= 0:
                hotness[b, n, certain] += on_node
            else:
                for j in range(bins.size):
                    hotness[b, n, j] += on_node * bins[j]
            access[b, n] += p * on_node


@njit(cache=True, inline="always")
def _bin_of(count: int, thresholds: np.ndarray) -> int:
    """The hotness bin of an nr_accesses ``count`` (bin j + 1 starts at ``thresholds[j]``)."""
    bin_of = 0
    for j in range(thresholds.size):
        if count >= thresholds[j]:
            bin_of = j + 1
    return bin_of


@njit(cache=True)
def _hotness_bins(trials: int, p: float, thresholds: np.ndarray, out: np.ndarray) -> None:
    """out[j]: probability that Binomial(trials, p) falls in hotness bin j, whose lower edge
    is ``thresholds[j - 1]`` (bin 0 starts at 0): a region's nr_accesses in one aggregation."""
    n_bins = out.size
    out[:] = 0.0
    if p <= 0.0 or p >= 1.0:
        count = 0 if p <= 0.0 else trials
        bin_of = 0
        for j in range(n_bins - 1):
            if count >= thresholds[j]:
                bin_of = j + 1
        out[bin_of] = 1.0
        return
    pmf = math.exp(trials * math.log1p(-p))  # P(X = 0)
    ratio = p / (1.0 - p)
    below = 0.0  # P(X < count)
    count = 0
    for j in range(n_bins - 1):
        while count < thresholds[j] and count <= trials:
            below += pmf
            pmf *= (trials - count) / (count + 1) * ratio
            count += 1
        out[j] = below
    out[n_bins - 1] = 1.0
    for j in range(n_bins - 1, 0, -1):
        out[j] = max(out[j] - out[j - 1], 0.0)


@njit(cache=True, inline="always")
def _commit_used(
    used: np.ndarray,
    capacity: np.ndarray,
    free: np.ndarray,
    active: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """The frames in use after the interval, from the free ones (both (B, N))."""
    for b in range(start, stop):
        if active[b]:
            for n in range(capacity.size):
                used[b, n] = capacity[n] - free[b, n]
