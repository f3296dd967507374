"""`tierenv validate`: reproduce published DDR/CXL interleaving results with the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from tierenv.cli.outputs import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the published DDR/CXL interleaving checks through the model and print model "
        "vs published values with the tolerance each is held to. Writes the table to "
        "--out. Exits 1 if any prediction is outside its tolerance."
    )
    parser.add_argument("--checks", default=None, help="comma-separated subset, e.g. C1,C5")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/validation.md"),
        help="Markdown report to write (default: results/validation.md)",
    )


def run(args: argparse.Namespace) -> int:
    names = [c.strip() for c in args.checks.split(",")] if args.checks else None
    check_writable("--out", args.out, folder=False)  # before the checks, not after
    return 0 if write_validation(names, args.out) else 1


def write_validation(names: list[str] | None, out: Path) -> bool:
    """Run the checks, print and write the table; True when every prediction passes.
    `tierenv report` runs them too, as its last step."""
    from tierenv.files import write_text_atomically
    from tierenv.hardware.validation import render_markdown, run_checks
    from tierenv.provenance import stamp

    rows = run_checks(names)
    table = render_markdown(rows)
    print(table)
    failed = [r for r in rows if not r.passed]
    report = (
        "# Model validation against published DDR/CXL interleaving results\n\n"
        + stamp()
        + "\nThe checks, their published sources and the bands they are held to: "
        "`docs/references.md#interleaving-checks`. Rows marked "
        "`calibrated` are model inputs set from a published number; the other rows are "
        "predictions held to the tolerance shown.\n\n" + table
    )
    write_text_atomically(out, report)
    print(f"{len(rows) - len(failed)} of {len(rows)} rows pass; report written to {out}")
    return not failed
