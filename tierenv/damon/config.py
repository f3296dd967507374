"""One simulated kdamond context's configuration, validated as the kernel's ``on``/``commit`` does.

The simulator consumes these objects and the real-host backend will write them to
``/sys/kernel/mm/damon/admin/kdamonds/N/contexts/0/``, so names follow the sysfs files and every
value is in kernel units: microseconds, milliseconds, bytes, samples per aggregation interval,
aggregation intervals, basis points, per-mille. The rules come from the kernel: attrs from
mm/damon/core.c ``damon_set_attrs``, DAMOS from Documentation/mm/damon/design.rst and core.c,
file formats and the errors of ``on``/``commit`` from mm/damon/sysfs.c and sysfs-schemes.c
(Documentation/admin-guide/mm/damon/usage.rst).

Each field is declared once, in its dataclass: the spec in the field's metadata gives its kernel
type and range, its key in the mapping form below (relative to its object; also the path in
error messages) and how it is read from and written to that form. Checking, ``from_dict`` and
``to_dict`` all walk these declarations.

Three levels of checking:

* every dataclass checks its own fields when built (``__post_init__``), so a frozen object with a
  bad field cannot exist;
* :meth:`ContextConfig.validate` adds the checks that need the whole context (paddr takes one
  target with regions, paddr migrates only to ``target_nid``, a ``target`` filter names a target)
  and, given the host's nodes, rejects destinations the kernel would silently ignore;
* :meth:`ContextConfig.from_dict` parses the sysfs-shaped mapping below and runs ``validate()``,
  so a parsed config is complete or not built at all.

Errors are :class:`DamonConfigError` (a :class:`tierenv.schema.SchemaError`, as every config
reader's) and start with the sysfs-style path of the field, e.g.
``schemes[0].quotas.goals[1].target_metric: unknown metric 'foo'; expected one of ...``.

Mapping schema (every section and key optional; defaults are the kernel's, except the access
pattern, which matches everything)::

    operations: vaddr                      # vaddr | paddr
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
    addr_unit: 1

Integers may be strings in the grammar of the kernel's ``kstrtoll(base 0)`` (``"4096"``,
``"0x1000"``, ``"010"`` is octal 8, ``"-1"``; see :func:`tierenv.damon.abi.parse_integer`); the
range is then the field's own (a negative value for an unsigned file is reported as such, where
the kernel's ``kstrtoul`` would just say EINVAL). Any ``min``/``max`` may be ``"max"``, the
field's kernel maximum.

Booleans may be the whole words ``true``/``false``, ``yes``/``no``, ``y``/``n``, ``t``/``f``,
``on``/``off`` or ``1``/``0`` (any case, surrounding spaces ignored). Each means what the kernel's
``kstrtobool`` makes of it, but this is deliberately not the kernel's rule: ``kstrtobool`` looks
only at the first one or two characters (``"yellow"`` is true, ``"nope"`` false), whereas in a
config file such a word is a typo to report. The host backend writes ``Y``/``N`` to sysfs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from fractions import Fraction
from functools import cache
from typing import Any, NamedTuple

from tierenv.damon.abi import (
    CORE_FILTER_TYPES,
    DAMOS_MAX_SCORE,
    GOAL_METRICS,
    INT_MAX,
    KERNEL_ACTIONS,
    KERNEL_FILTER_TYPES,
    KERNEL_OPERATIONS,
    MIGRATE_ACTIONS,
    MIN_NR_REGIONS,
    NODE_GOAL_METRICS,
    NUMA_NO_NODE,
    OPS_FILTER_TYPES,
    UINT_MAX,
    ULONG_MAX,
    WATERMARK_METRICS,
    KernelParseError,
    parse_integer,
)
from tierenv.schema import Reader, SchemaError, join_path

# The kernel's keywords (tierenv.damon.abi) that the simulator implements.
OPERATIONS = ("vaddr", "paddr")
SIMULATED_ACTIONS = ("migrate_hot", "migrate_cold", "stat")
SIMULATED_GOAL_METRICS = ("user_input", "node_mem_used_bp", "node_mem_free_bp")
SIMULATED_FILTER_TYPES = CORE_FILTER_TYPES


# --- Errors and paths -------------------------------------------------------------------------


class DamonConfigError(SchemaError):
    """A configuration the kernel (or a careful tool) would refuse; says where, what and why.

    ``path`` is the sysfs-style field path (``schemes[0].dests[1].id``), ``problem`` the reason
    including the offending value, ``source`` the file the config came from, if any. The path
    comes first here, as every check below raises it (the base class takes the problem first).
    """

    def __init__(
        self, path: str, problem: str, source: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(problem, path, source, line)

    def under(self, prefix: str) -> DamonConfigError:
        """The same error seen from an enclosing object at ``prefix``."""
        return DamonConfigError(join_path(prefix, self.path), self.problem, self.source, self.line)

    def in_source(self, source: str) -> DamonConfigError:
        return DamonConfigError(self.path, self.problem, source, self.line)


# Unknown keys are reported as every config reader does; the source is added by ``from_dict``.
_KEYS = Reader(None, DamonConfigError)


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


# --- Values: checks of built objects, readers of the mapping form -----------------------------


def _as_int(value: Any, path: str) -> int:
    """An exact integer: ints and numpy integers pass; bool, float, str and containers do not."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise DamonConfigError(path, f"expected an integer, got {_describe(value)}")
    return operator.index(value)


def _in_range(value: Any, path: str, low: int, high: int, kind: str) -> int:
    """An int in [low, high], the range of the kernel file's C type ``kind`` (or narrower)."""
    value = _as_int(value, path)
    if value < low:
        if low == 0:
            raise DamonConfigError(path, f"{value} is negative; the kernel file is {kind}")
        raise DamonConfigError(path, f"{value} is below the smallest allowed value {low}")
    if value > high:
        raise DamonConfigError(path, f"{value} exceeds the {kind} maximum {high}")
    return value


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | Mapping)


def _pair(value: Any, path: str) -> tuple[Any, Any]:
    if not _is_sequence(value):
        raise DamonConfigError(path, f"expected a (min, max) pair, got {_describe(value)}")
    if len(value) != 2:
        raise DamonConfigError(path, f"expected a (min, max) pair, got {len(value)} items")
    return value[0], value[1]


def _int_value(value: Any, path: str, maximum: int | None = None) -> int:
    """An int, or a string in the kernel's base-0 grammar, or ``"max"`` where ``maximum`` is set.

    Range checks are left to the dataclasses, so that the message is the same however the
    value arrived.
    """
    if not isinstance(value, str):
        return _as_int(value, path)
    if maximum is not None and value == "max":
        return maximum
    try:
        return parse_integer(value)
    except KernelParseError:
        accepted = "an integer (decimal, 0x hex or 0-prefixed octal)"
        if maximum is not None:
            accepted += " or 'max'"
        raise DamonConfigError(path, f"{value!r} is not {accepted}") from None


def _str_value(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise DamonConfigError(path, f"expected a string, got {_describe(value)}")
    return value


# Whole words only (see the module docstring); each means what kstrtobool makes of it.
BOOL_WORDS = {
    **dict.fromkeys(("y", "yes", "1", "on", "t", "true"), True),
    **dict.fromkeys(("n", "no", "0", "off", "f", "false"), False),
}


def _bool_value(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
        return BOOL_WORDS[value.strip().lower()]
    raise DamonConfigError(
        path, f"expected a bool (true/false, Y/N, 1/0, on/off), got {_describe(value)}"
    )


def _section(data: Any, path: str, keys: Sequence[str]) -> Mapping[str, Any]:
    """A mapping whose keys are all known; the path of an unknown key is named."""
    if not isinstance(data, Mapping):
        raise DamonConfigError(path, f"expected a mapping, got {_describe(data)}")
    _KEYS.keys(data, keys, path)
    return data


def _list_value(value: Any, path: str) -> Sequence[Any]:
    if not _is_sequence(value):
        raise DamonConfigError(path, f"expected a list, got {_describe(value)}")
    return value


def _build(cls: type, path: str, **kwargs: Any) -> Any:
    with _located(path):
        return cls(**kwargs)


# --- Field declarations -----------------------------------------------------------------------
#
# A field's spec (in its dataclass metadata) knows its mapping key ``at`` and how to check a
# value of a built object, read one from the mapping form and write one back. Nested objects
# were checked when they were built (every dataclass is frozen), so a parent checks only its
# children's types, unless ``deep`` (``validate``) asks to check them again.


class _Spec:
    at: str | None = None  # the key path in the owner's mapping form; None: the field name
    leading = False  # read before the other keys are looked at: its value decides which apply

    def check(self, value: Any, path: str, deep: bool) -> Any:
        """The field's value, normalised (ints as int, sequences as tuples), or an error."""
        return value

    def read(self, value: Any, path: str) -> Any:
        """The field's value from the mapping form (checked by the dataclass afterwards)."""
        return value

    def write(self, value: Any, max_keyword: bool) -> Any:
        """The mapping form of the field's value."""
        return value


class _Int(_Spec):
    def __init__(self, low: int, high: int, kind: str, at: str | None, max_keyword: bool) -> None:
        self.low, self.high, self.kind, self.at = low, high, kind, at
        self.max_keyword = max_keyword  # "max" stands for ``high`` in the mapping form

    def check(self, value: Any, path: str, deep: bool) -> int:
        return _in_range(value, path, self.low, self.high, self.kind)

    def read(self, value: Any, path: str) -> int:
        return _int_value(value, path, self.high if self.max_keyword else None)

    def write(self, value: int, max_keyword: bool) -> int | str:
        return "max" if max_keyword and self.max_keyword and value == self.high else value


class _Bool(_Spec):
    def check(self, value: Any, path: str, deep: bool) -> bool:
        if not isinstance(value, bool):
            raise DamonConfigError(path, f"expected a bool, got {_describe(value)}")
        return value

    def read(self, value: Any, path: str) -> bool:
        return _bool_value(value, path)


class _Keyword(_Spec):
    """A sysfs keyword: unknown to the kernel and known-but-not-simulated are different errors."""

    def __init__(
        self, known: Sequence[str], simulated: Sequence[str], what: str, leading: bool
    ) -> None:
        self.known, self.simulated, self.what, self.leading = known, simulated, what, leading

    def check(self, value: Any, path: str, deep: bool) -> str:
        value = _str_value(value, path)
        if value not in self.known:
            raise DamonConfigError(
                path, f"unknown {self.what} {value!r}; expected one of {_choices(self.known)}"
            )
        if value not in self.simulated:
            raise DamonConfigError(
                path,
                f"{self.what} {value!r} is known to the kernel but not simulated; "
                f"the simulator supports {_choices(self.simulated)}",
            )
        return value

    def read(self, value: Any, path: str) -> str:
        return _str_value(value, path)


def _check_child(value: Any, path: str, deep: bool, cls: type[_Checked]) -> None:
    if not isinstance(value, cls):
        raise DamonConfigError(path, f"expected {_a(cls.__name__)}, got {_describe(value)}")
    if deep:
        with _located(path):
            value._check(deep=True)


class _Child(_Spec):
    def __init__(self, cls: type[_Checked], at: str | None) -> None:
        self.cls, self.at = cls, at

    def check(self, value: Any, path: str, deep: bool) -> Any:
        _check_child(value, path, deep, self.cls)
        return value

    def read(self, value: Any, path: str) -> Any:
        return _from_mapping(self.cls, value, path)

    def write(self, value: Any, max_keyword: bool) -> dict[str, Any]:
        return _to_mapping(value, max_keyword)


class _Children(_Spec):
    """A tuple of nested objects; a list of mappings in the mapping form."""

    def __init__(self, cls: type[_Checked]) -> None:
        self.cls = cls

    def check(self, value: Any, path: str, deep: bool) -> tuple[Any, ...]:
        if not _is_sequence(value):
            raise DamonConfigError(
                path, f"expected a sequence of {self.cls.__name__}, got {_describe(value)}"
            )
        items = tuple(value)
        for index, item in enumerate(items):
            _check_child(item, f"{path}[{index}]", deep, self.cls)
        return items

    def read(self, value: Any, path: str) -> tuple[Any, ...]:
        return tuple(
            _from_mapping(self.cls, item, f"{path}[{index}]")
            for index, item in enumerate(_list_value(value, path))
        )

    def write(self, value: tuple[Any, ...], max_keyword: bool) -> list[dict[str, Any]]:
        return [_to_mapping(item, max_keyword) for item in value]


class _Span(_Spec):
    """An access-pattern :class:`Range` whose bounds the field narrows to its kernel type.

    In the mapping form a missing ``min`` is 0 and a missing ``max`` the type's maximum.
    """

    def __init__(self, high: int, kind: str) -> None:
        self.bound = _Int(0, high, kind, None, max_keyword=True)

    def check(self, value: Any, path: str, deep: bool) -> Range:
        _check_child(value, path, deep, Range)
        for name in ("min", "max"):
            self.bound.check(getattr(value, name), f"{path}.{name}", deep)
        return value

    def read(self, value: Any, path: str) -> Range:
        section = _section(value, path, ("min", "max"))
        bounds = {"min": 0, "max": self.bound.high} | {
            key: self.bound.read(section[key], join_path(path, key))
            for key in ("min", "max")
            if key in section
        }
        return _build(Range, path, **bounds)

    def write(self, value: Range, max_keyword: bool) -> dict[str, int | str]:
        return {
            "min": self.bound.write(value.min, max_keyword),
            "max": self.bound.write(value.max, max_keyword),
        }


class _Regions(_Spec):
    """A target's ``(start, end)`` regions: address order, no overlap, as on/commit checks."""

    def check(self, value: Any, path: str, deep: bool) -> tuple[tuple[int, int], ...]:
        if not _is_sequence(value):
            raise DamonConfigError(
                path, f"expected a sequence of (start, end) pairs, got {_describe(value)}"
            )
        regions: list[tuple[int, int]] = []
        for index, region in enumerate(value):
            where = f"{path}[{index}]"
            start, end = _pair(region, where)
            start = _as_int(start, f"{where}.start")
            end = _as_int(end, f"{where}.end")
            for name, number in (("start", start), ("end", end)):
                if not 0 <= number <= ULONG_MAX:
                    raise DamonConfigError(
                        f"{where}.{name}", f"{number} is outside the unsigned long range"
                    )
            if start > end:
                raise DamonConfigError(
                    f"{where}.end",
                    f"{end:#x} is below start {start:#x} (the kernel returns -EINVAL at on)",
                )
            if regions and regions[-1][1] > start:
                previous = regions[-1]
                raise DamonConfigError(
                    f"{where}.start",
                    f"{start:#x} overlaps or precedes {path}[{index - 1}] "
                    f"[{previous[0]:#x}, {previous[1]:#x}); regions must be sorted and "
                    "non-overlapping (the kernel returns -EINVAL at on)",
                )
            regions.append((start, end))
        return tuple(regions)

    def read(self, value: Any, path: str) -> tuple[tuple[int, int], ...]:
        regions = []
        for index, region in enumerate(_list_value(value, path)):
            where = f"{path}[{index}]"
            item = _section(region, where, ("start", "end"))
            for key in ("start", "end"):
                if key not in item:
                    raise DamonConfigError(f"{where}.{key}", "missing")
            start, end = (_int_value(item[key], f"{where}.{key}") for key in ("start", "end"))
            regions.append((start, end))
        return tuple(regions)

    def write(self, value: tuple[tuple[int, int], ...], max_keyword: bool) -> list[dict]:
        return [{"start": start, "end": end} for start, end in value]


# Field declarators: ``name: type = _ulong(default, at=...)`` in a dataclass body.


def _declare(spec: _Spec, default: Any) -> Any:
    return field(default=default, metadata={"spec": spec})


def _ulong(default: Any = MISSING, *, at: str | None = None, max_keyword: bool = False) -> Any:
    return _declare(_Int(0, ULONG_MAX, "unsigned long", at, max_keyword), default)


def _uint(default: Any = MISSING, *, at: str | None = None) -> Any:
    return _declare(_Int(0, UINT_MAX, "unsigned int", at, max_keyword=False), default)


def _int(default: Any = MISSING, *, low: int, high: int = INT_MAX, kind: str = "int") -> Any:
    """An ``int`` file (or ``kind``) in a narrower range: what a value can mean."""
    return _declare(_Int(low, high, kind, None, max_keyword=False), default)


def _nid(default: Any = NUMA_NO_NODE) -> Any:
    """A node id in an ``int`` file: -1 (NUMA_NO_NODE) or a node; lower values mean nothing."""
    return _int(default, low=NUMA_NO_NODE)


def _bool(default: Any = MISSING) -> Any:
    return _declare(_Bool(), default)


def _keyword(
    default: Any, known: Sequence[str], simulated: Sequence[str], what: str, leading: bool = False
) -> Any:
    return _declare(_Keyword(known, simulated, what, leading), default)


def _child(cls: type[_Checked], *, at: str | None = None) -> dict[str, _Spec]:
    """Metadata of a nested-object field, declared as ``field(default=cls(), metadata=...)``."""
    return {"spec": _Child(cls, at)}


def _span(high: int, kind: str) -> dict[str, _Spec]:
    """Metadata of an access-pattern range field (declared like :func:`_child`)."""
    return {"spec": _Span(high, kind)}


def _children(cls: type[_Checked]) -> Any:
    return _declare(_Children(cls), ())


# --- Walking the declarations -----------------------------------------------------------------


class _Slot(NamedTuple):
    name: str
    spec: _Spec
    at: str
    required: bool


@cache
def _slots(cls: type) -> tuple[_Slot, ...]:
    return tuple(
        _Slot(f.name, spec, spec.at or f.name, f.default is MISSING)
        for f in fields(cls)
        if (spec := f.metadata.get("spec")) is not None
    )


@cache
def _layout(cls: type) -> dict[str, Any]:
    """The mapping form's key tree: key -> a slot, or the next level's tree."""
    tree: dict[str, Any] = {}
    for slot in _slots(cls):
        *sections, key = slot.at.split(".")
        level = tree
        for section in sections:
            level = level.setdefault(section, {})
        level[key] = slot
    return tree


def _slots_of(obj: object) -> tuple[_Slot, ...]:
    """The slots of ``obj``'s class (a plain ``type``: mypy takes ``type[X]`` for unhashable)."""
    cls: type = type(obj)
    return _slots(cls)


def _at(obj: Any, name: str) -> str:
    """The path of ``obj``'s field ``name`` in its mapping form (and in error messages)."""
    return next(slot.at for slot in _slots_of(obj) if slot.name == name)


class _Checked:
    """Base of the config dataclasses: every declared field is checked when the object is built."""

    def __post_init__(self) -> None:
        self._check(deep=False)

    def _check(self, deep: bool) -> None:
        for slot in _slots_of(self):
            value = slot.spec.check(getattr(self, slot.name), slot.at, deep)
            object.__setattr__(self, slot.name, value)
        self._check_fields_together()

    def _check_fields_together(self) -> None:
        """Checks that involve several fields, run after each field was checked."""

    def replaced(self, **changes: Any) -> Any:
        """``dataclasses.replace`` that checks only the changed fields (and then the checks
        across fields): the others were checked when this object was built, and a check
        returns a checked value as it is. The same object as ``dataclasses.replace`` builds,
        for a fraction of its cost (configurations built every control interval)."""
        cls: type = type(self)  # a plain ``type`` (mypy takes ``type[X]`` for unhashable)
        names = _field_names(cls)
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        clone: Any = object.__new__(cls)
        for name in names:
            object.__setattr__(
                clone, name, changes[name] if name in changes else getattr(self, name)
            )
        for slot in _slots(cls):
            if slot.name in changes:
                value = slot.spec.check(changes[slot.name], slot.at, False)
                object.__setattr__(clone, slot.name, value)
        clone._check_fields_together()
        return clone


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _from_mapping(cls: type, data: Any, path: str) -> Any:
    """Build ``cls`` from its mapping form at ``path``, naming the path of any error."""
    if not isinstance(data, Mapping):
        raise DamonConfigError(path, f"expected a mapping, got {_describe(data)}")
    kwargs: dict[str, Any] = {}
    for slot in _slots(cls):
        if slot.spec.leading:
            where = join_path(path, slot.at)
            if slot.at not in data:
                raise DamonConfigError(where, "missing")
            kwargs[slot.name] = slot.spec.check(slot.spec.read(data[slot.at], where), where, False)
    layout = _layout(cls)
    section = _section(data, path, tuple(layout))
    for slot in _slots(cls):
        if slot.required and slot.at not in section:
            raise DamonConfigError(join_path(path, slot.at), "missing")
    _read_level(section, path, layout, kwargs)
    return _build(cls, path, **kwargs)


def _read_level(
    section: Mapping[str, Any], path: str, layout: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    for key, entry in layout.items():
        if key not in section:
            continue
        where = join_path(path, key)
        if isinstance(entry, dict):
            _read_level(_section(section[key], where, tuple(entry)), where, entry, kwargs)
        elif entry.name not in kwargs:  # a leading field was read already
            kwargs[entry.name] = entry.spec.read(section[key], where)


def _to_mapping(obj: Any, max_keyword: bool) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for slot in _slots_of(obj):
        *sections, key = slot.at.split(".")
        level = mapping
        for section in sections:
            level = level.setdefault(section, {})
        level[key] = slot.spec.write(getattr(obj, slot.name), max_keyword)
    return mapping


# --- Monitoring attributes --------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalsGoal(_Checked):
    """Monitoring-intervals auto-tuning (6.15+): aim for ``access_bp`` of the maximum observable
    access events, retuning every ``aggrs`` aggregation intervals within [min, max] sample_us.

    ``aggrs == 0`` disables tuning (kernel default); the sample bounds are then not checked.
    """

    access_bp: int = _ulong(0)
    aggrs: int = _ulong(0)
    min_sample_us: int = _ulong(0)
    max_sample_us: int = _ulong(0)

    def _check_fields_together(self) -> None:
        if self.enabled and self.min_sample_us > self.max_sample_us:
            raise DamonConfigError(
                "min_sample_us",
                f"{self.min_sample_us} exceeds max_sample_us {self.max_sample_us} "
                "(damon_set_attrs: -EINVAL)",
            )

    @property
    def enabled(self) -> bool:
        return self.aggrs != 0


@dataclass(frozen=True)
class MonitoringAttrs(_Checked):
    """``monitoring_attrs/``: sampling and aggregation intervals (µs) and the region count bounds.

    Checked as ``damon_set_attrs()`` does at on/commit (-EINVAL), plus ``aggr_us > 0``, which the
    kernel does not require but without which nothing is ever aggregated.
    """

    sample_us: int = _ulong(5000, at="intervals.sample_us")
    aggr_us: int = _ulong(100_000, at="intervals.aggr_us")
    update_us: int = _ulong(60_000_000, at="intervals.update_us")
    min_nr_regions: int = _ulong(10, at="nr_regions.min", max_keyword=True)
    max_nr_regions: int = _ulong(1000, at="nr_regions.max", max_keyword=True)
    intervals_goal: IntervalsGoal = field(
        default=IntervalsGoal(), metadata=_child(IntervalsGoal, at="intervals.intervals_goal")
    )

    def _check_fields_together(self) -> None:
        if self.aggr_us == 0:
            raise DamonConfigError(
                _at(self, "aggr_us"), "0 is not allowed: an aggregation interval must be positive"
            )
        if self.sample_us > self.aggr_us:
            raise DamonConfigError(
                _at(self, "sample_us"),
                f"{self.sample_us} exceeds aggr_us {self.aggr_us} (damon_set_attrs: -EINVAL)",
            )
        if self.min_nr_regions < MIN_NR_REGIONS:
            raise DamonConfigError(
                _at(self, "min_nr_regions"),
                f"{self.min_nr_regions} is below {MIN_NR_REGIONS} (damon_set_attrs: -EINVAL)",
            )
        if self.min_nr_regions > self.max_nr_regions:
            raise DamonConfigError(
                _at(self, "min_nr_regions"),
                f"{self.min_nr_regions} exceeds nr_regions.max {self.max_nr_regions} "
                "(damon_set_attrs: -EINVAL)",
            )
        goal = self.intervals_goal
        if goal.enabled and not goal.min_sample_us <= self.sample_us <= goal.max_sample_us:
            raise DamonConfigError(
                _at(self, "sample_us"),
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
class Range(_Checked):
    """A closed interval ``[min, max]`` of one access-pattern quantity.

    ``min > max`` is accepted, as the kernel accepts it: such a range matches nothing. Bounds are
    unsigned; the enclosing :class:`AccessPattern` narrows them to the field's kernel type.
    """

    min: int = _ulong()
    max: int = _ulong()

    def contains(self, value: int) -> bool:
        return self.min <= value <= self.max


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


@dataclass(frozen=True)
class AccessPattern(_Checked):
    """``access_pattern/``: which regions a scheme acts on; every range is closed.

    Units are the kernel's: ``sz`` bytes (unsigned long), ``nr_accesses`` samples per aggregation
    interval (compared with ``nr_accesses_bp / 10000``; unsigned int), ``age`` aggregation
    intervals (unsigned int).

    The defaults here match every region. The sysfs files start at 0 after ``nr_schemes`` is
    written (which matches only empty, never-accessed, new regions), so the host backend must
    write all six values.
    """

    sz: Range = field(default=Range(0, ULONG_MAX), metadata=_span(ULONG_MAX, "unsigned long"))
    nr_accesses: Range = field(default=Range(0, UINT_MAX), metadata=_span(UINT_MAX, "unsigned int"))
    age: Range = field(default=Range(0, UINT_MAX), metadata=_span(UINT_MAX, "unsigned int"))

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
class QuotaGoal(_Checked):
    """``quotas/goals/K/``: a feedback target that tunes the effective size quota
    (mm/damon/core.c ``damos_quota_score``, ``damon_feed_loop_next_input``).

    ``target_value == 0`` is accepted because the kernel accepts it, but the kernel then drops
    the goal silently (``damos_sysfs_add_quota_score``); :attr:`active` says whether it counts.
    ``nid`` matters only for the ``node_*`` metrics, which need a real node (>= 0).
    """

    target_metric: str = _keyword(MISSING, GOAL_METRICS, SIMULATED_GOAL_METRICS, "metric")
    target_value: int = _ulong()
    current_value: int = _ulong(0)
    nid: int = _nid()

    def _check_fields_together(self) -> None:
        if self.target_metric in NODE_GOAL_METRICS and self.nid < 0:
            raise DamonConfigError(
                "nid", f"{self.nid} is not a node; metric {self.target_metric!r} needs nid >= 0"
            )

    @property
    def active(self) -> bool:
        return self.target_value != 0


@dataclass(frozen=True)
class Quotas(_Checked):
    """``quotas/``: per-window limits on what a scheme may try, and how regions are prioritised.

    ``ms`` (time), ``bytes`` (size) and ``reset_interval_ms`` (the charge window) are unsigned
    long; the ``*_permil`` priority weights (files under ``weights/``) unsigned int. With ``ms``
    and ``bytes`` both 0 and no active goal the scheme is unlimited. ``sz_permil`` is accepted
    but no kernel score uses it.
    """

    ms: int = _ulong(0)
    bytes: int = _ulong(0)
    reset_interval_ms: int = _ulong(0)
    sz_permil: int = _uint(0, at="weights.sz_permil")
    nr_accesses_permil: int = _uint(0, at="weights.nr_accesses_permil")
    age_permil: int = _uint(0, at="weights.age_permil")
    goals: tuple[QuotaGoal, ...] = _children(QuotaGoal)

    @property
    def limited(self) -> bool:
        """Whether the kernel computes an effective quota (and so prioritises regions)."""
        return self.ms != 0 or self.bytes != 0 or any(goal.active for goal in self.goals)


# --- Watermarks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watermarks(_Checked):
    """``watermarks/``: when a scheme is active, by a system metric checked every interval_us.

    ``none`` (default) is always active. ``free_mem_rate`` is free memory in per-mille; the
    kernel's hysteresis (``damos_wmark_wait_us``): metric > high or < low deactivates, low <=
    metric < mid (re)activates, and in [mid, high] the scheme keeps its state. The kernel checks
    neither the order low <= mid <= high nor a 0..1000 range, so neither is checked here.
    """

    metric: str = _keyword("none", WATERMARK_METRICS, WATERMARK_METRICS, "watermark metric")
    interval_us: int = _ulong(0)
    high: int = _ulong(0)
    mid: int = _ulong(0)
    low: int = _ulong(0)


# --- Filters and destinations -----------------------------------------------------------------


@dataclass(frozen=True)
class DamosFilter(_Checked):
    """A DAMOS filter: memory that matches ``type`` (or not, with ``matching=False``) is allowed
    (``allow=True``) or rejected. The first matching filter decides; memory no filter matches
    gets the opposite of the last filter's ``allow``.

    Only the core filters are simulated: ``addr`` (half-open ``[addr_start, addr_end)``; the
    kernel rejects ``addr_end < addr_start`` at on/commit) and ``target`` (``target_idx``, the
    sysfs ``damon_target_idx``). The host backend writes these to ``core_filters/``.
    """

    # The type is read first: an ops filter's own keys (memcg_path, min, max) would otherwise
    # be reported as unknown keys, hiding the real problem.
    type: str = _keyword(
        MISSING, KERNEL_FILTER_TYPES, SIMULATED_FILTER_TYPES, "filter type", leading=True
    )
    matching: bool = _bool(True)
    allow: bool = _bool(False)
    addr_start: int = _ulong(0)
    addr_end: int = _ulong(0)
    # An int file in the kernel; a negative index names no target, so refuse it.
    target_idx: int = _int(0, low=0)

    def _check_fields_together(self) -> None:
        if self.type == "addr" and self.addr_end < self.addr_start:
            raise DamonConfigError(
                "addr_end",
                f"{self.addr_end:#x} is below addr_start {self.addr_start:#x} "
                "(the kernel returns -EINVAL at on/commit)",
            )


@dataclass(frozen=True)
class Dest(_Checked):
    """``dests/K/``: a migration destination node and its weight.

    These are DAMON's own weights, not the mempolicy ones: any unsigned int, 0 included (a
    scheme whose weights sum to 0 migrates nothing). Pages go to dests in array order by
    ``ilx % sum(weights)``.
    """

    id: int = _uint()
    weight: int = _uint()


# --- Schemes and targets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme(_Checked):
    """``schemes/N/``: a DAMOS scheme.

    ``apply_interval_us = 0`` means "every aggregation interval". A migrate action needs a
    destination: ``dests`` (vaddr; with dests the kernel ignores ``target_nid``) or
    ``target_nid >= 0`` (the only destination paddr honours). ``dests`` and ``target_nid`` of
    other actions are ignored, as in the kernel.
    """

    action: str = _keyword(MISSING, KERNEL_ACTIONS, SIMULATED_ACTIONS, "action")
    access_pattern: AccessPattern = field(default=AccessPattern(), metadata=_child(AccessPattern))
    apply_interval_us: int = _ulong(0)
    quotas: Quotas = field(default=Quotas(), metadata=_child(Quotas))
    watermarks: Watermarks = field(default=Watermarks(), metadata=_child(Watermarks))
    target_nid: int = _nid()
    dests: tuple[Dest, ...] = _children(Dest)
    filters: tuple[DamosFilter, ...] = _children(DamosFilter)

    def _check_fields_together(self) -> None:
        if self.action in MIGRATE_ACTIONS and not self.dests and self.target_nid < 0:
            raise DamonConfigError(
                "dests",
                f"action {self.action!r} has no destination: give dests or target_nid >= 0 "
                f"(target_nid is {self.target_nid})",
            )


@dataclass(frozen=True)
class Target(_Checked):
    """``targets/N/``: a monitoring target.

    ``pid`` is the simulated application's id (``pid_target``). ``regions`` are ``(start, end)``
    byte addresses; optional for vaddr, where DAMON builds them from the mappings, required for
    paddr. As at the kernel's on/commit, a region may not end before it starts, and regions must
    be in address order without overlap (touching is fine; empty regions are accepted).
    """

    pid: int = _int(low=0)
    regions: tuple[tuple[int, int], ...] = _declare(_Regions(), ())

    @property
    def size_bytes(self) -> int:
        return sum(end - start for start, end in self.regions)


# --- Context ----------------------------------------------------------------------------------


def _node_list(nodes: Sequence[int]) -> str:
    return ", ".join(str(node) for node in nodes) if nodes else "none"


@dataclass(frozen=True)
class ContextConfig(_Checked):
    """``contexts/0/``: everything one simulated kdamond monitors and does.

    Building one checks every field of every part; :meth:`validate` adds the checks across
    parts and against the host's nodes. :meth:`from_dict` does both.
    """

    operations: str = _keyword("vaddr", KERNEL_OPERATIONS, OPERATIONS, "operations")
    attrs: MonitoringAttrs = field(
        default=MonitoringAttrs(), metadata=_child(MonitoringAttrs, at="monitoring_attrs")
    )
    targets: tuple[Target, ...] = _children(Target)
    schemes: tuple[Scheme, ...] = _children(Scheme)
    # 6.18 rejects 0 (-EINVAL) in its final form; an early revision took it. Never 0.
    addr_unit: int = _int(1, low=1, high=ULONG_MAX, kind="unsigned long")

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
            self._check(deep=True)
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
            config = _from_mapping(ContextConfig, data, "")
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
        return _to_mapping(self, max_keyword)


__all__ = [
    "BOOL_WORDS",
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
