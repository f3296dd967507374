"""Fit node profiles to measured loaded-latency curves (MLC, Mess).

Per measured curve, the open-loop rising branch (idle up to the first point at >= 98 % of the
peak) is fitted with the p-form (docs/references.md#latency-curve-form)::

    L(B) = L0 + a · ((1 - B/Bmax)^-p - 1)

which fits these curves to a few ns where the M/M/1 form (p = 1) does not. Residuals are
relative and pass through a soft-L1 loss, so one noisy point near the knee cannot drag the
fit; the starting point is chosen from a small grid, so the fit does not depend on luck.

A profile joins the curves of one node: one idle latency (median of the per-curve fits, or an
anchor given by the user), a saturation-bandwidth model fitted to the per-mix peaks, and one
latency curve per mix, refitted with the shared idle latency.

A *remote view* (``link=True``: a node measured from another socket's cores) is fitted as one
model over all its mixes: the read-only idle latency, the socket link's terms shared by every
mix (idle latency per unit write share, early rise; see ``curves.SocketLink``) and one memory
curve per mix. With a single write share in the data the write-share term cannot be told
from the idle latency; it is then left at zero (the simplest model the data support).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from tierenv.hardware.bandwidth import WRITE_SHARE_CAP, SaturationBandwidth
from tierenv.hardware.curves import (
    LatencyCurve,
    ParametricCurve,
    PiecewiseCurve,
    SocketLink,
    link_rise,
)
from tierenv.hardware.measurements import MeasuredCurve
from tierenv.hardware.profile import REMOTE_KINDS, NodeProfile

RISING_FRACTION = 0.98
UNLOADED_SHARE = 0.5  # the lightest point of a usable sweep carries less of the peak than this
CXL_LINK_ONLY_TOLERANCE = 0.03  # log-error up to which links alone explain a CXL device
DEFAULT_WRITE_PENALTY = 0.3  # used with one mix (docs/references.md#ddr-write-penalty)
LINK_CAPACITY_KINDS = ("cxl", "remote-cxl")  # capacity from read/write links and media
# Physical range of an anchored idle latency, ns: no DRAM answers a load in under 20 ns (tRCD +
# CL alone take about 28 ns), and memory beyond 2 us is no load/store tier (CXL behind two
# switch levels is under 1 us). Outside it, the shifted curves make every error look like 0 %.
IDLE_ANCHOR_RANGE_NS = (20.0, 2000.0)


@dataclass(frozen=True)
class CurveFit:
    """Parameters of the p-form for one mix, and how well they fit."""

    idle_latency_ns: float
    a_ns: float
    exponent: float
    bmax_gbps: float

    def latency_ns(self, bandwidth_gbps: np.ndarray) -> np.ndarray:
        load = np.minimum(np.asarray(bandwidth_gbps, float) / self.bmax_gbps, 1 - 1e-12)
        return self.idle_latency_ns + self.a_ns * ((1.0 - load) ** (-self.exponent) - 1.0)


@dataclass(frozen=True)
class CurveReport:
    """How the fitted profile reproduces one measured curve's rising branch."""

    curve: MeasuredCurve
    rising: MeasuredCurve
    model_latency_ns: np.ndarray  # the profile's latency at each rising-branch point

    @property
    def relative_error(self) -> np.ndarray:
        return (self.model_latency_ns - self.rising.latency_ns) / self.rising.latency_ns

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.relative_error)))

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.relative_error)))


@dataclass(frozen=True)
class ProfileFit:
    profile: NodeProfile
    reports: list[CurveReport] = field(default_factory=list)


def fit_curve(
    curve: MeasuredCurve,
    idle_latency_ns: float | None = None,
    min_bmax_gbps: float = 0.0,
    rising_only: bool = False,
) -> CurveFit:
    """Fit the p-form to a curve's rising branch; ``idle_latency_ns`` fixes L0 if given.

    The asymptote Bmax lies between the measured peak (or ``min_bmax_gbps``, the modelled
    capacity, if higher) and 1.5 times it (docs/references.md#curve-fit-bounds): a fit may not
    wander off to a nearly straight line that ignores the knee. ``rising_only``: ``curve``
    holds rising-branch points already (see ``_merged``); cutting it again would drop its top
    points.
    """
    if rising_only:
        rising = curve
    else:
        _require_unloaded_rows(curve)
        rising = curve.rising_branch(RISING_FRACTION)
    bw, lat = rising.bandwidth_gbps, rising.latency_ns
    peak = max(float(bw.max()), min_bmax_gbps)
    lightest = float(lat[0])
    fixed_idle = idle_latency_ns is not None

    def unpack(x: np.ndarray) -> CurveFit:
        if idle_latency_ns is not None:  # fixed_idle
            a, p, bmax = x
            idle = float(idle_latency_ns)
        else:
            idle, a, p, bmax = x
        return CurveFit(float(idle), float(a), float(p), float(bmax))

    def residuals(x: np.ndarray) -> np.ndarray:
        return (unpack(x).latency_ns(bw) - lat) / lat

    rise = max(float(lat.max() - lightest), 1.0)
    lower = [1e-3, 0.02, peak * (1 + 1e-6)]
    upper = [50.0 * rise + 1e3, 8.0, peak * 1.5]
    if not fixed_idle:
        # The lightest-load row already carries some traffic, so the idle latency lies at or a
        # little below it (MLC's 20000-delay row reads 1-5 ns above --idle_latency).
        lower.insert(0, 0.8 * lightest)
        upper.insert(0, 1.01 * lightest)
    best = None
    for exponent in (0.15, 0.5, 1.0, 2.0):
        for headroom in (1.005, 1.05, 1.3):
            bmax = peak * headroom
            # a that makes the start pass through the highest rising point
            shape = (1 - min(peak / bmax, 0.999)) ** (-exponent) - 1
            start = [max(rise / shape, 1e-2), exponent, bmax]
            if not fixed_idle:
                start.insert(0, lightest)
            start = np.clip(start, np.array(lower) * 1.0001, np.array(upper) * 0.9999)
            result = least_squares(
                residuals, start, bounds=(lower, upper), loss="soft_l1", f_scale=0.02
            )
            # Keep the start whose fit has the smallest median error (what a fit is judged
            # on), breaking ties by the robust cost.
            score = (float(np.median(np.abs(result.fun))), result.cost)
            if best is None or score < best[0]:
                best = (score, result.x)
    assert best is not None  # the loops above always run
    return unpack(best[1])


def _require_unloaded_rows(curve: MeasuredCurve) -> None:
    # A loaded-latency sweep runs from a near-idle point to saturation; a curve whose
    # lightest point already carries half the peak lost its unloaded rows (a truncated log
    # or a single-delay run) and cannot anchor the idle latency.
    if curve.bandwidth_gbps[0] >= UNLOADED_SHARE * curve.peak_gbps():
        raise ValueError(
            f"{curve.source}: no lightly loaded points (the lightest carries "
            f"{100 * curve.bandwidth_gbps[0] / curve.peak_gbps():.0f}% of the peak): a "
            "truncated log or a single-delay run; calibration needs the whole sweep"
        )


def fit_saturation(kind: str, read_fractions: np.ndarray, peaks: np.ndarray) -> SaturationBandwidth:
    """Fit the saturation-bandwidth model to per-mix peak bandwidths (log-space least squares)."""
    r = np.asarray(read_fractions, float)
    peaks = np.asarray(peaks, float)
    write_share = np.minimum(1 - r, WRITE_SHARE_CAP)
    if kind not in LINK_CAPACITY_KINDS:
        if np.unique(np.round(write_share, 6)).size < 2:
            media = float(np.max(peaks / (1 - DEFAULT_WRITE_PENALTY * write_share)))
            return SaturationBandwidth(media_gbps=media, write_penalty=DEFAULT_WRITE_PENALTY)

        def ddr_residuals(x: np.ndarray) -> np.ndarray:
            return np.log(x[0] * (1 - x[1] * write_share)) - np.log(peaks)

        start = [float(peaks.max()), 0.3]
        fit = least_squares(ddr_residuals, start, bounds=([1e-3, 0.0], [1e5, 1.95]))
        return SaturationBandwidth(media_gbps=float(fit.x[0]), write_penalty=float(fit.x[1]))

    top = float(peaks.max())
    # A link cannot be narrower than the traffic measured through it in one direction.
    read_floor = max(float(np.max(peaks * r)), 1e-3)
    write_floor = max(float(np.max(peaks * (1 - r))), 1e-3)

    def fit_with(read_link: bool, write_link: bool, penalty: bool):
        """Least squares of log capacity with only the named terms in the model."""

        def model(x: np.ndarray) -> np.ndarray:
            media, kw, read_cap, write_cap = x
            terms = [media * (1 - kw * write_share)]
            with np.errstate(divide="ignore"):
                if read_link:
                    terms.append(read_cap / r)
                if write_link:
                    terms.append(write_cap / (1 - r))
            return np.minimum.reduce(terms)

        lower = [1e-3, 0.0, read_floor, write_floor]
        upper = [1e5, 1.95 if penalty else 1e-12, 1e5, 1e5]
        start = np.clip([top, 0.0, read_floor, write_floor], lower, upper)
        start = np.maximum(start, np.array(lower) * 1.000001)
        start = np.minimum(start, np.array(upper) * 0.999999 + 1e-300)

        def log_errors(x: np.ndarray) -> np.ndarray:
            return np.log(model(x)) - np.log(peaks)

        fit = least_squares(log_errors, start, bounds=(lower, upper))
        return fit, float(np.max(np.abs(fit.fun)))

    # The simplest model that explains the measured peaks to within CXL_LINK_ONLY_TOLERANCE:
    # media alone, then one link, then both links (the physical picture of a CXL device,
    # docs/references.md#saturation-bandwidth), and only if none fits, a media write penalty
    # as well. A link the data do not need would extrapolate wildly to mixes nobody measured.
    candidates = [(False, False), (True, False), (False, True), (True, True)]
    chosen = None
    for links in candidates:
        fit, worst = fit_with(*links, penalty=False)
        if worst <= CXL_LINK_ONLY_TOLERANCE and (chosen is None or sum(links) < sum(chosen[0])):
            chosen = (links, fit)
        if chosen is not None and sum(links) > sum(chosen[0]):
            break
    if chosen is None:
        chosen = ((True, True), fit_with(True, True, penalty=True)[0])
    (read_link, write_link), fit = chosen
    media, penalty, read_cap, write_cap = (float(v) for v in fit.x)
    return SaturationBandwidth(
        media_gbps=media,
        write_penalty=penalty if penalty > 1e-9 else 0.0,
        read_link_gbps=read_cap if read_link else None,
        write_link_gbps=write_cap if write_link else None,
    )


def fit_profile(
    curves: Sequence[MeasuredCurve],
    name: str,
    kind: str,
    form: str = "parametric",
    idle_latency_ns: float | None = None,
    description: str = "",
    provenance: dict[str, str] | None = None,
    link: bool = False,
) -> ProfileFit:
    """Fit one node's profile to its measured curves (one or more read/write mixes).

    ``idle_latency_ns`` anchors the idle latency (within ``IDLE_ANCHOR_RANGE_NS``): curves
    whose latency excludes the on-chip path (Mess-simulator device curves) are shifted up to
    it, keeping their shape. A curve given twice is refused.
    ``link`` fits a remote view (kind remote-ddr or remote-cxl): the node as measured from
    another socket's cores, behind the socket link (see the module docstring).
    """
    if not curves:
        raise ValueError("fit_profile needs at least one measured curve")
    low, high = IDLE_ANCHOR_RANGE_NS
    if idle_latency_ns is not None and not low <= idle_latency_ns <= high:  # NaN fails too
        raise ValueError(
            f"idle_latency_ns (--idle-latency-ns) {idle_latency_ns:g} is outside the physical "
            f"range {low:g}..{high:g} ns of a memory node's idle latency"
        )
    curves = list(curves)
    _refuse_duplicates(curves)
    if link:
        if kind not in REMOTE_KINDS:
            raise ValueError(
                f"a socket link is fitted for remote views (kind {' or '.join(REMOTE_KINDS)}), "
                f"not for kind {kind!r}"
            )
        if form != "parametric":
            raise ValueError(
                f"a remote view is fitted in the parametric form (its link terms are "
                f"parametric), not {form!r}"
            )
        if idle_latency_ns is not None:
            raise ValueError(
                "idle_latency_ns (--idle-latency-ns) anchors device-side curves; a remote view "
                "is measured from the cores (MLC), so its idle latency comes from the logs"
            )
        profile = _fit_remote_view(curves, name, kind, description, dict(provenance or {}))
        return ProfileFit(profile, [report_curve(profile, c) for c in curves])
    if idle_latency_ns is not None:
        measured_idle = float(np.median([fit_curve(c).idle_latency_ns for c in curves]))
        shift = idle_latency_ns - measured_idle
        lowest = min(float(c.latency_ns.min()) for c in curves)
        if lowest + shift <= 0:
            raise ValueError(
                f"idle_latency_ns (--idle-latency-ns) {idle_latency_ns:g} is below what the "
                f"curves allow: shifting them by {shift:g} ns makes a latency negative"
            )
        curves = [_shifted(c, shift) for c in curves]
        idle = float(idle_latency_ns)
    else:
        idle = float(np.median([fit_curve(c).idle_latency_ns for c in curves]))

    groups = _group_by_mix(curves)
    mixes = np.array(sorted(groups))
    peaks = np.array([max(c.peak_gbps() for c in groups[r]) for r in mixes])
    bandwidth = fit_saturation(kind, mixes, peaks)

    if form == "parametric":
        params = []
        for r in mixes:
            capacity = float(bandwidth(r))
            fit = fit_curve(
                _merged(groups[r]), idle_latency_ns=idle, min_bmax_gbps=capacity, rising_only=True
            )
            headroom = max(fit.bmax_gbps / capacity, 1.0)
            params.append((r, fit.a_ns, fit.exponent, headroom))
        columns = np.array(params).T
        latency: LatencyCurve = ParametricCurve(*columns)
    elif form == "piecewise":
        loads, excess = [], []
        for r in mixes:
            rising = _merged(groups[r])
            bw, lat = _monotone_points(rising.bandwidth_gbps, rising.latency_ns, idle)
            loads.append(bw / float(bandwidth(r)))
            excess.append(lat - idle)
        latency = PiecewiseCurve(mixes, tuple(loads), tuple(excess))
    else:
        raise ValueError(f"form must be 'parametric' or 'piecewise', got {form!r}")

    profile = NodeProfile(
        name=name,
        kind=kind,
        idle_latency_ns=idle,
        bandwidth=bandwidth,
        latency=latency,
        description=description,
        provenance=dict(provenance or {}),
    )
    return ProfileFit(profile, [report_curve(profile, c) for c in curves])


def _fit_remote_view(
    curves: list[MeasuredCurve], name: str, kind: str, description: str, provenance: dict
) -> NodeProfile:
    """One least-squares fit of a remote view over all its mixes (shared link, per-mix memory)."""
    for curve in curves:
        _require_unloaded_rows(curve)
    groups = _group_by_mix(curves)
    mixes = np.array(sorted(groups))
    bandwidth = fit_saturation(
        kind, mixes, np.array([max(c.peak_gbps() for c in groups[r]) for r in mixes])
    )
    rising = [_merged(groups[r]) for r in mixes]
    capacity = np.array([float(bandwidth(r)) for r in mixes])
    # The asymptote of each mix's memory curve lies beyond its capacity and the points fitted.
    floor = np.maximum(capacity, [float(c.bandwidth_gbps.max()) for c in rising])
    write_share = np.minimum(1 - mixes, WRITE_SHARE_CAP)
    # One write share in the data: the write-share idle term is indistinguishable from the
    # idle latency, so it is left out (zero) rather than set by chance.
    free_write = np.unique(np.round(write_share, 6)).size >= 2
    lightest = min(float(c.latency_ns[0]) for c in rising)
    top = float(floor.max())
    traffic = [np.maximum(r, 1 - r) * c.bandwidth_gbps for r, c in zip(mixes, rising, strict=True)]

    def unpack(x: np.ndarray):
        """(idle, write_idle, rise, half, per-mix rows of (a, p, bmax)) from the vector."""
        shared = list(x[:4]) if free_write else [x[0], 0.0, x[1], x[2]]
        return (*shared, x[4 if free_write else 3 :].reshape(-1, 3))

    def model(x: np.ndarray) -> list[np.ndarray]:
        idle, write_idle, rise, half, per_mix = unpack(x)
        out = []
        for c, link_traffic, share, (a, p, bmax) in zip(
            rising, traffic, write_share, per_mix, strict=True
        ):
            load = np.minimum(c.bandwidth_gbps / bmax, 1 - 1e-12)
            memory = a * ((1.0 - load) ** (-p) - 1.0)
            early = link_rise(link_traffic, rise, half)[0]
            out.append(idle + write_idle * share + early + memory)
        return out

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [(m - c.latency_ns) / c.latency_ns for m, c in zip(model(x), rising, strict=True)]
        )

    low = [0.8 * lightest] + ([0.0] if free_write else []) + [0.0, 1e-3 * top]
    high = [1.01 * lightest] + ([10.0 * lightest] if free_write else []) + [5 * lightest, 2 * top]
    for c, bmin in zip(rising, floor, strict=True):
        rise_here = max(float(c.latency_ns.max() - c.latency_ns[0]), 1.0)
        low += [1e-3, 0.02, bmin * (1 + 1e-6)]
        high += [50.0 * rise_here + 1e3, 8.0, bmin * 1.5]
    lower, upper = np.array(low), np.array(high)
    # Starting memory curves: each mix fitted alone with the local p-form.
    alone = [
        fit_curve(c, min_bmax_gbps=cap, rising_only=True)
        for c, cap in zip(rising, capacity, strict=True)
    ]
    write_start = 0.0
    if free_write:
        idles = np.array([fit.idle_latency_ns for fit in alone])
        write_start = max(float(np.polyfit(write_share, idles, 1)[0]), 0.0)
    best = None
    for rise_share in (0.05, 0.3):
        for half_share in (0.03, 0.15):
            guess = [0.97 * lightest] + ([write_start] if free_write else [])
            guess += [rise_share * lightest, half_share * top]
            for fit in alone:
                guess += [fit.a_ns, fit.exponent, fit.bmax_gbps]
            start = np.clip(guess, lower + 1e-9 * np.abs(lower), upper * (1 - 1e-9))
            result = least_squares(
                residuals, start, bounds=(lower, upper), loss="soft_l1", f_scale=0.02
            )
            errors = [
                float(np.median(np.abs((m - c.latency_ns) / c.latency_ns)))
                for m, c in zip(model(result.x), rising, strict=True)
            ]
            score = (max(errors), result.cost)
            if best is None or score < best[0]:
                best = (score, result.x)
    assert best is not None  # the loops above always run
    idle, write_idle, rise, half, per_mix = unpack(best[1])
    # A term the fit drove to its bound is absent; keep it an exact zero in the file.
    write_idle, rise = (value if value > 1e-6 else 0.0 for value in (write_idle, rise))
    headroom = np.maximum(per_mix[:, 2] / capacity, 1.0)
    return NodeProfile(
        name=name,
        kind=kind,
        idle_latency_ns=float(idle),
        bandwidth=bandwidth,
        latency=ParametricCurve(mixes, per_mix[:, 0], per_mix[:, 1], headroom),
        description=description,
        provenance=provenance,
        link=SocketLink(float(write_idle), float(rise), float(half)),
    )


def report_curve(profile: NodeProfile, curve: MeasuredCurve) -> CurveReport:
    """The profile's latency at each point of the curve's rising branch."""
    rising = curve.rising_branch(RISING_FRACTION)
    model = profile.latency_ns(rising.bandwidth_gbps, curve.read_fraction)
    # A point beyond the modelled capacity is a saturated point: the closed loop, not the
    # curve, sets its latency; compare against the curve's value at capacity instead.
    capacity = float(profile.saturation_gbps(curve.read_fraction))
    at_capacity = profile.latency_ns(capacity * (1 - 1e-9), curve.read_fraction)
    model = np.where(np.isfinite(model), model, at_capacity)
    return CurveReport(curve, rising, np.asarray(model, float))


def _group_by_mix(curves: Sequence[MeasuredCurve]) -> dict[float, list[MeasuredCurve]]:
    groups: dict[float, list[MeasuredCurve]] = {}
    for curve in curves:
        groups.setdefault(round(curve.read_fraction, 4), []).append(curve)
    return groups


def _refuse_duplicates(curves: Sequence[MeasuredCurve]) -> None:
    # A curve given twice would count its points twice; it is a slip, not more data.
    first_with: dict[tuple, str] = {}
    for curve in curves:
        key = (curve.read_fraction, curve.bandwidth_gbps.tobytes(), curve.latency_ns.tobytes())
        if key in first_with:
            raise ValueError(
                f"{curve.source}: the same measurement as {first_with[key]}; pass each curve once"
            )
        first_with[key] = curve.source


def _merged(curves: list[MeasuredCurve]) -> MeasuredCurve:
    """The rising-branch points of curves measured at one mix (e.g. at different thread
    counts), as one curve sorted by bandwidth. Each curve is cut at its own peak; the result
    is a rising branch already: cut again at the joint peak, it would lose its top points."""
    points = [c.rising_branch(RISING_FRACTION) for c in curves]
    if len(points) == 1:
        return points[0]
    bw = np.concatenate([p.bandwidth_gbps for p in points])
    lat = np.concatenate([p.latency_ns for p in points])
    order = np.argsort(bw, kind="stable")
    return MeasuredCurve(
        source=" + ".join(c.source for c in curves),
        label=curves[0].label,
        read_fraction=curves[0].read_fraction,
        bandwidth_gbps=bw[order],
        latency_ns=lat[order],
    )


def _shifted(curve: MeasuredCurve, shift_ns: float) -> MeasuredCurve:
    return MeasuredCurve(
        source=curve.source,
        label=curve.label,
        read_fraction=curve.read_fraction,
        bandwidth_gbps=curve.bandwidth_gbps,
        latency_ns=curve.latency_ns + shift_ns,
    )


def _monotone_points(bw: np.ndarray, lat: np.ndarray, idle: float) -> tuple[np.ndarray, np.ndarray]:
    """Strictly increasing bandwidth, non-decreasing latency: what a piecewise curve needs."""
    order = np.argsort(bw, kind="stable")
    bw, lat = bw[order], np.maximum.accumulate(np.maximum(lat[order], idle))
    keep = np.concatenate([[True], np.diff(bw) > 0]) & (bw > 0)
    return bw[keep], lat[keep]
