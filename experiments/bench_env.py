"""``tierenv bench``: how fast the environment steps, measured on this machine.

For every shipped scenario, one env at full DAMON fidelity runs whole episodes under two
policies: a constant action (weights settle, DAMOS finishes its migrations) and uniformly
random actions (new weights every step, the worst case for DAMOS and the solver). Each row
reports env steps per second, simulated seconds per wall second, and where a step's time
goes: the simulated host (DAMON, DAMOS, solver) against the env's own work (action mapping,
features, reward, info). Medians over repeats after an untimed warm-up episode; one core.
Then the batched fluid env (``bench_batched``) at several batch sizes (at most
``MAX_BATCH_SIZE``, 65,536 envs): aggregate env-steps per second and where a vector step's
time goes. Every figure stands beside Gymnasium's CartPole timed the same way in the same
run (``experiments.bench_cartpole``): the ratio is what compares across machines. Sizes and
scenario names are checked before anything is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.bench_cartpole import (
    cartpole_single_steps_per_s,
    cartpole_training_steps_per_s,
    cartpole_vector_steps_per_s,
)
from experiments.bench_env_batched import (
    DEFAULT_BATCH_SIZES,
    BatchedRow,
    batched_table,
    bench_batched,
    check_batch_sizes,
)
from experiments.bench_history import Figure, batched_name, single_name, training_name
from tierenv.envs.weighted_interleave import DEFAULT_SCENARIO, WeightedInterleaveEnv
from tierenv.workload.generator import distribution_of
from tierenv.workload.scenario import load_scenario, shipped_scenario_names

CONSTANT_ACTION = np.array([0.3, -0.3], dtype=np.float32)
#: What the training rows train on by default: the distribution ppo-random trains on.
TRAINING_SCENARIO = "random:default"
#: The most threads ``--batched-threads`` takes (numba's pool is at most the CPU count).
MAX_THREADS = 64
#: The trainers timed (``experiments.bench_train`` methods).
TRAINERS = ("sb3", "lean")


@dataclass(frozen=True)
class SingleEnvRow:
    scenario: str
    policy: str
    steps: int
    wall_s: float
    host_s: float  # time inside Host.step
    interval_s: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s

    @property
    def simulated_per_wall(self) -> float:
        return self.steps * self.interval_s / self.wall_s


class _TimedHost:
    """Wraps a host's ``step`` to add up the time spent inside it."""

    def __init__(self, host) -> None:
        self._host = host
        self.elapsed = 0.0

    def __getattr__(self, name: str):
        return getattr(self._host, name)

    def step(self):
        start = time.perf_counter()
        result = self._host.step()
        self.elapsed += time.perf_counter() - start
        return result


def _episode(env: WeightedInterleaveEnv, policy: Callable[[int], np.ndarray], seed: int):
    env.reset(seed=seed)
    timed = _TimedHost(env.host)
    env.host = timed
    steps = 0
    start = time.perf_counter()
    truncated = False
    while not truncated:
        _, _, _, truncated, _ = env.step(policy(steps))
        steps += 1
    return steps, time.perf_counter() - start, timed.elapsed


def bench_single(scenario_name: str, repeats: int = 3) -> list[SingleEnvRow]:
    scenario = load_scenario(scenario_name)
    env = WeightedInterleaveEnv(scenario)
    n_nodes = env.n_nodes
    rng = np.random.default_rng(0)
    random_actions = rng.uniform(-1, 1, (scenario.n_steps + 1, n_nodes)).astype(np.float32)
    constant = np.resize(CONSTANT_ACTION, n_nodes)
    policies = {
        "constant": lambda step: constant,
        "random": lambda step: random_actions[step],
    }
    rows = []
    for name, policy in policies.items():
        _episode(env, policy, seed=0)  # compiled kernels loaded, caches warm
        runs = [_episode(env, policy, seed=repeat) for repeat in range(max(repeats, 1))]
        steps, wall, host = (float(np.median([run[i] for run in runs])) for i in range(3))
        rows.append(
            SingleEnvRow(scenario_name, name, int(steps), wall, host, scenario.control_interval_s)
        )
    return rows


def single_table(rows: list[SingleEnvRow], cartpole_steps_per_s: float) -> str:
    lines = [
        "| scenario | policy | steps/s | x CartPole | simulated s per wall s | ms per step | "
        "host ms per step | env ms per step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_step = 1e3 * row.wall_s / row.steps
        host = 1e3 * row.host_s / row.steps
        lines.append(
            f"| {row.scenario} | {row.policy} | {row.steps_per_s:,.0f} | "
            f"{row.steps_per_s / cartpole_steps_per_s:.3g} | {row.simulated_per_wall:,.0f}x | "
            f"{per_step:.3f} | {host:.3f} | "
            f"{per_step - host:.3f} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Benchmark:
    """What ``run_benchmark`` measured: the Markdown tables (without the provenance stamp)
    and every figure with CartPole's matching figure, for the history."""

    markdown: str
    figures: tuple[Figure, ...]


def run_benchmark(
    scenarios: list[str] | None = None,
    repeats: int = 3,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    batched_scenario: str = DEFAULT_SCENARIO,
    progress: Callable[[str], None] = print,
    training_steps: int = 0,
    training_scenario: str = TRAINING_SCENARIO,
    batched_threads: int = 1,
) -> Benchmark:
    """One env at full fidelity for each scenario, then the batched fluid env at each of
    ``batch_sizes`` (none when empty) on ``batched_scenario`` (the largest again with
    ``batched_threads`` threads when > 1), then (``training_steps`` > 0)
    PPO training on ``training_scenario`` with SB3 and the lean trainer; each beside
    Gymnasium's CartPole timed the same way in the same run. Bad sizes or scenarios fail
    before anything runs."""
    batch_sizes = check_batch_sizes(batch_sizes)
    names = list(scenarios or shipped_scenario_names())
    if training_steps < 0:
        raise ValueError(f"--training-steps must be >= 0, got {training_steps}")
    if not 1 <= batched_threads <= MAX_THREADS:
        raise ValueError(f"--batched-threads must be in 1..{MAX_THREADS}, got {batched_threads}")
    for name in names + ([batched_scenario] if batch_sizes else []):
        load_scenario(name)  # a bad name fails now, not after minutes of timing
    if training_steps:
        training_config(training_scenario)  # likewise
    cartpole = cartpole_single_steps_per_s()
    progress(f"CartPole, one env: {cartpole:,.0f} steps/s")
    rows: list[SingleEnvRow] = []
    for name in names:
        scenario_rows = bench_single(name, repeats)
        for row in scenario_rows:
            progress(f"{name} ({row.policy} policy): {row.steps_per_s:,.0f} steps/s")
        rows += scenario_rows
    figures = [
        Figure(single_name(row.scenario, row.policy), row.steps_per_s, cartpole) for row in rows
    ]
    text = (
        "## One environment, full DAMON fidelity\n\n"
        "Whole episodes of `WeightedInterleaveEnv` (1 s control intervals, one kdamond per "
        "application with damo's weighted-interleave migrate_hot scheme, the solver every "
        f"interval); constant action {CONSTANT_ACTION.tolist()} or uniformly random actions; "
        f"median of {repeats} episodes after an untimed one; one core. Host = time in "
        "`SimulatedHost.step`; env = the rest (action mapping, features, reward, info). "
        "x CartPole = steps/s over Gymnasium's `CartPoleEnv` under random actions timed in "
        f"the same run ({cartpole:,.0f} steps/s).\n\n" + single_table(rows, cartpole)
    )
    if batch_sizes:
        text += _batched_section(batch_sizes, batched_scenario, figures, progress, batched_threads)
    if training_steps:
        text += _training_section(training_steps, training_scenario, figures, progress)
    return Benchmark(text, tuple(figures))


def training_config(scenario: str) -> Any:
    """ppo-random's training config on ``scenario``, a shipped scenario, a file or a
    ``random:`` distribution (``ValueError`` naming the option for a bad one)."""
    from agents.training.config import ConfigError
    from experiments.bench_train import bench_config  # torch and SB3: only when training is timed

    try:
        if distribution_of(scenario) is None:
            load_scenario(scenario)
        return bench_config(scenario)
    except (ConfigError, ValueError, OSError) as error:
        raise ValueError(f"--training-scenario {scenario}: {error}") from None


def _training_section(
    steps: int, scenario: str, figures: list[Figure], progress: Callable[[str], None]
) -> str:
    from agents.training.config import build_hyperparameters
    from experiments.bench_train import bench_training, training_table

    config = training_config(scenario)
    rows = bench_training(scenario, steps, TRAINERS, threads=(1,))
    reference = cartpole_training_steps_per_s(
        rows[0].steps, config.env.n_envs, build_hyperparameters(config)
    )
    lines = [
        "| trainer | env-steps/s | CartPole PPO (SB3) env-steps/s | x CartPole | 10M steps (min) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        progress(
            f"{row.method} PPO on {scenario}: {row.env_steps_per_s:,.0f} steps/s "
            f"(SB3 on CartPole: {reference:,.0f})"
        )
        figures.append(Figure(training_name(row.method, scenario), row.env_steps_per_s, reference))
        lines.append(
            f"| {row.method} | {row.env_steps_per_s:,.0f} | {reference:,.0f} "
            f"| {row.env_steps_per_s / reference:.3g} | {row.minutes_for_target:.1f} |"
        )
    return (
        f"\n## PPO training on the fluid model (`{scenario}`)\n\n"
        f"ppo-random's PPO (`experiments/train/ppo-random.yaml`: {config.env.n_envs} envs, "
        f"its hyperparameters) trained for {rows[0].steps:,} env-steps on `{scenario}` by "
        "stable-baselines3 and by the lean trainer (`agents/training/lean_ppo.py`), one torch "
        "thread, without the periodic evaluation (`python -m experiments.bench_train` splits "
        "the time into env, rollout and update). CartPole = SB3's PPO with the same envs "
        "count, arguments and budget on CartPole-v1, timed in the same run. 10M steps = the "
        "minutes ten million steps would take at this rate.\n\n"
        + training_table(rows)
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _batched_section(
    batch_sizes: Sequence[int],
    batched_scenario: str,
    figures: list[Figure],
    progress: Callable[[str], None],
    threads: int = 1,
) -> str:
    batched = []
    batched_cartpole = []
    for num_envs in batch_sizes:
        (batched_row,) = bench_batched(batched_scenario, [num_envs])
        reference = cartpole_vector_steps_per_s(num_envs)
        progress(
            f"{batched_scenario} batched x{num_envs:,}: {batched_row.env_steps_per_s:,.0f} "
            f"steps/s (CartPoleVectorEnv: {reference:,.0f})"
        )
        batched.append(batched_row)
        batched_cartpole.append(reference)
        figures.append(
            Figure(batched_name(batched_scenario, num_envs), batched_row.env_steps_per_s, reference)
        )
    threaded_note = ""
    if threads > 1:  # the largest batch again, on the env's opt-in threads
        num_envs, reference = batch_sizes[-1], batched_cartpole[-1]
        (threaded,) = bench_batched(batched_scenario, [num_envs], threads=threads)
        progress(
            f"{batched_scenario} batched x{num_envs:,}, {threads} threads: "
            f"{threaded.env_steps_per_s:,.0f} steps/s"
        )
        batched.append(threaded)
        batched_cartpole.append(reference)
        figures.append(
            Figure(
                f"batched-threads{threads} {batched_scenario} x{num_envs}",
                threaded.env_steps_per_s,
                reference,
            )
        )
        threaded_note = (
            f" The last row runs the largest batch again with the env's opt-in `threads={threads}`"
            " (numba's thread pool; the same results bit for bit); on a machine whose cores are "
            "busy with other work it can be slower than one thread."
        )
    return (
        "\n## Batched fluid model (`tierenv/WeightedInterleaveFluid-v0`)\n\n"
        "`WeightedInterleaveVectorEnv` on the fluid model (DAMON's sampling replaced by its "
        "expectation; chunked pages): one whole episode of uniformly random actions per row "
        "(new weights for every env every step, the worst case), autoresetting, after 3 "
        "untimed steps; one process, one core. The percentages split a vector step's time "
        "between the fluid model's compiled pass, the batched solver, assembling the model's "
        "outputs, and the rest (action mapping, features, reward, info). CartPole = "
        "Gymnasium's native `CartPoleVectorEnv` at the same number of envs under random "
        "actions, timed in the same run (CartPole on one thread throughout)."
        + threaded_note
        + "\n\n"
        + batched_table(batched)
        + "\n\n"
        + versus_cartpole_table(batched, batched_cartpole)
    )


def versus_cartpole_table(rows: Sequence[BatchedRow], cartpole: Sequence[float]) -> str:
    """Each batched row's rate beside ``CartPoleVectorEnv``'s at the same number of envs."""
    lines = [
        "| envs | tierenv env-steps/s | CartPoleVectorEnv env-steps/s | x CartPole |",
        "|---|---|---|---|",
    ]
    for row, reference in zip(rows, cartpole, strict=True):
        lines.append(
            f"| {row.num_envs:,} | {row.env_steps_per_s:,.0f} | {reference:,.0f} "
            f"| {row.env_steps_per_s / reference:.3g} |"
        )
    return "\n".join(lines) + "\n"
