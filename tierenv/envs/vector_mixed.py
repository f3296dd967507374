"""The batched fluid env on a scenario distribution: one batch, many drawn scenarios.

``MixedScenarioVectorEnv`` splits its ``num_envs`` envs into ``groups`` groups of adjacent
envs (default one per 256 envs, at most 16); each group runs one scenario drawn from the
distribution (``"random:default"`` and the like, ``tierenv.workload.generator``) on its own
``WeightedInterleaveVectorEnv``, and draws a new one from the env's ``np_random`` whenever
all its envs start a new episode together (which they do: they start together and a
scenario's episodes have one length). So a batch of 1,024
envs in 4 groups sees 4 scenarios at a time and a fresh set every episode, and a seed fixes
the whole sequence. The spaces are the single env's on the distribution (one node
count); the per-application info columns are the distribution's ``app-0`` ... names.

Every group's scenario is also realised (``tierenv.workload.variation.realise``: phase
boundaries, intensities and zipf layouts vary as between repeated runs) from ``np_random``
when it is drawn. Given one scenario instead of a distribution (a name, a file or a
``Scenario``), the groups run realisations of that scenario, a fresh one per group and
episode: the fluid counterpart of the single env's seeded runs (``WeightedInterleaveVectorEnv``
runs the scenario as written in every env and episode).

A group whose envs are reset only in part (``reset(options={"reset_mask": ...})`` or
``reset_envs``) keeps its scenario for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from tierenv.envs.arguments import reject_unknown_arguments
from tierenv.envs.vector import (
    WeightedInterleaveVectorEnv,
    _copy_info,
    check_num_envs,
    parse_autoreset_mode,
    reset_mask_option,
    same_step_autoreset,
)
from tierenv.workload.generator import (
    ScenarioDistribution,
    distribution_of,
    draw_scenario,
    managed_app_names,
)
from tierenv.workload.scenario import Scenario, load_scenario
from tierenv.workload.variation import realise

#: Default groups: one per this many envs, between 1 and MAX_DEFAULT_GROUPS. Each group steps
#: its own fluid model (one compiled call per group and step), so groups cost speed.
ENVS_PER_GROUP = 256
MAX_DEFAULT_GROUPS = 16
#: Arguments passed on to every group's fluid env.
GROUP_ARGUMENTS = (
    "features",
    "initial_weights",
    "migration_cost_per_gib",
    "quota_action",
    "damos",
    "n_chunks",
    "max_episode_steps",
)
_APP_KEYS = ("app_throughput_gbps", "app_running")


class MixedScenarioVectorEnv(VectorEnv):
    """``num_envs`` fluid-model envs on scenarios drawn from a distribution (module
    docstring). Arguments: ``num_envs``; ``scenario``, ``"random:NAME"``, ``"random:FILE"``
    or a ``ScenarioDistribution``, or one scenario (name, file or ``Scenario``) whose runs
    vary; ``groups`` (default: one per 256 envs, 1 to 16; at most
    ``num_envs``; more groups mix more scenarios per batch but step slower);
    ``autoreset_mode`` as ``WeightedInterleaveVectorEnv``'s (``NEXT_STEP``, ``SAME_STEP``,
    ``DISABLED``); and the fluid env's ``features``, ``initial_weights``,
    ``migration_cost_per_gib``, ``quota_action``, ``damos``, ``n_chunks``,
    ``max_episode_steps``. ``scenarios`` lists each group's current scenario and
    ``group_of_env`` each env's group."""

    # gymnasium declares metadata an instance attribute: this class default is replaced per
    # instance in __init__ (so no ClassVar, which mypy refuses over an instance attribute)
    metadata: dict[str, Any] = {  # noqa: RUF012
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": [],
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Path | Scenario | ScenarioDistribution = "random:default",
        groups: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = {k: v for k, v in kwargs.items() if k not in GROUP_ARGUMENTS}
        reject_unknown_arguments(type(self), unknown)
        distribution = distribution_of(scenario)
        self.nominal_scenario: Scenario | None = None
        if distribution is None:
            assert not isinstance(scenario, ScenarioDistribution)  # distribution_of takes those
            self.nominal_scenario = (
                scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
            )
        check_num_envs(num_envs)
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r}: the batched env does not render")
        if groups is None:
            groups = min(max(int(num_envs) // ENVS_PER_GROUP, 1), MAX_DEFAULT_GROUPS)
        if not isinstance(groups, int | np.integer) or groups < 1:
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        self.distribution = distribution
        self.num_envs = int(num_envs)
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        self._group_kwargs = dict(kwargs)
        self._rows = np.array_split(np.arange(self.num_envs), min(int(groups), self.num_envs))
        self.group_of_env = np.concatenate(
            [np.full(len(rows), g) for g, rows in enumerate(self._rows)]
        )
        # a draw from a fixed generator fixes the spaces (every draw has the same nodes)
        probe = self._build(self._nominal(np.random.default_rng(0)), 1)
        self.single_observation_space = probe.single_observation_space
        self.single_action_space = probe.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_names = probe.observation_names
        self.n_nodes = probe.n_nodes
        self.app_names = (
            probe.app_names if distribution is None else managed_app_names(distribution)
        )
        self.quota_action = probe.quota_action
        self._groups: list[WeightedInterleaveVectorEnv | None] = [None] * len(self._rows)
        # each group's application columns among app_names (app-k is column k)
        self._columns: list[list[int]] = [[] for _ in self._rows]
        self.scenarios: list[Scenario | None] = [None] * len(self._rows)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._last_observations: np.ndarray | None = None
        self._last_info: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------------- gym API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a scenario for every group (from ``np_random``, seeded by ``seed``), or
        reset only the envs of ``options={"reset_mask": mask}``."""
        rows = reset_mask_option(options, self.num_envs)
        if rows is not None:
            if self._last_observations is None or self._last_info is None:
                raise RuntimeError("call reset() without reset_mask first")
            observations, info = self.reset_envs(rows)
            self._last_observations[rows] = observations
            for key, value in info.items():
                self._last_info[key][rows] = value
            return self._last_observations.copy(), _copy_info(self._last_info)
        if seed is not None and not isinstance(seed, int | np.integer):
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed list has {len(seeds)} entries for {self.num_envs} envs")
            seed = seeds[0]
        super().reset(seed=None if seed is None else int(seed))
        observations, info = self._empty_batch()
        for g, rows in enumerate(self._rows):
            group_observations, group_info = self._redraw(g)
            self._put(observations, info, rows, group_observations, group_info, g)
        self._autoreset[:] = False
        self._last_observations, self._last_info = observations, info
        return observations.copy(), _copy_info(info)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._last_observations is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(
                f"actions must have shape {self.action_space.shape}, got {actions.shape}"
            )
        if self.autoreset_mode is AutoresetMode.DISABLED and self._autoreset.any():
            raise RuntimeError(
                f"env(s) {np.flatnonzero(self._autoreset).tolist()} ended their episode and "
                "autoreset_mode is DISABLED: reset them with reset(options={'reset_mask': "
                "mask}) before stepping them again"
            )
        observations, info = self._empty_batch()
        rewards = np.zeros(self.num_envs)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for g, rows in enumerate(self._rows):
            if self.autoreset_mode is AutoresetMode.NEXT_STEP and self._autoreset[rows].all():
                # the whole group ended last step: a new scenario, reported as reset does
                group_observations, group_info = self._redraw(g)
                self._put(observations, info, rows, group_observations, group_info, g)
                continue
            group = self._group(g)
            group_observations, group_rewards, _, group_truncated, group_info = group.step(
                actions[rows]
            )
            rewards[rows] = group_rewards
            truncated[rows] = group_truncated
            self._put(observations, info, rows, group_observations, group_info, g)
        terminated = np.zeros(self.num_envs, dtype=bool)
        ended = truncated | terminated
        if self.autoreset_mode is AutoresetMode.SAME_STEP and ended.any():
            observations, info = same_step_autoreset(ended, observations, info, self.reset_envs)
            self._autoreset[:] = False
        else:
            self._autoreset = ended
        self._last_observations, self._last_info = observations, info
        return observations, rewards, terminated, truncated, info

    def reset_envs(self, envs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset ``envs`` (indices or a boolean mask) now; a group reset whole draws a new
        scenario. Returns their reset observations and info rows."""
        chosen = np.zeros(self.num_envs, dtype=bool)
        chosen[np.arange(self.num_envs)[envs]] = True
        observations, info = self._empty_batch()
        for g, rows in enumerate(self._rows):
            inside = chosen[rows]
            if not inside.any():
                continue
            if inside.all():
                group_observations, group_info = self._redraw(g)
                self._put(observations, info, rows, group_observations, group_info, g)
            else:
                part = rows[inside]
                group_observations, group_info = self._group(g).reset_envs(np.flatnonzero(inside))
                self._put(observations, info, part, group_observations, group_info, g)
        self._autoreset[chosen] = False
        return observations[chosen], {key: value[chosen] for key, value in info.items()}

    def render(self) -> None:
        return None

    # ---------------------------------------------------------------------- internals
    def _build(self, scenario: Scenario, n_envs: int) -> WeightedInterleaveVectorEnv:
        return WeightedInterleaveVectorEnv(
            n_envs, scenario=scenario, autoreset_mode=AutoresetMode.NEXT_STEP, **self._group_kwargs
        )

    def _group(self, g: int) -> WeightedInterleaveVectorEnv:
        group = self._groups[g]
        if group is None:
            raise RuntimeError("call reset() before step()")
        return group

    def _nominal(self, rng: np.random.Generator) -> Scenario:
        """The scenario as written: drawn from the distribution, or the one given."""
        if self.distribution is None:
            assert self.nominal_scenario is not None
            return self.nominal_scenario
        return draw_scenario(self.distribution, rng)

    def _redraw(self, g: int) -> tuple[np.ndarray, dict[str, Any]]:
        scenario = realise(self._nominal(self.np_random), self.np_random)
        self.scenarios[g] = scenario
        group = self._build(scenario, len(self._rows[g]))
        self._groups[g] = group
        self._columns[g] = [self.app_names.index(name) for name in group.app_names]
        return group.reset()

    def _empty_batch(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        shape = self.observation_space.shape
        assert shape is not None  # a Box
        observations = np.zeros(shape, dtype=np.float32)
        return observations, {}

    def _put(
        self,
        observations: np.ndarray,
        info: dict[str, np.ndarray],
        rows: np.ndarray,
        group_observations: np.ndarray,
        group_info: dict[str, Any],
        g: int,
    ) -> None:
        """A group's rows into the batch; its per-application columns into the
        distribution's (``app-k`` is column k)."""
        observations[rows] = group_observations
        columns = self._columns[g]
        for key, value in group_info.items():
            value = np.asarray(value)
            if key in _APP_KEYS:
                wide = np.zeros((len(rows), len(self.app_names)), dtype=value.dtype)
                wide[:, columns] = value
                value = wide
            if key not in info:
                info[key] = np.zeros((self.num_envs, *value.shape[1:]), dtype=value.dtype)
            info[key][rows] = value
