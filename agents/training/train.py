"""Train SB3 agents on the weighted-interleave env from a training config.

Run directory (one seed; ``train`` uses ``<out_root>/<name>/seed_<seed>``)::

    RUN/config.yaml        the config as run (this seed only)
    RUN/model.zip          the final model (``model.save``)
    RUN/vecnormalize.pkl   VecNormalize statistics (when observations or rewards are normalised)
    RUN/run.json           algorithm, seed, timesteps, n_nodes, features, feature_groups,
                           normalize_observation, migration_cost_per_gib, quota_action,
                           env_backend, tierenv_version, git_commit, train_wall_s (this
                           process's training and evaluation time; a resumed run counts
                           only its last part, with resumed: true), machine
    RUN/eval.csv           timesteps, scenario, episode_return (raw env returns)
    RUN/tb/                TensorBoard: SB3's scalars and eval/<scenario>/return
    RUN/checkpoints/step_<N>/   exact-resume checkpoints (``agents.training.checkpoint``)

``trainer: lean`` (PPO, MlpPolicy, fluid backend) trains with ``agents.training.lean_ppo``
instead of SB3's ``learn`` and writes the same folder: the SB3 model is built as for SB3 (its
``VecNormalize`` holds the statistics; its own envs are never stepped) and the lean model's
weights and statistics are copied into it (``LeanPPO.load_into_sb3``) before every
evaluation, checkpoint and the final save, so evaluation, ``tierenv export``, ``kind: sb3``
in compare and ``LearnedPolicy`` take a lean run as any other. Evaluations and checkpoints
fall on update boundaries, as SB3's fall on rollout boundaries (the first at or after each
multiple of their period; none after the last update, whose evaluation ``train_run`` adds).
Differences: ``run.json`` has ``"trainer": "lean"`` (SB3 runs have no ``trainer`` key); a
lean checkpoint holds ``model.zip`` and ``vecnormalize.pkl`` (the SB3 model at that step) and
``lean.pkl.z`` (``LeanPPO.training_state``: weights, Adam's moments, the statistics and
running returns, the generator and the training envs) instead of ``state.pkl.z``, and
``--resume`` continues from it exactly (tested to identical parameters and ``eval.csv``); a
checkpoint of the other trainer is refused (``ConfigError`` naming the run), never mixed.
TensorBoard (``tb/sb3_<k>``) gets, per update, ``rollout/ep_rew_mean`` (raw returns of the
last 100 episodes), ``train/policy_gradient_loss``, ``train/value_loss`` and
``train/entropy_loss`` (the update's last minibatch, where SB3 logs the mean over all of
them), ``train/learning_rate``, ``train/std`` and ``time/fps``, and the same ``eval/``
scalars as SB3 runs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.utils import configure_logger
from stable_baselines3.common.vec_env import VecNormalize
from tqdm.auto import tqdm

import tierenv
from agents.ray_session import ray_session
from agents.training.callbacks import Periodic, ProgressBar
from agents.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from agents.training.config import (
    ConfigError,
    TrainConfig,
    algorithm_class,
    build_hyperparameters,
    parse_config,
)
from agents.training.envs import dumps_state, loads_state, make_train_venv, observation_names
from agents.training.evaluate import Evaluator
from tierenv.provenance import git_commit, machine_summary

if TYPE_CHECKING:  # torch-heavy, imported where a lean run needs it
    from agents.training.lean_ppo import LeanPPO

EVAL_COLUMNS = ("timesteps", "scenario", "episode_return")
TB_NAME = "sb3"
LEAN_STATE_FILE = "lean.pkl.z"  # a lean checkpoint's LeanPPO.training_state
EPISODE_WINDOW = 100  # episodes in rollout/ep_rew_mean (SB3's stats_window_size)
EvalHook = Callable[[int, dict[str, list[float]]], None]


class RunExistsError(ValueError):
    """A run directory that already holds a run (and ``resume`` was not asked for)."""


def run_dir_for(config: TrainConfig, seed: int, out_root: Path) -> Path:
    """Where ``train`` puts a seed's run."""
    return Path(out_root) / config.name / f"seed_{seed}"


def train(
    config: TrainConfig,
    seeds: Sequence[int] | None = None,
    out_root: Path = Path("runs/train"),
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
    use_ray: bool = False,
    ray_address: str | None = None,
) -> list[Path]:
    """Train one agent per seed (default: the config's seeds) into
    ``<out_root>/<name>/seed_<seed>/`` and return the run directories.

    ``workers`` > 1 trains seeds in parallel processes, each with one torch thread.
    ``use_ray`` (or a ``ray_address``) trains each seed as a Ray task instead, on a local Ray
    instance of ``workers`` CPUs or on that cluster, whose nodes must see ``out_root`` (a
    shared filesystem: each task writes its run folder there).
    ``resume`` continues interrupted runs from their latest checkpoint and skips finished
    ones. Raises ``ConfigError`` for a bad config or seed, ``RunExistsError`` when a run
    directory is taken and ``resume`` is off.
    """
    seeds = tuple(config.seeds if seeds is None else seeds)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"{config.source}: seeds: seed {seed!r} is not an integer >= 0")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    dirs = [run_dir_for(config, int(seed), out_root) for seed in seeds]
    if not resume:
        for run_dir in dirs:
            _check_fresh(run_dir)
    if use_ray or ray_address:
        return _train_on_ray(config, seeds, dirs, resume, workers, ray_address)
    if workers == 1 or len(seeds) == 1:
        return [
            train_run(config, int(seed), run_dir, resume=resume, progress=progress)
            for seed, run_dir in zip(seeds, dirs, strict=True)
        ]
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        futures = [
            pool.submit(_train_worker, config, int(seed), run_dir, resume, progress, k % workers)
            for k, (seed, run_dir) in enumerate(zip(seeds, dirs, strict=True))
        ]
        return [future.result() for future in futures]


def train_run(
    config: TrainConfig,
    seed: int,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    *,
    position: int = 0,
    on_eval: EvalHook | None = None,
) -> Path:
    """Train one seed of ``config`` into the run directory ``out_dir`` and return it.

    ``resume`` continues from the latest checkpoint in ``out_dir/checkpoints`` exactly as if
    never interrupted (the config must match the one the run started with, except for
    ``timesteps``; the trainer too, sb3 or lean, each resuming from its own checkpoints);
    a finished run is returned as is, a run without checkpoints starts over.
    ``progress`` shows a tqdm bar. ``on_eval(step, returns_by_scenario)`` is called after
    every evaluation (hyperparameter search prunes from it). Torch runs on one CPU thread:
    small networks gain nothing from more, and one thread keeps runs bitwise reproducible.
    """
    out_dir = Path(out_dir)
    single = config.replace(seeds=(int(seed),))
    checkpoint = None
    if resume and out_dir.exists():
        _check_same_config(single, out_dir)
        if _finished(out_dir, config.timesteps):
            return out_dir
        checkpoint = latest_checkpoint(out_dir)
        if checkpoint is not None:
            _check_checkpoint_trainer(single, checkpoint, out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        model = None
        if checkpoint is None:
            _check_fresh(out_dir)
            # Built before anything is written: whatever SB3 refuses leaves no run folder.
            model = _new_model(single, int(seed), out_dir)
            _clear_run(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(single.to_yaml())
        model = _learn(single, out_dir, model, checkpoint, progress, position, on_eval)
    finally:
        torch.set_num_threads(threads)
    timing = {
        "train_wall_s": round(time.perf_counter() - start, 1),
        "resumed": checkpoint is not None,
    }
    _save_final(model, single, int(seed), out_dir, timing)
    return out_dir


def _new_model(config: TrainConfig, seed: int, out_dir: Path) -> BaseAlgorithm:
    """A fresh model on the config's training envs; what SB3 refuses is a ``ConfigError``."""
    cls = algorithm_class(config.algorithm)
    venv = make_train_venv(config)
    try:
        return cls(
            config.policy,
            venv,
            seed=seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(out_dir / "tb"),
            **build_hyperparameters(config),
        )
    except (AssertionError, ValueError, TypeError, RuntimeError) as error:
        venv.close()
        raise ConfigError(
            f"{config.source}: hyperparameters: {config.algorithm} refused them: {error}"
        ) from error


# ------------------------------------------------------------------------------ internals
def _learn(
    config: TrainConfig,
    out_dir: Path,
    model: BaseAlgorithm | None,
    checkpoint: Path | None,
    progress: bool,
    position: int,
    on_eval: EvalHook | None,
) -> BaseAlgorithm:
    """Train ``model`` (a fresh one) or the model of ``checkpoint`` to the config's steps."""
    if config.trainer == "lean":
        return _learn_lean(config, out_dir, model, checkpoint, progress, position, on_eval)
    if model is not None:
        _write_eval_header(out_dir / "eval.csv")
    else:
        assert checkpoint is not None
        model = load_checkpoint(
            algorithm_class(config.algorithm), checkpoint, tensorboard_log=str(out_dir / "tb")
        )
        _truncate_eval(out_dir / "eval.csv", model.num_timesteps)
    evaluate = _evaluation(config, model, out_dir, on_eval)
    callbacks: list[BaseCallback] = [
        Periodic(config.eval.every_steps, evaluate),
        Periodic(config.checkpoint_every, lambda _step: save_checkpoint(model, out_dir)),
    ]
    if progress:
        label = f"{config.name} seed {config.seeds[0]}"
        callbacks.insert(0, ProgressBar(config.timesteps, label, position))
    remaining = config.timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(
            remaining,
            callback=CallbackList(callbacks),
            tb_log_name=TB_NAME,
            reset_num_timesteps=checkpoint is None,
        )
    if _last_eval_step(out_dir / "eval.csv") != model.num_timesteps:
        evaluate(model.num_timesteps)
    return model


def _evaluation(
    config: TrainConfig, model: BaseAlgorithm, out_dir: Path, on_eval: EvalHook | None
) -> Callable[[int], None]:
    """Evaluate ``model`` at a step: a row of ``eval.csv`` and ``on_eval``'s call."""
    evaluator = Evaluator(config)

    def evaluate(step: int) -> None:
        returns = evaluator(model, _normalizer(model))
        _record_eval(model, out_dir / "eval.csv", step, returns)
        if on_eval is not None:
            on_eval(step, returns)

    return evaluate


def _learn_lean(
    config: TrainConfig,
    out_dir: Path,
    model: BaseAlgorithm | None,
    checkpoint: Path | None,
    progress: bool,
    position: int,
    on_eval: EvalHook | None,
) -> BaseAlgorithm:
    """``_learn`` with ``LeanPPO`` (module docstring): ``model`` (or, resuming, a fresh SB3
    model) only receives the lean model's weights and statistics, for evaluation,
    checkpoints and the final save."""
    from agents.training.lean_ppo import LeanPPO

    seed = config.seeds[0]
    state = None if checkpoint is None else _lean_checkpoint_state(checkpoint)
    model = model if model is not None else _new_model(config, seed, out_dir)
    lean = LeanPPO.from_config(config, seed)
    log = None
    try:
        if state is None:
            _write_eval_header(out_dir / "eval.csv")
        else:
            lean.restore_training_state(state["lean"])
            _truncate_eval(out_dir / "eval.csv", lean.num_timesteps)
        lean.load_into_sb3(model)
        logger = configure_logger(0, str(out_dir / "tb"), TB_NAME, checkpoint is None)
        model.set_logger(logger)
        label = f"{config.name} seed {seed}" if progress else None
        log = _LeanLog(lean, logger, config.timesteps, label, position)
        if state is not None:
            log.window.extend(state["episode_window"])
        evaluate = _evaluation(config, model, out_dir, on_eval)

        def save(_step: int) -> None:
            _save_lean_checkpoint(model, out_dir, lean.training_state(), list(log.window))

        periodic = [(config.eval.every_steps, evaluate), (config.checkpoint_every, save)]
        due = [_after(lean.num_timesteps, every) for every, _ in periodic]

        def after_update(_: LeanPPO) -> bool:
            step = log.update()
            # as SB3's Periodic callbacks at the next rollout's start: none after the last
            for k, (every, action) in enumerate(periodic):
                if due[k] <= step < config.timesteps:
                    lean.load_into_sb3(model)
                    action(step)
                    due[k] = _after(step, every)
            return True

        if lean.num_timesteps < config.timesteps:
            lean.learn(config.timesteps, callback=after_update)
        lean.load_into_sb3(model)
        if _last_eval_step(out_dir / "eval.csv") != model.num_timesteps:
            evaluate(model.num_timesteps)
    finally:
        if log is not None:
            log.close()
        lean.close()
    return model


def _check_checkpoint_trainer(config: TrainConfig, checkpoint: Path, out_dir: Path) -> None:
    """A checkpoint resumes with the trainer that wrote it only (before anything is
    written): the run's config.yaml says so too, but the checkpoint is what is loaded."""
    lean = (checkpoint / LEAN_STATE_FILE).is_file()
    if lean != (config.trainer == "lean"):
        writer = "lean" if lean else "sb3"
        raise ConfigError(
            f"{out_dir}: cannot resume with trainer {config.trainer}: {checkpoint.name} is a "
            f"checkpoint of trainer {writer} (resume it with trainer: {writer}, or remove the run)"
        )


def _lean_checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = loads_state((checkpoint / LEAN_STATE_FILE).read_bytes())
    return state


class _LeanLog:
    """A lean run's per-update TensorBoard scalars and progress bar (``label``: shown)."""

    def __init__(
        self, lean: LeanPPO, logger: Logger, total: int, label: str | None, position: int
    ) -> None:
        self.lean, self.logger, self.total = lean, logger, total
        self.window: deque[float] = deque(maxlen=EPISODE_WINDOW)
        self.seen = len(lean.stats.episode_returns)
        self.clock, self.start_steps = time.perf_counter(), lean.num_timesteps
        self.bar: tqdm | None = None
        if label is not None:
            self.bar = tqdm(
                total=total,
                initial=min(lean.num_timesteps, total),
                desc=label,
                unit="step",
                position=position,
                leave=True,
                dynamic_ncols=True,
            )

    def update(self) -> int:
        """Log the update that just ended; its step."""
        lean, logger, step = self.lean, self.logger, self.lean.num_timesteps
        self.window.extend(lean.stats.episode_returns[self.seen :])
        self.seen = len(lean.stats.episode_returns)
        if self.window:
            logger.record("rollout/ep_rew_mean", float(np.mean(self.window)))
        elapsed = max(time.perf_counter() - self.clock, 1e-9)
        logger.record("time/fps", int((step - self.start_steps) / elapsed))
        for name, value in lean.stats.losses.items():
            tag = "policy_gradient_loss" if name == "policy_loss" else name
            logger.record(f"train/{tag}", value)
        logger.record("train/learning_rate", lean.optimizer.lr)
        logger.record("train/std", float(lean.net.log_std.exp().mean()))
        logger.dump(step)
        if self.bar is not None:
            self.bar.update(min(step, self.total) - self.bar.n)
        return int(step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _after(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step`` (``Periodic``'s next boundary)."""
    return (step // every + 1) * every


def _save_lean_checkpoint(
    model: BaseAlgorithm, out_dir: Path, lean_state: dict[str, Any], window: list[float]
) -> Path:
    """A lean checkpoint at ``model.num_timesteps`` (the lean model loaded into ``model``),
    written whole or not at all as ``save_checkpoint``'s are."""

    def fill(folder: Path) -> dict[str, Any]:
        model.save(folder / "model.zip")
        normalizer = _normalizer(model)
        if normalizer is not None:
            normalizer.save(str(folder / "vecnormalize.pkl"))
        state = {"lean": lean_state, "episode_window": window}
        (folder / LEAN_STATE_FILE).write_bytes(dumps_state(state))
        return {"trainer": "lean"}

    return write_checkpoint(out_dir, int(model.num_timesteps), fill)


def _normalizer(model: BaseAlgorithm) -> VecNormalize | None:
    env = model.get_env()
    return env if isinstance(env, VecNormalize) else None


def _save_final(
    model: BaseAlgorithm, config: TrainConfig, seed: int, out_dir: Path, timing: dict[str, Any]
) -> None:
    model.save(out_dir / "model.zip")
    normalizer = _normalizer(model)
    if normalizer is not None:
        normalizer.save(str(out_dir / "vecnormalize.pkl"))
    info: dict[str, Any] = {
        "algorithm": config.algorithm,
        "seed": seed,
        "timesteps": int(model.num_timesteps),
        "n_nodes": config.n_nodes,
        "features": list(observation_names(config)),
        "feature_groups": config.env.features
        if isinstance(config.env.features, str)
        else list(config.env.features),
        "normalize_observation": config.env.normalize_observation,
        "migration_cost_per_gib": config.env.migration_cost_per_gib,
        "quota_action": config.env.quota_action,
        "env_backend": config.env.backend,
        **({"trainer": config.trainer} if config.trainer != "sb3" else {}),
        "tierenv_version": tierenv.__version__,
        "git_commit": git_commit(),
        **timing,
        "machine": machine_summary(),
    }
    (out_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _record_eval(
    model: BaseAlgorithm, path: Path, step: int, returns: dict[str, list[float]]
) -> None:
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        for scenario, values in returns.items():
            for value in values:
                writer.writerow([step, scenario, f"{value:.6f}"])
    writer = _tb_writer(model)
    if writer is not None:
        for scenario, values in returns.items():
            writer.add_scalar(f"eval/{scenario}/return", float(np.mean(values)), step)
        mean = float(np.mean([np.mean(v) for v in returns.values()]))
        writer.add_scalar("eval/mean_return", mean, step)
        writer.flush()


def _tb_writer(model: BaseAlgorithm) -> Any:
    """SB3's own TensorBoard writer, so eval scalars sit in the same event file."""
    logger = getattr(model, "_logger", None)
    for fmt in getattr(logger, "output_formats", []):
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


def _write_eval_header(path: Path) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerow(EVAL_COLUMNS)


def _eval_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.reader(handle))[1:]


def _truncate_eval(path: Path, step: int) -> None:
    """Drop rows an interrupted run wrote after the checkpoint it resumes from."""
    rows = [row for row in _eval_rows(path) if int(row[0]) <= step]
    _write_eval_header(path)
    with path.open("a", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _last_eval_step(path: Path) -> int | None:
    rows = _eval_rows(path)
    return int(rows[-1][0]) if rows else None


def _finished(out_dir: Path, timesteps: int) -> bool:
    try:
        info = json.loads((out_dir / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return (out_dir / "model.zip").is_file() and int(info.get("timesteps", 0)) >= timesteps


def _check_fresh(out_dir: Path) -> None:
    if (out_dir / "model.zip").exists() or (out_dir / "checkpoints").exists():
        raise RunExistsError(
            f"{out_dir}: already holds a training run; resume it (resume=True) or remove it"
        )


def _clear_run(out_dir: Path) -> None:
    """A resumed run without a checkpoint starts over: drop its partial outputs."""
    for name in ("eval.csv", "run.json", "vecnormalize.pkl"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "tb", ignore_errors=True)


def _check_same_config(config: TrainConfig, out_dir: Path) -> None:
    path = out_dir / "config.yaml"
    if not path.is_file():
        return
    before = parse_config(yaml.safe_load(path.read_text()), source=str(path))
    old, new = before.to_dict(), config.to_dict()
    old.pop("timesteps"), new.pop("timesteps")
    old.pop("description"), new.pop("description")
    changed = [key for key in new if old.get(key) != new[key]]
    if changed:
        raise ConfigError(
            f"{path}: cannot resume: the config differs in {', '.join(changed)} from the run's "
            "(only timesteps may change)"
        )


def _one_thread() -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _train_on_ray(
    config: TrainConfig,
    seeds: Sequence[int],
    dirs: Sequence[Path],
    resume: bool,
    workers: int,
    address: str | None,
) -> list[Path]:
    """Each seed as a Ray task with one CPU (progress bars stay off: tasks log nowhere)."""
    with ray_session(workers, address, missing=ConfigError) as ray:
        remote = ray.remote(num_cpus=1)(_ray_task)
        refs = [
            remote.remote(config, int(seed), str(run_dir.resolve()), resume)
            for seed, run_dir in zip(seeds, dirs, strict=True)
        ]
        return [Path(path) for path in ray.get(refs)]


def _ray_task(config: TrainConfig, seed: int, run_dir: str, resume: bool) -> str:
    _one_thread()
    return str(train_run(config, seed, Path(run_dir), resume=resume, progress=False))


def _train_worker(
    config: TrainConfig, seed: int, run_dir: Path, resume: bool, progress: bool, position: int
) -> Path:
    return train_run(config, seed, run_dir, resume=resume, progress=progress, position=position)
