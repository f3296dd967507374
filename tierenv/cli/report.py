"""`tierenv report`: refit the shipped profiles and run the published checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.cli.outputs import check_writable
from tierenv.cli.validate import write_validation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fit every shipped node profile again from the reference measurements "
        "(MLC logs, Mess curves) and published numbers, check the refit matches what "
        "ships, plot each fit, and run the published interleaving checks. Writes "
        "results/calibration/ and results/validation.md. Exits 1 if a fit misses its "
        "tolerance, a refit differs from the shipped profile, or a check fails."
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared"),
        help="folder holding the reference data/ (default: ../shared)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="where to write the report (default: results)",
    )


def run(args: argparse.Namespace) -> int:
    from tierenv.hardware.profile import load_profile
    from tierenv.hardware.shipped import TOLERANCE, build, write_calibration_report
    from tierenv.hardware.validation import profile_difference

    if not (args.shared / "data").is_dir():
        raise ValueError(
            f"reference data not found at {args.shared / 'data'}; run from the project root "
            "next to ../shared, or pass --shared"
        )
    check_writable("--results", args.results, folder=True)  # before the fits, not after
    print(f"[1/3] fitting node profiles to the measurements in {args.shared / 'data'} ...")
    fits = build(args.shared)
    calibration = args.results / "calibration"
    report = write_calibration_report(
        fits, calibration, "tierenv report", profile_dir=calibration / "profiles"
    )
    failed = False
    print(f"{'profile':30} {'curves':>6} {'worst median err':>17} {'vs shipped':>11}")
    for fit in fits:
        worst = max((r.median_abs_error for r in fit.reports), default=0.0)
        drift = profile_difference(fit.profile, load_profile(fit.profile.name))
        bad = worst > TOLERANCE or drift > 1e-3
        failed |= bad
        error = f"{100 * worst:16.2f}%" if fit.reports else f"{'peaks only':>17}"
        print(
            f"{fit.profile.name:30} {len(fit.reports):6d} {error} "
            f"{100 * drift:10.3f}%{'  <-- FAIL' if bad else ''}"
        )
    print(f"      fit table and plots: {report} and {calibration}/*.png\n")
    print("[2/3] running the published interleaving checks ...")
    failed |= not write_validation(None, args.results / "validation.md")
    print("\n[3/3] done: " + ("some checks FAILED" if failed else "all fits and checks pass"))
    return 1 if failed else 0
