"""Rebuild the shipped node profiles (maintainers run this after changing a recipe).

    python -m experiments.build_profiles [--shared ../shared]

Writes ``tierenv/hardware/profiles/*.toml`` and the fit report with plots under
``results/calibration/``. The recipes are in ``tierenv/hardware/shipped.py``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tierenv.hardware.profile import shipped_profile_dir
from tierenv.hardware.shipped import build, write_calibration_report

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
        print(f"{fit.profile.name}: written")
    print(f"profiles written to {shipped_profile_dir()}, fit report to {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
