"""Memory node profiles: idle latency, saturation bandwidth by mix, loaded-latency curve.

Profiles are TOML files. The shipped ones live in ``tierenv/hardware/profiles/`` and are found
by name; any other profile is loaded by path. Schema (all bandwidths GB/s = 1e9 B/s, all
latencies ns, read fractions at the memory controller)::

    name = "bytedance-cxl-asic"
    kind = "cxl"                      # ddr | cxl | remote-ddr | remote-cxl
    description = "..."
    idle_latency_ns = 250.4

    [bandwidth]                       # see tierenv.hardware.bandwidth
    media_gbps = 54.7
    write_penalty = 0.0
    read_link_gbps = 48.0             # optional
    write_link_gbps = 47.0            # optional

    [latency]
    form = "parametric"               # or "piecewise"
    [[latency.mixes]]                 # parametric: one entry per fitted mix
    read_fraction = 1.0
    a_ns = 30.1
    exponent = 0.45
    headroom = 1.04
    # piecewise instead: read_fraction, bandwidth_gbps = [...], latency_ns = [...]

    [link]                            # optional, remote views only (kind remote-*)
    write_idle_ns = 295.0             # idle latency added per unit write share (capped at 0.5)
    rise_ns = 40.9                    # early rise of the socket link's queueing ...
    rise_gbps = 4.86                  # ... half of it at this traffic in the busier direction

    [provenance]                      # free-form strings: source, method, command, notes

The kind sets how capacity is fitted (``ddr`` and ``remote-ddr``: a bus with a write penalty;
``cxl`` and ``remote-cxl``: read/write links and media). A *remote view* is a node measured
from another socket's cores; its ``[link]`` table (see ``tierenv.hardware.curves.SocketLink``)
adds the socket link's mix-dependent idle latency and early rise to the curve, and
``idle_latency_ns`` is then the read-only idle. Profiles without ``[link]`` are unchanged.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from tierenv.files import write_text_atomically
from tierenv.hardware.bandwidth import SaturationBandwidth
from tierenv.hardware.curves import (
    LINK_FIELDS,
    LatencyCurve,
    ParametricCurve,
    PiecewiseCurve,
    SocketLink,
    load_through_link,
)

NODE_KINDS = ("ddr", "cxl", "remote-ddr", "remote-cxl")
# The fields a profile may have, by table: any other key is refused (a typo would silently
# fall back to a default or be ignored). ``[provenance]`` is free-form.
TOP_FIELDS = (
    "name",
    "kind",
    "description",
    "idle_latency_ns",
    "bandwidth",
    "latency",
    "link",
    "provenance",
)
BANDWIDTH_FIELDS = ("media_gbps", "write_penalty", "read_link_gbps", "write_link_gbps")
LATENCY_FIELDS = ("form", "mixes")
MIX_FIELDS = {
    "parametric": ("read_fraction", "a_ns", "exponent", "headroom"),
    "piecewise": ("read_fraction", "bandwidth_gbps", "latency_ns"),
}
REMOTE_KINDS = ("remote-ddr", "remote-cxl")
PROFILE_SUFFIX = ".toml"


class ProfileError(ValueError):
    """A profile file or profile name is unusable; the message names the file and field."""


@dataclass(frozen=True)
class NodeProfile:
    """One memory node as the throughput model sees it."""

    name: str
    kind: str
    idle_latency_ns: float
    bandwidth: SaturationBandwidth
    latency: LatencyCurve
    description: str = ""
    provenance: dict[str, str] = field(default_factory=dict)
    link: SocketLink | None = None  # the socket link of a remote view (None: a local node)

    def __post_init__(self) -> None:
        if self.kind not in NODE_KINDS:
            raise ValueError(f"kind must be one of {NODE_KINDS}, got {self.kind!r}")
        value = self.idle_latency_ns
        if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
            raise ValueError(f"idle_latency_ns must be a positive number, got {value!r}")
        if self.link is not None:
            if self.kind not in REMOTE_KINDS:
                raise ValueError(
                    f"a socket link belongs to a remote view (kind {' or '.join(REMOTE_KINDS)}),"
                    f" not to kind {self.kind!r}"
                )
            if not isinstance(self.latency, ParametricCurve):
                raise ValueError("a remote view's link needs the parametric latency form")

    def saturation_gbps(self, read_fraction: np.ndarray | float = 1.0) -> np.ndarray:
        """Peak bandwidth at a read fraction."""
        return self.bandwidth(read_fraction)

    def latency_ns(
        self, bandwidth_gbps: np.ndarray | float, read_fraction: np.ndarray | float = 1.0
    ) -> np.ndarray:
        """Open-loop latency at an offered bandwidth; inf beyond the node's capacity."""
        bandwidth = np.asarray(bandwidth_gbps, dtype=float)
        load = bandwidth / self.saturation_gbps(read_fraction)
        r = np.broadcast_to(np.asarray(read_fraction, dtype=float), load.shape)
        excess = self.latency.excess_ns(load, r)
        if self.link is not None:
            # With no traffic there is no mix: an idle remote view has its read-only idle
            # latency (as the solver reports an unused node); a mix's offset applies as soon
            # as there is traffic (MLC's lightest rows show it in full).
            offset = np.where(bandwidth > 0, self.link.offset_ns(r), 0.0)
            excess = excess + offset + self.link.rise_at(bandwidth, r)
        return self.idle_latency_ns + excess

    def served_gbps(
        self, latency_ns: np.ndarray | float, read_fraction: np.ndarray | float = 1.0
    ) -> np.ndarray:
        """Bandwidth the node serves when its latency is ``latency_ns`` (inverse of latency_ns)."""
        latency = np.asarray(latency_ns, dtype=float)
        r = np.broadcast_to(np.asarray(read_fraction, dtype=float), latency.shape)
        load, _, _ = self.load_at(latency - self.idle_latency_ns, r)
        return load * self.saturation_gbps(r)

    def load_at(
        self, excess_ns: np.ndarray, read_fraction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Served load ρ at excess latency E over idle, dρ/dE and ∫_0^E ρ (what the solver uses)."""
        if self.link is None:
            return self.latency.load_at(excess_ns, read_fraction)
        excess = np.asarray(excess_ns, dtype=float)
        r = np.broadcast_to(np.asarray(read_fraction, dtype=float), excess.shape)
        clipped = np.clip(r, 0.0, 1.0)
        link = self.link
        return load_through_link(
            excess,
            link.offset_ns(r),
            link.rise_ns,
            link.rise_gbps,
            np.maximum(clipped, 1.0 - clipped) * self.saturation_gbps(clipped),
            lambda e: self.latency.load_at(e, r),
        )

    def scaled(self, bandwidth_factor: float, name: str | None = None) -> NodeProfile:
        """The same node with every bandwidth multiplied (e.g. half of a socket's channels).

        Latency curves are in units of load, so they keep their shape; a remote view's link
        scales with it (its early rise stays at the same share of the capacity).
        """
        if not (np.isfinite(bandwidth_factor) and bandwidth_factor > 0):
            raise ValueError(f"bandwidth_factor must be positive, got {bandwidth_factor!r}")
        bw = self.bandwidth

        def scale(value: float | None) -> float | None:
            return None if value is None else value * bandwidth_factor

        return replace(
            self,
            name=name or f"{self.name}*{bandwidth_factor:g}",
            bandwidth=SaturationBandwidth(
                media_gbps=bw.media_gbps * bandwidth_factor,
                write_penalty=bw.write_penalty,
                read_link_gbps=scale(bw.read_link_gbps),
                write_link_gbps=scale(bw.write_link_gbps),
            ),
            link=None if self.link is None else self.link.scaled(bandwidth_factor),
        )

    def to_dict(self) -> dict[str, Any]:
        if isinstance(self.latency, PiecewiseCurve):
            latency: dict[str, Any] = {"form": "piecewise", "mixes": []}
            for r, loads, excess in zip(
                self.latency.read_fraction, self.latency.loads, self.latency.excess, strict=True
            ):
                peak = float(self.saturation_gbps(r))
                latency["mixes"].append(
                    {
                        "read_fraction": float(r),
                        "bandwidth_gbps": [round(float(x) * peak, 6) for x in loads[1:]],
                        "latency_ns": [
                            round(float(e) + self.idle_latency_ns, 6) for e in excess[1:]
                        ],
                    }
                )
        elif isinstance(self.latency, ParametricCurve):
            latency = self.latency.to_dict()
        else:
            raise TypeError(f"cannot write a {type(self.latency).__name__} latency curve")
        out = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "idle_latency_ns": float(self.idle_latency_ns),
            "bandwidth": self.bandwidth.to_dict(),
            "latency": latency,
        }
        if self.link is not None:  # only remote views have the table: local files are unchanged
            out["link"] = self.link.to_dict()
        out["provenance"] = dict(self.provenance)
        return out

    def save(self, path: str | Path) -> None:
        """Write the profile as TOML, atomically (a failed write leaves the old file)."""
        write_text_atomically(Path(path), tomli_w.dumps(_rounded(self.to_dict())))


def profile_from_dict(
    data: dict[str, Any], source: str = "<profile>", text: str | None = None
) -> NodeProfile:
    """Build a profile from parsed TOML, naming ``source`` and the field in every error (and
    the line of an unknown key when the file's ``text`` is given)."""
    fields = _Fields(source, text)
    fields.unknown(data, "", TOP_FIELDS)
    for key in ("name", "kind"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise fields.fail(key, "missing or not a string")
    if data["kind"] not in NODE_KINDS:
        raise fields.fail("kind", f"must be one of {', '.join(NODE_KINDS)}, got {data['kind']!r}")
    idle = fields.number(data, "idle_latency_ns", "")
    if idle == 0:
        raise fields.fail("idle_latency_ns", "must be positive")
    bandwidth = _bandwidth_from_table(data, fields)
    form, mixes = _latency_mixes(data, fields)
    curve = _curve_from_mixes(form, mixes, idle, bandwidth, fields)
    if isinstance(data.get("link"), dict):
        fields.unknown(data["link"], "link.", LINK_FIELDS)
    link = _link_from_table(data, form, fields.fail, fields.number)
    provenance = data.get("provenance", {})
    if not isinstance(provenance, dict):
        raise fields.fail("provenance", "must be a table")
    return NodeProfile(
        name=data["name"],
        kind=data["kind"],
        idle_latency_ns=idle,
        bandwidth=bandwidth,
        latency=curve,
        description=str(data.get("description", "")),
        provenance={str(k): str(v) for k, v in provenance.items()},
        link=link,
    )


@dataclass(frozen=True)
class _Fields:
    """Checks of a profile's fields; errors name ``source`` and the field (and the line of an
    unknown key when the file's ``text`` is given)."""

    source: str
    text: str | None

    def fail(self, fieldname: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.source}: field '{fieldname}': {problem}")

    def unknown(self, table: dict[str, Any], prefix: str, valid: tuple[str, ...]) -> None:
        for key in table:
            if key not in valid:
                line = None if self.text is None else _line_of(self.text, prefix, key)
                at = "" if line is None else f" at line {line}"
                raise self.fail(
                    f"{prefix}{key}", f"unknown field{at} (expected {', '.join(valid)})"
                )

    def number(self, table: dict[str, Any], key: str, prefix: str) -> float:
        """A required number >= 0."""
        if key not in table:
            raise self.fail(prefix + key, "missing")
        return self._checked(table[key], prefix + key)

    def optional_number(self, table: dict[str, Any], key: str, prefix: str) -> float | None:
        """A number >= 0, or None when the key is absent."""
        return None if key not in table else self._checked(table[key], prefix + key)

    def _checked(self, value: Any, fieldname: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise self.fail(fieldname, f"must be a number, got {value!r}")
        if value < 0:
            raise self.fail(fieldname, f"must not be negative, got {value!r}")
        return float(value)


def _bandwidth_from_table(data: dict[str, Any], fields: _Fields) -> SaturationBandwidth:
    bw_table = data.get("bandwidth")
    if not isinstance(bw_table, dict):
        raise fields.fail("bandwidth", "missing table")
    fields.unknown(bw_table, "bandwidth.", BANDWIDTH_FIELDS)
    try:
        return SaturationBandwidth(
            media_gbps=fields.number(bw_table, "media_gbps", "bandwidth."),
            write_penalty=fields.optional_number(bw_table, "write_penalty", "bandwidth.") or 0.0,
            read_link_gbps=fields.optional_number(bw_table, "read_link_gbps", "bandwidth."),
            write_link_gbps=fields.optional_number(bw_table, "write_link_gbps", "bandwidth."),
        )
    except ValueError as err:
        if isinstance(err, ProfileError):
            raise
        raise fields.fail("bandwidth", str(err)) from None


def _latency_mixes(data: dict[str, Any], fields: _Fields) -> tuple[str, list[Any]]:
    """The ``[latency]`` table's form and its mixes, each a table with known keys."""
    lat_table = data.get("latency")
    if not isinstance(lat_table, dict) or not isinstance(lat_table.get("mixes"), list):
        raise fields.fail("latency.mixes", "missing list of mixes")
    fields.unknown(lat_table, "latency.", LATENCY_FIELDS)
    mixes = lat_table["mixes"]
    if not mixes:
        raise fields.fail("latency.mixes", "empty")
    form = lat_table.get("form", "parametric")
    for index, mix in enumerate(mixes):
        _require_table(mix, f"latency.mixes[{index}]", fields.fail)
        if form in MIX_FIELDS:
            fields.unknown(mix, f"latency.mixes[{index}].", MIX_FIELDS[form])
    return form, mixes


def _curve_from_mixes(
    form: str, mixes: list[Any], idle: float, bandwidth: SaturationBandwidth, fields: _Fields
) -> LatencyCurve:
    try:
        if form == "parametric":
            return _parametric_curve(mixes, fields)
        if form == "piecewise":
            return _piecewise_curve(mixes, idle, bandwidth, fields)
        raise fields.fail("latency.form", f"must be 'parametric' or 'piecewise', got {form!r}")
    except ValueError as err:
        if isinstance(err, ProfileError):
            raise
        raise fields.fail("latency", str(err)) from None


def _parametric_curve(mixes: list[Any], fields: _Fields) -> ParametricCurve:
    columns: dict[str, list[float]] = {
        key: [] for key in ("read_fraction", "a_ns", "exponent", "headroom")
    }
    for index, mix in enumerate(mixes):
        _require_table(mix, f"latency.mixes[{index}]", fields.fail)
        for key, values in columns.items():
            values.append(fields.number(mix, key, f"latency.mixes[{index}]."))
    return ParametricCurve(**{k: np.array(v) for k, v in columns.items()})


def _piecewise_curve(
    mixes: list[Any], idle: float, bandwidth: SaturationBandwidth, fields: _Fields
) -> PiecewiseCurve:
    reads, loads, excess = [], [], []
    for index, mix in enumerate(mixes):
        _require_table(mix, f"latency.mixes[{index}]", fields.fail)
        prefix = f"latency.mixes[{index}]."
        r = fields.number(mix, "read_fraction", prefix)
        bws = _number_list(mix, "bandwidth_gbps", prefix, fields.fail)
        lats = _number_list(mix, "latency_ns", prefix, fields.fail)
        if len(bws) != len(lats):
            raise fields.fail(prefix + "latency_ns", "needs as many entries as bandwidth_gbps")
        reads.append(r)
        loads.append(np.array(bws) / float(bandwidth(r)))
        excess.append(np.array(lats) - idle)
    return PiecewiseCurve(np.array(reads), tuple(loads), tuple(excess))


def _link_from_table(data: dict[str, Any], form: str, fail, number) -> SocketLink | None:
    """The ``[link]`` table of a remote view, checked field by field (None if absent)."""
    if "link" not in data:
        return None
    table = data["link"]
    if not isinstance(table, dict):
        raise fail("link", f"must be a table, got {table!r}")
    if data["kind"] not in REMOTE_KINDS:
        raise fail(
            "link",
            f"a socket link belongs to a remote view (kind {' or '.join(REMOTE_KINDS)}), "
            f"not to kind {data['kind']!r}",
        )
    if form != "parametric":
        raise fail("link", f"a remote view needs latency.form = 'parametric', got {form!r}")
    values = {key: number(table, key, "link.") for key in LINK_FIELDS}
    if values["rise_gbps"] == 0:
        raise fail("link.rise_gbps", "must be positive")
    return SocketLink(**values)


def _line_of(text: str, prefix: str, key: str) -> int | None:
    """The line of ``key`` in the TOML table ``prefix`` (``"bandwidth."``; ``""`` is the top;
    mixes may be inline tables under ``[latency]`` or ``[[latency.mixes]]``), or None when it
    is spelled in a way this simple scan does not follow (dotted keys, multi-line strings)."""
    table = prefix.split("[")[0].rstrip(".")
    tables = {table, "latency"} if table == "latency.mixes" else {table}
    quoted = re.escape(key)
    pattern = re.compile(rf"(?:^|[{{,])\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*=")
    header = ""
    for number, line in enumerate(text.splitlines(), 1):
        # a header, not the continuation of an array value such as "  [1.0, 2.0],"
        match = re.match(r"\s*\[\[?\s*([A-Za-z_\"'][\w.\-\"' ]*?)\s*\]\]?\s*(?:#.*)?$", line)
        if match:
            header = re.sub(r"\s", "", match.group(1))
        elif header in tables and pattern.search(line):
            return number
    return None


def _require_table(value: Any, fieldname: str, fail) -> None:
    if not isinstance(value, dict):
        raise fail(fieldname, f"must be a table, got {value!r}")


def _number_list(table: dict[str, Any], key: str, prefix: str, fail) -> list[float]:
    values = table.get(key)
    if not isinstance(values, list) or not values:
        raise fail(prefix + key, "missing or empty list")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise fail(f"{prefix}{key}[{index}]", f"must be a number, got {value!r}")
        if value < 0:
            raise fail(f"{prefix}{key}[{index}]", f"must not be negative, got {value!r}")
    return [float(v) for v in values]


def load_profile_file(path: str | Path) -> NodeProfile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileError(f"{path}: cannot read profile: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ProfileError(
            f"{path}: not a UTF-8 text file (byte {err.object[err.start]:#04x} at offset "
            f"{err.start}); expected a TOML node profile"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: not valid TOML: {err}") from None
    return profile_from_dict(data, str(path), text)


def shipped_profile_dir() -> Path:
    return Path(str(resources.files("tierenv.hardware") / "profiles"))


def shipped_profile_names() -> list[str]:
    return sorted(p.stem for p in shipped_profile_dir().glob(f"*{PROFILE_SUFFIX}"))


def load_profile(name_or_path: str | Path) -> NodeProfile:
    """A shipped profile by name, or a profile file by path."""
    text = str(name_or_path)
    if text.endswith(PROFILE_SUFFIX) or os.sep in text or Path(text).is_file():
        return load_profile_file(text)
    candidate = shipped_profile_dir() / f"{text}{PROFILE_SUFFIX}"
    if not candidate.exists():
        known = ", ".join(shipped_profile_names())
        raise ProfileError(f"unknown profile {text!r}; shipped profiles: {known}")
    return load_profile_file(candidate)


def _rounded(value: Any) -> Any:
    """Round floats for readable files (6 significant digits is below measurement noise)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
