"""JSON-lines event log: one object per line, so a decision log can be grepped, tailed and
loaded with ``pandas.read_json(lines=True)`` without a parser for free text."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from tierenv.host.sysfs import refuse_real_tree


def jsonable(value: Any) -> Any:
    """numpy arrays/scalars, tuples and non-finite floats as plain JSON (NaN -> "nan")."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class JsonLog:
    """Writes ``{"time": ..., "event": ..., **fields}`` lines to a file path or stream, flushed
    per line so a crash loses at most the line being written."""

    def __init__(
        self, target: str | Path | IO[str] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self._own = isinstance(target, str | Path)
        if isinstance(target, str | Path):
            refuse_real_tree(target, "a decision log")
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self.stream: IO[str] = open(target, "a", encoding="utf-8")  # noqa: SIM115
        else:
            self.stream = target if target is not None else sys.stdout

    def __call__(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"time": self.clock(), "event": event, **jsonable(fields)}
        self.stream.write(json.dumps(record, sort_keys=False) + "\n")
        self.stream.flush()
        return record

    def close(self) -> None:
        if self._own:
            self.stream.close()
