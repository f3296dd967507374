"""Baseline controllers and oracles behind one interface (``Controller``: measurements in,
weights out), found by the ``kind`` names experiment configs use.

- ``static``: fixed weights; ``kernel-auto``: the kernel's bandwidth-proportional auto weights;
- ``caption``, ``bwap``: hill-climbing on measured throughput (Caption, BWAP);
- ``colloid``: balancing the nodes' loaded latencies (Colloid);
- ``oracle-greedy``, ``oracle-dp`` (privileged, simulator only): ``agents.oracle``;
- ``sb3``: a trained stable-baselines3 policy (``agents.policies.learned``);
- ``onnx``: an exported policy, run with onnxruntime only (``agents.policies.onnx_policy``).

Any of them can run under a floor guard (``agents.controllers.guard``): ``guard: true`` (or a
mapping of its settings) beside a policy's parameters, ``--guard`` in the daemon.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from agents.controllers.base import ControlContext, Controller, ControllerError

__all__ = [
    "ControlContext",
    "Controller",
    "ControllerError",
    "controller_kinds",
    "make_controller",
]

# Modules whose Controller subclasses (those naming a ``kind``) are the available controllers.
_MODULES = (
    "agents.controllers.static",
    "agents.controllers.kernel_auto",
    "agents.controllers.caption",
    "agents.controllers.bwap",
    "agents.controllers.colloid",
    "agents.oracle",
    "agents.policies.learned",
    "agents.policies.onnx_policy",
)


def controller_kinds() -> dict[str, type[Controller]]:
    """Every controller class by its ``kind``."""
    for module in _MODULES:
        importlib.import_module(module)
    kinds: dict[str, type[Controller]] = {}
    pending = list(Controller.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        kind = cls.__dict__.get("kind")
        if kind is not None and not inspect.isabstract(cls):
            kinds[kind] = cls
    return dict(sorted(kinds.items()))


def make_controller(kind: str, guard: Any = None, **params: Any) -> Controller:
    """A controller of ``kind`` with its parameters; unknown kinds or parameters raise
    ``ControllerError`` listing the valid ones. ``guard`` (``true`` or a mapping of
    ``GuardSettings`` fields; None or false: none) puts it under a floor guard whose
    fallback is the kernel's auto weights, or the static weights the mapping's ``fallback``
    gives."""
    if guard is not None and guard is not False:
        from agents.controllers.guard import guarded

        return guarded(make_controller(kind, **params), guard)
    kinds = controller_kinds()
    if kind not in kinds:
        raise ControllerError(f"unknown controller kind {kind!r}; valid: {', '.join(kinds)}")
    cls = kinds[kind]
    accepted = [
        name
        for name, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ControllerError(
            f"controller {kind!r}: unknown parameter {unknown[0]!r}; valid: "
            f"{', '.join(accepted) or '(none)'}"
        )
    return cls(**params)
