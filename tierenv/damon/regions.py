"""The monitor's regions: flat arrays, ordered by target and then by address.

The kernel keeps regions in a linked list per target. Here they live in parallel int64
arrays with spare capacity, so the compiled kernels in ``tierenv.damon.kernels`` can sweep
them, while DAMOS's rarer edits (a split at a quota boundary) shift the tail in place.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("start", "end", "target", "nr", "bp", "last", "age")
# one array per entry of FIELDS, in that order (what the compiled kernels take)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class RegionTable:
    """Regions of one kdamond context. ``n`` entries are live; views are ``table.start`` etc."""

    def __init__(self, capacity: int = 64) -> None:
        self.n = 0
        self._arrays = {name: np.zeros(max(capacity, 8), dtype=np.int64) for name in FIELDS}
        self._spare = {name: np.zeros_like(array) for name, array in self._arrays.items()}

    # live views -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def column(self, name: str) -> np.ndarray:
        return self._arrays[name][: self.n]

    @property
    def start(self) -> np.ndarray:
        return self.column("start")

    @property
    def end(self) -> np.ndarray:
        return self.column("end")

    @property
    def target(self) -> np.ndarray:
        return self.column("target")

    @property
    def nr_accesses(self) -> np.ndarray:
        return self.column("nr")

    @property
    def nr_accesses_bp(self) -> np.ndarray:
        return self.column("bp")

    @property
    def last_nr_accesses(self) -> np.ndarray:
        return self.column("last")

    @property
    def age(self) -> np.ndarray:
        return self.column("age")

    def arrays(self) -> Arrays:
        """The full-capacity arrays in FIELDS order, for the compiled kernels."""
        return _in_order(self._arrays)

    def spare_arrays(self) -> Arrays:
        return _in_order(self._spare)

    def swap_spare(self, n: int) -> None:
        """Make the spare arrays (just written by a kernel) the live ones."""
        self._arrays, self._spare = self._spare, self._arrays
        self.n = n

    # capacity ----------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return len(self._arrays["start"])

    def reserve(self, needed: int) -> None:
        """Grow (doubling) so that ``needed`` entries fit, keeping the live ones."""
        if needed <= self.capacity:
            return
        size = self.capacity
        while size < needed:
            size *= 2
        for store in (self._arrays, self._spare):
            for name, array in store.items():
                grown = np.zeros(size, dtype=np.int64)
                grown[: self.n] = array[: self.n]
                store[name] = grown

    # edits -----------------------------------------------------------------------------
    def replace(self, starts, ends, targets) -> None:
        """Set fresh regions (all counters zero), e.g. at monitoring start."""
        starts = np.asarray(starts, dtype=np.int64)
        self.reserve(len(starts))
        self.n = len(starts)
        for name in FIELDS:
            self._arrays[name][: self.n] = 0
        self._arrays["start"][: self.n] = starts
        self._arrays["end"][: self.n] = np.asarray(ends, dtype=np.int64)
        self._arrays["target"][: self.n] = np.asarray(targets, dtype=np.int64)

    def split_at(self, index: int, size: int) -> None:
        """``damon_split_region_at``: region ``index`` keeps its first ``size`` bytes; a copy
        of its counters covering the rest is inserted right after it."""
        self.reserve(self.n + 1)
        n = self.n
        for name in FIELDS:
            array = self._arrays[name]
            array[index + 2 : n + 1] = array[index + 1 : n]
            array[index + 1] = array[index]
        self._arrays["start"][index + 1] = self._arrays["start"][index] + size
        self._arrays["end"][index] = self._arrays["start"][index] + size
        self.n = n + 1

    def copy(self) -> RegionTable:
        clone = RegionTable(self.capacity)
        clone.n = self.n
        for name in FIELDS:
            clone._arrays[name][:] = self._arrays[name]
        return clone

    def records(self) -> list[dict[str, int]]:
        """Live regions as dicts (for reports and tests)."""
        columns = {name: self.column(name).tolist() for name in FIELDS}
        return [{name: columns[name][i] for name in FIELDS} for i in range(self.n)]


def _in_order(arrays: dict[str, np.ndarray]) -> Arrays:
    return (
        arrays["start"],
        arrays["end"],
        arrays["target"],
        arrays["nr"],
        arrays["bp"],
        arrays["last"],
        arrays["age"],
    )
