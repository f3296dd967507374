"""Gymnasium registration of tierenv's environments (done on ``import tierenv``)."""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = ("tierenv/WeightedInterleave-v0", "tierenv/WeightedInterleave-Discrete-v0")


def register_envs() -> None:
    """Register the env ids (idempotent, so re-imports and worker processes are safe)."""
    if ENV_IDS[0] in gym.registry:
        return
    # Episodes end by truncation at the scenario's end; gym.make(max_episode_steps=N) cuts
    # them shorter.
    gym.register(
        id="tierenv/WeightedInterleave-v0",
        entry_point="tierenv.envs.weighted_interleave:WeightedInterleaveEnv",
    )
    gym.register(
        id="tierenv/WeightedInterleave-Discrete-v0",
        entry_point="tierenv.envs.discrete:make_discrete_env",
    )
