"""What migrating pages costs: CPU time, and the memory traffic the copies add to each node.

Calibration: ``move_pages()`` between two nodes of an AMD Zen3 EPYC, single-threaded folio
copy, moves 3.31–3.55 GB/s with 4 KiB pages and 10.9–11.0 GB/s with 2 MiB THPs (Shivank Garg,
AMD, "Accelerate page migration with batch copying and hardware offload", RFC v4 cover letter
and v5 reply, 2026). The model ``t = n_folios * fixed + bytes / copy_bandwidth`` with a fixed
0.85 µs per folio (unmap, TLB flush, rmap and refcount work: the same series finds the folio
copy only about a quarter of the migration time) and an 11 GB/s copy gives 3.35 GB/s
and 10.95 GB/s. A copy reads the source node and writes the destination node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tierenv.damon.jit import njit


@dataclass(frozen=True)
class MigrationCost:
    """Time per folio = ``fixed_us_per_folio`` + folio bytes / ``copy_gbps`` (one thread)."""

    fixed_us_per_folio: float = 0.85
    copy_gbps: float = 11.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fixed_us_per_folio) and self.fixed_us_per_folio >= 0):
            raise ValueError(
                f"fixed_us_per_folio must be finite and >= 0, got {self.fixed_us_per_folio!r}"
            )
        if not (math.isfinite(self.copy_gbps) and self.copy_gbps > 0):
            raise ValueError(f"copy_gbps must be finite and > 0, got {self.copy_gbps!r}")

    def seconds_per_folio(self, page_size: int) -> float:
        _check_page_size(page_size)
        return self.fixed_us_per_folio * 1e-6 + page_size / (self.copy_gbps * 1e9)

    def throughput_gbps(self, page_size: int) -> float:
        """Bytes migrated per ns by one thread moving folios of ``page_size`` bytes."""
        return page_size / self.seconds_per_folio(page_size) / 1e9

    def cpu_seconds(self, moved_pages: int | np.ndarray, page_size: int) -> float | np.ndarray:
        """CPU time to migrate ``moved_pages`` folios of ``page_size`` bytes."""
        pages = np.asarray(moved_pages, dtype=float)
        if np.any(pages < 0) or not np.all(np.isfinite(pages)):
            raise ValueError(f"moved_pages must be finite and >= 0, got {moved_pages!r}")
        seconds = pages * self.seconds_per_folio(page_size)
        return float(seconds) if seconds.ndim == 0 else seconds

    def node_traffic(
        self, moved_matrix_pages: np.ndarray, page_size: int, interval_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(read_gbps, write_gbps) per node from a (..., nodes, nodes) matrix of pages moved
        from row to column node, spread evenly over ``interval_s`` seconds."""
        moved = _checked_matrix(moved_matrix_pages)
        _check_page_size(page_size)
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be finite and > 0, got {interval_s!r}")
        scale = page_size / (interval_s * 1e9)
        return moved.sum(axis=-1) * scale, moved.sum(axis=-2) * scale

    def background(
        self, moved_matrix_pages: np.ndarray, page_size: int, interval_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(background_gbps, background_read_fraction) per node for the throughput solver
        (``solve(..., background_gbps=, background_read_fraction=)``); a node without
        migration traffic gets read fraction 1."""
        moved = moved_matrix_pages
        if (
            isinstance(moved, np.ndarray)
            and moved.dtype == np.int64
            and moved.ndim == 2
            and moved.shape[0] == moved.shape[1]
        ):  # a host's page counts: one compiled pass, the same numbers as below
            _check_page_size(page_size)
            if not (math.isfinite(interval_s) and interval_s > 0):
                raise ValueError(f"interval_s must be finite and > 0, got {interval_s!r}")
            total = np.empty(moved.shape[0])
            fraction = np.empty(moved.shape[0])
            if not _background_of_counts(
                np.ascontiguousarray(moved), page_size / (interval_s * 1e9), total, fraction
            ):
                raise ValueError("moved_matrix_pages must be finite and >= 0")
            return total, fraction
        read, write = self.node_traffic(moved_matrix_pages, page_size, interval_s)
        total = read + write
        fraction = np.divide(read, total, out=np.ones_like(total), where=total > 0)
        return total, fraction


@njit(cache=True)
def _background_of_counts(
    moved: np.ndarray, scale: float, total: np.ndarray, fraction: np.ndarray
) -> bool:
    """``background`` of an int64 (nodes, nodes) matrix of page counts: each node's read
    (row sums) plus write (column sums) traffic and its read share. The sums are of whole
    counts, exact however added (as the float sums ``node_traffic`` does); False if a count
    is negative."""
    n = moved.shape[0]
    for i in range(n):
        read = 0
        write = 0
        for j in range(n):
            if moved[i, j] < 0:
                return False
            read += moved[i, j]
            write += moved[j, i]
        read_gbps = float(read) * scale
        total[i] = read_gbps + float(write) * scale
        fraction[i] = read_gbps / total[i] if total[i] > 0 else 1.0
    return True


def _check_page_size(page_size: int) -> None:
    if not isinstance(page_size, int | np.integer) or page_size <= 0:
        raise ValueError(f"page_size must be a positive number of bytes, got {page_size!r}")


def _checked_matrix(moved) -> np.ndarray:
    matrix = np.asarray(moved, dtype=float)
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"moved_matrix_pages must be (..., nodes, nodes), got {matrix.shape}")
    if isinstance(moved, np.ndarray) and moved.dtype.kind in "iu":  # counts: always finite
        if moved.size and moved.min() < 0:
            raise ValueError("moved_matrix_pages must be finite and >= 0")
    elif np.any(matrix < 0) or not np.all(np.isfinite(matrix)):
        raise ValueError("moved_matrix_pages must be finite and >= 0")
    return matrix
