"""Plan and run a comparison: every policy on every scenario over every seed.

Trials (and the per-interval upper bounds) are independent tasks. They run inline with one
worker, in local processes by default, or as Ray tasks (``use_ray`` / ``ray_address``: Ray
core's scheduler, a local Ray instance or an existing cluster). Results are assembled in
plan order, so the numbers do not depend on where or in which order tasks ran. With a
checkpoint (``experiments.compare.checkpoint``) each task is kept as it finishes and a rerun
skips the kept ones; a worker that dies is reported as ``WorkerLostError`` naming its task.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from agents.controllers import make_controller
from agents.ray_session import ray_session
from experiments.compare.config import (
    STATIC_BEST,
    CompareConfig,
    ConfigError,
    PolicySpec,
    resolve_path,
)
from experiments.compare.episode import Trial, TrialResult, run_trial
from tierenv.envs.discrete import default_levels, weight_grid
from tierenv.workload.scenario import load_scenario

if TYPE_CHECKING:
    from experiments.compare.checkpoint import Checkpoint


@dataclass(frozen=True)
class BoundTask:
    """The per-interval upper bound of the reward's throughput term on the run of a scenario
    that the env plays at ``seed`` (the run's realisation, ``tierenv.workload.variation``,
    sets the load; the policy does not)."""

    scenario: str
    seed: int = 0
    env: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class CompareResults:
    config: CompareConfig
    episodes: pd.DataFrame  # one row per (scenario, policy, seed); static-best resolved
    steps: pd.DataFrame  # one row per step of those episodes
    sweep: pd.DataFrame  # every static grid point's episodes (empty without static-best)
    wall_s: float
    workers: int
    executor: str  # "inline", "processes" or "ray"
    best_static: dict[str, str] = field(default_factory=dict)  # scenario -> label


def plan(config: CompareConfig) -> list[Trial | BoundTask]:
    """Every task the config asks for, in a fixed order; policies are checked first so a bad
    parameter fails before anything runs."""
    tasks: list[Trial | BoundTask] = []
    node_counts = {name: len(load_scenario(name).nodes) for name in config.scenarios}
    for index, policy in enumerate(config.policies):
        where = f"{config.source}: policies[{index}] ({policy.name})"
        if policy.kind == STATIC_BEST:
            levels = _static_best_levels(policy, where)
            for scenario in config.scenarios:
                n_nodes = node_counts[scenario]
                _check_grid_size(levels(n_nodes), n_nodes, where)
                for weights in weight_grid(n_nodes, levels(n_nodes))[0]:
                    grid_point = PolicySpec(
                        f"{policy.name}[{':'.join(map(str, weights))}]",
                        "static",
                        {"weights": weights.tolist()},
                    )
                    tasks += [
                        Trial(scenario, grid_point, seed, config.env, sweep=policy.name)
                        for seed in config.seeds
                    ]
            continue
        if policy.kind == STATIC_DEPLOYABLE:
            tasks += _deployable_trials(policy, config, where)
            continue
        params = _scenario_params(policy, config, where)
        specs = {
            (scenario, seed): PolicySpec(
                policy.name, policy.kind, for_seed(params[scenario], seed, position)
            )
            for scenario in config.scenarios
            for position, seed in enumerate(config.seeds)
        }
        # every seed's parameters (scenarios differ only in a guard's table fallback)
        for seed in config.seeds:
            spec = specs[config.scenarios[0], seed]
            try:
                make_controller(spec.kind, **spec.params)
            except (ValueError, TypeError) as err:  # ControllerError is a ValueError
                raise ConfigError(f"{where}: {err}") from err
        tasks += [
            Trial(scenario, specs[scenario, seed], seed, config.env)
            for scenario in config.scenarios
            for seed in config.seeds
        ]
    if config.upper_bound:
        tasks += [
            BoundTask(scenario, seed, config.env)
            for scenario in config.scenarios
            for seed in config.seeds
        ]
    return tasks


#: The kind of the deployable static weights (``experiments.deployable``): per scenario, the
#: weights its table gives the host with the scenario's node profiles.
STATIC_DEPLOYABLE = "static-deployable"


def _deployable_trials(policy: PolicySpec, config: CompareConfig, where: str) -> list[Trial]:
    """The ``static-deployable`` policy's trials: a static policy per scenario with the
    weights its table gives that scenario's hardware."""
    if set(policy.params) != {"table"}:
        raise ConfigError(
            f"{where}: kind {STATIC_DEPLOYABLE} takes one parameter, table (a deployable.json "
            f"written by `python -m experiments.deployable`), got {sorted(policy.params)}"
        )
    weights = _table_weights(policy.params["table"], config, where)
    return [
        Trial(
            scenario,
            PolicySpec(policy.name, "static", {"weights": weights[scenario]}),
            seed,
            config.env,
        )
        for scenario in config.scenarios
        for seed in config.seeds
    ]


def _table_weights(table: str, config: CompareConfig, where: str) -> dict[str, list[int]]:
    """Each scenario's weights in a deployable table (those of its hardware)."""
    from experiments.deployable import DeployableError, load_table, weights_for

    try:
        entries = load_table(resolve_path(table, config.source))
        return {
            scenario: list(weights_for(entries, load_scenario(scenario), where).weights)
            for scenario in config.scenarios
        }
    except DeployableError as err:
        raise ConfigError(str(err)) from err


def _scenario_params(
    policy: PolicySpec, config: CompareConfig, where: str
) -> dict[str, dict[str, Any]]:
    """Each scenario's parameters of ``policy``: its own, except that a guard falling back to
    a deployable table (``guard: {fallback: {table: PATH}}``) falls back on each scenario to
    the weights that table gives the scenario's hardware, as an operator would set the guard
    of each machine to the weights tuned for it."""
    from agents.controllers.guard import FALLBACK_FIELD

    guard = policy.params.get("guard")
    if not isinstance(guard, dict) or not isinstance(guard.get(FALLBACK_FIELD), dict):
        return {scenario: policy.params for scenario in config.scenarios}
    fallback = guard[FALLBACK_FIELD]
    if set(fallback) != {"table"}:
        raise ConfigError(
            f"{where}: guard.{FALLBACK_FIELD}: a mapping takes one field, table (a "
            "deployable.json written by `python -m experiments.deployable`), got "
            f"{sorted(fallback)}"
        )
    weights = _table_weights(fallback["table"], config, where)
    return {
        scenario: {**policy.params, "guard": {**guard, FALLBACK_FIELD: weights[scenario]}}
        for scenario in config.scenarios
    }


def for_seed(params: dict[str, Any], seed: int, index: int) -> dict[str, Any]:
    """Parameters for one seed's trials: text values may name ``{seed}`` (the trial's seed)
    or ``{index}`` (its position in the seed list), so that e.g. the policy trained with
    seed k is evaluated on the k-th evaluation seed (``path: runs/train/ppo/seed{index}``)."""
    return {
        key: value.format(seed=seed, index=index)
        if isinstance(value, str) and ("{seed}" in value or "{index}" in value)
        else value
        for key, value in params.items()
    }


#: The most grid points (levels^nodes) static-best may try per scenario: each is a whole
#: episode per seed, and the grid is built in memory (levels 100000 on two nodes asked for
#: tens of GB).
MAX_GRID_POINTS = 4096


def _check_grid_size(levels: int, n_nodes: int, where: str) -> None:
    points = levels**n_nodes
    if points > MAX_GRID_POINTS:
        largest = int(MAX_GRID_POINTS ** (1 / n_nodes) + 1e-9)
        raise ConfigError(
            f"{where}: levels {levels} on {n_nodes} nodes is a grid of {points} points to try; "
            f"at most {MAX_GRID_POINTS} (levels <= {largest} on {n_nodes} nodes)"
        )


def _static_best_levels(policy: PolicySpec, where: str) -> Callable[[int], int]:
    """The grid's levels per node count: ``levels: 17`` for every scenario, or a mapping
    such as ``levels: {2: 17, 3: 5, 4: 3}`` (the grid grows as levels^nodes; node counts
    not named take the default)."""
    unknown = sorted(set(policy.params) - {"levels"})
    if unknown:
        raise ConfigError(f"{where}: unknown parameter {unknown[0]!r}; valid: levels")
    if "levels" not in policy.params:
        return default_levels
    levels = policy.params["levels"]
    by_nodes = levels if isinstance(levels, dict) else {}
    for count in by_nodes:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"{where}: levels: {count!r} is not a node count")
    for value in by_nodes.values() if by_nodes else [levels]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ConfigError(
                f"{where}: levels must be an integer >= 2 or a mapping of node counts to "
                f"such integers, got {levels!r}"
            )
    if by_nodes:
        return lambda n_nodes: by_nodes.get(n_nodes, default_levels(n_nodes))
    return lambda n_nodes: levels


def run_task(task: Trial | BoundTask) -> TrialResult | np.ndarray:
    """One task, wherever it runs."""
    if isinstance(task, BoundTask):
        from agents.oracle import upper_bound
        from tierenv.envs.weighted_interleave import WeightedInterleaveEnv

        # the run the trials at this seed play: the env realises it at reset
        env = WeightedInterleaveEnv(task.scenario, **task.env)
        env.reset(seed=task.seed)
        scenario = env.scenario
        env.close()
        # Step k of an episode is interval k (reset only reports the idle host).
        return upper_bound(scenario).values
    return run_trial(task)


class WorkerLostError(ChildProcessError):
    """A worker process died under a task (e.g. the out-of-memory killer's SIGKILL). An
    OSError, so the command line prints the message as one line."""


def execute(
    tasks: Sequence[Trial | BoundTask],
    workers: int | None = None,
    use_ray: bool = False,
    ray_address: str | None = None,
    show_progress: bool = True,
    done: Mapping[int, Any] | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> tuple[list[Any], str, int]:
    """Run ``tasks``; returns their results in task order, the executor used and the number
    of workers. ``done`` holds results already known by task index (those tasks do not run);
    ``on_result(index, result)`` is called in this process as each task finishes."""
    workers = workers or os.cpu_count() or 1
    results: list[Any] = [None] * len(tasks)
    todo = []
    for index, task in enumerate(tasks):
        if done is not None and index in done:
            results[index] = done[index]
        else:
            todo.append((index, task))
    bar = tqdm(
        total=len(tasks),
        initial=len(tasks) - len(todo),
        desc="trials",
        unit="trial",
        disable=not show_progress,
    )

    def finish(index: int, result: Any) -> None:
        results[index] = result
        if on_result is not None:
            on_result(index, result)
        bar.update()

    try:
        if use_ray or ray_address:
            _execute_ray(todo, workers, ray_address, finish)
            return results, "ray", workers
        if workers == 1:
            for index, task in todo:
                finish(index, run_task(task))
            return results, "inline", 1
        _execute_processes(todo, workers, finish)
        return results, "processes", workers
    finally:
        bar.close()


# In a worker process: which worker started which task, by task position (set by
# _worker_init; written without a lock, each slot by one worker only).
_STARTED: Any = None


def _worker_init(started: Any) -> None:
    global _STARTED
    _STARTED = started


def _run_in_worker(slot: int, task: Trial | BoundTask) -> TrialResult | np.ndarray:
    if _STARTED is not None:
        _STARTED[slot] = os.getpid()
    return run_task(task)


def _execute_processes(
    todo: Sequence[tuple[int, Trial | BoundTask]],
    workers: int,
    finish: Callable[[int, Any], None],
) -> None:
    if not todo:
        return
    context = multiprocessing.get_context()
    # Which worker runs what, so that a worker's death can name its task: the pool itself
    # only says that "a process ... was terminated abruptly".
    started = context.RawArray("q", len(todo))
    finished: set[int] = set()
    broken = False
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(started,)
    ) as pool:
        processes = getattr(pool, "_processes", None)  # pid -> Process (private; optional)
        futures = {
            pool.submit(_run_in_worker, slot, task): slot for slot, (_, task) in enumerate(todo)
        }
        try:
            for future in as_completed(futures):
                slot = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken = True
                    break
                finished.add(slot)
                finish(todo[slot][0], result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # do not wait for the rest
            raise
    if broken:  # the pool has now joined its processes: their exit codes are known
        # Keep what finished before the break but was not yet handed over (as_completed
        # may yield the broken future first).
        for future, slot in futures.items():
            if (
                slot not in finished
                and future.done()
                and not future.cancelled()
                and future.exception() is None
            ):
                finished.add(slot)
                finish(todo[slot][0], future.result())
        codes = {
            pid: process.exitcode
            for pid, process in (processes.items() if isinstance(processes, dict) else ())
        }
        running = {
            slot: started[slot]
            for slot in range(len(todo))
            if slot not in finished and started[slot]
        }
        raise _lost_worker([(todo[s][1], pid) for s, pid in running.items()], codes)


def _lost_worker(
    running: Sequence[tuple[Trial | BoundTask, int]], codes: Mapping[int, int | None]
) -> WorkerLostError:
    """The error for a dead worker: which one and how it died (when the pool's processes
    could be read), and the tasks it (or, if unknown, any worker) was running. The pool
    stops every other worker with SIGTERM, so a worker that ended otherwise is the one."""
    dead = {pid: code for pid, code in codes.items() if code not in (None, 0, -signal.SIGTERM)}
    culprits = [(task, pid) for task, pid in running if pid in dead] or list(running)
    if dead:
        pid, code = next(iter(dead.items()))
        if code == -signal.SIGKILL:
            how = "killed by SIGKILL, e.g. by the out-of-memory killer"
        elif code is not None and code < 0 and -code in signal.valid_signals():
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit status {code}"
        who = f"worker process {pid} died ({how})"
    else:
        who = "a worker process died (killed, e.g. by the out-of-memory killer)"
    if not culprits:
        return WorkerLostError(who)
    named = [describe_task(task) for task, _ in culprits[:3]]
    if len(culprits) > 3:
        named.append(f"{len(culprits) - 3} more")
    return WorkerLostError(f"{who} while running {', '.join(named)}")


def describe_task(task: Trial | BoundTask) -> str:
    """A task in a message: ``policy on scenario seed N`` or ``the upper bound of S``."""
    if isinstance(task, BoundTask):
        return f"the upper bound of {task.scenario} seed {task.seed}"
    return f"{task.policy.name} on {task.scenario} seed {task.seed}"


def _execute_ray(
    todo: Sequence[tuple[int, Trial | BoundTask]],
    workers: int,
    address: str | None,
    finish: Callable[[int, Any], None],
) -> None:
    with ray_session(workers, address) as ray:
        crashes = tuple(
            getattr(ray.exceptions, name)
            for name in ("WorkerCrashedError", "OutOfMemoryError")
            if hasattr(ray.exceptions, name)
        )
        remote = ray.remote(num_cpus=1)(run_task)
        refs = {remote.remote(task): (index, task) for index, task in todo}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                index, task = refs[ref]
                try:
                    result = ray.get(ref)
                except crashes as err:
                    raise WorkerLostError(
                        f"a Ray worker died while running {describe_task(task)} "
                        f"({type(err).__name__})"
                    ) from err
                finish(index, result)


def run_compare(
    config: CompareConfig,
    workers: int | None = None,
    use_ray: bool = False,
    ray_address: str | None = None,
    show_progress: bool = True,
    checkpoint: Checkpoint | None = None,
) -> CompareResults:
    """Plan, run and assemble a comparison. With a ``checkpoint``, tasks finished by an
    earlier run of the same config are not run again, and each finished task is kept there
    at once (so a kill or a lost worker loses only the tasks that were running)."""
    start = time.perf_counter()
    tasks = plan(config)
    if show_progress:
        print(
            f"{config.name}: {len(tasks)} tasks ({len(config.policies)} policies x "
            f"{len(config.scenarios)} scenarios x {len(config.seeds)} seeds"
            + (", static grids and bounds)" if config.upper_bound else ", static grids)"),
            file=sys.stderr,
        )
    done = checkpoint.open(config, tasks) if checkpoint is not None else {}
    finished = len(done)

    def keep(index: int, result: Any) -> None:  # in this process, as each task finishes
        nonlocal finished
        if checkpoint is not None:
            checkpoint.save(tasks[index], result)
        finished += 1

    try:
        outputs, executor, workers = execute(
            tasks, workers, use_ray, ray_address, show_progress, done=done, on_result=keep
        )
    except WorkerLostError as err:
        kept = (
            f"are kept in {checkpoint.folder}: run the same command again to resume"
            if checkpoint is not None
            else "are lost (no checkpoint folder was given)"
        )
        raise WorkerLostError(
            f"{err}; the {finished} of {len(tasks)} tasks that finished {kept}"
        ) from None
    trials = [out for task, out in zip(tasks, outputs, strict=True) if isinstance(task, Trial)]
    bounds = {
        (task.scenario, task.seed): out
        for task, out in zip(tasks, outputs, strict=True)
        if isinstance(task, BoundTask)
    }
    sweep_rows = [result.episode_row() for result in trials if result.trial.sweep]
    sweep = pd.DataFrame(sweep_rows)
    chosen, best_static = _resolve_static_best(config, trials, sweep)
    episodes = pd.DataFrame([result.episode_row() for result in chosen])
    steps = _steps_frame(chosen, bounds)
    if bounds:
        bound_returns = {key: float(np.sum(values)) for key, values in bounds.items()}
        episodes["bound_return"] = [
            bound_returns.get(key, np.nan)
            for key in zip(episodes["scenario"], episodes["seed"], strict=True)
        ]
    # Tables and files name scenarios by their own names, not by the paths given.
    names = dict(zip(config.scenarios, config.scenario_names, strict=True))
    for frame in (episodes, steps, sweep):
        if "scenario" in frame:
            frame["scenario"] = frame["scenario"].map(names)
    best_static = {names[ref]: label for ref, label in best_static.items()}
    return CompareResults(
        config=config,
        episodes=episodes,
        steps=steps,
        sweep=sweep,
        wall_s=time.perf_counter() - start,
        workers=workers,
        executor=executor,
        best_static=best_static,
    )


def _resolve_static_best(
    config: CompareConfig, trials: list[TrialResult], sweep: pd.DataFrame
) -> tuple[list[TrialResult], dict[str, str]]:
    """Keep every ordinary trial, and for each static-best policy and scenario the grid
    point with the highest mean return over the seeds (renamed to the policy)."""
    chosen: dict[tuple[str, str], list[TrialResult]] = {}
    best_static: dict[str, str] = {}
    for policy in config.policies:
        if policy.kind != STATIC_BEST:
            continue
        for scenario in config.scenarios:
            rows = sweep[
                (sweep["scenario"] == scenario) & sweep["policy"].str.startswith(policy.name + "[")
            ]
            means = rows.groupby("policy", sort=False)["return"].mean()
            winner = means.idxmax()
            picked = [
                r for r in trials if r.trial.scenario == scenario and r.trial.policy.name == winner
            ]
            chosen[(policy.name, scenario)] = [_renamed(r, policy.name) for r in picked]
            if scenario not in best_static or policy.name == config.reference:
                best_static[scenario] = picked[0].label
    ordered: list[TrialResult] = []
    for policy in config.policies:
        for scenario in config.scenarios:
            if policy.kind == STATIC_BEST:
                ordered += chosen[(policy.name, scenario)]
            else:
                ordered += [
                    r
                    for r in trials
                    if not r.trial.sweep
                    and r.trial.policy.name == policy.name
                    and r.trial.scenario == scenario
                ]
    return ordered, best_static


def _renamed(result: TrialResult, name: str) -> TrialResult:
    trial = result.trial
    policy = PolicySpec(name, trial.policy.kind, trial.policy.params)
    renamed = Trial(trial.scenario, policy, trial.seed, trial.env, sweep=trial.sweep)
    return TrialResult(renamed, f"{result.label} (best static)", result.wall_s, result.steps)


def _steps_frame(
    results: Iterable[TrialResult], bounds: dict[tuple[str, int], np.ndarray]
) -> pd.DataFrame:
    frames = []
    for result in results:
        trial = result.trial
        frame = pd.DataFrame(result.steps)
        frame.insert(0, "seed", trial.seed)
        frame.insert(0, "policy", trial.policy.name)
        frame.insert(0, "scenario", trial.scenario)
        bound = bounds.get((trial.scenario, trial.seed))
        if bound is not None:
            if len(bound) != len(frame):
                raise RuntimeError(
                    f"{trial.scenario}: the bound covers {len(bound)} intervals but the "
                    f"episode has {len(frame)} steps"
                )
            frame["bound"] = np.asarray(bound, dtype=float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
