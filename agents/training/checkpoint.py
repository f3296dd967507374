"""Checkpoints that resume exactly.

A checkpoint is taken at a rollout boundary (after an update, before the next rollout is
collected), so no half-filled rollout buffer has to be saved. It holds what the next
update depends on:

- ``model.zip``: parameters, optimiser state, ``num_timesteps`` and the schedule's progress;
- ``vecnormalize.pkl``: the running observation and return statistics;
- ``replay_buffer.pkl`` (off-policy algorithms);
- ``state.pkl.z``: the training envs themselves (every simulated host with its pages and
  RNGs, pickled and compressed), VecNormalize's running discounted return, the model's last
  observation/episode-start/LSTM state, and the global Python, numpy and torch RNG states
  plus the action space's RNG (SB3 reseeds them all when loading a model).

Written to ``step_<N>.tmp`` and renamed, so an interruption never leaves a partial
``step_<N>``.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.training.envs import dumps_state, loads_state, restore_venv, venv_state

MODEL_EXTRAS = (
    "_last_obs",
    "_last_episode_starts",
    "_last_original_obs",
    "_episode_num",
    "_last_lstm_states",
    "ep_info_buffer",
    "ep_success_buffer",
)
STATE_FILE = "state.pkl.z"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the most timesteps, or ``None``."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")]
    done = [p for p in done if (p / "checkpoint.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def write_checkpoint(run_dir: Path, step: int, fill: Callable[[Path], dict[str, Any]]) -> Path:
    """The checkpoint folder of ``step``: ``fill`` writes its files into a temporary folder
    and returns what ``checkpoint.json`` adds to the step; the folder is renamed into place
    only when complete, so a crash never leaves a half-written checkpoint that
    ``latest_checkpoint`` would pick."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    info = {"timesteps": step, **fill(tmp)}
    (tmp / "checkpoint.json").write_text(json.dumps(info) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def save_checkpoint(model: BaseAlgorithm, run_dir: Path) -> Path:
    """Write the model, its envs and every RNG at ``model.num_timesteps``."""

    def fill(folder: Path) -> dict[str, Any]:
        model.save(folder / "model.zip")
        venv = model.get_env()
        assert venv is not None
        if isinstance(venv, VecNormalize):
            venv.save(str(folder / "vecnormalize.pkl"))
        if isinstance(model, OffPolicyAlgorithm):
            model.save_replay_buffer(folder / "replay_buffer.pkl")
        state = {
            "venv": venv_state(venv),
            "model": {name: getattr(model, name) for name in MODEL_EXTRAS if hasattr(model, name)},
            "rng": _rng_state(model),
        }
        (folder / STATE_FILE).write_bytes(dumps_state(state))
        return {}

    return write_checkpoint(run_dir, int(model.num_timesteps), fill)


def load_checkpoint(
    algorithm_cls: type[BaseAlgorithm], path: Path, **load_kwargs: Any
) -> BaseAlgorithm:
    """The model of a checkpoint with its envs and RNGs as they were when it was written."""
    state = loads_state((path / STATE_FILE).read_bytes())
    normalizer = path / "vecnormalize.pkl"
    venv: VecEnv = restore_venv(state["venv"], normalizer if normalizer.is_file() else None)
    model = algorithm_cls.load(path / "model.zip", env=venv, device="cpu", **load_kwargs)
    if isinstance(model, OffPolicyAlgorithm):
        model.load_replay_buffer(path / "replay_buffer.pkl")
    for name, value in state["model"].items():
        setattr(model, name, value)
    _set_rng_state(model, state["rng"])
    return model


def _rng_state(model: BaseAlgorithm) -> dict[str, Any]:
    action_rng = model.action_space.np_random if model.action_space._np_random else None
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "action_space": None if action_rng is None else action_rng.bit_generator.state,
    }


def _set_rng_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["action_space"] is not None:
        model.action_space.np_random.bit_generator.state = state["action_space"]
