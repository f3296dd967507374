"""Simulated memory of a host: page placement, weighted interleave, migration and its cost."""

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
from tierenv.memory.migration_cost import MigrationCost
from tierenv.memory.state import DEFAULT_PAGE_SIZE, MemoryState, MigrationResult, OutOfMemory

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
