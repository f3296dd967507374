"""Shared contracts: what every host reports, how actions become weights, and which features
a policy observes. The env, the baselines, the export and the daemon import these."""

from tierenv.contracts.actions import (
    ActionError,
    action_to_shares,
    action_to_weights,
    shares_to_weights,
    weights_to_action,
    weights_to_shares,
)
from tierenv.contracts.features import FeatureError, ObservationSpec, feature_table
from tierenv.contracts.host import Host
from tierenv.contracts.measurements import GroundTruth, Measurements, NodeInfo, StepResult

__all__ = [
    "ActionError",
    "FeatureError",
    "GroundTruth",
    "Host",
    "Measurements",
    "NodeInfo",
    "ObservationSpec",
    "StepResult",
    "action_to_shares",
    "action_to_weights",
    "feature_table",
    "shares_to_weights",
    "weights_to_action",
    "weights_to_shares",
]
