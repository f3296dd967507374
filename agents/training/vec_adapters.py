"""stable-baselines3 adapters of the library's batched envs.

``Sb3FluidVecEnv`` wraps the batched fluid env (``tierenv.envs.vector``, or
``MixedScenarioVectorEnv``) for stable-baselines3, which has its own ``VecEnv`` API
(same-step autoreset, ``info["terminal_observation"]``, ``info["TimeLimit.truncated"]``)::

    from stable_baselines3 import PPO
    model = PPO("MlpPolicy", Sb3FluidVecEnv(num_envs=64, scenario="co-runner"))

It lives here, not in ``tierenv``, so that the library never imports SB3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from tierenv.envs.vector import WeightedInterleaveVectorEnv, make_fluid_vec_env

if TYPE_CHECKING:
    from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

__all__ = ["Sb3FluidVecEnv"]


class Sb3FluidVecEnv(VecEnv):
    """The batched fluid env as a stable-baselines3 ``VecEnv``.

    SB3 semantics: an env whose episode ends is reset in the same step; the observation
    returned for it is the reset one, its last observation is in
    ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` says the
    episode was cut by time (always, as episodes only truncate), so PPO bootstraps from it.
    Per-env ``infos`` carry only those keys (building thousands of dicts per step would cost
    more than the step); the batched info of the last step is ``last_info``.

    There are no sub-envs: ``get_attr``/``env_method`` reach the one batched env and repeat
    its answer for every index.
    """

    def __init__(
        self,
        vector_env: WeightedInterleaveVectorEnv | MixedScenarioVectorEnv | None = None,
        num_envs: int | None = None,
        **kwargs: Any,
    ) -> None:
        if vector_env is not None and (num_envs is not None or kwargs):
            raise TypeError("give either vector_env or num_envs and env arguments, not both")
        self.vector_env = vector_env or make_fluid_vec_env(num_envs or 1, **kwargs)
        env = self.vector_env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self.last_info: dict[str, np.ndarray] = {}

    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else self._seeds
        observations, info = self.vector_env.reset(seed=seeds)
        self.last_info = info
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        actions, self._actions = self._actions, None
        observations, rewards, terminated, truncated, info = self.vector_env.step(actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any() and self.vector_env.autoreset_mode is AutoresetMode.SAME_STEP:
            # already reset by the vector env: the last observations are in final_obs
            for row in np.flatnonzero(dones):
                infos[row]["terminal_observation"] = info["final_obs"][row]
                infos[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
        elif dones.any():
            rows = np.flatnonzero(dones)
            reset_observations, _ = self.vector_env.reset_envs(rows)
            for row in rows:
                infos[row]["terminal_observation"] = observations[row].copy()
                infos[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
            observations = observations.copy()
            observations[rows] = reset_observations
        self.last_info = info
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.vector_env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise ValueError("the batched env has one set of attributes: set them for all envs")
        setattr(self.vector_env, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        result = getattr(self.vector_env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
