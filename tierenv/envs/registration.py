"""Gymnasium registration of tierenv's environments (done on ``import tierenv``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

if TYPE_CHECKING:  # ``import tierenv`` registers the ids without loading the env
    from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

#: The default scenario's (co-runner's) horizon in steps: the ids' ``spec.max_episode_steps``.
#: A constant, as ``import tierenv`` must not load a scenario (the daemon imports it); a test
#: holds it to ``load_scenario(DEFAULT_SCENARIO).n_steps``.
DEFAULT_HORIZON_STEPS = 180

ENV_IDS = (
    "tierenv/WeightedInterleave-v0",
    "tierenv/WeightedInterleave-Discrete-v0",
    "tierenv/WeightedInterleaveFluid-v0",
    "tierenv/WeightedInterleaveHost-v0",
)


def register_envs() -> None:
    """Register the env ids (idempotent, so re-imports and worker processes are safe)."""
    if ENV_IDS[0] in gym.registry:
        return
    # Episodes end by truncation at the scenario's end. TimeLimit's limit is the default
    # scenario's horizon, so both truncate at the same step; with a longer scenario,
    # gym.make(..., max_episode_steps=N or -1) lets it run to its end (-1: no TimeLimit).
    gym.register(
        id="tierenv/WeightedInterleave-v0",
        entry_point="tierenv.envs.weighted_interleave:WeightedInterleaveEnv",
        max_episode_steps=DEFAULT_HORIZON_STEPS,
    )
    gym.register(
        id="tierenv/WeightedInterleave-Discrete-v0",
        entry_point="tierenv.envs.discrete:WeightedInterleaveDiscreteEnv",
        max_episode_steps=DEFAULT_HORIZON_STEPS,
    )
    # A real host: the same env with backend="host", under an id flagged nondeterministic
    # (gymnasium's spec flag is per id; backend="host" on the main id works too, under its
    # TimeLimit). No max_episode_steps: a host runs as long as it is stepped.
    gym.register(
        id="tierenv/WeightedInterleaveHost-v0",
        entry_point="tierenv.envs.registration:make_host_env",
        nondeterministic=True,
    )
    # The batched fluid model has its own id: putting it behind the main id's
    # vector_entry_point would make gymnasium.make_vec's default silently lower-fidelity. No
    # max_episode_steps: make_vec would pass it to every scenario; the env truncates at each
    # scenario's end by itself (max_episode_steps=N as an argument cuts shorter).
    gym.register(
        id="tierenv/WeightedInterleaveFluid-v0",
        entry_point="tierenv.envs.registration:fluid_is_batched_only",
        vector_entry_point="tierenv.envs.vector:make_fluid_vec_env",
    )


def make_host_env(**kwargs: Any) -> WeightedInterleaveEnv:
    """``tierenv/WeightedInterleaveHost-v0``: the env on a real host, ``backend="host"``
    (``host_options``: a ``tierenv.host.backend.HostOptions`` or a dict of its fields, or
    the fields as keyword arguments)."""
    from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

    return WeightedInterleaveEnv(backend="host", **kwargs)


def fluid_is_batched_only(**kwargs: object) -> None:
    """``gymnasium.make`` on the fluid id: there is no single fluid env, say what to use."""
    raise gym.error.Error(
        "tierenv/WeightedInterleaveFluid-v0 is batched only: use gymnasium.make_vec("
        "'tierenv/WeightedInterleaveFluid-v0', num_envs=N, ...) for the fluid model, or "
        "gymnasium.make('tierenv/WeightedInterleave-v0', ...) for one env at full fidelity"
    )
