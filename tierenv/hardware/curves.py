"""Loaded-latency curves: how a node's latency rises with the share of its capacity in use.

Curves work in normalised units so that one curve serves every read/write mix:

* ``load`` ρ = offered bandwidth / saturation bandwidth at that mix (0 idle, 1 saturated);
* ``excess`` E = latency - idle latency, in ns.

Both forms give the inverse ρ(E) with its derivative, which is what the throughput solver
needs: at a node's latency the curve says how much bandwidth the node serves. Above the
saturation point the node serves exactly its capacity whatever the latency (a closed loop then
sets the latency by Little's law, as MLC's zero-delay rows show).

A node seen from another socket (a *remote view*) adds a :class:`SocketLink` in front of the
curve: the same memory behind a socket link whose unloaded round trip lengthens with the write
share and whose queueing rises early, at light load, before the memory's own knee.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tierenv.hardware.bandwidth import WRITE_SHARE_CAP

# ns of excess latency per unit of load added to flat stretches of a piecewise curve.
MIN_EXCESS_SLOPE_NS = 1e-3


class LatencyCurve(Protocol):
    """Interface shared by the parametric and the piecewise curve."""

    @property
    def form(self) -> str:
        """Either ``parametric`` or ``piecewise`` (read-only: the curves are frozen)."""
        ...

    def excess_ns(self, load: np.ndarray, read_fraction: np.ndarray) -> np.ndarray:
        """Excess latency at load ρ (inf where the node cannot serve ρ)."""
        ...

    def load_at(
        self, excess: np.ndarray, read_fraction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Served load ρ at excess latency E, dρ/dE, and ∫_0^E ρ dE (the solver's potential)."""
        ...


def _mix_weights(read_fraction: np.ndarray, mixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the lower neighbouring mix and the weight of the upper one (clamped)."""
    if mixes.size == 1:
        zeros = np.zeros(np.shape(read_fraction))
        return zeros.astype(int), zeros
    r = np.clip(read_fraction, mixes[0], mixes[-1])
    lower = np.clip(np.searchsorted(mixes, r, side="right") - 1, 0, mixes.size - 2)
    upper_weight = (r - mixes[lower]) / (mixes[lower + 1] - mixes[lower])
    return lower, upper_weight


@dataclass(frozen=True)
class ParametricCurve:
    """E(ρ) = a · ((1 - ρ/β)^-p - 1), fitted per mix; between mixes the curves blend.

    ``a`` (ns) scales the queueing term, ``p`` shapes the knee (p = 1 is M/M/1-like) and the
    headroom β = Bmax/Bsat places the curve's asymptote relative to the measured peak: the node
    stops at ρ = 1 (its measured capacity) even when β > 1.
    """

    read_fraction: np.ndarray
    a_ns: np.ndarray
    exponent: np.ndarray
    headroom: np.ndarray
    form: str = field(default="parametric", init=False)

    def __post_init__(self) -> None:
        arrays = {
            name: np.atleast_1d(np.asarray(getattr(self, name), dtype=float))
            for name in ("read_fraction", "a_ns", "exponent", "headroom")
        }
        sizes = {a.size for a in arrays.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"parametric curve: parameter lists differ in length: {sizes}")
        order = np.argsort(arrays["read_fraction"])
        for name, values in arrays.items():
            object.__setattr__(self, name, values[order])
        _check_mixes(self.read_fraction)
        for name in ("a_ns", "exponent"):
            values = getattr(self, name)
            if not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise ValueError(
                    f"parametric curve: {name} must be positive, got {values.tolist()}"
                )
        # The curve's asymptote must lie at or beyond the node's capacity: otherwise latency
        # would diverge below the capacity the profile states.
        if not np.all(np.isfinite(self.headroom)) or np.any(self.headroom < 1.0):
            raise ValueError(
                "parametric curve: headroom (asymptote / capacity) must be at least 1, got "
                f"{self.headroom.tolist()}"
            )

    def _neighbours(self, read_fraction: np.ndarray):
        """Parameters of the measured mixes on either side of r, and the upper one's weight."""
        r = np.asarray(read_fraction, dtype=float)
        lower, weight = _mix_weights(r, self.read_fraction)
        upper = np.minimum(lower + 1, self.read_fraction.size - 1)
        params = (self.a_ns, self.exponent, self.headroom)
        return (
            tuple(values[lower] for values in params),
            tuple(values[upper] for values in params),
            np.broadcast_to(weight, r.shape),
        )

    def excess_ns(self, load: np.ndarray, read_fraction: np.ndarray) -> np.ndarray:
        rho = np.maximum(np.asarray(load, dtype=float), 0.0)
        low, high, weight = self._neighbours(np.broadcast_to(read_fraction, rho.shape))
        at_low, at_high = _excess(rho, *low), _excess(rho, *high)
        return _blended_inverse(
            rho,
            weight,
            at_low,
            at_high,
            lambda e: (
                (1 - weight) * load_of_fitted_mix(e, *low)[0]
                + weight * load_of_fitted_mix(e, *high)[0]
            ),
        )

    def load_at(
        self, excess: np.ndarray, read_fraction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ex = np.maximum(np.asarray(excess, dtype=float), 0.0)
        low, high, weight = self._neighbours(np.broadcast_to(read_fraction, ex.shape))
        # Between measured mixes the node serves, at a given latency, the blend of what it
        # serves at the two neighbouring mixes (as the piecewise curve does). Blending the
        # curves rather than their parameters keeps the result between the measurements.
        parts_low, parts_high = load_of_fitted_mix(ex, *low), load_of_fitted_mix(ex, *high)
        return tuple(
            (1 - weight) * a + weight * b for a, b in zip(parts_low, parts_high, strict=True)
        )

    def to_dict(self) -> dict:
        return {
            "form": self.form,
            "mixes": [
                {
                    "read_fraction": float(r),
                    "a_ns": float(a),
                    "exponent": float(p),
                    "headroom": float(b),
                }
                for r, a, p, b in zip(
                    self.read_fraction, self.a_ns, self.exponent, self.headroom, strict=True
                )
            ],
        }


@dataclass(frozen=True)
class PiecewiseCurve:
    """Measured points, linearly interpolated; mixes are blended linearly in r.

    ``loads[c]`` and ``excess[c]`` are the points of mix ``read_fraction[c]``, both
    non-decreasing, starting after the idle point (0, 0) which is implied.
    """

    read_fraction: np.ndarray
    loads: tuple[np.ndarray, ...]
    excess: tuple[np.ndarray, ...]
    form: str = field(default="piecewise", init=False)

    def __post_init__(self) -> None:
        r = np.atleast_1d(np.asarray(self.read_fraction, dtype=float))
        if not (len(self.loads) == len(self.excess) == r.size) or r.size == 0:
            raise ValueError("piecewise curve: need one list of loads and of excess per mix")
        order = np.argsort(r)
        object.__setattr__(self, "read_fraction", r[order])
        _check_mixes(self.read_fraction)
        loads, excess = [], []
        for index in order:
            rho = np.asarray(self.loads[index], dtype=float)
            ex = np.asarray(self.excess[index], dtype=float)
            mix = f"piecewise curve at read fraction {r[index]:g}"
            if rho.shape != ex.shape or rho.ndim != 1 or rho.size < 2:
                raise ValueError(f"{mix}: need at least two (load, latency) points of equal count")
            if not (np.all(np.isfinite(rho)) and np.all(np.isfinite(ex))):
                raise ValueError(f"{mix}: points must be finite numbers")
            if np.any(rho <= 0) or np.any(ex < 0):
                raise ValueError(f"{mix}: bandwidths must be positive and latencies >= idle")
            if np.any(np.diff(rho) <= 0) or np.any(np.diff(ex) < 0):
                raise ValueError(
                    f"{mix}: points must have increasing bandwidth and non-decreasing latency"
                )
            rho = np.concatenate([[0.0], rho])
            ex = np.concatenate([[0.0], ex])
            if rho[-1] > 1.0:
                # Points beyond the modelled capacity (a measured peak above the capacity
                # model): end the curve at capacity, interpolating the latency there.
                end = int(np.argmax(rho >= 1.0))
                at_capacity = np.interp(1.0, rho[end - 1 : end + 1], ex[end - 1 : end + 1])
                rho = np.append(rho[:end], 1.0)
                ex = np.append(ex[:end], at_capacity)
            elif rho[-1] < 1.0:
                # Measurements end a little below the modelled capacity: extend the last
                # segment's slope up to it, so the node reaches its capacity (as a parametric
                # curve does) instead of stalling short of it.
                slope = (ex[-1] - ex[-2]) / (rho[-1] - rho[-2])
                rho = np.append(rho, 1.0)
                ex = np.append(ex, ex[-1] + max(slope, MIN_EXCESS_SLOPE_NS) * (1.0 - rho[-2]))
            # Flat stretches (equal latency at rising bandwidth) would make the inverse jump;
            # a negligible minimum slope keeps it continuous for the solver.
            for index in range(1, ex.size):
                ex[index] = max(
                    ex[index], ex[index - 1] + MIN_EXCESS_SLOPE_NS * (rho[index] - rho[index - 1])
                )
            loads.append(rho)
            excess.append(ex)
        object.__setattr__(self, "loads", tuple(loads))
        object.__setattr__(self, "excess", tuple(excess))

    def _blend(
        self,
        read_fraction: np.ndarray,
        per_mix: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lower, upper_weight = _mix_weights(
            np.asarray(read_fraction, dtype=float), self.read_fraction
        )
        results = [per_mix(c) for c in range(self.read_fraction.size)]
        if len(results) == 1:
            return results[0]
        stacked = [np.stack(parts) for parts in zip(*results, strict=True)]
        pick = np.broadcast_to(lower, stacked[0].shape[1:])
        lo = [np.take_along_axis(s, pick[None], 0)[0] for s in stacked]
        hi = [np.take_along_axis(s, pick[None] + 1, 0)[0] for s in stacked]
        rho, slope, integral = (
            (1 - upper_weight) * a + upper_weight * b for a, b in zip(lo, hi, strict=True)
        )
        return rho, slope, integral

    def excess_ns(self, load: np.ndarray, read_fraction: np.ndarray) -> np.ndarray:
        rho = np.maximum(np.asarray(load, dtype=float), 0.0)
        r = np.broadcast_to(np.asarray(read_fraction, dtype=float), rho.shape)
        lower, weight = _mix_weights(r, self.read_fraction)
        upper = np.minimum(lower + 1, self.read_fraction.size - 1)
        own = np.stack(
            [np.interp(rho, xs, ys) for xs, ys in zip(self.loads, self.excess, strict=True)]
        )
        at_low = np.take_along_axis(own, np.broadcast_to(lower, rho.shape)[None], 0)[0]
        at_high = np.take_along_axis(own, np.broadcast_to(upper, rho.shape)[None], 0)[0]
        return _blended_inverse(rho, weight, at_low, at_high, lambda e: self.load_at(e, r)[0])

    def load_at(
        self, excess: np.ndarray, read_fraction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ex = np.maximum(np.asarray(excess, dtype=float), 0.0)

        def per_mix(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            xs = self.excess[c]
            ys = np.minimum(self.loads[c], 1.0)  # never more than the modelled capacity
            rho = np.interp(ex, xs, ys)
            segment = np.clip(np.searchsorted(xs, ex, side="right") - 1, 0, xs.size - 2)
            rise = np.diff(xs)
            with np.errstate(divide="ignore", invalid="ignore"):
                slopes = np.where(rise > 0, np.diff(ys) / rise, 0.0)
            beyond = ex >= xs[-1]
            slope = np.where(beyond, 0.0, slopes[segment])
            cumulative = np.concatenate([[0.0], np.cumsum(rise * (ys[1:] + ys[:-1]) / 2)])
            start = np.where(beyond, xs.size - 1, segment)
            integral = cumulative[start] + (ex - xs[start]) * (ys[start] + rho) / 2
            return rho, slope, integral

        return self._blend(np.broadcast_to(read_fraction, ex.shape), per_mix)


def _blended_inverse(rho, weight, at_low, at_high, served) -> np.ndarray:
    """The excess E where the blend of two mixes serves ρ, and inf beyond capacity.

    Blends are taken at equal latency (load_at), so the inverse is found by bisection between
    the two neighbouring mixes' own latencies for ρ, between which it lies.
    """
    exact = (weight <= 0) | (weight >= 1)
    own = np.where(weight >= 1, at_high, at_low)
    reachable = rho <= 1.0
    if np.all(exact | ~reachable):
        return np.where(reachable, own, np.inf)
    lo = np.where(np.isfinite(np.minimum(at_low, at_high)), np.minimum(at_low, at_high), 0.0)
    hi = np.maximum(at_low, at_high)
    hi = np.where(np.isfinite(hi), hi, np.maximum(lo, 1.0) * 1e6)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        short = served(mid) < rho
        lo, hi = np.where(short, mid, lo), np.where(short, hi, mid)
    return np.where(reachable, np.where(exact, own, hi), np.inf)


def _excess(rho: np.ndarray, a: np.ndarray, p: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """E(ρ) of one fitted mix; inf where the mix cannot serve ρ."""
    reachable = (rho <= 1.0) & (rho < beta)
    safe = np.where(reachable, rho / beta, 0.0)
    return np.where(reachable, a * ((1.0 - safe) ** (-p) - 1.0), np.inf)


def load_of_fitted_mix(
    excess: np.ndarray, a: np.ndarray, p: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ρ(E), dρ/dE and ∫_0^E ρ of one fitted mix, capped at ρ = 1."""
    x = np.minimum(excess / a, 1e200)  # an infinite latency serves the capacity, not NaN
    decay = (1.0 + x) ** (-1.0 / p)
    rho = beta * (1.0 - decay)
    slope = beta / (a * p) * decay / (1.0 + x)
    # Beyond the knee x_k (only when β > 1) the node serves exactly its capacity.
    with np.errstate(divide="ignore"):
        knee = np.where(beta > 1.0, (1.0 - 1.0 / np.maximum(beta, 1.0)) ** (-p) - 1.0, np.inf)
    saturated = x >= knee
    below = np.minimum(x, knee)
    integral = a * (beta * (below - _power_integral(below, 1.0 / p)) + np.maximum(x - knee, 0.0))
    return np.where(saturated, 1.0, rho), np.where(saturated, 0.0, slope), integral


def _power_integral(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """∫_0^x (1+t)^-q dt, stable for q near 1 and for large q."""
    one_minus_q = 1.0 - q
    log_term = np.log1p(x)
    near_one = np.abs(one_minus_q) < 1e-8
    safe = np.where(near_one, 1.0, one_minus_q)
    return np.where(near_one, log_term, np.expm1(safe * log_term) / safe)


def _check_mixes(read_fraction: np.ndarray) -> None:
    if np.any((read_fraction < 0) | (read_fraction > 1)) or not np.all(np.isfinite(read_fraction)):
        raise ValueError(f"read fractions must lie in [0, 1], got {read_fraction.tolist()}")
    if np.any(np.diff(read_fraction) <= 0):
        raise ValueError(
            f"read fractions of a curve must be distinct, got {read_fraction.tolist()}"
        )


# --- Remote views: the socket link in front of a node -------------------------------------------

LINK_FIELDS = ("write_idle_ns", "rise_ns", "rise_gbps")
# Newton steps (bisection where a step leaves the bracket) that invert a remote view's curve,
# at most; a step below LINK_STEP_TOLERANCE times the excess (ns, at least 1 ns) ends them.
LINK_MAX_STEPS = 100
LINK_STEP_TOLERANCE = 1e-13


@dataclass(frozen=True)
class SocketLink:
    """The socket link between the requesting cores and a node: what makes a remote view.

    Excess latency over the node's idle (read-only) latency at offered bandwidth B and read
    fraction r is ``offset(r) + rise(x) + E_memory(B / Bsat(r), r)`` with:

    * ``offset(r) = write_idle_ns · min(1 - r, 0.5)``: the link's request/response asymmetry.
      A read crosses with a small request and returns data; a write (with its ownership
      exchange) sends its data on the request direction and waits for the home's answer, so
      the unloaded round trip grows with the write share (capped where measurements end, as
      the capacity's write penalty is). It applies to a node that carries traffic: with none
      there is no mix, and the node sits at its read-only idle latency.
    * ``rise(x) = rise_ns · x² / (x² + rise_gbps²)``: the link's early queueing. ``x`` is the
      traffic of the link's busier data direction, ``max(r, 1 - r) · B`` (reads return their
      data, writes send theirs). The excess appears at light load and levels off at
      ``rise_ns`` once the link is steadily busy (half of it at ``x = rise_gbps``), long
      before the memory's own knee.

    The memory's own queueing ``E_memory`` is the node's latency curve, per mix as for a local
    node.
    """

    write_idle_ns: float = 0.0
    rise_ns: float = 0.0
    rise_gbps: float = 1.0

    def __post_init__(self) -> None:
        for name in LINK_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"link.{name} must be a number, got {value!r}")
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"link.{name} must be a finite number >= 0, got {value!r}")
        if self.rise_gbps <= 0:
            raise ValueError(f"link.rise_gbps must be positive, got {self.rise_gbps!r}")

    def offset_ns(self, read_fraction: np.ndarray | float) -> np.ndarray:
        """Idle latency added by the mix (0 for reads only)."""
        return link_offset(read_fraction, self.write_idle_ns)

    def rise_at(self, bandwidth_gbps: np.ndarray, read_fraction: np.ndarray) -> np.ndarray:
        """Early-rise excess at offered bandwidth B (GB/s) and read fraction r."""
        r = np.clip(np.asarray(read_fraction, dtype=float), 0.0, 1.0)
        traffic = np.maximum(r, 1.0 - r) * np.maximum(np.asarray(bandwidth_gbps, float), 0.0)
        return link_rise(traffic, self.rise_ns, self.rise_gbps)[0]

    def scaled(self, bandwidth_factor: float) -> SocketLink:
        return SocketLink(self.write_idle_ns, self.rise_ns, self.rise_gbps * bandwidth_factor)

    def to_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in LINK_FIELDS}


def link_offset(read_fraction, write_idle_ns) -> np.ndarray:
    r = np.clip(np.asarray(read_fraction, dtype=float), 0.0, 1.0)
    return write_idle_ns * np.minimum(1.0 - r, WRITE_SHARE_CAP)


def link_rise(traffic, rise_ns, rise_gbps) -> tuple[np.ndarray, np.ndarray]:
    """rise(x) and d rise / dx at link traffic x (GB/s)."""
    x2 = traffic * traffic
    b2 = rise_gbps * rise_gbps
    denominator = x2 + b2
    return rise_ns * x2 / denominator, rise_ns * 2.0 * traffic * b2 / (denominator * denominator)


def load_through_link(
    excess: np.ndarray,
    offset: np.ndarray,
    rise_ns: np.ndarray | float,
    rise_gbps: np.ndarray | float,
    traffic_per_load: np.ndarray,
    memory_load_at,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ρ(E), dρ/dE and ∫_0^E ρ of a remote view, at a fixed read fraction.

    ``traffic_per_load`` is the link traffic per unit load, ``max(r, 1 - r) · Bsat(r)``;
    ``memory_load_at(E)`` is the memory curve's (ρ, dρ/dE, ∫ρ) at the same mix. The excess
    splits into the offset, the link's rise and the memory's own excess m, which solves
    ``m + rise(ρ_memory(m)) = E - offset``: the left side rises with m, so the root is unique
    in [0, E - offset]; safeguarded Newton finds it (bisection where a step leaves the
    bracket; a step below the tolerance ends it). Then ρ = ρ_memory(m), and the potential
    follows by parts: ``∫_0^E ρ = ∫_0^m ρ_memory + ρ·rise(ρ) - ∫_0^ρ rise``.
    ``solver_jit._through_link`` is the same computation for one node, compiled.
    """
    above = np.asarray(excess, float) - offset
    head = np.maximum(above, 0.0)
    tolerance = LINK_STEP_TOLERANCE * np.maximum(head, 1.0)
    lo = np.zeros_like(head)
    hi = head.copy()
    memory = head.copy()
    active = head > 0
    for _ in range(LINK_MAX_STEPS):
        rho, slope, _ = memory_load_at(memory)
        rise, rise_slope = link_rise(traffic_per_load * rho, rise_ns, rise_gbps)
        gap = memory + rise - head
        active &= gap != 0
        hi = np.where(active & (gap > 0), memory, hi)
        lo = np.where(active & (gap < 0), memory, lo)
        step = gap / (1.0 + rise_slope * traffic_per_load * slope)
        newton = memory - step
        small = np.abs(step) <= tolerance
        inside = small | ((newton > lo) & (newton < hi))
        proposal = np.where(inside, newton, 0.5 * (lo + hi))
        moved = np.abs(proposal - memory)
        memory = np.where(active, np.clip(proposal, 0.0, head), memory)
        active &= ~small & (moved > tolerance)
        if not active.any():
            break
    rho, slope, integral = memory_load_at(memory)
    traffic = traffic_per_load * rho
    rise, rise_slope = link_rise(traffic, rise_ns, rise_gbps)
    # Below the offset the view serves nothing, flat: no slope there (the right-hand slope
    # would tell Newton that the node takes load it does not). At the offset itself, as at
    # a local node's idle latency, the slope is the right-hand one.
    loaded = above >= 0
    rho_slope = np.where(loaded, slope / (1.0 + slope * rise_slope * traffic_per_load), 0.0)
    integral = integral + _rise_complement(rho, traffic, rise_ns, rise_gbps, traffic_per_load)
    return np.where(loaded, rho, 0.0), rho_slope, np.where(loaded, integral, 0.0)


def _rise_complement(rho, traffic, rise_ns, rise_gbps, traffic_per_load) -> np.ndarray:
    """ρ·rise(ρ) - ∫_0^ρ rise(s) ds for rise = c·x²/(x² + b²), x = k·s (k = traffic per load)."""
    per_load = np.where(traffic_per_load > 0, traffic_per_load, 1.0)
    b2 = rise_gbps * rise_gbps
    return rise_ns * (
        rise_gbps / per_load * np.arctan(traffic / rise_gbps) - rho * b2 / (traffic * traffic + b2)
    )
