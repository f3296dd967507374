"""Compiled inner loops of the DAMON monitor: sampling, merging and splitting regions.

Each function is a direct port of the kernel code named in its docstring (mm/damon/core.c,
Linux 6.17/6.18), on flat region arrays ordered by target and then by address. The pure
Python twin in ``tierenv.damon.reference`` runs the same algorithms on lists of region
records with the same random stream; tests check that both agree exactly.

Region arrays (``n`` live entries; callers keep spare capacity for splits):
``start``/``end`` (bytes, half-open), ``target`` (index of the monitoring target),
``nr`` (nr_accesses), ``bp`` (nr_accesses_bp), ``last`` (last_nr_accesses), ``age``.

The aggregation loop ``run_aggregations`` and the DAMOS passes ``simple_pass`` and
``quota_pass`` (with a quota's state in ``QuotaState``) take their inputs
as frozen structs (NamedTuples, which numba compiles as such) in gymnax's shape: parameters
fixed for the call (``MonitorParams``, ``PassParams``), the arrays updated in place
(``MonitorBuffers``, ``PassResults``) and the numbers returned anew (``Aggregated``). The
primitives below them (``sample_segment``, ``merge_regions``, ``split_regions``) keep flat
array arguments: they are what ``tierenv.damon.reference`` is compared with, and loops call
them on arrays unpacked once (an array taken out of a struct costs reference counting).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tierenv.damon.jit import njit
from tierenv.damon.rng import GOLDEN, TO_UNIT, mix64, next_below, next_unit
from tierenv.memory import kernels as memory_kernels

INT64_MAX = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------------- structs
class Regions(NamedTuple):
    """Region columns in ``regions.FIELDS`` order (``RegionTable.arrays()``)."""

    start: np.ndarray
    end: np.ndarray
    target: np.ndarray
    nr: np.ndarray
    bp: np.ndarray
    last: np.ndarray
    age: np.ndarray


class Snapshot(NamedTuple):
    """The columns a completed aggregation keeps (as the ``damon_aggregated`` tracepoint)."""

    target: np.ndarray
    start: np.ndarray
    end: np.ndarray
    nr: np.ndarray
    age: np.ndarray


class SamplingIndex(NamedTuple):
    """``sample_segment``'s page index, built by ``sampling_index``."""

    run_address: np.ndarray
    run_page: np.ndarray
    run_length: np.ndarray
    target_runs: np.ndarray
    cumulative_p: np.ndarray


class MonitorParams(NamedTuple):
    """What ``run_aggregations``'s monitoring steps read, fixed for one call."""

    min_region: int  # DAMON_MIN_REGION: the simulated page size
    aggr_samples: int  # sample intervals per aggregation, also the merge's max threshold
    len_window: int  # damon_max_nr_accesses(): the window of nr_accesses_bp's moving sum
    sz_limit: int  # damon_region_sz_limit()
    max_nr_regions: int


class MonitorBuffers(NamedTuple):
    """The arrays ``run_aggregations`` updates in place."""

    live: Regions
    spare: Regions  # the double buffer splits write to (the live data may end here)
    snapshot: Snapshot  # receives the last aggregation's regions
    rng: np.ndarray  # the random stream's state (``tierenv.damon.rng``)


class Aggregated(NamedTuple):
    """What ``run_aggregations`` returns."""

    n: int  # live regions
    last_nr_regions: int  # kdamond_split_regions' memory of the count it last split
    swapped: bool  # the live regions ended in ``MonitorBuffers.spare``
    snapshot_n: int  # regions in the snapshot
    next_apply: int  # sample intervals from the call's end to the pass's next application
    tried_n: int  # regions the last pass tried (-1: no pass ran)


class PassParams(NamedTuple):
    """One simple DAMOS pass (one scheme, no quota and no filters) for ``simple_pass``; the
    first three fields are for ``run_aggregations``, which applies it at aggregation ends."""

    enabled: bool  # run_aggregations applies it (False: every other field is a placeholder)
    next_apply: int  # sample intervals from run_aggregations' start to the first pass
    apply_samples: int  # sample intervals between passes
    pattern: np.ndarray  # int64[6]: sz, nr_accesses, age as min/max pairs (clamped to int64)
    migrate: bool  # the action migrates (False: stat, which does nothing to the regions)
    paddr: bool  # regions are physical addresses (else virtual, of the targets' apps)
    target_apps: np.ndarray  # vaddr: the application id of each target
    dest_nodes: np.ndarray  # vaddr: the dests (interleaved by weight); paddr: target_nid
    dest_weights: np.ndarray
    mem: tuple  # the memory state's tables (``MemoryState.compiled_tables``)
    shift: int  # log2 of the page size
    phys_base: int  # paddr: the physical address of frame 0


class QuotaParams(NamedTuple):
    """The quota of a pass that has one (``quota_pass``): how it scores regions and, when the
    compiled loop rolls the charge window itself (a size-only quota), the window."""

    enabled: bool  # the pass has a quota (False: ``simple_pass``; the rest unused)
    roll: bool  # roll the charge window before each pass (``damos_adjust_quota``'s first half)
    sz: int  # quotas.bytes: the effective size after each roll (roll only)
    reset_us: int  # quotas.reset_interval_ms in microseconds (roll only)
    score: int  # SCORE_FIXED (99 for every region), SCORE_HOT or SCORE_COLD (99 - hot)
    max_nr_accesses: int
    aggr_us: int
    nr_permil: int
    age_permil: int
    min_region: int  # DAMON_MIN_REGION: quota cuts and charge skips are aligned to it
    sample_us: int  # the loop's clock (roll only)
    now_us: float  # the kdamond's clock at the call's start (roll only)


# ``QuotaState.values`` entries: the quota's runtime state (``quota.QuotaState``) and stats the
# kernel updates in place
ESZ, CHARGED_SZ, MIN_SCORE, CHARGE_TARGET_FROM, CHARGE_ADDR_FROM = range(5)
TOTAL_CHARGED_SZ, QT_EXCEEDS = 5, 6
QUOTA_VALUES = 7
SCORE_FIXED, SCORE_HOT, SCORE_COLD = 0, 1, 2
DAMOS_MAX_SCORE = 99


class QuotaState(NamedTuple):
    """A quota's runtime state (``quota.QuotaState``) as the arrays ``quota_pass`` updates
    (named like that dataclass: compiled-code caches record this name)."""

    values: np.ndarray  # int64[QUOTA_VALUES]: ESZ, CHARGED_SZ, ... (the constants above)
    charged_from_us: np.ndarray  # float64[1]: the charge window's start

    @classmethod
    def empty(cls) -> QuotaState:
        return cls(np.zeros(QUOTA_VALUES, dtype=np.int64), np.zeros(1))


class PassTotals(NamedTuple):
    """The sums a DAMOS pass books in the scheme's quota and stats (``Kdamond._account``).
    Compiled passes add to ``PassResults.totals``, which holds them in this order."""

    nr_tried: int
    sz_tried: int
    nr_applied: int  # regions of which at least one page moved
    moved_pages: int
    failed_pages: int  # compiled passes only (others' failures the memory state counts)
    walked_pages: int  # pages whose page-table entries the action looked at (stat: none)
    sz_filter_passed: int


NR_TRIED, SZ_TRIED, NR_APPLIED, MOVED_PAGES, FAILED_PAGES, WALKED_PAGES, SZ_FILTER_PASSED = range(7)


class Tried(NamedTuple):
    """The regions a pass tried, as ``tried_regions/`` lists them (first ``tried_n`` entries)."""

    target: np.ndarray
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray
    sz_filter_passed: np.ndarray


class PassResults(NamedTuple):
    """What compiled passes write: ``moved`` and ``totals`` accumulate over every pass of a
    call, ``tried`` holds the last pass's regions."""

    moved: np.ndarray  # (N, N) int64: pages moved from row to column node
    totals: np.ndarray  # int64, ``PassTotals`` order
    tried: Tried

    @classmethod
    def zeros(cls, capacity: int, n_nodes: int) -> PassResults:
        """Zeroed results with room for ``capacity`` tried regions."""
        # the tried columns are the rows of one block (copied out with one copy)
        block = np.zeros((len(Tried._fields), capacity), dtype=np.int64)
        return cls(
            moved=np.zeros((n_nodes, n_nodes), dtype=np.int64),
            totals=np.zeros(len(PassTotals._fields), dtype=np.int64),
            tried=Tried(*block),
        )

    def sums(self) -> PassTotals:
        return PassTotals(*self.totals.tolist())


# Inversion walks the pmf up from (1 - p) ** trials; with p <= 1/2 after flipping, 512 trials
# keep that start above 1e-155, far from underflow. Longer stretches (an aggregation of more
# than 512 samples, or a long run between events) are drawn as sums of such binomials.
MAX_INVERSION_TRIALS = 512


@njit(cache=True)
def _power(base: float, exponent: int) -> float:
    """base ** exponent by repeated squaring (the reference repeats the same operations)."""
    result = 1.0
    while exponent:
        if exponent & 1:
            result *= base
        base *= base
        exponent >>= 1
    return result


@njit(cache=True)
def _invert_binomial(u: float, trials: int, p: float) -> int:
    """The k with CDF(k-1) <= u < CDF(k) of Binomial(trials, p), walking from the likelier
    end: from 0 up when p <= 1/2, else from ``trials`` down (k = trials - Binomial(trials,
    1 - p)), so the walk is short for the cold and the hot regions that dominate."""
    if p <= 0.0 or trials <= 0:
        return 0
    if p >= 1.0:
        return trials
    flip = p > 0.5
    if flip:
        p = 1.0 - p
    q = 1.0 - p
    pmf = _power(q, trials)
    cdf = pmf
    k = 0
    ratio = p / q
    while u >= cdf and k < trials:
        pmf *= (trials - k) / (k + 1.0) * ratio
        k += 1
        cdf += pmf
    return trials - k if flip else k


@njit(cache=True)
def binomial(state: np.ndarray, trials: int, p: float) -> int:
    """Binomial(trials, p) by inversion: one uniform draw per started MAX_INVERSION_TRIALS
    trials, whatever p is, so streams that draw per region stay aligned."""
    accessed = _invert_binomial(next_unit(state), min(trials, MAX_INVERSION_TRIALS), p)
    left = trials - MAX_INVERSION_TRIALS
    while left > 0:
        chunk = min(left, MAX_INVERSION_TRIALS)
        accessed += _invert_binomial(next_unit(state), chunk, p)
        left -= chunk
    return accessed


# numba kernel: the per-sample loop stays in one flat function (the hottest loop of DAMON)
@njit(cache=True)
def sample_segment(  # noqa: C901
    n: int,
    start: np.ndarray,
    end: np.ndarray,
    target: np.ndarray,
    nr: np.ndarray,
    bp: np.ndarray,
    last: np.ndarray,
    run_address: np.ndarray,
    run_page: np.ndarray,
    run_length: np.ndarray,
    target_runs: np.ndarray,
    cumulative_p: np.ndarray,
    page_size: int,
    samples: int,
    len_window: int,
    state: np.ndarray,
) -> int:
    """Run ``samples`` sample intervals of access checks; return the largest ``nr``.

    In every sample interval the kernel checks one random page of each region
    (``damon_update_region_access_rate``): the region counts an access with probability
    p̄ = mean over its page slots of P(page touched within one sample interval) (unmapped
    slots never are). Draws are independent across samples (a new random page each time and
    memoryless accesses), so the number of accesses in ``samples`` intervals is exactly
    Binomial(samples, p̄), drawn here by ``binomial``'s inversion. ``nr_accesses_bp`` follows
    damon_moving_sum's integer arithmetic.

    Target t's pages are the runs ``target_runs[t]:target_runs[t+1]``: run r starts at
    ``run_address[r]``, holds ``run_length[r]`` pages and its first page has flat index
    ``run_page[r]`` (``sampling_index`` builds them);
    ``cumulative_p`` holds prefix sums of the pages' probabilities in flat page order with one
    leading zero per target (the sum up to flat page k of target t is ``cumulative_p[k + t]``).

    The page lookup and the draw are written out inline: calls to helpers taking arrays cost
    more than the work here, and this loop runs for every region of every aggregation (so it
    stays flat, one branch over the McCabe limit of 15).
    """
    largest = 0
    rng = state[0]
    step = np.empty(max(samples, 1))  # (trials - k) / (k + 1) of the inversion's pmf ratio
    for k in range(samples):
        step[k] = (samples - k) / (k + 1.0)
    for i in range(n):
        t = target[i]
        first_run = target_runs[t]
        end_run = target_runs[t + 1]
        first = 0
        beyond = 0
        for side in range(2):
            address = start[i] if side == 0 else end[i]
            run = first_run
            while run + 1 < end_run and run_address[run + 1] <= address:
                run += 1
            inside = (address - run_address[run] + page_size - 1) // page_size
            if inside < 0:
                inside = 0
            elif inside > run_length[run]:
                inside = run_length[run]
            if side == 0:
                first = run_page[run] + inside
            else:
                beyond = run_page[run] + inside
        slots = (end[i] - start[i]) // page_size
        p = 0.0
        if slots > 0 and beyond > first:
            p = (cumulative_p[beyond + t] - cumulative_p[first + t]) / slots
        # one SplitMix64 draw (as rng.next_unit), then inversion (as binomial)
        rng += np.uint64(GOLDEN)
        u = float(mix64(rng) >> np.uint64(11)) * TO_UNIT
        if samples > MAX_INVERSION_TRIALS:  # long stretches: exact sum of short binomials
            accessed = _invert_binomial(u, MAX_INVERSION_TRIALS, p)
            left = samples - MAX_INVERSION_TRIALS
            while left > 0:
                rng += np.uint64(GOLDEN)
                chunk = min(left, MAX_INVERSION_TRIALS)
                accessed += _invert_binomial(float(mix64(rng) >> np.uint64(11)) * TO_UNIT, chunk, p)
                left -= chunk
        elif p <= 0.0 or samples <= 0:
            accessed = 0
        elif p >= 1.0:
            accessed = samples
        else:  # _invert_binomial, with its division taken from the table
            flip = p > 0.5
            if flip:
                p = 1.0 - p
            q = 1.0 - p
            pmf = _power(q, samples)
            cdf = pmf
            k = 0
            ratio = p / q
            while u >= cdf and k < samples:
                pmf *= step[k] * ratio
                k += 1
                cdf += pmf
            accessed = samples - k if flip else k
        dropped = (last[i] * 10000) // len_window
        bp[i] = bp[i] - samples * dropped + accessed * 10000
        nr[i] += accessed
        if nr[i] > largest:
            largest = nr[i]
    state[0] = rng
    return largest


@njit(cache=True)
def merge_pass(
    n: int,
    start: np.ndarray,
    end: np.ndarray,
    target: np.ndarray,
    nr: np.ndarray,
    bp: np.ndarray,
    last: np.ndarray,
    age: np.ndarray,
    threshold: int,
    sz_limit: int,
) -> int:
    """One pass of ``damon_merge_regions_of`` over every target; return the new count.

    Age first (reset when nr_accesses moved by more than ``threshold`` since the last
    aggregation, else +1), then merge with the previous region if adjacent, similar and small
    enough; the merged region takes size-weighted integer averages.
    """
    kept = 0
    prev = -1
    for i in range(n):
        if abs(nr[i] - last[i]) > threshold:
            age[i] = 0
        else:
            age[i] += 1
        if (
            prev >= 0
            and target[prev] == target[i]
            and end[prev] == start[i]
            and abs(nr[prev] - nr[i]) <= threshold
            and (end[prev] - start[prev]) + (end[i] - start[i]) <= sz_limit
        ):
            size_left = end[prev] - start[prev]
            size_right = end[i] - start[i]
            total = size_left + size_right
            nr[prev] = (nr[prev] * size_left + nr[i] * size_right) // total
            bp[prev] = nr[prev] * 10000
            age[prev] = (age[prev] * size_left + age[i] * size_right) // total
            end[prev] = end[i]
        else:
            start[kept] = start[i]
            end[kept] = end[i]
            target[kept] = target[i]
            nr[kept] = nr[i]
            bp[kept] = bp[i]
            last[kept] = last[i]
            age[kept] = age[i]
            prev = kept
            kept += 1
    return kept


@njit(cache=True)
def merge_regions(
    n: int,
    start: np.ndarray,
    end: np.ndarray,
    target: np.ndarray,
    nr: np.ndarray,
    bp: np.ndarray,
    last: np.ndarray,
    age: np.ndarray,
    threshold: int,
    sz_limit: int,
    max_nr_regions: int,
    max_threshold: int,
) -> int:
    """``kdamond_merge_regions``: repeat passes with a doubled threshold while too many remain."""
    while True:
        n = merge_pass(n, start, end, target, nr, bp, last, age, threshold, sz_limit)
        threshold = max(1, threshold * 2)
        if not (n > max_nr_regions and threshold // 2 < max_threshold):
            return n


@njit(cache=True)
def split_regions(
    n: int,
    start: np.ndarray,
    end: np.ndarray,
    target: np.ndarray,
    nr: np.ndarray,
    bp: np.ndarray,
    last: np.ndarray,
    age: np.ndarray,
    out_start: np.ndarray,
    out_end: np.ndarray,
    out_target: np.ndarray,
    out_nr: np.ndarray,
    out_bp: np.ndarray,
    out_last: np.ndarray,
    out_age: np.ndarray,
    nr_subs: int,
    min_region: int,
    state: np.ndarray,
) -> int:
    """``damon_split_regions_of`` for every target, writing the pieces to the ``out_`` arrays.

    Up to ``nr_subs - 1`` times, while the (left) piece is larger than two minimum regions,
    cut it at a random 10..90% point aligned down to ``min_region``; the left piece is cut
    again, so a three-way split yields [left of second cut, rest of first piece, right part].
    Every piece copies the region's counters. ``out_`` arrays need room for n * nr_subs.
    """
    written = 0
    cuts = np.empty(nr_subs, dtype=np.int64)
    for i in range(n):
        size = end[i] - start[i]
        n_cuts = 0
        for _ in range(nr_subs - 1):
            if size <= 2 * min_region:
                break
            piece = ((1 + next_below(state, 9)) * size // 10) // min_region * min_region
            if piece == 0 or piece >= size:
                continue
            cuts[n_cuts] = start[i] + piece
            n_cuts += 1
            size = piece
        # cuts are decreasing: the pieces from left to right end at cuts[n_cuts-1] ... end
        left = start[i]
        for k in range(n_cuts, -1, -1):
            right = cuts[k - 1] if k > 0 else end[i]
            out_start[written] = left
            out_end[written] = right
            out_target[written] = target[i]
            out_nr[written] = nr[i]
            out_bp[written] = bp[i]
            out_last[written] = last[i]
            out_age[written] = age[i]
            written += 1
            left = right
    return written


@njit(cache=True)
def reset_aggregated(n: int, nr: np.ndarray, bp: np.ndarray, last: np.ndarray) -> None:
    """``kdamond_reset_aggregated``: fix bp to the full count, then start a new aggregation."""
    for i in range(n):
        bp[i] = nr[i] * 10000
        last[i] = nr[i]
        nr[i] = 0


@njit(cache=True)
def rescale_regions(
    n: int,
    nr: np.ndarray,
    bp: np.ndarray,
    last: np.ndarray,
    age: np.ndarray,
    old_max: int,
    new_max: int,
    old_aggr_us: int,
    new_aggr_us: int,
    aggregating: bool,
) -> None:
    """``damon_set_attrs``'s rescaling of the regions' counts and ages to new intervals (in
    an aggregation: the last count, from which bp restarts; else the count itself), with
    ``Kdamond._set_attrs``'s int64 arithmetic, which it replaces when the numbers are small."""
    for i in range(n):
        if aggregating:
            last[i] = last[i] * 10000 // old_max * new_max // 10000
            bp[i] = last[i] * 10000
            nr[i] = 0
        else:
            nr[i] = nr[i] * 10000 // old_max * new_max // 10000
            bp[i] = nr[i] * 10000
        age[i] = age[i] * old_aggr_us // new_aggr_us


def sampling_index(
    addresses: list[np.ndarray], probabilities: list[np.ndarray], page_size: int
) -> SamplingIndex:
    """Build ``sample_segment``'s page index from each target's sorted page addresses and
    per-sample access probabilities: (run_address, run_page, run_length, target_runs,
    cumulative_p)."""
    run_address, run_page, run_length, target_runs, cumulative = [], [], [], [0], []
    flat = 0
    for target_addresses, target_p in zip(addresses, probabilities, strict=True):
        target_addresses = np.asarray(target_addresses, dtype=np.int64)
        if len(target_addresses):
            breaks = np.flatnonzero(np.diff(target_addresses) != page_size) + 1
            firsts = np.concatenate(([0], breaks))
            lengths = np.diff(np.concatenate((firsts, [len(target_addresses)])))
            run_address.append(target_addresses[firsts])
            run_page.append(flat + firsts)
            run_length.append(lengths)
        else:  # an empty target still needs one (empty) run
            run_address.append(np.zeros(1, dtype=np.int64))
            run_page.append(np.array([flat]))
            run_length.append(np.zeros(1, dtype=np.int64))
        target_runs.append(target_runs[-1] + len(run_address[-1]))
        cumulative.append(np.concatenate(([0.0], np.cumsum(np.asarray(target_p, np.float64)))))
        flat += len(target_addresses)
    return SamplingIndex(
        np.concatenate(run_address).astype(np.int64),
        np.concatenate(run_page).astype(np.int64),
        np.concatenate(run_length).astype(np.int64),
        np.asarray(target_runs, dtype=np.int64),
        np.concatenate(cumulative) if cumulative else np.zeros(0),
    )


@njit(cache=True)
def total_size(n: int, start: np.ndarray, end: np.ndarray) -> int:
    """Bytes covered by the first ``n`` regions."""
    total = 0
    for i in range(n):
        total += end[i] - start[i]
    return total


@njit(cache=True)
def finite_non_negative(values: np.ndarray) -> bool:
    """Whether every value is finite and >= 0 (one pass, no temporaries)."""
    for value in values:  # noqa: SIM110 - a loop numba compiles (no generator)
        if not (math.isfinite(value) and value >= 0.0):
            return False
    return True


@njit(cache=True)
def accumulate_probabilities(
    rates: np.ndarray, node_of_page: np.ndarray, interval_s: float, out: np.ndarray
) -> None:
    """out[0] = 0, out[k+1] = out[k] + P(page k touched within ``interval_s``), where a page
    with touch rate r is touched with probability 1 - exp(-r * interval_s) if resident
    (node >= 0) and never otherwise; one pass, as this runs whenever rates change."""
    total = 0.0
    out[0] = 0.0
    last_rate = -1.0  # pages come in runs of equal rates: each run's probability once
    last_p = 0.0
    for k in range(rates.size):
        rate = rates[k]
        if node_of_page[k] >= 0 and rate > 0.0:
            if rate != last_rate:
                last_p = -math.expm1(-rate * interval_s)
                last_rate = rate
            total += last_p
        out[k + 1] = total


@njit(cache=True)
def split_pieces(nr_regions: int, last_nr_regions: int, max_nr_regions: int) -> int:
    """``kdamond_split_regions``'s choice: 0 (more than half of max_nr_regions: no split), else
    2 pieces per region, or 3 if the count is unchanged since the last split and under a
    third of max_nr_regions."""
    if nr_regions > max_nr_regions // 2:
        return 0
    if last_nr_regions == nr_regions and nr_regions < max_nr_regions // 3:
        return 3
    return 2


# ------------------------------------------------------------------------------ DAMOS pass
@njit(cache=True)
def simple_pass(n: int, live: Regions, scheme: PassParams, out: PassResults) -> int:
    """``kdamond_apply_schemes`` for one scheme without quota or filters: every region
    matching ``scheme.pattern`` (nr_accesses read from bp), in address order, is tried; unless
    the action is stat, its pages are migrated (``_migrate_region``) and its age reset. Adds
    to ``out.moved`` and ``out.totals``, writes the regions to ``out.tried`` and returns how
    many there are. ``Kdamond``'s region-by-region pass, which also handles quotas and
    filters, is the reference this is tested against.

    The structs are unpacked once: the loop and its inlined helper index arrays only."""
    start, end, target, _, bp, _, age = live
    pattern, migrate, shift = scheme.pattern, scheme.migrate, scheme.shift
    apps, paddr, phys_base = scheme.target_apps, scheme.paddr, scheme.phys_base
    dest_nodes, dest_weights, mem = scheme.dest_nodes, scheme.dest_weights, scheme.mem
    moved_matrix, totals = out.moved, out.totals
    t_target, t_start, t_end, t_nr, t_age, t_passed = out.tried
    count = 0
    for i in range(n):
        size = end[i] - start[i]
        nr = bp[i] // 10000
        seen_age = age[i]
        if not (
            pattern[0] <= size <= pattern[1]
            and pattern[2] <= nr <= pattern[3]
            and pattern[4] <= seen_age <= pattern[5]
        ):
            continue
        moved, failed, passed = 0, 0, 0
        if migrate:
            moved, failed, passed = _migrate_region(
                start[i],
                end[i],
                apps[target[i]],
                paddr,
                dest_nodes,
                dest_weights,
                mem,
                shift,
                phys_base,
                moved_matrix,
            )
            age[i] = 0
        t_target[count] = target[i]
        t_start[count] = start[i]
        t_end[count] = end[i]
        t_nr[count] = nr
        t_age[count] = seen_age
        t_passed[count] = passed
        count += 1
        totals[NR_TRIED] += 1
        totals[SZ_TRIED] += size
        totals[NR_APPLIED] += 1 if moved else 0
        totals[MOVED_PAGES] += moved
        totals[FAILED_PAGES] += failed
        totals[WALKED_PAGES] += size >> shift if migrate else 0  # stat walks nothing
        totals[SZ_FILTER_PASSED] += passed
    return count


@njit(cache=True, inline="always")
def _migrate_region(
    start: int,
    end: int,
    app: int,
    paddr: bool,
    dest_nodes: np.ndarray,
    dest_weights: np.ndarray,
    mem: tuple,
    shift: int,
    phys_base: int,
    moved_matrix: np.ndarray,
) -> tuple:
    """The ops layer's migrate action on one region: (pages moved, pages that failed, bytes
    that passed the ops filters). vaddr interleaves ``app``'s pages over the dests
    (``migrate_vaddr_range``) and counts no filter bytes (6.17/6.18); paddr moves the pages
    of the frames overlapping the region to ``dest_nodes[0]`` (target_nid), and every
    resident frame passes (no ops filters are simulated)."""
    if not paddr:
        moved, failed = memory_kernels.migrate_vaddr_range(
            app, start, end, shift, dest_nodes, dest_weights, mem, moved_matrix
        )
        return moved, failed, 0
    frame_app = mem[0]
    page = 1 << shift
    first = min(max((start - phys_base) // page, 0), frame_app.size)
    last = max(min(max(-((phys_base - end) // page), 0), frame_app.size), first)
    resident = 0
    for frame in range(first, last):
        if frame_app[frame] >= 0:
            resident += 1
    moved, failed = memory_kernels.migrate_frames(first, last, dest_nodes[0], mem, moved_matrix)
    return moved, failed, resident * page


@njit(cache=True)
def hot_score(
    nr_accesses: int, age: int, max_nr_accesses: int, aggr_us: int, nr_permil: int, age_permil: int
) -> int:
    """``damon_hot_score`` (``tierenv.damon.quota.hot_score``, compiled)."""
    freq = nr_accesses * 100 // max_nr_accesses
    age_seconds = age * aggr_us // 1_000_000
    age_in_log = 0
    while age_seconds > 0 and age_in_log < 32:  # bit length, capped at MAX_AGE_IN_LOG
        age_seconds >>= 1
        age_in_log += 1
    if freq == 0:
        age_in_log = -age_in_log
    age_sub = (age_in_log + 32) * 100 // 32 // 2
    hotness = nr_permil * freq + age_permil * age_sub
    if nr_permil + age_permil:
        hotness //= nr_permil + age_permil
    return hotness * DAMOS_MAX_SCORE // 100


@njit(cache=True, inline="always")
def _score(nr: int, age: int, quota: QuotaParams) -> int:
    """The ops' ``get_scheme_score`` of a region."""
    if quota.score == SCORE_FIXED:
        return DAMOS_MAX_SCORE
    hot = hot_score(
        nr, age, quota.max_nr_accesses, quota.aggr_us, quota.nr_permil, quota.age_permil
    )
    return hot if quota.score == SCORE_HOT else DAMOS_MAX_SCORE - hot


@njit(cache=True)
def _split_at(n: int, live: Regions, index: int, size: int) -> None:
    """``damon_split_region_at`` (``RegionTable.split_at``): region ``index`` keeps its first
    ``size`` bytes, a copy of it covering the rest goes right after it (room for n + 1)."""
    for column in live:
        for k in range(n, index + 1, -1):
            column[k] = column[k - 1]
        column[index + 1] = column[index]
    live.start[index + 1] = live.start[index] + size
    live.end[index] = live.start[index] + size


@njit(cache=True)
def _matches(i: int, live: Regions, pattern: np.ndarray, with_size: bool) -> bool:
    nr = live.bp[i] // 10000
    age = live.age[i]
    if not (pattern[2] <= nr <= pattern[3] and pattern[4] <= age <= pattern[5]):
        return False
    size = live.end[i] - live.start[i]
    return not with_size or pattern[0] <= size <= pattern[1]


@njit(cache=True)
def _candidates(
    n: int, live: Regions, pattern: np.ndarray, quota: QuotaParams, values: np.ndarray
) -> np.ndarray:
    """``Kdamond._candidates`` after the window roll: set the min_score histogram cut
    (``quota.min_score_for`` over the pattern-matching regions, sizes added in float64 in
    region order as ``np.bincount`` does) and return the regions the pass may act on."""
    scores = np.empty(n, dtype=np.int64)
    histogram = np.zeros(DAMOS_MAX_SCORE + 1)
    highest = -1
    for i in range(n):
        scores[i] = _score(live.nr[i], live.age[i], quota)
        if _matches(i, live, pattern, True):
            histogram[scores[i]] += float(live.end[i] - live.start[i])
            highest = max(highest, scores[i])
    esz = values[ESZ]
    min_score = 0
    if highest >= 0:
        cumulated = 0
        min_score = highest
        while True:
            cumulated += int(histogram[min_score])
            if cumulated >= esz or min_score == 0:
                break
            min_score -= 1
    values[MIN_SCORE] = min_score
    candidate = np.empty(n, dtype=np.bool_)
    for i in range(n):
        candidate[i] = _matches(i, live, pattern, False) and (not esz or scores[i] >= min_score)
    charge_target = values[CHARGE_TARGET_FROM]
    if charge_target >= 0:  # Kdamond._charge_resolution_index
        resolution = -1
        last_in_target = -1
        for i in range(n):
            if live.target[i] == charge_target:
                last_in_target = i
                if resolution < 0 and live.end[i] > values[CHARGE_ADDR_FROM]:
                    resolution = i
        if last_in_target < 0:
            resolution = 0
        elif resolution < 0 or not values[CHARGE_ADDR_FROM]:
            resolution = last_in_target
        for i in range(min(resolution, n)):
            candidate[i] = False
        for i in range(resolution, min(resolution + 2, n)):
            candidate[i] = True
    return candidate


@njit(cache=True)
def _skip_charged(n: int, live: Regions, i: int, values: np.ndarray, min_region: int) -> tuple:
    """``Kdamond._skip_charged_region``: (skip, region index, live regions)."""
    charge_target = values[CHARGE_TARGET_FROM]
    if charge_target < 0:
        return False, i, n
    target = live.target[i]
    if target != charge_target:
        return True, i, n
    if i + 1 >= n or live.target[i + 1] != target:
        values[CHARGE_TARGET_FROM] = -1
        values[CHARGE_ADDR_FROM] = 0
        return True, i, n
    addr_from = values[CHARGE_ADDR_FROM]
    start, end = live.start[i], live.end[i]
    if addr_from and end <= addr_from:
        return True, i, n
    if addr_from and start < addr_from:
        skip_size = (addr_from - start) // min_region * min_region
        if not skip_size:
            if end - start <= min_region:
                return True, i, n
            skip_size = min_region
        _split_at(n, live, i, skip_size)
        n += 1
        i += 1
    values[CHARGE_TARGET_FROM] = -1
    values[CHARGE_ADDR_FROM] = 0
    return False, i, n


@njit(cache=True)
def quota_pass(
    n: int,
    live: Regions,
    scheme: PassParams,
    quota: QuotaParams,
    state: QuotaState,
    out: PassResults,
    now_us: float,
) -> tuple:
    """``kdamond_apply_schemes`` for one scheme with a quota and no filters: returns (live
    regions, regions tried). ``Kdamond``'s region-by-region pass (``_candidates``,
    ``_apply_to_region``) is the reference this follows step for step and is tested against.

    With ``quota.roll`` the charge window rolls first at ``now_us`` (a size-only quota:
    ``effective_quota`` is ``quota.sz``); then the regions' scores set the min_score cut, and
    the candidates are visited in address order until the quota is used up: charged regions
    of the last window skipped, the access pattern and score checked, the last region cut to
    the quota (a split), the action applied and charged. The live arrays need room for
    n + 2 regions (one charge-skip split and one quota cut at most)."""
    values = state.values
    if quota.roll and now_us >= state.charged_from_us[0] + quota.reset_us:
        if values[ESZ] and values[CHARGED_SZ] >= values[ESZ]:
            values[QT_EXCEEDS] += 1
        values[TOTAL_CHARGED_SZ] += values[CHARGED_SZ]
        state.charged_from_us[0] = now_us
        values[CHARGED_SZ] = 0
        values[ESZ] = quota.sz
    pattern, migrate, shift = scheme.pattern, scheme.migrate, scheme.shift
    moved_matrix, totals = out.moved, out.totals
    t_target, t_start, t_end, t_nr, t_age, t_passed = out.tried
    min_region = quota.min_region
    candidate = _candidates(n, live, pattern, quota, values)
    esz = values[ESZ]
    min_score = values[MIN_SCORE]
    count = 0
    inserted = 0
    for original in range(candidate.size):
        if not candidate[original]:
            continue
        if esz and values[CHARGED_SZ] >= esz:
            break
        skip, i, n = _skip_charged(n, live, original + inserted, values, min_region)
        inserted = n - candidate.size
        if skip or not _matches(i, live, pattern, True):
            continue
        if esz and _score(live.nr[i], live.age[i], quota) < min_score:
            continue
        size = live.end[i] - live.start[i]
        if esz and values[CHARGED_SZ] + size > esz:
            size = (esz - values[CHARGED_SZ]) // min_region * min_region
            if not size:
                totals[NR_TRIED] += 1  # tried; nothing charged
                continue
            _split_at(n, live, i, size)
            n += 1
            inserted += 1
        target, start, end = live.target[i], live.start[i], live.end[i]
        nr_seen, age_seen = live.bp[i] // 10000, live.age[i]
        moved, failed, passed = 0, 0, 0
        if migrate:
            moved, failed, passed = _migrate_region(
                start,
                end,
                scheme.target_apps[target],
                scheme.paddr,
                scheme.dest_nodes,
                scheme.dest_weights,
                scheme.mem,
                shift,
                scheme.phys_base,
                moved_matrix,
            )
        totals[NR_TRIED] += 1
        totals[SZ_TRIED] += size
        totals[NR_APPLIED] += 1 if moved else 0
        totals[MOVED_PAGES] += moved
        totals[FAILED_PAGES] += failed
        totals[WALKED_PAGES] += (end - start) >> shift if migrate else 0  # stat walks nothing
        totals[SZ_FILTER_PASSED] += passed
        values[CHARGED_SZ] += size
        if esz and values[CHARGED_SZ] >= esz:
            values[CHARGE_TARGET_FROM] = target
            values[CHARGE_ADDR_FROM] = end + 1
        if migrate:
            live.age[i] = 0
        t_target[count] = target
        t_start[count] = start
        t_end[count] = end
        t_nr[count] = nr_seen
        t_age[count] = age_seen
        t_passed[count] = passed
        count += 1
    return n, count


# ------------------------------------------------------------------- whole aggregations
def run_aggregations(
    count: int,
    first_samples: int,
    n: int,
    last_nr_regions: int,
    params: MonitorParams,
    buffers: MonitorBuffers,
    index: SamplingIndex,
    scheme: PassParams,
    out: PassResults,
    quota: QuotaParams | None = None,
    quota_state: QuotaState | None = None,
) -> Aggregated:
    """``count`` whole aggregation intervals in which no update or tuning is due (or only
    updates that change nothing), the first after ``first_samples`` sample intervals:
    sample, merge, [the scheme's pass where due], keep the snapshot, reset, split
    (``kdamond_fn`` without the parts that have nothing to do). One call replaces ``count``
    round trips through Python.

    ``buffers.live`` holds ``n`` regions; it and ``buffers.spare`` have room for 1.5x
    max_nr_regions + 2 and for 3x the current count. ``scheme`` (if enabled) runs into
    ``out`` at the aggregation ends where it is due: ``simple_pass``, or ``quota_pass`` when
    ``quota`` is given and enabled (a size-only quota whose charge window the loop rolls,
    its state in ``quota_state``).

    This runs once or more per simulated second and application, so the structs cross into
    compiled code as plain tuples (``_run_aggregations``): numba takes about a microsecond to
    type each NamedTuple argument, several times a plain tuple's cost, which would double
    this call's overhead.
    """
    live, spare, snapshot, rng = buffers
    if quota is None or quota_state is None:
        quota, quota_state = NO_QUOTA, QuotaState.empty()
    done = _run_aggregations(
        count,
        first_samples,
        n,
        last_nr_regions,
        tuple(params),
        (tuple(live), tuple(spare), tuple(snapshot), rng),
        tuple(index),
        tuple(scheme),
        (out.moved, out.totals, tuple(out.tried)),
        tuple(quota),
        tuple(quota_state),
    )
    return Aggregated(*done)


# ``run_aggregations``'s quota when its pass has none (the types of a real one)
NO_QUOTA = QuotaParams(False, False, 0, 0, SCORE_FIXED, 1, 1, 0, 0, 1, 1, 0.0)


@njit(cache=True)
def _run_aggregations(
    count: int,
    first_samples: int,
    n: int,
    last_nr_regions: int,
    params: tuple,
    buffers: tuple,
    index: tuple,
    scheme: tuple,
    out: tuple,
    quota: tuple,
    quota_state: tuple,
) -> tuple:
    """``run_aggregations``'s loop, on the structs as plain tuples (in their fields' order).
    It unpacks them once and works on plain arrays, swapping the live and spare columns as
    such: every array taken out of a struct inside the loop would cost reference counting."""
    live, spare, snapshot, rng = buffers
    a_start, a_end, a_target, a_nr, a_bp, a_last, a_age = live
    b_start, b_end, b_target, b_nr, b_bp, b_last, b_age = spare
    s_target, s_start, s_end, s_nr, s_age = snapshot
    run_address, run_page, run_length, target_runs, cumulative_p = index
    min_region, aggr_samples, len_window, sz_limit, max_nr_regions = params
    pass_params = PassParams(*scheme)
    pass_results = PassResults(out[0], out[1], Tried(*out[2]))
    quota_params = QuotaParams(*quota)
    state = QuotaState(*quota_state)
    swapped = False
    snapshot_n = 0
    tried_n = -1
    next_apply = pass_params.next_apply  # counted, like passed, from the call's start
    passed = 0
    for j in range(count):
        samples = first_samples if j == 0 else aggr_samples
        largest = sample_segment(
            n,
            a_start,
            a_end,
            a_target,
            a_nr,
            a_bp,
            a_last,
            run_address,
            run_page,
            run_length,
            target_runs,
            cumulative_p,
            min_region,
            samples,
            len_window,
            rng,
        )
        passed += samples
        n = merge_regions(
            n,
            a_start,
            a_end,
            a_target,
            a_nr,
            a_bp,
            a_last,
            a_age,
            largest // 10,
            sz_limit,
            max_nr_regions,
            aggr_samples,
        )
        if pass_params.enabled and passed >= next_apply:
            regions = Regions(a_start, a_end, a_target, a_nr, a_bp, a_last, a_age)
            if quota_params.enabled:
                now_us = quota_params.now_us + passed * quota_params.sample_us
                n, tried_n = quota_pass(
                    n, regions, pass_params, quota_params, state, pass_results, now_us
                )
            else:
                tried_n = simple_pass(n, regions, pass_params, pass_results)
            next_apply = passed + pass_params.apply_samples
        for i in range(n):
            s_target[i] = a_target[i]
            s_start[i] = a_start[i]
            s_end[i] = a_end[i]
            s_nr[i] = a_nr[i]
            s_age[i] = a_age[i]
        snapshot_n = n
        reset_aggregated(n, a_nr, a_bp, a_last)
        pieces = split_pieces(n, last_nr_regions, max_nr_regions)
        if pieces:
            written = split_regions(
                n,
                a_start,
                a_end,
                a_target,
                a_nr,
                a_bp,
                a_last,
                a_age,
                b_start,
                b_end,
                b_target,
                b_nr,
                b_bp,
                b_last,
                b_age,
                pieces,
                min_region,
                rng,
            )
            last_nr_regions = n
            n = written
            a_start, b_start = b_start, a_start
            a_end, b_end = b_end, a_end
            a_target, b_target = b_target, a_target
            a_nr, b_nr = b_nr, a_nr
            a_bp, b_bp = b_bp, a_bp
            a_last, b_last = b_last, a_last
            a_age, b_age = b_age, a_age
            swapped = not swapped
    return n, last_nr_regions, swapped, snapshot_n, next_apply - passed, tried_n
