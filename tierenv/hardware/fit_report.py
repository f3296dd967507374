"""Tables and plots of how a fitted profile reproduces its measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tierenv.files import atomic_path
from tierenv.hardware.fit import CurveReport, ProfileFit

MAX_PLOTTED_CURVES = 8


def fit_table(fit: ProfileFit, tolerance: float) -> str:
    """Markdown table: one row per measured curve, errors on the rising branch."""
    profile = fit.profile
    lines = [
        f"Profile {profile.name} ({profile.kind}): idle {profile.idle_latency_ns:.1f} ns"
        f"{' (reads only)' if profile.link is not None else ''}, "
        f"saturation {_saturation_text(fit)}",
        "",
        "| measurement | mix | reads | rising points | peak GB/s | model peak GB/s | "
        "median abs err | max abs err | within tolerance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if profile.link is not None:
        link = profile.link
        lines[1:1] = [
            f"Socket link (remote view): idle +{link.write_idle_ns:.1f} ns per unit write share "
            f"(up to 0.5), early rise {link.rise_ns:.1f} ns (half of it at "
            f"{link.rise_gbps:.2f} GB/s in the busier link direction)",
        ]
    for report in fit.reports:
        curve = report.curve
        ok = "yes" if report.median_abs_error <= tolerance else "NO"
        lines.append(
            f"| {curve.source} | {curve.label} | {curve.read_fraction:.3f} | "
            f"{report.rising.bandwidth_gbps.size} | {curve.peak_gbps():.2f} | "
            f"{float(profile.saturation_gbps(curve.read_fraction)):.2f} | "
            f"{100 * report.median_abs_error:.2f}% | {100 * report.max_abs_error:.2f}% | {ok} |"
        )
    return "\n".join(lines) + "\n"


def point_table(report: CurveReport) -> str:
    """Per-point errors of one curve (what the fit is judged on)."""
    lines = ["| bandwidth GB/s | measured ns | model ns | error |", "|---|---|---|---|"]
    for bw, measured, model, err in zip(
        report.rising.bandwidth_gbps,
        report.rising.latency_ns,
        report.model_latency_ns,
        report.relative_error,
        strict=True,
    ):
        lines.append(f"| {bw:.2f} | {measured:.1f} | {model:.1f} | {100 * err:+.2f}% |")
    return "\n".join(lines) + "\n"


def _saturation_text(fit: ProfileFit) -> str:
    bw = fit.profile.bandwidth
    parts = [f"media {bw.media_gbps:.1f} GB/s", f"write penalty {bw.write_penalty:.2f}"]
    if bw.read_link_gbps is not None:
        parts.append(f"read link {bw.read_link_gbps:.1f} GB/s")
    if bw.write_link_gbps is not None:
        parts.append(f"write link {bw.write_link_gbps:.1f} GB/s")
    return ", ".join(parts)


def plot_fit(fit: ProfileFit, path: str | Path) -> Path:
    """PNG: measured points and the profile's curve per mix, and per-point errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profile = fit.profile
    fig, (ax_curve, ax_err) = plt.subplots(
        2, 1, figsize=(8, 8), height_ratios=[3, 1.4], constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown = fit.reports
    if len(shown) > MAX_PLOTTED_CURVES:  # e.g. 42 Mess mixes: a readable, even sample
        picks = np.linspace(0, len(shown) - 1, MAX_PLOTTED_CURVES).round().astype(int)
        shown = [fit.reports[i] for i in picks]
    for index, report in enumerate(shown):
        color = colors[index % len(colors)]
        curve, rising = report.curve, report.rising
        label = f"{Path(curve.source.split('#')[0]).name} ({curve.label})"
        ax_curve.plot(
            curve.bandwidth_gbps, curve.latency_ns, "o", mfc="none", color=color, alpha=0.5, ms=4
        )
        ax_curve.plot(rising.bandwidth_gbps, rising.latency_ns, "o", color=color, ms=4, label=label)
        capacity = float(profile.saturation_gbps(curve.read_fraction))
        grid = np.linspace(0, capacity * 0.999, 300)
        ax_curve.plot(grid, profile.latency_ns(grid, curve.read_fraction), "-", color=color, lw=1.5)
        ax_err.plot(rising.bandwidth_gbps, 100 * report.relative_error, "o-", color=color, ms=3)
    ax_curve.set_xlabel("bandwidth (GB/s)")
    ax_curve.set_ylabel("latency (ns)")
    sample = "" if len(shown) == len(fit.reports) else f" ({len(shown)} of {len(fit.reports)})"
    ax_curve.set_title(
        f"{profile.name}: measured{sample} (filled: rising branch fitted; hollow: saturated) "
        "and model",
        fontsize=9,
    )
    top = max(float(np.max(r.rising.latency_ns)) for r in fit.reports)
    ax_curve.set_ylim(0, top * 1.6)
    ax_curve.legend(fontsize=7)
    ax_err.axhline(0, color="black", lw=0.8)
    ax_err.set_xlabel("bandwidth (GB/s)")
    ax_err.set_ylabel("model - measured (%)")
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path
