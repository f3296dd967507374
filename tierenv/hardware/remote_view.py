"""Remote views: memory nodes measured from the other socket's cores, and how they are fitted.

A node seen across the socket link is a different curve from the same node seen locally: its
idle latency depends on the traffic mix and its latency rises steeply at light load (see
``curves.SocketLink``). The ByteDance EuroSys'24 artefacts hold such logs for the DDR5
sub-NUMA domain (``ddr5_log_d7_*``) and the ASIC CXL expander (``cxl_log_d3_*``), measured
with ``-c191`` and traffic cores 85-95,180-185 / 73-88 on the other socket, for the mixes
``-W0`` and ``-W2``.

``REMOTE_VIEW_RECIPES`` has the shape of ``shipped.MEASURED_RECIPES`` (folder under
``data/``, file pattern, ``fit_profile`` keywords), so the shipped-profile builder can add
them as they are. ``python -m tierenv.hardware.remote_view`` fits both views, writes their
profiles and prints each log's error, for the fit and for every mix held out of it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from tierenv.hardware.fit import CurveReport, ProfileFit, fit_profile, report_curve
from tierenv.hardware.measurements import MeasuredCurve, read_measurements
from tierenv.hardware.profile import shipped_profile_dir

TOLERANCE = 0.05  # median absolute latency error a fit (and a held-out mix) is held to
MLC_FOLDER = "mlc/bytedance-eurosys24"
_SOURCE = "Intel MLC v3.10 --loaded_latency, Tang et al. EuroSys'24 artefacts (Apache-2.0)"
_METHOD = (
    "tierenv fit_profile(link=True): one least-squares fit over both mixes of the read-only "
    "idle latency, the socket link's write-share idle term and early rise (shared by all "
    "mixes) and a p-form memory curve per mix; capacity fitted to the per-mix peaks"
)

REMOTE_VIEW_RECIPES: list[tuple[str, str, dict]] = [
    (
        MLC_FOLDER,
        "ddr5_log_d7_c16_w*_r0",
        {
            "name": "bytedance-ddr5-remote-view",
            "kind": "remote-ddr",
            "link": True,
            "description": "The ByteDance 2-channel DDR5 sub-NUMA domain seen from the other "
            "socket's cores (over UPI; MLC)",
            "provenance": {
                "source": f"{_SOURCE} (../shared/data/{MLC_FOLDER}/ddr5_log_d7_c16_w{{0,2}}_r0: "
                "memory -j0, traffic cores 85-95,180-185 and latency core 191 on the other "
                "socket)",
                "method": _METHOD + " (DDR write-penalty form)",
                "valid": "read fractions 0.75-1 (MLC -W0, -W2); the write-penalty capacity "
                "fitted to two mixes falls fast below 0.75 (published remote peaks: -W5 "
                "38-41 GB/s, -W6 34.5-38 GB/s, above the model there)",
            },
        },
    ),
    (
        MLC_FOLDER,
        "cxl_log_d3_c16_w*_r0",
        {
            "name": "bytedance-cxl-remote-view",
            "kind": "remote-cxl",
            "link": True,
            "description": "The ByteDance ASIC CXL expander seen from the other socket's cores "
            "(CXL behind UPI; MLC)",
            "provenance": {
                "source": f"{_SOURCE} (../shared/data/{MLC_FOLDER}/cxl_log_d3_c16_w{{0,2}}_r0: "
                "memory -j4, traffic cores 73-88 and latency core 191 on the other socket)",
                "method": _METHOD + " (link + media form)",
                "valid": "read fractions 0.75-1 (MLC -W0, -W2); the write-share idle term is "
                "linear in the write share up to 0.5 and was measured at 0.25 only",
            },
        },
    ),
]


@dataclass(frozen=True)
class HeldOutMix:
    """One log predicted by a profile fitted to the other logs of the same view."""

    profile: str
    held_out: MeasuredCurve
    report: CurveReport
    capacity_gbps: float  # the profile's capacity at the held-out mix

    @property
    def capacity_error(self) -> float:
        return self.capacity_gbps / self.held_out.peak_gbps() - 1


def recipe_curves(shared: Path, folder: str, pattern: str) -> list[MeasuredCurve]:
    """The measured curves a recipe names, in file-name order."""
    files = sorted((Path(shared) / "data" / folder).glob(pattern))
    if not files:
        raise FileNotFoundError(f"{Path(shared) / 'data' / folder}: no files match {pattern!r}")
    return [curve for path in files for curve in read_measurements(path)]


def build_remote_views(shared: Path) -> list[ProfileFit]:
    """Fit every remote view of ``REMOTE_VIEW_RECIPES``; ``shared`` holds ``data/``."""
    return [
        fit_profile(recipe_curves(shared, folder, pattern), **recipe)
        for folder, pattern, recipe in REMOTE_VIEW_RECIPES
    ]


def held_out_mixes(shared: Path) -> list[HeldOutMix]:
    """Leave one mix out: fit each view on its other logs, predict the one left out."""
    results = []
    for folder, pattern, recipe in REMOTE_VIEW_RECIPES:
        curves = recipe_curves(shared, folder, pattern)
        for index, held_out in enumerate(curves):
            training = [c for i, c in enumerate(curves) if i != index]
            profile = fit_profile(training, **recipe).profile
            capacity = float(profile.saturation_gbps(held_out.read_fraction))
            results.append(
                HeldOutMix(recipe["name"], held_out, report_curve(profile, held_out), capacity)
            )
    return results


def error_table(fits: list[ProfileFit], held_out: list[HeldOutMix]) -> str:
    """Markdown: each log's median and maximum absolute latency error, fitted and held out."""
    lines = [
        "| profile | log | reads | fitted: median / max | held out: median / max | "
        "held-out capacity vs peak |",
        "|---|---|---|---|---|---|",
    ]
    by_source = {(h.profile, h.held_out.source): h for h in held_out}
    for fit in fits:
        for report in fit.reports:
            curve = report.curve
            other = by_source.get((fit.profile.name, curve.source))
            if other is None:
                held = capacity = "-"
            else:
                held = _errors(other.report)
                capacity = (
                    f"{other.capacity_gbps:.1f} vs {curve.peak_gbps():.1f} GB/s "
                    f"({100 * other.capacity_error:+.1f}%)"
                )
            lines.append(
                f"| {fit.profile.name} | {Path(curve.source).name} | {curve.read_fraction:.2f} "
                f"| {_errors(report)} | {held} | {capacity} |"
            )
    return "\n".join(lines) + "\n"


def _errors(report: CurveReport) -> str:
    return f"{100 * report.median_abs_error:.2f}% / {100 * report.max_abs_error:.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[2]
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.path.relpath(root.parent / "shared")),
        help="the shared reference folder holding data/ (default: ../shared)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=shipped_profile_dir(),
        help="folder to write the profiles to (default: the shipped profile folder)",
    )
    args = parser.parse_args(argv)
    fits = build_remote_views(args.shared)
    args.out.mkdir(parents=True, exist_ok=True)
    for fit in fits:
        profile, link = fit.profile, fit.profile.link
        assert link is not None  # every remote view has its socket link
        path = args.out / f"{profile.name}.toml"
        profile.save(path)
        print(
            f"{path}: idle {profile.idle_latency_ns:.1f} ns (reads), +{link.write_idle_ns:.1f} ns "
            f"per write share, early rise {link.rise_ns:.1f} ns (half at "
            f"{link.rise_gbps:.2f} GB/s)"
        )
    print()
    print(error_table(fits, held_out_mixes(args.shared)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
