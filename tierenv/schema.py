"""How config readers name a bad field: one error base and the typed accessors they share.

Every config the project reads (scenarios, the host config, compare configs, DAMON contexts)
reports a mistake in the same shape::

    tiny.toml:8: apps[0].speed: unknown key; expected one of name, working_set, ...
    source   line  path         problem

the source (a file, or ``<text>``), the line when the format keeps it (TOML text; YAML is read
without positions), the dotted and indexed path of the field, and the problem with the offending
value. :class:`SchemaError` holds these parts; each reader's own error class derives from it,
so a caller may catch the whole family and a test may read ``error.path``.

:class:`Reader` gives typed access to a parsed mapping: required and optional keys, text,
numbers with ranges, whole numbers, booleans, sizes ("16 GiB"), and unknown keys rejected with
the valid ones listed. :class:`TomlReader` adds the line of a key path in the TOML text and the
``[table]``/``[[tables]]`` accessors.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from tierenv.workload.units import parse_size

#: ``default`` of :meth:`Reader.value` for a key that must be there.
REQUIRED: Any = object()
#: What an unknown key is called before the list of valid ones (readers may keep their own).
UNKNOWN_KEY = "unknown key; expected one of"


def join_path(prefix: str, key: str) -> str:
    """``prefix.key``, or ``prefix[1]`` when ``key`` is an index ``[1]``; either may be empty."""
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def field_message(
    problem: str, path: str = "", source: str | None = None, line: int | None = None
) -> str:
    """``source:line: path: problem``, leaving out the parts that are not known."""
    where = f"{source}:{line}" if source and line else source
    return ": ".join(part for part in (where, path, problem) if part)


class SchemaError(ValueError):
    """A config field that cannot be used: where it is and what is wrong with it.

    ``str(error)`` is :func:`field_message` of the parts. A bare message (what readers raise
    for a file they cannot read at all) is all ``problem``. Subclasses may order their
    parameters differently but accept these keywords: :class:`Reader` builds any of them so.
    """

    def __init__(
        self, problem: str, path: str = "", source: str | None = None, line: int | None = None
    ) -> None:
        self.problem = problem
        self.path = path
        self.source = source
        self.line = line
        super().__init__(field_message(problem, path, source, line))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt by keyword, whatever a subclass's positional order: vectorised environments
        # send errors between processes.
        parts = {"problem": self.problem, "path": self.path, "source": self.source}
        return (_rebuild, (type(self), {**parts, "line": self.line}), self.__dict__)


def _rebuild(cls: type[SchemaError], parts: dict[str, Any]) -> SchemaError:
    return cls(**parts)


class Reader:
    """Typed access to a parsed config (nested dicts and lists) whose errors name the field.

    Accessors take ``(table, key, path)``: ``path`` is where ``table`` sits (``""`` at the top)
    and an error names ``path.key``; ``default=None`` means the key is required. Errors are
    raised as ``error``: a :class:`SchemaError` subclass gets the parts, any other ValueError
    subclass the formatted message. ``unknown_key`` is the phrase before the list of valid
    keys; a reader may keep its own wording because its users match on it.
    """

    def __init__(
        self,
        source: str | None,
        error: type[ValueError] = SchemaError,
        unknown_key: str = UNKNOWN_KEY,
    ) -> None:
        self.source = source
        self.error = error
        self.unknown_key = unknown_key

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` in the source text, when the format keeps it (here: never)."""
        return None

    def error_at(self, path: str, problem: str) -> ValueError:
        """The error for ``problem`` at ``path``, to raise (``from`` its cause); :meth:`fail`
        raises it."""
        line = self.line_of(path) if path else None
        if issubclass(self.error, SchemaError):
            return self.error(problem=problem, path=path, source=self.source, line=line)
        return self.error(field_message(problem, path, self.source, line))

    def fail(self, path: str, problem: str) -> NoReturn:
        raise self.error_at(path, problem)

    def keys(self, table: Mapping[Any, Any], allowed: Sequence[str], path: str) -> None:
        """Reject the first key of ``table`` that is not in ``allowed``, listing those."""
        for key in table:
            if key not in allowed:
                self.fail(join_path(path, str(key)), f"{self.unknown_key} {', '.join(allowed)}")

    def value(self, table: Mapping[str, Any], key: str, path: str, default: Any = REQUIRED) -> Any:
        """``table[key]``, or ``default`` when absent; absent and REQUIRED is an error."""
        if key in table:
            return table[key]
        if default is REQUIRED:
            self.fail(join_path(path, key), "missing (required)")
        return default

    # The typed accessors: each reads the value (None default: required) and checks it as
    # the matching ``as_*`` does, which takes a value already read and the path it came from.

    def string(self, table: dict, key: str, path: str, default: Any = None) -> str:
        return self.as_string(self._get(table, key, path, default), join_path(path, key))

    def number(
        self,
        table: dict,
        key: str,
        path: str,
        low: float | None = None,
        high: float | None = None,
        strict: bool = False,
        default: Any = None,
    ) -> float:
        """A finite number in [low, high] (``strict``: above ``low``)."""
        value = self._get(table, key, path, default)
        return self.as_number(value, join_path(path, key), low, high, strict)

    def integer(self, table: dict, key: str, path: str, low: int, default: Any = None) -> int:
        """A whole number >= ``low`` (written 4 or 4.0)."""
        return self.as_integer(self._get(table, key, path, default), join_path(path, key), low)

    def boolean(self, table: dict, key: str, path: str, default: Any = None) -> bool:
        return self.as_boolean(self._get(table, key, path, default), join_path(path, key))

    def size(self, table: dict, key: str, path: str, default: Any = None) -> int:
        """Bytes, written as a number or as "16 GiB" (:func:`tierenv.workload.units.parse_size`)."""
        return self.as_size(self._get(table, key, path, default), join_path(path, key))

    def _get(self, table: dict, key: str, path: str, default: Any) -> Any:
        return self.value(table, key, path, REQUIRED if default is None else default)

    def as_string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected text, got {value!r}")
        return value

    def as_number(
        self,
        value: Any,
        path: str,
        low: float | None = None,
        high: float | None = None,
        strict: bool = False,
    ) -> float:
        # bool is an int in Python, never a number in a config
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"expected a finite number, got {value!r}")
        if low is not None and (value <= low if strict else value < low):
            self.fail(path, f"{value!r} is too small; must be {'>' if strict else '>='} {low}")
        if high is not None and value > high:
            self.fail(path, f"{value!r} is too large; must be <= {high}")
        try:
            return float(value)
        except OverflowError:  # an int beyond any float (YAML and TOML allow them)
            self.fail(path, f"expected a finite number, got {value!r}")

    def as_integer(self, value: Any, path: str, low: int | None = None) -> int:
        """A whole number >= ``low``; ints stay exact (no round trip through float)."""
        number = self.as_number(value, path, low=low)
        if isinstance(value, int):
            return value
        if not number.is_integer():
            self.fail(path, f"expected a whole number, got {value!r}")
        return int(number)

    def as_boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {value!r}")
        return value

    def as_size(self, value: Any, path: str) -> int:
        try:
            return parse_size(value, path)
        except ValueError as error:
            # parse_size names ``path`` itself; the error names it once
            self.fail(path, str(error).split(": ", 1)[-1])


class TomlReader(Reader):
    """A :class:`Reader` of TOML text: errors also name the line of the key, when found."""

    def __init__(
        self,
        text: str,
        source: str,
        error: type[ValueError] = SchemaError,
        unknown_key: str = UNKNOWN_KEY,
    ) -> None:
        super().__init__(source, error, unknown_key)
        self.text = text
        self.lines = text.splitlines()

    def load(self) -> dict[str, Any]:
        """The parsed text; malformed TOML is an error naming the source."""
        try:
            return tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as error:
            raise self.error_at("", f"not valid TOML: {error}") from None

    def line_of(self, path: str) -> int | None:
        """Best-effort line number of a key path such as ``apps[1].distribution.kind``: the
        ``[[apps]]`` header of the second application, then ``distribution`` below it, then
        ``kind``; a key not written (a default) gets the line of the table it is missing from."""
        parts = re.findall(r"([A-Za-z_]+)(?:\[(\d+)\])?", path)
        line_index = 0
        table = ""
        for name, index in parts:
            if index:
                table = f"{table}.{name}" if table else name
                seen = -1
                for i in range(line_index, len(self.lines)):
                    if self.lines[i].strip() == f"[[{table}]]":
                        seen += 1
                        if seen == int(index):
                            line_index = i
                            break
                else:
                    return None
                continue
            pattern = re.compile(rf"^\s*(\[+\s*)?([A-Za-z_.]*\.)?{re.escape(name)}\s*(=|\]|\.)")
            for i in range(line_index, len(self.lines)):
                if pattern.match(self.lines[i]):
                    line_index = i
                    break
            else:
                return line_index + 1 if line_index else None
            table = f"{table}.{name}" if table else name
        return line_index + 1

    def table(self, data: dict, key: str) -> dict:
        """The ``[key]`` table (empty if absent)."""
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table ([{key}]), got {value!r}")
        return value

    def tables(self, data: dict, key: str) -> list[dict]:
        """The ``[[key]]`` tables (none if absent; callers say whether some are required)."""
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected a list of tables ([[{key}]]), got {value!r}")
        return value
