"""Gymnasium's CartPole timed in the same run as tierenv, so that speeds compare across machines.

An env-steps-per-second figure says as much about the machine as about the code; the same
machine's CartPole rate, measured minutes apart, is the yardstick that travels. ``tierenv
bench`` prints every tierenv figure beside the matching CartPole figure and their ratio:

- one env: ``CartPoleEnv`` itself (no ``gym.make`` wrappers, as tierenv's single-env rows time
  ``WeightedInterleaveEnv`` itself), uniformly random actions, reset when an episode ends;
- batched: Gymnasium's native ``CartPoleVectorEnv`` at the same number of envs as the
  batched fluid row (its own autoreset), uniformly random actions;
- training: stable-baselines3's PPO on CartPole-v1 with the same number of envs, the same
  PPO arguments and the same budget as the tierenv training rows (CartPole's env costs next
  to nothing, so this times the trainer alone on this machine).

Actions are drawn before the clock starts, so both sides time stepping only.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv

#: Steps timed for one CartPole env, in ``REPEATS`` runs whose median is reported (about a
#: second in all on a 2-core EPYC or Xeon).
SINGLE_STEPS = 150_000
REPEATS = 3
#: Env-steps timed per batched row, within ``MIN_VECTOR_STEPS``..``MAX_VECTOR_STEPS`` vector
#: steps (small batches step at Python speed: 20,000 vector steps take about a second).
VECTOR_ENV_STEPS = 2_000_000
MIN_VECTOR_STEPS = 200
MAX_VECTOR_STEPS = 20_000


def cartpole_single_steps_per_s(steps: int = SINGLE_STEPS, seed: int = 0) -> float:
    """Steps per second of one ``CartPoleEnv`` under uniformly random actions: the median of
    ``REPEATS`` runs of ``steps // REPEATS`` steps (a shared machine's hiccup in one run does
    not move the yardstick)."""
    if steps < REPEATS:
        raise ValueError(f"steps must be at least {REPEATS}, got {steps}")
    env = CartPoleEnv()
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 2, steps // REPEATS).tolist()
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        rates.append(len(actions) / (time.perf_counter() - start))
    env.close()
    return float(np.median(rates))


def cartpole_vector_steps_per_s(
    num_envs: int, env_steps: int = VECTOR_ENV_STEPS, seed: int = 0
) -> float:
    """Aggregate env-steps per second of ``CartPoleVectorEnv`` with ``num_envs`` envs under
    uniformly random actions (about ``env_steps`` env-steps in all, within
    ``MIN_VECTOR_STEPS``..``MAX_VECTOR_STEPS`` vector steps)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    vector_steps = min(max(MIN_VECTOR_STEPS, env_steps // num_envs), MAX_VECTOR_STEPS)
    env = CartPoleVectorEnv(num_envs=num_envs)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 2, (vector_steps, num_envs))
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - start
    env.close()
    return vector_steps * num_envs / elapsed


def cartpole_training_steps_per_s(
    total_steps: int, n_envs: int, hyperparameters: dict[str, Any], seed: int = 0
) -> float:
    """Env-steps per second of stable-baselines3's PPO training on CartPole-v1 with
    ``n_envs`` envs (``DummyVecEnv``) and the given PPO arguments, for ``total_steps`` steps
    (rounded up to whole updates) on one torch thread: the same trainer and budget as a
    tierenv training figure, on an env that costs next to nothing."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger

    if total_steps < 1 or n_envs < 1:
        raise ValueError(f"total_steps and n_envs must be >= 1, got {total_steps}, {n_envs}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
        model = PPO("MlpPolicy", env, seed=seed, device="cpu", **hyperparameters)
        # SB3's default logger would leave an empty SB3-<date> folder in the temp folder
        model.set_logger(Logger(folder=None, output_formats=[]))
        start = time.perf_counter()
        model.learn(total_steps)
        elapsed = time.perf_counter() - start
        steps = model.num_timesteps
        env.close()
    finally:
        torch.set_num_threads(threads)
    return steps / elapsed
