"""Writing result and profile files so that nobody ever reads half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path``; renamed over it when the block succeeds.

    On failure the temporary file is removed and ``path`` keeps its old content. The file
    gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_yaml(path: str | Path, what: str, error: type[Exception] = ValueError) -> tuple:
    """``(data, text)`` of a YAML file; an unreadable or malformed file raises ``error`` with
    a message naming the file and ``what`` it should have been (e.g. "training config")."""
    import yaml  # only the configs need it

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise error(
            f"{path}: not a UTF-8 text file (byte {err.object[err.start]:#04x} at offset "
            f"{err.start}); expected a YAML {what}"
        ) from None
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from err


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder: so renames in it last)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
