"""TensorBoard scalars for every evaluated episode, so that controllers, oracles and learned
policies (evaluated by the same harness) line up in one TensorBoard.

One run per episode, ``LOGDIR/<scenario>/<policy>/seed<k>``, with the step's reward and its
terms, the weighted speedup and each node's weight share, bandwidth and latency against the
env step. Point TensorBoard at the parent of ``runs/compare`` and ``runs/train`` to see
training curves and evaluations together.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Step column -> TensorBoard tag; per-node columns are added as "<group>/node<i>".
SCALARS = {
    "reward": "episode/reward",
    "reward_throughput": "episode/weighted_speedup",
    "reward_migration": "episode/migration_cost",
    "migrated_gib": "episode/migrated_gib",
    "total_throughput_gbps": "load/throughput_gbps",
    "n_apps": "load/apps",
}
NODE_GROUPS = {
    "share": "weights/share",
    "bandwidth_gbps": "node/bandwidth_gbps",
    "latency_ns": "node/latency_ns",
}


def write_tensorboard(steps: pd.DataFrame, logdir: str | Path) -> int:
    """Write one TensorBoard run per (scenario, policy, seed) of ``steps``; returns the
    number of runs written."""
    from torch.utils.tensorboard import SummaryWriter  # imported here: torch loads slowly

    logdir = Path(logdir)
    columns = dict(SCALARS)
    for column in steps.columns:
        group, _, node = column.rpartition("_")
        if group in NODE_GROUPS and node.isdigit():
            columns[column] = f"{NODE_GROUPS[group]}/node{node}"
    runs = 0
    for (scenario, policy, seed), frame in steps.groupby(
        ["scenario", "policy", "seed"], sort=False
    ):
        with SummaryWriter(str(logdir / str(scenario) / str(policy) / f"seed{seed}")) as writer:
            step_numbers = frame["step"].to_numpy()
            for column, tag in columns.items():
                if column not in frame:
                    continue
                for step, value in zip(step_numbers, frame[column].to_numpy(), strict=True):
                    writer.add_scalar(tag, float(value), int(step))
            writer.add_scalar("episode/return", float(frame["reward"].sum()), 0)
        runs += 1
    return runs
