"""Simulated memory of a host: page placement, weighted interleave, migration and its cost.

The weight rules (``interleave``) import at once; the page state and migration cost on first
use, so the real-host code, which only checks weights, does not load the compiled kernels.
"""

from typing import Any

from tierenv.memory.interleave import (
    AUTO_WEIGHTINESS,
    MAX_WEIGHT,
    MIN_WEIGHT,
    WeightError,
    auto_weights,
    check_weights,
    dests_nid,
    interleave_targets,
    weighted_interleave_nid,
)

_LAZY = {
    "MigrationCost": "tierenv.memory.migration_cost",
    "DEFAULT_PAGE_SIZE": "tierenv.memory.state",
    "MemoryState": "tierenv.memory.state",
    "MigrationResult": "tierenv.memory.state",
    "OutOfMemory": "tierenv.memory.state",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tierenv.memory' has no attribute {name!r}")


__all__ = [
    "AUTO_WEIGHTINESS",
    "DEFAULT_PAGE_SIZE",
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "MemoryState",
    "MigrationCost",
    "MigrationResult",
    "OutOfMemory",
    "WeightError",
    "auto_weights",
    "check_weights",
    "dests_nid",
    "interleave_targets",
    "weighted_interleave_nid",
]
