"""A crash journal: what the daemon changed, written before it changes anything.

Why: the weighted-interleave table and a running kdamond outlive the daemon. After a SIGKILL,
an OOM kill or a power cut between "write" and "restore", only this file knows the original
weights, the auto switch and which kdamond was ours. It is written atomically (temporary
file, fsync, rename, fsync of the directory) so a reader sees either the old or the new
journal, never half of one; a clean exit removes it, and the next start restores from any
journal it finds before doing anything else (:func:`recover`).

The journal follows every change of our kdamond: before the daemon stages it or changes its
targets, the journal says what is being written (``kdamond_staging``, ``pending_target_pids``);
once the change is done, it says what runs. So at any crash point the kdamond's files match
what the journal allows, and the next start recognises it as ours and removes it.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierenv.files import fsync_path
from tierenv.host.damon import KDAMONDS, Kdamond
from tierenv.host.interleave import AUTO_NAMES, InterleaveState, WeightedInterleave
from tierenv.host.sysfs import SysfsError, SysfsRoot
from tierenv.memory.interleave import MAX_WEIGHT

DEFAULT_JOURNAL = Path("/var/lib/tierenv/journal.json")  # systemd StateDirectory=tierenv
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 lacks the pending fields (their defaults are right)
CORRUPT_SUFFIX = ".corrupt"  # a corrupt journal is renamed to <name>.corrupt-<n>


@dataclass(frozen=True)
class Journal:
    """The state to put back. ``kdamond_index`` is the kdamond we create (or reuse), recorded
    *before* it is created so a crash in between still finds it; ``target_pids`` (the targets
    in force) identify it as ours: a kdamond monitoring other processes is left alone.
    ``pending_target_pids``: targets being written now (a crash may leave them half written).
    ``kdamond_staging``: our kdamond is being created or staged, so while it is off it may hold
    a partial configuration of ours."""

    sysfs_root: str
    weights: dict[int, int]
    auto: bool | None
    auto_name: str | None
    kdamond_index: int | None = None
    kdamond_reused: bool = False
    target_pids: tuple[int, ...] = ()
    pending_target_pids: tuple[int, ...] | None = None
    kdamond_staging: bool = False
    daemon_pid: int = field(default_factory=os.getpid)
    started_at: float = 0.0
    version: int = VERSION

    def state(self) -> InterleaveState:
        return InterleaveState(weights=dict(self.weights), auto=self.auto)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights"] = {str(node): weight for node, weight in self.weights.items()}
        data["target_pids"] = list(self.target_pids)
        if self.pending_target_pids is not None:
            data["pending_target_pids"] = list(self.pending_target_pids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        """The journal ``data`` holds, every field checked: a journal whose values the daemon
        never writes (a weight of 999 or 1.7, an auto switch "maybe", kdamond "x") is corrupt,
        and restoring from it would put back something that was never there."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"journal version {data.get('version')!r}, expected one of {READABLE_VERSIONS}"
            )
        weights = _field(data, "weights", dict, "an object of node: weight")
        if not weights:
            raise ValueError("weights: empty, expected the weight of every node")
        nodes = {}
        for node, weight in weights.items():
            if not (isinstance(node, str) and node.isdigit()):
                raise ValueError(f"weights: node {node!r} is not a node number")
            # 0: what a kernel before 6.16 may show for a node never set (the default, 1)
            if not (_is_int(weight) and 0 <= weight <= MAX_WEIGHT):
                raise ValueError(
                    f"weights: node {node} has weight {weight!r}, expected an integer in "
                    f"0..{MAX_WEIGHT}"
                )
            nodes[int(node)] = weight
        auto = data["auto"]
        if auto is not None and not isinstance(auto, bool):
            raise ValueError(f"auto: {auto!r} is not true, false or null")
        auto_name = data["auto_name"]
        if auto_name is not None and auto_name not in AUTO_NAMES:
            raise ValueError(f"auto_name: {auto_name!r} is not one of {', '.join(AUTO_NAMES)}")
        index = data["kdamond_index"]
        if index is not None and not (_is_int(index) and index >= 0):
            raise ValueError(f"kdamond_index: {index!r} is not a kdamond index (0 or more)")
        pending = data.get("pending_target_pids")
        return cls(
            sysfs_root=_field(data, "sysfs_root", str, "a path"),
            weights=nodes,
            auto=auto,
            auto_name=auto_name,
            kdamond_index=index,
            kdamond_reused=_field(data, "kdamond_reused", bool, "true or false"),
            target_pids=_pids(data["target_pids"], "target_pids"),
            pending_target_pids=None if pending is None else _pids(pending, "pending_target_pids"),
            kdamond_staging=_field(data, "kdamond_staging", bool, "true or false", False),
            daemon_pid=_pids([data["daemon_pid"]], "daemon_pid")[0],
            started_at=float(_field(data, "started_at", int | float, "a time in seconds")),
        )


_MISSING = object()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(data: dict[str, Any], name: str, kind: Any, expected: str, default: Any = _MISSING):
    """``data[name]`` if it is of ``kind`` (``default`` when given and the field is absent)."""
    value = data[name] if default is _MISSING else data.get(name, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{name}: {value!r} is not {expected}")
    return value


def _pids(value: object, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(p) and p > 0 for p in value):
        raise ValueError(f"{name}: {value!r} is not a list of process ids")
    return tuple(value)


def atomic_write_json(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=1, sort_keys=True)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_journal(path: Path, journal: Journal) -> None:
    atomic_write_json(path, journal.to_json())


class CorruptJournalError(ValueError):
    """A journal file that exists but cannot be read: the originals it held are unknown."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"journal {path} is unreadable ({problem})")
        self.path = Path(path)
        self.problem = problem


def read_journal(path: Path) -> Journal | None:
    """The journal at ``path``, or None if there is none. A corrupt one raises
    :class:`CorruptJournalError` (the daemon then refuses to start rather than guess what the
    originals were)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Journal.from_json(json.loads(data.decode("utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CorruptJournalError(Path(path), f"{type(error).__name__}: {error}") from error


def kept_journals(path: Path) -> list[Path]:
    """Corrupt journals set aside beside ``path`` (see :func:`set_aside`)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{glob.escape(path.name)}{CORRUPT_SUFFIX}*"))


def set_aside(path: Path) -> Path:
    """Rename a corrupt journal to ``<name>.corrupt-<n>`` (never over an earlier one) and
    return the new path: it is evidence of what the crashed daemon left, so it is not deleted."""
    path = Path(path)
    for n in itertools.count(1):
        kept = path.with_name(f"{path.name}{CORRUPT_SUFFIX}-{n}")
        if not kept.exists():  # the root's lock is held: no other daemon renames here
            os.rename(path, kept)
            fsync_path(path.parent)
            return kept
    raise AssertionError("unreachable")


def remove_journal(path: Path) -> None:
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_path(path.parent)


def _written(pids: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    """Whether target files reading ``pids`` are ``wanted``, whole or partly written: an
    ``nr_targets`` write makes every target with pid 0, then each pid is written in turn."""
    return len(pids) == len(wanted) and all(p in (w, 0) for p, w in zip(pids, wanted, strict=True))


def _ours(root: SysfsRoot, journal: Journal) -> tuple[bool, str]:
    """Whether the journal's kdamond still exists and holds our configuration (or nothing)."""
    index = journal.kdamond_index
    if index is None:
        return False, "no kdamond recorded"
    if index >= root.read_int(f"{KDAMONDS}/nr_kdamonds"):
        return False, f"kdamond {index} no longer exists"
    kd = f"{KDAMONDS}/{index}"
    if root.read_int(f"{kd}/contexts/nr_contexts") == 0:
        return True, f"kdamond {index} is empty"
    c = f"{kd}/contexts/0"
    allowed = [journal.target_pids]
    if journal.pending_target_pids is not None:
        allowed.append(journal.pending_target_pids)
    try:
        pids = tuple(
            root.read_int(f"{c}/targets/{t}/pid_target")
            for t in range(root.read_int(f"{c}/targets/nr_targets"))
        )
        staged = not pids or any(_written(pids, wanted) for wanted in allowed)
        if journal.kdamond_staging and staged and root.read(f"{kd}/state").strip() != "on":
            # Stopped while we staged it: whatever part of our configuration it holds is ours.
            return True, f"kdamond {index} is off, staged by us (targets {list(pids)})"
        action = root.read(f"{c}/schemes/0/action").strip()
    except SysfsError as error:
        return False, f"kdamond {index} is not ours ({error}); left alone"
    if action == "migrate_hot" and any(_written(pids, wanted) for wanted in allowed):
        return True, f"kdamond {index} targets {list(pids)} with migrate_hot"
    return False, f"kdamond {index} targets {list(pids)} with {action}, not ours; left alone"


def recover(
    root: SysfsRoot, path: Path, log: Callable[..., object], dry_run: bool = False
) -> Journal | None:
    """If a journal is left at ``path``, put the host back as it records: remove our kdamond
    (if it is still ours), restore the weights and the auto switch, then delete the journal.
    With ``dry_run`` nothing is written; what would be done is logged. Returns the journal
    found (None if none). Raises if the restore fails; the journal is then kept.

    A corrupt journal is renamed aside (:func:`set_aside`) and logged as ``recovery`` with
    ``restored: false``; while a journal set aside is there, every start is refused: the
    weights in force may be the crashed daemon's, and taking them as the originals would lose
    the real ones for good. The operator restores by hand, then deletes the kept file."""
    kept = kept_journals(path)
    if kept:
        reason = (
            f"an unreadable journal was kept at {kept[0]} and nothing was restored from it; "
            "restore the original weights and auto switch by hand, then delete it"
        )
        log("recovery", journal=str(path), restored=False, reason=reason, dry_run=dry_run)
        raise ValueError(reason)
    try:
        journal = read_journal(path)
    except CorruptJournalError as error:
        aside = error.path if dry_run else set_aside(error.path)
        log(
            "recovery",
            journal=str(path),
            restored=False,
            reason=f"unreadable: {error.problem}",
            kept_as=str(aside),
            dry_run=dry_run,
        )
        raise ValueError(
            f"{error}; nothing was restored from it{'' if dry_run else f'; kept as {aside}'}: "
            "restore the original weights and auto switch by hand, then delete it"
        ) from error
    if journal is None:
        return None
    if Path(journal.sysfs_root) != root.path:
        # Not a crash of ours to recover: checked before anything is logged as a recovery.
        owner = (
            f"daemon pid {journal.daemon_pid}, still running, uses it"
            if _alive(journal.daemon_pid)
            else f"its daemon (pid {journal.daemon_pid}) is gone; recover it with that root"
        )
        raise ValueError(
            f"journal {path} was written for sysfs root {journal.sysfs_root}, not {root.path} "
            f"({owner}); give each daemon its own --journal"
        )
    log(
        "recovery",
        journal=str(path),
        crashed_pid=journal.daemon_pid,
        weights=journal.weights,
        auto=journal.auto,
        kdamond=journal.kdamond_index,
        dry_run=dry_run,
    )
    ours, why = _ours(root, journal)
    if dry_run:
        log("recovery_dry_run", would_remove_kdamond=ours, kdamond_note=why)
        return journal
    if ours and journal.kdamond_index is not None:
        Kdamond(root, journal.kdamond_index, created=not journal.kdamond_reused).remove()
    WeightedInterleave(root).restore(journal.state())
    remove_journal(path)
    log("recovered", kdamond_removed=ours, kdamond_note=why, weights=journal.weights)
    return journal


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
