"""A crash journal: what the daemon changed, written before it changes anything.

Why: the weighted-interleave table and a running kdamond outlive the daemon. After a SIGKILL,
an OOM kill or a power cut between "write" and "restore", only this file knows the original
weights, the auto switch and which kdamond was ours. It is written atomically (temporary
file, fsync, rename, fsync of the directory) so a reader sees either the old or the new
journal, never half of one; a clean exit removes it, and the next start restores from any
journal it finds before doing anything else (:func:`recover`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierenv.host.damon import KDAMONDS, Kdamond
from tierenv.host.interleave import InterleaveState, WeightedInterleave
from tierenv.host.sysfs import SysfsError, SysfsRoot

DEFAULT_JOURNAL = Path("/var/lib/tierenv/journal.json")  # systemd StateDirectory=tierenv
VERSION = 1


@dataclass(frozen=True)
class Journal:
    """The state to put back. ``kdamond_index`` is the kdamond we create (or reuse), recorded
    *before* it is created so a crash in between still finds it; ``target_pids`` identify it
    as ours (a kdamond whose first target is another pid is left alone)."""

    sysfs_root: str
    weights: dict[int, int]
    auto: bool | None
    auto_name: str | None
    kdamond_index: int | None = None
    kdamond_reused: bool = False
    target_pids: tuple[int, ...] = ()
    daemon_pid: int = field(default_factory=os.getpid)
    started_at: float = 0.0
    version: int = VERSION

    def state(self) -> InterleaveState:
        return InterleaveState(weights=dict(self.weights), auto=self.auto)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights"] = {str(node): weight for node, weight in self.weights.items()}
        data["target_pids"] = list(self.target_pids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        if data.get("version") != VERSION:
            raise ValueError(f"journal version {data.get('version')!r}, expected {VERSION}")
        return cls(
            sysfs_root=str(data["sysfs_root"]),
            weights={int(node): int(w) for node, w in data["weights"].items()},
            auto=data["auto"],
            auto_name=data["auto_name"],
            kdamond_index=data["kdamond_index"],
            kdamond_reused=bool(data["kdamond_reused"]),
            target_pids=tuple(int(p) for p in data["target_pids"]),
            daemon_pid=int(data["daemon_pid"]),
            started_at=float(data["started_at"]),
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    _fsync_dir(path.parent)


def write_journal(path: Path, journal: Journal) -> None:
    atomic_write_json(path, journal.to_json())


def read_journal(path: Path) -> Journal | None:
    """The journal at ``path``, or None if there is none. A corrupt one raises ValueError
    (the daemon then refuses to start rather than guess what the originals were)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Journal.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"journal {path} is unreadable ({error}); restore the weights by hand and delete it"
        ) from error


def remove_journal(path: Path) -> None:
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


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
    try:
        pids = tuple(
            root.read_int(f"{c}/targets/{t}/pid_target")
            for t in range(root.read_int(f"{c}/targets/nr_targets"))
        )
        action = root.read(f"{c}/schemes/0/action").strip()
    except SysfsError as error:
        return False, f"kdamond {index} is not ours ({error})"
    if pids == journal.target_pids and action == "migrate_hot":
        return True, f"kdamond {index} targets {list(pids)} with migrate_hot"
    return False, f"kdamond {index} targets {list(pids)} with {action}, not ours; left alone"


def recover(
    root: SysfsRoot, path: Path, log: Callable[..., None], dry_run: bool = False
) -> Journal | None:
    """If a journal is left at ``path``, put the host back as it records: remove our kdamond
    (if it is still ours), restore the weights and the auto switch, then delete the journal.
    With ``dry_run`` nothing is written; what would be done is logged. Returns the journal
    found (None if none). Raises if the restore fails; the journal is then kept."""
    journal = read_journal(path)
    if journal is None:
        return None
    log(
        "recovery",
        journal=str(path),
        crashed_pid=journal.daemon_pid,
        weights=journal.weights,
        auto=journal.auto,
        kdamond=journal.kdamond_index,
        dry_run=dry_run,
    )
    if Path(journal.sysfs_root) != root.path:
        raise ValueError(
            f"journal {path} was written for sysfs root {journal.sysfs_root}, not {root.path}"
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
