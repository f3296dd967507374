"""A thin, safe access layer for kernel sysfs files, in the style of damo's ``_damon_sysfs``.

Why this exists: sysfs reports a refused value only through the ``write()`` errno, and a bare
``OSError`` says neither which file nor which value. Every failure here becomes a
:class:`SysfsError` naming the file, the value and what the errno means for DAMON and
weighted interleave (mm/damon/sysfs.c, mm/mempolicy.c).

Safety: the sysfs root is always explicit, and the real ``/sys`` (or ``/proc``) is refused unless
``TIERENV_ALLOW_REAL_SYSFS=1`` is set. All I/O goes through a small :class:`Files` protocol, so
tests and the daemon can run against :class:`tierenv.host.fake_kernel.FakeKernel`, which
validates writes like the kernel and can inject faults.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol

ALLOW_ENV = "TIERENV_ALLOW_REAL_SYSFS"
REAL_TREES = (Path("/sys"), Path("/proc"))

# What an errno means when sysfs returns it (mm/damon/sysfs.c, mm/damon/stat.c, mm/mempolicy.c).
MEANINGS: dict[int, str] = {
    errno.EINVAL: "the kernel refused the value (invalid value, or invalid configuration at "
    "state on/commit)",
    errno.EBUSY: "DAMON is in use: another DAMON user holds it (e.g. the DAMON_STAT module; "
    "disable it with 'echo N > /sys/module/damon_stat/parameters/enabled' or boot with "
    "damon_stat.enabled=N), a kdamond is running, or another sysfs command is in progress",
    errno.ENOENT: "the file does not exist: this kernel lacks the feature, or the node or "
    "directory is absent",
    errno.EACCES: "permission denied: needs root (CAP_SYS_ADMIN), or the file is read-only",
    errno.EPERM: "operation not permitted: needs root (CAP_SYS_ADMIN)",
    errno.ENODEV: "no such device: e.g. weighted-interleave auto mode without bandwidth "
    "(HMAT/CDAT) data",
    errno.ECANCELED: "cancelled: e.g. the kdamond stopped because its target process exited",
    errno.ENOMEM: "the kernel is out of memory",
}


class RealSysfsRefusedError(PermissionError):
    """Raised instead of touching the real /sys or /proc without the explicit opt-in."""


class SysfsError(OSError):
    """A sysfs read or write failed; ``errno``, ``filename`` and ``value`` say which and why."""

    def __init__(
        self,
        code: int,
        path: Path | str,
        operation: str,
        value: str | None = None,
        hint: str | None = None,
    ) -> None:
        meaning = MEANINGS.get(code, os.strerror(code))
        super().__init__(code, meaning, str(path))
        self.operation = operation
        self.value = value
        name = errno.errorcode.get(code, str(code))
        what = f"writing {value!r} to {path}" if operation == "write" else f"{operation} {path}"
        self.message = f"{what} failed with {name}: {meaning}" + (f". {hint}" if hint else "")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_error,
            (self.errno, self.filename, self.operation, self.value, self.message),
        )


def _rebuild_error(
    code: int, path: str, operation: str, value: str | None, message: str
) -> SysfsError:
    error = SysfsError(code, path, operation, value)
    error.message = message
    return error


def is_real_tree(path: Path) -> bool:
    """Whether ``path`` (symlinks resolved) is the host's /sys or /proc or lies inside them."""
    resolved = Path(os.path.realpath(path))
    return any(resolved == tree or tree in resolved.parents for tree in REAL_TREES)


def check_allowed(path: Path) -> None:
    """Refuse the real /sys and /proc unless TIERENV_ALLOW_REAL_SYSFS=1 (tests never set it)."""
    if is_real_tree(path) and os.environ.get(ALLOW_ENV) != "1":
        raise RealSysfsRefusedError(
            f"refusing to use the real kernel tree {path}: set {ALLOW_ENV}=1 to let tierenv "
            "read and write it (only on a host you mean to reconfigure, as root); tests and "
            "dry runs use tierenv.host.fake_kernel.FakeKernel"
        )


def refuse_real_tree(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse to create or write ``what`` (a log, a status or journal file, a lock, a fake
    tree) at ``path`` inside the real /sys or /proc, whatever ``TIERENV_ALLOW_REAL_SYSFS``
    says: that opt-in lets tierenv write the kernel's own files, never create its files there.
    Returns ``path`` as a ``Path``."""
    path = Path(path)
    if is_real_tree(path):
        raise RealSysfsRefusedError(
            f"refusing to write {what} at {path}: it lies inside the real kernel tree "
            f"{Path(os.path.realpath(path))}; tierenv writes its own files only elsewhere "
            "(a journal, log, status file or fake tree belongs in /var/lib, /var/log or /tmp)"
        )
    return path


class Files(Protocol):
    """The three file operations the layer needs; the fake kernel implements them too."""

    def read_text(self, path: Path) -> str: ...

    def write_text(self, path: Path, value: str) -> None: ...

    def listdir(self, path: Path) -> list[str]: ...


class RealFiles:
    """Plain file-system I/O with sysfs semantics: one ``write()``, never creating a file."""

    def read_text(self, path: Path) -> str:
        with open(path, encoding="utf-8") as file:
            return file.read()

    def write_text(self, path: Path, value: str) -> None:
        check_allowed(path)  # second guard: also holds if a SysfsRoot is bypassed
        # No O_CREAT: like sysfs, a missing file is ENOENT. A single os.write makes the
        # kernel's errno surface here rather than at a buffered close.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def listdir(self, path: Path) -> list[str]:
        return sorted(os.listdir(path))


class SysfsRoot:
    """Reads and writes files relative to an explicit sysfs root (``/sys`` on a real host)."""

    def __init__(self, path: str | os.PathLike[str], files: Files | None = None) -> None:
        self.path = Path(path).absolute()
        check_allowed(self.path)
        self.files: Files = files if files is not None else RealFiles()

    def __repr__(self) -> str:
        return f"SysfsRoot({str(self.path)!r}, files={type(self.files).__name__})"

    def resolve(self, rel: str) -> Path:
        """The absolute path of ``rel``; absolute paths and '..' are refused (no escaping)."""
        parts = PurePosixPath(rel)
        if parts.is_absolute() or ".." in parts.parts:
            raise ValueError(f"sysfs path {rel!r} must be relative to the root, without '..'")
        return self.path / parts

    def read(self, rel: str) -> str:
        """The file's content without the trailing newline."""
        path = self.resolve(rel)
        try:
            return self.files.read_text(path).rstrip("\n")
        except OSError as error:
            raise SysfsError(error.errno or errno.EIO, path, "reading") from error

    def read_int(self, rel: str) -> int:
        text = self.read(rel).strip()
        try:
            return int(text, 0)
        except ValueError:
            raise SysfsError(errno.EINVAL, self.resolve(rel), "parsing", text) from None

    def write(self, rel: str, value: object, hints: Mapping[int, str] | None = None) -> None:
        """Write ``str(value)``; on failure raise :class:`SysfsError` with an errno-specific
        ``hints`` entry appended to the generic meaning."""
        path = self.resolve(rel)
        text = str(value)
        try:
            self.files.write_text(path, text)
        except OSError as error:
            if isinstance(error, SysfsError | RealSysfsRefusedError):
                raise
            code = error.errno or errno.EIO
            hint = (hints or {}).get(code)
            raise SysfsError(code, path, "write", text, hint) from error

    def listdir(self, rel: str = "") -> list[str]:
        path = self.resolve(rel) if rel else self.path
        try:
            return self.files.listdir(path)
        except OSError as error:
            raise SysfsError(error.errno or errno.EIO, path, "listing") from error

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists (file or directory), judged by listing its parent."""
        parent, _, name = rel.rpartition("/")
        try:
            return name in self.listdir(parent)
        except SysfsError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise


def default_proc_root(sysfs: SysfsRoot) -> SysfsRoot:
    """The procfs next to a sysfs root: ``/proc`` for ``/sys``, ``DIR/proc`` for ``DIR/sys``."""
    return SysfsRoot(sysfs.path.parent / "proc")
