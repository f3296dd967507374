"""Sizes written for people ("16 GiB", "512 MiB", 4096) read into bytes."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object, what: str = "size") -> int:
    """Bytes from an int or a string such as "16 GiB" (binary units) or "2 GB" (decimal).

    Raises ValueError naming ``what`` and the value when it is not a size."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a size such as 4096 or '16 GiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}: a size cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match and match.group(2).lower() in _UNITS:
            number, unit = match.groups()
            size = float(number) * _UNITS[unit.lower()]
            if size == int(size):
                return int(size)
            raise ValueError(f"{what}: {value!r} is not a whole number of bytes")
    raise ValueError(
        f"{what}: expected a size such as 4096 or '16 GiB' (units B, KiB, MiB, GiB, TiB, "
        f"KB, MB, GB, TB), got {value!r}"
    )


def format_size(size: int) -> str:
    """The largest binary unit that keeps the number whole: 17179869184 -> '16 GiB'."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"
