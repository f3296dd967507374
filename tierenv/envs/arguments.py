"""Constructor-argument checks the single and the batched env share.

Not a config reader (:mod:`tierenv.schema`): a bad keyword is Python's ``TypeError``, worded
as Python words it, because tools match that wording (see ``reject_unknown_arguments``)."""

from __future__ import annotations

import inspect
from typing import Any


def reject_unknown_arguments(cls: type, unknown: dict[str, Any]) -> None:
    """A ``TypeError`` naming the unknown keyword arguments and listing ``cls``'s valid ones
    (a misspelt argument must not be swallowed by ``**kwargs``).

    The message starts as Python's own does (``__init__() got an unexpected keyword argument
    'x'``): tools such as TorchRL's ``GymEnv`` try optional arguments (``frameskip``) and drop
    them only when the error reads that way."""
    if unknown:
        names = sorted(unknown)
        valid = valid_arguments(cls)
        raise TypeError(
            f"{cls.__name__}.__init__() got an unexpected keyword argument {names[0]!r} "
            f"(unknown argument(s): {', '.join(map(repr, names))}; valid: {', '.join(valid)})"
        )


def valid_arguments(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes: its ``__init__``'s named parameters and those
    of the bases it passes ``**kwargs`` on to."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]  # without self
        names += [
            p.name
            for p in parameters
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names
        ]
        if not any(p.kind is p.VAR_KEYWORD and p.name != "unknown" for p in parameters):
            break  # this __init__ passes nothing on
    return names
