"""Procedural scenarios: whole scenarios drawn from a named, versioned distribution.

A distribution is a TOML file (shipped ones in ``tierenv/workload/distributions/``; copy one
to make your own) that gives the hosts a scenario may run on and the ranges its
applications, unmanaged co-runners, background traffic, phases and DAMOS setup are drawn
from. ``draw_scenario(distribution, rng)`` turns a numpy ``Generator`` into one scenario: the
same generator state gives the same scenario. A drawn scenario is written as an ordinary
scenario file (``scenario_toml``) and read back through the scenario loader, so it is checked
by the same rules and can be inspected, simulated and plotted like a shipped one
(``tierenv scenarios generate``).

Schema (a range is ``[low, high]``, drawn uniformly, or log-uniformly for sizes, rates and
``misses_per_core``; a single value is fixed; a share is a probability)::

    name = "default"
    version = 1                        # the generator's draw procedure this file is for
    description = "one paragraph"
    n_nodes = 2                        # every host has this many nodes (fixed spaces)
    duration_s = [120, 300]            # whole control intervals
    control_interval_s = 1
    page_size = "2 MiB"

    [[hosts]]                          # one is drawn per scenario, by weight
    name = "bytedance-pair"
    weight = 1
    cores = 16                         # cores beside node 0 the applications share
    nodes = [{ profile = "bytedance-ddr5-snc", capacity = "64 GiB" }, ...]

    [apps]                             # the managed applications
    count = [1, 4]                     # app 0 runs throughout; the others may come and go
    cores = [1, 8]                     # per app, at most the host's cores / count
    misses_per_core = [8, 48]          # 64-B misses in flight per core: mlp = cores x this
    think_ns = [0, 40]
    read_fraction = [0.5, 1.0]
    latency_bound_share = 0.2          # of apps: pointer-chasing, few misses, long compute
    latency_bound_misses_per_core = [1, 4]
    latency_bound_think_ns = [50, 400]
    working_set = ["1 GiB", "24 GiB"]
    max_capacity_share = 0.7           # apps running at once use at most this of all memory
    late_start_share = 0.5             # apps after the first start later with this chance
    early_stop_share = 0.3             # ... and stop before the end with this chance
    min_run_s = 30                     # shortest run, and the shortest phase
    growth_share = 0.3                 # apps that touch their working set gradually
    growth_per_s = ["256 MiB", "2 GiB"]
    distributions = { uniform = 1, zipf = 1, hotcold = 1 }
    zipf_exponent = [0.4, 1.2]
    hot_fraction = [0.05, 0.4]
    hot_share = [0.6, 0.95]

    [phases]                           # events changing a running app
    per_app = [0, 2]
    intensity = [0.25, 2.0]            # scales the app's mlp
    change_think_share = 0.3
    change_read_share = 0.3
    move_hot_set_share = 0.5           # hotcold apps only

    [co_runners]                       # unmanaged applications bound to a node (MPOL_BIND)
    share = 0.3                        # scenarios that have one
    nodes = [0]                        # nodes it may be bound to
    cores = [2, 8]
    misses_per_core = [16, 48]
    read_fraction = [0.5, 1.0]
    working_set = ["1 GiB", "4 GiB"]

    [traffic]                          # open-loop background traffic on one node
    share = 0.2
    of_peak = [0.05, 0.4]              # of the node's saturation bandwidth at 2:1
    read_fraction = [0.5, 1.0]

    [damos]
    quota_per_s = ["256 MiB", "2 GiB"]
    unlimited_share = 0                # scenarios whose DAMOS runs without a quota
    min_access_percent = 5

A distribution may start from another: ``extends = "default"`` (a shipped name, or a file
path relative to this file) takes every key of that one; a table given here (``[damos]``)
changes only the keys it names, any other key (``[[hosts]]`` included) replaces the base's.

Every key is checked; bad input gets a ``DistributionError`` naming the file, line and key.
Changing how draws are made bumps ``GENERATOR_VERSION``; a file written for another version
is refused, so a suite drawn once stays reproducible from its seeds.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from tierenv.hardware.profile import ProfileError, load_profile
from tierenv.schema import SchemaError, TomlReader
from tierenv.workload.access import KINDS as DISTRIBUTION_KINDS
from tierenv.workload.library import ShippedLibrary
from tierenv.workload.scenario import Scenario, parse_scenario
from tierenv.workload.units import format_size, parse_size

GENERATOR_VERSION = 1
#: Sizes are drawn in whole multiples of this (readable files, whole pages).
SIZE_GRAIN = 64 << 20
#: The read share at which a node's saturation sets the traffic scale (MLC's 2:1 mix).
TRAFFIC_READ_SHARE = 2.0 / 3.0

_TOP_KEYS = (
    "name",
    "version",
    "description",
    "n_nodes",
    "duration_s",
    "control_interval_s",
    "page_size",
    "hosts",
    "apps",
    "phases",
    "co_runners",
    "traffic",
    "damos",
)
_HOST_KEYS = ("name", "weight", "cores", "nodes")
_NODE_KEYS = ("profile", "capacity")
_APP_KEYS = (
    "count",
    "cores",
    "misses_per_core",
    "think_ns",
    "read_fraction",
    "latency_bound_share",
    "latency_bound_misses_per_core",
    "latency_bound_think_ns",
    "working_set",
    "max_capacity_share",
    "late_start_share",
    "early_stop_share",
    "min_run_s",
    "growth_share",
    "growth_per_s",
    "distributions",
    "zipf_exponent",
    "hot_fraction",
    "hot_share",
)
_PHASE_KEYS = (
    "per_app",
    "intensity",
    "change_think_share",
    "change_read_share",
    "move_hot_set_share",
)
_CO_RUNNER_KEYS = ("share", "nodes", "cores", "misses_per_core", "read_fraction", "working_set")
_TRAFFIC_KEYS = ("share", "of_peak", "read_fraction")
_DAMOS_KEYS = ("quota_per_s", "unlimited_share", "min_access_percent")
#: How many ``extends`` a distribution may chain (a loop is an error, not a hang).
MAX_EXTENDS_DEPTH = 8


class DistributionError(SchemaError):
    """A scenario distribution file that cannot be used (names file, line and key)."""


DISTRIBUTIONS = ShippedLibrary("distributions", "distribution", DistributionError)


@dataclass(frozen=True)
class Span:
    """A range to draw from: uniform, or log-uniform when ``log``; low == high is fixed."""

    low: float
    high: float
    log: bool = False

    def draw(self, rng: np.random.Generator) -> float:
        if self.low == self.high:
            return self.low
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def draw_int(self, rng: np.random.Generator) -> int:
        return int(rng.integers(int(self.low), int(self.high) + 1))


@dataclass(frozen=True)
class HostChoice:
    name: str
    weight: float
    cores: int
    nodes: tuple[tuple[str, int], ...]  # (profile, capacity bytes)


@dataclass(frozen=True)
class AppRanges:
    count: Span
    cores: Span
    misses_per_core: Span
    think_ns: Span
    read_fraction: Span
    latency_bound_share: float
    latency_bound_misses_per_core: Span
    latency_bound_think_ns: Span
    working_set: Span
    max_capacity_share: float
    late_start_share: float
    early_stop_share: float
    min_run_s: float
    growth_share: float
    growth_per_s: Span
    distributions: tuple[tuple[str, float], ...]
    zipf_exponent: Span
    hot_fraction: Span
    hot_share: Span


@dataclass(frozen=True)
class PhaseRanges:
    per_app: Span
    intensity: Span
    change_think_share: float
    change_read_share: float
    move_hot_set_share: float


@dataclass(frozen=True)
class CoRunnerRanges:
    share: float
    nodes: tuple[int, ...]
    cores: Span
    misses_per_core: Span
    read_fraction: Span
    working_set: Span


@dataclass(frozen=True)
class TrafficRanges:
    share: float
    of_peak: Span
    read_fraction: Span


@dataclass(frozen=True)
class ScenarioDistribution:
    """A parsed distribution file (see the module docstring)."""

    name: str
    version: int
    description: str
    n_nodes: int
    duration_s: Span
    control_interval_s: float
    page_size: int
    hosts: tuple[HostChoice, ...]
    apps: AppRanges
    phases: PhaseRanges
    co_runners: CoRunnerRanges
    traffic: TrafficRanges
    quota_per_s: Span
    min_access_percent: float
    source: str = "<distribution>"
    unlimited_quota_share: float = 0.0


# --- loading --------------------------------------------------------------------------------


def shipped_distribution_names() -> list[str]:
    return DISTRIBUTIONS.names()


def load_distribution(name_or_path: str | Path) -> ScenarioDistribution:
    """A shipped distribution by name, or a distribution file by path."""
    text, source, _ = DISTRIBUTIONS.read(name_or_path)
    return parse_distribution(text, source=source)


def parse_distribution(text: str, source: str = "<text>") -> ScenarioDistribution:
    """Parse and check a distribution from TOML text."""
    data = _with_base(text, source, ())
    read = _Reader(text, source)
    read.keys(data, _TOP_KEYS, "")
    version = read.integer(data, "version", "", low=1)
    if version != GENERATOR_VERSION:
        read.fail(
            "version",
            f"this file is for generator version {version}; this tierenv draws version "
            f"{GENERATOR_VERSION} (scenarios drawn by another version would differ)",
        )
    n_nodes = read.integer(data, "n_nodes", "", low=1)
    interval = read.number(data, "control_interval_s", "", low=0.0, strict=True, default=1.0)
    duration = read.span(data, "duration_s", "", low=interval)
    page_size = read.size(data, "page_size", "", default=2 << 20)
    if page_size < 4096 or page_size & (page_size - 1):
        read.fail("page_size", f"{page_size} bytes is not a power of two >= 4096")
    hosts = tuple(
        read.host(entry, f"hosts[{i}]", n_nodes)
        for i, entry in enumerate(read.tables(data, "hosts"))
    )
    if not hosts:
        read.fail("hosts", "a distribution needs at least one host ([[hosts]])")
    if sum(h.weight for h in hosts) <= 0:
        read.fail("hosts", "at least one host needs a weight > 0")
    damos = read.table(data, "damos")
    read.keys(damos, _DAMOS_KEYS, "damos")
    return ScenarioDistribution(
        name=read.string(data, "name", ""),
        version=version,
        description=read.string(data, "description", "", default=""),
        n_nodes=n_nodes,
        duration_s=duration,
        control_interval_s=interval,
        page_size=page_size,
        hosts=hosts,
        apps=read.apps(read.table(data, "apps"), duration.high),
        phases=read.phases(read.table(data, "phases")),
        co_runners=read.co_runners(read.table(data, "co_runners"), n_nodes),
        traffic=read.traffic_ranges(read.table(data, "traffic")),
        quota_per_s=read.span(damos, "quota_per_s", "damos", size=True, default=200 << 20),
        unlimited_quota_share=read.share(damos, "unlimited_share", "damos", default=0.0),
        min_access_percent=read.number(
            damos, "min_access_percent", "damos", low=0.0, high=100.0, strict=True, default=5.0
        ),
        source=source,
    )


def _with_base(text: str, source: str, chain: tuple[str, ...]) -> dict[str, Any]:
    """The TOML mapping of ``text`` on top of the distribution it ``extends`` (if any)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DistributionError(f"{source}: {error}") from error
    if "extends" not in data:
        return data
    base_name = data.pop("extends")
    if not isinstance(base_name, str) or not base_name:
        raise DistributionError(
            f"{source}: extends: must be a distribution name or file, got {base_name!r}"
        )
    if len(chain) >= MAX_EXTENDS_DEPTH or source in chain:
        raise DistributionError(
            f"{source}: extends: {base_name!r} makes a loop or a chain longer than "
            f"{MAX_EXTENDS_DEPTH} ({' -> '.join([*chain, source])})"
        )
    beside = Path(source).parent / base_name
    target: str | Path = beside if base_name.endswith(".toml") and beside.is_file() else base_name
    try:
        base_text, base_source, _ = DISTRIBUTIONS.read(target)
    except DistributionError as error:
        raise DistributionError(f"{source}: extends: {error}") from error
    merged = _with_base(base_text, base_source, (*chain, source))
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class _Reader(TomlReader):
    """The shared TOML reader (:mod:`tierenv.schema`), plus ranges and the distribution's
    tables."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text, source, error=DistributionError)

    def share(self, table: dict, key: str, path: str, default: float) -> float:
        return self.number(table, key, path, low=0.0, high=1.0, default=default)

    def span(
        self,
        table: dict,
        key: str,
        path: str,
        low: float = 0.0,
        high: float | None = None,
        size: bool = False,
        log: bool = False,
        integer: bool = False,
        default: Any = None,
    ) -> Span:
        """``key`` as a range [low, high] (or one value); sizes take "1 GiB"; size ranges and
        ``log`` ones are drawn log-uniformly and must be > 0."""
        where = f"{path}.{key}" if path else key
        raw = table.get(key, default)
        if raw is None:
            self.fail(where, "missing (required)")
        values = raw if isinstance(raw, list) else [raw, raw]
        if len(values) != 2:
            self.fail(where, f"expected one value or a range [low, high], got {raw!r}")
        parsed = []
        for value in values:
            if size:
                try:
                    parsed.append(float(parse_size(value, where)))
                except ValueError as error:
                    self.fail(where, str(error).split(": ", 1)[-1])
            else:
                parsed.append(self.number({key: value}, key, path, low=low, high=high))
        first, last = parsed
        if first > last:
            self.fail(where, f"low {values[0]!r} is above high {values[1]!r}")
        if (size or log) and first <= 0:
            self.fail(where, f"{values[0]!r} must be > 0 (drawn log-uniformly)")
        if integer and (first != int(first) or last != int(last)):
            self.fail(where, f"expected whole numbers, got {raw!r}")
        return Span(first, last, log=size or log)

    def host(self, table: dict, path: str, n_nodes: int) -> HostChoice:
        self.keys(table, _HOST_KEYS, path)
        nodes_value = table.get("nodes")
        if not isinstance(nodes_value, list) or not all(isinstance(n, dict) for n in nodes_value):
            self.fail(f"{path}.nodes", "expected a list of { profile, capacity } tables")
        if len(nodes_value) != n_nodes:
            self.fail(
                f"{path}.nodes",
                f"has {len(nodes_value)} nodes; every host of this distribution needs "
                f"n_nodes = {n_nodes} (the env's spaces depend on it)",
            )
        nodes = []
        for k, node in enumerate(nodes_value):
            where = f"{path}.nodes[{k}]"
            self.keys(node, _NODE_KEYS, where)
            profile = self.string(node, "profile", where)
            try:
                load_profile(profile)
            except ProfileError as error:
                self.fail(f"{path}.nodes", f"node {k}: {error}")
            capacity = self.size(node, "capacity", where)
            if capacity <= 0:
                self.fail(f"{path}.nodes", f"node {k}: a memory node needs a capacity > 0")
            nodes.append((profile, capacity))
        return HostChoice(
            name=self.string(table, "name", path),
            weight=self.number(table, "weight", path, low=0.0, default=1.0),
            cores=self.integer(table, "cores", path, low=1),
            nodes=tuple(nodes),
        )

    def apps(self, table: dict, longest_s: float) -> AppRanges:
        p = "apps"
        self.keys(table, _APP_KEYS, p)
        kinds = table.get("distributions", {"uniform": 1.0})
        if not isinstance(kinds, dict) or not kinds:
            self.fail(f"{p}.distributions", "expected a table of kind = weight")
        for kind in kinds:
            if kind not in DISTRIBUTION_KINDS:
                self.fail(
                    f"{p}.distributions",
                    f"unknown kind {kind!r}; expected some of {', '.join(DISTRIBUTION_KINDS)}",
                )
        weights = tuple(
            (kind, self.number(kinds, kind, f"{p}.distributions", low=0.0)) for kind in kinds
        )
        if sum(w for _, w in weights) <= 0:
            self.fail(f"{p}.distributions", "at least one kind needs a weight > 0")
        min_run = self.number(table, "min_run_s", p, low=0.0, strict=True, default=30.0)
        if min_run > longest_s:
            self.fail(f"{p}.min_run_s", f"{min_run} s is longer than the longest duration_s")
        return AppRanges(
            count=self.span(table, "count", p, low=1, integer=True, default=1),
            cores=self.span(table, "cores", p, low=1, integer=True, default=[1, 8]),
            misses_per_core=self.span(table, "misses_per_core", p, log=True, default=[8, 48]),
            think_ns=self.span(table, "think_ns", p, default=[0, 40]),
            read_fraction=self.span(table, "read_fraction", p, high=1.0, default=[0.5, 1.0]),
            latency_bound_share=self.share(table, "latency_bound_share", p, 0.0),
            latency_bound_misses_per_core=self.span(
                table, "latency_bound_misses_per_core", p, log=True, default=[1, 4]
            ),
            latency_bound_think_ns=self.span(table, "latency_bound_think_ns", p, default=[50, 400]),
            working_set=self.span(table, "working_set", p, size=True),
            max_capacity_share=self.number(
                table, "max_capacity_share", p, low=0.0, high=1.0, strict=True, default=0.7
            ),
            late_start_share=self.share(table, "late_start_share", p, 0.5),
            early_stop_share=self.share(table, "early_stop_share", p, 0.3),
            min_run_s=min_run,
            growth_share=self.share(table, "growth_share", p, 0.0),
            growth_per_s=self.span(
                table, "growth_per_s", p, size=True, default=["256 MiB", "2 GiB"]
            ),
            distributions=weights,
            zipf_exponent=self.span(table, "zipf_exponent", p, high=10.0, default=[0.4, 1.2]),
            hot_fraction=self.span(table, "hot_fraction", p, high=1.0, default=[0.05, 0.4]),
            hot_share=self.span(table, "hot_share", p, high=1.0, default=[0.6, 0.95]),
        )

    def phases(self, table: dict) -> PhaseRanges:
        p = "phases"
        self.keys(table, _PHASE_KEYS, p)
        return PhaseRanges(
            per_app=self.span(table, "per_app", p, integer=True, default=0),
            intensity=self.span(table, "intensity", p, log=True, default=[0.25, 2.0]),
            change_think_share=self.share(table, "change_think_share", p, 0.0),
            change_read_share=self.share(table, "change_read_share", p, 0.0),
            move_hot_set_share=self.share(table, "move_hot_set_share", p, 0.0),
        )

    def co_runners(self, table: dict, n_nodes: int) -> CoRunnerRanges:
        p = "co_runners"
        self.keys(table, _CO_RUNNER_KEYS, p)
        nodes = table.get("nodes", list(range(n_nodes)))
        if (
            not isinstance(nodes, list)
            or not nodes
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in nodes)
            or not all(0 <= n < n_nodes for n in nodes)
        ):
            self.fail(f"{p}.nodes", f"expected a list of node indices in 0..{n_nodes - 1}")
        return CoRunnerRanges(
            share=self.share(table, "share", p, 0.0),
            nodes=tuple(nodes),
            cores=self.span(table, "cores", p, low=1, integer=True, default=[2, 8]),
            misses_per_core=self.span(table, "misses_per_core", p, log=True, default=[16, 48]),
            read_fraction=self.span(table, "read_fraction", p, high=1.0, default=[0.5, 1.0]),
            working_set=self.span(table, "working_set", p, size=True, default=["1 GiB", "4 GiB"]),
        )

    def traffic_ranges(self, table: dict) -> TrafficRanges:
        p = "traffic"
        self.keys(table, _TRAFFIC_KEYS, p)
        return TrafficRanges(
            share=self.share(table, "share", p, 0.0),
            of_peak=self.span(table, "of_peak", p, high=1.0, default=[0.05, 0.4]),
            read_fraction=self.span(table, "read_fraction", p, high=1.0, default=[0.5, 1.0]),
        )


#: What names a distribution where a scenario is expected: ``"random:default"``.
RANDOM_PREFIX = "random:"
#: What restricts a named distribution's hosts: ``"random:default?exclude=amd-damos-v4"``
#: (leave a host family out of training) or ``"random:default?hosts=a,b"`` (only those).
HOST_FILTERS = ("hosts", "exclude")


def distribution_of(scenario: object) -> ScenarioDistribution | None:
    """The distribution ``scenario`` names (``"random:NAME"``, ``"random:FILE.toml"``, either
    with a host filter such as ``"?exclude=HOST,HOST"``, or a ``ScenarioDistribution``), or
    None for an ordinary scenario reference."""
    if isinstance(scenario, ScenarioDistribution):
        return scenario
    if isinstance(scenario, str) and scenario.startswith(RANDOM_PREFIX):
        name, _, query = scenario[len(RANDOM_PREFIX) :].partition("?")
        distribution = load_distribution(name)
        return _filtered(distribution, query, scenario) if query else distribution
    return None


def restrict_hosts(
    distribution: ScenarioDistribution,
    hosts: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> ScenarioDistribution:
    """``distribution`` drawing only from ``hosts`` (all when None) minus ``exclude``, with
    their weights; names are checked against the distribution's hosts."""
    known = [host.name for host in distribution.hosts]
    for name in [*(hosts or ()), *exclude]:
        if name not in known:
            raise DistributionError(
                f"{distribution.source}: no host {name!r} in distribution "
                f"{distribution.name!r}; its hosts: {', '.join(known)}"
            )
    kept = tuple(
        host
        for host in distribution.hosts
        if (hosts is None or host.name in hosts) and host.name not in exclude
    )
    if not kept or sum(host.weight for host in kept) <= 0:
        raise DistributionError(
            f"{distribution.source}: the host filter leaves no host with a weight > 0 to "
            f"draw from (hosts: {', '.join(known)})"
        )
    return dataclasses.replace(distribution, hosts=kept)


def _filtered(distribution: ScenarioDistribution, query: str, spec: str) -> ScenarioDistribution:
    """The distribution after the ``?hosts=...&exclude=...`` part of ``spec``."""
    lists: dict[str, list[str]] = {}
    for part in query.split("&"):
        key, equals, value = part.partition("=")
        names = [name.strip() for name in value.split(",") if name.strip()]
        if key not in HOST_FILTERS or not equals or not names or key in lists:
            raise DistributionError(
                f"{spec!r}: bad host filter {part!r}; write ?exclude=HOST,HOST or "
                "?hosts=HOST,HOST (each at most once, joined by &)"
            )
        lists[key] = names
    return restrict_hosts(distribution, lists.get("hosts"), lists.get("exclude", ()))


def managed_app_names(distribution: ScenarioDistribution) -> tuple[str, ...]:
    """Every managed application name a draw can have (``app-0`` ... in draw order): fixed
    columns for per-application info."""
    return tuple(_app_name(i) for i in range(int(distribution.apps.count.high)))


def _app_name(index: int) -> str:
    return f"app-{index}"


# --- drawing --------------------------------------------------------------------------------


def draw_scenario(
    distribution: ScenarioDistribution, rng: np.random.Generator, name: str | None = None
) -> Scenario:
    """One scenario drawn with ``rng`` (checked by the scenario loader)."""
    mapping = draw_mapping(distribution, rng, name)
    return parse_scenario(scenario_toml(mapping), source=f"<drawn {mapping['name']}>")


def scenario_toml(mapping: dict[str, Any]) -> str:
    """A drawn scenario's mapping as scenario-file text."""
    return tomli_w.dumps(mapping)


def seeded_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scenario ``index`` of seed ``seed`` (independent of how many are
    drawn, so scenario 7 of seed 1 is the same in a batch of 10 or of 50)."""
    return np.random.default_rng([GENERATOR_VERSION, seed, index])


def generate(
    distribution: ScenarioDistribution, seed: int, count: int, first: int = 0
) -> list[tuple[str, str]]:
    """``count`` scenarios (name, TOML text) of ``seed``: indices ``first`` onwards."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    drawn = []
    for index in range(first, first + count):
        name = f"{distribution.name}-s{seed}-{index:03d}"
        mapping = draw_mapping(distribution, seeded_rng(seed, index), name)
        mapping["description"] += (
            f" Drawn by `tierenv scenarios generate {distribution.name} --seed {seed}` "
            f"(index {index})."
        )
        text = scenario_toml(mapping)
        parse_scenario(text, source=name)  # every written file loads
        drawn.append((name, text))
    return drawn


def draw_mapping(
    distribution: ScenarioDistribution, rng: np.random.Generator, name: str | None = None
) -> dict[str, Any]:
    """One scenario as a scenario-file mapping (see ``tierenv.workload.scenario``)."""
    d = distribution
    interval = d.control_interval_s
    duration = max(interval, _grid(d.duration_s.draw(rng), interval))
    host = d.hosts[_choose(rng, [h.weight for h in d.hosts])]
    capacity = sum(c for _, c in host.nodes)
    co_runner = (
        _draw_co_runner(d, host, duration, rng) if rng.random() < d.co_runners.share else None
    )
    apps, events = _draw_apps(d, host, duration, rng)
    managed_budget = d.apps.max_capacity_share * capacity
    if co_runner is not None:
        # a bound co-runner's node must hold it beside every managed page the weights may
        # put there (the loader's rule), so the managed apps share what is left of it
        node_capacity = host.nodes[co_runner["bind_node"]][1]
        managed_budget = min(managed_budget, 0.9 * node_capacity - co_runner["_bytes"])
    _fit_working_sets(apps, managed_budget, d.page_size)
    traffic = _draw_traffic(d, host, duration, rng) if rng.random() < d.traffic.share else None
    quota = max(_grid(d.quota_per_s.draw(rng), 1 << 20), 1 << 20)  # whole MiB/s, at least one
    # drawn last and only when asked for, so distributions without it draw as before
    if d.unlimited_quota_share > 0 and rng.random() < d.unlimited_quota_share:
        quota = 0
    label = name or f"{d.name}-drawn"
    mapping: dict[str, Any] = {
        "name": label,
        "description": _describe(d, host, apps, events, co_runner, traffic, quota),
        "duration_s": duration,
        "control_interval_s": interval,
        "page_size": format_size(d.page_size),
        "damos": {
            "quota_per_s": format_size(quota),
            "min_access_percent": d.min_access_percent,
        },
        "nodes": [
            {"profile": profile, "capacity": format_size(capacity_bytes)}
            for profile, capacity_bytes in host.nodes
        ],
        "apps": [_app_table(app) for app in apps],
    }
    if co_runner is not None:
        mapping["apps"].append(_app_table(co_runner))
    if events:
        mapping["events"] = sorted(events, key=lambda e: (e["at_s"], e["app"]))
    if traffic is not None:
        mapping["traffic"] = [traffic]
    return mapping


def _draw_apps(
    d: ScenarioDistribution, host: HostChoice, duration: float, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    r = d.apps
    count = r.count.draw_int(rng)
    most_cores = max(1, host.cores // count)
    apps: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    min_run = min(r.min_run_s, duration)
    for index in range(count):
        latency_bound = bool(rng.random() < r.latency_bound_share)
        cores = min(r.cores.draw_int(rng), most_cores)
        per_core = (r.latency_bound_misses_per_core if latency_bound else r.misses_per_core).draw(
            rng
        )
        think = (r.latency_bound_think_ns if latency_bound else r.think_ns).draw(rng)
        start, stop = 0, None
        if index > 0 and duration - min_run >= d.control_interval_s:
            if rng.random() < r.late_start_share:
                start = _grid(rng.uniform(0.0, duration - min_run), d.control_interval_s)
            if rng.random() < r.early_stop_share and duration - start >= 2 * min_run:
                stop = _grid(rng.uniform(start + min_run, duration), d.control_interval_s)
        kind = r.distributions[_choose(rng, [w for _, w in r.distributions])][0]
        distribution: dict[str, Any] = {"kind": kind}
        if kind == "zipf":
            distribution["exponent"] = round(r.zipf_exponent.draw(rng), 3)
            distribution["seed"] = int(rng.integers(0, 2**31))
        elif kind == "hotcold":
            distribution["hot_fraction"] = round(r.hot_fraction.draw(rng), 3)
            distribution["hot_share"] = round(r.hot_share.draw(rng), 3)
        app: dict[str, Any] = {
            "name": _app_name(index),
            "_bytes": _grid(r.working_set.draw(rng), SIZE_GRAIN),
            "mlp": round(cores * per_core, 1),
            "think_ns": round(think, 1),
            "read_fraction": round(r.read_fraction.draw(rng), 3),
            "start_s": start,
            "latency_bound": latency_bound,
            "distribution": distribution,
        }
        if stop is not None:
            app["stop_s"] = stop
        if rng.random() < r.growth_share:
            app["growth"] = format_size(max(_grid(r.growth_per_s.draw(rng), 1 << 20), 1 << 20))
        apps.append(app)
        end = duration if stop is None else stop
        events += _draw_events(d, app, start, end, rng)
    return apps, events


def _draw_events(
    d: ScenarioDistribution, app: dict[str, Any], start: float, end: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Phases of one app: event times at least ``min_run_s`` from its start, from each other
    and from its end, so every phase lasts long enough for placement to matter."""
    p, gap = d.phases, d.apps.min_run_s
    slots = int((end - start) // gap) - 1  # phase boundaries that fit
    n_events = min(p.per_app.draw_int(rng), max(slots, 0))
    if n_events <= 0:
        return []
    # n_events boundaries with every phase >= gap: draw the spare time and split it
    spare = (end - start) - gap * (n_events + 1)
    cuts = np.sort(rng.uniform(0.0, spare, n_events))
    events = []
    for k, cut in enumerate(cuts):
        at = _grid(start + gap * (k + 1) + cut, d.control_interval_s)
        if not start < at < end:
            continue
        event: dict[str, Any] = {
            "at_s": at,
            "app": app["name"],
            "intensity": round(p.intensity.draw(rng), 3),
        }
        if rng.random() < p.change_think_share:
            event["think_ns"] = round(d.apps.think_ns.draw(rng), 1)
        if rng.random() < p.change_read_share:
            event["read_fraction"] = round(d.apps.read_fraction.draw(rng), 3)
        if app["distribution"]["kind"] == "hotcold" and rng.random() < p.move_hot_set_share:
            event["hot_offset"] = round(float(rng.uniform(0.0, 0.999)), 3)
        events.append(event)
    unique = {e["at_s"]: e for e in events}  # two cuts on one interval: keep one event
    return list(unique.values())


def _draw_co_runner(
    d: ScenarioDistribution, host: HostChoice, duration: float, rng: np.random.Generator
) -> dict[str, Any]:
    c = d.co_runners
    node = c.nodes[int(rng.integers(len(c.nodes)))]
    cores = min(c.cores.draw_int(rng), host.cores)
    start, stop = 0, None
    min_run = min(d.apps.min_run_s, duration)
    if duration - min_run >= d.control_interval_s and rng.random() < 0.5:
        start = _grid(rng.uniform(min_run, duration - min_run), d.control_interval_s)
    if start == 0.0 and duration >= 3 * min_run and rng.random() < 0.5:
        stop = _grid(rng.uniform(min_run, duration - min_run), d.control_interval_s)
    table: dict[str, Any] = {
        "name": "co-runner",
        "_bytes": _grid(c.working_set.draw(rng), SIZE_GRAIN),
        "mlp": round(cores * c.misses_per_core.draw(rng), 1),
        "think_ns": round(d.apps.think_ns.draw(rng), 1),
        "read_fraction": round(c.read_fraction.draw(rng), 3),
        "start_s": start,
        "bind_node": node,
        "distribution": {"kind": "uniform"},
    }
    if stop is not None:
        table["stop_s"] = stop
    return table


def _draw_traffic(
    d: ScenarioDistribution, host: HostChoice, duration: float, rng: np.random.Generator
) -> dict[str, Any]:
    t = d.traffic
    node = int(rng.integers(len(host.nodes)))
    peak = float(load_profile(host.nodes[node][0]).saturation_gbps(TRAFFIC_READ_SHARE))
    table: dict[str, Any] = {
        "node": node,
        "gbps": round(t.of_peak.draw(rng) * peak, 2),
        "read_fraction": round(t.read_fraction.draw(rng), 3),
    }
    min_run = min(d.apps.min_run_s, duration)
    if duration - min_run >= d.control_interval_s and rng.random() < 0.5:
        table["start_s"] = _grid(rng.uniform(0.0, duration - min_run), d.control_interval_s)
    return table


def _fit_working_sets(apps: list[dict[str, Any]], budget: float, page_size: int) -> None:
    """Shrink the managed apps' working sets (in proportion) so that all of them together fit
    in ``budget`` bytes, whatever their overlap in time: what the scenario loader requires at
    any moment, kept simple by not relying on who overlaps whom."""
    grain = max(SIZE_GRAIN, page_size)
    total = sum(app["_bytes"] for app in apps)
    if total > budget:
        scale = max(budget, 0.0) / total
        for app in apps:
            app["_bytes"] = max(grain, int(app["_bytes"] * scale) // grain * grain)


def _app_table(app: dict[str, Any]) -> dict[str, Any]:
    table = {k: v for k, v in app.items() if not k.startswith("_")}
    ordered = {"name": table.pop("name"), "working_set": format_size(app["_bytes"])}
    distribution = table.pop("distribution")
    ordered.update(table)
    ordered["distribution"] = distribution  # a sub-table goes last in TOML
    return ordered


def _describe(
    d: ScenarioDistribution,
    host: HostChoice,
    apps: list[dict[str, Any]],
    events: list[dict[str, Any]],
    co_runner: dict[str, Any] | None,
    traffic: dict[str, Any] | None,
    quota: int,
) -> str:
    parts = [
        f"Drawn from the '{d.name}' scenario distribution (generator version {d.version}):",
        f"host {host.name} ({', '.join(p for p, _ in host.nodes)});",
        f"{len(apps)} managed application(s), {len(events)} phase change(s);",
    ]
    if co_runner is not None:
        parts.append(f"a co-runner bound to node {co_runner['bind_node']};")
    if traffic is not None:
        parts.append(f"{traffic['gbps']:g} GB/s of background traffic on node {traffic['node']};")
    rate = f"at {format_size(quota)}/s" if quota else "without a quota"
    parts.append(f"DAMOS migrate_hot {rate}.")
    return " ".join(parts)


def _grid(value: float, step: float) -> Any:
    """``value`` rounded to a whole number of ``step`` (ints stay ints)."""
    rounded = round(value / step) * step
    return int(rounded) if float(step).is_integer() else float(rounded)


def _choose(rng: np.random.Generator, weights: list[float]) -> int:
    p = np.asarray(weights, dtype=float)
    return int(rng.choice(len(p), p=p / p.sum()))
