"""Guest-side fixtures: the real /sys of the VM, the workload, and a clean kernel per test.

These tests write the kernel's real sysfs, so they refuse to run anywhere but in the VM that
``tests/realkernel/vm.py`` boots: the kernel command line must carry ``tierenv_vm=<nonce>``
and the environment the same nonce (TIERENV_VM_TOKEN), which only that harness sets. Only then
is TIERENV_ALLOW_REAL_SYSFS=1 set, for this process and the daemons it starts.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guestlib import ALLOW_ENV, Workload, reset_kernel, vm_proof


def pytest_configure(config: pytest.Config) -> None:
    if reason := vm_proof():
        raise pytest.UsageError(
            f"refusing to run the real-kernel guest tests outside the tierenv VM ({reason}); "
            "they reconfigure the kernel. Run them with: python -m pytest -m realkernel"
        )
    os.environ[ALLOW_ENV] = "1"  # proven to be the throw-away VM


@pytest.fixture
def workload() -> Iterator[Callable[..., Workload]]:
    """Start memtool: ``workload(policy, total_mb, hot_mb=0, seconds=600, pause_us=0)``; killed
    afterwards."""
    binary = os.environ.get("TIERENV_VM_MEMTOOL")
    if not binary or not Path(binary).exists():
        raise RuntimeError(f"TIERENV_VM_MEMTOOL={binary!r}: the harness builds and passes it")
    started: list[subprocess.Popen[str]] = []

    def start(
        policy: str, total_mb: int, hot_mb: int = 0, seconds: float = 600, pause_us: int = 0
    ) -> Workload:
        process = subprocess.Popen(
            [binary, policy, str(total_mb), str(hot_mb), str(seconds), str(pause_us)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(process)
        line = process.stdout.readline() if process.stdout else ""
        m = re.fullmatch(r"READY pid=(\d+) start=(0x[0-9a-f]+) pages=(\d+) hot_pages=(\d+) "
                         r"page=(\d+)\n", line)  # fmt: skip
        if not m:
            process.kill()
            raise RuntimeError(f"memtool {policy} {total_mb} did not start: {line!r}")
        pid, start, pages, hot_pages, page = (int(g, 0) for g in m.groups())
        return Workload(process, pid, start, pages, hot_pages, page)

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture(autouse=True)
def clean_kernel() -> Iterator[None]:
    reset_kernel()
    yield
    reset_kernel()


@pytest.fixture
def root():  # type: ignore[no-untyped-def]
    """The backend's view of the VM's real /sys (allowed: this is the VM, see above)."""
    from tierenv.host.sysfs import SysfsRoot

    return SysfsRoot("/sys")
