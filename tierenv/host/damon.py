"""Our own kdamond in ``/sys/kernel/mm/damon/admin/kdamonds``: build, start, commit, stop, remove.

Kernel rules this follows (mm/damon/sysfs.c, mm/damon/sysfs-schemes.c;
Documentation/admin-guide/mm/damon/usage.rst):

* Writing any ``nr_*`` file destroys and recreates *all* children with default values, and
  writing ``nr_kdamonds`` returns EBUSY while any kdamond runs. Adding a kdamond therefore
  resets every other kdamond directory. We add ours only when that loses nothing: no kdamond
  directory exists, or all existing ones are off and hold no context. Otherwise we refuse, unless
  the caller explicitly names an idle kdamond to reuse (which also loses nothing).
* Access-pattern files default to 0 (matching nothing) and ``target_nid`` to -1, so every bound
  is written explicitly.
* Write order follows damo (``src/_damon_sysfs.py``): ``refresh_ms``, then per context
  ``operations`` → monitoring attrs → ``addr_unit`` → targets → schemes; per scheme
  access_pattern → action → dests → quotas → watermarks → target_nid → filters →
  apply_interval_us. ``state on`` last.
* New weights go to ``dests/*/weight`` followed by ``commit``; a failed commit leaves the
  running context unchanged in the kernel, so the files are put back to match it.
* Dest node ids are not range-checked by the kernel (an invalid node means no migration), so
  they are checked against ``devices/system/node/has_memory`` when that file exists.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tierenv.damon.config import ContextConfig, Dest, Scheme
from tierenv.host.interleave import WeightedInterleave
from tierenv.host.sysfs import SysfsError, SysfsRoot

KDAMONDS = "kernel/mm/damon/admin/kdamonds"
HAS_MEMORY = "devices/system/node/has_memory"

EBUSY_ON_HINT = (
    "'state on' returned EBUSY: another DAMON user runs exclusively, most likely the DAMON_STAT "
    "module (Debian 6.17+ enables it by default: echo N > "
    "/sys/module/damon_stat/parameters/enabled, or boot with damon_stat.enabled=N), or this "
    "kdamond is already on"
)


class KdamondError(RuntimeError):
    """Our kdamond cannot be created or driven without disturbing others, or is misused."""


class MissingFeatureError(KdamondError):
    """The kernel lacks what the staged configuration needs (operations, action, dests)."""


def parse_node_list(text: str) -> list[int]:
    """``0-1,3`` (the kernel's node-list format) as [0, 1, 3]."""
    nodes: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        nodes.extend(range(int(low), int(high or low) + 1))
    return nodes


# --- Probing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """What this kernel offers the real-host backend. ``None`` means it could not be seen
    without writing (no kdamond directory with a context/scheme to inspect)."""

    weighted_interleave: bool
    auto_file: str | None
    damon_sysfs: bool
    vaddr: bool | None
    dests: bool | None
    avail_operations: tuple[str, ...] | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def auto(self) -> bool:
        return self.auto_file is not None

    @property
    def complete(self) -> bool:
        """Everything the weighted-dests backend needs (auto mode is optional)."""
        return bool(self.weighted_interleave and self.damon_sysfs and self.vaddr and self.dests)

    def explain(self) -> str:
        if not self.missing:
            return "all features present"
        return "\n".join(f"{name}: {why}" for name, why in self.missing.items())


def _inspectable(root: SysfsRoot) -> tuple[str | None, str | None]:
    """A context dir and a scheme dir of any existing kdamond, to read feature files from."""
    context = scheme = None
    for index in _kdamond_indices(root):
        contexts = f"{KDAMONDS}/{index}/contexts"
        if context is None and root.exists(f"{contexts}/0"):
            context = f"{contexts}/0"
        if scheme is None and root.exists(f"{contexts}/0/schemes/0"):
            scheme = f"{contexts}/0/schemes/0"
    return context, scheme


def probe(root: SysfsRoot, scratch: bool = False) -> Features:
    """Report which features exist, reading files only. With ``scratch=True`` and no kdamond
    directory at all, a temporary kdamond/context/scheme is created to see ``avail_operations``
    and ``dests`` (as damo does) and removed again; never when other kdamonds exist."""
    missing: dict[str, str] = {}
    wi = WeightedInterleave(root)
    wi_present = wi.present
    auto_file = wi.auto_name() if wi_present else None
    if not wi_present:
        missing["weighted_interleave"] = (
            "no kernel/mm/mempolicy/weighted_interleave: weighted interleave needs Linux 6.9+ "
            "with CONFIG_NUMA; interleave weights cannot be set"
        )
    elif auto_file is None:
        missing["auto"] = (
            "no auto (or __auto_type) switch: kernels before 6.16 have manual weights only "
            "(optional; nothing to turn off)"
        )
    damon_sysfs = root.exists(f"{KDAMONDS}/nr_kdamonds")
    vaddr = dests = None
    avail: tuple[str, ...] | None = None
    if not damon_sysfs:
        missing["damon_sysfs"] = (
            "no kernel/mm/damon/admin/kdamonds: the kernel lacks CONFIG_DAMON_SYSFS; pages "
            "already allocated cannot be migrated to follow the weights"
        )
    else:
        created = False
        context, scheme = _inspectable(root)
        if scratch and context is None and not _kdamond_indices(root):
            root.write(f"{KDAMONDS}/nr_kdamonds", 1)
            root.write(f"{KDAMONDS}/0/contexts/nr_contexts", 1)
            root.write(f"{KDAMONDS}/0/contexts/0/schemes/nr_schemes", 1)
            created = True
            context, scheme = f"{KDAMONDS}/0/contexts/0", f"{KDAMONDS}/0/contexts/0/schemes/0"
        try:
            if context is not None and root.exists(f"{context}/avail_operations"):
                avail = tuple(root.read(f"{context}/avail_operations").split())
                vaddr = "vaddr" in avail
            if scheme is not None:
                dests = root.exists(f"{scheme}/dests")
        finally:
            if created:
                root.write(f"{KDAMONDS}/nr_kdamonds", 0)
        if vaddr is None:
            missing["vaddr"] = (
                "unknown: no kdamond context to read avail_operations from (probe with "
                "scratch=True, or after building our kdamond)"
            )
        elif not vaddr:
            missing["vaddr"] = (
                f"avail_operations is {' '.join(avail or ()) or 'empty'}: the kernel lacks "
                "CONFIG_DAMON_VADDR; weighted dests need vaddr (paddr ignores dests)"
            )
        if dests is None:
            missing["dests"] = (
                "unknown: no kdamond scheme to look for a dests directory in (probe with "
                "scratch=True, or after building our kdamond)"
            )
        elif not dests:
            missing["dests"] = (
                "schemes have no dests directory: multi-destination migration needs Linux "
                "6.17+; only a single target_nid is possible"
            )
    return Features(
        weighted_interleave=wi_present,
        auto_file=auto_file,
        damon_sysfs=damon_sysfs,
        vaddr=vaddr,
        dests=dests,
        avail_operations=avail,
        missing=missing,
    )


# --- Our kdamond ------------------------------------------------------------------------------


def _kdamond_indices(root: SysfsRoot) -> list[int]:
    return list(range(root.read_int(f"{KDAMONDS}/nr_kdamonds")))


def _is_on(root: SysfsRoot, index: int) -> bool:
    return root.read(f"{KDAMONDS}/{index}/state").strip() == "on"


def _is_empty_and_off(root: SysfsRoot, index: int) -> bool:
    kd = f"{KDAMONDS}/{index}"
    return not _is_on(root, index) and root.read_int(f"{kd}/contexts/nr_contexts") == 0


class Kdamond:
    """A kdamond this process owns. Build it with :meth:`create`; nothing else is touched."""

    def __init__(self, root: SysfsRoot, index: int, created: bool) -> None:
        self.root = root
        self.index = index
        self.created = created  # True: we added the directory; False: an idle one was reused
        self.path = f"{KDAMONDS}/{index}"

    @classmethod
    def create(cls, root: SysfsRoot, reuse_idle: int | None = None) -> Kdamond:
        """Add a kdamond directory for us, or reuse the idle kdamond ``reuse_idle`` (its staged
        configuration is overwritten: pass it only for a directory you know is free).

        Adding is done only when no other kdamond would lose anything (see module doc).
        """
        if not root.exists(f"{KDAMONDS}/nr_kdamonds"):
            raise KdamondError(
                f"{root.path}/{KDAMONDS} does not exist: the kernel lacks CONFIG_DAMON_SYSFS"
            )
        existing = _kdamond_indices(root)
        if reuse_idle is not None:
            if reuse_idle not in existing:
                raise KdamondError(f"kdamond {reuse_idle} does not exist (have {existing})")
            if _is_on(root, reuse_idle):
                raise KdamondError(f"kdamond {reuse_idle} is running; it is not ours to reuse")
            return cls(root, reuse_idle, created=False)
        running = [i for i in existing if _is_on(root, i)]
        if running:
            raise KdamondError(
                f"kdamond(s) {running} already run on this host. Adding a kdamond means writing "
                "nr_kdamonds, which the kernel refuses (EBUSY) while any kdamond runs and which "
                "would recreate every kdamond directory with defaults. Leave them alone: stop "
                "them yourself, or reuse an idle kdamond directory (the daemon's --reuse-kdamond "
                "INDEX)"
            )
        staged = [i for i in existing if not _is_empty_and_off(root, i)]
        if staged:
            raise KdamondError(
                f"kdamond(s) {staged} are off but hold a configuration; writing nr_kdamonds to "
                "add ours would reset them to defaults. Reuse one explicitly (the daemon's "
                "--reuse-kdamond INDEX) if it is free, or clear it yourself"
            )
        index = len(existing)
        root.write(f"{KDAMONDS}/nr_kdamonds", index + 1)
        return cls(root, index, created=True)

    # -- state ---------------------------------------------------------------------------------

    def is_on(self) -> bool:
        return _is_on(self.root, self.index)

    def pid(self) -> int:
        return self.root.read_int(f"{self.path}/pid")

    def _state(self, command: str) -> None:
        hints = {errno.EBUSY: EBUSY_ON_HINT} if command == "on" else None
        self.root.write(f"{self.path}/state", command, hints)

    def start(self) -> None:
        """``state on``: the kernel builds the context from the files and checks it (EINVAL)."""
        self._state("on")

    def stop(self) -> None:
        """``state off`` if running (writing off to a stopped kdamond is an error)."""
        if self.is_on():
            self._state("off")

    def remove(self) -> None:
        """Stop, then remove what we created: the kdamond directory if we added it and nothing
        else appeared since; otherwise only our context (an empty, idle kdamond remains)."""
        self.stop()
        indices = _kdamond_indices(self.root)
        others = [i for i in indices if i != self.index]
        if (
            self.created
            and indices[-1:] == [self.index]
            and all(_is_empty_and_off(self.root, i) for i in others)
        ):
            self.root.write(f"{KDAMONDS}/nr_kdamonds", self.index)
        elif self.index in indices:
            self.root.write(f"{self.path}/contexts/nr_contexts", 0)

    # -- configuration -------------------------------------------------------------------------

    def stage(self, ctx: ContextConfig, refresh_ms: int | None = None) -> None:
        """Write ``ctx`` into our (stopped) kdamond in damo's order; ``refresh_ms`` (6.17+)
        makes the kernel refresh stats periodically."""
        if self.is_on():
            raise KdamondError(f"kdamond {self.index} is running; stop it before staging")
        for scheme in ctx.schemes:
            self._check_dests(scheme.dests)
        root, kd = self.root, self.path
        if refresh_ms is not None:
            self._write_optional(f"{kd}/refresh_ms", refresh_ms, 0, "refresh_ms needs 6.17+")
        root.write(f"{kd}/contexts/nr_contexts", 1)  # recreates the context with defaults
        c = f"{kd}/contexts/0"
        if root.exists(f"{c}/avail_operations"):
            avail = root.read(f"{c}/avail_operations").split()
            if ctx.operations not in avail:
                raise MissingFeatureError(
                    f"this kernel's DAMON offers operations {avail}, not {ctx.operations!r} "
                    "(CONFIG_DAMON_VADDR)"
                )
        root.write(f"{c}/operations", ctx.operations)
        self._write_attrs(c, ctx)
        self._write_optional(f"{c}/addr_unit", ctx.addr_unit, 1, "addr_unit needs 6.18+")
        root.write(f"{c}/targets/nr_targets", len(ctx.targets))
        for t_index, target in enumerate(ctx.targets):
            t = f"{c}/targets/{t_index}"
            root.write(f"{t}/pid_target", target.pid)
            root.write(f"{t}/regions/nr_regions", len(target.regions))
            for r_index, (start, end) in enumerate(target.regions):
                root.write(f"{t}/regions/{r_index}/start", start)
                root.write(f"{t}/regions/{r_index}/end", end)
        root.write(f"{c}/schemes/nr_schemes", len(ctx.schemes))
        for s_index, scheme in enumerate(ctx.schemes):
            self._write_scheme(f"{c}/schemes/{s_index}", scheme)

    def _write_attrs(self, c: str, ctx: ContextConfig) -> None:
        attrs, m = ctx.attrs, f"{c}/monitoring_attrs"
        self.root.write(f"{m}/intervals/sample_us", attrs.sample_us)
        self.root.write(f"{m}/intervals/aggr_us", attrs.aggr_us)
        self.root.write(f"{m}/intervals/update_us", attrs.update_us)
        goal, g = attrs.intervals_goal, f"{m}/intervals/intervals_goal"
        if self.root.exists(g):
            for name in ("access_bp", "aggrs", "min_sample_us", "max_sample_us"):
                self.root.write(f"{g}/{name}", getattr(goal, name))
        elif goal.aggrs:
            raise KdamondError("intervals_goal (interval auto-tuning) needs Linux 6.15+")
        self.root.write(f"{m}/nr_regions/min", attrs.min_nr_regions)
        self.root.write(f"{m}/nr_regions/max", attrs.max_nr_regions)

    def _write_scheme(self, s: str, scheme: Scheme) -> None:
        root = self.root
        pattern = scheme.access_pattern
        for name in ("sz", "nr_accesses", "age"):  # every bound: the defaults (0) match nothing
            bounds = getattr(pattern, name)
            root.write(f"{s}/access_pattern/{name}/min", bounds.min)
            root.write(f"{s}/access_pattern/{name}/max", bounds.max)
        try:
            root.write(f"{s}/action", scheme.action)
        except SysfsError as error:
            if error.errno != errno.EINVAL:
                raise
            raise MissingFeatureError(
                f"this kernel does not know action {scheme.action!r} (migrate_hot/cold need "
                "6.11+, and vaddr migration 6.17+)"
            ) from error
        if scheme.dests or root.exists(f"{s}/dests"):
            if not root.exists(f"{s}/dests"):
                raise MissingFeatureError(
                    "this kernel's schemes have no dests directory: weighted multi-destination "
                    "migration needs Linux 6.17+"
                )
            self._write_dests(s, scheme.dests, write_count=True)
        q = scheme.quotas
        root.write(f"{s}/quotas/ms", q.ms)
        root.write(f"{s}/quotas/bytes", q.bytes)
        root.write(f"{s}/quotas/reset_interval_ms", q.reset_interval_ms)
        for name in ("sz_permil", "nr_accesses_permil", "age_permil"):
            root.write(f"{s}/quotas/weights/{name}", getattr(q, name))
        root.write(f"{s}/quotas/goals/nr_goals", len(q.goals))
        for g_index, goal in enumerate(q.goals):
            g = f"{s}/quotas/goals/{g_index}"
            root.write(f"{g}/target_metric", goal.target_metric)
            root.write(f"{g}/target_value", goal.target_value)
            root.write(f"{g}/current_value", goal.current_value)
            self._write_optional(f"{g}/nid", goal.nid, -1, "quota goal nid needs 6.16+")
        w = scheme.watermarks
        for name in ("metric", "interval_us", "high", "mid", "low"):
            root.write(f"{s}/watermarks/{name}", getattr(w, name))
        self._write_optional(f"{s}/target_nid", scheme.target_nid, -1, "target_nid needs 6.11+")
        filters = f"{s}/core_filters" if root.exists(f"{s}/core_filters") else f"{s}/filters"
        root.write(f"{filters}/nr_filters", len(scheme.filters))
        for f_index, flt in enumerate(scheme.filters):
            f = f"{filters}/{f_index}"
            root.write(f"{f}/type", flt.type)
            root.write(f"{f}/matching", "Y" if flt.matching else "N")
            self._write_optional(f"{f}/allow", "Y" if flt.allow else "N", "N", "allow: 6.14+")
            if flt.type == "addr":
                root.write(f"{f}/addr_start", flt.addr_start)
                root.write(f"{f}/addr_end", flt.addr_end)
            else:
                root.write(f"{f}/damon_target_idx", flt.target_idx)
        root.write(f"{s}/apply_interval_us", scheme.apply_interval_us)

    def _write_optional(self, rel: str, value: object, default: object, why: str) -> None:
        """Write a file newer kernels have; a non-default value on an older kernel is an error."""
        if self.root.exists(rel):
            self.root.write(rel, value)
        elif value != default:
            raise KdamondError(f"{rel} does not exist but {value!r} is needed: {why}")

    # -- dests ---------------------------------------------------------------------------------

    def _check_dests(self, dests: Sequence[Dest]) -> None:
        if not dests or not self.root.exists(HAS_MEMORY):
            return
        nodes = parse_node_list(self.root.read(HAS_MEMORY))
        bad = [d.id for d in dests if d.id not in nodes]
        if bad:
            raise KdamondError(
                f"dest node(s) {bad} have no memory (has_memory: {nodes}); the kernel would "
                "accept them and silently migrate nothing"
            )

    def _write_dests(self, s: str, dests: Sequence[Dest], write_count: bool) -> None:
        if write_count:
            self.root.write(f"{s}/dests/nr_dests", len(dests))
        for index, dest in enumerate(dests):
            self.root.write(f"{s}/dests/{index}/id", dest.id)
            self.root.write(f"{s}/dests/{index}/weight", dest.weight)

    def read_dests(self, scheme: int = 0) -> list[Dest]:
        d = f"{self.path}/contexts/0/schemes/{scheme}/dests"
        count = self.root.read_int(f"{d}/nr_dests")
        return [
            Dest(self.root.read_int(f"{d}/{i}/id"), self.root.read_int(f"{d}/{i}/weight"))
            for i in range(count)
        ]

    def set_dests(self, dests: Sequence[Dest | int], scheme: int = 0) -> None:
        """New destinations (Dest list, or one weight per node in node-id order); if running,
        pushed online with ``commit``. On a refused commit the files are put back."""
        new = [d if isinstance(d, Dest) else Dest(node, int(d)) for node, d in enumerate(dests)]
        self._check_dests(new)
        s = f"{self.path}/contexts/0/schemes/{scheme}"
        old = self.read_dests(scheme)
        count_changed = len(old) != len(new)  # nr_dests recreates children: only if it changes
        self._write_dests(s, new, write_count=count_changed)
        self._commit_or_put_back(
            f"dests {new}", str(old), lambda: self._write_dests(s, old, write_count=count_changed)
        )

    def _commit_or_put_back(self, what: str, old: str, put_back: Callable[[], None]) -> None:
        """``commit`` the staged change if running; when the kernel refuses, ``put_back`` the
        files so they keep describing what runs."""
        if not self.is_on():
            return
        try:
            self._state("commit")
        except SysfsError as error:
            try:
                put_back()
            except SysfsError as undo:
                raise KdamondError(
                    f"commit of {what} failed ({error}) and the files could not be put back "
                    f"({undo}); the kernel still runs with {old}"
                ) from error
            raise KdamondError(
                f"commit of {what} failed: {error}. The kernel keeps running with {old}; "
                "the files were put back"
            ) from error

    def set_quota(self, bytes_per_window: int, scheme: int = 0) -> None:
        """A new ``quotas/bytes`` (0: unlimited); if running, pushed online with ``commit``."""
        rel = f"{self.path}/contexts/0/schemes/{scheme}/quotas/bytes"
        old = self.root.read_int(rel)
        if old == bytes_per_window:
            return
        self.root.write(rel, int(bytes_per_window))
        self._commit_or_put_back(
            f"quota {bytes_per_window} bytes", f"{old} bytes", lambda: self.root.write(rel, old)
        )

    def read_targets(self) -> list[int]:
        t = f"{self.path}/contexts/0/targets"
        return [
            self.root.read_int(f"{t}/{i}/pid_target")
            for i in range(self.root.read_int(f"{t}/nr_targets"))
        ]

    def set_targets(self, pids: Sequence[int]) -> None:
        """Monitor these processes instead (vaddr, regions left to DAMON); if running, pushed
        online with ``commit``. On a refused commit the target files are put back."""
        if not pids:
            raise KdamondError("set_targets needs at least one pid")
        old = self.read_targets()
        t = f"{self.path}/contexts/0/targets"

        def write(values: Sequence[int]) -> None:
            self.root.write(f"{t}/nr_targets", len(values))  # recreates every target dir
            for i, pid in enumerate(values):
                self.root.write(f"{t}/{i}/pid_target", int(pid))

        write(pids)
        self._commit_or_put_back(f"targets {list(pids)}", str(old), lambda: write(old))

    def update_tried_regions(self) -> None:
        """Ask the kernel to fill every scheme's ``tried_regions/`` from its next apply pass
        (the write returns once they are filled)."""
        self._state("update_schemes_tried_regions")

    def read_stats(self, scheme: int = 0) -> dict[str, int]:
        """The scheme's cumulative stats, refreshed first unless ``refresh_ms`` does it."""
        if self.is_on():
            refresh = self.root.exists(f"{self.path}/refresh_ms") and self.root.read_int(
                f"{self.path}/refresh_ms"
            )
            if not refresh:
                self._state("update_schemes_stats")
        d = f"{self.path}/contexts/0/schemes/{scheme}/stats"
        return {name: self.root.read_int(f"{d}/{name}") for name in self.root.listdir(d)}
