"""Gymnasium environments (registered on ``import tierenv``).

``WeightedInterleaveEnv`` is imported on first use, so ``import tierenv`` (which registers the
ids) stays light for the daemon, which never builds an env.
"""

from typing import Any

__all__ = ["WeightedInterleaveDiscreteEnv", "WeightedInterleaveEnv"]


def __getattr__(name: str) -> Any:
    if name == "WeightedInterleaveEnv":
        from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

        return WeightedInterleaveEnv
    if name == "WeightedInterleaveDiscreteEnv":
        from tierenv.envs.discrete import WeightedInterleaveDiscreteEnv

        return WeightedInterleaveDiscreteEnv
    raise AttributeError(f"module 'tierenv.envs' has no attribute {name!r}")
