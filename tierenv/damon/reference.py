"""Pure-Python reference of the monitor's inner loops, written after the kernel's C code.

Regions are records in a list, as the kernel keeps them in a linked list, and every step
follows the named kernel function line by line with Python integers. It is slow and exists
so that tests can check the compiled kernels in ``tierenv.damon.kernels`` against a second,
independently written implementation drawing the same random numbers (``PyRandom``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from tierenv.damon.rng import PyRandom


@dataclass
class Region:
    start: int
    end: int
    target: int
    nr_accesses: int = 0
    nr_accesses_bp: int = 0
    last_nr_accesses: int = 0
    age: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


def _power(base: float, exponent: int) -> float:
    result = 1.0
    while exponent:
        if exponent & 1:
            result *= base
        base *= base
        exponent >>= 1
    return result


MAX_INVERSION_TRIALS = 512


def binomial(rng: PyRandom, trials: int, p: float) -> int:
    """A sum of inversions of at most MAX_INVERSION_TRIALS trials, one uniform each."""
    accessed = _invert(rng.unit(), min(trials, MAX_INVERSION_TRIALS), p)
    left = trials - MAX_INVERSION_TRIALS
    while left > 0:
        chunk = min(left, MAX_INVERSION_TRIALS)
        accessed += _invert(rng.unit(), chunk, p)
        left -= chunk
    return accessed


def _invert(u: float, trials: int, p: float) -> int:
    """Inversion from one uniform, walking from the likelier end (k = trials - Bin(1-p))."""
    if p <= 0.0 or trials <= 0:
        return 0
    if p >= 1.0:
        return trials
    flip = p > 0.5
    if flip:
        p = 1.0 - p
    q = 1.0 - p
    pmf = _power(q, trials)
    cdf, k, ratio = pmf, 0, p / q
    while u >= cdf and k < trials:
        pmf *= (trials - k) / (k + 1.0) * ratio
        k += 1
        cdf += pmf
    return trials - k if flip else k


def sample(
    regions: list[Region],
    pages: list[list[tuple[int, float]]],
    page_size: int,
    samples: int,
    len_window: int,
    rng: PyRandom,
) -> int:
    """``samples`` rounds of ``damon_update_region_access_rate``; ``pages[t]`` = sorted
    (address, P(accessed in one sample interval)) of target t. Returns the largest count."""
    addresses = [[a for a, _ in target] for target in pages]
    cumulative = []  # summed in page order, as the compiled prefix sums are
    for target in pages:
        sums = [0.0]
        for _, p in target:
            sums.append(sums[-1] + p)
        cumulative.append(sums)
    largest = 0
    for r in regions:
        first = bisect.bisect_left(addresses[r.target], r.start)
        beyond = bisect.bisect_left(addresses[r.target], r.end)
        slots = r.size // page_size
        total = 0.0
        if slots > 0 and beyond > first:
            total = (cumulative[r.target][beyond] - cumulative[r.target][first]) / slots
        accessed = binomial(rng, samples, total)
        r.nr_accesses_bp += -samples * ((r.last_nr_accesses * 10000) // len_window)
        r.nr_accesses_bp += accessed * 10000
        r.nr_accesses += accessed
        largest = max(largest, r.nr_accesses)
    return largest


def merge_regions(
    regions: list[Region], threshold: int, sz_limit: int, max_nr_regions: int, max_threshold: int
) -> list[Region]:
    """``kdamond_merge_regions`` / ``damon_merge_regions_of`` / ``damon_merge_two_regions``."""
    while True:
        merged: list[Region] = []
        for r in regions:
            if abs(r.nr_accesses - r.last_nr_accesses) > threshold:
                r.age = 0
            else:
                r.age += 1
            prev = merged[-1] if merged else None
            if (
                prev is not None
                and prev.target == r.target
                and prev.end == r.start
                and abs(prev.nr_accesses - r.nr_accesses) <= threshold
                and prev.size + r.size <= sz_limit
            ):
                sz_l, sz_r = prev.size, r.size
                prev.nr_accesses = (prev.nr_accesses * sz_l + r.nr_accesses * sz_r) // (sz_l + sz_r)
                prev.nr_accesses_bp = prev.nr_accesses * 10000
                prev.age = (prev.age * sz_l + r.age * sz_r) // (sz_l + sz_r)
                prev.end = r.end
            else:
                merged.append(r)
        regions = merged
        threshold = max(1, threshold * 2)
        if not (len(regions) > max_nr_regions and threshold // 2 < max_threshold):
            return regions


def split_regions(
    regions: list[Region], nr_subs: int, min_region: int, rng: PyRandom
) -> list[Region]:
    """``damon_split_regions_of``: the left piece keeps being cut; new pieces go right of it."""
    out: list[Region] = []
    for r in regions:
        pieces = [r]
        sz_region = r.size
        for _ in range(nr_subs - 1):
            if sz_region <= 2 * min_region:
                break
            sz_sub = ((1 + rng.below(9)) * sz_region // 10) // min_region * min_region
            if sz_sub == 0 or sz_sub >= sz_region:
                continue
            left = pieces[0]
            new = Region(
                left.start + sz_sub,
                left.end,
                left.target,
                left.nr_accesses,
                left.nr_accesses_bp,
                left.last_nr_accesses,
                left.age,
            )
            left.end = new.start
            pieces.insert(1, new)
            sz_region = sz_sub
        out.extend(pieces)
    return out


def reset_aggregated(regions: list[Region]) -> None:
    for r in regions:
        r.nr_accesses_bp = r.nr_accesses * 10000
        r.last_nr_accesses = r.nr_accesses
        r.nr_accesses = 0
