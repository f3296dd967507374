"""Helpers of the guest-side tests: VM proof, the memtool workload, polling, kernel reset."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOKEN_PARAM = "tierenv_vm"  # as tests/realkernel/vm.py adds it
ALLOW_ENV = "TIERENV_ALLOW_REAL_SYSFS"
WI = Path("/sys/kernel/mm/mempolicy/weighted_interleave")
KDAMONDS = Path("/sys/kernel/mm/damon/admin/kdamonds")
DAMON_STAT = Path("/sys/module/damon_stat/parameters/enabled")
SYS_MOVE_PAGES = 279  # x86_64
_libc = ctypes.CDLL(None, use_errno=True)


def vm_proof() -> str | None:
    """None inside the harness's VM, else why this is not provably that VM."""
    token = os.environ.get("TIERENV_VM_TOKEN")
    if not token:
        return "TIERENV_VM_TOKEN is not set"
    cmdline = Path("/proc/cmdline").read_text().split()
    if f"{TOKEN_PARAM}={token}" not in cmdline:
        return f"/proc/cmdline does not carry {TOKEN_PARAM}={token}"
    return None


# --- the workload -----------------------------------------------------------------------------


@dataclass
class Workload:
    """A running memtool process (see memtool.c) and where its pages are."""

    process: subprocess.Popen[str]
    pid: int
    start: int
    pages: int
    hot_pages: int
    page: int

    def nodes(self, first: int = 0, count: int | None = None) -> np.ndarray:
        """Pages per node [node0, node1] of pages first..first+count, by move_pages (query).
        A page being migrated reads as -ENOENT for a moment: such queries are repeated."""
        count = self.pages - first if count is None else count
        addresses = self.start + (first + np.arange(count, dtype=np.uint64)) * self.page
        status = np.full(count, -1, dtype=np.int32)
        for _ in range(20):
            result = _libc.syscall(
                ctypes.c_long(SYS_MOVE_PAGES), ctypes.c_long(self.pid), ctypes.c_ulong(count),
                ctypes.c_void_p(addresses.ctypes.data), None,
                ctypes.c_void_p(status.ctypes.data), ctypes.c_int(0),
            )  # fmt: skip
            if result != 0:
                raise OSError(ctypes.get_errno(), f"move_pages query of pid {self.pid} failed")
            if not np.any(status == -errno.ENOENT):
                break
            time.sleep(0.05)
        if np.any((status < 0) | (status > 1)):
            bad = np.unique(status[(status < 0) | (status > 1)]).tolist()
            raise AssertionError(f"pages not resident on node 0 or 1: statuses {bad}")
        return np.bincount(status, minlength=2)

    def hot(self) -> np.ndarray:
        return self.nodes(0, self.hot_pages)

    def cold(self) -> np.ndarray:
        return self.nodes(self.hot_pages)


def share0(counts: np.ndarray) -> float:
    """Node 0's share of the pages."""
    return float(counts[0] / counts.sum())


def wait_for(
    measure: Callable[[], float], target: float, tolerance: float, timeout: float = 60
) -> tuple[float, list[float]]:
    """Poll ``measure`` every second until it is within ``tolerance`` of ``target`` twice in a
    row (DAMOS works in 1 s apply intervals) or ``timeout`` passes; returns the last value and
    the history (for the assertion message)."""
    history: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        history.append(round(measure(), 4))
        if len(history) >= 2 and all(abs(v - target) <= tolerance for v in history[-2:]):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    return history[-1], history


# --- a clean kernel for every test ------------------------------------------------------------


def reset_kernel() -> None:
    """Stop every kdamond, drop the kdamond directories, DAMON_STAT off, auto weights on."""
    if reason := vm_proof():  # writes the real /sys directly: only in the VM
        raise RuntimeError(f"not resetting this kernel: {reason}")
    if DAMON_STAT.exists() and DAMON_STAT.read_text().strip() == "Y":
        DAMON_STAT.write_text("N")
    count = int((KDAMONDS / "nr_kdamonds").read_text())
    for index in range(count):
        state = KDAMONDS / str(index) / "state"
        if state.read_text().strip() == "on":
            state.write_text("off")
    deadline = time.monotonic() + 10
    while True:  # a kdamond finishes asynchronously after 'off'; nr_kdamonds is EBUSY until then
        try:
            (KDAMONDS / "nr_kdamonds").write_text("0")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    (WI / "auto").write_text("true")
