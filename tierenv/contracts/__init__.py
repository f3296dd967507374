"""Shared contracts: what every host reports, how actions become weights, which features a
policy observes and the interface controllers implement. The env, the baselines, the export
and the daemon import these."""

from tierenv.contracts.actions import (
    ActionError,
    action_to_shares,
    action_to_weights,
    shares_to_weights,
    weights_to_action,
    weights_to_shares,
)
from tierenv.contracts.controller import (
    ControlContext,
    Controller,
    ControllerError,
    require_node_count,
)
from tierenv.contracts.features import FeatureError, ObservationSpec, feature_table
from tierenv.contracts.host import Host
from tierenv.contracts.measurements import (
    GroundTruth,
    Measurements,
    NodeInfo,
    SchemeStats,
    StepResult,
)

__all__ = [
    "ActionError",
    "ControlContext",
    "Controller",
    "ControllerError",
    "FeatureError",
    "GroundTruth",
    "Host",
    "Measurements",
    "NodeInfo",
    "ObservationSpec",
    "SchemeStats",
    "StepResult",
    "action_to_shares",
    "action_to_weights",
    "feature_table",
    "require_node_count",
    "shares_to_weights",
    "weights_to_action",
    "weights_to_shares",
]
