"""The `tierenv` command line: thin wrappers over the library."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tierenv.hardware.fit import IDLE_ANCHOR_RANGE_NS
from tierenv.hardware.profile import NODE_KINDS
from tierenv.hardware.shipped import TOLERANCE as FIT_TOLERANCE

DESCRIPTION = """\
tierenv: learn how Linux should interleave memory across DDR and CXL.

subcommands:
  report      the main job for now: rebuild the calibrated profiles from the reference
              measurements and run the published validation checks (writes results/)
  profiles    list the shipped memory-node profiles, or show one
  calibrate   fit a node profile to Intel MLC --loaded_latency logs or Mess curves
  validate    reproduce published DDR/CXL interleaving results with the model
  interleave  throughput and node latencies of one application across interleave weights
  scenarios   list the shipped scenarios, show one, or draw new ones (generate)
  simulate    run a scenario with static weights: time-series table and plot

Run `tierenv SUBCOMMAND --help` for the options of each.
"""


# Bounds of `interleave`'s application: a whole socket's miss buffers (cores x L2 MSHRs) hold
# a few thousand lines, and a millisecond between misses is an idle application. Beyond them
# the solver's numbers overflow or mean nothing.
MAX_MLP = 100_000.0
MAX_THINK_NS = 1e6
# Bounds of `fakehost --speed`: below a thousandth a control interval lasts minutes to days
# (and a tiny speed overflowed the clock), above a thousand the host cannot keep up anyway.
MIN_SPEED = 1e-3
MAX_SPEED = 1e3


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except UnicodeDecodeError as err:  # a loader read a binary file without naming it
        print(f"tierenv {args.command}: error: {_not_text(args, err)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:
        print(f"tierenv {args.command}: error: {err}", file=sys.stderr)
        return 2


MAX_TEXT_CHECKED = 64 << 20  # bytes of a named file read to find the one that is not text


def _not_text(args: argparse.Namespace, err: UnicodeDecodeError) -> str:
    """The error for a file that is not UTF-8 text, naming the first such file on the
    command line: the decoder's own message names no file."""
    names: list[str | Path] = []
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Path):
                names.append(item)
            elif isinstance(item, str):  # a profile or scenario name, or a --nodes list
                names.extend(part for part in item.split(",") if part)
    for name in names:
        path = Path(name)
        try:
            if not path.is_file():
                continue
            with open(path, "rb") as handle:
                handle.read(MAX_TEXT_CHECKED).decode("utf-8")
        except UnicodeDecodeError as bad:
            if bad.end < MAX_TEXT_CHECKED - 4:  # not a character cut at the read limit
                return (
                    f"{path}: not a UTF-8 text file (byte 0x{bad.object[bad.start]:02x} at "
                    f"offset {bad.start})"
                )
        except OSError:
            continue
    return f"a file it read is not UTF-8 text ({err})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierenv",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "report",
        help="calibration and validation report (the main job)",
        description=(
            "Fit every shipped node profile again from the reference measurements "
            "(MLC logs, Mess curves) and published numbers, check the refit matches what "
            "ships, plot each fit, and run the published interleaving checks. Writes "
            "results/calibration/ and results/validation.md. Exits 1 if a fit misses its "
            "tolerance, a refit differs from the shipped profile, or a check fails."
        ),
    )
    p.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared"),
        help="folder holding the reference data/ (default: ../shared)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="where to write the report (default: results)",
    )
    p.set_defaults(handler=_report)

    p = sub.add_parser("profiles", help="list shipped node profiles or show one")
    p.add_argument("name", nargs="?", help="profile name or path to a profile file")
    p.set_defaults(handler=_profiles)

    p = sub.add_parser(
        "calibrate",
        help="fit a node profile to measured loaded-latency curves",
        description=(
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
        ),
    )
    p.add_argument("files", nargs="+", type=Path, help="measurement files of ONE memory node")
    p.add_argument(
        "--name",
        help="profile name, a plain file stem: letters, digits, '.', '_', '+', '-', starting "
        "with a letter or digit (default: the first file's name without its suffix)",
    )
    p.add_argument(
        "--kind",
        choices=NODE_KINDS,
        default=None,
        help="node kind: sets the capacity model (DDR bus or CXL link); remote-ddr and "
        "remote-cxl fit a remote view (the node seen across the socket link); default: cxl if "
        "a file name contains 'cxl', else ddr (the guess is printed)",
    )
    p.add_argument(
        "--form",
        choices=["parametric", "piecewise"],
        default="parametric",
        help="latency curve form to store (default: parametric)",
    )
    p.add_argument(
        "--idle-latency-ns",
        type=float,
        default=None,
        help="anchor the idle latency (for device-side curves without the on-chip path): "
        f"{IDLE_ANCHOR_RANGE_NS[0]:g} to {IDLE_ANCHOR_RANGE_NS[1]:g} ns; the curves are shifted "
        "to it and their errors are relative to the shifted curves",
    )
    p.add_argument(
        "--read-fraction",
        type=float,
        default=None,
        help="override the controller-level read fraction of every file",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="profile file to write (default: NAME.toml)"
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also write a PNG of the fit here, e.g. beside the profile (default: no plot)",
    )
    p.add_argument("--points", action="store_true", help="also print every point's error")
    p.add_argument(
        "--tolerance",
        type=float,
        default=100 * FIT_TOLERANCE,
        help="largest acceptable median absolute latency error, %% (above 0, at most 100; "
        f"default {100 * FIT_TOLERANCE:g})",
    )
    p.set_defaults(handler=_calibrate)

    p = sub.add_parser(
        "validate",
        help="reproduce published interleaving results (C1, C3, C5)",
        description=(
            "Run the published DDR/CXL interleaving checks through the model and print model "
            "vs published values with the tolerance each is held to. Writes the table to "
            "--out. Exits 1 if any prediction is outside its tolerance."
        ),
    )
    p.add_argument("--checks", default=None, help="comma-separated subset, e.g. C1,C5")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/validation.md"),
        help="Markdown report to write (default: results/validation.md)",
    )
    p.set_defaults(handler=_validate)

    p = sub.add_parser(
        "interleave",
        help="throughput of one application across interleave weights",
        description=(
            "Solve the closed-loop model for one application at a range of interleave weights "
            "and print its throughput and each node's bandwidth and latency. By default a "
            "two-node host (--ddr, --cxl) at weights w:1; --nodes takes any number of node "
            "profiles (local, CXL or remote views), node 0 first, and --weights the weight "
            "vectors to try (default for more than two nodes: the discrete env's grid)."
        ),
    )
    p.add_argument("--ddr", default="spr-8460y-ddr5-socket", help="DDR node profile")
    p.add_argument("--cxl", default="generic-cxl-x8", help="CXL node profile")
    p.add_argument(
        "--nodes",
        help="comma-separated node profiles, node 0 first (replaces --ddr and --cxl)",
    )
    p.add_argument(
        "--weights",
        nargs="+",
        metavar="W0:W1[:W2...]",
        help="weight vectors to try, one weight per node (0..255, not all 0), e.g. 3:1:1",
    )
    p.add_argument(
        "--mlp",
        type=float,
        default=512.0,
        help=f"64-B misses in flight, above 0 and at most {MAX_MLP:g} (default 512)",
    )
    p.add_argument(
        "--think-ns",
        type=float,
        default=0.0,
        help=f"compute time between misses per slot, ns, 0 to {MAX_THINK_NS:g} (default 0)",
    )
    p.add_argument(
        "--read-fraction",
        type=float,
        default=0.75,
        help="controller-level read fraction (default 0.75)",
    )
    p.add_argument(
        "--max-weight",
        type=int,
        default=16,
        help="two nodes without --weights: largest w in w:1 (default 16)",
    )
    p.set_defaults(handler=_interleave)

    p = sub.add_parser(
        "scenarios",
        help="list the shipped scenarios, show one, or draw new ones",
        description=(
            "With no argument, list the shipped scenarios; with a name or file, show it. "
            "`tierenv scenarios generate DIST --seed N --count K --out DIR` draws K scenarios "
            "from a scenario distribution (a shipped name or a TOML file) and writes them as "
            "scenario files; `tierenv scenarios generate` lists the shipped distributions."
        ),
    )
    p.add_argument(
        "name", nargs="?", help="a shipped scenario name or a scenario file, or `generate`"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(handler=_scenarios)

    p = sub.add_parser(
        "simulate",
        help="run a scenario with static weights",
        description=(
            "Run a scenario (a shipped name or a TOML file) on the simulated host with static "
            "interleave weights (which also drive the DAMOS migrate_hot dests), print the time "
            "series as a table and write a plot of per-node bandwidth and latency, "
            "per-application throughput and placement."
        ),
    )
    p.add_argument("scenario", help="shipped scenario name or path to a scenario TOML file")
    p.add_argument(
        "--weights", default="1:1", help="weights per node, node 0 first, e.g. 3:1 (1..255)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--every", type=int, default=10, help="table row every N intervals")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG to write (default results/simulate/SCENARIO-WEIGHTS.png)",
    )
    p.set_defaults(handler=_simulate)

    p = sub.add_parser(
        "bench",
        help="measure environment speed and write results/bench_env.md",
        description=(
            "Measure env steps per second (one env at full DAMON fidelity under a constant and "
            "a random policy), simulated seconds per wall second and where each step's time "
            "goes, for every shipped scenario (or those named); then aggregate env-steps per "
            "second of the batched fluid env at --batch-sizes. Prints the tables and writes "
            "them, stamped with the machine, to --out."
        ),
    )
    p.add_argument("scenarios", nargs="*", help="scenario names (default: all shipped)")
    p.add_argument("--repeats", type=int, default=3, help="timed episodes per row (median)")
    p.add_argument(
        "--batch-sizes",
        default="1,64,1024,4096",
        help="comma-separated numbers of batched fluid envs to time, each at most 65,536 "
        "('' or 0: none)",
    )
    p.add_argument("--batched-scenario", default="co-runner", help="scenario of the batched rows")
    p.add_argument(
        "--out", type=Path, default=Path("results/bench_env.md"), help="Markdown file to write"
    )
    p.set_defaults(handler=_bench)

    p = sub.add_parser(
        "compare",
        help="evaluate policies on scenarios over seeds; tables and plots to results/",
        description=(
            "Run every policy of an experiment config (YAML: scenarios, seeds, policies; see "
            "experiments/baselines.yaml) on every scenario and seed, then write raw episodes "
            "(CSV), tables with interquartile means and 95% bootstrap confidence intervals, "
            "probability of improvement over the reference policy, plots (PNG) and "
            "TensorBoard scalars. Trials run in local processes, or on Ray with --ray."
        ),
    )
    p.add_argument("config", type=Path, help="experiment config (YAML)")
    p.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/compare/NAME)"
    )
    p.add_argument("--workers", type=int, default=None, help="parallel trials (default: all CPUs)")
    p.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 instead")
    p.add_argument("--ray", action="store_true", help="run trials on a local Ray instance")
    p.add_argument(
        "--ray-address", default=None, help="run trials on this Ray cluster (e.g. ray://h:10001)"
    )
    p.add_argument(
        "--tensorboard",
        type=Path,
        default=None,
        help="TensorBoard log folder (default runs/compare/NAME)",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard trials kept from an interrupted run of this config and start over "
        "(otherwise a rerun resumes: only unfinished trials run)",
    )
    p.set_defaults(handler=_compare)

    p = sub.add_parser(
        "train",
        help="train policies with stable-baselines3 from a YAML config",
        description=(
            "Train one agent per seed (PPO, SAC or RecurrentPPO; experiments/train/*.yaml) "
            "into RUNS/NAME/seed_SEED/: the model, VecNormalize statistics, run.json, "
            "evaluation returns on the held-out scenarios (eval.csv), TensorBoard logs (tb/) "
            "and checkpoints; --resume continues interrupted runs exactly."
        ),
    )
    p.add_argument("config", type=Path, help="training config (YAML)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
    p.add_argument("--workers", type=int, default=1, help="seeds trained in parallel")
    p.add_argument("--runs", type=Path, default=Path("runs/train"), help="where run folders go")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "tune",
        help="search PPO hyperparameters with Optuna",
        description=(
            "Search the hyperparameters of a training config with Optuna (seeded TPE, median "
            "pruning on intermediate evaluations) and write a Markdown report of every trial "
            "and the best hyperparameters (default results/tuning/NAME.md)."
        ),
    )
    p.add_argument("config", type=Path, help="training config (YAML; PPO or RecurrentPPO)")
    p.add_argument("--trials", type=int, default=8, help="Optuna trials (default 8)")
    p.add_argument("--timesteps", type=int, default=None, help="steps per trial (default 20k)")
    p.add_argument("--out", type=Path, default=None, help="report to write")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_tune)

    p = sub.add_parser(
        "demo",
        help="the main job: train a policy, compare it with the baselines and the oracle",
        description=(
            "End to end in about 10 minutes on 2 cores: train PPO (experiments/train/demo.yaml,"
            " 3 seeds) on the default scenario set, then compare it with static, heuristic and "
            "oracle policies on held-out seeds (experiments/demo.yaml); prints the table and "
            "writes tables and plots to --out."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("results/demo"), help="results folder")
    p.add_argument("--runs", type=Path, default=Path("runs/demo"), help="training runs folder")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)

    p = sub.add_parser(
        "export",
        help="export a trained policy to ONNX for the daemon",
        description=(
            "Export the deterministic policy of a training run (a run folder or its "
            "model.zip) to an ONNX file that maps raw observations to actions, observation "
            "normalisation included, with a JSON sidecar (features, units, versions, the "
            "action-to-weights mapping, checksum). The export is checked against the SB3 "
            "policy on several hundred observations and refused beyond 1e-5. The exported "
            "policy runs with numpy and onnxruntime only (kind onnx in tierenv compare). "
            "Trust: the run's model.zip is unpickled by stable-baselines3, so export only runs "
            "you trust (your own training runs); vecnormalize.pkl is read without running code "
            "from it. Both files are written to a temporary folder beside --out and renamed "
            "into place together; --out must name an .onnx file."
        ),
    )
    p.add_argument("run", type=Path, help="training run folder (runs/train/NAME/seed_N)")
    p.add_argument(
        "--out", type=Path, default=None, help="ONNX file to write (default RUN/policy.onnx)"
    )
    p.set_defaults(handler=_export)

    from tierenv.daemon import HELP as DAEMON_HELP
    from tierenv.daemon import build_parser as build_daemon_parser

    p = sub.add_parser(
        "daemon", help="apply a policy's or controller's weights on a host", description=DAEMON_HELP
    )
    build_daemon_parser(p)
    p.set_defaults(handler=_daemon)

    p = sub.add_parser(
        "fakehost",
        help="a simulated host behind sysfs/procfs trees, to try the daemon without root",
        description=(
            "Build a simulated kernel's sys and proc trees in DIR (tierenv.host."
            "simulated_kernel) and run SCENARIO on them in real time: every control interval "
            "(divided by --speed) the weights written to DIR/sys place the simulator's pages "
            "and the interval's numa_maps, vmstat, meminfo, DAMON results, perf lines and "
            "throughput files are published. Run tierenv daemon --fake-kernel against it "
            "with the command it prints. Stops at the scenario's end or on SIGTERM/SIGINT. "
            "DIR must not lie inside /sys or /proc."
        ),
    )
    p.add_argument("dir", type=Path, help="directory for the trees (new or empty)")
    p.add_argument("--scenario", default="co-runner", help="scenario name or file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help=f"simulated seconds per second, {MIN_SPEED:g} to {MAX_SPEED:g} (default 1)",
    )
    p.set_defaults(handler=_fakehost)
    return parser


def _profiles(args: argparse.Namespace) -> int:
    from tierenv.hardware.profile import load_profile, shipped_profile_names

    if args.name:
        profile = load_profile(args.name)
        import tomli_w

        print(tomli_w.dumps(profile.to_dict()), end="")
        return 0
    print(f"{'name':28} {'kind':10} {'idle ns':>8} {'read GB/s':>10} {'2:1 GB/s':>9}  description")
    for name in shipped_profile_names():
        profile = load_profile(name)
        reads_only = float(profile.saturation_gbps(1.0))
        two_to_one = float(profile.saturation_gbps(0.75))  # MLC -W2 with RFO: 3/4 reads
        print(
            f"{name:28} {profile.kind:10} {profile.idle_latency_ns:8.1f} "
            f"{reads_only:10.1f} {two_to_one:9.1f}  {profile.description}"
        )
    return 0


_PLAIN_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def _calibrate(args: argparse.Namespace) -> int:
    from tierenv.hardware.fit import fit_profile
    from tierenv.hardware.fit_report import fit_table, plot_fit, point_table
    from tierenv.hardware.measurements import read_measurement_files
    from tierenv.hardware.profile import REMOTE_KINDS
    from tierenv.provenance import stamp

    # Every option is checked before the fit, which takes seconds to minutes.
    if args.name is not None and not _PLAIN_STEM.fullmatch(args.name):
        raise ValueError(
            f"--name {args.name!r}: not a plain file stem (letters, digits, '.', '_', '+', '-', "
            "starting with a letter or digit; no '/')"
        )
    name = args.name or args.files[0].stem
    if not _PLAIN_STEM.fullmatch(name):
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
        _check_writable(option, path, folder=False)
        for given in args.files:
            if path.exists() and given.exists() and path.samefile(given):
                raise ValueError(f"{option} {path}: is the measurement file {given}")
    if args.plot is not None and _same_place(out, args.plot):
        raise ValueError(f"--plot {args.plot}: the same file as the profile (--out)")

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
    with _staged([out] + ([args.plot] if args.plot is not None else [])) as staged:
        fit.profile.save(staged[0])
        if args.plot is not None:
            plot_fit(fit, staged[1])
    print(f"profile written to {out}")
    if args.plot is not None:
        print(f"plot written to {args.plot}")
    return 0


def _check_writable(option: str, path: Path, folder: bool) -> None:
    """Fail at once, not after minutes of work, when ``path`` cannot be written as a file
    (``folder`` False) or a folder: a file where a folder is needed or the other way round,
    a parent that is a file, or no permission to create what is missing."""
    if path.exists() and path.is_dir() != folder:
        problem = "exists and is not a folder" if folder else "is a folder; name a file"
        raise ValueError(f"{option} {path}: {problem}")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder in which the first missing part is created
    if not existing.is_dir():
        raise ValueError(f"{option} {path}: cannot be written, {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot be written, no permission in {existing}")


def _same_place(a: Path, b: Path) -> bool:
    """Whether two output paths name one file (spelled differently, or one file twice)."""
    return a.resolve() == b.resolve()


@contextmanager
def _staged(finals: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary files beside ``finals`` to write; renamed over them together when the block
    ends without an error. After an error, or a rename that fails, every final path keeps
    what it had. A kill during the renames can leave hidden ``.NAME.*`` files, never a
    half-written final file."""
    temps: list[Path] = []
    try:
        for final in finals:
            temps.append(_temp_beside(final, ".partial"))
        yield temps
        _land_together(list(zip(temps, finals, strict=True)))
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _temp_beside(final: Path, suffix: str) -> Path:
    """A new empty file in ``final``'s folder (so that a rename onto ``final`` is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def _land_together(staged: list[tuple[Path, Path]]) -> None:
    """Rename each (temporary, final) pair; if one rename fails, undo the earlier ones."""
    backups: dict[Path, Path] = {}  # final -> a copy of what it held
    done: list[Path] = []
    try:
        for _, final in staged:
            if final.exists():
                backups[final] = _temp_beside(final, ".old")
                shutil.copy2(final, backups[final])
        for temp, final in staged:
            os.replace(temp, final)
            done.append(final)
    except BaseException:
        for final in done:
            if final in backups:
                os.replace(backups.pop(final), final)
            else:
                final.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)


def _report(args: argparse.Namespace) -> int:
    from tierenv.hardware.profile import load_profile
    from tierenv.hardware.shipped import TOLERANCE, build, write_calibration_report
    from tierenv.hardware.validation import profile_difference

    if not (args.shared / "data").is_dir():
        raise ValueError(
            f"reference data not found at {args.shared / 'data'}; run from the project root "
            "next to ../shared, or pass --shared"
        )
    _check_writable("--results", args.results, folder=True)  # before the fits, not after
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
    failed |= not _write_validation(None, args.results / "validation.md")
    print("\n[3/3] done: " + ("some checks FAILED" if failed else "all fits and checks pass"))
    return 1 if failed else 0


def _validate(args: argparse.Namespace) -> int:
    names = [c.strip() for c in args.checks.split(",")] if args.checks else None
    _check_writable("--out", args.out, folder=False)  # before the checks, not after
    return 0 if _write_validation(names, args.out) else 1


def _write_validation(names: list[str] | None, out: Path) -> bool:
    """Run the checks, print and write the table; True when every prediction passes."""
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
        + "\nChecks from `../shared/reference/ddr-cxl-calibration.md` §3. Rows marked "
        "`calibrated` are model inputs set from a published number; the other rows are "
        "predictions held to the tolerance shown.\n\n" + table
    )
    write_text_atomically(out, report)
    print(f"{len(rows) - len(failed)} of {len(rows)} rows pass; report written to {out}")
    return not failed


def _interleave(args: argparse.Namespace) -> int:
    import numpy as np

    from tierenv.envs.discrete import default_levels, weight_grid
    from tierenv.hardware.profile import load_profile
    from tierenv.hardware.solver import NodeSet, solve

    if not 0 < args.mlp <= MAX_MLP:  # NaN fails too
        raise ValueError(f"--mlp {args.mlp:g}: misses in flight must be in (0, {MAX_MLP:g}]")
    if not 0 <= args.think_ns <= MAX_THINK_NS:
        raise ValueError(f"--think-ns {args.think_ns:g}: must be in [0, {MAX_THINK_NS:g}] ns")
    if args.nodes is not None:
        names = [name.strip() for name in args.nodes.split(",")]
        if len(names) < 2 or not all(names):
            raise ValueError(f"--nodes: expected two or more profile names, got {args.nodes!r}")
        labels = [f"node{i}" for i in range(len(names))]
    else:
        names, labels = [args.ddr, args.cxl], ["DDR", "CXL"]
    nodes = NodeSet([load_profile(name) for name in names])
    n_nodes = len(names)
    if args.weights is not None:
        weights = [_weight_vector(text, n_nodes) for text in args.weights]
    elif n_nodes == 2:
        if not 1 <= args.max_weight <= 255:
            raise ValueError(f"--max-weight must be a weight in 1..255, got {args.max_weight}")
        weights = [(1, 0)] + [(w, 1) for w in range(args.max_weight, 0, -1)] + [(0, 1)]
    else:
        grid, _ = weight_grid(n_nodes, default_levels(n_nodes))
        weights = [tuple(int(w) for w in row) for row in grid]
    # Row 0 is node 0 alone, the reference of the "vs" column.
    reference = (1,) + (0,) * (n_nodes - 1)
    table = np.array([reference, *weights], dtype=float)
    split = (table / table.sum(axis=1, keepdims=True))[:, None, :]
    solution = solve(nodes, args.mlp, args.think_ns, args.read_fraction, split)
    throughput = solution.throughput_gbps[:, 0]
    first = ":".join(labels) if n_nodes == 2 and args.nodes is None else "weights"
    width = max(len(first), *(len(":".join(map(str, w))) for w in weights))
    node_columns = "".join(f" {label + ' GB/s':>11} {label + ' ns':>9}" for label in labels)
    vs = f"vs {labels[0]}"
    print(f"{first:>{width}} {'GB/s':>8} {vs:>8}{node_columns}")
    for row, w in enumerate(weights, start=1):
        cells = "".join(
            f" {bw:11.1f} {lat:9.1f}"
            for bw, lat in zip(
                solution.node_bandwidth_gbps[row], solution.node_latency_ns[row], strict=True
            )
        )
        gain = 100 * (throughput[row] / throughput[0] - 1)
        label = ":".join(map(str, w))
        print(f"{label:>{width}} {throughput[row]:8.1f} {gain:+7.1f}%{cells}")
    return 0


def _weight_vector(text: str, n_nodes: int) -> tuple[int, ...]:
    """``--weights`` entry ``text`` ("3:1:1") as one weight per node, checked."""
    try:
        weights = tuple(int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"--weights: expected integers like 3:1, got {text!r}") from None
    if len(weights) != n_nodes:
        raise ValueError(f"--weights: {text!r} has {len(weights)} weights for {n_nodes} nodes")
    if any(not 0 <= w <= 255 for w in weights) or not any(weights):
        raise ValueError(f"--weights: {text!r} needs weights in 0..255, not all 0")
    return weights


def _generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierenv scenarios generate",
        description=(
            "Draw scenarios from a scenario distribution and write each as a scenario file "
            "DIR/NAME.toml (NAME = DIST-sSEED-INDEX). Scenario INDEX of a seed is the same "
            "whatever --count is. All files land together: they are written to a temporary "
            "folder that is renamed to DIR."
        ),
    )
    p.add_argument(
        "distribution",
        nargs="?",
        metavar="DIST",
        help="a shipped distribution name or a distribution file (none: list the shipped)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--count", type=int, default=10, help="scenarios to draw (default 10)")
    p.add_argument("--first", type=int, default=0, help="index of the first (default 0)")
    p.add_argument("--out", type=Path, help="folder to create (new, or empty)")
    return p


MAX_GENERATED = 10_000


def _generate(argv: list[str]) -> int:
    import os
    import shutil

    from tierenv.workload.generator import generate, load_distribution, shipped_distribution_names

    args = _generate_parser().parse_args(argv)
    if args.distribution is None:
        for name in shipped_distribution_names():
            d = load_distribution(name)
            print(f"{name:<12} {d.n_nodes} nodes  {' '.join(d.description.split())}")
        return 0
    if args.out is None:
        raise ValueError("generate: --out DIR is required (the folder to write)")
    if not 1 <= args.count <= MAX_GENERATED:
        raise ValueError(f"generate: --count must be in 1..{MAX_GENERATED}, got {args.count}")
    if args.first < 0 or args.seed < 0:
        raise ValueError("generate: --seed and --first must be >= 0")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"generate: {out} exists and is not an empty folder")
    distribution = load_distribution(args.distribution)
    drawn = generate(distribution, args.seed, args.count, args.first)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        staging.mkdir()
        for name, text in drawn:
            (staging / f"{name}.toml").write_text(text)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(drawn)} scenarios from '{distribution.name}' (seed {args.seed}) to {out}")
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    from tierenv.workload.scenario import load_scenario, shipped_scenario_names
    from tierenv.workload.units import format_size

    if args.name == "generate":
        return _generate(args.rest)
    if args.rest:
        raise ValueError(f"unexpected arguments after the scenario: {' '.join(args.rest)}")
    if args.name is None:
        for name in shipped_scenario_names():
            scenario = load_scenario(name)
            summary = " ".join(scenario.description.split())
            print(f"{name:<20} {scenario.duration_s:>5.0f} s  {summary}")
        return 0
    scenario = load_scenario(args.name)
    print(f"{scenario.name}: {' '.join(scenario.description.split())}")
    print(
        f"duration {scenario.duration_s:g} s, control interval {scenario.control_interval_s:g} s, "
        f"pages of {format_size(scenario.page_size)}"
    )
    for i, node in enumerate(scenario.nodes):
        print(
            f"  node{i}: {node.profile.name} ({node.profile.kind}), "
            f"{format_size(node.capacity_bytes)}"
        )
    for run in scenario.apps:
        app = run.app
        until = f"{run.stop_s:g}" if run.stop_s is not None else "end"
        notes = ""
        if run.bind_node is not None:
            notes += f", bound to node{run.bind_node} (unmanaged)"
        if not run.in_reward:
            notes += ", not in the reward"
        print(
            f"  {app.name}: {format_size(app.working_set_bytes)} "
            f"{app.distribution.kind}, mlp {app.mlp:g}, think {app.think_ns:g} ns, "
            f"reads {app.read_fraction:.0%}, runs {run.start_s:g} s to {until}{notes}"
        )
    for traffic in scenario.traffic:
        until = f"{traffic.stop_s:g}" if traffic.stop_s is not None else "end"
        print(
            f"  background traffic on node{traffic.node}: {traffic.gbps:g} GB/s, "
            f"reads {traffic.read_fraction:.0%}, {traffic.start_s:g} s to {until}"
        )
    for event in scenario.events:
        changes = []
        if event.intensity is not None:
            changes.append(f"intensity {event.intensity:g}")
        if event.hot_offset is not None:
            changes.append(f"hot set moves to {event.hot_offset:g}")
        if event.think_ns is not None:
            changes.append(f"think {event.think_ns:g} ns")
        if event.read_fraction is not None:
            changes.append(f"reads {event.read_fraction:.0%}")
        print(f"  at {event.at_s:g} s: {event.app}: {', '.join(changes)}")
    damos = scenario.damos
    if not damos.enabled:
        print("  DAMOS migrate_hot: off")
    else:
        quota = (
            "unlimited"
            if damos.quota_bytes_per_s == 0
            else f"{format_size(damos.quota_bytes_per_s)}/s"
        )
        print(
            f"  DAMOS migrate_hot: quota {quota}, "
            f"hot above {damos.min_access_percent:g} % of samples"
        )
    variation = scenario.variation
    if not variation.active:
        print("  runs vary: no (every seed runs the scenario as written)")
    else:
        print(
            f"  runs vary per seed: moments by up to {variation.arrival_jitter_s:g} s, "
            f"phase intensity spread {variation.intensity_spread:g}, "
            f"zipf layout {'per run' if variation.layout else 'fixed'}"
        )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from tierenv.sim.run import plot, simulate, table
    from tierenv.workload.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    try:
        weights = [int(w) for w in args.weights.split(":")]
    except ValueError:
        raise ValueError(f"--weights: expected integers like 3:1, got {args.weights!r}") from None
    if len(weights) != len(scenario.nodes):
        raise ValueError(
            f"--weights: {scenario.name} has {len(scenario.nodes)} nodes, got {len(weights)} "
            f"weights ({args.weights})"
        )

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            print(
                f"\rsimulating {scenario.name}: {done}/{total} intervals",
                end="",
                file=sys.stderr,
                flush=True,
            )
            if done == total:
                print(file=sys.stderr)

    label = "-".join(str(w) for w in weights)
    path = args.plot or Path("results") / "simulate" / f"{scenario.name}-{label}.png"
    _check_writable("--plot", path, folder=False)  # before the simulation, not after
    trace = simulate(scenario, weights, seed=args.seed, progress=progress)
    print(table(trace, every=max(args.every, 1)))
    print(f"mean weighted speedup {trace.mean_weighted_speedup():.3f}")
    plot(trace, path)
    print(f"plot written to {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from tierenv.envs.bench import run_benchmark
    from tierenv.files import write_text_atomically
    from tierenv.provenance import stamp

    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    batch_sizes = _batch_sizes(args.batch_sizes)
    _check_writable("--out", args.out, folder=False)  # before minutes of timing
    tables = run_benchmark(args.scenarios or None, args.repeats, batch_sizes, args.batched_scenario)
    print(tables)
    command = " ".join(["tierenv bench", *args.scenarios])
    write_text_atomically(
        args.out, "# Environment speed (`tierenv bench`)\n\n" + stamp(command) + "\n" + tables
    )
    print(f"written to {args.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import dataclasses

    from experiments.compare.command import compare_to_folder
    from experiments.compare.config import load_config

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    config = load_config(args.config)
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
        seeds = tuple(range(args.seeds))
        config = dataclasses.replace(
            config,
            seeds=seeds,
            timeseries_seed=(
                config.timeseries_seed
                if config.timeseries_seed is None or config.timeseries_seed in seeds
                else 0
            ),
        )
    out = args.out or Path("results") / "compare" / config.name
    tensorboard = (
        None
        if args.no_tensorboard
        else (args.tensorboard or Path("runs") / "compare" / config.name)
    )
    _check_writable("--out", out, folder=True)  # before the trials, not after
    if tensorboard is not None:
        _check_writable("--tensorboard", tensorboard, folder=True)
    command = f"tierenv compare {args.config}"  # what reproduces the numbers
    if args.seeds is not None:
        command += f" --seeds {args.seeds}"
    if args.out is not None:
        command += f" --out {args.out}"
    summary = compare_to_folder(
        config,
        out,
        command=command,
        tensorboard_dir=tensorboard,
        workers=args.workers,
        use_ray=args.ray,
        ray_address=args.ray_address,
        show_progress=not args.quiet,
        fresh=args.fresh,
    )
    print(summary.table)
    print(f"results: {out}/ (summary.md, episodes.csv, steps.csv.gz, *.png)")
    if tensorboard is not None:
        print(f"TensorBoard: tensorboard --logdir {tensorboard.parent}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from agents.training import load_config, train

    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(part) for part in args.seeds.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--seeds: {args.seeds!r} is not a comma-separated list") from None
    _check_writable("--runs", args.runs, folder=True)
    runs = train(
        load_config(args.config),
        seeds=seeds,
        out_root=args.runs,
        workers=args.workers,
        resume=args.resume,
        progress=not args.quiet,
    )
    for run in runs:
        print(f"trained: {run}")
    print(f"TensorBoard: tensorboard --logdir {args.runs}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from agents.training import load_config
    from agents.training.tune import tune

    if args.out is not None:
        _check_writable("--out", args.out, folder=False)  # before the trials, not after
    command = f"tierenv tune {args.config} --trials {args.trials}"
    if args.timesteps is not None:
        command += f" --timesteps {args.timesteps}"
    result = tune(
        load_config(args.config),
        n_trials=args.trials,
        timesteps=args.timesteps,
        out=args.out,
        seed=args.seed,
        progress=not args.quiet,
        command=command,
    )
    print(result.report)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from experiments.demo import run_demo

    # Training takes minutes: a bad folder must fail before it, not after.
    _check_writable("--out", args.out, folder=True)
    _check_writable("--runs", args.runs, folder=True)
    run_demo(out=args.out, runs=args.runs, workers=args.workers, progress=not args.quiet)
    return 0


def _daemon(args: argparse.Namespace) -> int:
    from tierenv.daemon import run_daemon

    return run_daemon(args)


def _fakehost(args: argparse.Namespace) -> int:
    from tierenv.host.simulated_kernel import run_fakehost

    return run_fakehost(args.dir, args.scenario, args.seed, args.speed)


def _export(args: argparse.Namespace) -> int:
    from agents.export import export_policy

    run = args.run.parent if args.run.suffix == ".zip" else args.run
    exported = export_policy(args.run, args.out or run / "policy.onnx")
    print(f"policy:  {exported.onnx}")
    print(f"sidecar: {exported.sidecar}")
    print(f"largest action difference from the SB3 policy: {exported.max_action_difference:.1e}")
    return 0


def _speed(text: str) -> float:
    """``fakehost --speed``: a number in [MIN_SPEED, MAX_SPEED] (NaN and infinity refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 5, got {text!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"simulated seconds per second must be in [{MIN_SPEED:g}, {MAX_SPEED:g}], got {text!r}"
        )
    return value


def _batch_sizes(text: str) -> list[int]:
    """``--batch-sizes``: positive integers separated by commas; empty or 0 means none."""
    sizes = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        if not part.isdigit():
            raise ValueError(f"--batch-sizes: {part!r} is not a whole number of envs")
        if int(part) > 0:
            sizes.append(int(part))
    return sizes


if __name__ == "__main__":
    sys.exit(main())
