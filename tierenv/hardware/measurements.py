"""Read measured bandwidth–latency curves from Intel MLC logs, Mess CSVs and Mess-simulator files.

Every reader returns :class:`MeasuredCurve` objects in one convention (GB/s with 1 GB = 1e9 B,
ns, points ordered from the lightest to the heaviest load, read share counted at the memory
controller), so calibration code never needs to know where a curve came from. Bad input fails
loudly with the file, line and field named: a silently skipped row or a NaN would bend a fit
without anyone noticing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike[str]

_MIN_POINTS = 2  # a curve needs at least an idle and a loaded point
_MIN_MLC_ROWS = 3  # fewer rows than this means the log was cut off mid-table
_MB_PER_GB = 1000.0  # MLC and Mess-sim report MB/s with 1 MB = 1e6 B


class MeasurementError(ValueError):
    """A measurement file is missing, malformed or physically implausible.

    The message always starts with the file path, then names the line or field at fault.
    """


def _fail(source: str, where: str | None, problem: str) -> MeasurementError:
    """Build an error whose text starts with the file and locates the problem."""
    location = f"{source}: {where}: " if where else f"{source}: "
    return MeasurementError(location + problem)


def _check_read_fraction(source: str, read_fraction: float) -> float:
    """Reject read fractions outside [0, 1] (including NaN)."""
    try:
        value = float(read_fraction)
    except (TypeError, ValueError):
        raise _fail(source, "read_fraction", f"{read_fraction!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise _fail(source, "read_fraction", f"{read_fraction!r} is outside [0, 1]")
    return value


@dataclass(frozen=True, eq=False)  # eq would compare arrays element-wise and fail
class MeasuredCurve:
    """One measured loaded-latency curve at a fixed controller-level read fraction."""

    source: str
    label: str
    read_fraction: float
    bandwidth_gbps: np.ndarray
    latency_ns: np.ndarray

    def __post_init__(self) -> None:
        """Validate and freeze the arrays so a curve can be shared without defensive copies."""
        fraction = _check_read_fraction(self.source, self.read_fraction)
        bandwidth = _frozen_array(self.source, "bandwidth_gbps", self.bandwidth_gbps)
        latency = _frozen_array(self.source, "latency_ns", self.latency_ns)
        if np.any(latency <= 0):
            raise _fail(self.source, "latency_ns", "latencies must be positive")
        if bandwidth.shape != latency.shape:
            problem = f"{bandwidth.size} bandwidth values but {latency.size} latency values"
            raise _fail(self.source, None, problem)
        if bandwidth.size < _MIN_POINTS:
            problem = f"a curve needs at least {_MIN_POINTS} points, got {bandwidth.size}"
            raise _fail(self.source, None, problem)
        object.__setattr__(self, "read_fraction", fraction)
        object.__setattr__(self, "bandwidth_gbps", bandwidth)
        object.__setattr__(self, "latency_ns", latency)

    def peak_gbps(self) -> float:
        """Highest bandwidth measured (not necessarily the heaviest-load point)."""
        return float(self.bandwidth_gbps.max())

    def rising_branch(self, fraction: float = 0.98) -> MeasuredCurve:
        """Points from idle up to and including the first point whose bandwidth reaches >=
        fraction * peak (the open-loop part of the curve; the saturated closed-loop rows after it
        are dropped)."""
        if not 0.0 < fraction <= 1.0:
            raise _fail(self.source, "rising_branch", f"fraction {fraction!r} is outside (0, 1]")
        reached = np.flatnonzero(self.bandwidth_gbps >= fraction * self.peak_gbps())
        end = int(reached[0]) + 1
        if end < _MIN_POINTS:
            raise _fail(
                self.source,
                "rising_branch",
                f"the lightest-load point already reaches {fraction:g} of the peak, "
                "so there is no rising branch",
            )
        return replace(
            self, bandwidth_gbps=self.bandwidth_gbps[:end], latency_ns=self.latency_ns[:end]
        )

    def idle_latency_ns(self) -> float:
        """Latency of the lightest-load point (the curve's L0 estimate)."""
        return float(self.latency_ns[0])


def _frozen_array(source: str, name: str, values: np.ndarray) -> np.ndarray:
    """A read-only 1-D float64 copy, rejecting NaN, infinities and negative values."""
    array = np.array(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise _fail(source, name, "contains negative, NaN or infinite values")
    array.flags.writeable = False
    return array


def _rfo_mix(reads: int, writes: int) -> float:
    """Controller read share when every store costs a read-for-ownership plus a write-back."""
    return (reads + writes) / (reads + 2 * writes)


def _nt_mix(reads: int, writes: int) -> float:
    """Controller read share when stores are non-temporal (a write only, no RFO)."""
    return reads / (reads + writes)


MLC_TRAFFIC: dict[int, tuple[float, str]] = {
    0: (1.0, "all reads"),
    2: (_rfo_mix(2, 1), "2:1 read:write"),
    3: (_rfo_mix(3, 1), "3:1 read:write"),
    4: (_rfo_mix(3, 2), "3:2 read:write"),
    5: (_rfo_mix(1, 1), "1:1 read:write"),
    6: (_nt_mix(0, 1), "non-temporal writes only"),
    7: (_nt_mix(2, 1), "2:1 read:NT-write"),
    8: (_nt_mix(1, 1), "1:1 read:NT-write"),
    9: (_nt_mix(3, 1), "3:1 read:NT-write"),
    10: (_nt_mix(2, 1), "2:1 read:NT-write, stream-triad-like"),
    11: (_rfo_mix(3, 1), "3:1 read:write, stream-triad-like with RFO"),
    **{n + 8: (_rfo_mix(n, 1), f"{n}:1 read:write") for n in range(4, 10)},  # -W12..-W17
}
"""MLC ``-W`` code -> (read fraction at the memory controller, core-side description)."""


def _read_text(path: PathLike) -> tuple[str, str]:
    """The file's path as text and its contents; missing, unreadable or empty files fail."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8-sig")  # tolerate a BOM
    except FileNotFoundError:
        raise _fail(source, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(source, None, f"cannot read the file ({exc})") from None
    if not text.strip():
        raise _fail(source, None, "file is empty")
    return source, text


def _parse_number(source: str, line_no: int, field: str, token: str) -> float:
    """A finite non-negative number (positive for a latency), or an error naming the line."""
    try:
        value = float(token)
    except ValueError:
        raise _fail(source, f"line {line_no}", f"{field} {token!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise _fail(source, f"line {line_no}", f"{field} {token!r} is negative, NaN or infinite")
    if value == 0 and "latency" in field:
        raise _fail(source, f"line {line_no}", f"{field} {token!r} must be positive")
    return value


# ---------------------------------------------------------------------------------------------
# Intel MLC --loaded_latency


_MLC_BANNER = "Intel(R) Memory Latency Checker"
_MLC_REJECTED = "Random access is supported only"
_MLC_SECTION = "Measuring Loaded Latencies"
_W_OPTION = re.compile(r"(?<!\S)-W(\S*)")


def _mlc_traffic_code(source: str, lines: list[str]) -> int:
    """The ``-W`` code from the command line; without ``-W`` MLC generates reads only."""
    for line_no, line in enumerate(lines, start=1):
        if not line.startswith("Command line parameters:"):
            continue
        match = _W_OPTION.search(line)
        if match is None:
            return 0
        if not match.group(1).isdigit():
            raise _fail(source, f"line {line_no}", f"malformed traffic option {match.group(0)!r}")
        return int(match.group(1))
    return 0  # no command line echoed (e.g. a default run): "Using Read-only traffic type"


def _mlc_table_start(source: str, lines: list[str]) -> int:
    """Index of the first data row: after the ``Inject`` header and its ``====`` rule."""
    section = next((i for i, line in enumerate(lines) if line.startswith(_MLC_SECTION)), 0)
    header = next(
        (i for i in range(section, len(lines)) if lines[i].strip().startswith("Inject")), None
    )
    if header is None:
        raise _fail(source, None, "no loaded-latency table (no 'Inject Delay' header found)")
    for i in range(header + 1, min(header + 4, len(lines))):
        if lines[i].strip().startswith("="):
            return i + 1
    raise _fail(source, f"line {header + 1}", "'Inject' header is not followed by a '====' rule")


def _mlc_rows(source: str, lines: list[str], start: int) -> list[tuple[int, float, float]]:
    """(delay, latency ns, bandwidth MB/s) rows until a blank line or the next section."""
    rows = []
    for index in range(start, len(lines)):
        line, line_no = lines[index], index + 1
        if not line.strip() or line.startswith("Measuring"):
            break
        fields = line.split()
        if len(fields) != 3:
            raise _fail(
                source,
                f"line {line_no}",
                f"expected 3 columns (delay, latency, bandwidth), got {len(fields)}: {line!r}",
            )
        if not fields[0].isdigit():
            raise _fail(source, f"line {line_no}", f"inject delay {fields[0]!r} is not an integer")
        latency = _parse_number(source, line_no, "latency", fields[1])
        bandwidth = _parse_number(source, line_no, "bandwidth", fields[2])
        rows.append((int(fields[0]), latency, bandwidth))
    if len(rows) < _MIN_MLC_ROWS:
        raise _fail(
            source,
            f"line {start + 1}",
            f"loaded-latency table starting here is "
            f"truncated: {len(rows)} data rows, expected at least {_MIN_MLC_ROWS}",
        )
    return rows


def _parse_mlc(source: str, text: str, read_fraction: float | None) -> MeasuredCurve:
    """Parse MLC text already read from ``source``."""
    lines = text.splitlines()
    for line_no, line in enumerate(lines, start=1):
        if _MLC_REJECTED in line:
            raise _fail(source, f"line {line_no}", f"MLC rejected the run: {line.strip()!r}")
    code = _mlc_traffic_code(source, lines)
    if code not in MLC_TRAFFIC:
        raise _fail(source, "-W option", f"unknown MLC traffic code -W{code}")
    fraction, description = MLC_TRAFFIC[code]
    if read_fraction is not None:
        fraction = _check_read_fraction(source, read_fraction)
    rows = sorted(
        _mlc_rows(source, lines, _mlc_table_start(source, lines)),
        key=lambda row: row[0],
        reverse=True,
    )  # largest delay = lightest load
    return MeasuredCurve(
        source=source,
        label=f"MLC -W{code} ({description})",
        read_fraction=fraction,
        bandwidth_gbps=np.array([row[2] for row in rows]) / _MB_PER_GB,
        latency_ns=np.array([row[1] for row in rows]),
    )


def read_mlc_loaded_latency(path: PathLike, read_fraction: float | None = None) -> MeasuredCurve:
    """Read an MLC ``--loaded_latency`` log or the loaded-latency section of a default run.

    The read fraction comes from the ``-W`` code unless ``read_fraction`` overrides it (e.g.
    with a value measured from IMC CAS counters during the run).
    """
    source, text = _read_text(path)
    return _parse_mlc(source, text, read_fraction)


# ---------------------------------------------------------------------------------------------
# Mess processed CSV


_MESS_COLUMNS = ("read_pct_rounded", "pause", "bandwidth_mean", "latency_mean")


def _column_name(header: str) -> str:
    """Header without a unit suffix, so ``bandwidth_mean (GB/s)`` matches ``bandwidth_mean``."""
    return header.split("(")[0].strip()


def _mess_rows(source: str, text: str) -> list[tuple[float, float, float, float]]:
    """(read %, pause, GB/s, ns) for every data row, validated."""
    reader = csv.reader(io.StringIO(text))
    header = [_column_name(name) for name in next(reader)]
    missing = [name for name in _MESS_COLUMNS if name not in header]
    if missing:
        raise _fail(source, "line 1", f"missing column(s) {', '.join(missing)}")
    columns = [header.index(name) for name in _MESS_COLUMNS]
    rows: list[tuple[float, float, float, float]] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            raise _fail(
                source,
                f"line {reader.line_num}",
                f"expected {len(header)} fields, got {len(record)}",
            )
        read_pct, pause, gbps, ns = (
            _parse_number(source, reader.line_num, _MESS_COLUMNS[k], record[c])
            for k, c in enumerate(columns)
        )
        if read_pct > 100:
            raise _fail(
                source, f"line {reader.line_num}", f"read_pct_rounded {read_pct:g} is above 100"
            )
        rows.append((read_pct, pause, gbps, ns))
    if not rows:
        raise _fail(source, None, "no data rows after the header")
    return rows


def _mess_curve(
    source: str, pct: float, rows: list[tuple[float, float, float, float]]
) -> MeasuredCurve:
    """One read-% group ordered by pause, longest first (the longest pause is the lightest load).

    The zero-traffic probe rows are kept: they are the idle latency, the curve's anchor.
    """
    ordered = sorted(rows, key=lambda row: row[1], reverse=True)
    return MeasuredCurve(
        source=f"{source}#read_pct={pct:g}",
        label=f"Mess {pct:g}% reads",
        read_fraction=pct / 100.0,
        bandwidth_gbps=np.array([row[2] for row in ordered]),
        latency_ns=np.array([row[3] for row in ordered]),
    )


def _parse_mess(source: str, text: str) -> list[MeasuredCurve]:
    """Parse Mess CSV text already read from ``source``."""
    groups: dict[float, list[tuple[float, float, float, float]]] = defaultdict(list)
    for row in _mess_rows(source, text):
        groups[row[0]].append(row)
    return [_mess_curve(source, pct, groups[pct]) for pct in sorted(groups)]


def read_mess_curves(path: PathLike) -> list[MeasuredCurve]:
    """Read a Mess ``processed/memory_curves.csv``: one curve per ``read_pct_rounded``.

    Mess measures the read share at the memory controller, so ``read_pct_rounded / 100`` is
    used as is. Curves come back sorted by read fraction.
    """
    source, text = _read_text(path)
    return _parse_mess(source, text)


# ---------------------------------------------------------------------------------------------
# Mess-simulator bwlat_<R>.txt


_BWLAT_NAME = re.compile(r"bwlat_(\d+)")


def _bwlat_read_fraction(source: str, read_fraction: float | None) -> float:
    """The override, else R/100 from ``bwlat_<R>`` in the file name."""
    if read_fraction is not None:
        return _check_read_fraction(source, read_fraction)
    match = _BWLAT_NAME.search(Path(source).name)
    if match is None:
        raise _fail(
            source, "file name", "no read percentage (expected 'bwlat_<R>'); pass read_fraction"
        )
    return _check_read_fraction(source, int(match.group(1)) / 100.0)


def _bwlat_rows(source: str, text: str) -> list[tuple[float, float]]:
    """(MB/s, ns) pairs in file order, validated."""
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise _fail(
                source,
                f"line {line_no}",
                f"expected 2 columns (MB/s, ns), got {len(fields)}: {line!r}",
            )
        rows.append(
            (
                _parse_number(source, line_no, "bandwidth", fields[0]),
                _parse_number(source, line_no, "latency", fields[1]),
            )
        )
    return rows


def _parse_bwlat(source: str, text: str, read_fraction: float | None) -> MeasuredCurve:
    """Parse bwlat text already read from ``source``."""
    fraction = _bwlat_read_fraction(source, read_fraction)
    # The file lists the highest bandwidth first; its saturated plateau rows are not sorted among
    # themselves, so reverse and then sort stably by bandwidth to get a true idle-first order.
    rows = sorted(reversed(_bwlat_rows(source, text)), key=lambda row: row[0])
    return MeasuredCurve(
        source=source,
        label=f"bwlat {100 * fraction:g}% reads",
        read_fraction=fraction,
        bandwidth_gbps=np.array([row[0] for row in rows]) / _MB_PER_GB,
        latency_ns=np.array([row[1] for row in rows]),
    )


def read_bwlat_curve(path: PathLike, read_fraction: float | None = None) -> MeasuredCurve:
    """Read a Mess-simulator ``bwlat_<R>.txt`` curve (device-side latency, on-chip part excluded).

    Plateau rows with near-equal bandwidth are kept: they are real measured points.
    """
    source, text = _read_text(path)
    return _parse_bwlat(source, text, read_fraction)


# ---------------------------------------------------------------------------------------------
# Format detection


def _looks_like_mlc(text: str) -> bool:
    """MLC banner, MLC's own error line, or an ``Inject``/``Delay`` table header."""
    if _MLC_BANNER in text or _MLC_REJECTED in text:
        return True
    return any(line.split()[:1] in (["Inject"], ["Delay"]) for line in text.splitlines())


def _is_number(token: str) -> bool:
    """Whether ``float`` accepts the token."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _looks_like_bwlat(text: str) -> bool:
    """First non-blank line holds exactly two numbers."""
    fields = next(line for line in text.splitlines() if line.strip()).split()
    return len(fields) == 2 and all(_is_number(field) for field in fields)


def read_measurements(path: PathLike, read_fraction: float | None = None) -> list[MeasuredCurve]:
    """Read any supported file, detecting its format from the contents.

    ``read_fraction`` overrides the read share of single-curve formats; a Mess CSV carries its
    own per-curve read share, so an override there is an error rather than silently ignored.
    """
    return _parse_any(*_read_text(path), read_fraction)


def read_measurement_files(
    paths: Sequence[PathLike], read_fraction: float | None = None
) -> list[MeasuredCurve]:
    """Read several files of one node, refusing a file given twice.

    The same file named twice (or a byte-identical copy) is refused, not deduplicated: it is
    almost always a slip (overlapping globs, a copy under a new name, the wrong run picked),
    silently dropping it would hide which run the user thinks is in the fit, and keeping it
    would count its points twice.
    """
    first_with: dict[str, str] = {}  # contents -> the first source that had them
    curves: list[MeasuredCurve] = []
    for path in paths:
        source, text = _read_text(path)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in first_with:
            earlier = first_with[digest]
            if earlier == source:
                problem = "given twice"
            elif os.path.samefile(earlier, source):
                problem = f"given twice (also as {earlier})"
            else:
                problem = f"the same contents as {earlier}"
            raise _fail(source, None, f"{problem}; pass each measurement once")
        first_with[digest] = source
        curves.extend(_parse_any(source, text, read_fraction))
    return curves


def _parse_any(source: str, text: str, read_fraction: float | None) -> list[MeasuredCurve]:
    """Parse text already read from ``source``, detecting its format."""
    if _looks_like_mlc(text):
        return [_parse_mlc(source, text, read_fraction)]
    if "read_pct_rounded" in text.splitlines()[0]:
        if read_fraction is not None:
            raise _fail(source, "read_fraction", "a Mess CSV defines its own read fractions")
        return _parse_mess(source, text)
    if _looks_like_bwlat(text):
        return [_parse_bwlat(source, text, read_fraction)]
    raise _fail(
        source,
        "line 1",
        "unrecognised format (expected an MLC log, a Mess CSV or '<MB/s> <ns>' lines)",
    )
