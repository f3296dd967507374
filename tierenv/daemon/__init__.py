"""``tierenv daemon``: apply a controller's interleave weights on a real host, safely.

The safety core lives here (journal, control loop, rate limit, JSON log); the metric sources
are injected (``sources``), so the loop can be tested against ``FakeKernel`` trees.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tierenv.contracts.controller import ControlContext, Controller
from tierenv.contracts.measurements import NodeInfo
from tierenv.daemon.journal import DEFAULT_JOURNAL, Journal, read_journal, recover
from tierenv.daemon.lock import LockHeldError, RootLock
from tierenv.daemon.log import JsonLog
from tierenv.daemon.loop import MAX_QUOTA_BYTES_PER_S, QUOTA_PAGE_BYTES, Daemon, DaemonError
from tierenv.daemon.ratelimit import limit_shares
from tierenv.host.page_nodes import PAGE_NODE_KINDS, page_node_query
from tierenv.host.sysfs import SysfsRoot, default_proc_root, refuse_real_tree
from tierenv.sim.damos_setup import DamosSetup
from tierenv.workload.units import parse_size

if TYPE_CHECKING:
    from tierenv.host.collector import HostMetrics

__all__ = [
    "DEFAULT_JOURNAL",
    "Daemon",
    "DaemonError",
    "Journal",
    "JsonLog",
    "LockHeldError",
    "RootLock",
    "Sources",
    "build_parser",
    "check_controller_fits",
    "check_controller_resets",
    "check_output_file",
    "host_metrics",
    "limit_shares",
    "main",
    "read_journal",
    "recover",
]

#: Given the sysfs root and the parsed arguments, the host's metrics (``HostMetrics`` or
#: anything with its methods); ``host_metrics`` is the default, reading the real host's files.
Sources = Callable[[SysfsRoot, argparse.Namespace], "HostMetrics"]


HELP = """Run a controller on this host: every interval, measure, decide and apply the
interleave weights (and our kdamond's migrate_hot dests). Before changing anything the original
weights, the auto switch and our kdamond are journaled; a journal left by a crash is restored
first. On SIGTERM/SIGINT, an error or --max-intervals, everything is put back. One daemon runs
per sysfs root (a second is refused). The real /sys is used only with
TIERENV_ALLOW_REAL_SYSFS=1, and the journal, log and status files are never written inside
/sys or /proc. Learned policies run only as exported ONNX/JSON pairs (--policy): the daemon
never loads training run folders, whose pickles could run code as root."""

#: The controllers a daemon may run with --controller: they load no files (an exported
#: policy comes through --policy or kind onnx, which reads only the ONNX/JSON pair).
DAEMON_CONTROLLERS = ("static", "kernel-auto", "caption", "bwap", "colloid", "onnx")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The daemon's options (pass a subparser to add them to a CLI)."""
    p = parser or argparse.ArgumentParser(prog="tierenv daemon", description=HELP)
    p.add_argument("--sysfs-root", required=True, help="the sysfs tree, /sys on a real host")
    p.add_argument(
        "--proc-root", type=Path,
        help="the procfs tree (default: proc next to the sysfs root, /proc for /sys)",
    )  # fmt: skip
    p.add_argument(
        "--fake-kernel", action="store_true",
        help="the sysfs root is a tierenv fake/simulated kernel tree (tierenv fakehost): "
        "writes are checked and acted on as the kernel would",
    )  # fmt: skip
    p.add_argument(
        "--host-config", type=Path, required=True,
        help="host config TOML: node profiles, managed apps, perf events (see README)",
    )  # fmt: skip
    p.add_argument(
        "--page-nodes", choices=PAGE_NODE_KINDS, default="move_pages",
        help="which node holds each DAMON region's pages: move_pages(2) samples (exact), "
        "numa_maps (an estimate from VMAs) or none (no hotness features)",
    )  # fmt: skip
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--policy", type=Path, help="an exported policy (.onnx with .json)")
    which.add_argument(
        "--controller",
        help=f"a controller kind: {', '.join(DAEMON_CONTROLLERS)} (parameters with --param)",
    )
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=JSON",
        help="a controller parameter, e.g. weights=[3,1] (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--guard", nargs="?", const="true", metavar="JSON",
        help="run the policy under a floor guard that falls back to the kernel's auto weights "
        "(or fixed weights: \"fallback\": [250, 1]) on loads where it measurably loses "
        '(agents.controllers.guard); settings as JSON, e.g. \'{"margin": 0.03, "probe_s": 8}\'',
    )  # fmt: skip
    p.add_argument(
        "--interval", type=_positive_seconds, default=1.0, help="control interval, seconds"
    )
    p.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL, help="crash journal path")
    p.add_argument("--log", type=Path, help="JSON-lines decision log (default: stdout)")
    p.add_argument("--status", type=Path, help="status file, rewritten atomically each interval")
    p.add_argument(
        "--dry-run", action="store_true", help="log what would be written, write nothing"
    )
    p.add_argument(
        "--max-change", type=_share, metavar="SHARE",
        help="largest change of any node's weight share per interval, in (0, 1] (e.g. 0.1)",
    )  # fmt: skip
    p.add_argument("--max-intervals", type=_positive_count, help="stop after this many decisions")
    p.add_argument(
        "--reuse-kdamond", type=_kdamond_index, metavar="INDEX", help="use this idle kdamond"
    )
    p.add_argument("--no-damos", action="store_true", help="set weights only, no kdamond")
    p.add_argument(
        "--damos-quota", type=_quota_rate, default="200 MiB",
        metavar="SIZE",
        help="our migrate_hot scheme's quota per second, e.g. '200 MiB' (the default, damo's "
        "recipe), '1 GiB' or 0 (no quota); a policy trained with quota_action changes it",
    )  # fmt: skip
    return p


def _controller(args: argparse.Namespace):
    import json

    from agents.controllers import make_controller

    guard = _guard(args.guard)
    if args.policy is not None:
        return make_controller("onnx", path=args.policy, guard=guard)
    if args.controller not in DAEMON_CONTROLLERS:
        why = {
            "sb3": "it loads a training run's model.zip and vecnormalize.pkl, pickles that can "
            "run any code (as root on a host); export the run on a machine you trust with "
            "'tierenv export RUN --out policy.onnx' and pass --policy policy.onnx",
        }.get(args.controller, "it is not a deployable controller")
        raise ValueError(
            f"--controller {args.controller}: refused, {why}. The daemon runs: "
            f"{', '.join(DAEMON_CONTROLLERS)}"
        )
    params = {}
    for item in args.param:
        name, equals, value = item.partition("=")
        if not name or not equals:
            raise ValueError(f"--param {item!r}: expected NAME=JSON, e.g. weights=[3,1]")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"--param {item!r}: value {value!r} is not JSON ({err.msg}, column {err.colno})"
            ) from None
    if "guard" in params:
        raise ValueError("--param guard=...: use --guard")
    return make_controller(args.controller, guard=guard, **params)


def _guard(text: str | None) -> object:
    """``--guard``'s settings: None (no guard), true, or a JSON mapping."""
    import json

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"--guard {text!r}: not JSON ({err.msg}, column {err.colno}); give a mapping such "
            "as '{\"margin\": 0.03}' or no value"
        ) from None
    if value is False:
        return None
    if value is not True and not isinstance(value, dict):
        raise ValueError(f"--guard {text!r}: expected a JSON mapping of guard settings")
    return value


#: The longest control interval the daemon takes (a day): beyond it a typo, not a choice.
MAX_INTERVAL_S = 86_400.0
#: The shortest (a millisecond, a fifth of DAMON's default sampling interval): below it the
#: loop only spins, and per-interval rates divide by almost nothing.
MIN_INTERVAL_S = 0.001


def _positive_seconds(text: str) -> float:
    """An ``--interval``: a finite number of seconds in (0, MAX_INTERVAL_S]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds such as 1 or 0.5, got {text!r}"
        ) from None
    if not (math.isfinite(value) and 0 < value <= MAX_INTERVAL_S):
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds in (0, {MAX_INTERVAL_S:g}], got {text!r}"
        )
    if value < MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_INTERVAL_S:g} s (a control interval, not a busy loop), "
            f"got {text!r}"
        )
    return value


def _share(text: str) -> float:
    """A ``--max-change``: a share of the weights in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share such as 0.1, got {text!r}") from None
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text!r}")
    return value


def _whole_number(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (``what`` names it in errors)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} is at least {minimum}, got {value}")
        return value

    return parse


def _quota_rate(text: str) -> int:
    """A ``--damos-quota``: bytes per second as a size ("200 MiB", "1 GiB", 1048576; 0: none),
    at most ``MAX_QUOTA_BYTES_PER_S``."""
    try:
        value = parse_size(text.strip())
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"expected a size per second such as '200 MiB' or 0 (no quota), got {text!r}"
        ) from None
    if not 0 <= value <= MAX_QUOTA_BYTES_PER_S:
        raise argparse.ArgumentTypeError(
            f"must be 0 (no quota) up to {MAX_QUOTA_BYTES_PER_S} bytes per second, got {text!r}"
        )
    return int(value)


_kdamond_index = _whole_number(0, "a kdamond index")  # --reuse-kdamond
_positive_count = _whole_number(1, "a whole number")  # --max-intervals


def main(argv: Sequence[str] | None = None, sources: Sources | None = None) -> int:
    """Parse ``argv`` (see :func:`build_parser`), build the daemon and run it; returns the
    exit code (0 clean stop, 1 error or incomplete restore, 2 usage/setup error)."""
    args = build_parser().parse_args(argv)
    return run_daemon(args, sources)


def damos_setup(bytes_per_s: int) -> DamosSetup:
    """damo's recipe with our quota (whole base pages per window, as the loop sets it)."""
    setup = DamosSetup()
    per_window = setup.quota_per_window(int(bytes_per_s), QUOTA_PAGE_BYTES)
    return dataclasses.replace(setup, quota_bytes=per_window)


def _sysfs_root(args: argparse.Namespace) -> SysfsRoot:
    if not args.fake_kernel:
        return SysfsRoot(args.sysfs_root)
    from tierenv.host.fake_kernel import FakeKernel

    sysfs = Path(args.sysfs_root)
    if sysfs.name != "sys":
        raise ValueError(f"--fake-kernel: expected the tree's sys directory, got {sysfs}")
    return FakeKernel.attach(sysfs.parent).root


def host_metrics(root: SysfsRoot, args: argparse.Namespace) -> HostMetrics:
    """The real host's metrics for ``args`` (the default ``Sources``)."""
    from tierenv.host.collector import HostMetrics
    from tierenv.host.config import load_host_config

    proc_root = SysfsRoot(args.proc_root) if args.proc_root else default_proc_root(root)
    config = load_host_config(args.host_config)
    page_nodes = page_node_query(args.page_nodes, proc_root, config.page_size)
    return HostMetrics(root, proc_root, config, page_nodes, interval_s=args.interval)


def check_controller_fits(controller: Controller, metrics: HostMetrics, use_damos: bool) -> None:
    """Refuse, before anything is written, a policy made for another node count or needing
    features this host cannot measure (``Controller.needs``; a guard's include its policy's)."""
    needs = controller.needs()
    if needs.n_nodes is not None and needs.n_nodes != metrics.config.n_nodes:
        raise ValueError(
            f"the policy is for {needs.n_nodes} memory nodes; {metrics.config.source} lists "
            f"{metrics.config.n_nodes}"
        )
    missing = metrics.unavailable_groups(use_damos)
    needed = [group for group in needs.feature_groups if group in missing]
    if needed:
        raise ValueError(
            "the policy observes feature groups this host cannot measure: "
            + "; ".join(f"{group} needs {missing[group]}" for group in needed)
        )


def check_output_file(option: str, path: Path, writes: bool = True) -> None:
    """Refuse, before anything is written, a journal, log or status path the daemon could not
    use: one inside the real /sys or /proc, a folder, one under a file, or (``writes``) one
    in a folder it may not write. Found only later, the run would fail after it journaled
    and changed the host, or with a raw traceback."""
    path = refuse_real_tree(path, f"the {option} file")
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; name a file")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder in which the first missing part is created
    if not existing.is_dir():
        raise ValueError(f"{option} {path}: cannot be written, {existing} is not a folder")
    if writes and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: cannot be written, no permission in {existing}")


def check_controller_resets(controller: object, nodes: NodeInfo, interval_s: float) -> None:
    """Reset ``controller`` for this host once before anything is written, so that a parameter
    that does not fit the host (``weights`` for another node count) is a usage error, not a
    failure after the journal was written and the kdamond started. The daemon resets it again
    with the original weights when it starts."""
    reset = getattr(controller, "reset", None)
    if reset is None:
        return
    ones = np.ones(nodes.n_nodes, dtype=np.int64)  # valid weights on any host
    reset(ControlContext(nodes=nodes, interval_s=interval_s, initial_weights=ones))


def _not_text(args: argparse.Namespace, error: UnicodeDecodeError) -> str:
    """The error for an input file that is not UTF-8 text, naming it: the decoder's own
    message names no file. The candidates are the files the daemon reads at start."""
    candidates = [getattr(args, "host_config", None)]
    policy = getattr(args, "policy", None)
    if policy is not None:
        candidates += [Path(policy), Path(policy).with_suffix(".json")]
    for path in filter(None, candidates):
        try:
            with open(path, "rb") as handle:
                handle.read(MAX_TEXT_CHECKED).decode("utf-8")
        except UnicodeDecodeError as bad:
            if Path(path).suffix == ".onnx" or bad.end >= MAX_TEXT_CHECKED - 4:
                continue  # a binary format (its sidecar is the text), or a character cut
            return (
                f"{path}: not a UTF-8 text file (byte 0x{bad.object[bad.start]:02x} at offset "
                f"{bad.start})"
            )
        except OSError:
            continue
    return f"a file it read is not UTF-8 text ({error})"


MAX_TEXT_CHECKED = 16 << 20  # bytes of an input file read to find the one that is not text


def run_daemon(args: argparse.Namespace, sources: Sources | None = None) -> int:
    """Run the daemon for already-parsed ``args`` (for a CLI that adds :func:`build_parser`'s
    options to its own subparser). ``sources`` replaces :func:`host_metrics` (tests).

    Everything that can be checked is checked before anything is written: a bad option,
    file or controller parameter is one line on stderr and exit 2, never a traceback."""
    metrics = None
    log = None
    try:
        # A dry run reads the journal (a crash's) but writes none: no permission needed.
        check_output_file("--journal", Path(args.journal), writes=not args.dry_run)
        for option, path in (("--log", args.log), ("--status", args.status)):
            if path is not None:
                check_output_file(option, Path(path))
        root = _sysfs_root(args)
        controller = _controller(args)
        metrics = (sources or host_metrics)(root, args)
        nodes = metrics.node_info()
        check_controller_fits(controller, metrics, not args.no_damos)
        check_controller_resets(controller, nodes, args.interval)
        log = JsonLog(args.log)
        daemon = Daemon(
            root, controller, metrics.measure, nodes, args.interval, args.journal,
            metrics.live_pids,
            dry_run=args.dry_run, max_change_per_interval=args.max_change, log=log,
            status_path=args.status, use_damos=not args.no_damos,
            reuse_kdamond=args.reuse_kdamond, on_kdamond=metrics.attach_kdamond,
            damos=damos_setup(args.damos_quota),
        )  # fmt: skip
    except Exception as error:  # reported as a usage/setup error
        message = _not_text(args, error) if isinstance(error, UnicodeDecodeError) else error
        print(f"tierenv daemon: {message}", file=sys.stderr)
        if log is not None:
            log.close()
        if metrics is not None:
            metrics.close()
        return 2
    try:
        try:
            daemon.acquire_lock()  # before anything is read as a crash's journal
        except (LockHeldError, OSError) as error:
            print(f"tierenv daemon: {error}", file=sys.stderr)
            log("refused", message=str(error))
            return 2
        return daemon.run(max_intervals=args.max_intervals)
    finally:
        log.close()
        metrics.close()
