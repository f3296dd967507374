"""masim workload configs (DAMON's memory access simulator) read into simulator page weights.

masim is the program DAMON's authors use to produce known access patterns, so its configs are
ready-made phase-changing workloads whose hot set is known. The text format
(damonitor/masim ``README.md``, ``masim.c`` ``parse_regions``/``parse_phase``): paragraphs
separated by blank lines, ``#`` lines are comments; the first paragraph lists regions
``name, size_bytes[, init_file|none]``; every later paragraph is a phase: a name line, a
duration line (ms), then access lines
``region, random(1)|sequential(0), stride_bytes, weight[, ro|wo|rw]`` (masim's default mode
is ``wo``). Runs of blank lines count as one separator and paragraphs holding only comments
are ignored.

Conversion for the simulator (assumptions, since masim itself only issues loads and stores):

- Layout: every region is its own anonymous mmap, so regions become VMAs in file order,
  ``gap_bytes`` apart, each rounded up to whole pages, starting at a page-aligned ``base``.
- Within a phase, an access line's weight over the phase's total weight is the share of the
  phase's accesses that go to its region (masim picks a line with that probability for each
  access). Two lines on the same region add up.
- Inside a region, a random access spreads its share uniformly over the region's pages
  (the stride, which only aligns the random offsets, is ignored). A sequential access
  touches one address every ``stride`` bytes from the region's start and wraps around, so
  over a phase its share spreads uniformly over the pages those addresses fall in: every
  page when ``stride <= page_size``, every ``stride // page_size``-th page when the stride is
  a multiple of the page size (the exact set is computed for other strides). A page counts
  whole even when the region ends inside it.
- Read share: ``ro`` lines read only (1), ``wo`` lines write only (0), ``rw`` lines read and
  write each access (0.5); the phase's read fraction is the share-weighted mean.
- Rates, cache hits and the time masim spends per access are not modelled: the weights say
  where the accesses go, not how many there are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RW_MODES = ("ro", "wo", "rw")
DEFAULT_RW = "wo"  # masim's default_rw_mode (WRITE_ONLY)
READ_SHARE = {"ro": 1.0, "wo": 0.0, "rw": 0.5}
DEFAULT_BASE = 0x7F00_0000_0000
DEFAULT_GAP = 2 << 20
_INT = re.compile(r"^[+-]?[0-9]+$")


class MasimError(ValueError):
    """A masim config that cannot be read; the message names ``source:line``."""


@dataclass(frozen=True)
class MasimRegion:
    """One masim region: a separate anonymous mapping of ``size_bytes``."""

    name: str
    size_bytes: int
    init_file: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "region name")
        if "," in self.name:
            raise MasimError(f"region name {self.name!r} must not contain ','")
        if isinstance(self.size_bytes, bool) or not isinstance(self.size_bytes, int):
            raise MasimError(f"region {self.name!r}: size must be an integer number of bytes")
        if self.size_bytes <= 0:
            raise MasimError(f"region {self.name!r}: size must be > 0 bytes, got {self.size_bytes}")

    def n_pages(self, page_size: int) -> int:
        return -(-self.size_bytes // page_size)


@dataclass(frozen=True)
class MasimAccess:
    """One access line of a phase: where a share of the phase's accesses go, and how."""

    region: str
    random: bool
    stride_bytes: int
    weight: int
    rw: str = DEFAULT_RW

    def __post_init__(self) -> None:
        if not isinstance(self.random, bool):
            raise MasimError(f"randomness must be a bool, got {self.random!r}")
        if isinstance(self.stride_bytes, bool) or not isinstance(self.stride_bytes, int):
            raise MasimError(
                f"stride must be an integer number of bytes, got {self.stride_bytes!r}"
            )
        if self.stride_bytes <= 0:
            raise MasimError(f"stride must be > 0 bytes, got {self.stride_bytes}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 0:
            raise MasimError(f"weight must be an integer >= 0, got {self.weight!r}")
        if self.rw not in RW_MODES:
            raise MasimError(
                f"read/write mode must be one of {', '.join(RW_MODES)}, got {self.rw!r}"
            )


@dataclass(frozen=True)
class MasimPhase:
    """A phase: for ``duration_ms``, accesses spread over regions by the lines' weights."""

    name: str
    duration_ms: int
    accesses: tuple[MasimAccess, ...]

    def __post_init__(self) -> None:
        _check_name(self.name, "phase name")
        object.__setattr__(self, "accesses", tuple(self.accesses))
        if isinstance(self.duration_ms, bool) or not isinstance(self.duration_ms, int):
            raise MasimError(f"phase {self.name!r}: duration must be an integer number of ms")
        if self.duration_ms <= 0:
            raise MasimError(
                f"phase {self.name!r}: duration must be > 0 ms, got {self.duration_ms}"
            )
        if not self.accesses:
            raise MasimError(f"phase {self.name!r} has no access lines")
        if sum(a.weight for a in self.accesses) == 0:
            raise MasimError(f"phase {self.name!r}: all access weights are zero")

    @property
    def total_weight(self) -> int:
        return sum(a.weight for a in self.accesses)


@dataclass(frozen=True)
class MasimConfig:
    """A whole masim config; ``source`` says where it came from (for messages)."""

    regions: tuple[MasimRegion, ...]
    phases: tuple[MasimPhase, ...]
    source: str = "<config>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "phases", tuple(self.phases))
        if not self.regions:
            raise MasimError(f"{self.source}: a config needs at least one region")
        if not self.phases:
            raise MasimError(f"{self.source}: a config needs at least one phase")
        names = [r.name for r in self.regions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise MasimError(f"{self.source}: duplicate region names {duplicates}")
        for phase in self.phases:
            for access in phase.accesses:
                if access.region not in names:
                    raise MasimError(
                        f"{self.source}: phase {phase.name!r} accesses unknown region "
                        f"{access.region!r}; regions are {names}"
                    )

    @property
    def total_bytes(self) -> int:
        return sum(r.size_bytes for r in self.regions)

    @property
    def duration_ms(self) -> int:
        return sum(p.duration_ms for p in self.phases)

    def layout(
        self, page_size: int, base: int = DEFAULT_BASE, gap_bytes: int = DEFAULT_GAP
    ) -> list[tuple[int, int]]:
        """(start, size) of each region's VMA in file order: page-aligned, ``gap_bytes`` apart."""
        _check_page_size(page_size)
        if base < 0 or base % page_size:
            raise MasimError(f"base {base:#x} must be >= 0 and a multiple of page size {page_size}")
        if gap_bytes < 0:
            raise MasimError(f"gap_bytes must be >= 0, got {gap_bytes}")
        vmas = []
        cursor = base
        for region in self.regions:
            size = region.n_pages(page_size) * page_size
            vmas.append((cursor, size))
            cursor = -(-(cursor + size + gap_bytes) // page_size) * page_size
        return vmas

    def page_weights(self, page_size: int) -> list[tuple[float, np.ndarray, float]]:
        """Per phase: (duration s, weights over all pages in layout order summing to 1,
        read fraction). See the module docstring for the assumptions."""
        _check_page_size(page_size)
        offsets = {}
        cursor = 0
        for region in self.regions:
            offsets[region.name] = (cursor, region)
            cursor += region.n_pages(page_size)
        phases = []
        for phase in self.phases:
            weights = np.zeros(cursor)
            read_fraction = 0.0
            total = phase.total_weight
            for access in phase.accesses:
                if access.weight == 0:
                    continue
                share = access.weight / total
                offset, region = offsets[access.region]
                pages = _touched_pages(region, access, page_size)
                weights[offset + pages] += share / pages.size
                read_fraction += share * READ_SHARE[access.rw]
            weights /= weights.sum()
            phases.append((phase.duration_ms / 1000.0, weights, read_fraction))
        return phases

    def to_text(self) -> str:
        """The config in masim's format; ``parse_masim`` reads it back to an equal config."""
        lines = ["#regions"]
        for region in self.regions:
            fields = [region.name, str(region.size_bytes)]
            if region.init_file is not None:
                fields.append(region.init_file)
            lines.append(", ".join(fields))
        for phase in self.phases:
            lines += ["", phase.name, str(phase.duration_ms)]
            lines += [
                f"{a.region}, {int(a.random)}, {a.stride_bytes}, {a.weight}, {a.rw}"
                for a in phase.accesses
            ]
        return "\n".join(lines) + "\n"


def load_masim(path: str | Path) -> MasimConfig:
    """Read a masim config file; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MasimError(f"{path}: cannot read masim config: {error}") from error
    return parse_masim(text, source=str(path))


def parse_masim(text: str, source: str = "<text>") -> MasimConfig:
    """Parse masim config text; ``source`` names it in errors (``source:line: problem``)."""
    paragraphs = _paragraphs(text)
    if not paragraphs:
        raise MasimError(f"{source}:1: empty config: no regions paragraph")
    regions = _parse_regions(paragraphs[0], source)
    if len(paragraphs) == 1:
        last = paragraphs[0][-1][0]
        raise MasimError(f"{source}:{last}: no phase paragraphs after the regions")
    names = {r.name for r in regions}
    phases = tuple(_parse_phase(p, names, source) for p in paragraphs[1:])
    with _located(source, paragraphs[0][0][0]):
        return MasimConfig(regions, phases, source)


# ---- parsing helpers -----------------------------------------------------------------------

_Paragraph = list[tuple[int, str]]  # (1-based line number, stripped content)


def _paragraphs(text: str) -> list[_Paragraph]:
    """Non-comment lines grouped by blank-line separators; comment-only groups dropped."""
    paragraphs: list[_Paragraph] = []
    current: _Paragraph = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            if current:
                paragraphs.append(current)
            current = []
        elif not line.startswith("#"):
            current.append((number, line))
    if current:
        paragraphs.append(current)
    return paragraphs


@contextmanager
def _located(source: str, line: int) -> Iterator[None]:
    """Prefix a MasimError raised by a constructor with ``source:line``."""
    try:
        yield
    except MasimError as error:
        raise MasimError(f"{source}:{line}: {error}") from None


def _parse_regions(paragraph: _Paragraph, source: str) -> tuple[MasimRegion, ...]:
    regions = []
    seen: dict[str, int] = {}
    for number, line in paragraph:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) not in (2, 3):
            raise MasimError(
                f"{source}:{number}: a region line needs 2 or 3 comma-separated fields "
                f"(name, size[, file]), got {len(fields)}: {line!r}"
            )
        name = fields[0]
        if name in seen:
            raise MasimError(
                f"{source}:{number}: duplicate region name {name!r} (first on line {seen[name]})"
            )
        seen[name] = number
        size = _integer(fields[1], "region size (bytes)", source, number)
        init_file = fields[2] if len(fields) == 3 and fields[2] != "none" else None
        with _located(source, number):
            regions.append(MasimRegion(name, size, init_file))
    return tuple(regions)


def _parse_phase(paragraph: _Paragraph, regions: set[str], source: str) -> MasimPhase:
    name_line, name = paragraph[0]
    if len(paragraph) < 2:
        raise MasimError(
            f"{source}:{name_line}: phase {name!r} is truncated: no duration line after its name"
        )
    number, line = paragraph[1]
    duration = _integer(line, f"duration (ms) of phase {name!r}", source, number)
    if duration <= 0:
        raise MasimError(
            f"{source}:{number}: phase {name!r}: duration must be > 0 ms, got {duration}"
        )
    if len(paragraph) < 3:
        raise MasimError(f"{source}:{name_line}: phase {name!r} has no access lines")
    accesses = [_parse_access(number, line, regions, source) for number, line in paragraph[2:]]
    with _located(source, name_line):
        return MasimPhase(name, duration, tuple(accesses))


def _parse_access(number: int, line: str, regions: set[str], source: str) -> MasimAccess:
    fields = [f.strip() for f in line.split(",")]
    if len(fields) not in (4, 5):
        raise MasimError(
            f"{source}:{number}: an access line needs 4 or 5 comma-separated fields "
            f"(region, random, stride, weight[, ro|wo|rw]), got {len(fields)}: {line!r}"
        )
    region = fields[0]
    if region not in regions:
        raise MasimError(
            f"{source}:{number}: unknown region {region!r}; regions are {sorted(regions)}"
        )
    if fields[1] not in ("0", "1"):
        raise MasimError(
            f"{source}:{number}: randomness must be 1 (random) or 0 (sequential), got {fields[1]!r}"
        )
    stride = _integer(fields[2], "stride (bytes)", source, number)
    weight = _integer(fields[3], "weight", source, number)
    rw = fields[4] if len(fields) == 5 else DEFAULT_RW
    with _located(source, number):
        return MasimAccess(region, fields[1] == "1", stride, weight, rw)


def _integer(text: str, what: str, source: str, line: int) -> int:
    if not _INT.match(text):
        raise MasimError(f"{source}:{line}: {what} must be an integer, got {text!r}")
    return int(text)


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name.strip() or "\n" in name or name.startswith("#"):
        raise MasimError(f"{what} must be a non-empty line not starting with '#', got {name!r}")


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
        raise MasimError(f"page_size must be a positive integer, got {page_size!r}")


def _touched_pages(region: MasimRegion, access: MasimAccess, page_size: int) -> np.ndarray:
    """Indices (within the region) of the pages an access line touches."""
    n_pages = region.n_pages(page_size)
    if access.random or access.stride_bytes <= page_size:
        return np.arange(n_pages)
    addresses = np.arange(0, region.size_bytes, access.stride_bytes, dtype=np.int64)
    return np.unique(addresses // page_size)
