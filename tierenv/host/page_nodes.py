"""Which NUMA node holds the pages of an address range: the per-region node split the
``hotness`` and ``access_share`` features need (DAMON's regions say how hot memory is, not
where it lives).

On a real host the answer comes from ``move_pages(2)`` with ``nodes=NULL``, which only
queries (it moves nothing). A region can span gigabytes, so each region is sampled at evenly
spaced pages and the sample's split scaled to the region's size. The simulated kernel
(:mod:`tierenv.host.simulated_kernel`) answers the same question from its memory state, as
the kernel answers the syscall.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from typing import Protocol

import numpy as np

from tierenv.host.metrics import PidGoneError, parse_maps_ranges, parse_numa_maps
from tierenv.host.sysfs import SysfsError, SysfsRoot

# move_pages(2) syscall numbers (asm/unistd.h); other architectures are not supported.
_SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239}


class PageNodeQuery(Protocol):
    def region_pages(
        self, pid: int, starts: np.ndarray, ends: np.ndarray, n_nodes: int
    ) -> np.ndarray:
        """(regions, nodes) resident pages of ``pid`` in each [start, end) address range."""
        ...


class NumaMapsQuery:
    """An estimate from ``/proc/PID/numa_maps`` and ``maps``: each region gets the node split
    of the VMAs it overlaps, in proportion to the overlap. It needs no ptrace rights and no
    syscalls (so it also works on a simulated kernel's files in another process), but it is
    exact only where a VMA's pages are spread evenly over it."""

    def __init__(self, proc: SysfsRoot, page_size: int) -> None:
        self.proc = proc
        self.page_size = page_size

    def region_pages(
        self, pid: int, starts: np.ndarray, ends: np.ndarray, n_nodes: int
    ) -> np.ndarray:
        try:
            maps_text = self.proc.read(f"{pid}/maps")
            numa_text = self.proc.read(f"{pid}/numa_maps")
        except SysfsError as error:
            raise PidGoneError(pid, str(error)) from error
        ends_by_start = {int(lo): int(hi) for lo, hi in parse_maps_ranges(maps_text, f"{pid}/maps")}
        lo_r = np.asarray(starts, dtype=float)
        hi_r = np.asarray(ends, dtype=float)
        out = np.zeros((len(lo_r), n_nodes))
        for vma in parse_numa_maps(numa_text, f"{pid}/numa_maps").vmas:
            end = ends_by_start.get(vma.address)
            if end is None or end <= vma.address or not vma.node_pages:
                continue
            per_byte = np.zeros(n_nodes)
            for node, size in vma.node_bytes.items():
                if node < n_nodes:
                    per_byte[node] = size / self.page_size / (end - vma.address)
            overlap = np.clip(np.minimum(hi_r, end) - np.maximum(lo_r, vma.address), 0, None)
            out += overlap[:, None] * per_byte[None, :]
        return out


class MovePagesQuery:
    """``move_pages(pid, n, pages, NULL, status, 0)`` on ``samples_per_region`` evenly spaced
    pages of each region. Pages not present (``-ENOENT``) or not mapped (``-EFAULT``) count
    for no node, so a sparse region reports fewer resident pages. Needs the right to ptrace
    ``pid`` (root, or CAP_SYS_NICE for other users' processes)."""

    def __init__(self, samples_per_region: int = 64, page_size: int | None = None) -> None:
        if samples_per_region < 1:
            raise ValueError(f"samples_per_region must be >= 1, got {samples_per_region}")
        machine = platform.machine()
        if machine not in _SYS_MOVE_PAGES:
            raise OSError(
                f"move_pages(2) query: unsupported architecture {machine!r} "
                f"(supported: {', '.join(_SYS_MOVE_PAGES)})"
            )
        self.samples = samples_per_region
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self._number = _SYS_MOVE_PAGES[machine]
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def query(self, pid: int, addresses: np.ndarray) -> np.ndarray:
        """The node of each page address (negative errno where it has none)."""
        count = len(addresses)
        pages = (ctypes.c_void_p * count)(*[int(a) for a in addresses])
        status = (ctypes.c_int * count)()
        result = self._libc.syscall(
            ctypes.c_long(self._number),
            ctypes.c_int(pid),
            ctypes.c_ulong(count),
            pages,
            None,
            status,
            ctypes.c_int(0),
        )
        if result < 0:
            code = ctypes.get_errno()
            if code == errno.ESRCH:
                raise PidGoneError(pid, "move_pages: no such process")
            raise OSError(code, f"move_pages({pid}, {count} pages): {os.strerror(code)}")
        return np.frombuffer(memoryview(status), dtype=np.intc).astype(np.int64)

    def region_pages(
        self, pid: int, starts: np.ndarray, ends: np.ndarray, n_nodes: int
    ) -> np.ndarray:
        out = np.zeros((len(starts), n_nodes))
        if len(starts) == 0:
            return out
        page = self.page_size
        first = np.asarray(starts, dtype=np.uint64) // page
        last = (np.asarray(ends, dtype=np.uint64) + page - 1) // page  # exclusive
        sizes = (last - first).astype(np.int64)
        picks = [
            first[i]
            + np.unique(np.linspace(0, max(sizes[i] - 1, 0), min(self.samples, sizes[i]))).astype(
                np.uint64
            )
            for i in range(len(starts))
        ]
        counts = [len(p) for p in picks]
        status = self.query(pid, np.concatenate(picks) * np.uint64(page))
        offset = 0
        for i, n in enumerate(counts):
            nodes = status[offset : offset + n]
            offset += n
            on = nodes[(nodes >= 0) & (nodes < n_nodes)]
            if n:
                out[i] = np.bincount(on, minlength=n_nodes)[:n_nodes] * (sizes[i] / n)
        return out


PAGE_NODE_KINDS = ("move_pages", "numa_maps", "none")


def page_node_query(kind: str, proc: SysfsRoot, page_size: int) -> PageNodeQuery | None:
    """The query named by ``kind`` (the daemon's ``--page-nodes``; None for ``"none"``)."""
    if kind == "move_pages":
        return MovePagesQuery()
    if kind == "numa_maps":
        return NumaMapsQuery(proc, page_size)
    if kind == "none":
        return None
    raise ValueError(f"page nodes {kind!r}: expected one of {', '.join(PAGE_NODE_KINDS)}")
