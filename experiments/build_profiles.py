"""Rebuild the shipped node profiles (maintainers run this after changing a recipe).

    python -m experiments.build_profiles [--shared ../shared]

Writes ``tierenv/hardware/profiles/*.toml`` (the measured and published profiles, the remote
views measured from the other socket, and those that mirror the hardware of published
interleaving results) and the fit report with plots under ``results/calibration/``. The recipes
are in ``tierenv/hardware/shipped.py`` and, for the remote views,
``tierenv/hardware/remote_view.py``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tierenv.hardware.profile import shipped_profile_dir
from tierenv.hardware.shipped import REWRITE_RTOL, build, write_calibration_report

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.path.relpath(ROOT.parent / "shared")),
        help="the shared reference folder (default: ../shared)",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "calibration")
    args = parser.parse_args(argv)
    fits = build(args.shared)
    report = write_calibration_report(
        fits, args.results, "python -m experiments.build_profiles", shipped_profile_dir()
    )
    for fit in fits:
        profile = fit.profile
        print(
            f"{profile.name}: idle {profile.idle_latency_ns:.1f} ns, "
            f"{float(profile.saturation_gbps(1.0)):.1f} GB/s reads only, "
            f"{float(profile.saturation_gbps(0.75)):.1f} GB/s at MLC 2:1"
        )
    print(
        f"profiles written to {shipped_profile_dir()} (a file that holds its profile already, "
        f"to {REWRITE_RTOL:g} relative, is left as it is), fit report to {report}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
