"""What a host reports each control interval, simulated or real: one contract for the env,
the baselines and the daemon.

``Measurements`` holds only what a real Linux host can measure (uncore/CXL bandwidth
counters, CHA queue occupancy for loaded latency, numa_maps, meminfo, vmstat, DAMON's regions
and DAMOS stats, the managed applications' own throughput). ``GroundTruth`` holds what only
a simulator knows; a real host returns ``None`` for it. ``NodeInfo`` is what the host knows
of its memory nodes before it runs (profiles and capacities).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SchemeStats:
    """A DAMOS scheme's ``stats/`` files (cumulative since the scheme was created): what the
    simulated kdamond books and a real host reads."""

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    sz_ops_filter_passed: int = 0
    qt_exceeds: int = 0


@dataclass(frozen=True)
class NodeInfo:
    """Static facts about the memory nodes, in node-id order."""

    names: tuple[str, ...]
    peak_gbps: np.ndarray  # (nodes,) saturation bandwidth at 100 % reads (the profile's)
    idle_latency_ns: np.ndarray  # (nodes,)
    capacity_bytes: np.ndarray  # (nodes,)
    page_size: int  # bytes per page in the resident/free counts

    @property
    def n_nodes(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Measurements:
    """What a real host could measure over one control interval.

    Per-application arrays follow ``app_names`` (the applications running in the interval).
    """

    time_s: float  # end of the interval
    interval_s: float
    weights: np.ndarray  # (nodes,) interleave weights in force during the interval
    node_bandwidth_gbps: np.ndarray  # (nodes,) all traffic, migrations included (uncore)
    node_read_fraction: np.ndarray  # (nodes,)
    node_latency_ns: np.ndarray  # (nodes,) loaded latency (CHA TOR occupancy / inserts)
    node_free_bytes: np.ndarray  # (nodes,) free memory (meminfo)
    app_names: tuple[str, ...]
    app_throughput_gbps: np.ndarray  # (apps,) the applications' own metric
    resident_pages: np.ndarray  # (apps, nodes) as /proc/PID/numa_maps shows
    migrated_bytes: np.ndarray  # (nodes, nodes) moved from row to column this interval
    pgmigrate_success: int  # pages this interval (/proc/vmstat deltas)
    pgmigrate_fail: int
    damon_regions: dict[str, dict[str, np.ndarray]]  # per app: start, end, nr_accesses, age
    damon_region_pages: dict[str, np.ndarray]  # per app: (regions, nodes) resident pages
    damos_stats: dict[str, SchemeStats]  # per app, cumulative (stats/ files)
    damos_quota_bytes_per_s: float  # the migrate_hot quota in force (0: unlimited)
    nr_accesses_max: int  # samples per aggregation (for normalising nr_accesses)


@dataclass(frozen=True)
class GroundTruth:
    """What only the simulator knows (for analysis and privileged features)."""

    app_latency_ns: np.ndarray  # (apps,) mean memory latency each application sees
    app_access_split: np.ndarray  # (apps, nodes) share of each app's accesses per node
    app_alone_gbps: np.ndarray  # (apps,) throughput alone on idle local memory
    weighted_speedup: float  # sum of throughput / alone over running apps that count
    app_hot_pages: np.ndarray  # (apps, nodes) pages of each app's hot set per node
    background_gbps: np.ndarray  # (nodes,) migration copy traffic
    solver_converged: bool
    # (apps,) bool: the application counts in the reward (None: all do)
    app_in_reward: np.ndarray | None = None


@dataclass(frozen=True)
class StepResult:
    measurements: Measurements
    truth: GroundTruth | None  # None on a real host
