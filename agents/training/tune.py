"""Hyperparameter search for PPO-style configs with Optuna.

Search space (small on purpose: a few minutes per search on two cores):

| parameter | values |
|---|---|
| learning_rate | log-uniform 1e-4 .. 3e-3 |
| n_steps | 64, 128, 256, 512 (per env) |
| batch_size | 32, 64, 128, 256 (capped at n_steps x n_envs) |
| gamma | 0.9, 0.95, 0.98, 0.99 |
| gae_lambda | 0.8, 0.9, 0.95, 0.98 |
| ent_coef | log-uniform 1e-6 .. 1e-2 |
| net_width | 32, 64, 128 (``policy_kwargs.net_arch = [w, w]``) |

Each trial trains one seed for ``timesteps`` steps with the config's env and evaluates four
times (every quarter); the TPE sampler is seeded and a median pruner stops trials whose
intermediate mean eval return falls below the median of earlier trials at the same step.
The objective is the final mean eval return over the eval scenarios (raw env returns,
deterministic policy, full-fidelity env).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from agents.training.config import ConfigError, TrainConfig, check_hyperparameters
from agents.training.train import train_run
from tierenv.provenance import stamp

DEFAULT_TUNE_TIMESTEPS = 20_000
TUNABLE = ("PPO", "RecurrentPPO")
SEARCH_SPACE = {
    "learning_rate": "log-uniform 1e-4 .. 3e-3",
    "n_steps": "64, 128, 256, 512 (per env)",
    "batch_size": "32, 64, 128, 256 (capped at n_steps x n_envs)",
    "gamma": "0.9, 0.95, 0.98, 0.99",
    "gae_lambda": "0.8, 0.9, 0.95, 0.98",
    "ent_coef": "log-uniform 1e-6 .. 1e-2",
    "net_width": "32, 64, 128 (net_arch [w, w])",
}


@dataclass
class TuneResult:
    """What a search found: the report's path, the best trial's objective and its
    hyperparameters (the config's, with the searched ones replaced)."""

    report: Path
    best_value: float
    best_hyperparameters: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


def sample_params(trial: optuna.Trial) -> dict[str, Any]:
    """One point of the search space (names as in ``SEARCH_SPACE``)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "n_steps": trial.suggest_categorical("n_steps", [64, 128, 256, 512]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99]),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.95, 0.98]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-6, 1e-2, log=True),
        "net_width": trial.suggest_categorical("net_width", [32, 64, 128]),
    }


def hyperparameters_for(config: TrainConfig, params: dict[str, Any]) -> dict[str, Any]:
    """The config's hyperparameters with a sampled point applied."""
    out = dict(config.hyperparameters)
    params = dict(params)
    width = params.pop("net_width")
    params["batch_size"] = min(params["batch_size"], params["n_steps"] * config.env.n_envs)
    out.update(params)
    out["policy_kwargs"] = dict(out.get("policy_kwargs") or {}) | {"net_arch": [width, width]}
    return check_hyperparameters(config.algorithm, config.policy, out, env=config.env)


def tune(
    config: TrainConfig,
    n_trials: int = 8,
    timesteps: int | None = None,
    out: Path | None = None,
    seed: int = 0,
    progress: bool = True,
    command: str | None = None,
) -> TuneResult:
    """Search PPO hyperparameters for ``config`` with Optuna (seeded TPE, median pruning on
    intermediate eval returns) and write a Markdown report (default
    ``results/tuning/<name>.md``): every trial's parameters, value and state, the best
    parameters and a YAML snippet to paste into a training config.

    Each trial trains seed ``seed`` for ``timesteps`` steps (default 20,000) in a temporary
    run directory. Raises ``ConfigError`` for an algorithm without a search space (SAC) or
    bad budgets.
    """
    if config.algorithm not in TUNABLE:
        raise ConfigError(
            f"{config.source}: algorithm: no search space for {config.algorithm!r}; "
            f"tune supports {', '.join(TUNABLE)}"
        )
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"n_trials must be a positive integer, got {n_trials!r}")
    timesteps = DEFAULT_TUNE_TIMESTEPS if timesteps is None else timesteps
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ConfigError(f"timesteps must be a positive integer, got {timesteps!r}")
    out = Path(out) if out is not None else Path("results/tuning") / f"{config.name}.md"
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    started = time.perf_counter()
    records: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial)
        trial_config = config.replace(
            hyperparameters=hyperparameters_for(config, params),
            timesteps=timesteps,
            seeds=(seed,),
            checkpoint_every=10**12,
            eval={"every_steps": max(timesteps // 4, 1)},
        )
        last: list[float] = []

        def report(step: int, returns: dict[str, list[float]]) -> None:
            value = float(np.mean([np.mean(v) for v in returns.values()]))
            last[:] = [value]
            if step < timesteps:
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step} (mean return {value:.2f})")

        trial_start = time.perf_counter()
        record = {"number": trial.number, "params": params, "value": None}
        records.append(record)
        try:
            with tempfile.TemporaryDirectory(prefix="tierenv-tune-") as tmp:
                train_run(trial_config, seed, Path(tmp) / "run", progress=progress, on_eval=report)
        finally:
            record["seconds"] = time.perf_counter() - trial_start
            record["value"] = last[0] if last else None
        return last[0]

    study.optimize(objective, n_trials=n_trials)
    wall = time.perf_counter() - started
    for record, trial in zip(records, study.trials, strict=True):
        record["state"] = trial.state.name
    best = study.best_trial
    assert best.value is not None  # the best trial is a completed one
    best_hyper = hyperparameters_for(config, best.params)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        _report(config, records, best.number, best_hyper, timesteps, seed, wall, command)
    )
    return TuneResult(out, float(best.value), best_hyper, records)


def _report(
    config: TrainConfig,
    records: list[dict[str, Any]],
    best: int,
    best_hyper: dict[str, Any],
    timesteps: int,
    seed: int,
    wall: float,
    command: str | None,
) -> str:
    names = list(SEARCH_SPACE)
    lines = [
        f"# Hyperparameter search `{config.name}`",
        "",
        stamp(command),
        f"{config.algorithm} ({config.policy}) from `{config.source}`, backend "
        f"{config.env.backend}, {config.env.n_envs} envs on "
        f"{', '.join(Path(s).stem for s in config.env.scenarios)}. {len(records)} trials x "
        f"{timesteps:,} steps, seed {seed}; Optuna TPE sampler (seed {seed}) with a median "
        f"pruner on the mean eval return every {max(timesteps // 4, 1):,} steps. Objective: "
        f"the final mean return (deterministic policy, full-fidelity env, raw returns) over "
        f"{', '.join(Path(s).stem for s in config.eval.scenarios)}. Wall time {wall:.0f} s.",
        "",
        "## Search space",
        "",
        "| parameter | values |",
        "|---|---|",
        *(f"| {name} | {values} |" for name, values in SEARCH_SPACE.items()),
        "",
        "## Trials",
        "",
        "| trial | " + " | ".join(names) + " | value | state | wall s |",
        "|---" * (len(names) + 4) + "|",
    ]
    for record in records:
        params = record["params"]
        cells = [_cell(params.get(name)) for name in names]
        value = "-" if record["value"] is None else f"{record['value']:.2f}"
        mark = " (best)" if record["number"] == best else ""
        lines.append(
            f"| {record['number']}{mark} | " + " | ".join(cells) + f" | {value} | "
            f"{record.get('state', '?')} | {record.get('seconds', 0.0):.0f} |"
        )
    best_record = next(r for r in records if r["number"] == best)
    snippet = yaml.safe_dump({"hyperparameters": best_hyper}, sort_keys=False)
    lines += [
        "",
        "## Best",
        "",
        f"Trial {best}: mean eval return {best_record['value']:.2f}. For a training config:",
        "",
        "```yaml",
        snippet.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
