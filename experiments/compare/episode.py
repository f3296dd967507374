"""One trial of ``tierenv compare``: a policy runs one whole episode of one scenario at one
seed, through the env (``step_weights`` for controllers), and every step is recorded.

Trials are small picklable values, so the same function runs inline, in local worker
processes or as a Ray task, and gives the same numbers wherever it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.controllers import ControlContext, make_controller
from experiments.compare.config import PolicySpec
from tierenv.contracts.measurements import Measurements
from tierenv.damon.abi import GiB
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

# Per-step columns (besides the per-node ones) and the episode metrics built from them.
STEP_COLUMNS = (
    "step",
    "time_s",
    "reward",
    "reward_throughput",
    "reward_migration",
    "n_apps",
    "total_throughput_gbps",
    "migrated_gib",
)
NODE_COLUMNS = ("weight", "share", "bandwidth_gbps", "latency_ns")


@dataclass(frozen=True)
class Trial:
    """A policy on a scenario at a seed. ``sweep`` names the ``static-best`` policy a grid
    point belongs to (empty for ordinary policies)."""

    scenario: str
    policy: PolicySpec
    seed: int
    env: dict[str, Any] = field(default_factory=dict)
    sweep: str = ""


@dataclass
class TrialResult:
    trial: Trial
    label: str  # the controller's own description, e.g. "static 3:1"
    wall_s: float
    steps: dict[str, np.ndarray]  # STEP_COLUMNS and f"{name}_{node}" for NODE_COLUMNS

    @property
    def episode_return(self) -> float:
        return float(self.steps["reward"].sum())

    def episode_row(self) -> dict[str, Any]:
        """The episode's metrics: one row of ``episodes.csv``."""
        steps = self.steps
        return {
            "scenario": self.trial.scenario,
            "policy": self.trial.policy.name,
            "seed": self.trial.seed,
            "label": self.label,
            "return": self.episode_return,
            "reward_throughput": float(steps["reward_throughput"].sum()),
            "reward_migration": float(steps["reward_migration"].sum()),
            "mean_weighted_speedup": float(steps["reward_throughput"].mean()),
            "migrated_gib": float(steps["migrated_gib"].sum()),
            "steps": len(steps["reward"]),
            "wall_s": self.wall_s,
        }


def _last_measurements(env: WeightedInterleaveEnv) -> Measurements:
    """The measurements of the env's last reset or step."""
    result = env.last_result
    assert result is not None  # set by reset
    return result.measurements


def run_trial(trial: Trial) -> TrialResult:
    """Run the trial's episode and record it."""
    start = time.perf_counter()
    env = WeightedInterleaveEnv(trial.scenario, **trial.env)
    controller = make_controller(trial.policy.kind, **trial.policy.params)
    env.reset(seed=trial.seed)
    controller.reset(
        ControlContext(
            nodes=env.node_info,
            interval_s=env.scenario.control_interval_s,
            initial_weights=env.host.weights,
            migration_cost_per_gib=env.migration_cost_per_gib,
            scenario=env.scenario,
            seed=trial.seed,
            damos=env.damos,
        )
    )
    rows: list[tuple] = []
    truncated = False
    step = 0
    while not truncated:
        weights = controller.decide(_last_measurements(env))
        quota = controller.damos_quota()
        if quota is not None:
            env.set_damos_quota(quota)
        _, reward, _, truncated, info = env.step_weights(weights)
        measurements = _last_measurements(env)
        rows.append(
            (
                step,
                info["time_s"],
                reward,
                info["reward_throughput"],
                info["reward_migration"],
                int(info["app_running"].sum()),
                float(np.sum(info["app_throughput_gbps"])),
                info["migrated_bytes"] / GiB,
                measurements.weights,
                info["shares"],
                info["node_bandwidth_gbps"],
                info["node_latency_ns"],
            )
        )
        step += 1
    env.close()
    steps: dict[str, np.ndarray] = {
        name: np.array([row[i] for row in rows]) for i, name in enumerate(STEP_COLUMNS)
    }
    for i, name in enumerate(NODE_COLUMNS):
        per_node = np.array([row[len(STEP_COLUMNS) + i] for row in rows])
        for node in range(per_node.shape[1]):
            steps[f"{name}_{node}"] = per_node[:, node]
    return TrialResult(trial, controller.describe(), time.perf_counter() - start, steps)
