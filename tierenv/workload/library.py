"""Shipped TOML libraries (scenarios, scenario distributions): names, and a file found by its
shipped name or by path, read with errors that name it."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SUFFIX = ".toml"


@dataclass(frozen=True)
class ShippedLibrary:
    """The ``*.toml`` files of ``tierenv/workload/<folder>/``, called ``kind`` in errors,
    which are raised as ``error``."""

    folder: str
    kind: str
    error: type[ValueError]

    def names(self) -> list[str]:
        entries = (resources.files("tierenv.workload") / self.folder).iterdir()
        return sorted(e.name[: -len(SUFFIX)] for e in entries if e.name.endswith(SUFFIX))

    def read(self, name_or_path: str | Path) -> tuple[str, str, Path | None]:
        """(text, source for error messages, folder relative paths in it start from) of a
        shipped name or a file path."""
        path = Path(name_or_path)
        if path.suffix != SUFFIX and not path.exists():
            candidate = (
                resources.files("tierenv.workload") / self.folder / f"{name_or_path}{SUFFIX}"
            )
            if not candidate.is_file():
                raise self.error(
                    f"{name_or_path}: no such {self.kind} file or shipped {self.kind} "
                    f"(shipped: {', '.join(self.names())})"
                )
            return candidate.read_text(), f"{name_or_path}{SUFFIX}", None
        try:
            return path.read_text(encoding="utf-8"), str(path), path.parent
        except OSError as error:
            raise self.error(f"{path}: cannot read: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise self.error(
                f"{path}: not a UTF-8 text file (byte {error.object[error.start]:#04x} at "
                f"offset {error.start}); expected a {self.kind} TOML"
            ) from None
