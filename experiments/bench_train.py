"""How fast PPO trains on the batched fluid model, end to end, and where the time goes.

Each method trains PPO with ppo-random's settings (``experiments/train/ppo-random.yaml``,
also the demo's hyperparameters; weights only, no quota action: 48 envs, 64 steps per env
per update, minibatches of 256, 10 epochs, gamma 0.9, GAE lambda 0.9, learning rate 6.87e-4,
[64, 64] tanh MLPs) on one scenario for ``total_steps`` env-steps,
with ``torch.set_num_threads(t)`` for each ``t`` of ``threads``:

- ``sb3``: stable-baselines3's PPO as ``agents.training`` builds it for the fluid backend
  (``make_train_venv``: ``MixedScenarioVectorEnv`` behind ``Sb3FluidVecEnv``,
  ``ConcatVecEnv``, ``VecMonitor`` and ``VecNormalize`` of observations and rewards), without
  the periodic evaluation, checkpoints, TensorBoard and progress bar ``train_run`` adds;
- ``lean``: ``agents.training.lean_ppo.LeanPPO``, the same algorithm on the same envs;
- ``cleanrl``: the one-file example ``experiments/cleanrl_ppo.py`` (no reward normalisation,
  a linearly annealed learning rate, the plain fluid env without per-episode variation);
- ``env``: the envs alone under random actions, the ceiling any trainer can reach.

Each row splits the wall time into the envs' ``step`` (the raw ``MixedScenarioVectorEnv`` /
fluid env, timed inside the trainer), the rest of the rollout (policy inference, action
clipping, normalisation, bootstrapping, buffers, SB3's VecEnv wrappers and callbacks) and the
update (GAE and the gradient steps), and reports the 1-minute load average at its end: on a
shared machine the rates move with the load, so read them with it (``cpu_s``, the process's
CPU time, moves less). The numba kernels are compiled before anything is timed.

    python -m experiments.bench_train [--scenario co-runner] [--steps 245760]
        [--methods sb3,lean,cleanrl,env] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH_CONFIG = Path(__file__).parent / "train" / "ppo-random.yaml"
METHODS = ("sb3", "lean", "cleanrl", "env")
DEFAULT_METHODS = ("sb3", "lean", "cleanrl", "env")
#: 80 updates of 3,072 steps
DEFAULT_STEPS = 245_760
#: The issue's target: 10 million steps in 10 minutes.
TARGET_STEPS, TARGET_S = 10_000_000, 600.0


@dataclass(frozen=True)
class TrainRow:
    method: str
    scenario: str
    envs: int
    threads: int
    steps: int
    wall_s: float
    cpu_s: float  # process CPU time (all threads)
    env_s: float  # inside the envs' step
    rollout_s: float  # the whole rollout, envs included
    update_s: float  # GAE and gradient steps
    setup_s: float  # building the envs and the model (in wall_s; cleanrl's is in "other")
    load: float  # 1-minute load average when the row finished

    @property
    def env_steps_per_s(self) -> float:
        return self.steps / self.wall_s

    @property
    def env_pct(self) -> float:
        return 100.0 * self.env_s / self.wall_s

    @property
    def rollout_policy_pct(self) -> float:
        """The rollout outside the envs: inference, normalisation, buffers, wrappers."""
        return 100.0 * (self.rollout_s - self.env_s) / self.wall_s

    @property
    def update_pct(self) -> float:
        return 100.0 * self.update_s / self.wall_s

    @property
    def steps_per_cpu_s(self) -> float:
        """Env-steps per second of the process's CPU time: what the rate would be on an
        otherwise idle machine, for single-threaded runs (less sensitive to the load)."""
        return self.steps / self.cpu_s

    @property
    def minutes_for_target(self) -> float:
        """Minutes ``TARGET_STEPS`` would take at this rate (setup once, the rest scaled)."""
        per_step = (self.wall_s - self.setup_s) / self.steps
        return (self.setup_s + TARGET_STEPS * per_step) / 60.0


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bench_config(scenario: str = "co-runner") -> Any:
    """ppo-random's training config on one scenario (what ``sb3`` and ``lean`` train)."""
    from agents.training.config import load_config

    return load_config(BENCH_CONFIG).replace(env={"scenarios": (scenario,)})


def _load() -> float:
    return os.getloadavg()[0]


def _timed_step(env: Any, clock: dict[str, float]) -> None:
    """Time ``env.step`` into ``clock["env"]`` (an instance attribute shadows the method)."""
    step = env.step

    def timed(actions: np.ndarray) -> Any:
        start = time.perf_counter()
        try:
            return step(actions)
        finally:
            clock["env"] += time.perf_counter() - start

    env.step = timed


def _bench_sb3(scenario: str, total_steps: int, seed: int) -> dict[str, float]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    from agents.training.config import build_hyperparameters
    from agents.training.envs import make_train_venv

    setup = time.perf_counter()
    config = bench_config(scenario)
    venv = make_train_venv(config)
    clock = {"env": 0.0, "rollout": 0.0, "update": 0.0}
    concat = venv.venv.venv  # type: ignore[attr-defined]  # VecNormalize, VecMonitor, Concat
    for part in concat.venvs:
        _timed_step(part.vector_env, clock)
    model = PPO(
        config.policy, venv, seed=seed, device="cpu", verbose=0, **build_hyperparameters(config)
    )
    collect, train = model.collect_rollouts, model.train

    def timed_collect(*args: Any, **kwargs: Any) -> bool:
        start = time.perf_counter()
        try:
            return collect(*args, **kwargs)
        finally:
            clock["rollout"] += time.perf_counter() - start

    def timed_train() -> None:
        start = time.perf_counter()
        try:
            train()
        finally:
            clock["update"] += time.perf_counter() - start

    model.collect_rollouts = timed_collect  # type: ignore[method-assign]
    model.train = timed_train  # type: ignore[method-assign]
    clock["setup"] = time.perf_counter() - setup
    # SB3's default logger would leave an empty SB3-<date> folder in the temp folder
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(total_steps)
    venv.close()
    return {"steps": model.num_timesteps, "envs": venv.num_envs, **clock}


def _bench_lean(scenario: str, total_steps: int, seed: int) -> dict[str, float]:
    from agents.training.lean_ppo import LeanPPO

    setup = time.perf_counter()
    model = LeanPPO.from_config(bench_config(scenario), seed=seed)
    setup = time.perf_counter() - setup
    model.learn(total_steps)
    model.close()
    stats = model.stats
    return {
        "steps": model.num_timesteps,
        "envs": model.n_envs,
        "env": stats.env_s,
        "rollout": stats.rollout_s,
        "update": stats.update_s,
        "setup": setup,
    }


def _bench_cleanrl(scenario: str, total_steps: int, seed: int) -> dict[str, float]:
    from experiments.cleanrl_ppo import Args, train

    args = Args(scenario=scenario, seed=seed, total_timesteps=total_steps, verbose=False)
    result = train(args)
    return {
        "steps": result["steps"],
        "envs": args.num_envs,
        "env": result["env_s"],
        "rollout": result["rollout_s"],
        "update": result["update_s"],
    }


def _bench_env(scenario: str, total_steps: int, seed: int) -> dict[str, float]:
    """The training envs alone (as ``lean`` builds them) under uniform random actions."""
    from agents.training.lean_ppo import FluidTrainEnvs

    setup = time.perf_counter()
    env = bench_config(scenario).env
    envs = FluidTrainEnvs(
        env.scenarios, env.n_envs, env.features, env.migration_cost_per_gib, env.quota_action
    )
    setup = time.perf_counter() - setup
    shape = (envs.num_envs, *(envs.action_space.shape or ()))
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    steps, elapsed = 0, 0.0
    while steps < total_steps:
        actions = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        start = time.perf_counter()
        envs.step(actions)
        elapsed += time.perf_counter() - start
        steps += envs.num_envs
    envs.close()
    return {
        "steps": steps,
        "envs": envs.num_envs,
        "env": elapsed,
        "rollout": elapsed,
        "update": 0.0,
        "setup": setup,
    }


RUNNERS: dict[str, Callable[[str, int, int], dict[str, float]]] = {
    "sb3": _bench_sb3,
    "lean": _bench_lean,
    "cleanrl": _bench_cleanrl,
    "env": _bench_env,
}


def warm_up(scenario: str) -> None:
    """Compile the fluid model's and solver's numba kernels (and import torch's and SB3's
    modules) outside the timed runs."""
    from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

    env = MixedScenarioVectorEnv(2, scenario=scenario, autoreset_mode="same_step")
    env.reset(seed=0)
    shape = env.action_space.shape or ()
    for _ in range(3):
        env.step(np.zeros(shape, np.float32))
    env.close()


def bench_training(
    scenario: str = "co-runner",
    total_steps: int = DEFAULT_STEPS,
    methods: Sequence[str] = DEFAULT_METHODS,
    threads: Sequence[int] = (1, 2),
    seed: int = 0,
) -> list[TrainRow]:
    """One row per method and torch thread count (``env`` once: it runs no torch), each a
    training run of ``total_steps`` steps (rounded up to whole updates) on ``scenario``."""
    unknown = [m for m in methods if m not in RUNNERS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not threads or any(isinstance(t, bool) or not 1 <= int(t) <= 64 for t in threads):
        raise ValueError(f"threads must be counts in 1..64, got {list(threads)!r}")
    warm_up(scenario)
    rows = []
    for method in methods:
        for count in threads[:1] if method == "env" else threads:
            with torch_threads(int(count)):
                wall, cpu = time.perf_counter(), time.process_time()
                out = RUNNERS[method](scenario, total_steps, seed)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append(
                TrainRow(
                    method=method,
                    scenario=scenario,
                    envs=int(out["envs"]),
                    threads=int(count) if method != "env" else 0,
                    steps=int(out["steps"]),
                    wall_s=wall,
                    cpu_s=cpu,
                    env_s=out["env"],
                    rollout_s=out["rollout"],
                    update_s=out["update"],
                    setup_s=out.get("setup", 0.0),
                    load=_load(),
                )
            )
    return rows


def training_table(rows: Sequence[TrainRow]) -> str:
    """A Markdown table of ``bench_training`` rows."""
    lines = [
        "| method | scenario | envs | torch threads | steps | wall s | CPU s | env-steps/s "
        "| env-steps per CPU s | env % | rollout policy % | update % | setup & other % "
        "| 10M steps (min) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        other = 100.0 - row.env_pct - row.rollout_policy_pct - row.update_pct
        lines.append(
            f"| {row.method} | {row.scenario} | {row.envs} | {row.threads or '-'} "
            f"| {row.steps:,} | {row.wall_s:.1f} | {row.cpu_s:.1f} "
            f"| {row.env_steps_per_s:,.0f} | {row.steps_per_cpu_s:,.0f} "
            f"| {row.env_pct:.0f} | {row.rollout_policy_pct:.0f} "
            f"| {row.update_pct:.0f} | {other:.0f} | {row.minutes_for_target:.1f} "
            f"| {row.load:.2f} |"
        )
    return "\n".join(lines)


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="co-runner")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--threads", type=_csv_ints, default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the table, stamped, to this file"
    )
    args = parser.parse_args(argv)
    if args.out is not None:
        from tierenv.cli.outputs import check_writable

        try:
            check_writable("--out", args.out, folder=False)  # before minutes of training
        except ValueError as error:
            parser.error(str(error))
    methods = [m for m in args.methods.split(",") if m]
    try:
        rows = bench_training(args.scenario, args.steps, methods, args.threads, args.seed)
    except ValueError as error:
        parser.error(str(error))
    table = training_table(rows)
    print(table)
    if args.out is not None:
        from tierenv.files import write_text_atomically
        from tierenv.provenance import stamp

        command = "python -m experiments.bench_train " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        write_text_atomically(
            args.out,
            "# PPO training speed on the fluid model\n\n"
            + stamp(command.strip())
            + "\n"
            + (__doc__ or "").split("\n\n")[0]
            + " The load column is the 1-minute load average at the end of each row.\n\n"
            + table
            + "\n",
        )
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
