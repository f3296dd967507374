"""Evaluate a policy as it is deployed: deterministic actions on the full-fidelity env, with
the training observation statistics frozen, scoring raw env returns (never normalised
rewards, so the numbers compare with the baselines of ``tierenv compare``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from agents.training.config import TrainConfig
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Leave Python's, numpy's and torch's global RNGs as they were: evaluation must not
    change what training draws next (exact resume depends on it)."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class Evaluator:
    """Runs ``episodes`` episodes per eval scenario (seeds ``seed``, ``seed + 1``, ...) and
    returns each episode's return. Keeps one env per scenario between calls."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.envs = {
            scenario: WeightedInterleaveEnv(
                scenario,
                features=config.env.features,
                migration_cost_per_gib=config.env.migration_cost_per_gib,
                quota_action=config.env.quota_action,
            )
            for scenario in config.eval.scenarios
        }
        # results are keyed by scenario name; a distribution (a new draw per episode) by
        # its reference
        self.labels = {
            reference: reference if env.distribution is not None else env.nominal_scenario.name
            for reference, env in self.envs.items()
        }

    def __call__(
        self, model: BaseAlgorithm, normalizer: VecNormalize | None
    ) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        with preserved_rng(), torch.no_grad():
            for reference, env in self.envs.items():
                out[self.labels[reference]] = [
                    run_episode(model, env, normalizer, self.config.eval.seed + episode)
                    for episode in range(self.config.eval.episodes)
                ]
        return out


def run_episode(
    model: BaseAlgorithm,
    env: WeightedInterleaveEnv,
    normalizer: VecNormalize | None,
    seed: int,
) -> float:
    """One episode's raw return under the deterministic policy (recurrent state kept)."""
    observation, _ = env.reset(seed=seed)
    state: Any = None
    episode_start = np.ones(1, dtype=bool)
    total = 0.0
    while True:
        obs: np.ndarray | dict[str, np.ndarray] = observation[None]
        if normalizer is not None and normalizer.norm_obs:
            obs = normalizer.normalize_obs(obs)
        action, state = model.predict(
            obs, state=state, episode_start=episode_start, deterministic=True
        )
        episode_start[:] = False
        observation, reward, terminated, truncated, _ = env.step(action[0])
        total += float(reward)
        if terminated or truncated:
            return total
