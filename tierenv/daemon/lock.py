"""One daemon per sysfs root: an exclusive ``flock`` on a lock file holding the owner's pid.

Why: two daemons on one root would each take the other's live journal for a crash, tear down
each other's kdamond and lose the host's original weights. ``flock`` is released by the kernel
when its holder dies, however it dies, so a lock left by a SIGKILL is never stale: the next
daemon simply gets it (and logs the dead owner's pid). The pid in the file only names the
owner in the refusal message.

Where: a fake tree's lock sits beside its ``sys`` directory (``DIR/.sys.tierenv-daemon.lock``);
the real ``/sys``'s in ``/run/tierenv`` (root-only, cleared at boot). Both spellings of one tree
(symlinks, ``..``) give the same lock, since the path is resolved first.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from tierenv.host.sysfs import is_real_tree, refuse_real_tree

REAL_LOCK_DIR = Path("/run/tierenv")


class LockHeldError(RuntimeError):
    """Another live daemon manages this sysfs root."""


def lock_path(sysfs_root: str | os.PathLike[str]) -> Path:
    """The lock file of the sysfs tree at ``sysfs_root`` (see the module docstring)."""
    resolved = Path(os.path.realpath(sysfs_root))
    if is_real_tree(resolved):
        name = "-".join(resolved.parts[1:]) or "root"
        return REAL_LOCK_DIR / f"daemon-{name}.lock"
    return resolved.parent / f".{resolved.name}.tierenv-daemon.lock"


def _owner(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


class RootLock:
    """The exclusive lock of one sysfs root; :meth:`acquire` or raise, :meth:`release`."""

    def __init__(self, sysfs_root: str | os.PathLike[str]) -> None:
        self.sysfs_root = Path(sysfs_root)
        self.path = refuse_real_tree(lock_path(sysfs_root), "the daemon's lock file")
        self._fd: int | None = None
        self.previous_owner: str | None = None  # pid left in the file by a dead holder

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _refusal(self, fd: int) -> LockHeldError:
        return LockHeldError(
            f"another tierenv daemon (pid {_owner(fd)}) already manages sysfs root "
            f"{self.sysfs_root} (lock {self.path}); stop it first (SIGTERM restores the host), "
            "or give this daemon another --sysfs-root"
        )

    def acquire(self) -> None:
        """Take the lock and write our pid, or raise :class:`LockHeldError` naming the owner."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a planted symlink must not make root write our pid somewhere else.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            busy = error.errno in (errno.EWOULDBLOCK, errno.EACCES)
            refusal = self._refusal(fd) if busy else None
            os.close(fd)
            if refusal is None:
                raise
            raise refusal from None
        previous = _owner(fd)
        self.previous_owner = None if previous == "unknown" else previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def check_free(self) -> None:
        """Raise :class:`LockHeldError` if a live daemon holds the lock; takes nothing and
        creates nothing (for dry runs, which write no files of their own here)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise self._refusal(fd) from None
            raise
        finally:
            os.close(fd)

    def release(self) -> None:
        """Empty the file (no owner) and drop the lock; the file stays, so a waiting daemon
        never locks an unlinked inode."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
