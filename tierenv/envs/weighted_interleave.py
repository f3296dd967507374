"""``tierenv/WeightedInterleave-v0``: choose weighted-interleave weights every control interval.

The env drives a ``Host`` (the simulated host by default) and never knows which one it is.
Its docstring's observation and argument tables are generated when this module is imported
(``observation_table``, ``arguments_table``), from the feature registry and the signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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
    plain,
)
from tierenv.contracts.features import ObservationSpec
from tierenv.contracts.host import Host
from tierenv.contracts.measurements import StepResult
from tierenv.envs.arguments import reject_unknown_arguments
from tierenv.envs.render import EpisodePlot, History, HumanWindow, ansi_line
from tierenv.envs.reward import check_migration_cost, compute_reward
from tierenv.memory.interleave import initial_weights as initial_weights_for
from tierenv.sim.damos_setup import DamosSetup
from tierenv.sim.host import SimulatedHost
from tierenv.workload.generator import (
    ScenarioDistribution,
    distribution_of,
    draw_scenario,
    managed_app_names,
)
from tierenv.workload.scenario import Scenario, load_scenario
from tierenv.workload.variation import realise

if TYPE_CHECKING:  # the real-host backend (the daemon's core) is imported only when used
    from tierenv.host.backend import HostOptions

DEFAULT_SCENARIO = "co-runner"
DEFAULT_MIGRATION_COST_PER_GIB = 0.1
HostFactory = Callable[[int, np.ndarray | None], Host]
#: The nodes of the observation table in the env's docstring: the default scenario's two.
DOC_NODES = 2


def plain_weights(weights: Any) -> Any:
    """``weights`` with numpy values as plain Python numbers, so that an error about one of
    them prints ``nan`` or ``1.5``, not ``np.float64(nan)`` (strings and mappings are passed
    through as they are)."""
    if isinstance(weights, np.ndarray):
        return weights.tolist()
    if isinstance(weights, list | tuple):
        return [w.item() if isinstance(w, np.generic) else w for w in weights]
    if isinstance(weights, np.generic):
        return weights.item()
    return weights


class WeightedInterleaveEnv(gym.Env[np.ndarray, np.ndarray]):
    """Set the kernel's weighted-interleave weights (and so the DAMOS ``migrate_hot`` dests)
    for the applications of a scenario, one control interval (1 s by default) per step.

    ## Description
    A host has memory nodes of different speeds (local DDR, CXL-attached memory). Linux's
    weighted interleave (``/sys/kernel/mm/mempolicy/weighted_interleave/nodeN``) places an
    application's newly allocated pages over the nodes in proportion to integer weights, and
    DAMOS ``migrate_hot`` moves the pages DAMON finds hot over the nodes in the same
    proportions (the weights are its weighted ``dests``). The agent picks the weights every
    interval, trading the nodes' bandwidth against their latency and against migration
    traffic as applications start, stop and change phase. The env
    drives a ``Host`` (``tierenv.contracts.Host``) and never knows which one: the simulated
    host at full DAMON fidelity by default, or a real machine with ``backend="host"``.

    ## Action Space
    ``Box(-1, 1, (nodes,), float32)``: one value per memory node, mapped to integer weights
    1..255 by ``tierenv.contracts.action_to_weights`` (a softmax over nodes spanning 255:1,
    then the smallest weights within 2 % of those shares). Finite values outside [-1, 1] are
    clipped; NaN, infinity or a wrong shape raise ``ActionError``. With
    ``quota_action=True`` one more value sets the DAMOS quota (``action_to_quota``:
    16 MiB/s .. 2 GiB/s, log-spaced).

    ## Observation Space
    ``Box(float32)`` of named features with fixed physical normalisation
    (``env.observation_names``; every group, with its meaning, in
    ``tierenv.contracts.features.feature_table()`` and the README): per-node bandwidth over
    peak, latency over idle, read fraction, resident and free shares, a DAMON hotness
    histogram per node, DAMON's access share per node, the weights in force, migrated GiB/s,
    total throughput and the number of running applications. Values are clipped to the
    bounds. ``features="privileged"`` adds simulator-only truth (flagged; such policies are
    not exportable). The default features on a two-node host (the default scenario: DDR
    node 0, CXL node 1), built from the feature registry when this module is imported:

    [observation table: generated from tierenv.contracts.features at import]

    With N nodes every per-node group has N entries (``hotness`` one per node and bin: idle
    < 5 %, warm < 25 %, hot < 50 %, hottest of the maximum access rate), in the same order.

    ## Rewards
    Weighted speedup (sum over running applications of throughput over its throughput alone
    on idle local memory; those a scenario marks ``reward = false`` count 0) minus
    ``migration_cost_per_gib`` x GiB migrated in the interval. ``info["reward_throughput"]``
    and ``info["reward_migration"]`` carry the terms. On a real host the references come from
    the host config's ``reference_gbps`` (``Host.reference_gbps``).

    ## Starting State
    ``reset`` returns the host before anything has run (``Host.begin``): on the simulator,
    time 0 with idle nodes, nothing allocated and ``initial_weights`` in force. The first
    ``step``'s action sets the weights of the first interval, in which the applications that
    start at time 0 allocate their pages: every policy places even its first pages by its own
    weights. (A real host's ``begin`` measures one interval: its applications already run.)

    ## Seeds
    ``reset(seed=s)`` fixes the episode. On the simulator it draws, from ``np_random``, the
    seed of DAMON's sampling and then the run's realisation of the scenario (its
    ``[variation]``, ``tierenv.workload.variation``: phase boundaries moved by up to a few
    control intervals, each phase's intensity spread by a few percent, zipf hot chunks placed
    anew), so repeated episodes differ as repeated runs on a machine do, and every policy
    reset with the same seed sees the same run. ``env.scenario`` is the episode's realised
    scenario (what oracles are given); ``env.nominal_scenario`` the one as written. With
    ``host_factory`` or ``backend="host"`` the env realises nothing (``env.scenario`` is the
    nominal one).

    ## Episode End
    Never terminates (a continuing control task); truncates when the scenario ends (after
    ``scenario.n_steps`` steps, ``max_episode_steps``). The registered id's
    ``spec.max_episode_steps`` is the default scenario's horizon (180), so ``gymnasium.make``'s
    ``TimeLimit`` truncates at the same step as the env. With another ``scenario``, a shorter
    one ends by itself first; a longer one is cut at 180 steps by ``TimeLimit`` unless
    ``gymnasium.make`` gets ``max_episode_steps=scenario.n_steps`` (or ``-1``: no ``TimeLimit``,
    the scenario's end then truncates). ``step()`` after the episode ended raises
    ``gymnasium.error.ResetNeeded``: the scenario has nothing more to simulate. A real host
    runs on: only a ``TimeLimit`` ends its episodes (``tierenv/WeightedInterleaveHost-v0``
    has none; give ``gymnasium.make`` ``max_episode_steps``).

    ## Info
    Numbers and numeric arrays only, the same keys and shapes at every step and at reset
    (so batched info readers such as TorchRL's and Gymnasium's vector envs can stack them):
    ``weights``, ``shares``, ``node_bandwidth_gbps``, ``node_latency_ns``,
    ``app_throughput_gbps`` and ``app_running`` (one column per application of
    ``env.app_names``, 0 and False while it does not run), ``migrated_bytes``,
    ``damos_quota_bytes_per_s``, ``time_s``, ``weighted_speedup``, ``reward_throughput``,
    ``reward_migration``. The names of the running applications are in
    ``env.last_result.measurements.app_names``.

    ## Arguments
    [arguments table: generated from the signature at import]

    - ``scenario``: a shipped scenario name, a scenario file path or a ``Scenario``; or a
      scenario distribution, ``"random:NAME"`` (a shipped distribution such as
      ``random:default``, or ``random:path/to/file.toml``) or a ``ScenarioDistribution``:
      every ``reset`` then draws a new scenario from the env's ``np_random``, so the reset
      seed fixes the whole sequence of scenarios (``tierenv.workload.generator``). The spaces
      stay fixed (a distribution has one node count); ``app_names`` are ``app-0`` ... up to
      the distribution's most applications; ``env.scenario`` is the current episode's.
      Episodes last the drawn scenario's length (120-300 steps in the shipped
      distributions): give ``gymnasium.make`` ``max_episode_steps=-1``, or its 180-step
      ``TimeLimit`` cuts the longer ones.
    - ``features``: ``"default"`` (host-observable), ``"privileged"`` or a list of groups.
    - ``initial_weights``: ``"auto"`` (the kernel's auto weights from node bandwidth),
      ``"uniform"`` (1 per node) or a list of integers.
    - ``migration_cost_per_gib``: the reward's migration coefficient.
    - ``quota_action``: add the DAMOS quota as an action dimension.
    - ``damos``: a ``DamosSetup`` (the DAMON/DAMOS configuration the host runs; default:
      the scenario's ``[damos]`` table, ``DamosSetup.for_scenario``).
    - ``host_factory``: ``f(seed, initial_weights) -> Host`` to drive another host (the
      scenario then only names the default).
    - ``render_mode``: ``"ansi"`` (one line per step), ``"rgb_array"`` (a plot of the episode
      so far, a few milliseconds per frame) or ``"human"`` (that plot in a matplotlib window,
      updated at every step).
    - ``backend``: ``"sim"`` (default) or ``"host"``: a real host through
      ``tierenv.host.backend.RealHost``. Same spaces, with the host-observable features only;
      the reward needs each app's ``reference_gbps``; ``env.close()`` restores the host.
      Steps take real time.
    - ``host_options``: the real host's configuration (``backend="host"`` only): a
      ``tierenv.host.backend.HostOptions``, or a dict of its field names (``sysfs_root``,
      ``host_config``, and optionally ``proc_root``, ``interval_s``, ``journal``,
      ``page_nodes``, ``use_damos``, ``wait``, ``log_path``, ``pids``). The same names are
      also taken as keyword arguments of their own (``gymnasium.make(...,
      sysfs_root="/sys", host_config=...)``), which override the ``host_options`` ones. An
      unknown name raises ``TypeError``.

    ``reset`` takes no ``options`` (any given are refused).

    ## Example
    >>> import gymnasium as gym
    >>> import tierenv  # registers the ids
    >>> env = gym.make("tierenv/WeightedInterleave-v0", scenario="co-runner")
    >>> env
    <TimeLimit<OrderEnforcing<PassiveEnvChecker<WeightedInterleaveEnv<tierenv/WeightedInterleave-v0>>>>>
    >>> observation, info = env.reset(seed=0)
    >>> observation.shape, env.action_space.shape
    ((27,), (2,))
    >>> observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> env.close()

    ``tierenv/WeightedInterleave-Discrete-v0`` is this env with a grid of weight ratios
    (``Discrete`` actions), ``tierenv/WeightedInterleaveHost-v0`` this env on a real host
    (``backend="host"``, flagged nondeterministic) and ``gymnasium.make_vec(
    "tierenv/WeightedInterleaveFluid-v0", num_envs=N)`` a batched fluid model of it.

    ## Version History
    Every id is still ``v0``; these changes were made under it, so trajectories recorded
    before one of them differ from today's:
    - 2026-12-02: ``reset`` realises the scenario's ``[variation]`` from ``np_random`` (the
      same seed no longer gives the nominal run); ``scenario`` may be a distribution
      (``random:...``); this id and the discrete one declare ``max_episode_steps`` (180);
      ``step`` after the end raises ``ResetNeeded`` and ``reset`` refuses ``options``;
      ``info`` holds numbers only (per-application columns and ``app_running`` instead of
      ``app_names``); ``"human"`` rendering.
    - 2026-12-03: the default features gain ``damos_quota`` (the DAMOS quota in force);
      policies trained before keep observing their own feature list.
    - 2026-12-02: ``reset`` returns ``Host.begin`` (time 0, nothing placed) instead of one
      interval run under ``initial_weights``; ``damos`` defaults to the scenario's
      ``[damos]`` table; the reward skips applications with ``reward = false``.
    - 2026-11-26: ``backend="host"`` (``RealHost``, with ``quota_action``) and its id
      ``tierenv/WeightedInterleaveHost-v0``; ``step_weights``.
    - 2026-11-25: v0: the simulated host at full DAMON fidelity, the action-to-weights
      mapping, default and privileged features, the weighted-speedup-minus-migration reward,
      ``ansi`` and ``rgb_array`` rendering.
    """

    # declared as gym.Env declares it (an instance attribute), not as a ClassVar
    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": ["ansi", "rgb_array", "human"],
        "render_fps": 4,
    }

    def __init__(
        self,
        scenario: str | Path | Scenario | ScenarioDistribution = DEFAULT_SCENARIO,
        features: str | Sequence[str] = "default",
        initial_weights: str | Sequence[int] = "auto",
        migration_cost_per_gib: float = DEFAULT_MIGRATION_COST_PER_GIB,
        quota_action: bool = False,
        damos: DamosSetup | None = None,
        host_factory: HostFactory | None = None,
        render_mode: str | None = None,
        backend: str = "sim",
        host_options: HostOptions | Mapping[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        if backend not in ("sim", "host"):
            raise ValueError(f"backend must be 'sim' or 'host', got {backend!r}")
        given_one_by_one: dict[str, Any] = {}
        if backend == "host":
            from tierenv.host.backend import HostOptions

            names = HostOptions.names()
            given_one_by_one = {k: unknown.pop(k) for k in names if k in unknown}
        reject_unknown_arguments(type(self), unknown)
        if backend == "sim" and host_options:
            raise ValueError("host_options are for backend='host'")
        if backend == "host":
            options = HostOptions.of(host_options or {}, **given_one_by_one)
            host_factory = self._real_host_factory(options)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r}: valid modes are "
                f"{', '.join(self.metadata['render_modes'])} or None"
            )
        self.distribution = distribution_of(scenario)
        if self.distribution is not None:
            if host_factory is not None:
                raise ValueError(
                    "a scenario distribution (random:...) draws scenarios for the simulated "
                    "host; it cannot drive host_factory or backend='host'"
                )
            # until the first reset: a draw that fixes the spaces (every draw has its nodes)
            self.nominal_scenario = draw_scenario(self.distribution, np.random.default_rng(0))
        elif isinstance(scenario, Scenario):
            self.nominal_scenario = scenario
        else:  # a name or a path (distribution_of took the distributions)
            self.nominal_scenario = load_scenario(cast("str | Path", scenario))
        # the episode's run of the nominal scenario (realised at every reset on the simulator)
        self.scenario = self.nominal_scenario
        self._realises = host_factory is None
        self._damos_given = damos
        self._initial_weights_given = initial_weights
        self.damos = damos or DamosSetup.for_scenario(self.scenario)
        self._host_factory = host_factory or self._simulated_host
        self.render_mode = render_mode
        self.migration_cost_per_gib = check_migration_cost(migration_cost_per_gib)
        self.quota_action = bool(quota_action)
        self.host: Host = self._host_factory(0, None)
        self.node_info = self.host.node_info
        self.n_nodes = self.node_info.n_nodes
        self._initial_weights = initial_weights_for(
            plain_weights(initial_weights), self.node_info.peak_gbps
        )
        self.observation_spec = ObservationSpec(self.n_nodes, features)
        self.observation_names = self.observation_spec.names
        self.observation_space = spaces.Box(
            self.observation_spec.low, self.observation_spec.high, dtype=np.float32
        )
        n_actions = self.n_nodes + (1 if self.quota_action else 0)
        self.action_space = spaces.Box(ACTION_LOW, ACTION_HIGH, (n_actions,), dtype=np.float32)
        self.app_names = self._column_names()
        self._app_column = {name: k for k, name in enumerate(self.app_names)}
        self._history = History()
        self._plot: EpisodePlot | None = None
        self._window: HumanWindow | None = None
        self._last: StepResult | None = None
        self._ended = False

    @property
    def horizon_steps(self) -> int:
        """Steps of an episode: the scenario's length in control intervals (the env truncates
        there by itself)."""
        return self.scenario.n_steps

    # ------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options:
            raise ValueError(
                f"unknown reset option(s) {', '.join(map(repr, sorted(options)))}: "
                f"{type(self).__name__}.reset takes none"
            )
        super().reset(seed=seed)
        if self.distribution is not None:
            self._draw_scenario()
        host_seed = int(self.np_random.integers(2**63 - 1))
        if self._realises:
            # after the host seed, so DAMON's sampling stream does not depend on the variation
            self.scenario = realise(self.nominal_scenario, self.np_random)
        self.host = self._host_factory(host_seed, self._initial_weights)
        self.host.set_weights(self._initial_weights)
        self._history = History()
        self._ended = False
        observation, _, info = self._report(self.host.begin())
        self._render_human()
        return observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._check_running("step()")
        return self._step_values(action)

    def _step_values(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One step from action values (one per node, plus the quota with ``quota_action``)."""
        size = self.n_nodes + (1 if self.quota_action else 0)
        values = check_action(action, size)
        if values.shape != (size,):
            raise ActionError(f"action must have shape {(size,)}, got {values.shape}")
        weights = action_to_weights(values[: self.n_nodes], self.n_nodes)
        if self.quota_action:
            self.host.set_damos_quota(action_to_quota(values[self.n_nodes]))
        self.host.set_weights(weights)
        return self._transition()

    def step_weights(
        self, weights: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step with integer weights (1..255 per node) chosen directly, as baseline
        controllers and oracles do: the same transition, reward and info as ``step`` without
        the action mapping (whose smallest-weights rounding would otherwise move such weights
        by up to 2 %). Bad weights raise ``ValueError`` before anything changes."""
        self._check_running("step_weights()")
        self.host.set_weights(plain_weights(weights))
        return self._transition()

    def set_damos_quota(self, bytes_per_s: int) -> None:
        """The DAMOS migrate_hot quota (bytes/s, 0: unlimited) from the next step on, for
        controllers that choose it beside the weights (``Controller.damos_quota``), as the
        quota action does in ``step``."""
        self._check_running("set_damos_quota()")
        if isinstance(bytes_per_s, bool) or not isinstance(bytes_per_s, int | np.integer):
            raise ValueError(f"DAMOS quota must be whole bytes/s, got {plain(bytes_per_s)}")
        if bytes_per_s < 0:
            raise ValueError(f"DAMOS quota must be >= 0 bytes/s, got {int(bytes_per_s)}")
        self.host.set_damos_quota(int(bytes_per_s))

    @property
    def last_result(self) -> StepResult | None:
        """What the host reported for the last interval (``None`` before ``reset``): the
        measurements controllers decide from."""
        return self._last

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return ansi_line(self._last, self.node_info) if self._last is not None else ""
        if self.render_mode == "rgb_array":
            return self._frame()
        if self.render_mode == "human":
            self._render_human()
        return None

    def close(self) -> None:
        """Put a real host back (weights, auto switch, our kdamond); nothing for the simulator."""
        if self._window is not None:
            self._window.close()
            self._window = None
        failures = self.host.close()
        if failures:
            raise RuntimeError(f"the host could not be fully restored: {failures}")
        super().close()

    # The plot's figure and its cached background are not picklable: rebuilt on first use.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plot"] = None
        state["_window"] = None
        return state

    # ---------------------------------------------------------------------- internals
    def _check_running(self, call: str) -> None:
        if self._last is None:
            raise gym.error.ResetNeeded(f"call reset() before {call}")
        if self._ended:
            raise gym.error.ResetNeeded(
                f"{call} after the episode ended: the scenario {self.scenario.name!r} was "
                f"truncated at t={self._last.measurements.time_s:g} s "
                f"({self.horizon_steps} steps); call reset() to start a new episode"
            )

    def _transition(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, reward, info = self._report(self.host.step())
        self._ended = bool(self.host.done)
        self._render_human()
        return observation, reward, False, self._ended, info

    def _frame(self) -> np.ndarray:
        if self._plot is None:
            self._plot = EpisodePlot(self.node_info, self.scenario.name, self.scenario.duration_s)
        return self._plot.frame(self._history)

    def _render_human(self) -> None:
        # Gymnasium's convention: in "human" mode the env draws itself at every step.
        if self.render_mode != "human":
            return
        if self._window is None:
            self._window = HumanWindow()
        self._window.show(self._frame())

    def _draw_scenario(self) -> None:
        """A new episode's scenario from the distribution, and what depends on its host."""
        assert self.distribution is not None
        self.nominal_scenario = draw_scenario(self.distribution, self.np_random)
        self.scenario = self.nominal_scenario
        self.damos = self._damos_given or DamosSetup.for_scenario(self.scenario)
        self.node_info = self.scenario.node_info()
        self._initial_weights = initial_weights_for(
            plain_weights(self._initial_weights_given), self.node_info.peak_gbps
        )
        self._plot = None  # another host and length: a new figure

    def _column_names(self) -> tuple[str, ...]:
        """The applications info's per-application columns follow: the host's own list if it
        declares one (a real host: the applications of its config), else the scenario's
        managed applications."""
        declared = getattr(self.host, "app_names", None)
        if declared is None and hasattr(self.host, "references"):
            declared = tuple(self.host.references)  # RealHost: the apps with a reference
        if declared is None and self.distribution is not None:
            declared = managed_app_names(self.distribution)
        if declared is None:
            declared = tuple(run.app.name for run in self.scenario.managed_apps)
        return tuple(declared)

    def _app_columns(self, names: tuple[str, ...], values: np.ndarray) -> tuple[np.ndarray, ...]:
        """``values`` of the running applications ``names`` spread over ``app_names``."""
        throughput = np.zeros(len(self.app_names))
        running = np.zeros(len(self.app_names), dtype=bool)
        for name, value in zip(names, values, strict=True):
            column = self._app_column.get(name)
            if column is None:
                raise RuntimeError(
                    f"the host reported application {name!r}, which is not among the env's "
                    f"applications {list(self.app_names)}"
                )
            throughput[column] = value
            running[column] = True
        return throughput, running

    @staticmethod
    def _real_host_factory(options: HostOptions) -> HostFactory:
        from tierenv.host.backend import RealHost

        host = RealHost.from_options(options)
        return lambda _seed, _weights: host  # one host for the env's life: reset reuses it

    def _simulated_host(self, seed: int, weights: np.ndarray | None) -> SimulatedHost:
        return SimulatedHost(self.scenario, weights=weights, seed=seed, damos=self.damos)

    def _report(self, result: StepResult) -> tuple[np.ndarray, float, dict[str, Any]]:
        self._last = result
        m = result.measurements
        observation = self.observation_spec.build(m, result.truth, self.node_info)
        # the simulator's truth carries the references; a real host's config does
        references = None if result.truth is not None else self.host.reference_gbps(m.app_names)
        reward = compute_reward(m, result.truth, self.migration_cost_per_gib, references)
        throughput, running = self._app_columns(m.app_names, m.app_throughput_gbps)
        # numpy scalars and arrays only (each with a dtype): what batched info readers stack
        info = {
            "time_s": np.float64(m.time_s),
            "weights": m.weights,
            "shares": m.weights / m.weights.sum(),
            "node_bandwidth_gbps": m.node_bandwidth_gbps,
            "node_latency_ns": m.node_latency_ns,
            "app_throughput_gbps": throughput,
            "app_running": running,
            "migrated_bytes": np.int64(m.migrated_bytes.sum()),
            "damos_quota_bytes_per_s": np.float64(m.damos_quota_bytes_per_s),
            "weighted_speedup": np.float64(reward.throughput),
            "reward_throughput": np.float64(reward.throughput),
            "reward_migration": np.float64(reward.migration),
        }
        if self.render_mode in ("rgb_array", "human"):
            self._history.add(m)
        return observation, float(reward.total), info


# ---------------------------------------------------------------------- docstring tables
def observation_table(n_nodes: int = DOC_NODES, features: str | Sequence[str] = "default") -> str:
    """The observation vector of ``features`` on ``n_nodes`` nodes as a Markdown table, one
    row per entry: index, name, unit, bounds and where a real host reads it (the feature
    registry, ``tierenv.contracts.features``, is the only source)."""
    spec = ObservationSpec(n_nodes, features)
    lines = ["| index | feature | unit | bounds | host source |", "|---|---|---|---|---|"]
    index = 0
    for group in spec.groups:
        source = group.host_source or "simulator only (privileged)"
        for name in group.names(n_nodes):
            cells = (str(index), f"``{name}``", group.unit, f"{group.low:g}..{group.high:g}")
            lines.append(_table_row((*cells, source)))
            index += 1
    return "\n".join(lines)


def arguments_table(cls: type = WeightedInterleaveEnv) -> str:
    """``cls``'s constructor arguments (without ``self`` and ``**kwargs``) as a Markdown
    table: name, annotated type and default, read from its signature."""
    lines = ["| argument | type | default |", "|---|---|---|"]
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        annotation = parameter.annotation  # a string: the module postpones annotations
        kind = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        default = parameter.default
        shown = "required" if default is parameter.empty else f"``{default!r}``"
        lines.append(_table_row((f"``{parameter.name}``", f"``{kind}``", shown)))
    return "\n".join(lines)


def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


OBSERVATION_TABLE_MARK = "[observation table: generated from tierenv.contracts.features at import]"
ARGUMENTS_TABLE_MARK = "[arguments table: generated from the signature at import]"


def _fill_docstring(doc: str | None) -> str | None:
    """``doc`` with its table marks replaced by the generated tables (indented as the mark);
    ``None`` (``python -OO``) stays ``None``."""
    if doc is None:
        return None
    for mark, table in (
        (OBSERVATION_TABLE_MARK, observation_table()),
        (ARGUMENTS_TABLE_MARK, arguments_table()),
    ):
        line = next(line for line in doc.splitlines() if line.strip() == mark)
        indent = line[: len(line) - len(line.lstrip())]
        doc = doc.replace(line, "\n".join(indent + row for row in table.splitlines()))
    return doc


WeightedInterleaveEnv.__doc__ = _fill_docstring(WeightedInterleaveEnv.__doc__)
