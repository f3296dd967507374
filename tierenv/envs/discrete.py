"""``tierenv/WeightedInterleave-Discrete-v0``: the same env with a discrete grid of weights
(for DQN and other discrete-action agents)."""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tierenv.contracts.actions import action_to_weights, weights_to_shares
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

DEFAULT_LEVELS = 17


#: Levels per node whose grid stays near a few dozen weight vectors as nodes are added (the
#: grid grows as levels^nodes): 2 nodes 33 choices, 3 nodes 61, 4 nodes 65.
LEVELS_BY_NODES = {1: DEFAULT_LEVELS, 2: DEFAULT_LEVELS, 3: 5, 4: 3}


def default_levels(n_nodes: int) -> int:
    """The grid's levels per node for ``n_nodes`` when none are given."""
    return LEVELS_BY_NODES.get(n_nodes, 2)


def weight_grid(n_nodes: int, levels: int = DEFAULT_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """The distinct weight vectors (int64, (choices, n_nodes)) reached by actions on a grid of
    ``levels`` values per node in [-1, 1], and one action (float32) giving each; ordered by
    node 0's share, highest first. Two nodes and 17 levels give ratios 2^(k/2) from 250:1
    to 1:250."""
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    values = np.linspace(-1.0, 1.0, levels, dtype=np.float32)
    actions = np.array(list(itertools.product(values, repeat=n_nodes)), dtype=np.float32)
    weights, first = np.unique(action_to_weights(actions, n_nodes), axis=0, return_index=True)
    order = np.lexsort((-weights_to_shares(weights)).T[::-1])
    return weights[order], actions[first[order]]


class DiscreteWeights(gym.ActionWrapper):
    """Action ``k`` applies ``weight_grid(...)[k]`` through the shared action mapping (so the
    weights are exactly those of the grid)."""

    def __init__(self, env: gym.Env, levels: int | None = None) -> None:
        super().__init__(env)
        n_nodes = env.unwrapped.n_nodes
        levels = default_levels(n_nodes) if levels is None else levels
        self.choices, self._actions = weight_grid(n_nodes, levels)
        self.action_space = spaces.Discrete(len(self.choices))

    def action(self, action: Any) -> np.ndarray:
        index = int(action)
        if not 0 <= index < len(self.choices):
            raise ValueError(f"action {action!r} is not in 0..{len(self.choices) - 1}")
        return self._actions[index]


def make_discrete_env(levels: int | None = None, **kwargs: Any) -> DiscreteWeights:
    """The registered entry point of the discrete variant."""
    return DiscreteWeights(WeightedInterleaveEnv(**kwargs), levels)
