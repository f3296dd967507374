"""The simulator's random stream: SplitMix64, identical in compiled and pure Python code.

DAMON draws random numbers for every region at every sample (the page it checks) and at every
aggregation (where it splits). The compiled kernels and the pure reference implementation
must draw the same numbers in the same order so that tests can compare them exactly, so both
use this small generator instead of numpy's. Its state is one uint64 held in a length-1 array
that the kernels advance in place; a kdamond seeds it from ``numpy.random.SeedSequence``.
"""

from __future__ import annotations

import numpy as np

from tierenv.damon.jit import njit

_MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
TO_UNIT = 1.0 / (1 << 53)


def new_state(seed: int | np.random.SeedSequence) -> np.ndarray:
    """A generator state (uint64[1]) from a seed or a SeedSequence."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return sequence.generate_state(1, dtype=np.uint64)


@njit(cache=True)
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64's output for the state value ``z`` (scalar in, scalar out, so compiled
    loops can keep the state in a local and call this without array overhead)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def next_u64(state: np.ndarray) -> np.uint64:
    state[0] += np.uint64(GOLDEN)
    return mix64(state[0])


@njit(cache=True)
def next_unit(state: np.ndarray) -> float:
    """Uniform in [0, 1) with 53 random bits."""
    return float(next_u64(state) >> np.uint64(11)) * TO_UNIT


@njit(cache=True)
def next_below(state: np.ndarray, bound: int) -> int:
    """Uniform integer in [0, bound) (like the kernel's get_random_u32_below)."""
    return int(next_unit(state) * bound)


class PyRandom:
    """The same stream in plain Python integers, for the reference implementation."""

    def __init__(self, state: np.ndarray) -> None:
        self.state = int(state[0])

    def u64(self) -> int:
        self.state = (self.state + GOLDEN) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * MIX1) & _MASK
        z = ((z ^ (z >> 27)) * MIX2) & _MASK
        return z ^ (z >> 31)

    def unit(self) -> float:
        return float(self.u64() >> 11) * TO_UNIT

    def below(self, bound: int) -> int:
        return int(self.unit() * bound)
