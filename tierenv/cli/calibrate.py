"""`tierenv calibrate`: fit a node profile to measured loaded-latency curves."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tierenv.cli.outputs import check_writable, same_place, staged

# The help names the physical range of an idle-latency anchor and the default tolerance.
# Importing them costs scipy at parser build (about 0.5 s of `tierenv --help`), as before.
from tierenv.hardware.fit import IDLE_ANCHOR_RANGE_NS
from tierenv.hardware.profile import NODE_KINDS
from tierenv.hardware.shipped import TOLERANCE as FIT_TOLERANCE

# A profile name becomes a file name: no folders, no leading dot or dash.
PLAIN_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fit a node profile to one node's measured curves: Intel MLC --loaded_latency logs "
        "(read mix from -W), Mess processed memory_curves.csv files or Mess-simulator "
        "bwlat_<R>.txt files. Each curve's rising branch (idle up to 98% of peak) is fitted; "
        "the saturated rows only set the peak. A remote view (--kind remote-ddr or "
        "remote-cxl: the node measured from another socket's cores) is fitted with the "
        "socket link's terms: an idle latency that grows with the write share and an early "
        "rise, shared by all mixes. Prints per-curve errors and writes the profile (TOML) "
        "and, with --plot, a plot of the fit (PNG). Exits 1 and writes nothing if any "
        "curve's median absolute latency error exceeds --tolerance. The files are written "
        "under temporary names and renamed into place together at the end. A file given "
        "twice (or a copy of one) is refused."
    )
    parser.add_argument("files", nargs="+", type=Path, help="measurement files of ONE memory node")
    parser.add_argument(
        "--name",
        help="profile name, a plain file stem: letters, digits, '.', '_', '+', '-', starting "
        "with a letter or digit (default: the first file's name without its suffix)",
    )
    parser.add_argument(
        "--kind",
        choices=NODE_KINDS,
        default=None,
        help="node kind: sets the capacity model (DDR bus or CXL link); remote-ddr and "
        "remote-cxl fit a remote view (the node seen across the socket link); default: cxl if "
        "a file name contains 'cxl', else ddr (the guess is printed)",
    )
    parser.add_argument(
        "--form",
        choices=["parametric", "piecewise"],
        default="parametric",
        help="latency curve form to store (default: parametric)",
    )
    parser.add_argument(
        "--idle-latency-ns",
        type=float,
        default=None,
        help="anchor the idle latency (for device-side curves without the on-chip path): "
        f"{IDLE_ANCHOR_RANGE_NS[0]:g} to {IDLE_ANCHOR_RANGE_NS[1]:g} ns; the curves are shifted "
        "to it and their errors are relative to the shifted curves",
    )
    parser.add_argument(
        "--read-fraction",
        type=float,
        default=None,
        help="override the controller-level read fraction of every file",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="profile file to write (default: NAME.toml)"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also write a PNG of the fit here, e.g. beside the profile (default: no plot)",
    )
    parser.add_argument("--points", action="store_true", help="also print every point's error")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=100 * FIT_TOLERANCE,
        help="largest acceptable median absolute latency error, %% (above 0, at most 100; "
        f"default {100 * FIT_TOLERANCE:g})",
    )


def run(args: argparse.Namespace) -> int:
    from tierenv.hardware.fit import fit_profile
    from tierenv.hardware.fit_report import fit_table, plot_fit, point_table
    from tierenv.hardware.measurements import read_measurement_files
    from tierenv.hardware.profile import REMOTE_KINDS
    from tierenv.provenance import stamp

    # Every option is checked before the fit, which takes seconds to minutes.
    name, out = _checked_outputs(args)
    curves = read_measurement_files(args.files, args.read_fraction)
    kind = args.kind
    if kind is None:
        kind = "cxl" if any("cxl" in f.name.lower() for f in args.files) else "ddr"
        print(f"node kind: {kind} (guessed from the file names; set --kind to choose)")
    remote = kind in REMOTE_KINDS
    method = f"tierenv calibrate, {args.form} p-form fit of each rising branch"
    if remote:
        method = (
            "tierenv calibrate, remote view: one fit over all mixes of the read-only idle "
            "latency, the socket link's write-share idle term and early rise, and a p-form "
            "memory curve per mix"
        )
    provenance = {
        "source": ", ".join(str(f) for f in args.files),
        "method": method,
        "calibrated": stamp().replace("\n", "; ").strip("; "),
    }
    fit = fit_profile(
        curves,
        name=name,
        kind=kind,
        form=args.form,
        idle_latency_ns=args.idle_latency_ns,
        description=f"fitted to {len(curves)} measured curve(s)",
        provenance=provenance,
        link=remote,
    )
    tolerance = args.tolerance / 100
    print(fit_table(fit, tolerance))
    if args.points:
        for report in fit.reports:
            print(f"{report.curve.source} ({report.curve.label})")
            print(point_table(report))
    worst = max(r.median_abs_error for r in fit.reports)
    if worst > tolerance:
        # A profile that misses its tolerance must not be picked up as if it were good.
        print(
            f"median absolute error {100 * worst:.2f}% exceeds the tolerance "
            f"{args.tolerance:g}%; nothing written (--points shows each point's error)"
        )
        return 1
    with staged([out] + ([args.plot] if args.plot is not None else [])) as paths:
        fit.profile.save(paths[0])
        if args.plot is not None:
            plot_fit(fit, paths[1])
    print(f"profile written to {out}")
    if args.plot is not None:
        print(f"plot written to {args.plot}")
    return 0


def _checked_outputs(args: argparse.Namespace) -> tuple[str, Path]:
    """The profile name and file, after checking every option that can be checked before
    the fit: the name, the tolerance, the idle anchor and the output places."""
    if args.name is not None and not PLAIN_STEM.fullmatch(args.name):
        raise ValueError(
            f"--name {args.name!r}: not a plain file stem (letters, digits, '.', '_', '+', '-', "
            "starting with a letter or digit; no '/')"
        )
    name = args.name or args.files[0].stem
    if not PLAIN_STEM.fullmatch(name):
        raise ValueError(
            f"{args.files[0]}: its name gives the profile name {name!r}, which is not a plain "
            "file stem; choose one with --name"
        )
    if not 0 < args.tolerance <= 100:  # NaN fails too
        raise ValueError(f"--tolerance {args.tolerance:g}: must be a percentage in (0, 100]")
    low, high = IDLE_ANCHOR_RANGE_NS
    if args.idle_latency_ns is not None and not low <= args.idle_latency_ns <= high:
        raise ValueError(
            f"--idle-latency-ns {args.idle_latency_ns:g}: outside the physical range "
            f"{low:g}..{high:g} ns of a memory node's idle latency"
        )
    out = args.out or Path(f"{name}.toml")
    outputs = [("--out", out)] + ([("--plot", args.plot)] if args.plot is not None else [])
    for option, path in outputs:
        check_writable(option, path, folder=False)
        for given in args.files:
            if path.exists() and given.exists() and path.samefile(given):
                raise ValueError(f"{option} {path}: is the measurement file {given}")
    if args.plot is not None and same_place(out, args.plot):
        raise ValueError(f"--plot {args.plot}: the same file as the profile (--out)")
    return name, out
