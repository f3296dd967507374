"""``tierenv/WeightedInterleave-Discrete-v0``: the same env with a discrete grid of weights
(for DQN and other discrete-action agents)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from gymnasium import spaces

from tierenv.contracts.actions import ActionError, action_to_weights, weights_to_shares
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

DEFAULT_LEVELS = 17


#: Levels per node whose grid stays near a few dozen weight vectors as nodes are added (the
#: grid grows as levels^nodes): 2 nodes 33 choices, 3 nodes 61, 4 nodes 65.
LEVELS_BY_NODES = {1: DEFAULT_LEVELS, 2: DEFAULT_LEVELS, 3: 5, 4: 3}


#: The most grid points (levels^nodes) a grid may have: every point's weights are computed
#: and kept, and levels 100000 on two nodes once asked for 10^10 of them (22 GB and more).
MAX_GRID_POINTS = 65_536


def default_levels(n_nodes: int) -> int:
    """The grid's levels per node for ``n_nodes`` when none are given."""
    return LEVELS_BY_NODES.get(n_nodes, 2)


def weight_grid(n_nodes: int, levels: int = DEFAULT_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """The distinct weight vectors (int64, (choices, n_nodes)) reached by actions on a grid of
    ``levels`` values per node in [-1, 1], and one action (float32) giving each; ordered by
    node 0's share, highest first. Two nodes and 17 levels give ratios 2^(k/2) from 250:1
    to 1:250. ``levels`` must be an integer >= 2 with at most ``MAX_GRID_POINTS`` grid points
    (levels^n_nodes); anything else raises ``ValueError`` before the grid is built."""
    check_levels(levels, n_nodes)
    values = np.linspace(-1.0, 1.0, levels, dtype=np.float32)
    actions = np.array(list(itertools.product(values, repeat=n_nodes)), dtype=np.float32)
    weights, first = np.unique(action_to_weights(actions, n_nodes), axis=0, return_index=True)
    order = np.lexsort((-weights_to_shares(weights)).T[::-1])
    return weights[order], actions[first[order]]


def check_levels(levels: object, n_nodes: int | None) -> int:
    """``levels`` as the int it must be: an integer >= 2 (not a bool, not 2.5 or "5") whose
    grid of levels^n_nodes points stays within ``MAX_GRID_POINTS`` (``n_nodes`` None: the
    grid's size is not checked yet)."""
    if isinstance(levels, bool | np.bool_) or not isinstance(levels, int | np.integer):
        raise ValueError(
            f"levels must be an integer number of values per node (>= 2), got {levels!r} "
            f"({type(levels).__name__})"
        )
    levels = int(levels)
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    if n_nodes is not None and levels**n_nodes > MAX_GRID_POINTS:
        largest = int(MAX_GRID_POINTS ** (1 / n_nodes) + 1e-9)
        raise ValueError(
            f"levels {levels} on {n_nodes} nodes is a grid of {levels**n_nodes:,} points; at "
            f"most {MAX_GRID_POINTS:,} (levels <= {largest} on {n_nodes} nodes)"
        )
    return levels


class WeightedInterleaveDiscreteEnv(WeightedInterleaveEnv):
    """``tierenv/WeightedInterleave-Discrete-v0``: ``WeightedInterleaveEnv`` whose action is an
    index into a grid of weight vectors (``Discrete(len(choices))``, the env's own action
    space, so ``env.unwrapped.action_space`` is discrete too).

    Action ``k`` applies ``choices[k]`` (``weight_grid(n_nodes, levels)``) through the shared
    action mapping, so the weights are exactly those of the grid. An action must be an
    integer (a Python or numpy integer, or an integer array of one element) in
    ``0..len(choices) - 1``; anything else (1.5, True, "3", out of range) raises
    ``ActionError``. Everything else (observations, reward, info, episodes, arguments) is the
    continuous env's; ``levels`` sets the grid's values per node (default:
    ``default_levels(n_nodes)``; an integer >= 2 whose grid has at most ``MAX_GRID_POINTS``
    points, else ``ValueError``). The DAMOS quota action (``quota_action``) is continuous only.
    """

    # a Discrete space: the base env's actions are arrays, this env's are indices
    action_space: spaces.Space[Any]

    def __init__(self, levels: int | None = None, **kwargs: Any) -> None:
        if kwargs.get("quota_action"):
            raise ValueError(
                "quota_action=True is not available in the discrete env (its actions are "
                "weight vectors only); use tierenv/WeightedInterleave-v0"
            )
        if levels is not None:
            check_levels(levels, None)  # its type and least value, before the host is built
        super().__init__(**kwargs)
        levels = default_levels(self.n_nodes) if levels is None else levels
        self.levels = check_levels(levels, self.n_nodes)
        self.choices, self._actions = weight_grid(self.n_nodes, levels)
        self.action_space = spaces.Discrete(len(self.choices))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._check_running("step()")
        return self._step_values(self._actions[self.choice_index(action)])

    def choice_index(self, action: Any) -> int:
        """``action`` as an index into ``choices``, or ``ActionError`` saying what is wrong."""
        value = np.asarray(action)
        if value.size != 1 or value.dtype.kind not in "iu":
            shown = value.tolist() if value.dtype.kind in "biufc" else action
            raise ActionError(
                f"action must be one integer in 0..{len(self.choices) - 1} (an index into "
                f"the weight grid), got {shown!r} ({value.dtype} of shape {value.shape})"
            )
        index = int(value.reshape(()))
        if not 0 <= index < len(self.choices):
            raise ActionError(f"action {index} is not in 0..{len(self.choices) - 1}")
        return index
