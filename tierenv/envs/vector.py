"""Batched environments over the fluid model: a Gymnasium ``VectorEnv``.

``WeightedInterleaveVectorEnv`` steps many copies of ``tierenv/WeightedInterleave-v0`` at
once in numpy/numba. It has the single env's observation and action spaces, its action
mapping (``action_to_weights``, batched), its observation features (same names, order,
bounds and clipping) and its reward, but runs the reduced-fidelity **fluid model**
(``tierenv.sim.fluid``) instead of the page-level simulator with one DAMON kdamond per
application: use it for throughput (sweeps, large seed counts, training) and check what
matters on the full simulator (``WeightedInterleaveEnv``).

Its stable-baselines3 adapter, ``Sb3FluidVecEnv``, is in ``agents.training.vec_adapters``:
the library does not import SB3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from tierenv.contracts.actions import (
    ACTION_HIGH,
    ACTION_LOW,
    QUOTA_MAX_BYTES_PER_S,
    QUOTA_MIN_BYTES_PER_S,
    ActionError,
    action_to_weights,
    check_action,
)
from tierenv.contracts.features import ObservationSpec
from tierenv.envs.arguments import reject_unknown_arguments
from tierenv.envs.reward import GiB, check_migration_cost
from tierenv.envs.weighted_interleave import DEFAULT_MIGRATION_COST_PER_GIB, DEFAULT_SCENARIO
from tierenv.memory.interleave import initial_weights as initial_weights_for
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.fluid import (
    DEFAULT_CHUNKS,
    FluidModel,
    FluidOutputs,
    FluidState,
    check_features,
    observe,
)
from tierenv.workload.generator import distribution_of
from tierenv.workload.scenario import Scenario, load_scenario

if TYPE_CHECKING:  # imported where needed: vector_mixed builds on this module
    from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

#: The most envs one batched env holds: its arrays are allocated at once (about 4.5 kB per
#: env on co-runner at reset, measured with tracemalloc; a billion envs asked for ~100 GB).
MAX_NUM_ENVS = 65_536


def check_num_envs(num_envs: object) -> None:
    """Refuse a batch size that is not a whole number in 1..``MAX_NUM_ENVS``."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if num_envs > MAX_NUM_ENVS:
        raise ValueError(f"num_envs must be at most {MAX_NUM_ENVS:,}, got {int(num_envs):,}")


class WeightedInterleaveVectorEnv(VectorEnv):
    """``num_envs`` copies of ``tierenv/WeightedInterleave-v0`` on the fluid model, stepped
    together.

    ## Spaces
    ``single_action_space`` and ``single_observation_space`` are the single env's (a Box of
    one value per node in [-1, 1], plus the DAMOS quota with ``quota_action=True``; named
    features, ``observation_names``); ``action_space`` and ``observation_space`` batch them.
    Actions go through ``action_to_weights`` for the whole batch; finite values outside
    [-1, 1] are clipped, NaN, infinity or a wrong shape raise ``ActionError``.

    ## Reward
    As ``tierenv.envs.reward``: weighted speedup (sum over running applications that count
    in the reward of throughput over its throughput alone on idle local memory) minus
    ``migration_cost_per_gib`` x GiB migrated in the interval, per env. Bound co-runners
    (``bind_node``) load the nodes but are neither reported nor rewarded, as on the host.

    ## Episodes
    Never terminate; truncate at the scenario's end, after ``scenario.n_steps`` steps (or
    after ``max_episode_steps`` steps). ``reset`` returns the host before anything ran
    (``FluidModel.begin``: time 0, idle nodes, the initial weights), as the single env does:
    the first step's action sets the weights the first pages are placed under.

    ## Autoreset
    ``autoreset_mode`` (``metadata["autoreset_mode"]``, a ``gymnasium.vector.AutoresetMode``
    or its name) chooses what happens to an env whose episode ended, as Gymnasium's own
    vector envs do:

    - ``NEXT_STEP`` (default): the next step resets it without advancing it, ignoring its
      action, and returns its reset observation and info row with reward 0 and
      ``terminated = truncated = False``.
    - ``SAME_STEP``: the step that ends it also resets it: it returns the reset observation
      and info row, the step's reward and ``truncated = True``; the last observation is in
      ``info["final_obs"]`` (an object array, ``None`` for the envs that did not end) and the
      last info in ``info["final_info"]`` (the step's info arrays, each with a ``_key`` mask),
      with masks ``info["_final_obs"]`` and ``info["_final_info"]``. What CleanRL-style code
      and TorchRL read.
    - ``DISABLED``: nothing is reset; reset the ended envs with
      ``reset(options={"reset_mask": mask})`` before stepping them again (stepping an ended
      env raises ``RuntimeError``).

    ## Seeds
    The fluid model is deterministic (it replaces DAMON's random sampling by expectations)
    and every env runs the scenario as written (its nominal run, without the ``[variation]``
    the single env realises at every reset), so a seed does not change any env's
    trajectory: ``reset(seed=s)`` records per-env seeds ``s + i`` (or a list, one per env) in
    ``env_seeds`` and seeds ``np_random``, nothing else. For runs that vary as the single
    env's do, use ``MixedScenarioVectorEnv(num_envs, scenario)`` (``tierenv.envs.vector_mixed``):
    its groups of envs run a fresh realisation of the scenario every episode.

    ## Info
    A dict of arrays with the number of envs as first dimension (all keys present for every
    env, so there are no ``_key`` masks): ``time_s``, ``weights``, ``shares``,
    ``node_bandwidth_gbps``, ``node_latency_ns``, ``app_throughput_gbps`` and
    ``app_running`` (one column per managed application of the scenario, ``app_names``),
    ``migrated_bytes``, ``damos_quota_bytes_per_s``, ``weighted_speedup``,
    ``reward_throughput``, ``reward_migration``, ``solver_converged``.

    ## Arguments
    ``num_envs`` and the single env's ``scenario``, ``features``, ``initial_weights``,
    ``migration_cost_per_gib``, ``quota_action``, ``damos``; ``n_chunks`` (the fluid model's
    chunks per application), ``max_episode_steps``, ``autoreset_mode`` and ``threads``.

    ``threads`` (default 1, serial) > 1 steps the fluid model's compiled parts over that
    many parts of the batch in numba's thread pool, with the same results bit for bit
    (``FluidModel``). Opt-in because that pool does not survive ``fork``: keep the default
    in forked worker processes (SB3's ``SubprocVecEnv``, ``AsyncVectorEnv`` on Linux).

    ``reset`` takes one option, ``reset_mask`` (a boolean array over envs: reset those only,
    the others keep their state and last observation).
    """

    # gymnasium declares metadata an instance attribute: this class default is replaced per
    # instance in __init__ (so no ClassVar, which mypy refuses over an instance attribute)
    metadata: dict[str, Any] = {  # noqa: RUF012
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": [],
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Path | Scenario = DEFAULT_SCENARIO,
        features: str | Sequence[str] = "default",
        initial_weights: str | Sequence[int] = "auto",
        migration_cost_per_gib: float = DEFAULT_MIGRATION_COST_PER_GIB,
        quota_action: bool = False,
        damos: DamosSetup | None = None,
        n_chunks: int = DEFAULT_CHUNKS,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        threads: int = 1,
        **unknown: Any,
    ) -> None:
        reject_unknown_arguments(type(self), unknown)
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        # per instance: the class's metadata stays NEXT_STEP for code that reads it there
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        check_num_envs(num_envs)
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r}: the batched env does not render")
        if max_episode_steps is not None and (
            not isinstance(max_episode_steps, int | np.integer) or max_episode_steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}"
            )
        if distribution_of(scenario) is not None:
            raise ValueError(
                f"scenario {scenario!r} is a distribution: MixedScenarioVectorEnv "
                "(tierenv.envs.vector_mixed) or gymnasium.make_vec on "
                "tierenv/WeightedInterleaveFluid-v0 draws scenarios per group of envs"
            )
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.model = FluidModel(self.scenario, n_chunks=n_chunks, damos=damos, threads=threads)
        self.node_info = self.model.node_info
        self.n_nodes = self.node_info.n_nodes
        self.app_names = self.model.params.managed_names
        self.num_envs = int(num_envs)
        self.render_mode = None
        self.migration_cost_per_gib = check_migration_cost(migration_cost_per_gib)
        self.quota_action = bool(quota_action)
        self.max_episode_steps = max_episode_steps
        self.observation_spec = ObservationSpec(self.n_nodes, features)
        check_features(self.observation_spec)
        self.observation_names = self.observation_spec.names
        self.single_observation_space = spaces.Box(
            self.observation_spec.low, self.observation_spec.high, dtype=np.float32
        )
        n_actions = self.n_nodes + (1 if self.quota_action else 0)
        self.single_action_space = spaces.Box(
            ACTION_LOW, ACTION_HIGH, (n_actions,), dtype=np.float32
        )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.initial_weights = initial_weights_for(initial_weights, self.node_info.peak_gbps)
        self.env_seeds: list[int | None] = [None] * self.num_envs
        # Every reset is the same state at time 0 and the same report: computed once.
        self._fresh = self.model.initial_state(1, self.initial_weights)
        reset_outputs = self.model.begin(self._fresh)
        self._reset_observation = self._observe(reset_outputs)
        self._reset_info = self._info(reset_outputs, np.zeros(1), np.zeros(1))
        self.state: FluidState | None = None
        self.last_outputs: FluidOutputs | None = None  # the fluid model's report of the last step
        self._episode_steps = np.zeros(self.num_envs, dtype=np.int64)
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
        """Reset every env to time 0 (nothing run yet, the initial weights in force), or only
        those of ``options={"reset_mask": mask}``."""
        mask = reset_mask_option(options, self.num_envs)
        if mask is not None:
            return self._reset_masked(mask, seed)
        if seed is None or isinstance(seed, int | np.integer):
            super().reset(seed=None if seed is None else int(seed))
            self.env_seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed list has {len(seeds)} entries for {self.num_envs} envs")
            super().reset(seed=seeds[0])
            self.env_seeds = seeds
        self.state = self._fresh.take(np.zeros(self.num_envs, dtype=np.int64))
        self._episode_steps[:] = 0
        self._autoreset[:] = False
        observations = np.repeat(self._reset_observation, self.num_envs, axis=0)
        info = {
            key: np.repeat(value, self.num_envs, axis=0) for key, value in self._reset_info.items()
        }
        self._last_observations, self._last_info = observations, info
        return observations.copy(), _copy_info(info)

    def _reset_masked(
        self, mask: Any, seed: int | Sequence[int | None] | None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``reset(options={"reset_mask": mask})``: the masked envs back to time 0."""
        rows = mask
        if self.state is None or self._last_observations is None or self._last_info is None:
            raise RuntimeError("call reset() without reset_mask first")
        if seed is not None:
            seeds = [seed] * self.num_envs if isinstance(seed, int | np.integer) else list(seed)
            for row in np.flatnonzero(rows):
                row_seed = seeds[row]
                self.env_seeds[row] = None if row_seed is None else int(row_seed)
        observations, info = self.reset_envs(rows)
        self._last_observations[rows] = observations
        for key, value in info.items():
            self._last_info[key][rows] = value
        return self._last_observations.copy(), _copy_info(self._last_info)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        expected = self.action_space.shape
        values = np.asarray(actions, dtype=np.float64)
        if values.shape != expected:
            raise ActionError(f"actions must have shape {expected}, got {values.shape}")
        values = check_action(values, expected[1])
        weights = action_to_weights(values[:, : self.n_nodes], self.n_nodes)
        quota = quota_from_actions(values[:, self.n_nodes]) if self.quota_action else None
        resetting = self._autoreset
        if self.autoreset_mode is AutoresetMode.DISABLED and resetting.any():
            raise RuntimeError(
                f"env(s) {np.flatnonzero(resetting).tolist()} ended their episode and "
                "autoreset_mode is DISABLED: reset them with reset(options={'reset_mask': "
                "mask}) before stepping them again"
            )
        if self.autoreset_mode is not AutoresetMode.NEXT_STEP:
            resetting = np.zeros(self.num_envs, dtype=bool)
        active = None
        if resetting.any():
            # the envs whose episode ended go back to time 0 and stay there this step: the
            # model reports them as reset does (begin), with reward 0
            self.state.put(resetting, self._fresh)
            self._episode_steps[resetting] = 0
            active = ~resetting
        outputs = self.model.step(self.state, weights, quota, active=active)
        self.last_outputs = outputs
        throughput, migration = self._reward_terms(outputs)
        rewards = throughput - migration
        if active is None:
            self._episode_steps += 1
        else:
            self._episode_steps[active] += 1
        truncated = self.model.done(self.state)
        if self.max_episode_steps is not None:
            truncated |= self._episode_steps >= self.max_episode_steps
        truncated &= ~resetting
        terminated = np.zeros(self.num_envs, dtype=bool)
        ended = terminated | truncated
        observations = self._observe(outputs)
        info = self._info(outputs, throughput, migration)
        if self.autoreset_mode is AutoresetMode.SAME_STEP and ended.any():
            observations, info = same_step_autoreset(ended, observations, info, self.reset_envs)
            self._autoreset = np.zeros(self.num_envs, dtype=bool)
        else:
            self._autoreset = ended
        self._last_observations, self._last_info = observations, info
        return observations, rewards, terminated, truncated, info

    def reset_envs(self, envs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset only ``envs`` (indices or a boolean mask) now, outside the autoreset cycle
        (what the SB3 adapter's same-step autoreset does); returns their reset observations
        and info rows."""
        if self.state is None:
            raise RuntimeError("call reset() before reset_envs()")
        rows = np.arange(self.num_envs)[envs]
        self.state.put(rows, self._fresh)
        self._episode_steps[rows] = 0
        self._autoreset[rows] = False
        info = {key: np.repeat(value, rows.size, axis=0) for key, value in self._reset_info.items()}
        return np.repeat(self._reset_observation, rows.size, axis=0), info

    def render(self) -> None:
        return None

    # ---------------------------------------------------------------------- internals
    def _observe(self, outputs: FluidOutputs) -> np.ndarray:
        return observe(outputs, self.model.params, self.observation_spec)

    def _reward_terms(self, outputs: FluidOutputs) -> tuple[np.ndarray, np.ndarray]:
        """(weighted speedup, migration cost) per env, as ``tierenv.envs.reward``."""
        migrated_gib = outputs.migrated_bytes.sum(axis=(1, 2)) / GiB
        return outputs.weighted_speedup.copy(), self.migration_cost_per_gib * migrated_gib

    def _info(
        self, outputs: FluidOutputs, throughput: np.ndarray, migration: np.ndarray
    ) -> dict[str, np.ndarray]:
        weights = outputs.weights
        return {
            "time_s": outputs.time_s,
            "weights": weights,
            "shares": weights / weights.sum(axis=1, keepdims=True),
            "node_bandwidth_gbps": outputs.node_bandwidth_gbps,
            "node_latency_ns": outputs.node_latency_ns,
            "app_throughput_gbps": outputs.app_throughput_gbps,
            "app_running": outputs.app_running,
            "migrated_bytes": outputs.migrated_bytes.sum(axis=(1, 2)),
            "damos_quota_bytes_per_s": outputs.damos_quota_bytes_per_s,
            "weighted_speedup": outputs.weighted_speedup,
            "reward_throughput": throughput,
            "reward_migration": migration,
            "solver_converged": outputs.solver_converged,
        }


def reset_mask_option(options: dict[str, Any] | None, num_envs: int) -> np.ndarray | None:
    """The ``reset_mask`` of reset ``options`` (a boolean array over the envs), checked; None
    without one. Any other option is refused."""
    options = dict(options or {})
    mask = options.pop("reset_mask", None)
    if options:
        raise ValueError(
            f"unknown reset option(s) {', '.join(map(repr, sorted(options)))}: the batched "
            "env takes only 'reset_mask'"
        )
    if mask is None:
        return None
    rows = np.asarray(mask)
    if rows.dtype != bool or rows.shape != (num_envs,):
        raise ValueError(
            f"reset_mask must be a boolean array of shape ({num_envs},), got "
            f"{rows.dtype} of shape {rows.shape}"
        )
    return rows


def same_step_autoreset(
    ended: np.ndarray,
    observations: np.ndarray,
    info: dict[str, Any],
    reset_envs: Callable[[np.ndarray], tuple[np.ndarray, dict[str, Any]]],
) -> tuple[np.ndarray, dict[str, Any]]:
    """SAME_STEP autoreset of a step's results: the ended envs' last observation and info go
    to ``final_obs``/``final_info`` (as Gymnasium's vector envs put them) and their rows
    become the reset observation and info that ``reset_envs(ended)`` returns."""
    final_obs = np.full(len(ended), None, dtype=object)
    for row in np.flatnonzero(ended):
        final_obs[row] = observations[row].copy()
    final_info: dict[str, Any] = {}
    for key, value in info.items():
        final_info[key] = value.copy()
        final_info[f"_{key}"] = ended.copy()
    reset_observations, reset_info = reset_envs(ended)
    observations = observations.copy()
    observations[ended] = reset_observations
    info = _copy_info(info)
    for key, value in reset_info.items():
        info[key][ended] = value
    info["final_obs"], info["_final_obs"] = final_obs, ended.copy()
    info["final_info"], info["_final_info"] = final_info, ended.copy()
    return observations, info


def parse_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """``mode`` as an ``AutoresetMode`` (its value or name, any case, is accepted)."""
    if isinstance(mode, AutoresetMode):
        return mode
    if isinstance(mode, str):
        key = mode.replace("_", "").replace("-", "").lower()
        for candidate in AutoresetMode:
            if key == candidate.value.lower():  # "NextStep", "next_step", "NEXT_STEP"
                return candidate
    valid = ", ".join(m.name for m in AutoresetMode)
    raise ValueError(f"autoreset_mode must be one of {valid}, got {mode!r}")


def _copy_info(info: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.copy() if isinstance(value, np.ndarray) else value for key, value in info.items()
    }


def quota_from_actions(values: np.ndarray) -> np.ndarray:
    """``action_to_quota`` for a batch of quota action values (bytes/s, log-spaced between
    16 MiB/s and 2 GiB/s; finite values outside [-1, 1] are clipped)."""
    checked = check_action(np.asarray(values, dtype=np.float64)[:, None], 1)[:, 0]
    fraction = (checked - ACTION_LOW) / (ACTION_HIGH - ACTION_LOW)
    low, high = np.log(QUOTA_MIN_BYTES_PER_S), np.log(QUOTA_MAX_BYTES_PER_S)
    return np.rint(np.exp(low + fraction * (high - low)))


def make_fluid_vec_env(
    num_envs: int, scenario: str | Path | Scenario = DEFAULT_SCENARIO, **kwargs: Any
) -> WeightedInterleaveVectorEnv | MixedScenarioVectorEnv:
    """A batched ``tierenv/WeightedInterleave-v0`` on the fluid model (what
    ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` builds): one
    scenario, or on a distribution (``scenario="random:default"``) scenarios drawn per group
    of envs (``MixedScenarioVectorEnv``)."""
    if distribution_of(scenario) is not None:
        from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

        return MixedScenarioVectorEnv(num_envs, scenario=scenario, **kwargs)
    return WeightedInterleaveVectorEnv(num_envs, scenario=scenario, **kwargs)
