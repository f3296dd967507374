"""The env's real-host backend: the ``Host`` protocol on a machine's sysfs/procfs.

``gymnasium.make("tierenv/WeightedInterleave-v0", backend="host", sysfs_root=...,
host_config=...)`` drives a :class:`RealHost`, built from a :class:`HostOptions` (the env's
``host_options``, or its host arguments given one by one). It reuses the daemon's safety core
(:class:`tierenv.daemon.Daemon`): the journal written before any change, transactional weight
writes with the DAMOS dests committed alongside, our own kdamond following the live
processes, and everything restored by :meth:`RealHost.close` (``env.close()``), or by the next
start after a crash. Each ``step`` waits one control interval (``wait``; real time by default)
and measures what the host shows; there is no ground truth, so the reward needs each app's
``reference_gbps`` in the host config.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierenv.contracts.controller import ControlContext, Controller
from tierenv.contracts.measurements import Measurements, NodeInfo, StepResult
from tierenv.daemon.journal import DEFAULT_JOURNAL
from tierenv.daemon.log import JsonLog
from tierenv.daemon.loop import Daemon
from tierenv.host.collector import HostMetrics
from tierenv.host.config import AppConfig, HostConfig, load_host_config
from tierenv.host.page_nodes import PageNodeQuery, page_node_query
from tierenv.host.sysfs import SysfsRoot, default_proc_root


class _EnvDecides(Controller):
    """The daemon core's controller slot when the env's agent decides (never asked)."""

    kind = "env"
    privileged = False

    def reset(self, context: ControlContext) -> None:
        pass

    def decide(self, measurements: Measurements) -> np.ndarray:
        raise AssertionError("the env applies weights itself")

    def describe(self) -> str:
        return "gymnasium env agent"


@dataclasses.dataclass(frozen=True)
class HostOptions:
    """What a :class:`RealHost` is built from: its arguments, with the same names and
    defaults (``RealHost.from_options``). The env takes one as ``host_options`` (or a mapping
    of these names, or the fields as keyword arguments of their own, with ``backend="host"``).

    ``sysfs_root`` and ``host_config`` are required: the tree to drive (``"/sys"`` on a real
    machine) and the host config naming the applications (``tierenv.host.config``).
    ``proc_root`` defaults to the procfs beside ``sysfs_root``; ``interval_s`` is the control
    interval; ``journal`` the file written before any change (what a crashed run restores
    from); ``page_nodes`` how a region's pages are located (a ``--page-nodes`` name or a
    ``PageNodeQuery``); ``use_damos`` runs our kdamond with the ``migrate_hot`` scheme;
    ``wait(seconds)`` lets one interval pass; ``log_path`` a JSON-lines log (none by
    default); ``pids`` extra processes to manage, without a throughput metric.
    """

    sysfs_root: SysfsRoot | str | Path
    host_config: HostConfig | str | Path
    proc_root: SysfsRoot | str | Path | None = None
    interval_s: float = 1.0
    journal: str | Path = DEFAULT_JOURNAL
    page_nodes: PageNodeQuery | str | None = "move_pages"
    use_damos: bool = True
    wait: Callable[[float], None] = time.sleep
    log_path: str | Path | None = None
    pids: Sequence[int] = ()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def of(cls, options: HostOptions | Mapping[str, Any], **more: Any) -> HostOptions:
        """``options`` (a ``HostOptions`` or a mapping of option names) with ``more`` on top;
        an unknown name or a missing ``sysfs_root``/``host_config`` raises ``TypeError``
        naming it."""
        given = dict(options.arguments() if isinstance(options, HostOptions) else options)
        given.update(more)
        unknown = sorted(set(given) - set(cls.names()), key=str)
        if unknown:
            raise TypeError(
                f"unknown host option(s) {', '.join(map(repr, unknown))}; host options: "
                f"{', '.join(cls.names())}"
            )
        missing = [name for name in ("sysfs_root", "host_config") if name not in given]
        if missing:
            raise TypeError(
                f"the host backend needs {' and '.join(missing)} (host options: "
                f"{', '.join(cls.names())})"
            )
        return cls(**given)

    def arguments(self) -> dict[str, Any]:
        """The options as ``RealHost``'s keyword arguments (the values themselves: unlike
        ``dataclasses.asdict``, the host config, the page query and the trees are not
        copied)."""
        return {name: getattr(self, name) for name in self.names()}


class RealHost:
    """See the module docstring. ``wait(seconds)`` lets one interval pass (``time.sleep``;
    the simulated kernel's tests pass its ``advance``)."""

    def __init__(
        self,
        sysfs_root: SysfsRoot | str | Path,
        host_config: HostConfig | str | Path,
        proc_root: SysfsRoot | str | Path | None = None,
        interval_s: float = 1.0,
        journal: str | Path = DEFAULT_JOURNAL,
        page_nodes: PageNodeQuery | str | None = "move_pages",
        use_damos: bool = True,
        wait: Callable[[float], None] = time.sleep,
        log_path: str | Path | None = None,
        pids: Sequence[int] = (),
    ) -> None:
        self.root = sysfs_root if isinstance(sysfs_root, SysfsRoot) else SysfsRoot(sysfs_root)
        if proc_root is None:
            proc = default_proc_root(self.root)
        else:
            proc = proc_root if isinstance(proc_root, SysfsRoot) else SysfsRoot(proc_root)
        config = (
            host_config if isinstance(host_config, HostConfig) else load_host_config(host_config)
        )
        if pids:  # extra processes to manage, without a throughput metric
            extra = tuple(AppConfig(f"pid{p}", int(p), None, None) for p in pids)
            config = dataclasses.replace(config, apps=config.apps + extra)
        if isinstance(page_nodes, str):  # a --page-nodes name
            page_nodes = page_node_query(page_nodes, proc, config.page_size)
        self.config = config
        self.wait = wait
        self.metrics = HostMetrics(self.root, proc, config, page_nodes, interval_s=interval_s)
        self._node_info = self.metrics.node_info()
        self._log = JsonLog(log_path) if log_path is not None else JsonLog(Path("/dev/null"))
        self.core = Daemon(
            self.root, _EnvDecides(), self.metrics.measure, self._node_info, interval_s,
            journal, self.metrics.live_pids, log=self._log, use_damos=use_damos,
            on_kdamond=self.metrics.attach_kdamond,
        )  # fmt: skip
        self._started = False
        self._time = 0.0
        self.references = {
            app.name: app.reference_gbps for app in config.apps if app.reference_gbps is not None
        }

    @classmethod
    def from_options(cls, options: HostOptions) -> RealHost:
        """The host ``options`` describe."""
        return cls(**options.arguments())

    # -- Host protocol -------------------------------------------------------------------------

    @property
    def node_info(self) -> NodeInfo:
        return self._node_info

    @property
    def control_interval_s(self) -> float:
        return self.core.interval_s

    @property
    def time_s(self) -> float:
        return self._time

    @property
    def done(self) -> bool:
        return False  # a host runs on; TimeLimit (max_episode_steps) ends episodes

    @property
    def weights(self) -> np.ndarray:
        if self.core.applied is None:
            return np.array(
                [self.core.wi.read_weights()[n] for n in range(self._node_info.n_nodes)]
            )
        return self.core.applied.copy()

    def set_weights(self, weights: list[int] | np.ndarray) -> None:
        """Write the weights (and commit them as dests); a refused write raises with the
        previous weights kept."""
        self._start()
        target = np.asarray(weights, dtype=np.int64)
        if self.core.applied is not None and np.array_equal(target, self.core.applied):
            return
        error = self.core.apply(target)
        if error:
            raise RuntimeError(f"host refused weights {target.tolist()}: {error}")

    def set_damos_quota(self, bytes_per_s: int) -> None:
        """Our migrate_hot scheme's quota (bytes per second; 0 unlimited), committed."""
        self._start()
        core = self.core
        per_window = core.damos.quota_per_window(bytes_per_s, self.config.page_size)
        # Kept in the setup too, so a kdamond restarted later gets the same quota.
        core.damos = dataclasses.replace(core.damos, quota_bytes=per_window)
        if core.kdamond is not None and core.kdamond.is_on():
            core.kdamond.set_quota(per_window)

    def begin(self) -> StepResult:
        """A real host's applications already run with their pages placed: the state before
        the first decision is one measured interval under the weights in force."""
        return self.step()

    def step(self) -> StepResult:
        self._start()
        self.wait(self.core.interval_s)
        self.core.follow_targets()
        measurements = self.metrics.measure()
        self._time = measurements.time_s
        return StepResult(measurements, None)

    def reference_gbps(self, app_names: tuple[str, ...]) -> np.ndarray:
        """The host config's ``reference_gbps`` of each named application; ``ValueError``
        for one without."""
        missing = [name for name in app_names if name not in self.references]
        if missing:
            raise ValueError(
                f"{self.config.source}: apps {missing} have no reference_gbps; the reward "
                "(weighted speedup) needs each app's throughput alone on idle local memory"
            )
        return np.array([self.references[name] for name in app_names])

    # -- lifecycle -------------------------------------------------------------------------------

    def _start(self) -> None:
        if not self._started:
            self.core.setup()
            self._started = True

    def close(self) -> list[str]:
        """Restore the weights and auto switch and remove our kdamond; returns failures."""
        failures: list[str] = []
        if self._started:
            self.core.request_stop("env closed")
            failures = self.core.teardown()
            self._started = False
        self.metrics.close()
        self._log.close()
        return failures
