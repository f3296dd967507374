"""damo record files (``damo record`` output) read as a time series of DAMON snapshots.

A real record is a real application's measured hotness over time; replayed in the simulator it
gives a workload whose hot set moves as a real one does. Formats (damonitor/damo
``src/_damo_records.py``): ``json_compressed`` (zlib-compressed JSON, damo's default) and
``json``, both a list of records, one per kdamond/context/target, each with ``snapshots``
(one per aggregation interval: ``start_time``/``end_time`` in ns and ``regions``). Addresses
and times may be strings with thousands separators ("94,827,419,009,024"); ``nr_accesses`` is
``{"samples": N, ...}`` (samples per aggregation); ``age`` is ``{"aggr_intervals": N, ...}``
or missing/null. Human-formatted sizes and other keys are ignored. perf-based record formats
are not read.

Replay conventions (``DamonRecord.page_weights``):

- A page's access frequency in a snapshot is its region's ``nr_accesses / max_samples``: the
  share of sample intervals in which DAMON saw the region accessed. ``max_samples`` is
  ``aggr_us / sample_us`` when the record says, raised to the largest count seen (the kernel
  can count one sample more than the ratio), so frequencies stay in [0, 1].
- Pages: a vaddr record's span runs from the heap to the stack, terabytes mostly unmapped,
  so by default the pages are those of ``layout()``, the page-aligned union of every
  snapshot's regions (replay the record in those VMAs); a ``lo``..``hi`` window gives
  contiguous pages instead. A page that regions cover only in part gets the byte-weighted
  mean of what covers it (uncovered bytes count 0); DAMON regions are 4 KiB-aligned, so with
  4 KiB pages every covered page lies in one region. Weights are float32 (a count over
  ``max_samples`` needs no more) to halve the memory of long records.
- In the simulator's convention a page is accessed in a sample interval with probability
  ``1 - exp(-rate * interval)``, so a frequency ``f`` corresponds to ``-ln(1 - f) / interval``.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_CELLS = 50_000_000  # snapshots x pages that page_weights will allocate
_INT64_MAX = 2**63 - 1
_GROUPED = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+$")
_PLAIN = re.compile(r"^[0-9]+$")


class DamoRecordError(ValueError):
    """A damo record that cannot be read; the message names the file and JSON path."""


@dataclass(frozen=True, eq=False)
class DamonSnapshot:
    """One aggregation's regions, in address order (read-only int64 arrays; age -1 = unknown)."""

    start_ns: int
    end_ns: int
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise DamoRecordError(f"end_time {self.end_ns} is before start_time {self.start_ns}")
        arrays = {}
        for name in ("start", "end", "nr_accesses", "age"):
            array = np.array(getattr(self, name), dtype=np.int64)
            if array.ndim != 1:
                raise DamoRecordError(f"{name} must be a 1-D array, got shape {array.shape}")
            array.setflags(write=False)
            arrays[name] = array
            object.__setattr__(self, name, array)
        if len({a.size for a in arrays.values()}) != 1:
            raise DamoRecordError("start, end, nr_accesses and age must have the same length")
        start, end = arrays["start"], arrays["end"]
        bad = np.flatnonzero(end <= start)
        if bad.size:
            i = int(bad[0])
            raise DamoRecordError(f"regions[{i}]: end {end[i]:,} is not after start {start[i]:,}")
        bad = np.flatnonzero(start[1:] < end[:-1])
        if bad.size:
            i = int(bad[0]) + 1
            raise DamoRecordError(
                f"regions[{i}]: starts at {start[i]:,}, before regions[{i - 1}] ends at "
                f"{end[i - 1]:,} (regions out of order or overlapping)"
            )
        if np.any(arrays["nr_accesses"] < 0):
            raise DamoRecordError("nr_accesses must be >= 0")

    def __len__(self) -> int:
        return int(self.start.size)


@dataclass(frozen=True, eq=False)
class DamonRecord:
    """The snapshots of one monitoring target, in time order."""

    snapshots: tuple[DamonSnapshot, ...]
    sample_us: int | None
    aggr_us: int | None
    target_id: int | None
    source: str = "<record>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshots", tuple(self.snapshots))
        if not self.snapshots:
            raise DamoRecordError(f"{self.source}: a record needs at least one snapshot")
        for i in range(1, len(self.snapshots)):
            if self.snapshots[i].start_ns < self.snapshots[i - 1].start_ns:
                raise DamoRecordError(
                    f"{self.source}: snapshots[{i}] starts before snapshots[{i - 1}]"
                )
        if not any(len(s) for s in self.snapshots):
            raise DamoRecordError(f"{self.source}: no snapshot holds any region")
        for name in ("sample_us", "aggr_us"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise DamoRecordError(f"{self.source}: {name} must be > 0, got {value}")

    def __len__(self) -> int:
        return len(self.snapshots)

    @property
    def duration_s(self) -> float:
        """From the first snapshot's start to the last one's end."""
        return (self.snapshots[-1].end_ns - self.snapshots[0].start_ns) / 1e9

    @property
    def times_s(self) -> np.ndarray:
        """Snapshot start times in seconds after the first snapshot's start."""
        starts = np.array([s.start_ns for s in self.snapshots], dtype=np.int64)
        return (starts - starts[0]) / 1e9

    @property
    def max_samples(self) -> int:
        """The count that means "accessed in every sample" (see the module docstring)."""
        seen = max(int(s.nr_accesses.max()) for s in self.snapshots if len(s))
        if self.sample_us and self.aggr_us:
            seen = max(seen, self.aggr_us // self.sample_us)
        return max(seen, 1)

    def span(self) -> tuple[int, int]:
        """(lowest start, highest end) in bytes over all snapshots."""
        filled = [s for s in self.snapshots if len(s)]
        return min(int(s.start[0]) for s in filled), max(int(s.end[-1]) for s in filled)

    def layout(self, page_size: int) -> list[tuple[int, int]]:
        """(start, size) of the address ranges that any snapshot's regions cover, page-aligned
        and merged: the VMAs to replay the record in (a process's heap, mmap area and stack
        lie terabytes apart, so the span itself is mostly unmapped)."""
        _check_page_size(page_size)
        starts = np.concatenate([s.start for s in self.snapshots])
        ends = np.concatenate([s.end for s in self.snapshots])
        order = np.argsort(starts, kind="stable")
        starts = starts[order] // page_size * page_size
        ends = np.maximum.accumulate(-(-ends[order] // page_size) * page_size)
        first = np.concatenate(([0], np.flatnonzero(starts[1:] > ends[:-1]) + 1))
        last = np.concatenate((first[1:] - 1, [starts.size - 1]))
        return [
            (int(starts[a]), int(ends[b] - starts[a])) for a, b in zip(first, last, strict=True)
        ]

    def page_weights(
        self, page_size: int, lo: int | None = None, hi: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(snapshot times in s, [n_snapshots, n_pages] float32 access frequency in [0, 1]).

        Pages are those of ``layout(page_size)`` in address order, or, when ``lo`` or ``hi``
        is given, the contiguous pages from ``lo`` (default: the span's start) up to ``hi``
        (default: its end)."""
        _check_page_size(page_size)
        if lo is None and hi is None:
            vmas = self.layout(page_size)
        else:
            span_lo, span_hi = self.span()
            lo = span_lo if lo is None else int(lo)
            hi = span_hi if hi is None else int(hi)
            if not 0 <= lo < hi:
                raise DamoRecordError(f"{self.source}: need 0 <= lo < hi, got lo={lo:,} hi={hi:,}")
            vmas = [(lo, -(-(hi - lo) // page_size) * page_size)]
        n_pages = sum(size // page_size for _, size in vmas)
        if len(self) * n_pages > MAX_CELLS:
            larger = page_size
            while len(self) * sum(-(-size // larger) for _, size in vmas) > MAX_CELLS:
                larger *= 2
            raise DamoRecordError(
                f"{self.source}: {len(self)} snapshots x {n_pages:,} pages of {page_size} bytes "
                f"exceed the limit of {MAX_CELLS:,} cells; use a page size of at least "
                f"{larger} bytes or a narrower lo..hi"
            )
        page_lo = np.concatenate(
            [np.arange(start, start + size, page_size, dtype=np.int64) for start, size in vmas]
        )
        weights = np.zeros((len(self), n_pages), dtype=np.float32)
        max_samples = self.max_samples
        for row, snapshot in enumerate(self.snapshots):
            if len(snapshot):
                covered = _covered(snapshot, page_lo + page_size, max_samples)
                covered -= _covered(snapshot, page_lo, max_samples)
                weights[row] = np.clip(covered / page_size, 0.0, 1.0)
        return self.times_s, weights


def load_damo_record(path: str | Path, record_index: int = 0) -> DamonRecord:
    """Read record ``record_index`` of a damo ``json_compressed`` or ``json`` record file."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DamoRecordError(f"{source}: cannot read damo record: {error}") from error
    records = _decode(data, source)
    if not isinstance(records, list):
        raise DamoRecordError(
            f"{source}: expected a JSON list of records, got {type(records).__name__}"
        )
    if not records:
        raise DamoRecordError(f"{source}: the record list is empty")
    if isinstance(record_index, bool) or not 0 <= record_index < len(records):
        raise DamoRecordError(
            f"{source}: record_index {record_index!r} out of range; the file holds "
            f"{len(records)} record(s)"
        )
    return _parse_record(records[record_index], f"[{record_index}]", source)


# ---- decoding and parsing helpers ----------------------------------------------------------


def _decode(data: bytes, source: str) -> object:
    """JSON from zlib-compressed or plain bytes (a zlib header decides which)."""
    if _looks_like_zlib(data):
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data) + inflater.flush()
        except zlib.error as error:
            raise DamoRecordError(f"{source}: corrupt compressed record: {error}") from error
        if not inflater.eof:
            raise DamoRecordError(
                f"{source}: truncated compressed record: the zlib stream ends early"
            )
        if inflater.unused_data:
            raise DamoRecordError(
                f"{source}: {len(inflater.unused_data)} stray bytes after the compressed record"
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DamoRecordError(
            f"{source}: neither a zlib-compressed nor a JSON damo record (perf records are "
            f"not supported): {error}"
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DamoRecordError(
            f"{source}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from error


def _looks_like_zlib(data: bytes) -> bool:
    """RFC 1950 header: deflate method, window <= 32 KiB, check bits. JSON never starts so."""
    if len(data) < 2:
        return False
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


def _parse_record(record: object, path: str, source: str) -> DamonRecord:
    record = _expect_dict(record, path, source)
    intervals = record.get("intervals")
    sample_us = aggr_us = None
    if intervals is not None:
        intervals = _expect_dict(intervals, f"{path}.intervals", source)
        if intervals.get("sample_us") is not None:
            sample_us = _int(intervals["sample_us"], f"{path}.intervals.sample_us", source)
        if intervals.get("aggr_us") is not None:
            aggr_us = _int(intervals["aggr_us"], f"{path}.intervals.aggr_us", source)
    target_id = record.get("target_id")
    if target_id is not None:
        target_id = _int(target_id, f"{path}.target_id", source, limit=None)
    raw_snapshots = _key(record, "snapshots", path, source)
    if not isinstance(raw_snapshots, list):
        raise DamoRecordError(f"{source}: {path}.snapshots: expected a list")
    if not raw_snapshots:
        raise DamoRecordError(f"{source}: {path}.snapshots: the snapshot list is empty")
    snapshots: list[DamonSnapshot] = []
    for i, raw in enumerate(raw_snapshots):
        snapshot = _parse_snapshot(raw, f"{path}.snapshots[{i}]", source)
        if snapshots and snapshot.start_ns < snapshots[-1].start_ns:
            raise DamoRecordError(
                f"{source}: {path}.snapshots[{i}].start_time: {snapshot.start_ns} is before "
                f"the previous snapshot's start {snapshots[-1].start_ns}"
            )
        snapshots.append(snapshot)
    if not any(len(s) for s in snapshots):
        raise DamoRecordError(f"{source}: {path}.snapshots: no snapshot holds any region")
    for name, value in (("sample_us", sample_us), ("aggr_us", aggr_us)):
        if value == 0:
            raise DamoRecordError(f"{source}: {path}.intervals.{name}: must be > 0")
    return DamonRecord(tuple(snapshots), sample_us, aggr_us, target_id, source)


def _parse_snapshot(snapshot: object, path: str, source: str) -> DamonSnapshot:
    snapshot = _expect_dict(snapshot, path, source)
    start_ns = _int(_key(snapshot, "start_time", path, source), f"{path}.start_time", source)
    end_ns = _int(_key(snapshot, "end_time", path, source), f"{path}.end_time", source)
    regions = _key(snapshot, "regions", path, source)
    if not isinstance(regions, list):
        raise DamoRecordError(f"{source}: {path}.regions: expected a list")
    rows = [_parse_region(r, f"{path}.regions[{i}]", source) for i, r in enumerate(regions)]
    columns = np.array(rows, dtype=np.int64).reshape(len(rows), 4).T
    try:
        return DamonSnapshot(start_ns, end_ns, *columns)
    except DamoRecordError as error:
        raise DamoRecordError(f"{source}: {path}: {error}") from None


def _parse_region(region: object, path: str, source: str) -> tuple[int, int, int, int]:
    region = _expect_dict(region, path, source)
    start = _int(_key(region, "start", path, source), f"{path}.start", source)
    end = _int(_key(region, "end", path, source), f"{path}.end", source)
    nr = _key(region, "nr_accesses", path, source)
    if isinstance(nr, dict):
        nr = _int(
            _key(nr, "samples", f"{path}.nr_accesses", source),
            f"{path}.nr_accesses.samples",
            source,
        )
    else:
        nr = _int(nr, f"{path}.nr_accesses", source)
    age = region.get("age")
    if isinstance(age, dict):
        age = age.get("aggr_intervals")
        age = -1 if age is None else _int(age, f"{path}.age.aggr_intervals", source)
    else:
        age = -1 if age is None else _int(age, f"{path}.age", source)
    return start, end, nr, age


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
        raise DamoRecordError(f"page_size must be a positive integer, got {page_size!r}")


def _expect_dict(value: object, path: str, source: str) -> dict[str, Any]:
    """``value`` itself, once checked to be a JSON object."""
    if not isinstance(value, dict):
        raise DamoRecordError(
            f"{source}: {path}: expected a JSON object, got {type(value).__name__}"
        )
    return value


def _key(mapping: dict, key: str, path: str, source: str) -> object:
    if key not in mapping:
        raise DamoRecordError(f"{source}: {path}.{key}: missing key")
    return mapping[key]


def _int(value: object, path: str, source: str, limit: int | None = _INT64_MAX) -> int:
    """A non-negative integer from a JSON int or a string such as "94,827,419,009,024"."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (_PLAIN.match(value) or _GROUPED.match(value)):
        number = int(value.replace(",", ""))
    else:
        raise DamoRecordError(
            f"{source}: {path}: expected a non-negative integer (digits, optionally with "
            f"thousands separators every 3 digits), got {value!r}"
        )
    if number < 0 or (limit is not None and number > limit):
        raise DamoRecordError(f"{source}: {path}: {number} is out of range")
    return number


def _covered(snapshot: DamonSnapshot, bounds: np.ndarray, max_samples: int) -> np.ndarray:
    """F(x) = frequency-weighted bytes of regions below each bound x (regions are sorted)."""
    start, end = snapshot.start, snapshot.end
    frequency = np.minimum(snapshot.nr_accesses / max_samples, 1.0)
    cumulative = np.concatenate(([0.0], np.cumsum(frequency * (end - start))))
    below = np.searchsorted(end, bounds, side="right")  # regions wholly below each bound
    partial = np.zeros(bounds.size)
    inside = below < start.size
    index = below[inside]
    overlap = np.clip(bounds[inside] - start[index], 0, None)
    partial[inside] = frequency[index] * overlap
    return cumulative[below] + partial
