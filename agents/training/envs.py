"""The vectorised training envs and their exact snapshots.

Backend ``full``: ``n_envs`` copies of ``MultiScenarioEnv`` (one ``WeightedInterleaveEnv``
per training scenario, one drawn per episode from the env's own seeded ``np_random``) in a
``DummyVecEnv``. ``DummyVecEnv`` and not ``SubprocVecEnv``: measured on this 2-core machine,
worker processes gain nothing once the PPO update shares the cores, and ``train`` already
runs seeds in parallel processes; in-process envs can also be pickled for exact resume.

Backend ``fluid``: the batched fluid model (``MixedScenarioVectorEnv`` behind
``Sb3FluidVecEnv``) runs one batch per training scenario or distribution, so ``n_envs`` is
split across them (as evenly as possible, the first ones getting the remainder) and the
batches are concatenated by ``ConcatVecEnv``: every rollout mixes the scenarios in fixed
proportions instead of drawing one per episode. Each batch draws a run of its scenario (the
scenario's ``[variation]``), or a scenario of its distribution, per group of envs and episode
from its seed, so a seed fixes the runs as well as the policy's initialisation.

A training scenario may be a distribution (``random:default``): the full backend draws a
scenario per episode, the fluid one per group and episode.

Both are wrapped in ``VecNormalize`` when the config normalises observations or rewards.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
import types
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecEnvWrapper,
    VecMonitor,
    VecNormalize,
)
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from agents.training.config import TrainConfig
from agents.training.vec_adapters import Sb3FluidVecEnv
from tierenv.envs.vector_mixed import MixedScenarioVectorEnv
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv


class ScenarioMismatchError(ValueError):
    """Scenarios that one policy cannot serve (different node counts or features)."""


class MultiScenarioEnv(gym.Env):
    """One ``WeightedInterleaveEnv`` per scenario; each ``reset`` picks one of them with the
    env's seeded ``np_random`` and seeds it from the same generator, so a seed fixes the
    sequence of scenarios and every episode's DAMON randomness."""

    metadata = WeightedInterleaveEnv.metadata

    def __init__(
        self,
        scenarios: Sequence[str | Path],
        features: str | Sequence[str] = "default",
        migration_cost_per_gib: float = 0.1,
        quota_action: bool = False,
    ) -> None:
        if not scenarios:
            raise ValueError("MultiScenarioEnv needs at least one scenario")
        self.envs = [
            WeightedInterleaveEnv(
                scenario,
                features=features,
                migration_cost_per_gib=migration_cost_per_gib,
                quota_action=quota_action,
            )
            for scenario in scenarios
        ]
        first = self.envs[0]
        for env in self.envs[1:]:
            if env.n_nodes != first.n_nodes:
                raise ScenarioMismatchError(
                    f"scenario {env.scenario.name!r} has {env.n_nodes} memory nodes but "
                    f"{first.scenario.name!r} has {first.n_nodes}: one policy needs one node count"
                )
        # a distribution is named as given (its draws change every episode)
        self.scenario_names = [
            str(scenario) if env.distribution is not None else env.nominal_scenario.name
            for scenario, env in zip(scenarios, self.envs, strict=True)
        ]
        self.n_nodes = first.n_nodes
        self.observation_names = first.observation_names
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self.render_mode = None
        self.current = 0

    @property
    def scenario(self) -> str:
        """The scenario of the current episode."""
        return self.scenario_names[self.current]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.current = int(self.np_random.integers(len(self.envs)))
        inner_seed = int(self.np_random.integers(2**31 - 1))
        observation, info = self.envs[self.current].reset(seed=inner_seed, options=options)
        info["scenario"] = self.scenario
        return observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.envs[self.current].step(action)
        info["scenario"] = self.scenario
        return observation, reward, terminated, truncated, info


class ConcatVecEnv(VecEnv):
    """Several VecEnvs with the same spaces side by side as one (env indices run through the
    first, then the second, ...)."""

    def __init__(self, venvs: Sequence[VecEnv]) -> None:
        self.venvs = list(venvs)
        self._offsets = np.cumsum([0] + [v.num_envs for v in self.venvs])
        first = self.venvs[0]
        super().__init__(int(self._offsets[-1]), first.observation_space, first.action_space)

    def reset(self) -> np.ndarray:
        for venv, offset in zip(self.venvs, self._offsets, strict=False):
            seeds = self._seeds[offset : offset + venv.num_envs]
            if seeds[0] is not None:
                venv.seed(seeds[0])
        self._reset_seeds()
        return np.concatenate([venv.reset() for venv in self.venvs])

    def step_async(self, actions: np.ndarray) -> None:
        for venv, lo, hi in self._slices():
            venv.step_async(actions[lo:hi])

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        results = [venv.step_wait() for venv in self.venvs]
        infos: list[dict[str, Any]] = [info for r in results for info in r[3]]
        return (
            np.concatenate([r[0] for r in results]),
            np.concatenate([r[1] for r in results]),
            np.concatenate([r[2] for r in results]),
            infos,
        )

    def close(self) -> None:
        for venv in self.venvs:
            venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [self._at(i)[0].get_attr(attr_name, self._at(i)[1])[0] for i in self._idx(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for venv in self.venvs:
            venv.set_attr(attr_name, value)

    def env_method(
        self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        out = []
        for i in self._idx(indices):
            venv, j = self._at(i)
            out.append(venv.env_method(method_name, *args, indices=j, **kwargs)[0])
        return out

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._idx(indices)]

    def _slices(self) -> list[tuple[VecEnv, int, int]]:
        return [
            (venv, int(self._offsets[k]), int(self._offsets[k + 1]))
            for k, venv in enumerate(self.venvs)
        ]

    def _idx(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def _at(self, index: int) -> tuple[VecEnv, int]:
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self.venvs[k], index - int(self._offsets[k])


def split_envs(n_envs: int, n_scenarios: int) -> list[int]:
    """Envs per scenario for the fluid backend: as even as possible, first ones get more."""
    return [
        n_envs // n_scenarios + (1 if k < n_envs % n_scenarios else 0) for k in range(n_scenarios)
    ]


def make_base_venv(config: TrainConfig) -> VecEnv:
    """The training VecEnv before normalisation (episode statistics recorded for SB3's
    ``rollout/ep_rew_mean``)."""
    env = config.env
    if env.backend == "fluid":
        counts = split_envs(env.n_envs, len(env.scenarios))
        # MixedScenarioVectorEnv, not the plain fluid env, even for one scenario: it draws a
        # run of the scenario (its [variation]) per group and episode, as the full env does
        parts = [
            Sb3FluidVecEnv(
                MixedScenarioVectorEnv(
                    count,
                    scenario=scenario,
                    features=env.features,
                    migration_cost_per_gib=env.migration_cost_per_gib,
                    quota_action=env.quota_action,
                )
            )
            for scenario, count in zip(env.scenarios, counts, strict=True)
        ]
        return VecMonitor(ConcatVecEnv(parts))

    def factory() -> gym.Env:
        return Monitor(
            MultiScenarioEnv(
                env.scenarios, env.features, env.migration_cost_per_gib, env.quota_action
            )
        )

    return DummyVecEnv([factory] * env.n_envs)


def make_train_venv(config: TrainConfig) -> VecEnv:
    """The training VecEnv, wrapped in ``VecNormalize`` when the config asks for it."""
    venv = make_base_venv(config)
    if config.env.normalize:
        venv = VecNormalize(
            venv,
            norm_obs=config.env.normalize_observation,
            norm_reward=config.env.normalize_reward,
            gamma=float(config.hyperparameters.get("gamma", 0.99)),
        )
    return venv


def observation_names(config: TrainConfig) -> tuple[str, ...]:
    """The policy's observation feature names, in order (the env's ``observation_names``)."""
    env = WeightedInterleaveEnv(config.env.scenarios[0], features=config.env.features)
    return tuple(env.observation_names)


# --------------------------------------------------------------------------- snapshots
class _StatePickler(pickle.Pickler):
    """Pickles module references by name (the simulator keeps its kernel module as an
    attribute), so whole envs pickle."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        if isinstance(obj, VecEnvWrapper) and "class_attributes" in vars(obj):
            # SB3 wrappers (VecMonitor, ...) cache their class's members, descriptors and a
            # mappingproxy among them, which do not pickle; they are rebuilt on load.
            state = {k: v for k, v in vars(obj).items() if k != "class_attributes"}
            return _rebuild_wrapper, (type(obj), state)
        return NotImplemented


def _rebuild_wrapper(cls: type[VecEnvWrapper], state: dict[str, Any]) -> VecEnvWrapper:
    wrapper = cls.__new__(cls)
    wrapper.__dict__.update(state)
    wrapper.class_attributes = dict(inspect.getmembers(cls))
    return wrapper


def dumps_state(obj: Any) -> bytes:
    """Pickle ``obj`` (envs included), zlib-compressed: the simulator's page tables
    compress about 13:1."""
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return zlib.compress(buffer.getvalue(), 1)


#: Classes pickled under a module they have since left (old name -> new name), so that
#: checkpoints written before the move still resume.
_MOVED_CLASSES = {
    ("tierenv.envs.vector", "Sb3FluidVecEnv"): ("agents.training.vec_adapters", "Sb3FluidVecEnv"),
}


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(*_MOVED_CLASSES.get((module, name), (module, name)))


def loads_state(data: bytes) -> Any:
    return _StateUnpickler(io.BytesIO(zlib.decompress(data))).load()


def venv_state(venv: VecEnv) -> dict[str, Any]:
    """Everything of the training VecEnv that the next step depends on: the unnormalised
    inner VecEnv itself (envs, hosts, RNGs, buffers) and VecNormalize's running return."""
    inner = venv.venv if isinstance(venv, VecNormalize) else venv
    state: dict[str, Any] = {"inner": inner}
    if isinstance(venv, VecNormalize):
        state["returns"] = venv.returns.copy()
        state["old_obs"] = getattr(venv, "old_obs", None)
        state["old_reward"] = getattr(venv, "old_reward", None)
    return state


def restore_venv(state: dict[str, Any], vecnormalize_path: Path | None) -> VecEnv:
    """Rebuild the training VecEnv from ``venv_state`` and the saved VecNormalize."""
    inner: VecEnv = state["inner"]
    if vecnormalize_path is None:
        return inner
    venv = VecNormalize.load(str(vecnormalize_path), inner)
    venv.returns = state["returns"]
    if state.get("old_obs") is not None:
        venv.old_obs = state["old_obs"]
        venv.old_reward = state["old_reward"]
    return venv
