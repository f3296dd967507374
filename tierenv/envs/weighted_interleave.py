"""``tierenv/WeightedInterleave-v0``: choose weighted-interleave weights every control interval.

The env drives a ``Host`` (the simulated host by default) and never knows which one it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tierenv.contracts.actions import (
    ACTION_HIGH,
    ACTION_LOW,
    ActionError,
    action_to_quota,
    action_to_weights,
    check_action,
)
from tierenv.contracts.features import ObservationSpec
from tierenv.contracts.host import Host
from tierenv.contracts.measurements import StepResult
from tierenv.envs.arguments import reject_unknown_arguments
from tierenv.envs.render import History, ansi_line, render_rgb
from tierenv.envs.reward import check_migration_cost, compute_reward
from tierenv.memory.interleave import initial_weights as initial_weights_for
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import Scenario, load_scenario

DEFAULT_SCENARIO = "co-runner"
DEFAULT_MIGRATION_COST_PER_GIB = 0.1
HostFactory = Callable[[int, np.ndarray | None], Host]
HOST_OPTIONS = (
    "sysfs_root", "host_config", "pids", "proc_root", "journal", "page_nodes", "wait",
    "log_path", "use_damos",
)  # fmt: skip


class WeightedInterleaveEnv(gym.Env):
    """Set the kernel's weighted-interleave weights (and so the DAMOS ``migrate_hot`` dests)
    for the applications of a scenario, one control interval (1 s by default) per step.

    ## Action space
    ``Box(-1, 1, (nodes,), float32)``: one value per memory node, mapped to integer weights
    1..255 by ``tierenv.contracts.action_to_weights`` (a softmax over nodes spanning 255:1,
    then the smallest weights within 2 % of those shares). Finite values outside [-1, 1] are
    clipped; NaN, infinity or a wrong shape raise ``ActionError``. With
    ``quota_action=True`` one more value sets the DAMOS quota (``action_to_quota``:
    16 MiB/s .. 2 GiB/s, log-spaced).

    ## Observation space
    ``Box(float32)`` of named features with fixed physical normalisation
    (``env.observation_names``; table in ``tierenv.contracts.features`` and the README):
    per-node bandwidth over peak, latency over idle, read fraction, resident and free shares,
    a DAMON hotness histogram per node, DAMON's access share per node, the weights in force,
    migrated GiB/s, total throughput and the number of running applications. ``features=
    "privileged"`` adds simulator-only truth (flagged; such policies are not exportable).

    ## Reward
    Weighted speedup (sum over running applications of throughput over its throughput alone
    on idle local memory) minus ``migration_cost_per_gib`` x GiB migrated in the interval.
    ``info["reward_throughput"]`` and ``info["reward_migration"]`` carry the terms.

    ## Starting state
    ``reset`` returns the host before anything has run (``Host.begin``): on the simulator,
    time 0 with idle nodes, nothing allocated and ``initial_weights`` in force. The first
    ``step``'s action sets the weights of the first interval, in which the applications that
    start at time 0 allocate their pages: every policy places even its first pages by its own
    weights. (A real host's ``begin`` measures one interval: its applications already run.)

    ## Episode end
    Never terminates (a continuing control task); truncates when the scenario ends (after
    ``scenario.n_steps`` steps), or after ``max_episode_steps`` if given to
    ``gymnasium.make``.

    ## Info
    ``weights``, ``shares``, ``node_bandwidth_gbps``, ``node_latency_ns``, ``app_names``,
    ``app_throughput_gbps``, ``migrated_bytes``, ``damos_quota_bytes_per_s``, ``time_s``,
    ``weighted_speedup``, ``reward_throughput``, ``reward_migration``.

    ## Arguments
    - ``scenario``: a shipped scenario name, a scenario file path or a ``Scenario``.
    - ``features``: ``"default"`` (host-observable), ``"privileged"`` or a list of groups.
    - ``initial_weights``: ``"auto"`` (the kernel's auto weights from node bandwidth),
      ``"uniform"`` (1 per node) or a list of integers.
    - ``migration_cost_per_gib``: the reward's migration coefficient.
    - ``quota_action``: add the DAMOS quota as an action dimension.
    - ``damos``: a ``DamosSetup`` (the DAMON/DAMOS configuration the host runs; default:
      the scenario's ``[damos]`` table, ``DamosSetup.for_scenario``).
    - ``host_factory``: ``f(seed, initial_weights) -> Host`` to drive another host (the
      scenario then only names the default).
    - ``backend``: ``"sim"`` (default) or ``"host"``: a real host through
      ``tierenv.host.backend.RealHost``, configured by its arguments given here (``sysfs_root``,
      ``host_config``, and optionally ``pids``, ``proc_root``, ``journal``, ``page_nodes``,
      ``wait``, ``log_path``, ``use_damos``) or as one ``host_options`` dict.
      Same spaces, with the host-observable features only; the reward needs each app's
      ``reference_gbps``; ``env.close()`` restores the host. Steps take real time.
    - ``render_mode``: ``"ansi"`` (one line per step) or ``"rgb_array"`` (a plot).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        scenario: str | Path | Scenario = DEFAULT_SCENARIO,
        features: str | Sequence[str] = "default",
        initial_weights: str | Sequence[int] = "auto",
        migration_cost_per_gib: float = DEFAULT_MIGRATION_COST_PER_GIB,
        quota_action: bool = False,
        damos: DamosSetup | None = None,
        host_factory: HostFactory | None = None,
        render_mode: str | None = None,
        backend: str = "sim",
        host_options: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        if backend not in ("sim", "host"):
            raise ValueError(f"backend must be 'sim' or 'host', got {backend!r}")
        host_options = dict(host_options or {})
        if backend == "host":
            host_options.update({k: unknown.pop(k) for k in HOST_OPTIONS if k in unknown})
        reject_unknown_arguments(type(self), unknown)
        if backend == "sim" and host_options:
            raise ValueError("host_options are for backend='host'")
        if backend == "host":
            host_factory = self._real_host_factory(host_options)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r}: valid modes are "
                f"{', '.join(self.metadata['render_modes'])} or None"
            )
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.damos = damos or DamosSetup.for_scenario(self.scenario)
        self._host_factory = host_factory or self._simulated_host
        self.render_mode = render_mode
        self.migration_cost_per_gib = check_migration_cost(migration_cost_per_gib)
        self.quota_action = bool(quota_action)
        self.host: Host = self._host_factory(0, None)
        self.node_info = self.host.node_info
        self.n_nodes = self.node_info.n_nodes
        self._initial_weights = initial_weights_for(initial_weights, self.node_info.peak_gbps)
        self.observation_spec = ObservationSpec(self.n_nodes, features)
        self.observation_names = self.observation_spec.names
        self.observation_space = spaces.Box(
            self.observation_spec.low, self.observation_spec.high, dtype=np.float32
        )
        n_actions = self.n_nodes + (1 if self.quota_action else 0)
        self.action_space = spaces.Box(ACTION_LOW, ACTION_HIGH, (n_actions,), dtype=np.float32)
        self._history = History()
        self._last: StepResult | None = None

    # ------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        host_seed = int(self.np_random.integers(2**63 - 1))
        self.host = self._host_factory(host_seed, self._initial_weights)
        self.host.set_weights(self._initial_weights)
        self._history = History()
        observation, _, info = self._report(self.host.begin())
        return observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._last is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        values = check_action(action, self.action_space.shape[0])
        if values.shape != self.action_space.shape:
            raise ActionError(
                f"action must have shape {self.action_space.shape}, got {values.shape}"
            )
        weights = action_to_weights(values[: self.n_nodes], self.n_nodes)
        if self.quota_action:
            self.host.set_damos_quota(action_to_quota(values[self.n_nodes]))
        self.host.set_weights(weights)
        observation, reward, info = self._report(self.host.step())
        return observation, reward, False, self.host.done, info

    def step_weights(
        self, weights: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step with integer weights (1..255 per node) chosen directly, as baseline
        controllers and oracles do: the same transition, reward and info as ``step`` without
        the action mapping (whose smallest-weights rounding would otherwise move such weights
        by up to 2 %). Bad weights raise ``ValueError`` before anything changes."""
        if self._last is None:
            raise gym.error.ResetNeeded("call reset() before step_weights()")
        self.host.set_weights(weights)
        observation, reward, info = self._report(self.host.step())
        return observation, reward, False, self.host.done, info

    @property
    def last_result(self) -> StepResult | None:
        """What the host reported for the last interval (``None`` before ``reset``): the
        measurements controllers decide from."""
        return self._last

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return ansi_line(self._last, self.node_info) if self._last is not None else ""
        if self.render_mode == "rgb_array":
            return render_rgb(self._history, self.node_info, self.scenario.name)
        return None

    def close(self) -> None:
        """Put a real host back (weights, auto switch, our kdamond); nothing for the simulator."""
        close = getattr(self.host, "close", None)
        if close is not None:
            failures = close()
            if failures:
                raise RuntimeError(f"the host could not be fully restored: {failures}")
        super().close()

    # ---------------------------------------------------------------------- internals
    @staticmethod
    def _real_host_factory(options: dict[str, Any]) -> HostFactory:
        from tierenv.host.backend import RealHost

        host = RealHost(**options)
        return lambda _seed, _weights: host  # one host for the env's life: reset reuses it

    def _simulated_host(self, seed: int, weights: np.ndarray | None) -> SimulatedHost:
        return SimulatedHost(self.scenario, weights=weights, seed=seed, damos=self.damos)

    def _report(self, result: StepResult) -> tuple[np.ndarray, float, dict[str, Any]]:
        self._last = result
        m = result.measurements
        observation = self.observation_spec.build(m, result.truth, self.node_info)
        references = None
        if result.truth is None and hasattr(self.host, "reference_gbps"):
            references = self.host.reference_gbps(m.app_names)
        reward = compute_reward(m, result.truth, self.migration_cost_per_gib, references)
        info = {
            "time_s": m.time_s,
            "weights": m.weights,
            "shares": m.weights / m.weights.sum(),
            "node_bandwidth_gbps": m.node_bandwidth_gbps,
            "node_latency_ns": m.node_latency_ns,
            "app_names": m.app_names,
            "app_throughput_gbps": m.app_throughput_gbps,
            "migrated_bytes": int(m.migrated_bytes.sum()),
            "damos_quota_bytes_per_s": m.damos_quota_bytes_per_s,
            "weighted_speedup": reward.throughput,
            "reward_throughput": reward.throughput,
            "reward_migration": reward.migration,
        }
        if self.render_mode == "rgb_array":
            self._history.add(m)
        return observation, reward.total, info
