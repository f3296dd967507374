"""Constructor-argument checks the single and the batched env share."""

from __future__ import annotations

import inspect
from typing import Any


def reject_unknown_arguments(cls: type, unknown: dict[str, Any]) -> None:
    """A ``TypeError`` naming the unknown keyword arguments and listing ``cls``'s valid ones
    (a misspelt argument must not be swallowed by ``**kwargs``)."""
    if unknown:
        valid = [name for name in inspect.signature(cls).parameters if name != "unknown"]
        raise TypeError(
            f"{cls.__name__}: unknown argument(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(valid)}"
        )
