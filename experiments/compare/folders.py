"""Replacing a whole output folder at once, so that nobody (a reader, or the next run after a
kill) ever sees files of two runs side by side.

A run writes into a hidden sibling ``.NAME.writing-PID`` that then takes the folder's place:
on Linux in one step (``renameat2(RENAME_EXCHANGE)``), elsewhere by two renames, between which
the previous folder waits as ``.NAME.old-PID`` (the next run puts it back if a kill landed
there). Until that moment the previous folder is untouched. Because the folder is replaced
as a whole, one that holds files the command did not write is refused rather than deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any

from tierenv.files import fsync_path

#: Says whether an entry of an existing folder (path relative to it, and whether it is a
#: folder) is one the command writes, so that replacing the folder loses nothing else.
Owned = Callable[[PurePath, bool], bool]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class FolderError(ValueError):
    """An output folder that cannot be replaced; the message names it and why."""


def check_replaceable(path: str | Path, owned: Owned, what: str) -> None:
    """Refuse ``path`` if its parent cannot be written, if it is a file, or if it is a folder
    holding anything ``owned`` does not claim (replacing it would delete that). Stops at the
    first few strangers, so even a mistaken ``--out /`` is answered at once."""
    path = real_folder(path)
    existing = path.parent  # the folder is replaced through a sibling: its parent is written
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise FolderError(f"{path}: cannot write the {what}: no permission in {existing}")
    if not path.exists():
        return
    if not path.is_dir():
        raise FolderError(f"{path}: the {what} must be a folder, and this is a file")
    strangers: list[str] = []
    for top, dirs, files in os.walk(path):
        here = PurePath(top).relative_to(path)
        for name, is_dir in [(d, True) for d in dirs] + [(f, False) for f in files]:
            if not owned(here / name, is_dir):
                strangers.append(str(here / name) + ("/" if is_dir else ""))
        dirs[:] = [d for d in dirs if owned(here / d, True)]
        if len(strangers) >= 3:
            break
    if strangers:
        raise FolderError(
            f"{path}: the {what} would be replaced as a whole, but it holds files this command "
            f"does not write ({', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}); "
            "choose another folder or move them"
        )


@contextlib.contextmanager
def replaced_folder(path: str | Path, owned: Owned, what: str) -> Iterator[Path]:
    """An empty staging folder beside ``path``; when the block succeeds it becomes ``path``
    in one step (the previous folder, if any, is deleted). When the block fails, ``path``
    keeps its previous content and the staging folder is removed."""
    path = real_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    check_replaceable(path, owned, what)
    stage = _sibling(path, "writing")
    shutil.rmtree(stage, ignore_errors=True)  # left by an earlier process with our pid
    stage.mkdir()
    try:
        yield stage
        _swap_in(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # after an exchange: the previous folder


def real_folder(path: str | Path) -> Path:
    """``path`` made absolute (so ``.`` has a name and a parent), and through a symbolic
    link: the folder it points to is replaced, not the link."""
    path = Path(os.path.abspath(path))
    return path.resolve() if path.is_symlink() else path


def _sibling(path: Path, role: str, pid: int | None = None) -> Path:
    return path.parent / f".{path.name}.{role}-{os.getpid() if pid is None else pid}"


def _siblings(path: Path, role: str) -> list[tuple[int, Path]]:
    """``(pid, path)`` of the ``.NAME.ROLE-PID`` siblings, newest first."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{role}-(\d+)")
    found = []
    for entry in path.parent.iterdir() if path.parent.is_dir() else ():
        match = pattern.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found, key=lambda item: item[1].stat().st_mtime, reverse=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def _recover(path: Path) -> None:
    """Undo what a killed run left beside ``path``: its staging folders (never complete
    results: a finished one has taken the folder's place), and, if it died between the two
    renames of the fallback swap, the previous folder, which goes back in place."""
    for pid, stage in _siblings(path, "writing"):
        if not _alive(pid):
            shutil.rmtree(stage, ignore_errors=True)
    for pid, old in _siblings(path, "old"):
        if _alive(pid):
            continue
        if not path.exists():
            os.rename(old, path)
            print(
                f"{path}: restored the previous results after an interrupted run", file=sys.stderr
            )
        else:
            shutil.rmtree(old, ignore_errors=True)


def _swap_in(stage: Path, path: Path) -> None:
    """Put ``stage`` in ``path``'s place; the previous folder ends up in ``stage``."""
    if not path.exists():
        os.rename(stage, path)
    elif not exchange(stage, path):
        old = _sibling(path, "old")
        os.rename(path, old)
        os.rename(stage, path)
        shutil.rmtree(old, ignore_errors=True)
    fsync_path(path.parent)  # so the rename survives a crash, not only a kill


@functools.cache
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the system or file system cannot
    (the caller then falls back to two renames)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))
