"""How an application's memory accesses spread over its pages.

A distribution gives every page of the working set a share of the application's memory
accesses (shares sum to 1). Real heaps keep related objects together, so hotness comes in
contiguous stretches rather than page by page; DAMON's region-based monitoring depends on
that locality, so every distribution here lays its hotness out in chunks of adjacent pages:

- ``uniform``: every page the same share (a random-access table).
- ``sequential``: a stream sweeping the working set; over a control interval every page gets
  the same share, like ``uniform``, but the kind is kept so that reports can tell them apart.
- ``zipf``: chunks of ``chunk_pages`` pages ranked by popularity with a Zipf law of exponent
  ``exponent``; ranks are placed on chunks in a seeded random order (a heap's popular
  objects are not sorted by address).
- ``hotcold``: a contiguous hot set of ``hot_fraction`` of the pages, starting at
  ``hot_offset`` (a fraction of the working set, wrapping around), takes ``hot_share`` of the
  accesses; the rest is spread over the cold pages. Moving ``hot_offset`` moves the hot set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("uniform", "sequential", "zipf", "hotcold")


@dataclass(frozen=True)
class Distribution:
    """One access distribution; fields not used by ``kind`` keep their defaults."""

    kind: str = "uniform"
    exponent: float = 1.0  # zipf
    chunk_pages: int = 16  # zipf: pages per popularity chunk
    hot_fraction: float = 0.1  # hotcold
    hot_share: float = 0.9  # hotcold
    hot_offset: float = 0.0  # hotcold
    seed: int = 0  # zipf: placement of ranks on chunks

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown distribution {self.kind!r}; expected one of {KINDS}")
        _check(0.0 < self.exponent <= 10.0, "exponent", self.exponent, "in (0, 10]")
        _check(self.chunk_pages >= 1, "chunk_pages", self.chunk_pages, ">= 1")
        _check(0.0 < self.hot_fraction <= 1.0, "hot_fraction", self.hot_fraction, "in (0, 1]")
        _check(0.0 <= self.hot_share <= 1.0, "hot_share", self.hot_share, "in [0, 1]")
        _check(0.0 <= self.hot_offset < 1.0, "hot_offset", self.hot_offset, "in [0, 1)")

    def page_shares(self, n_pages: int) -> np.ndarray:
        """Each page's share of the accesses (sums to 1) over ``n_pages`` pages."""
        if n_pages <= 0:
            return np.zeros(0)
        if self.kind in ("uniform", "sequential"):
            return np.full(n_pages, 1.0 / n_pages)
        if self.kind == "zipf":
            n_chunks = -(-n_pages // self.chunk_pages)
            popularity = 1.0 / np.arange(1, n_chunks + 1) ** self.exponent
            order = np.random.default_rng(self.seed).permutation(n_chunks)
            chunk_share = popularity[order]
            shares = np.repeat(chunk_share, self.chunk_pages)[:n_pages]
            return shares / shares.sum()
        return self._hotcold(n_pages)

    def hot_pages(self, n_pages: int) -> np.ndarray:
        """Mask of the hot set (hotcold), or of the pages that take the top 80% of accesses."""
        if self.kind == "hotcold":
            return self._hot_mask(n_pages)
        shares = self.page_shares(n_pages)
        order = np.argsort(-shares, kind="stable")
        within = np.cumsum(shares[order]) <= 0.8
        within[0] = True
        mask = np.zeros(n_pages, dtype=bool)
        mask[order[within]] = True
        return mask

    def _hot_mask(self, n_pages: int) -> np.ndarray:
        n_hot = min(max(round(self.hot_fraction * n_pages), 1), n_pages)
        first = int(self.hot_offset * n_pages)
        mask = np.zeros(n_pages, dtype=bool)
        mask[(first + np.arange(n_hot)) % n_pages] = True
        return mask

    def _hotcold(self, n_pages: int) -> np.ndarray:
        hot = self._hot_mask(n_pages)
        n_hot = int(hot.sum())
        n_cold = n_pages - n_hot
        if n_cold == 0:
            return np.full(n_pages, 1.0 / n_pages)
        shares = np.where(hot, self.hot_share / n_hot, (1.0 - self.hot_share) / n_cold)
        return shares / shares.sum()


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {value!r} is out of range; expected {expected}")
