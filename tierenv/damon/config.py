"""One simulated kdamond context's configuration, validated as the kernel's ``on``/``commit`` does.

The simulator consumes these objects and the real-host backend will write them to
``/sys/kernel/mm/damon/admin/kdamonds/N/contexts/0/``, so names follow the sysfs files and every
value is in kernel units: microseconds, milliseconds, bytes, samples per aggregation interval,
aggregation intervals, basis points, per-mille. The rules come from
``shared/reference/damon-kernel-semantics.md`` (§1.1 attrs, §2.2-2.8 DAMOS, §3.2 formats, §3.5
errors).

Three levels of checking:

* every dataclass checks its own fields when built (``__post_init__``), so a frozen object with a
  bad field cannot exist;
* :meth:`ContextConfig.validate` adds the checks that need the whole context (paddr takes one
  target with regions, paddr migrates only to ``target_nid``, a ``target`` filter names a target)
  and, given the host's nodes, rejects destinations the kernel would silently ignore;
* :meth:`ContextConfig.from_dict` parses the sysfs-shaped mapping below and runs ``validate()``,
  so a parsed config is complete or not built at all.

Errors are :class:`DamonConfigError` and start with the sysfs-style path of the field, e.g.
``schemes[0].quotas.goals[1].target_metric: unknown metric 'foo'; expected one of ...``.

Mapping schema (every section and key optional; defaults are the kernel's, except the access
pattern, which matches everything)::

    operations: vaddr                      # vaddr | paddr
    addr_unit: 1
    monitoring_attrs:
      intervals: {sample_us: 5000, aggr_us: 100000, update_us: 60000000,
                  intervals_goal: {access_bp: 0, aggrs: 0, min_sample_us: 0, max_sample_us: 0}}
      nr_regions: {min: 10, max: 1000}
    targets: [{pid: 0, regions: [{start: 0, end: 4096}]}]
    schemes:
      - action: migrate_hot
        access_pattern: {sz: {min: 0, max: max}, nr_accesses: {min: 1, max: 20},
                         age: {min: 0, max: max}}
        apply_interval_us: 0
        quotas: {ms: 0, bytes: 0, reset_interval_ms: 0,
                 weights: {sz_permil: 0, nr_accesses_permil: 0, age_permil: 0},
                 goals: [{target_metric: node_mem_used_bp, target_value: 9000,
                          current_value: 0, nid: 0}]}
        watermarks: {metric: none, interval_us: 0, high: 0, mid: 0, low: 0}
        target_nid: -1
        dests: [{id: 0, weight: 3}, {id: 1, weight: 1}]
        filters: [{type: addr, matching: true, allow: false, addr_start: 0, addr_end: 4096,
                   target_idx: 0}]

Integers may be strings in the kernel's ``kstrtoul(base 0)`` grammar (``"4096"``, ``"0x1000"``,
``"010"`` is octal 8); any ``min``/``max`` may be ``"max"``, the field's kernel maximum.
Booleans may be ``kstrtobool`` words (``Y``/``N``, ``1``/``0``, ``on``/``off``, ``true``/``false``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

ULONG_MAX = 2**64 - 1
UINT_MAX = 2**32 - 1
INT_MAX = 2**31 - 1
DAMOS_MAX_SCORE = 99

OPERATIONS = ("vaddr", "paddr")
KERNEL_OPERATIONS = ("vaddr", "fvaddr", "paddr")
KERNEL_ACTIONS = (
    "willneed",
    "cold",
    "pageout",
    "hugepage",
    "nohugepage",
    "lru_prio",
    "lru_deprio",
    "migrate_hot",
    "migrate_cold",
    "stat",
)
SIMULATED_ACTIONS = ("migrate_hot", "migrate_cold", "stat")
MIGRATE_ACTIONS = ("migrate_hot", "migrate_cold")
GOAL_METRICS = (
    "user_input",
    "some_mem_psi_us",
    "node_mem_used_bp",
    "node_mem_free_bp",
    "node_memcg_used_bp",
    "node_memcg_free_bp",
    "active_mem_bp",
)
SIMULATED_GOAL_METRICS = ("user_input", "node_mem_used_bp", "node_mem_free_bp")
# Goal metrics measured on one node: their ``nid`` file matters.
NODE_GOAL_METRICS = (
    "node_mem_used_bp",
    "node_mem_free_bp",
    "node_memcg_used_bp",
    "node_memcg_free_bp",
)
WATERMARK_METRICS = ("none", "free_mem_rate")
CORE_FILTER_TYPES = ("addr", "target")
OPS_FILTER_TYPES = ("anon", "memcg", "young", "hugepage_size", "unmapped", "active")
KERNEL_FILTER_TYPES = CORE_FILTER_TYPES + OPS_FILTER_TYPES
SIMULATED_FILTER_TYPES = CORE_FILTER_TYPES

MIN_NR_REGIONS = 3  # damon_set_attrs: min_nr_regions < 3 is -EINVAL


# --- Errors and paths -------------------------------------------------------------------------


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


class DamonConfigError(ValueError):
    """A configuration the kernel (or a careful tool) would refuse; says where, what and why.

    ``path`` is the sysfs-style field path (``schemes[0].dests[1].id``), ``problem`` the reason
    including the offending value, ``source`` the file the config came from, if any.
    """

    def __init__(self, path: str, problem: str, source: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.source = source
        message = f"{path}: {problem}" if path else problem
        super().__init__(f"{source}: {message}" if source else message)

    def under(self, prefix: str) -> DamonConfigError:
        """The same error seen from an enclosing object at ``prefix``."""
        return DamonConfigError(_join(prefix, self.path), self.problem, self.source)

    def in_source(self, source: str) -> DamonConfigError:
        return DamonConfigError(self.path, self.problem, source)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error picklable (vectorised environments send errors between processes).
        return (DamonConfigError, (self.path, self.problem, self.source))


# A nested object was checked when it was built (the dataclasses are frozen), so building a
# parent checks only its own fields and its children's types; ``validate`` checks all again.
_RECHECK_CHILDREN: ContextVar[bool] = ContextVar("recheck_children", default=False)


@contextmanager
def _rechecking_children() -> Iterator[None]:
    token = _RECHECK_CHILDREN.set(True)
    try:
        yield
    finally:
        _RECHECK_CHILDREN.reset(token)


@contextmanager
def _located(prefix: str) -> Iterator[None]:
    """Re-raise errors of a nested object with the path of that object in front."""
    try:
        yield
    except DamonConfigError as error:
        raise error.under(prefix) from None


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _choices(options: Sequence[str]) -> str:
    return ", ".join(options)


def _a(name: str) -> str:
    return f"an {name}" if name[:1] in "AEIOUaeiou" else f"a {name}"


# --- Field checks (shared by every dataclass) -------------------------------------------------


def _as_int(value: Any, path: str) -> int:
    """An exact integer: ints and numpy integers pass; bool, float, str and containers do not."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise DamonConfigError(path, f"expected an integer, got {_describe(value)}")
    return operator.index(value)


def _int_field(obj: Any, name: str, path: str, low: int, high: int, kind: str) -> int:
    """Check ``obj.name`` is an int in [low, high] (the kernel file's type); store it as int."""
    value = _as_int(getattr(obj, name), path)
    if value < low:
        if low == 0:
            raise DamonConfigError(path, f"{value} is negative; the kernel file is {kind}")
        raise DamonConfigError(path, f"{value} is below the smallest allowed value {low}")
    if value > high:
        raise DamonConfigError(path, f"{value} exceeds the {kind} maximum {high}")
    object.__setattr__(obj, name, value)
    return value


def _ulong(obj: Any, name: str, path: str | None = None) -> int:
    return _int_field(obj, name, name if path is None else path, 0, ULONG_MAX, "unsigned long")


def _uint(obj: Any, name: str, path: str | None = None) -> int:
    return _int_field(obj, name, name if path is None else path, 0, UINT_MAX, "unsigned int")


def _nid(obj: Any, name: str, path: str | None = None) -> int:
    """A node id in an ``int`` file: -1 (NUMA_NO_NODE) or a node; lower values mean nothing."""
    return _int_field(obj, name, name if path is None else path, -1, INT_MAX, "int")


def _bool_field(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, bool):
        raise DamonConfigError(name, f"expected a bool, got {_describe(value)}")


def _keyword(obj: Any, name: str, known: Sequence[str], simulated: Sequence[str], what: str) -> str:
    """A sysfs keyword: unknown to the kernel and known-but-not-simulated are different errors."""
    value = getattr(obj, name)
    if not isinstance(value, str):
        raise DamonConfigError(name, f"expected a string, got {_describe(value)}")
    if value not in known:
        raise DamonConfigError(name, f"unknown {what} {value!r}; expected one of {_choices(known)}")
    if value not in simulated:
        raise DamonConfigError(
            name,
            f"{what} {value!r} is known to the kernel but not simulated; "
            f"the simulator supports {_choices(simulated)}",
        )
    return value


def _tuple_field(obj: Any, name: str, item_type: type) -> tuple[Any, ...]:
    """Store a sequence field as a tuple (hashable, comparable) and check its item type."""
    value = getattr(obj, name)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise DamonConfigError(
            name, f"expected a sequence of {item_type.__name__}, got {_describe(value)}"
        )
    items = tuple(value)
    for index, item in enumerate(items):
        if not isinstance(item, item_type):
            raise DamonConfigError(
                f"{name}[{index}]", f"expected {_a(item_type.__name__)}, got {_describe(item)}"
            )
        if _RECHECK_CHILDREN.get():
            with _located(f"{name}[{index}]"):
                item._check()
    object.__setattr__(obj, name, items)
    return items


def _child(obj: Any, name: str, item_type: type, path: str | None = None) -> None:
    value = getattr(obj, name)
    path = name if path is None else path
    if not isinstance(value, item_type):
        raise DamonConfigError(path, f"expected {_a(item_type.__name__)}, got {_describe(value)}")
    if _RECHECK_CHILDREN.get():
        with _located(path):
            value._check()


# --- Monitoring attributes --------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalsGoal:
    """Monitoring-intervals auto-tuning (6.15+): aim for ``access_bp`` of the maximum observable
    access events, retuning every ``aggrs`` aggregation intervals within [min, max] sample_us.

    ``aggrs == 0`` disables tuning (kernel default); the sample bounds are then not checked.
    """

    access_bp: int = 0
    aggrs: int = 0
    min_sample_us: int = 0
    max_sample_us: int = 0

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        for name in ("access_bp", "aggrs", "min_sample_us", "max_sample_us"):
            _ulong(self, name)
        if self.enabled and self.min_sample_us > self.max_sample_us:
            raise DamonConfigError(
                "min_sample_us",
                f"{self.min_sample_us} exceeds max_sample_us {self.max_sample_us} "
                "(damon_set_attrs: -EINVAL)",
            )

    @property
    def enabled(self) -> bool:
        return self.aggrs != 0


# sysfs-style paths of MonitoringAttrs fields, used in error messages.
_ATTRS_PATHS = {
    "sample_us": "intervals.sample_us",
    "aggr_us": "intervals.aggr_us",
    "update_us": "intervals.update_us",
    "intervals_goal": "intervals.intervals_goal",
    "min_nr_regions": "nr_regions.min",
    "max_nr_regions": "nr_regions.max",
}


@dataclass(frozen=True)
class MonitoringAttrs:
    """``monitoring_attrs/``: sampling and aggregation intervals (µs) and the region count bounds.

    Checked as ``damon_set_attrs()`` does at on/commit (-EINVAL), plus ``aggr_us > 0``, which the
    kernel does not require but without which nothing is ever aggregated.
    """

    sample_us: int = 5000
    aggr_us: int = 100_000
    update_us: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1000
    intervals_goal: IntervalsGoal = IntervalsGoal()

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        paths = _ATTRS_PATHS
        for name in ("sample_us", "aggr_us", "update_us", "min_nr_regions", "max_nr_regions"):
            _ulong(self, name, paths[name])
        _child(self, "intervals_goal", IntervalsGoal, paths["intervals_goal"])
        if self.aggr_us == 0:
            raise DamonConfigError(
                paths["aggr_us"], "0 is not allowed: an aggregation interval must be positive"
            )
        if self.sample_us > self.aggr_us:
            raise DamonConfigError(
                paths["sample_us"],
                f"{self.sample_us} exceeds aggr_us {self.aggr_us} (damon_set_attrs: -EINVAL)",
            )
        if self.min_nr_regions < MIN_NR_REGIONS:
            raise DamonConfigError(
                paths["min_nr_regions"],
                f"{self.min_nr_regions} is below {MIN_NR_REGIONS} (damon_set_attrs: -EINVAL)",
            )
        if self.min_nr_regions > self.max_nr_regions:
            raise DamonConfigError(
                paths["min_nr_regions"],
                f"{self.min_nr_regions} exceeds nr_regions.max {self.max_nr_regions} "
                "(damon_set_attrs: -EINVAL)",
            )
        goal = self.intervals_goal
        if goal.enabled and not goal.min_sample_us <= self.sample_us <= goal.max_sample_us:
            raise DamonConfigError(
                paths["sample_us"],
                f"{self.sample_us} is outside intervals_goal [min_sample_us, max_sample_us] = "
                f"[{goal.min_sample_us}, {goal.max_sample_us}] (damon_set_attrs: -EINVAL)",
            )

    @property
    def aggr_samples(self) -> int:
        """Samples per aggregation interval; the interval tuner keeps this ratio fixed."""
        return self.aggr_us // max(self.sample_us, 1)

    @property
    def max_nr_accesses(self) -> int:
        """``damon_max_nr_accesses()`` with the stable fix for extreme intervals (never 0)."""
        return max(min(self.aggr_us // max(self.sample_us, 1), UINT_MAX), 1)


# --- Access pattern ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A closed interval ``[min, max]`` of one access-pattern quantity.

    ``min > max`` is accepted, as the kernel accepts it: such a range matches nothing. Bounds are
    unsigned; the enclosing :class:`AccessPattern` narrows them to the field's kernel type.
    """

    min: int
    max: int

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _ulong(self, "min")
        _ulong(self, "max")

    def contains(self, value: int) -> bool:
        return self.min <= value <= self.max


_SZ_ALL = Range(0, ULONG_MAX)
_UINT_ALL = Range(0, UINT_MAX)


def _user_number(value: Any, path: str) -> Fraction:
    """A user-facing number (percent, µs) as an exact fraction, reading floats as decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DamonConfigError(path, f"expected a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DamonConfigError(path, f"expected a finite number, got {value!r}")
    number = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    if number < 0:
        raise DamonConfigError(path, f"{value!r} is negative")
    return number


def _pair(value: Any, path: str) -> tuple[Any, Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise DamonConfigError(path, f"expected a (min, max) pair, got {_describe(value)}")
    if len(value) != 2:
        raise DamonConfigError(path, f"expected a (min, max) pair, got {len(value)} items")
    return value[0], value[1]


@dataclass(frozen=True)
class AccessPattern:
    """``access_pattern/``: which regions a scheme acts on; every range is closed.

    Units are the kernel's: ``sz`` bytes (unsigned long), ``nr_accesses`` samples per aggregation
    interval (compared with ``nr_accesses_bp / 10000``; unsigned int), ``age`` aggregation
    intervals (unsigned int).

    The defaults here match every region. The sysfs files start at 0 after ``nr_schemes`` is
    written (which matches only empty, never-accessed, new regions), so the host backend must
    write all six values.
    """

    sz: Range = _SZ_ALL
    nr_accesses: Range = _UINT_ALL
    age: Range = _UINT_ALL

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _child(self, "sz", Range)
        for name in ("nr_accesses", "age"):
            _child(self, name, Range)
            bounds = getattr(self, name)
            _uint(bounds, "min", f"{name}.min")
            _uint(bounds, "max", f"{name}.max")

    def matches(self, size_bytes: int, nr_accesses: int, age: int) -> bool:
        """``__damos_valid_target``'s pattern test (without the quota's score threshold)."""
        return (
            self.sz.contains(size_bytes)
            and self.nr_accesses.contains(nr_accesses)
            and self.age.contains(age)
        )

    @classmethod
    def from_user(
        cls,
        attrs: MonitoringAttrs,
        sz_bytes: tuple[int, int | None] = (0, ULONG_MAX),
        access_rate_percent: tuple[float, float | None] = (0, 100),
        age_us: tuple[float, float | None] = (0, None),
    ) -> AccessPattern:
        """Convert damo-style units to kernel units for the given monitoring attributes.

        As damo does: ``samples = floor(percent * aggr_samples / 100)`` and
        ``aggr_intervals = floor(usec / aggr_us)``. 100 % becomes ``attrs.max_nr_accesses``;
        a ``None`` maximum means the kernel maximum (ULONG_MAX bytes, UINT_MAX samples or
        intervals). Arithmetic is exact (floats are read as the decimals they print as), so
        5 % of 20 samples is exactly 1 where a float product could round below it.
        """
        if not isinstance(attrs, MonitoringAttrs):
            raise DamonConfigError("attrs", f"expected MonitoringAttrs, got {_describe(attrs)}")
        sz_min, sz_max = _pair(sz_bytes, "sz_bytes")
        sz = (
            _as_int(sz_min, "sz_bytes[0]"),
            ULONG_MAX if sz_max is None else _as_int(sz_max, "sz_bytes[1]"),
        )

        def samples(value: Any, path: str) -> int:
            percent = _user_number(value, path)
            if percent > 100:
                raise DamonConfigError(path, f"{value!r} exceeds 100 percent")
            if percent == 100:
                return attrs.max_nr_accesses
            return math.floor(percent * attrs.aggr_samples / 100)

        rate_min, rate_max = _pair(access_rate_percent, "access_rate_percent")
        nr_accesses = (
            samples(rate_min, "access_rate_percent[0]"),
            UINT_MAX if rate_max is None else samples(rate_max, "access_rate_percent[1]"),
        )

        def intervals(value: Any, path: str) -> int:
            return math.floor(_user_number(value, path) / attrs.aggr_us)

        age_min, age_max = _pair(age_us, "age_us")
        age = (
            intervals(age_min, "age_us[0]"),
            UINT_MAX if age_max is None else intervals(age_max, "age_us[1]"),
        )
        return cls(sz=Range(*sz), nr_accesses=Range(*nr_accesses), age=Range(*age))


# --- Quotas -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaGoal:
    """``quotas/goals/K/``: a feedback target that tunes the effective size quota (§2.6).

    ``target_value == 0`` is accepted because the kernel accepts it, but the kernel then drops
    the goal silently (``damos_sysfs_add_quota_score``); :attr:`active` says whether it counts.
    ``nid`` matters only for the ``node_*`` metrics, which need a real node (>= 0).
    """

    target_metric: str
    target_value: int
    current_value: int = 0
    nid: int = -1

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _keyword(self, "target_metric", GOAL_METRICS, SIMULATED_GOAL_METRICS, "metric")
        _ulong(self, "target_value")
        _ulong(self, "current_value")
        _nid(self, "nid")
        if self.target_metric in NODE_GOAL_METRICS and self.nid < 0:
            raise DamonConfigError(
                "nid", f"{self.nid} is not a node; metric {self.target_metric!r} needs nid >= 0"
            )

    @property
    def active(self) -> bool:
        return self.target_value != 0


_WEIGHT_NAMES = ("sz_permil", "nr_accesses_permil", "age_permil")


@dataclass(frozen=True)
class Quotas:
    """``quotas/``: per-window limits on what a scheme may try, and how regions are prioritised.

    ``ms`` (time), ``bytes`` (size) and ``reset_interval_ms`` (the charge window) are unsigned
    long; the ``*_permil`` priority weights (files under ``weights/``) unsigned int. With ``ms``
    and ``bytes`` both 0 and no active goal the scheme is unlimited. ``sz_permil`` is accepted
    but no kernel score uses it.
    """

    ms: int = 0
    bytes: int = 0
    reset_interval_ms: int = 0
    sz_permil: int = 0
    nr_accesses_permil: int = 0
    age_permil: int = 0
    goals: tuple[QuotaGoal, ...] = ()

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        for name in ("ms", "bytes", "reset_interval_ms"):
            _ulong(self, name)
        for name in _WEIGHT_NAMES:
            _uint(self, name, f"weights.{name}")
        _tuple_field(self, "goals", QuotaGoal)

    @property
    def limited(self) -> bool:
        """Whether the kernel computes an effective quota (and so prioritises regions)."""
        return self.ms != 0 or self.bytes != 0 or any(goal.active for goal in self.goals)


# --- Watermarks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watermarks:
    """``watermarks/``: when a scheme is active, by a system metric checked every interval_us.

    ``none`` (default) is always active. ``free_mem_rate`` is free memory in per-mille; the
    kernel's hysteresis (``damos_wmark_wait_us``): metric > high or < low deactivates, low <=
    metric < mid (re)activates, and in [mid, high] the scheme keeps its state. The kernel checks
    neither the order low <= mid <= high nor a 0..1000 range, so neither is checked here.
    """

    metric: str = "none"
    interval_us: int = 0
    high: int = 0
    mid: int = 0
    low: int = 0

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _keyword(self, "metric", WATERMARK_METRICS, WATERMARK_METRICS, "watermark metric")
        for name in ("interval_us", "high", "mid", "low"):
            _ulong(self, name)


# --- Filters and destinations -----------------------------------------------------------------


@dataclass(frozen=True)
class DamosFilter:
    """A DAMOS filter: memory that matches ``type`` (or not, with ``matching=False``) is allowed
    (``allow=True``) or rejected. The first matching filter decides; memory no filter matches
    gets the opposite of the last filter's ``allow``.

    Only the core filters are simulated: ``addr`` (half-open ``[addr_start, addr_end)``; the
    kernel rejects ``addr_end < addr_start`` at on/commit) and ``target`` (``target_idx``, the
    sysfs ``damon_target_idx``). The host backend writes these to ``core_filters/``.
    """

    type: str
    matching: bool = True
    allow: bool = False
    addr_start: int = 0
    addr_end: int = 0
    target_idx: int = 0

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _keyword(self, "type", KERNEL_FILTER_TYPES, SIMULATED_FILTER_TYPES, "filter type")
        _bool_field(self, "matching")
        _bool_field(self, "allow")
        _ulong(self, "addr_start")
        _ulong(self, "addr_end")
        # An int file in the kernel; a negative index names no target, so refuse it.
        _int_field(self, "target_idx", "target_idx", 0, INT_MAX, "int")
        if self.type == "addr" and self.addr_end < self.addr_start:
            raise DamonConfigError(
                "addr_end",
                f"{self.addr_end:#x} is below addr_start {self.addr_start:#x} "
                "(the kernel returns -EINVAL at on/commit)",
            )


@dataclass(frozen=True)
class Dest:
    """``dests/K/``: a migration destination node and its weight.

    These are DAMON's own weights, not the mempolicy ones: any unsigned int, 0 included (a
    scheme whose weights sum to 0 migrates nothing). Pages go to dests in array order by
    ``ilx % sum(weights)``.
    """

    id: int
    weight: int

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _uint(self, "id")
        _uint(self, "weight")


# --- Schemes and targets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """``schemes/N/``: a DAMOS scheme.

    ``apply_interval_us = 0`` means "every aggregation interval". A migrate action needs a
    destination: ``dests`` (vaddr; with dests the kernel ignores ``target_nid``) or
    ``target_nid >= 0`` (the only destination paddr honours). ``dests`` and ``target_nid`` of
    other actions are ignored, as in the kernel.
    """

    action: str
    access_pattern: AccessPattern = AccessPattern()
    apply_interval_us: int = 0
    quotas: Quotas = Quotas()
    watermarks: Watermarks = Watermarks()
    target_nid: int = -1
    dests: tuple[Dest, ...] = ()
    filters: tuple[DamosFilter, ...] = ()

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _keyword(self, "action", KERNEL_ACTIONS, SIMULATED_ACTIONS, "action")
        _child(self, "access_pattern", AccessPattern)
        _ulong(self, "apply_interval_us")
        _child(self, "quotas", Quotas)
        _child(self, "watermarks", Watermarks)
        _nid(self, "target_nid")
        _tuple_field(self, "dests", Dest)
        _tuple_field(self, "filters", DamosFilter)
        if self.action in MIGRATE_ACTIONS and not self.dests and self.target_nid < 0:
            raise DamonConfigError(
                "dests",
                f"action {self.action!r} has no destination: give dests or target_nid >= 0 "
                f"(target_nid is {self.target_nid})",
            )


@dataclass(frozen=True)
class Target:
    """``targets/N/``: a monitoring target.

    ``pid`` is the simulated application's id (``pid_target``). ``regions`` are ``(start, end)``
    byte addresses; optional for vaddr, where DAMON builds them from the mappings, required for
    paddr. As at the kernel's on/commit, a region may not end before it starts, and regions must
    be in address order without overlap (touching is fine; empty regions are accepted).
    """

    pid: int
    regions: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _int_field(self, "pid", "pid", 0, INT_MAX, "int")
        value = self.regions
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            raise DamonConfigError(
                "regions", f"expected a sequence of (start, end) pairs, got {_describe(value)}"
            )
        regions = []
        for index, region in enumerate(value):
            path = f"regions[{index}]"
            start, end = _pair(region, path)
            start = _as_int(start, f"{path}.start")
            end = _as_int(end, f"{path}.end")
            for name, number in (("start", start), ("end", end)):
                if not 0 <= number <= ULONG_MAX:
                    raise DamonConfigError(
                        f"{path}.{name}", f"{number} is outside the unsigned long range"
                    )
            if start > end:
                raise DamonConfigError(
                    f"{path}.end",
                    f"{end:#x} is below start {start:#x} (the kernel returns -EINVAL at on)",
                )
            if regions and regions[-1][1] > start:
                previous = regions[-1]
                raise DamonConfigError(
                    f"{path}.start",
                    f"{start:#x} overlaps or precedes regions[{index - 1}] "
                    f"[{previous[0]:#x}, {previous[1]:#x}); regions must be sorted and "
                    "non-overlapping (the kernel returns -EINVAL at on)",
                )
            regions.append((start, end))
        object.__setattr__(self, "regions", tuple(regions))

    @property
    def size_bytes(self) -> int:
        return sum(end - start for start, end in self.regions)


# --- Context ----------------------------------------------------------------------------------


def _node_list(nodes: Sequence[int]) -> str:
    return ", ".join(str(node) for node in nodes) if nodes else "none"


@dataclass(frozen=True)
class ContextConfig:
    """``contexts/0/``: everything one simulated kdamond monitors and does.

    Building one checks every field of every part; :meth:`validate` adds the checks across
    parts and against the host's nodes. :meth:`from_dict` does both.
    """

    operations: str = "vaddr"
    attrs: MonitoringAttrs = MonitoringAttrs()
    targets: tuple[Target, ...] = ()
    schemes: tuple[Scheme, ...] = ()
    addr_unit: int = 1

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        _keyword(self, "operations", KERNEL_OPERATIONS, OPERATIONS, "operations")
        _child(self, "attrs", MonitoringAttrs, "monitoring_attrs")
        _tuple_field(self, "targets", Target)
        _tuple_field(self, "schemes", Scheme)
        # 6.18 rejects 0 (-EINVAL) in its final form; an early revision took it. Never 0.
        _int_field(self, "addr_unit", "addr_unit", 1, ULONG_MAX, "unsigned long")

    def validate(
        self, node_has_memory: Sequence[bool] | None = None, recheck_fields: bool = True
    ) -> None:
        """Run every check; with ``node_has_memory`` (index = node id) also check node ids.

        The kernel ignores migration to a node that does not exist or has no memory (and, before
        a stable fix, could oops); a careful tool refuses such a config instead. Every object's
        own fields were checked when it was built; ``recheck_fields=False`` skips checking them
        again and runs only the checks across objects (the per-commit fast path).
        """
        if recheck_fields:
            with _rechecking_children():
                self._check()
        self._check_context()
        if node_has_memory is not None:
            self._check_nodes(list(node_has_memory))

    def _check_context(self) -> None:
        if self.operations == "paddr":
            if len(self.targets) != 1:
                why = (
                    "the kernel returns -EINVAL for more than one"
                    if self.targets
                    else "it holds the physical address regions to monitor"
                )
                raise DamonConfigError(
                    "targets", f"paddr takes exactly one target, got {len(self.targets)} ({why})"
                )
            if not self.targets[0].regions:
                raise DamonConfigError(
                    "targets[0].regions",
                    "paddr needs at least one physical address region; the kernel does not "
                    "fill them in",
                )
        for s, scheme in enumerate(self.schemes):
            if (
                self.operations == "paddr"
                and scheme.action in MIGRATE_ACTIONS
                and scheme.target_nid < 0
            ):
                raise DamonConfigError(
                    f"schemes[{s}].target_nid",
                    f"{scheme.target_nid} names no node, but paddr ignores dests and "
                    f"{scheme.action} migrates only to target_nid; set target_nid >= 0",
                )
            for f, filt in enumerate(scheme.filters):
                if filt.type == "target" and filt.target_idx >= len(self.targets):
                    raise DamonConfigError(
                        f"schemes[{s}].filters[{f}].target_idx",
                        f"{filt.target_idx} names no target (the context has "
                        f"{len(self.targets)}); the filter would never match",
                    )

    def _check_nodes(self, has_memory: list[bool]) -> None:
        with_memory = [node for node, flag in enumerate(has_memory) if flag]

        def check(node: int, path: str) -> None:
            if node >= len(has_memory):
                if len(has_memory) > 1:
                    known = f"nodes 0..{len(has_memory) - 1}"
                else:
                    known = "only node 0" if has_memory else "no nodes"
                raise DamonConfigError(path, f"node {node} does not exist ({known})")
            if not has_memory[node]:
                raise DamonConfigError(
                    path,
                    f"node {node} has no memory (nodes with memory: {_node_list(with_memory)})",
                )

        for s, scheme in enumerate(self.schemes):
            if scheme.target_nid >= 0:
                check(scheme.target_nid, f"schemes[{s}].target_nid")
            for d, dest in enumerate(scheme.dests):
                check(dest.id, f"schemes[{s}].dests[{d}].id")
            for g, goal in enumerate(scheme.quotas.goals):
                if goal.target_metric in NODE_GOAL_METRICS:
                    check(goal.nid, f"schemes[{s}].quotas.goals[{g}].nid")

    # --- Mapping form -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> ContextConfig:
        """Parse and fully validate the sysfs-shaped mapping in the module docstring.

        Errors are prefixed with ``source`` unless it is the default ``"<dict>"``.
        """
        try:
            config = _parse_context(data)
            config.validate()
        except DamonConfigError as error:
            if source != "<dict>":
                raise error.in_source(source) from None
            raise
        return config

    def to_dict(self, max_keyword: bool = True) -> dict[str, Any]:
        """The mapping form; ``from_dict(c.to_dict()) == c``.

        With ``max_keyword`` a ``min``/``max`` equal to its field's kernel maximum is written as
        ``"max"``, which keeps the output readable and within TOML's signed 64-bit integers.
        """

        def bound(value: int, maximum: int) -> int | str:
            return "max" if max_keyword and value == maximum else value

        def rng(r: Range, maximum: int) -> dict[str, int | str]:
            return {"min": bound(r.min, maximum), "max": bound(r.max, maximum)}

        attrs = self.attrs
        goal = attrs.intervals_goal
        return {
            "operations": self.operations,
            "addr_unit": self.addr_unit,
            "monitoring_attrs": {
                "intervals": {
                    "sample_us": attrs.sample_us,
                    "aggr_us": attrs.aggr_us,
                    "update_us": attrs.update_us,
                    "intervals_goal": {
                        "access_bp": goal.access_bp,
                        "aggrs": goal.aggrs,
                        "min_sample_us": goal.min_sample_us,
                        "max_sample_us": goal.max_sample_us,
                    },
                },
                "nr_regions": {
                    "min": bound(attrs.min_nr_regions, ULONG_MAX),
                    "max": bound(attrs.max_nr_regions, ULONG_MAX),
                },
            },
            "targets": [
                {
                    "pid": target.pid,
                    "regions": [{"start": start, "end": end} for start, end in target.regions],
                }
                for target in self.targets
            ],
            "schemes": [
                {
                    "action": s.action,
                    "access_pattern": {
                        "sz": rng(s.access_pattern.sz, ULONG_MAX),
                        "nr_accesses": rng(s.access_pattern.nr_accesses, UINT_MAX),
                        "age": rng(s.access_pattern.age, UINT_MAX),
                    },
                    "apply_interval_us": s.apply_interval_us,
                    "quotas": {
                        "ms": s.quotas.ms,
                        "bytes": s.quotas.bytes,
                        "reset_interval_ms": s.quotas.reset_interval_ms,
                        "weights": {
                            "sz_permil": s.quotas.sz_permil,
                            "nr_accesses_permil": s.quotas.nr_accesses_permil,
                            "age_permil": s.quotas.age_permil,
                        },
                        "goals": [
                            {
                                "target_metric": g.target_metric,
                                "target_value": g.target_value,
                                "current_value": g.current_value,
                                "nid": g.nid,
                            }
                            for g in s.quotas.goals
                        ],
                    },
                    "watermarks": {
                        "metric": s.watermarks.metric,
                        "interval_us": s.watermarks.interval_us,
                        "high": s.watermarks.high,
                        "mid": s.watermarks.mid,
                        "low": s.watermarks.low,
                    },
                    "target_nid": s.target_nid,
                    "dests": [{"id": d.id, "weight": d.weight} for d in s.dests],
                    "filters": [
                        {
                            "type": f.type,
                            "matching": f.matching,
                            "allow": f.allow,
                            "addr_start": f.addr_start,
                            "addr_end": f.addr_end,
                            "target_idx": f.target_idx,
                        }
                        for f in s.filters
                    ],
                }
                for s in self.schemes
            ],
        }


# --- Parsing the mapping form -----------------------------------------------------------------

# kstrtoul/kstrtoint with base 0: optional sign, then 0x hex, 0-prefixed octal or decimal;
# one trailing newline is tolerated as sysfs does.
_KERNEL_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\n?")
_TRUE_WORDS = frozenset({"y", "yes", "1", "on", "t", "true"})
_FALSE_WORDS = frozenset({"n", "no", "0", "off", "f", "false"})


def _int_value(value: Any, path: str, maximum: int | None = None) -> int:
    """An int, or a string in the kernel's base-0 grammar, or ``"max"`` where ``maximum`` is set.

    Range checks are left to the dataclasses, so that the message is the same however the
    value arrived.
    """
    if isinstance(value, str):
        if maximum is not None and value == "max":
            return maximum
        match = _KERNEL_INT.fullmatch(value)
        if match is None:
            accepted = "an integer (decimal, 0x hex or 0-prefixed octal)"
            if maximum is not None:
                accepted += " or 'max'"
            raise DamonConfigError(path, f"{value!r} is not {accepted}")
        sign, digits = match.groups()
        if digits[:2].lower() == "0x":
            number = int(digits[2:], 16)
        elif digits.startswith("0"):
            number = int(digits, 8)
        else:
            number = int(digits)
        return -number if sign == "-" else number
    return _as_int(value, path)


def _str_value(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise DamonConfigError(path, f"expected a string, got {_describe(value)}")
    return value


def _bool_value(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise DamonConfigError(
        path, f"expected a bool (true/false, Y/N, 1/0, on/off), got {_describe(value)}"
    )


def _section(data: Any, path: str, keys: Sequence[str]) -> Mapping[str, Any]:
    """A mapping whose keys are all known; the path of an unknown key is named."""
    if not isinstance(data, Mapping):
        raise DamonConfigError(path, f"expected a mapping, got {_describe(data)}")
    for key in data:
        if key not in keys:
            raise DamonConfigError(
                _join(path, str(key)), f"unknown key; expected one of {_choices(keys)}"
            )
    return data


def _list_value(value: Any, path: str) -> Sequence[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise DamonConfigError(path, f"expected a list, got {_describe(value)}")
    return value


def _build(cls: type, path: str, **kwargs: Any) -> Any:
    with _located(path):
        return cls(**kwargs)


def _ints(
    data: Mapping[str, Any], path: str, names: Mapping[str, str], maximum: int | None = None
) -> dict[str, int]:
    """Keyword arguments for the keys present: mapping key -> dataclass field name."""
    return {
        name: _int_value(data[key], _join(path, key), maximum)
        for key, name in names.items()
        if key in data
    }


def _parse_range(data: Any, path: str, maximum: int) -> Range:
    section = _section(data, path, ("min", "max"))
    kwargs = {"min": 0, "max": maximum} | _ints(
        section, path, {"min": "min", "max": "max"}, maximum
    )
    return _build(Range, path, **kwargs)


def _parse_attrs(data: Any, path: str) -> MonitoringAttrs:
    section = _section(data, path, ("intervals", "nr_regions"))
    kwargs: dict[str, Any] = {}
    if "intervals" in section:
        ipath = _join(path, "intervals")
        intervals = _section(
            section["intervals"], ipath, ("sample_us", "aggr_us", "update_us", "intervals_goal")
        )
        kwargs |= _ints(
            intervals,
            ipath,
            {"sample_us": "sample_us", "aggr_us": "aggr_us", "update_us": "update_us"},
        )
        if "intervals_goal" in intervals:
            gpath = _join(ipath, "intervals_goal")
            names = ("access_bp", "aggrs", "min_sample_us", "max_sample_us")
            goal = _section(intervals["intervals_goal"], gpath, names)
            kwargs["intervals_goal"] = _build(
                IntervalsGoal, gpath, **_ints(goal, gpath, {n: n for n in names})
            )
    if "nr_regions" in section:
        rpath = _join(path, "nr_regions")
        nr_regions = _section(section["nr_regions"], rpath, ("min", "max"))
        kwargs |= _ints(
            nr_regions, rpath, {"min": "min_nr_regions", "max": "max_nr_regions"}, ULONG_MAX
        )
    return _build(MonitoringAttrs, path, **kwargs)


def _parse_target(data: Any, path: str) -> Target:
    section = _section(data, path, ("pid", "regions"))
    kwargs: dict[str, Any] = _ints(section, path, {"pid": "pid"})
    regions = []
    rpath = _join(path, "regions")
    for index, region in enumerate(_list_value(section.get("regions", []), rpath)):
        item = _section(region, f"{rpath}[{index}]", ("start", "end"))
        for key in ("start", "end"):
            if key not in item:
                raise DamonConfigError(f"{rpath}[{index}].{key}", "missing")
        bounds = _ints(item, f"{rpath}[{index}]", {"start": "start", "end": "end"})
        regions.append((bounds["start"], bounds["end"]))
    kwargs["regions"] = tuple(regions)
    if "pid" not in kwargs:
        raise DamonConfigError(_join(path, "pid"), "missing")
    return _build(Target, path, **kwargs)


def _parse_goal(data: Any, path: str) -> QuotaGoal:
    keys = ("target_metric", "target_value", "current_value", "nid")
    section = _section(data, path, keys)
    for key in ("target_metric", "target_value"):
        if key not in section:
            raise DamonConfigError(_join(path, key), "missing")
    kwargs: dict[str, Any] = {
        "target_metric": _str_value(section["target_metric"], _join(path, "target_metric"))
    }
    kwargs |= _ints(section, path, {k: k for k in keys[1:]})
    return _build(QuotaGoal, path, **kwargs)


def _parse_quotas(data: Any, path: str) -> Quotas:
    section = _section(data, path, ("ms", "bytes", "reset_interval_ms", "weights", "goals"))
    kwargs: dict[str, Any] = _ints(
        section, path, {k: k for k in ("ms", "bytes", "reset_interval_ms")}
    )
    if "weights" in section:
        wpath = _join(path, "weights")
        names = ("sz_permil", "nr_accesses_permil", "age_permil")
        weights = _section(section["weights"], wpath, names)
        kwargs |= _ints(weights, wpath, {n: n for n in names})
    if "goals" in section:
        gpath = _join(path, "goals")
        kwargs["goals"] = tuple(
            _parse_goal(goal, f"{gpath}[{index}]")
            for index, goal in enumerate(_list_value(section["goals"], gpath))
        )
    return _build(Quotas, path, **kwargs)


def _parse_watermarks(data: Any, path: str) -> Watermarks:
    names = ("interval_us", "high", "mid", "low")
    section = _section(data, path, ("metric", *names))
    kwargs: dict[str, Any] = _ints(section, path, {n: n for n in names})
    if "metric" in section:
        kwargs["metric"] = _str_value(section["metric"], _join(path, "metric"))
    return _build(Watermarks, path, **kwargs)


def _parse_dest(data: Any, path: str) -> Dest:
    section = _section(data, path, ("id", "weight"))
    for key in ("id", "weight"):
        if key not in section:
            raise DamonConfigError(_join(path, key), "missing")
    return _build(Dest, path, **_ints(section, path, {"id": "id", "weight": "weight"}))


def _parse_filter(data: Any, path: str) -> DamosFilter:
    if not isinstance(data, Mapping):
        raise DamonConfigError(path, f"expected a mapping, got {_describe(data)}")
    if "type" not in data:
        raise DamonConfigError(_join(path, "type"), "missing")
    # Check the type first: an ops filter's own keys (memcg_path, min, max) would otherwise be
    # reported as unknown keys, hiding the real problem.
    kind = _str_value(data["type"], _join(path, "type"))
    if kind not in SIMULATED_FILTER_TYPES:
        with _located(path):
            DamosFilter(type=kind)
    names = ("addr_start", "addr_end", "target_idx")
    section = _section(data, path, ("type", "matching", "allow", *names))
    kwargs: dict[str, Any] = {"type": kind} | _ints(section, path, {n: n for n in names})
    for key in ("matching", "allow"):
        if key in section:
            kwargs[key] = _bool_value(section[key], _join(path, key))
    return _build(DamosFilter, path, **kwargs)


def _parse_scheme(data: Any, path: str) -> Scheme:
    keys = (
        "action",
        "access_pattern",
        "apply_interval_us",
        "quotas",
        "watermarks",
        "target_nid",
        "dests",
        "filters",
    )
    section = _section(data, path, keys)
    if "action" not in section:
        raise DamonConfigError(_join(path, "action"), "missing")
    kwargs: dict[str, Any] = {"action": _str_value(section["action"], _join(path, "action"))}
    kwargs |= _ints(
        section, path, {"apply_interval_us": "apply_interval_us", "target_nid": "target_nid"}
    )
    if "access_pattern" in section:
        apath = _join(path, "access_pattern")
        pattern = _section(section["access_pattern"], apath, ("sz", "nr_accesses", "age"))
        maxima = {"sz": ULONG_MAX, "nr_accesses": UINT_MAX, "age": UINT_MAX}
        ranges = {
            key: _parse_range(pattern[key], _join(apath, key), maximum)
            for key, maximum in maxima.items()
            if key in pattern
        }
        kwargs["access_pattern"] = _build(AccessPattern, apath, **ranges)
    if "quotas" in section:
        kwargs["quotas"] = _parse_quotas(section["quotas"], _join(path, "quotas"))
    if "watermarks" in section:
        kwargs["watermarks"] = _parse_watermarks(section["watermarks"], _join(path, "watermarks"))
    for key, parse in (("dests", _parse_dest), ("filters", _parse_filter)):
        if key in section:
            lpath = _join(path, key)
            kwargs[key] = tuple(
                parse(item, f"{lpath}[{index}]")
                for index, item in enumerate(_list_value(section[key], lpath))
            )
    return _build(Scheme, path, **kwargs)


def _parse_context(data: Any) -> ContextConfig:
    keys = ("operations", "addr_unit", "monitoring_attrs", "targets", "schemes")
    section = _section(data, "", keys)
    kwargs: dict[str, Any] = _ints(section, "", {"addr_unit": "addr_unit"})
    if "operations" in section:
        kwargs["operations"] = _str_value(section["operations"], "operations")
    if "monitoring_attrs" in section:
        kwargs["attrs"] = _parse_attrs(section["monitoring_attrs"], "monitoring_attrs")
    for key, parse in (("targets", _parse_target), ("schemes", _parse_scheme)):
        if key in section:
            kwargs[key] = tuple(
                parse(item, f"{key}[{index}]")
                for index, item in enumerate(_list_value(section[key], key))
            )
    return _build(ContextConfig, "", **kwargs)


__all__ = [
    "DAMOS_MAX_SCORE",
    "GOAL_METRICS",
    "KERNEL_ACTIONS",
    "KERNEL_FILTER_TYPES",
    "KERNEL_OPERATIONS",
    "MIGRATE_ACTIONS",
    "NODE_GOAL_METRICS",
    "OPERATIONS",
    "OPS_FILTER_TYPES",
    "SIMULATED_ACTIONS",
    "SIMULATED_FILTER_TYPES",
    "SIMULATED_GOAL_METRICS",
    "UINT_MAX",
    "ULONG_MAX",
    "WATERMARK_METRICS",
    "AccessPattern",
    "ContextConfig",
    "DamonConfigError",
    "DamosFilter",
    "Dest",
    "IntervalsGoal",
    "MonitoringAttrs",
    "QuotaGoal",
    "Quotas",
    "Range",
    "Scheme",
    "Target",
]
