"""A simulated application: how much memory it uses, how it touches it, how hard it pushes.

The memory model sees an application as one stream (see ``tierenv.hardware.solver``): it keeps
``mlp`` 64-byte misses in flight and computes ``think_ns`` between a miss's return and the
next one, with a read share ``read_fraction``. Throughput then follows from the latencies of
the nodes its pages sit on. The pages it touches and how often come from its working set and
access distribution; DAMON sees each page touched at a rate proportional to its share of the
application's misses.

Intensity scales how hard the application pushes: ``mlp`` is multiplied by it (more threads
or deeper prefetching), so intensity 0.5 halves the misses in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tierenv.workload.access import Distribution
from tierenv.workload.trace import Trace

LINE_BYTES = 64


@dataclass(frozen=True)
class Application:
    """Static description of one application (units: bytes, ns, seconds)."""

    name: str
    working_set_bytes: int
    distribution: Distribution = field(default_factory=Distribution)
    mlp: float = 16.0
    think_ns: float = 50.0
    read_fraction: float = 1.0
    growth_bytes_per_s: float = 0.0  # 0: the whole working set is touched at start
    latency_bound: bool = False  # descriptive: a service whose latency matters most
    trace: Trace | None = field(default=None, compare=False)  # replaces the distribution

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: an application needs a name")
        if self.working_set_bytes <= 0:
            raise ValueError(f"{self.name}.working_set: must be > 0, got {self.working_set_bytes}")
        for name, value, low in (("mlp", self.mlp, 0.0), ("think_ns", self.think_ns, -1e-12)):
            if not (np.isfinite(value) and value > low):
                raise ValueError(f"{self.name}.{name}: must be a positive number, got {value!r}")
        if not 0.0 <= self.read_fraction <= 1.0:
            raise ValueError(
                f"{self.name}.read_fraction: must lie in [0, 1], got {self.read_fraction!r}"
            )
        if not (np.isfinite(self.growth_bytes_per_s) and self.growth_bytes_per_s >= 0):
            raise ValueError(
                f"{self.name}.growth: must be >= 0 bytes/s, got {self.growth_bytes_per_s!r}"
            )

    def n_pages(self, page_size: int) -> int:
        if self.trace is not None:
            return self.trace.n_pages
        return -(-self.working_set_bytes // page_size)

    def touch_rates(self, shares: np.ndarray, throughput_gbps: float) -> np.ndarray:
        """Per-page rate (1/s) of misses, given each page's share and the app's throughput:
        what sets the page's Accessed bit for DAMON."""
        misses_per_s = max(throughput_gbps, 0.0) * 1e9 / LINE_BYTES
        return shares * misses_per_s
