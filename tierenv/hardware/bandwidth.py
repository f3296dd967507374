"""Saturation bandwidth of a memory node as a function of its read/write mix.

One form covers DDR and CXL (docs/references.md#saturation-bandwidth)::

    Bsat(r) = min(read_link / r, write_link / (1 - r),
                  media * (1 - write_penalty * min(1 - r, 0.5)))

``r`` is the read fraction of the traffic at the memory controller (a store with RFO counts as
one read and one write). DDR is a half-duplex bus: writes cost turnarounds, so capacity falls
as the write share grows (``write_penalty``, no links). A CXL device sits behind a full-duplex
link with separate read and write directions, so moderately mixed traffic *raises* its usable
capacity above the read-only figure until the media behind the link binds. The write penalty
saturates at a 50 % write share because the measurements this was fitted to (Mess, MLC) do not
go beyond it; without the cap a steep fit would predict a negative capacity for pure writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WRITE_SHARE_CAP = 0.5


@dataclass(frozen=True)
class SaturationBandwidth:
    """Peak bandwidth (GB/s) a node sustains at each read fraction."""

    media_gbps: float
    write_penalty: float = 0.0
    read_link_gbps: float | None = None
    write_link_gbps: float | None = None

    def __post_init__(self) -> None:
        _require_positive("media_gbps", self.media_gbps)
        if not 0.0 <= self.write_penalty < 1.0 / WRITE_SHARE_CAP:
            raise ValueError(
                f"write_penalty must be in [0, {1.0 / WRITE_SHARE_CAP:g}), "
                f"got {self.write_penalty!r}"
            )
        for name in ("read_link_gbps", "write_link_gbps"):
            value = getattr(self, name)
            if value is not None:
                _require_positive(name, value)

    def __call__(self, read_fraction: np.ndarray | float) -> np.ndarray:
        return saturation_gbps(
            read_fraction,
            self.media_gbps,
            self.write_penalty,
            np.inf if self.read_link_gbps is None else self.read_link_gbps,
            np.inf if self.write_link_gbps is None else self.write_link_gbps,
        )

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = {
            "media_gbps": self.media_gbps,
            "write_penalty": self.write_penalty,
        }
        if self.read_link_gbps is not None:
            out["read_link_gbps"] = self.read_link_gbps
        if self.write_link_gbps is not None:
            out["write_link_gbps"] = self.write_link_gbps
        return out


def saturation_gbps(read_fraction, media, write_penalty, read_link, write_link) -> np.ndarray:
    """The capacity formula, elementwise over arrays (absent links are inf)."""
    r = np.clip(np.asarray(read_fraction, dtype=float), 0.0, 1.0)
    peak = media * (1.0 - write_penalty * np.minimum(1.0 - r, WRITE_SHARE_CAP))
    with np.errstate(divide="ignore", over="ignore"):
        peak = np.minimum(peak, read_link / r)
        return np.minimum(peak, write_link / (1.0 - r))


def _require_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
