"""How fast the batched (fluid-model) env steps: aggregate env-steps per second.

For each batch size, ``WeightedInterleaveVectorEnv`` runs a number of vector steps under
uniformly random actions (new weights for every env every step: the worst case, since each
weight change re-targets every page class, starts migrations and moves the solver away from
its warm start), autoresetting at the scenario's end (an episode is ``scenario.n_steps`` steps;
the autoreset step that follows returns the reset observation without advancing the model).
Each row reports the aggregate rate and where a step's time goes: the fluid model's compiled
pass (scenario changes, allocation, DAMOS walk, migrations, per-env reports), the batched
throughput ``solve``, and everything else (action mapping, observation features, reward,
info, drawing the random actions).
Timed after untimed warm-up steps (which also compile the kernels); one process, one core
by default (``threads=N``: the env's opt-in threads, ``WeightedInterleaveVectorEnv``).
Batch sizes are limited to ``MAX_BATCH_SIZE`` (65,536) envs, checked before any allocation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierenv.envs.vector import MAX_NUM_ENVS, WeightedInterleaveVectorEnv
from tierenv.workload.scenario import load_scenario

DEFAULT_BATCH_SIZES = (1, 64, 1024, 4096)
#: The largest batch timed: its envs are allocated at once (about 5 KB each on the shipped
#: scenarios, so 65,536 envs take about 0.3 GB over the interpreter's own), and per-env rates
#: stop changing long before it. Larger sizes are refused before anything is allocated.
MAX_BATCH_SIZE = MAX_NUM_ENVS  # what one batched env may hold


def check_batch_sizes(batch_sizes: Sequence[int]) -> list[int]:
    """``batch_sizes`` as a list, each a whole number of envs in 1..``MAX_BATCH_SIZE``;
    otherwise a ``ValueError`` naming the option (``--batch-sizes``) and the value."""
    sizes = list(batch_sizes)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise ValueError(f"--batch-sizes: {size!r} is not a whole number of envs")
        if not 1 <= size <= MAX_BATCH_SIZE:
            raise ValueError(
                f"--batch-sizes: {size:,} envs is outside 1..{MAX_BATCH_SIZE:,} (a batch's envs "
                "are allocated at once, about 5 KB each)"
            )
    return [int(size) for size in sizes]


@dataclass(frozen=True)
class BatchedRow:
    scenario: str
    num_envs: int
    vector_steps: int
    wall_s: float
    model_advance_s: float  # the fluid model's compiled pass
    model_solve_s: float  # the batched throughput solver
    model_outputs_s: float  # assembling the model's outputs
    threads: int = 1  # the env's ``threads``

    @property
    def env_steps(self) -> int:
        return self.num_envs * self.vector_steps

    @property
    def env_steps_per_s(self) -> float:
        return self.env_steps / self.wall_s

    @property
    def other_s(self) -> float:
        """Time outside the model: actions, features, reward, info, random actions."""
        return self.wall_s - self.model_advance_s - self.model_solve_s - self.model_outputs_s


def bench_batched(
    scenario_name: str,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    steps: int | None = None,
    warmup_steps: int = 3,
    seed: int = 0,
    *,
    threads: int = 1,
) -> list[BatchedRow]:
    """One row per batch size: ``steps`` vector steps of random actions through the
    ``VectorEnv`` (default: one whole episode, so every phase of the scenario counts), after
    ``warmup_steps`` untimed ones; ``threads`` is the env's (default 1: serial)."""
    batch_sizes = check_batch_sizes(batch_sizes)
    scenario = load_scenario(scenario_name)
    steps = scenario.n_steps if steps is None else steps
    if steps < 1 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 1 and warmup_steps >= 0, got {steps}, {warmup_steps}")
    rows = []
    for num_envs in batch_sizes:
        env = WeightedInterleaveVectorEnv(num_envs, scenario=scenario, threads=threads)
        rng = np.random.default_rng(seed)
        shape = env.action_space.shape
        assert shape is not None  # a Box

        def random_actions(rng: np.random.Generator = rng, shape: tuple = shape) -> np.ndarray:
            return rng.uniform(-1.0, 1.0, shape).astype(np.float32)

        env.reset(seed=seed)
        for _ in range(warmup_steps):
            env.step(random_actions())
        timings = env.model.timings
        for key in timings:
            timings[key] = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            env.step(random_actions())
        wall = time.perf_counter() - start
        rows.append(
            BatchedRow(
                scenario=scenario.name,
                num_envs=num_envs,
                vector_steps=steps,
                wall_s=wall,
                model_advance_s=timings["advance"],
                model_solve_s=timings["solve"],
                model_outputs_s=timings["outputs"],
                threads=threads,
            )
        )
        env.close()
    return rows


def batched_table(rows: Sequence[BatchedRow]) -> str:
    """A Markdown table of ``bench_batched`` rows (with a threads column when any row ran
    with threads)."""
    threaded = any(row.threads != 1 for row in rows)
    lines = [
        "| scenario | envs "
        + ("| threads " if threaded else "")
        + "| vector steps | env-steps/s | ms per vector step "
        "| fluid pass % | solver % | outputs % | rest (actions, features, info) % |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if threaded else ""),
    ]
    for row in rows:
        share = 100.0 / row.wall_s
        lines.append(
            f"| {row.scenario} | {row.num_envs:,} "
            + (f"| {row.threads} " if threaded else "")
            + f"| {row.vector_steps:,} "
            f"| {row.env_steps_per_s:,.0f} | {row.wall_s / row.vector_steps * 1e3:.2f} "
            f"| {row.model_advance_s * share:.0f} | {row.model_solve_s * share:.0f} "
            f"| {row.model_outputs_s * share:.0f} | {row.other_s * share:.0f} |"
        )
    return "\n".join(lines)
