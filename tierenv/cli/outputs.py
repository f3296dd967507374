"""Output places of the subcommands: checked before the work, written all or nothing.

A subcommand that runs for minutes must refuse a bad output path at once, not after the
work; one that writes several files must never leave some new and some old."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def check_writable(option: str, path: Path, folder: bool) -> None:
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


def same_place(a: Path, b: Path) -> bool:
    """Whether two output paths name one file (spelled differently, or one file twice)."""
    return a.resolve() == b.resolve()


@contextmanager
def staged(finals: Sequence[Path]) -> Iterator[list[Path]]:
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


def _land_together(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each (temporary, final) pair; if one rename fails, undo the earlier ones."""
    backups: dict[Path, Path] = {}  # final -> a copy of what it held
    done: list[Path] = []
    try:
        for _, final in pairs:
            if final.exists():
                backups[final] = _temp_beside(final, ".old")
                shutil.copy2(final, backups[final])
        for temp, final in pairs:
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
