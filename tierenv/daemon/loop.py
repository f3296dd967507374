"""The daemon's control loop: measure, decide, check, rate-limit, apply; always put back.

Safety rules, and why:

* Before anything is written, a journal (:mod:`tierenv.daemon.journal`) records the original
  weights, the auto switch and the kdamond index we are about to use; a journal left by a
  crashed run is restored from first. So a SIGKILL at any point is undone by the next start.
  A corrupt journal is renamed aside (``<journal>.corrupt-N``, evidence) and logged with
  ``restored: false``; starts are refused while it is there, since the weights in force may
  be the crashed run's and must not be taken for the originals.
* Weights go through :meth:`WeightedInterleave.write_weights` (a transaction: a refused write
  puts the nodes already written back), then the kdamond's ``dests`` are committed only when
  they changed. If the commit fails the weights are put back too, so pages allocated from now
  on and pages DAMOS migrates keep following the same weights.
* A decision is never trusted: an exception in ``decide``, non-finite or out-of-range output
  keeps the safe weights (the last ones applied, at first the originals) and is logged.
* ``max_change_per_interval`` (see :mod:`tierenv.daemon.ratelimit`) bounds how far the weight
  shares move per interval.
* A controller that also chooses the DAMOS quota (``Controller.damos_quota``) has it committed
  to our migrate_hot scheme when it changes (whole pages per window, at most
  ``MAX_QUOTA_BYTES_PER_S``); a refused commit puts the old quota back and is logged. The
  quota lives in our kdamond only, which is removed at exit, so there is nothing to restore.
* On SIGTERM/SIGINT, an unexpected exception or after ``max_intervals``: the weights and auto
  switch are restored, our kdamond is stopped and removed, and the journal deleted (kept if the
  restore failed, so the next start retries).
* ``dry_run`` writes nothing to sysfs and no journal; the log says what would be written.
* One daemon per sysfs root (:mod:`tierenv.daemon.lock`): a second one is refused before it
  reads the first one's live journal as a crash's.
* The journal follows every change of our kdamond (staging, new targets), written before and
  after each change, so whatever the crash point, the next start recognises it as ours.
* The journal, log, status and lock files are never created inside the real /sys or /proc
  (:func:`tierenv.host.sysfs.refuse_real_tree`), opt-in or not.

Our kdamond has one vaddr context whose targets are the live ``pids``, with the scheme
``DamosSetup().context`` gives (``migrate_hot`` with dests equal to the interleave weights) and
a match-all ``stat`` scheme whose tried regions show DAMON's whole view to the metrics. When the
set of live processes changes, the targets are committed anew; when all of them exit, the
kernel stops the kdamond, and it is staged and started again once one is back.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from tierenv.contracts.controller import ControlContext, Controller
from tierenv.contracts.measurements import Measurements, NodeInfo
from tierenv.daemon.journal import (
    Journal,
    atomic_write_json,
    recover,
    remove_journal,
    write_journal,
)
from tierenv.daemon.lock import RootLock
from tierenv.daemon.log import JsonLog
from tierenv.daemon.ratelimit import limit_shares, share_change
from tierenv.damon.config import ContextConfig, Scheme, Target
from tierenv.host.damon import (
    KDAMONDS,
    Features,
    Kdamond,
    KdamondError,
    MissingFeatureError,
    probe,
)
from tierenv.host.interleave import InterleaveState, InterleaveWriteError, WeightedInterleave
from tierenv.host.sysfs import SysfsError, SysfsRoot, refuse_real_tree
from tierenv.memory.interleave import WeightError, check_weights
from tierenv.sim.damos_setup import DamosSetup

#: The largest DAMOS quota a controller may ask for (bytes/s): far above any memory's
#: bandwidth, so only a broken controller meets it.
MAX_QUOTA_BYTES_PER_S = 1 << 40
#: Our scheme's quota is whole base pages per window (the kernel charges whole regions).
QUOTA_PAGE_BYTES = resource.getpagesize()


class DaemonError(RuntimeError):
    """The daemon cannot start or continue safely; the message says why and what to do."""


def summarize(m: Measurements) -> dict[str, Any]:
    """The few numbers a decision log needs (the full arrays stay with the metric source)."""
    return {
        "time_s": m.time_s,
        "interval_s": m.interval_s,
        "weights": m.weights,
        "node_bandwidth_gbps": m.node_bandwidth_gbps,
        "node_latency_ns": m.node_latency_ns,
        "app_throughput_gbps": float(np.sum(m.app_throughput_gbps)),
        "n_apps": len(m.app_names),
        "pgmigrate_success": m.pgmigrate_success,
        "pgmigrate_fail": m.pgmigrate_fail,
    }


class Daemon:
    """Runs ``controller`` against the host under ``root``; see the module docstring.

    ``measure`` returns the interval that just ended; ``clock`` and ``sleep`` are injectable
    so tests run instantly. ``status_path`` (optional) gets an atomic JSON status after each
    decision. ``reuse_kdamond``: an idle kdamond index to use instead of adding one.
    ``use_damos=False`` (or a kernel without DAMON sysfs) sets weights only. ``pids`` is a
    list or a function giving the managed processes alive now. ``on_kdamond(kdamond,
    monitor_scheme)`` is told whenever our kdamond starts or restarts (the metrics read it).
    """

    def __init__(
        self,
        root: SysfsRoot,
        controller: Controller,
        measure: Callable[[], Measurements],
        nodes: NodeInfo,
        interval_s: float,
        journal_path: str | Path,
        pids: Sequence[int] | Callable[[], Sequence[int]],
        dry_run: bool = False,
        max_change_per_interval: float | None = None,
        log: Callable[..., Any] | None = None,
        status_path: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        damos: DamosSetup | None = None,
        use_damos: bool = True,
        reuse_kdamond: int | None = None,
        max_consecutive_errors: int = 10,
        on_kdamond: Callable[[Kdamond | None, int | None], None] | None = None,
    ) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be a finite number of seconds > 0, got {interval_s}")
        if max_change_per_interval is not None and not 0 < max_change_per_interval <= 1:
            raise ValueError(
                f"max_change_per_interval must be in (0, 1], got {max_change_per_interval}"
            )
        if use_damos and not callable(pids) and not pids:
            raise ValueError("pids: give at least one process for our kdamond to monitor")
        self.root = root
        self.controller = controller
        self.measure = measure
        self.nodes = nodes
        self.interval_s = float(interval_s)
        self.journal_path = refuse_real_tree(journal_path, "the daemon's journal")
        self._pids = pids
        self.pids = self.live_pids()
        self.on_kdamond = on_kdamond
        self.dry_run = dry_run
        self.max_change = max_change_per_interval
        self.log = log if log is not None else JsonLog(clock=clock)
        self.status_path = (
            refuse_real_tree(status_path, "the daemon's status file")
            if status_path is not None
            else None
        )
        self.lock = RootLock(root.path)
        self.clock = clock
        self.sleep = sleep if sleep is not None else self._interruptible_sleep
        self.damos = damos if damos is not None else DamosSetup()
        self.use_damos = use_damos
        self.reuse_kdamond = reuse_kdamond
        self.max_consecutive_errors = max_consecutive_errors
        self.wi = WeightedInterleave(root)
        self.original: InterleaveState | None = None
        self.kdamond: Kdamond | None = None
        self.journal: Journal | None = None  # what the journal file says now
        self.journaled = False
        self.unrecovered: str | None = None  # why a crash journal was not restored
        self.applied: np.ndarray | None = None  # weights in force (safe fallback)
        self.dests: np.ndarray | None = None  # dests last committed
        self.features: Features | None = None
        self.started_at = 0.0
        self.intervals = 0
        self.counts = dict.fromkeys(
            ("decisions", "applied", "unchanged", "fallbacks", "errors", "rate_limited"), 0
        )
        self.last_decision: dict[str, Any] | None = None
        self._stop = threading.Event()
        self.stop_reason: str | None = None

    # -- stopping ----------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the loop to finish after the current step (signal-safe: only sets a flag)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)

    def _interruptible_sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    # -- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Lock the root, recover from a crash journal, probe, journal, snapshot and start
        our kdamond."""
        self.started_at = self.clock()
        self.acquire_lock()
        try:
            recover(self.root, self.journal_path, self.log, dry_run=self.dry_run)
        except Exception as error:
            # This run changed nothing, but the crashed run's changes are still in force:
            # "stopped" must not report the host restored.
            self.unrecovered = f"recovery: {error}"
            raise
        self.features = features = probe(self.root)
        if not features.weighted_interleave:
            raise DaemonError(features.missing["weighted_interleave"])
        if self.use_damos and not features.damon_sysfs:
            self.log("warning", message=features.missing["damon_sysfs"] + "; weights only")
            self.use_damos = False
        self.original = self.wi.snapshot()
        node_ids = sorted(self.original.weights)
        if node_ids != list(range(self.nodes.n_nodes)):
            raise DaemonError(
                f"the kernel has weight files for nodes {node_ids} but the controller's node "
                f"info has {self.nodes.n_nodes} nodes ({', '.join(self.nodes.names)})"
            )
        self.applied = np.array([self.original.weights[n] for n in node_ids], dtype=np.int64)
        index = self._planned_index() if self.use_damos else None
        self.pids = self.live_pids()  # processes may have come and gone since construction
        journal = Journal(
            sysfs_root=str(self.root.path),
            weights=dict(self.original.weights),
            auto=self.original.auto,
            auto_name=self.wi.auto_name(),
            kdamond_index=index,
            kdamond_reused=self.reuse_kdamond is not None,
            target_pids=self.pids,
            kdamond_staging=index is not None,
            started_at=self.started_at,
        )
        if self.dry_run:
            self.log("dry_run", would_write_journal=str(self.journal_path), **journal.to_json())
        else:
            write_journal(self.journal_path, journal)
            self.journal = journal
            self.journaled = True
        if self.use_damos:
            self._start_kdamond()
        if self.kdamond is not None:  # it runs: with the journaled targets, or the pending
            self._journal(target_pids=self.pids, pending_target_pids=None, kdamond_staging=False)
        elif index is not None:
            self._journal(kdamond_index=None, kdamond_staging=False)  # weights only
        if self.kdamond is not None:  # now vaddr and dests can be seen without writing
            self.features = features = probe(self.root)
        self.log("features", complete=features.complete, missing=features.missing)
        self.controller.reset(
            ControlContext(
                nodes=self.nodes, interval_s=self.interval_s, initial_weights=self.applied.copy()
            )
        )
        self.log(
            "started",
            controller=self.controller.describe(),
            original_weights=self.original.weights,
            auto=self.original.auto,
            kdamond=self.kdamond.index if self.kdamond else index,
            pids=self.pids,
            dry_run=self.dry_run,
            interval_s=self.interval_s,
            max_change_per_interval=self.max_change,
            lock=str(self.lock.path),
            stale_lock_owner=self.lock.previous_owner,
        )
        self._write_status("running")

    def live_pids(self) -> tuple[int, ...]:
        return tuple(int(p) for p in (self._pids() if callable(self._pids) else self._pids))

    def acquire_lock(self) -> None:
        """Take this sysfs root's lock (a dry run only checks that no daemon holds it);
        raises :class:`~tierenv.daemon.lock.LockHeldError` naming the live owner."""
        if self.dry_run:
            self.lock.check_free()
            return
        if self.lock.held:
            return
        self.lock.acquire()  # a killed daemon's pid left in the file goes in "started"

    def _journal(self, **changes: Any) -> None:
        """Rewrite the journal with ``changes`` (atomically); before and after every change of
        our kdamond, so a crash at any point leaves a journal that recognises it."""
        if not self.journaled or self.journal is None:
            return
        self.journal = dataclasses.replace(self.journal, **changes)
        write_journal(self.journal_path, self.journal)

    def _planned_index(self) -> int:
        if self.reuse_kdamond is not None:
            return self.reuse_kdamond
        return self.root.read_int(f"{KDAMONDS}/nr_kdamonds")

    MONITOR_SCHEME = 1  # index of the match-all stat scheme in our context

    def _context(self, weights: np.ndarray) -> ContextConfig:
        ctx = self.damos.context(self.pids[0], weights.tolist())
        return dataclasses.replace(
            ctx,
            targets=tuple(Target(pid=p) for p in self.pids),
            schemes=(*ctx.schemes, Scheme(action="stat")),
        )

    def _start_kdamond(self) -> None:
        assert self.applied is not None
        if not self.pids:
            raise DaemonError("none of the managed processes is running; nothing to monitor")
        ctx = self._context(self.applied)
        if self.dry_run:
            self.log("dry_run", would_start_kdamond=self._planned_index(), dests=self.applied)
            self.dests = self.applied.copy()
            return
        try:
            self.kdamond = Kdamond.create(self.root, reuse_idle=self.reuse_kdamond)
            self._launch_following(self.kdamond, ctx)
        except MissingFeatureError as error:
            # An older kernel: interleave weights still work; DAMOS cannot follow them.
            self.log("warning", message=f"{error}; continuing with weights only (no DAMOS)")
            if self.kdamond is not None:
                self.kdamond.remove()
                self.kdamond = None
            self.use_damos = False
            return
        except SysfsError as error:
            if error.errno == errno.EINVAL and not self.live_pids():
                raise DaemonError(
                    "none of the managed processes is running; nothing to monitor (they "
                    f"exited while our kdamond started: {error})"
                ) from error
            hint = ""
            if error.errno == errno.EBUSY:
                hint = " (DAMON is busy: see the message for DAMON_STAT; nothing was changed)"
            raise DaemonError(f"could not start our kdamond: {error}{hint}") from error
        except KdamondError as error:
            raise DaemonError(f"could not create our kdamond: {error}") from error

    LAUNCH_ATTEMPTS = 5

    def _launch_following(self, kd: Kdamond, ctx: ContextConfig) -> None:
        """:meth:`_launch`, staged again for the live processes when ``state on`` failed with
        EINVAL because a target exited in between (the kernel checks the pids at ``on``)."""
        for attempt in range(1, self.LAUNCH_ATTEMPTS + 1):
            try:
                self._launch(kd, ctx)
                return
            except SysfsError as error:
                live = self.live_pids()
                if error.errno != errno.EINVAL or not live or live == self.pids:
                    raise
                if attempt == self.LAUNCH_ATTEMPTS:
                    raise
                self.log("kdamond", note=f"a target exited while starting; staging {list(live)}")
                # The files hold self.pids; before they change, the journal allows both.
                self._journal(target_pids=self.pids, pending_target_pids=live)
                self.pids = live
                assert self.applied is not None  # set by setup
                ctx = self._context(self.applied)

    def _launch(self, kd: Kdamond, ctx: ContextConfig) -> None:
        """Stage and start ``kd``; its dests are then the weights in force."""
        assert self.applied is not None
        kd.stage(ctx)
        kd.start()
        self.dests = self.applied.copy()
        if self.on_kdamond is not None:
            self.on_kdamond(kd, self.MONITOR_SCHEME)

    def follow_targets(self) -> str | None:
        """Keep our kdamond's targets the live processes; returns a note when it acted."""
        live = self.live_pids()
        kd = self.kdamond
        if kd is None or self.dry_run:
            return None
        try:
            if not kd.is_on():
                if not live:
                    return None
                # The files hold self.pids (the stopped run's, or a failed restart's).
                self._journal(target_pids=self.pids, pending_target_pids=live, kdamond_staging=True)
                self.pids = live
                assert self.applied is not None  # set by setup
                self._launch_following(kd, self._context(self.applied))
                self._journal(
                    target_pids=self.pids, pending_target_pids=None, kdamond_staging=False
                )
                return f"kdamond {kd.index} had stopped; restarted for pids {list(self.pids)}"
            if live and set(live) != set(self.pids):
                self._journal(target_pids=self.pids, pending_target_pids=live)
                kd.set_targets(live)
                self.pids = live
                self._journal(target_pids=live, pending_target_pids=None)
                return f"kdamond {kd.index} now monitors pids {list(live)}"
        except (KdamondError, SysfsError) as error:
            # The journal keeps both target lists: the files hold one of them, or part of one.
            return f"could not update kdamond {kd.index} targets to {list(live)}: {error}"
        return None

    # -- one interval ------------------------------------------------------------------------

    def _asked(self, m: Measurements) -> tuple[np.ndarray | None, str | None]:
        """The controller's weights, or (None, why) when they must not be used."""
        try:
            raw = self.controller.decide(m)
        except Exception as error:  # any policy failure falls back
            return None, f"decide raised {type(error).__name__}: {error}"
        values = np.asarray(raw, dtype=float)
        if values.shape != (self.nodes.n_nodes,):
            return None, f"decide returned shape {values.shape}, expected ({self.nodes.n_nodes},)"
        if not np.all(np.isfinite(values)):
            return None, f"decide returned non-finite weights {values.tolist()}"
        try:
            return check_weights(np.rint(values).astype(np.int64), self.nodes.n_nodes), None
        except WeightError as error:
            return None, f"decide returned invalid weights {values.tolist()}: {error}"

    def step(self) -> dict[str, Any]:
        """Measure, decide and apply once; returns (and logs) the decision record."""
        assert self.applied is not None
        self.intervals += 1
        record: dict[str, Any] = {"interval": self.intervals, "dry_run": self.dry_run}
        if self.use_damos:
            note = self.follow_targets()
            if note:
                record["kdamond"] = note
        try:
            m = self.measure()
        except Exception as error:  # a missing sample must not stop the host
            self.counts["errors"] += 1
            record.update(error=f"measure raised {type(error).__name__}: {error}")
            record.update(applied=self.applied, changed=False)
            return self._finish(record)
        record["measurements"] = summarize(m)
        self.counts["decisions"] += 1
        asked, fallback = self._asked(m)
        record["asked"] = asked
        try:
            record.update(self.controller.log_fields())
        except Exception as error:  # a log hook must not stop the host either
            record["log_fields_error"] = f"{type(error).__name__}: {error}"
        if asked is None:
            self.counts["fallbacks"] += 1
            record.update(fallback=fallback, applied=self.applied, changed=False)
            return self._finish(record)
        quota = self._apply_quota()
        if quota is not None:
            record["damos_quota"] = quota
            if "error" in quota:
                self.counts["errors"] += 1
        target = asked
        if self.max_change is not None:
            target = limit_shares(self.applied, asked, self.max_change)
            if not np.array_equal(target, asked):
                self.counts["rate_limited"] += 1
                record["rate_limited"] = True
        record["share_change"] = share_change(self.applied, target)
        if np.array_equal(target, self.applied):
            self.counts["unchanged"] += 1
            record.update(applied=self.applied, changed=False)
            return self._finish(record)
        failure = self.apply(target)
        if failure:
            self.counts["errors"] += 1
            record["error"] = failure
        else:
            self.counts["applied"] += 1
        record.update(applied=self.applied, changed=failure is None)
        return self._finish(record)

    def _apply_quota(self) -> dict[str, Any] | None:
        """The controller's DAMOS quota request committed to our scheme when it changes
        (kept in ``self.damos`` too, so a restarted kdamond gets it); what was done, or None
        when nothing was asked or changed."""
        try:
            asked = self.controller.damos_quota()
        except Exception as error:  # a policy failure must not stop the host
            return {"error": f"damos_quota raised {type(error).__name__}: {error}"}
        if asked is None or not self.use_damos:
            return None
        if (
            isinstance(asked, bool)
            or not isinstance(asked, int | np.integer)
            or not 0 <= asked <= MAX_QUOTA_BYTES_PER_S
        ):
            return {
                "error": f"damos_quota returned {asked!r}; expected whole bytes/s in "
                f"0..{MAX_QUOTA_BYTES_PER_S} (0: unlimited); the quota stays"
            }
        per_window = self.damos.quota_per_window(int(asked), QUOTA_PAGE_BYTES)
        if per_window == self.damos.quota_bytes:
            return None
        done = {"bytes_per_s": int(asked), "quota_bytes": per_window}
        if self.dry_run:
            self.log("dry_run", would_set_quota_bytes=per_window)
        elif self.kdamond is not None:
            try:
                self.kdamond.set_quota(per_window)
            except (KdamondError, SysfsError) as error:
                return {**done, "error": f"quota commit failed, the old one stays: {error}"}
        self.damos = dataclasses.replace(self.damos, quota_bytes=per_window)
        return done

    def apply(self, target: np.ndarray) -> str | None:
        """Write ``target`` and commit the dests; on failure the previous weights stay."""
        assert self.applied is not None
        previous = self.applied
        if self.dry_run:
            self.log("dry_run", would_write_weights=target, would_commit_dests=self.use_damos)
            self.applied = target.copy()
            return None
        try:
            self.wi.write_weights(target)
        except InterleaveWriteError as error:
            if not error.restored:
                raise DaemonError(f"weights are in an unknown state: {error}") from error
            return str(error)
        if self.kdamond is not None and (
            self.dests is None or not np.array_equal(target, self.dests)
        ):
            try:
                self.kdamond.set_dests(target.tolist())
            except (KdamondError, SysfsError) as error:
                try:
                    self.wi.write_weights(previous)
                except InterleaveWriteError as undo:
                    raise DaemonError(
                        f"dests commit failed ({error}) and the weights could not be put back "
                        f"({undo})"
                    ) from error
                return f"dests commit failed, weights put back to {previous.tolist()}: {error}"
            self.dests = target.copy()
        self.applied = target.copy()
        return None

    def _finish(self, record: dict[str, Any]) -> dict[str, Any]:
        record.setdefault("fallback", None)
        record.setdefault("error", None)
        self.last_decision = self.log("decision", **record)
        self._write_status("running")
        return record

    def _write_status(self, state: str) -> None:
        if self.status_path is None:
            return
        atomic_write_json(
            self.status_path,
            {
                "state": state,
                "pid": os.getpid(),
                "started_at": self.started_at,
                "updated_at": self.clock(),
                "intervals": self.intervals,
                "counts": self.counts,
                "last_decision": self.last_decision,
                "dry_run": self.dry_run,
                "stop_reason": self.stop_reason,
                "kdamond": self.kdamond.index if self.kdamond else None,
            },
        )

    # -- teardown ----------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Stop and remove our kdamond, restore the weights and auto switch, then delete the
        journal (kept when something could not be restored). Returns the failures, a crash
        journal left unrestored at start among them."""
        failures: list[str] = [] if self.unrecovered is None else [self.unrecovered]
        if self.kdamond is not None:
            try:
                self.kdamond.remove()
                self.kdamond = None
            except (SysfsError, KdamondError) as error:
                failures.append(f"kdamond: {error}")
        if self.original is not None and not self.dry_run:
            try:
                self.wi.restore(self.original)
            except (InterleaveWriteError, SysfsError) as error:
                failures.append(f"weights: {error}")
        if self.journaled and not failures:
            remove_journal(self.journal_path)
            self.journaled = False
            self.journal = None
        self.lock.release()  # a kept journal is restored by the next daemon to take the lock
        self.log(
            "stopped",
            reason=self.stop_reason,
            restored=not failures,
            failures=failures,
            journal_kept=self.journaled,
            intervals=self.intervals,
            counts=self.counts,
        )
        return failures

    # -- run ---------------------------------------------------------------------------------

    def run(self, max_intervals: int | None = None, handle_signals: bool = True) -> int:
        """Run until a signal, an error or ``max_intervals`` decisions; always tear down.
        Returns 0 on a clean stop, 1 when an error stopped the daemon or restoring failed."""
        previous: dict[signal.Signals, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        code = 0
        try:
            self.setup()
            errors_in_row = 0
            while not self._stop.is_set():
                if max_intervals is not None and self.intervals >= max_intervals:
                    self.request_stop(f"max_intervals={max_intervals}")
                    break
                self.sleep(self.interval_s)
                if self._stop.is_set():
                    break
                record = self.step()
                errors_in_row = errors_in_row + 1 if record["error"] else 0
                if errors_in_row >= self.max_consecutive_errors:
                    raise DaemonError(
                        f"{errors_in_row} consecutive errors; last: {record['error']}"
                    )
        except Exception as error:  # whatever happens, the host is put back
            code = 1
            self.request_stop(f"error: {type(error).__name__}: {error}")
            self.log("error", message=str(error), type=type(error).__name__)
        finally:
            if self.teardown():
                code = 1
            self._write_status("stopped")
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code
