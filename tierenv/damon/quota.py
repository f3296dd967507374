"""DAMOS quotas: effective size, goal feedback, and the hotness scores that prioritise regions.

Ports of mm/damon/core.c (``damon_feed_loop_next_input``, ``damos_quota_score``,
``damos_set_effective_quota``, the min_score histogram cut of ``damos_adjust_quota``) and
mm/damon/ops-common.c (``damon_hot_score``, ``damon_cold_score``), with the kernel's integer
arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tierenv.damon.abi import ULONG_MAX

DAMOS_MAX_SCORE = 99
MAX_SUBSCORE = 100
MAX_AGE_IN_LOG = 32
FEED_GOAL = 10000
FEED_MIN_INPUT = 10000
KERNEL_PAGE_SIZE = 4096  # PAGE_SIZE in the time-quota's no-history throughput guess


def feed_loop_next_input(last_input: int, score: int) -> int:
    """``damon_feed_loop_next_input``: scale the input by (2 - score/10000), at least 10000."""
    if score == FEED_GOAL:
        return last_input
    if score >= FEED_GOAL * 2:
        return FEED_MIN_INPUT
    over = score > FEED_GOAL
    diff = score - FEED_GOAL if over else FEED_GOAL - score
    if last_input < ULONG_MAX // diff:
        compensation = last_input * diff // FEED_GOAL
    else:
        compensation = last_input // FEED_GOAL * diff
    if over:
        return max(last_input - compensation, FEED_MIN_INPUT)
    if last_input < ULONG_MAX - compensation:
        return last_input + compensation
    return ULONG_MAX


def hot_scores(
    nr_accesses: np.ndarray,
    age: np.ndarray,
    max_nr_accesses: int,
    aggr_us: int,
    nr_accesses_permil: int,
    age_permil: int,
) -> np.ndarray:
    """``damon_hot_score`` for every region (0..99); ``sz_permil`` is ignored, as in the kernel."""
    nr_accesses = np.asarray(nr_accesses, dtype=np.int64)
    freq = nr_accesses * MAX_SUBSCORE // max_nr_accesses
    age_seconds = np.asarray(age, dtype=np.int64) * aggr_us // 1_000_000
    # bit length of age_seconds, capped: the number of right shifts that reach zero
    _, exponent = np.frexp(age_seconds.astype(np.float64))
    age_in_log = np.minimum(np.where(age_seconds > 0, exponent, 0), MAX_AGE_IN_LOG)
    age_in_log = np.where(freq == 0, -age_in_log, age_in_log)  # old and idle: colder
    age_sub = (age_in_log + MAX_AGE_IN_LOG) * MAX_SUBSCORE // MAX_AGE_IN_LOG // 2
    hotness = nr_accesses_permil * freq + age_permil * age_sub
    if nr_accesses_permil + age_permil:
        hotness = hotness // (nr_accesses_permil + age_permil)
    return (hotness * DAMOS_MAX_SCORE // MAX_SUBSCORE).astype(np.int64)


def hot_score(
    nr_accesses: int,
    age: int,
    max_nr_accesses: int,
    aggr_us: int,
    nr_accesses_permil: int,
    age_permil: int,
) -> int:
    """``damon_hot_score`` of one region in plain integers (the vectorised ``hot_scores`` is
    tested against it)."""
    freq = nr_accesses * MAX_SUBSCORE // max_nr_accesses
    age_in_log = min((age * aggr_us // 1_000_000).bit_length(), MAX_AGE_IN_LOG)
    if freq == 0:
        age_in_log = -age_in_log
    age_sub = (age_in_log + MAX_AGE_IN_LOG) * MAX_SUBSCORE // MAX_AGE_IN_LOG // 2
    hotness = nr_accesses_permil * freq + age_permil * age_sub
    if nr_accesses_permil + age_permil:
        hotness //= nr_accesses_permil + age_permil
    return hotness * DAMOS_MAX_SCORE // MAX_SUBSCORE


def min_score_for(scores: np.ndarray, sizes: np.ndarray, esz: int) -> int:
    """The histogram walk of ``damos_adjust_quota``: the lowest score whose hotter regions
    (pattern-matching ones, passed in) still fit in ``esz`` bytes, or 0."""
    if len(scores) == 0:
        return 0
    histogram = np.bincount(scores, weights=sizes.astype(np.float64), minlength=DAMOS_MAX_SCORE + 1)
    cumulated = 0
    score = int(scores.max())
    while True:
        cumulated += int(histogram[score])
        if cumulated >= esz or score == 0:
            return score
        score -= 1


@dataclass
class QuotaState:
    """Per-scheme quota bookkeeping of ``struct damos_quota`` (runtime part)."""

    esz: int = 0
    esz_bp: int = 0
    charged_sz: int = 0
    charged_from_us: float = float("-inf")
    total_charged_sz: int = 0
    total_charged_ns: int = 0
    min_score: int = 0
    charge_target_from: int = -1
    charge_addr_from: int = 0
    goal_values: list[int] = field(default_factory=list)

    @property
    def exhausted(self) -> bool:
        return bool(self.esz) and self.charged_sz >= self.esz


def effective_quota(state: QuotaState, ms: int, sz: int, goal_score: int | None) -> int:
    """``damos_set_effective_quota``; ``goal_score`` is None when the scheme has no goals.
    Updates ``state.esz_bp`` like the kernel and returns the new esz."""
    if not ms and goal_score is None:
        return sz
    esz = ULONG_MAX
    if goal_score is not None:
        state.esz_bp = feed_loop_next_input(max(state.esz_bp, 10000), goal_score)
        esz = state.esz_bp // 10000
    if ms:
        if state.total_charged_ns:
            throughput = state.total_charged_sz * 1_000_000 // state.total_charged_ns
        else:
            throughput = KERNEL_PAGE_SIZE * 1024
        esz = min(throughput * ms, esz)
    if sz and sz < esz:
        esz = sz
    return esz
