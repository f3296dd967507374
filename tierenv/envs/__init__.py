"""Gymnasium environments (registered on ``import tierenv``)."""

from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

__all__ = ["WeightedInterleaveEnv"]
