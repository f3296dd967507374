"""The observation contract: named features with units and fixed physical normalisation.

One list serves the env, the baselines and the daemon, so a policy sees the same numbers in
simulation and on a host. Every feature says where a real host reads it; features only a
simulator knows are flagged ``host_observable=False`` and are left out unless asked for, so a
policy trained on them cannot be exported to a host by mistake.

Per-node features are named ``group[nodeK]``, DAMON hotness ``hotness[nodeK,bin]``. Values
are clipped to each feature's documented range (the observation space's bounds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tierenv.contracts.measurements import GroundTruth, Measurements, NodeInfo
from tierenv.damon.abi import GiB
from tierenv.damon.jit import njit

# DAMON hotness bins by nr_accesses / max_nr_accesses: lower edges. "warm" starts where the
# migrate_hot scheme's 5 % threshold does.
HOTNESS_BINS = (("idle", 0.0), ("warm", 0.05), ("hot", 0.25), ("hottest", 0.5))


class FeatureError(ValueError):
    """An unknown feature group or feature set."""


class Report:
    """One interval's inputs to the feature functions: the host's measurements, the
    simulator's ground truth (None on a host) and the nodes. Quantities several groups share
    are computed once per report (``damon_pages``)."""

    def __init__(self, m: Measurements, truth: GroundTruth | None, nodes: NodeInfo) -> None:
        self.m = m
        self.truth = truth
        self.nodes = nodes

    @property
    def required_truth(self) -> GroundTruth:
        if self.truth is None:
            raise FeatureError("a privileged feature needs the simulator's ground truth")
        return self.truth

    @cached_property
    def damon_pages(self) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, bins) DAMON-monitored pages per hotness bin and (nodes,) access-weighted
        pages (the hotness and access-share groups both read them). The bins are counted in
        one compiled call per application (``_bin_pages``); ``damon_pages_reference`` is the
        plain numpy version tests hold it to."""
        return self._count_damon_pages(compiled=True)

    def damon_pages_reference(self) -> tuple[np.ndarray, np.ndarray]:
        """``damon_pages`` in plain numpy."""
        return self._count_damon_pages(compiled=False)

    def _count_damon_pages(self, compiled: bool) -> tuple[np.ndarray, np.ndarray]:
        m, n_nodes = self.m, self.nodes.n_nodes
        pages = np.zeros((n_nodes, len(HOTNESS_BINS)))
        accesses = np.zeros(n_nodes)
        for app, regions in m.damon_regions.items():
            on_nodes = m.damon_region_pages[app]  # (regions, nodes)
            rate = regions["nr_accesses"] / max(m.nr_accesses_max, 1)
            if compiled and on_nodes.dtype == np.int64 and rate.dtype == np.float64:
                _bin_pages(rate, np.ascontiguousarray(on_nodes), _HOTNESS_EDGES, pages)
            else:
                pages += _binned_pages(rate, on_nodes, n_nodes)
            accesses += rate @ on_nodes
        return pages, accesses


_HOTNESS_EDGES = np.array([edge for _, edge in HOTNESS_BINS[1:]])


def _binned_pages(rate: np.ndarray, on_nodes: np.ndarray, n_nodes: int) -> np.ndarray:
    """(nodes, bins) pages of regions with access ``rate`` (regions,) and ``on_nodes``
    (regions, nodes) pages on each node, by hotness bin."""
    bins = np.searchsorted(_HOTNESS_EDGES, rate, side="right")
    pages = np.zeros((n_nodes, len(HOTNESS_BINS)))
    for node in range(n_nodes):
        pages[node] = np.bincount(bins, weights=on_nodes[:, node], minlength=len(HOTNESS_BINS))
    return pages


@njit(cache=True)
def _bin_pages(rate: np.ndarray, on_nodes: np.ndarray, edges: np.ndarray, pages: np.ndarray):
    """``pages += _binned_pages(rate, on_nodes, nodes)`` in one pass: whole page counts, so
    the float sums are exact in any order (below 2**53 pages)."""
    n_nodes = on_nodes.shape[1]
    binned = np.zeros(pages.shape)
    for r in range(rate.size):
        b = 0
        while b < edges.size and edges[b] <= rate[r]:  # searchsorted(..., side="right")
            b += 1
        for node in range(n_nodes):
            binned[node, b] += on_nodes[r, node]
    pages += binned


Compute = Callable[[Report], np.ndarray]


@dataclass(frozen=True)
class FeatureGroup:
    """A group of features: one value, one per node or one per node and hotness bin."""

    name: str
    per: str  # "host", "node" or "node,bin"
    unit: str
    description: str
    host_source: str  # where a real host reads it ("" when it cannot)
    low: float
    high: float
    compute: Compute

    @property
    def host_observable(self) -> bool:
        return bool(self.host_source)

    @property
    def pattern(self) -> str:
        """How the group's names look: ``bandwidth[nodeK]``, ``hotness[nodeK,BIN]``."""
        return {"host": self.name, "node": f"{self.name}[nodeK]"}.get(
            self.per, f"{self.name}[nodeK,BIN]"
        )

    def names(self, n_nodes: int) -> list[str]:
        if self.per == "host":
            return [self.name]
        if self.per == "node":
            return [f"{self.name}[node{k}]" for k in range(n_nodes)]
        return [f"{self.name}[node{k},{b}]" for k in range(n_nodes) for b, _ in HOTNESS_BINS]


# ------------------------------------------------------------------------------- computing
#: What an unlimited DAMOS quota (0 bytes per window) reads as in ``damos_quota``: the
#: feature's upper bound, above any quota a policy could tell apart from no limit.
UNLIMITED_QUOTA_GIBS = 16.0


def _bandwidth(r: Report) -> np.ndarray:
    return r.m.node_bandwidth_gbps / r.nodes.peak_gbps


def _latency(r: Report) -> np.ndarray:
    return r.m.node_latency_ns / r.nodes.idle_latency_ns


def _read_fraction(r: Report) -> np.ndarray:
    return r.m.node_read_fraction


def _resident(r: Report) -> np.ndarray:
    pages = r.m.resident_pages
    return _shares(pages.sum(axis=0) if pages.size else np.zeros(r.nodes.n_nodes))


def _free(r: Report) -> np.ndarray:
    return r.m.node_free_bytes / np.maximum(r.nodes.capacity_bytes, 1.0)


def _hotness(r: Report) -> np.ndarray:
    return _shares(r.damon_pages[0]).ravel()


def _access_share(r: Report) -> np.ndarray:
    return _shares(r.damon_pages[1])


def _weights(r: Report) -> np.ndarray:
    return _shares(r.m.weights.astype(float))


def _migrated(r: Report) -> np.ndarray:
    return r.m.migrated_bytes.sum(axis=0) / GiB / r.m.interval_s


def quota_gibs(bytes_per_s: np.ndarray | float) -> np.ndarray:
    """The ``damos_quota`` feature for quotas in bytes/s (0: unlimited → the bound)."""
    rate = np.asarray(bytes_per_s, dtype=float)
    return np.where(rate > 0, rate / GiB, UNLIMITED_QUOTA_GIBS)


def _damos_quota(r: Report) -> np.ndarray:
    return np.atleast_1d(quota_gibs(r.m.damos_quota_bytes_per_s))


def _throughput(r: Report) -> np.ndarray:
    return np.array([r.m.app_throughput_gbps.sum() / r.nodes.peak_gbps.sum()])


def _apps(r: Report) -> np.ndarray:
    return np.array([float(len(r.m.app_names))])


def _true_access_share(r: Report) -> np.ndarray:
    truth = r.required_truth
    if not r.m.app_names:
        return np.zeros(r.nodes.n_nodes)
    return _shares(r.m.app_throughput_gbps @ truth.app_access_split)


def _true_hot_share(r: Report) -> np.ndarray:
    hot = r.required_truth.app_hot_pages
    return _shares(hot.sum(axis=0) if hot.size else np.zeros(r.nodes.n_nodes))


def _true_speedup(r: Report) -> np.ndarray:
    return np.array([r.required_truth.weighted_speedup / max(len(r.m.app_names), 1)])


def _shares(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values, dtype=float)


FEATURE_GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup(
        "bandwidth",
        "node",
        "fraction of peak",
        "all traffic on the node over its peak (100 % read) bandwidth",
        "uncore IMC / CXL port counters",
        0.0,
        2.0,
        _bandwidth,
    ),
    FeatureGroup(
        "latency",
        "node",
        "ratio to idle",
        "loaded latency over idle latency",
        "CHA TOR occupancy / inserts (Colloid's method)",
        0.0,
        20.0,
        _latency,
    ),
    FeatureGroup(
        "read_fraction",
        "node",
        "fraction",
        "share of the node's bytes that are reads",
        "uncore CAS read / write counters",
        0.0,
        1.0,
        _read_fraction,
    ),
    FeatureGroup(
        "resident",
        "node",
        "fraction",
        "share of the managed applications' resident pages on the node",
        "/proc/PID/numa_maps N<node>= counts",
        0.0,
        1.0,
        _resident,
    ),
    FeatureGroup(
        "free",
        "node",
        "fraction",
        "free memory over capacity",
        "/sys/devices/system/node/nodeN/meminfo MemFree",
        0.0,
        1.0,
        _free,
    ),
    FeatureGroup(
        "hotness",
        "node,bin",
        "fraction",
        "share of DAMON-monitored memory on the node "
        "whose access rate (nr_accesses over its maximum) falls in the bin: idle < 5 %, "
        "warm < 25 %, hot < 50 %, hottest",
        "DAMON regions + move_pages(2) node query",
        0.0,
        1.0,
        _hotness,
    ),
    FeatureGroup(
        "access_share",
        "node",
        "fraction",
        "DAMON's estimate of the share of accesses going to the node (region size x access rate)",
        "DAMON regions + move_pages(2) node query",
        0.0,
        1.0,
        _access_share,
    ),
    FeatureGroup(
        "weights",
        "node",
        "fraction",
        "the node's share of the interleave weights in force",
        "/sys/kernel/mm/mempolicy/weighted_interleave/nodeN",
        0.0,
        1.0,
        _weights,
    ),
    FeatureGroup(
        "migrated",
        "node",
        "GiB/s",
        "pages migrated into the node in the last interval",
        "DAMOS stats sz_applied / pgmigrate_success per destination",
        0.0,
        16.0,
        _migrated,
    ),
    FeatureGroup(
        "damos_quota",
        "host",
        "GiB/s",
        "the migrate_hot scheme's DAMOS quota in force (how much DAMOS may move per second); "
        f"unlimited reads as {UNLIMITED_QUOTA_GIBS:g}",
        "our scheme's quotas/bytes over quotas/reset_interval_ms",
        0.0,
        UNLIMITED_QUOTA_GIBS,
        _damos_quota,
    ),
    FeatureGroup(
        "throughput",
        "host",
        "fraction of total peak",
        "the applications' summed memory throughput over all nodes' summed peak bandwidth",
        "each app's throughput_file/command in the host config (e.g. resctrl MBM)",
        0.0,
        2.0,
        _throughput,
    ),
    FeatureGroup(
        "apps",
        "host",
        "count",
        "managed applications running",
        "the daemon's process list",
        0.0,
        64.0,
        _apps,
    ),
    FeatureGroup(
        "true_access_share",
        "node",
        "fraction",
        "true share of the applications' accesses served by the node (simulator only)",
        "",
        0.0,
        1.0,
        _true_access_share,
    ),
    FeatureGroup(
        "true_hot_share",
        "node",
        "fraction",
        "share of the applications' true hot sets resident on the node (simulator only)",
        "",
        0.0,
        1.0,
        _true_hot_share,
    ),
    FeatureGroup(
        "true_speedup",
        "host",
        "ratio",
        "weighted speedup over running applications (simulator only)",
        "",
        0.0,
        2.0,
        _true_speedup,
    ),
)
GROUPS_BY_NAME = {group.name: group for group in FEATURE_GROUPS}
DEFAULT_GROUPS = tuple(group.name for group in FEATURE_GROUPS if group.host_observable)
FEATURE_SETS = {
    "default": DEFAULT_GROUPS,
    "privileged": tuple(group.name for group in FEATURE_GROUPS),
}


class ObservationSpec:
    """The features an env observes, in order, with their names and bounds.

    ``features`` is a feature set (``"default"``: everything a host can read;
    ``"privileged"``: that plus the simulator-only groups) or a list of group names.
    """

    def __init__(self, n_nodes: int, features: str | Sequence[str] = "default") -> None:
        self.n_nodes = n_nodes
        self.groups = tuple(GROUPS_BY_NAME[name] for name in resolve_feature_groups(features))
        self.names = tuple(name for group in self.groups for name in group.names(n_nodes))
        self.low = np.concatenate(
            [np.full(len(g.names(n_nodes)), g.low) for g in self.groups]
        ).astype(np.float32)
        self.high = np.concatenate(
            [np.full(len(g.names(n_nodes)), g.high) for g in self.groups]
        ).astype(np.float32)

    @property
    def host_observable(self) -> bool:
        """True when every feature can be read on a real host (a policy may be exported)."""
        return all(group.host_observable for group in self.groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    def build(
        self, measurements: Measurements, truth: GroundTruth | None, nodes: NodeInfo
    ) -> np.ndarray:
        """The observation (float32, clipped to the bounds) for one interval's reports."""
        report = Report(measurements, truth, nodes)
        values = np.concatenate([group.compute(report) for group in self.groups])
        return np.clip(values, self.low, self.high).astype(np.float32)


def resolve_feature_groups(features: str | Sequence[str]) -> tuple[str, ...]:
    """Group names for a feature set name or a list of group names (checked)."""
    if isinstance(features, str):
        if features not in FEATURE_SETS:
            raise FeatureError(
                f"unknown feature set {features!r}; sets: {', '.join(FEATURE_SETS)} "
                f"(or a list of groups: {', '.join(GROUPS_BY_NAME)})"
            )
        return FEATURE_SETS[features]
    names = tuple(features)
    unknown = [name for name in names if name not in GROUPS_BY_NAME]
    if unknown or not names:
        raise FeatureError(
            f"unknown feature group(s) {unknown or names!r}; groups: {', '.join(GROUPS_BY_NAME)}"
        )
    if len(set(names)) != len(names):
        raise FeatureError(f"feature groups listed twice in {list(names)!r}")
    return names


def groups_of(names: Sequence[str]) -> tuple[str, ...]:
    """The feature groups, in order, that feature ``names`` (``bandwidth[node0]``, ...) come
    from: what a trained policy's observation is rebuilt from, so a policy keeps loading
    after a feature set such as ``"default"`` gains a group."""
    groups: list[str] = []
    for name in names:
        group = name.partition("[")[0]
        if group not in GROUPS_BY_NAME:
            raise FeatureError(f"unknown feature {name!r} (groups: {', '.join(GROUPS_BY_NAME)})")
        if group not in groups:
            groups.append(group)
    return tuple(groups)


def feature_table() -> str:
    """A Markdown table of every feature group (the README carries it; a test keeps them
    equal)."""
    lines = [
        "| feature | per | unit | range | host source | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for group in FEATURE_GROUPS:
        source = group.host_source or "simulator only (privileged)"
        lines.append(
            f"| `{group.pattern}` | {group.per} | {group.unit} | "
            f"{group.low:g}..{group.high:g} | {source} | {group.description} |"
        )
    return "\n".join(lines)
