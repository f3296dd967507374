"""A fake kernel sysfs tree on disk that validates writes like the kernel, for tests and dry runs.

``FakeKernel(tmp_path)`` builds ``tmp_path/sys`` with the layout of the chosen kernel
(Documentation/admin-guide/mm/damon/usage.rst, the mempolicy sysfs ABI document, and the
trees of real 6.18 and 7.3 kernels) and is itself a :class:`tierenv.host.sysfs.Files`: reads
come from the files, writes are validated first, then stored, then their side effects applied.
``fake.root`` is a ``SysfsRoot`` using it.

Emulated:

* ``weighted_interleave/nodeN`` (default 1; 1..255 else EINVAL; before 6.16 writing 0 resets
  to 1), the auto switch (``auto`` or 6.18's ``__auto_type``; a node write turns it off;
  ``true`` recomputes from ``auto_weights`` or fails with ENODEV when none are given);
  node files of absent nodes are ENOENT (they do not exist).
* The DAMON admin tree: ``nr_*`` writes destroy and recreate all children with the kernel's
  defaults (``nr_kdamonds`` is EBUSY while any kdamond runs); integer, keyword and boolean
  files are parsed with the kernel's own rules (``kstrto*``, ``sysfs_streq``, ``kstrtobool``
  from :mod:`tierenv.damon.abi`) and fail with their errno (EINVAL, ERANGE); numbers read back
  in decimal and booleans as ``Y``/``N``; read-only files are EACCES; ``state`` commands:
  ``on`` (EBUSY when running or ``busy=True``, EINVAL for an invalid configuration), ``off``
  (EINVAL when off), ``commit`` and the ``update_*`` commands (EINVAL when off).
  ``on``/``commit`` check (independently of :class:`tierenv.damon.config.ContextConfig`): one
  context, available operations, ``damon_set_attrs`` rules (mm/damon/core.c), vaddr pids
  (``pids``), one paddr target, region order, addr filter bounds.
* Faults: :meth:`fail_write` makes the Nth next write (optionally only to a given file) fail
  with an errno. ``writes`` records every accepted write as ``(relative path, value)``.
* Atomicity, as sysfs has it: another process (``tierenv fakehost``, the daemon) reading a file
  sees its old or its new content, never an empty or half-written one, and an ``nr_*`` write
  swaps in the whole new set of children at once, so a SIGKILL at any point leaves ``nr_*``
  equal to the number of child directories. Files are written to a temporary name beside the
  tree (``.fake-kernel-tmp``, so no reader listing a directory sees it) and renamed into place;
  ``nr_*`` directories are built there and exchanged with ``renameat2(RENAME_EXCHANGE)``.

Not emulated: monitoring, migration, stats (they stay 0), ``tried_regions`` contents,
``damon_sysfs_lock`` contention, file modes/ownership, ``refresh_ms`` refreshing,
filter-type/directory compatibility, quota-goal metric availability by version, hotplug.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tierenv.damon.abi import (
    GOAL_METRICS,
    KERNEL_ACTIONS,
    KERNEL_FILTER_TYPES,
    KERNEL_OPERATIONS,
    MIGRATE_ACTIONS,
    MIN_NR_REGIONS,
    WATERMARK_METRICS,
    KernelParseError,
    kstrtobool,
    kstrtoint,
    kstrtou8,
    kstrtouint,
    kstrtoul,
    sysfs_streq,
)
from tierenv.host.sysfs import RealFiles, SysfsRoot, refuse_real_tree

WI = ("kernel", "mm", "mempolicy", "weighted_interleave")
DAMON = ("kernel", "mm", "damon", "admin")
DAMOS_STAT_FILES = ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds")
_NO_MIGRATE = tuple(a for a in KERNEL_ACTIONS if a not in MIGRATE_ACTIONS)


@dataclass(frozen=True)
class KernelProfile:
    """Which files and keywords a kernel version has (damo's ``src/_damon_features.py``)."""

    version: str
    weighted_interleave: bool = True  # 6.9
    auto_name: str | None = None  # 6.16 ("auto"; "__auto_type" where auto is a macro)
    zero_weight_resets: bool = False  # before 6.16, writing 0 meant "default" (1)
    damon_sysfs: bool = True
    actions: tuple[str, ...] = KERNEL_ACTIONS  # migrate_* 6.11
    intervals_goal: bool = True  # 6.15
    split_filters: bool = True  # core_filters/ops_filters 6.15
    goal_nid: bool = True  # 6.16
    dests: bool = True  # 6.17
    refresh_ms: bool = True  # 6.17
    addr_unit: bool = True  # 6.18
    sz_filter_passed: bool = True  # tried_regions/N/sz_filter_passed, 6.14
    region_probes: bool = False  # tried_regions/N/probes/ (an empty dir on 7.3.4)
    kstrtobool_enabled: bool = True  # kstrtobool takes e/E, d/D (enabled/disabled), 6.16


_6_12 = KernelProfile(
    "6.12", zero_weight_resets=True, intervals_goal=False, split_filters=False,
    goal_nid=False, dests=False, refresh_ms=False, addr_unit=False, sz_filter_passed=False,
    kstrtobool_enabled=False,
)  # fmt: skip
PROFILES: dict[str, KernelProfile] = {
    "6.8": replace(_6_12, version="6.8", weighted_interleave=False, actions=_NO_MIGRATE),
    "6.12": _6_12,
    "6.16": KernelProfile("6.16", auto_name="auto", dests=False, refresh_ms=False, addr_unit=False),
    "6.17": KernelProfile("6.17", auto_name="auto", addr_unit=False),
    "6.18": KernelProfile("6.18", auto_name="__auto_type"),
    "7.3": KernelProfile("7.3", auto_name="auto", region_probes=True),
}

# File name -> the kernel's parser of that integer file (base 0).
INT_FILES: dict[str, Callable[[str], int]] = {
    **dict.fromkeys(
        [
            "sample_us",
            "aggr_us",
            "update_us",
            "min",
            "max",
            "start",
            "end",
            "ms",
            "bytes",
            "reset_interval_ms",
            "apply_interval_us",
            "interval_us",
            "high",
            "mid",
            "low",
            "access_bp",
            "aggrs",
            "min_sample_us",
            "max_sample_us",
            "addr_unit",
            "refresh_ms",
            "addr_start",
            "addr_end",
            "target_value",
            "current_value",
        ],
        kstrtoul,
    ),
    **dict.fromkeys(["sz_permil", "nr_accesses_permil", "age_permil", "id", "weight"], kstrtouint),
    **dict.fromkeys(["target_nid", "pid_target", "nid", "damon_target_idx"], kstrtoint),
}
KEYWORDS: dict[str, tuple[str, ...]] = {
    "operations": KERNEL_OPERATIONS,
    "metric": WATERMARK_METRICS,
    "target_metric": GOAL_METRICS,
    "type": KERNEL_FILTER_TYPES,
}
BOOL_FILES = ("matching", "allow")
READ_ONLY = ("pid", "avail_operations", "effective_bytes", "total_bytes")
STATE_COMMANDS = (
    "on",
    "off",
    "commit",
    "commit_schemes_quota_goals",
    "update_schemes_stats",
    "update_schemes_tried_regions",
    "update_schemes_tried_bytes",
    "clear_schemes_tried_regions",
    "update_schemes_effective_quotas",
    "update_tuned_intervals",
)


def _keyword(written: str, keywords: Iterable[str]) -> str | None:
    """The keyword ``written`` names, compared as the kernel does (``sysfs_streq``)."""
    return next((word for word in keywords if sysfs_streq(written, word)), None)


def _fail(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


SCRATCH = ".fake-kernel-tmp"  # beside the tree's sys directory: same file system, not listed
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def scratch_dir(tree: Path) -> Path:
    """Where temporary files and directories of the tree whose ``sys`` is ``tree`` are built."""
    scratch = Path(tree).parent / SCRATCH
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def store(path: Path, text: str, scratch: Path) -> None:
    """Replace ``path``'s content with ``text`` atomically (temporary file in ``scratch``, then
    a rename): a concurrent reader sees the old or the new content, as sysfs reads are."""
    fd, name = tempfile.mkstemp(dir=scratch, prefix="file.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(name, 0o644)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _libc_renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc 2.28+: fall back to two renames
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()


def exchange_dirs(new: Path, old: Path) -> None:
    """Swap directories ``new`` and ``old`` in one step (``old``'s path then holds ``new``'s
    content and vice versa). Where the file system lacks ``RENAME_EXCHANGE``, two renames
    (a kill between them leaves ``old``'s path missing; tmpfs and ext4 support it)."""
    if _RENAMEAT2 is not None:
        done = _RENAMEAT2(
            _AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(old), _RENAME_EXCHANGE
        )
        if done == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(old))
    parked = new.with_name(new.name + ".old")
    os.rename(old, parked)
    os.rename(new, old)
    os.rename(parked, new)


@dataclass
class _Fault:
    nth: int
    code: int
    path: str | None


@dataclass
class FakeKernel:
    """A fake ``/sys`` under ``tmp_path/sys``; see the module docstring for what it emulates.

    ``pids``: processes that exist for vaddr targets (None: any pid > 0). ``auto_weights``:
    bandwidth-derived weights auto mode uses (None: no bandwidth data, so writing ``true`` to
    the auto switch fails with ENODEV, as on a host without HMAT).
    """

    tmp_path: Path
    n_nodes: int = 2
    kernel: str = "6.18"
    busy: bool = False
    pids: set[int] | None = None
    avail_operations: Sequence[str] = ("vaddr", "fvaddr", "paddr")
    auto_weights: Sequence[int] | None = None
    proc_path: Path | None = None
    damon_source: Path | None = None
    writes: list[tuple[str, str]] = field(default_factory=list)
    last_error: str | None = None
    build: bool = True  # False: open an existing tree (see attach)

    SETTINGS = "fake-kernel.json"

    def __post_init__(self) -> None:
        self.profile = PROFILES[self.kernel]
        self.path = Path(self.tmp_path) / "sys"
        for where in (Path(self.tmp_path), self.path, self.proc_path):
            if where is not None:  # never build or write a fake tree inside the real ones
                refuse_real_tree(where, "a fake kernel tree")
        self._disk = RealFiles()
        self._faults: list[_Fault] = []
        self._next_pid = 1000
        self._ran: set[str] = set()  # kdamond dirs that were turned on since they were built
        if self.build:
            self._build()
            settings = {
                "kernel": self.kernel,
                "n_nodes": self.n_nodes,
                "auto_weights": list(self.auto_weights) if self.auto_weights else None,
                "avail_operations": list(self.avail_operations),
                "proc_path": str(self.proc_path) if self.proc_path else None,
                "damon_source": str(self.damon_source) if self.damon_source else None,
            }
            settings_path = Path(self.tmp_path) / self.SETTINGS
            store(settings_path, json.dumps(settings, indent=1), self._scratch)

    @classmethod
    def attach(cls, tmp_path: str | Path) -> FakeKernel:
        """The fake kernel whose tree is ``tmp_path/sys``, built earlier (maybe by another
        process); nothing is rebuilt."""
        settings_path = Path(tmp_path) / cls.SETTINGS
        try:
            settings = json.loads(settings_path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{settings_path}: not a fake kernel tree made by tierenv ({error})"
            ) from None
        return cls(
            Path(tmp_path),
            n_nodes=settings["n_nodes"],
            kernel=settings["kernel"],
            auto_weights=settings["auto_weights"],
            avail_operations=tuple(settings["avail_operations"]),
            proc_path=Path(settings["proc_path"]) if settings["proc_path"] else None,
            damon_source=Path(settings["damon_source"]) if settings["damon_source"] else None,
            build=False,
        )

    @property
    def root(self) -> SysfsRoot:
        return SysfsRoot(self.path, files=self)

    # -- tree building (no recorded writes) ----------------------------------------------------

    @property
    def _scratch(self) -> Path:
        return scratch_dir(self.path)

    def _store(self, path: Path, text: str) -> None:
        """Replace a file of the tree atomically (see the module docstring)."""
        store(path, text, self._scratch)

    def _put(self, rel: str | Path, value: object) -> None:
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self._store(path, f"{value}\n")

    def _build(self) -> None:
        nodes = f"0-{self.n_nodes - 1}" if self.n_nodes > 1 else "0"
        for name in ("possible", "online", "has_memory"):
            self._put(f"devices/system/node/{name}", nodes)
        for node in range(self.n_nodes):
            (self.path / f"devices/system/node/node{node}").mkdir(parents=True, exist_ok=True)
        if self.profile.weighted_interleave:
            wi = Path(*WI)
            # At boot auto mode shows the bandwidth-derived weights (1 each without HMAT).
            boot = self.auto_weights if self.profile.auto_name and self.auto_weights else None
            for node in range(self.n_nodes):
                self._put(wi / f"node{node}", boot[node] if boot else 1)
            if self.profile.auto_name:
                self._put(wi / self.profile.auto_name, "true")  # NULL wi_state reads as auto
        if self.profile.damon_sysfs:
            self._put(Path(*DAMON, "kdamonds", "nr_kdamonds"), 0)

    def _kdamond(self, d: Path) -> None:
        self._put(d / "state", "off")
        self._put(d / "pid", -1)
        if self.profile.refresh_ms:
            self._put(d / "refresh_ms", 0)
        self._put(d / "contexts/nr_contexts", 0)

    def _context(self, d: Path) -> None:
        self._put(d / "avail_operations", "\n".join(self.avail_operations))
        self._put(d / "operations", "vaddr")
        if self.profile.addr_unit:
            self._put(d / "addr_unit", 1)
        iv = d / "monitoring_attrs/intervals"
        for name, value in (("sample_us", 5000), ("aggr_us", 100000), ("update_us", 60000000)):
            self._put(iv / name, value)
        if self.profile.intervals_goal:
            for name in ("access_bp", "aggrs", "min_sample_us", "max_sample_us"):
                self._put(iv / "intervals_goal" / name, 0)
        self._put(d / "monitoring_attrs/nr_regions/min", 10)
        self._put(d / "monitoring_attrs/nr_regions/max", 1000)
        self._put(d / "targets/nr_targets", 0)
        self._put(d / "schemes/nr_schemes", 0)

    def _target(self, d: Path) -> None:
        self._put(d / "pid_target", 0)
        self._put(d / "regions/nr_regions", 0)

    def _region(self, d: Path) -> None:
        self._put(d / "start", 0)
        self._put(d / "end", 0)

    def _scheme(self, d: Path) -> None:
        p = self.profile
        self._put(d / "action", "stat")
        if "migrate_hot" in p.actions:
            self._put(d / "target_nid", -1)
        self._put(d / "apply_interval_us", 0)
        for name in ("sz", "nr_accesses", "age"):
            self._put(d / "access_pattern" / name / "min", 0)
            self._put(d / "access_pattern" / name / "max", 0)
        for name in ("ms", "bytes", "reset_interval_ms", "effective_bytes"):
            self._put(d / "quotas" / name, 0)
        for name in ("sz_permil", "nr_accesses_permil", "age_permil"):
            self._put(d / "quotas/weights" / name, 0)
        self._put(d / "quotas/goals/nr_goals", 0)
        self._put(d / "watermarks/metric", "none")
        for name in ("interval_us", "high", "mid", "low"):
            self._put(d / "watermarks" / name, 0)
        dirs = ("filters", "core_filters", "ops_filters") if p.split_filters else ("filters",)
        for name in dirs:
            self._put(d / name / "nr_filters", 0)
        if p.dests:
            self._put(d / "dests/nr_dests", 0)
        for name in ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds"):
            self._put(d / "stats" / name, 0)
        self._put(d / "tried_regions/total_bytes", 0)

    def _dest(self, d: Path) -> None:
        self._put(d / "id", 0)
        self._put(d / "weight", 0)

    def _filter(self, d: Path) -> None:
        for name, value in (("type", "anon"), ("matching", "N"), ("allow", "N")):
            self._put(d / name, value)
        self._put(d / "memcg_path", "")
        for name in ("addr_start", "addr_end", "min", "max", "damon_target_idx"):
            self._put(d / name, 0)

    def _goal(self, d: Path) -> None:
        self._put(d / "target_metric", "user_input")
        self._put(d / "target_value", 0)
        self._put(d / "current_value", 0)
        if self.profile.goal_nid:
            self._put(d / "nid", 0)

    def _builders(self) -> dict[str, Callable[[Path], None]]:
        return {
            "nr_kdamonds": self._kdamond,
            "nr_contexts": self._context,
            "nr_targets": self._target,
            "nr_regions": self._region,
            "nr_schemes": self._scheme,
            "nr_dests": self._dest,
            "nr_filters": self._filter,
            "nr_goals": self._goal,
        }

    def _recreate(self, nr_file: Path, count: int) -> None:
        """What the kernel does on any nr_* write: remove every child, build 0..count-1.

        The new directory (its other files copied, the children built, ``nr_*`` set) is built
        beside the tree and exchanged with the old one in one rename, so a SIGKILL anywhere
        leaves either the old or the new children, each matching its ``nr_*``."""
        parent = nr_file.parent
        staging = Path(tempfile.mkdtemp(dir=self._scratch, prefix="dir."))
        try:
            staging.chmod(0o755)
            for entry in parent.iterdir():
                if entry.is_dir() and entry.name.isdigit():
                    prefix = str(entry)
                    self._ran = {kd for kd in self._ran if not kd.startswith(prefix)}
                elif entry.is_dir():
                    shutil.copytree(entry, staging / entry.name)
                else:
                    shutil.copy2(entry, staging / entry.name)
            build = self._builders()[nr_file.name]
            for index in range(count):
                build(staging / str(index))
            self._store(staging / nr_file.name, f"{count}\n")
            exchange_dirs(staging, parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # the old children, after the exchange

    def add_foreign_kdamond(self, running: bool = True, configured: bool = True) -> int:
        """Another DAMON user's kdamond (like this host's paddr pageout kdamond 0)."""
        kds = self.path.joinpath(*DAMON, "kdamonds")
        index = int((kds / "nr_kdamonds").read_text())
        d = kds / str(index)
        self._kdamond(d)
        if configured:
            self._recreate(d / "contexts/nr_contexts", 1)
            c = d / "contexts/0"
            self._put(c.relative_to(self.path) / "operations", "paddr")
            self._recreate(c / "schemes/nr_schemes", 1)
            self._put(c.relative_to(self.path) / "schemes/0/action", "pageout")
        if running:
            self._put(d.relative_to(self.path) / "state", "on")
            self._put(d.relative_to(self.path) / "pid", 77)
        self._put(kds.relative_to(self.path) / "nr_kdamonds", index + 1)
        return index

    def snapshot(self, rel: str = "") -> dict[str, str]:
        """Every file under ``rel`` with its content, to check that nothing changed."""
        base = self.path / rel
        return {
            str(p.relative_to(self.path)): p.read_text()
            for p in sorted(base.rglob("*"))
            if p.is_file()
        }

    # -- faults --------------------------------------------------------------------------------

    def fail_write(self, nth: int = 1, code: int = errno.EINVAL, path: str | None = None) -> None:
        """Make the ``nth`` next write (counting only writes to ``path``, relative to the sysfs
        root, if given) fail with ``code`` before it takes effect."""
        self._faults.append(_Fault(nth, code, path))

    def _take_fault(self, rel: str) -> int | None:
        fired = None
        for fault in list(self._faults):  # every matching fault counts this write
            if fault.path is None or fault.path == rel:
                fault.nth -= 1
                if fault.nth == 0:
                    self._faults.remove(fault)
                    fired = fault.code if fired is None else fired
        return fired

    # -- Files protocol ------------------------------------------------------------------------

    def read_text(self, path: Path) -> str:
        return self._disk.read_text(path)

    def listdir(self, path: Path) -> list[str]:
        return self._disk.listdir(path)

    def write_text(self, path: Path, value: str) -> None:
        path = Path(path)
        rel = path.relative_to(self.path)
        code = self._take_fault(rel.as_posix())
        if code is not None:
            raise _fail(code, path)
        if not path.is_file():
            raise _fail(errno.EISDIR if path.is_dir() else errno.ENOENT, path)
        # Parsers see the bytes as written (one trailing newline is theirs to accept); the
        # tree and the write log keep the text without it.
        text = value.removesuffix("\n")
        if rel.parts[: len(WI)] == WI:
            self._write_wi(path, value)
        elif rel.parts[: len(DAMON)] == DAMON:
            self._write_damon(path, value)
        else:
            raise _fail(errno.EACCES, path)
        self.writes.append((rel.as_posix(), text))

    def _write_wi(self, path: Path, value: str) -> None:
        wi = path.parent
        if path.name == self.profile.auto_name:
            try:
                auto = kstrtobool(value, enabled_disabled=self.profile.kstrtobool_enabled)
            except KernelParseError:
                raise _fail(errno.EINVAL, path) from None
            if auto:
                if self.auto_weights is None:
                    raise _fail(errno.ENODEV, path)
                for node, weight in enumerate(self.auto_weights):
                    self._store(wi / f"node{node}", f"{weight}\n")
                self._store(path, "true\n")
            else:
                self._store(path, "false\n")
            return
        try:  # node_store: kstrtou8; every failure is EINVAL
            weight = kstrtou8(value)
        except KernelParseError:
            raise _fail(errno.EINVAL, path) from None
        if weight == 0 and self.profile.zero_weight_resets:
            weight = 1
        if weight == 0:
            raise _fail(errno.EINVAL, path)
        self._store(path, f"{weight}\n")
        if self.profile.auto_name:
            self._store(wi / self.profile.auto_name, "false\n")  # a node write means manual

    def _write_damon(self, path: Path, value: str) -> None:
        name = path.name
        if name in READ_ONLY or {"stats", "tried_regions"} & set(path.parts):
            raise _fail(errno.EACCES, path)
        if name == "state":
            self._state(path, _keyword(value, STATE_COMMANDS))
        elif name in self._builders():
            self._write_count(path, value)
        elif name in INT_FILES:
            number = self._parse(path, INT_FILES[name], value)
            self._store(path, f"{number}\n")  # the kernel shows the parsed value, in decimal
        elif name == "action" or name in KEYWORDS:
            keyword = _keyword(value, self.profile.actions if name == "action" else KEYWORDS[name])
            if keyword is None:
                raise _fail(errno.EINVAL, path)
            self._store(path, f"{keyword}\n")
        elif name in BOOL_FILES:
            enabled = self.profile.kstrtobool_enabled
            flag = self._parse(path, lambda text: kstrtobool(text, enabled_disabled=enabled), value)
            self._store(path, "Y\n" if flag else "N\n")  # shown as %c of 'Y'/'N'
        else:
            self._store(path, value.removesuffix("\n") + "\n")

    @staticmethod
    def _parse(path: Path, parse: Callable[[str], object], value: str) -> Any:
        """``parse(value)``, or the OSError with the errno the kernel's parser returns."""
        try:
            return parse(value)
        except KernelParseError as error:
            raise _fail(error.errno, path) from None

    def _write_count(self, path: Path, value: str) -> None:
        """An ``nr_*`` file: kstrtoint, negative is EINVAL; then rebuild the children."""
        count = self._parse(path, kstrtoint, value)
        if count < 0:
            raise _fail(errno.EINVAL, path)
        if path.name == "nr_kdamonds" and any(self._running()):
            raise _fail(errno.EBUSY, path)
        self._recreate(path, count)

    # -- state and validation ------------------------------------------------------------------

    def _kdamond_dirs(self) -> Iterable[Path]:
        kds = self.path.joinpath(*DAMON, "kdamonds")
        count = int((kds / "nr_kdamonds").read_text())
        return (kds / str(i) for i in range(count))

    def _running(self) -> list[Path]:
        return [d for d in self._kdamond_dirs() if (d / "state").read_text().strip() == "on"]

    def _state(self, path: Path, command: str | None) -> None:
        kd = path.parent
        running = path.read_text().strip() == "on"
        if command is None:  # not one of STATE_COMMANDS
            raise _fail(errno.EINVAL, path)
        if command == "on":
            if running or self.busy:
                raise _fail(errno.EBUSY, path)
            self._validate(kd, path)
            self._next_pid += 1
            self._store(kd / "pid", f"{self._next_pid}\n")
            self._store(path, "on\n")
            self._ran.add(str(kd))
        elif not running:
            # A kdamond that ran and stopped takes "off" and cancels the others; one that
            # never ran refuses them all (as 7.3.4 does).
            if str(kd) not in self._ran:
                raise _fail(errno.EINVAL, path)
            if command != "off":
                raise _fail(errno.ECANCELED, path)
        elif command == "off":
            self._store(kd / "pid", "-1\n")
            self._store(path, "off\n")
        elif command == "commit":
            self._validate(kd, path)
        elif command == "update_schemes_stats":
            self._fill_stats(kd)
        elif command == "update_schemes_tried_regions":
            self._fill_tried_regions(kd)

    # -- DAMON results published by a simulator (damon_source) ------------------------------------

    def _published(self) -> dict | None:
        if self.damon_source is None or not self.damon_source.exists():
            return None
        return json.loads(self.damon_source.read_text())

    def _schemes(self, kd: Path) -> list[tuple[Path, str]]:
        schemes = kd / "contexts/0/schemes"
        return [
            (schemes / str(s), (schemes / str(s) / "action").read_text().strip())
            for s in range(int((schemes / "nr_schemes").read_text()))
        ]

    def _targets(self, kd: Path) -> list[int]:
        targets = kd / "contexts/0/targets"
        return [
            int((targets / str(t) / "pid_target").read_text())
            for t in range(int((targets / "nr_targets").read_text()))
        ]

    def _monitored(self, kd: Path) -> tuple[dict, list[str]] | None:
        """The simulator's published results and the apps ``kd`` targets (None: nothing
        published, so the files keep their zeros)."""
        published = self._published()
        if published is None:
            return None
        pids = published["pids"]
        return published, [pids[str(p)] for p in self._targets(kd) if str(p) in pids]

    def _fill_stats(self, kd: Path) -> None:
        if (monitored := self._monitored(kd)) is None:
            return
        published, apps = monitored
        for scheme, action in self._schemes(kd):
            if action != "migrate_hot":
                continue
            for name in DAMOS_STAT_FILES:
                total = sum(published["stats"].get(app, {}).get(name, 0) for app in apps)
                self._store(scheme / "stats" / name, f"{int(total)}\n")

    def _fill_tried_regions(self, kd: Path) -> None:
        if (monitored := self._monitored(kd)) is None:
            return
        published, apps = monitored
        for scheme, action in self._schemes(kd):
            tried = scheme / "tried_regions"
            for child in tried.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
            index, total = 0, 0
            for app in apps if action == "stat" else []:
                for start, end, nr_accesses, age in published["regions"].get(app, []):
                    for name, value in (
                        ("start", start), ("end", end), ("nr_accesses", nr_accesses), ("age", age)
                    ):  # fmt: skip
                        self._put(tried / str(index) / name, value)
                    if self.profile.sz_filter_passed:
                        self._put(tried / str(index) / "sz_filter_passed", 0)
                    if self.profile.region_probes:
                        (tried / str(index) / "probes").mkdir()
                    total += end - start
                    index += 1
            self._store(tried / "total_bytes", f"{total}\n")

    def _pid_exists(self, pid: int) -> bool:
        if pid <= 0:
            return False
        if self.proc_path is not None:
            return (self.proc_path / str(pid)).is_dir()
        return self.pids is None or pid in self.pids

    def _validate(self, kd: Path, state: Path) -> None:
        problem = self._problem(kd)
        self.last_error = problem
        if problem:
            raise _fail(errno.EINVAL, state)

    def _problem(self, kd: Path) -> str | None:
        """Why ``on``/``commit`` would fail with EINVAL (None if it would not).

        These rules are written again here on purpose, independently of
        ``ContextConfig.validate``: the fake tree is the oracle that checks what the host
        backend writes, so a mistake in either copy shows up as a disagreement in the tests.
        """
        if _number(kd / "contexts/nr_contexts") != 1:
            return "nr_contexts must be 1"
        c = kd / "contexts/0"
        ops = (c / "operations").read_text().strip()
        if ops not in self.avail_operations:
            return f"operations {ops} not available"
        return _attrs_problem(c) or self._targets_problem(c, ops) or _filters_problem(c)

    def _targets_problem(self, c: Path, ops: str) -> str | None:
        n_targets = _number(c / "targets/nr_targets")
        if ops == "paddr" and n_targets > 1:
            return "paddr takes one target"
        for t in range(n_targets):
            td = c / "targets" / str(t)
            pid = _number(td / "pid_target")
            if ops != "paddr" and not self._pid_exists(pid):
                return f"target {t}: no process {pid}"
            end = 0
            for r in range(_number(td / "regions/nr_regions")):
                start, stop = _number(td / f"regions/{r}/start"), _number(td / f"regions/{r}/end")
                if start > stop or start < end:
                    return f"target {t} region {r}: inverted or overlapping"
                end = stop
        return None


def _number(p: Path) -> int:
    return int(p.read_text())  # integer files hold the parsed value, in decimal


def _attrs_problem(c: Path) -> str | None:
    iv, nr = c / "monitoring_attrs/intervals", c / "monitoring_attrs/nr_regions"
    if _number(nr / "min") < MIN_NR_REGIONS or _number(nr / "min") > _number(nr / "max"):
        return f"nr_regions: need {MIN_NR_REGIONS} <= min <= max"
    if _number(iv / "sample_us") > _number(iv / "aggr_us"):
        return "sample_us > aggr_us"
    goal = iv / "intervals_goal"
    if goal.exists() and _number(goal / "aggrs"):
        lo, hi = _number(goal / "min_sample_us"), _number(goal / "max_sample_us")
        if not lo <= _number(iv / "sample_us") <= hi:
            return "intervals_goal: need min_sample_us <= sample_us <= max_sample_us"
    return None


def _filters_problem(c: Path) -> str | None:
    for s in range(_number(c / "schemes/nr_schemes")):
        sd = c / "schemes" / str(s)
        for fdir in ("filters", "core_filters", "ops_filters"):
            if not (sd / fdir).exists():
                continue
            for f in range(_number(sd / fdir / "nr_filters")):
                fd = sd / fdir / str(f)
                addr = (fd / "type").read_text().strip() == "addr"
                if addr and _number(fd / "addr_end") < _number(fd / "addr_start"):
                    return f"scheme {s} {fdir} {f}: addr_end < addr_start"
    return None
