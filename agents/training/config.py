"""Training configs: a YAML file in the style of rl-baselines3-zoo, loaded and checked.

```yaml
name: ppo-default
algorithm: PPO            # PPO | SAC | RecurrentPPO
policy: MlpPolicy         # MlpLstmPolicy for RecurrentPPO
hyperparameters:          # the algorithm's constructor arguments (checked against it)
  learning_rate: 0.0003   # or "lin_0.0003": linear decay to 0 over the run
  n_steps: 256
  policy_kwargs: {net_arch: [64, 64], activation_fn: tanh}
env:
  backend: full           # full (WeightedInterleaveEnv) | fluid (batched fluid model)
  n_envs: 4
  scenarios: [co-runner, steady-single]   # shipped names or scenario files
  features: default       # feature set or list of groups
  migration_cost_per_gib: 0.1
  normalize: {observation: true, reward: true}
eval:
  scenarios: [co-runner, steady-single, hot-set-shift]
  every_steps: 10000
  episodes: 1             # per scenario
  seed: 1000
timesteps: 100000
seeds: [0, 1, 2, 3, 4]    # or a count: 5 means 0..4
checkpoint_every: 20000
```

Every error is a ``ConfigError`` (a ``ValueError``) naming the file, the field and the
valid values, so a typo fails before minutes of training rather than after.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tierenv.contracts.features import FeatureError, resolve_feature_groups
from tierenv.files import read_yaml
from tierenv.sim.fluid import FLUID_FEATURES
from tierenv.workload.scenario import load_scenario, shipped_scenario_names

# algorithm -> (module, class, policies this project's flat observations can use)
ALGORITHMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "PPO": ("stable_baselines3", "PPO", ("MlpPolicy",)),
    "SAC": ("stable_baselines3", "SAC", ("MlpPolicy",)),
    "RecurrentPPO": ("sb3_contrib", "RecurrentPPO", ("MlpLstmPolicy",)),
}
BACKENDS = ("full", "fluid")
# constructor arguments the trainer sets itself
RESERVED_HYPERPARAMETERS = (
    "policy",
    "env",
    "seed",
    "tensorboard_log",
    "verbose",
    "device",
    "_init_setup_model",
)
ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu")
SCHEDULED = ("learning_rate", "clip_range")  # may be "lin_<value>"
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "algorithm",
    "policy",
    "hyperparameters",
    "env",
    "eval",
    "timesteps",
    "seeds",
    "checkpoint_every",
)
ENV_KEYS = ("backend", "n_envs", "scenarios", "features", "migration_cost_per_gib", "normalize")
NORMALIZE_KEYS = ("observation", "reward")
EVAL_KEYS = ("scenarios", "every_steps", "episodes", "seed")


class ConfigError(ValueError):
    """A training config that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class EnvConfig:
    """What the agent trains on."""

    backend: str = "full"
    n_envs: int = 4
    scenarios: tuple[str, ...] = ("co-runner",)
    features: str | tuple[str, ...] = "default"
    migration_cost_per_gib: float = 0.1
    normalize_observation: bool = True
    normalize_reward: bool = True

    @property
    def normalize(self) -> bool:
        return self.normalize_observation or self.normalize_reward


@dataclass(frozen=True)
class EvalConfig:
    """Periodic evaluation: deterministic policy, full-fidelity env, raw returns."""

    scenarios: tuple[str, ...] = ("co-runner",)
    every_steps: int = 10_000
    episodes: int = 1
    seed: int = 1000


@dataclass(frozen=True)
class TrainConfig:
    name: str
    algorithm: str
    policy: str
    hyperparameters: dict[str, Any]
    env: EnvConfig
    eval: EvalConfig
    timesteps: int
    seeds: tuple[int, ...]
    checkpoint_every: int
    description: str = ""
    source: str = "<config>"  # the file it came from (for messages)

    @property
    def n_nodes(self) -> int:
        return len(load_scenario(self.env.scenarios[0]).nodes)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (``env``/``eval`` may be dicts of changes)."""
        for key, cls in (("env", EnvConfig), ("eval", EvalConfig)):
            if isinstance(changes.get(key), Mapping):
                current = getattr(self, key)
                changes[key] = dataclasses.replace(current, **changes[key])
                assert isinstance(changes[key], cls)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what ``RUN/config.yaml`` holds); ``parse_config`` reads it back."""
        env = self.env
        return {
            "name": self.name,
            "description": self.description,
            "algorithm": self.algorithm,
            "policy": self.policy,
            "hyperparameters": _plain(self.hyperparameters),
            "env": {
                "backend": env.backend,
                "n_envs": env.n_envs,
                "scenarios": list(env.scenarios),
                "features": env.features if isinstance(env.features, str) else list(env.features),
                "migration_cost_per_gib": env.migration_cost_per_gib,
                "normalize": {
                    "observation": env.normalize_observation,
                    "reward": env.normalize_reward,
                },
            },
            "eval": dataclasses.asdict(self.eval) | {"scenarios": list(self.eval.scenarios)},
            "timesteps": self.timesteps,
            "seeds": list(self.seeds),
            "checkpoint_every": self.checkpoint_every,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a training config file (relative scenario paths are taken relative to
    the file's folder when a file of that name is there)."""
    path = Path(path)
    data, _ = read_yaml(path, "training config", ConfigError)
    return parse_config(data, source=str(path), base=path.parent)


def parse_config(data: Any, source: str = "<config>", base: Path | None = None) -> TrainConfig:
    """Check a config given as a mapping (what ``load_config`` parsed)."""
    where = _Where(source)
    if not isinstance(data, Mapping):
        raise where.error("", f"must be a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    where.unknown("", data, TOP_LEVEL_KEYS)
    for key in ("name", "algorithm", "timesteps"):
        if key not in data:
            raise where.error(key, "missing (required)")
    name = data["name"]
    if not isinstance(name, str) or not name or "/" in name:
        raise where.error("name", f"must be a non-empty string without '/', got {name!r}")
    algorithm = data["algorithm"]
    if algorithm not in ALGORITHMS:
        raise where.error(
            "algorithm", f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}"
        )
    policies = ALGORITHMS[algorithm][2]
    policy = data.get("policy", policies[0])
    if policy not in policies:
        raise where.error(
            "policy", f"{policy!r} is not a policy for {algorithm}; valid: {', '.join(policies)}"
        )
    hyperparameters = check_hyperparameters(algorithm, policy, data.get("hyperparameters"), where)
    env = _env(data.get("env") or {}, where, base)
    evaluation = _eval(data.get("eval") or {}, env, where, base)
    _check_nodes(env.scenarios + evaluation.scenarios, where)
    timesteps = where.positive_int("timesteps", data["timesteps"])
    seeds = _seeds(data.get("seeds", [0]), where)
    checkpoint_every = where.positive_int("checkpoint_every", data.get("checkpoint_every", 20_000))
    description = data.get("description") or ""
    return TrainConfig(
        name=name,
        algorithm=algorithm,
        policy=policy,
        hyperparameters=hyperparameters,
        env=env,
        eval=evaluation,
        timesteps=timesteps,
        seeds=seeds,
        checkpoint_every=checkpoint_every,
        description=str(description),
        source=source,
    )


# ---------------------------------------------------------------------------- algorithms
def algorithm_class(algorithm: str) -> type:
    """The SB3 (or sb3-contrib) class of an algorithm name."""
    module, cls, _ = ALGORITHMS[algorithm]
    return getattr(importlib.import_module(module), cls)


def check_hyperparameters(
    algorithm: str, policy: str, given: Any, where: _Where | None = None
) -> dict[str, Any]:
    """Reject keys the algorithm's constructor (or its policy's, for ``policy_kwargs``) does
    not take, naming them and the valid ones."""
    where = where or _Where("<hyperparameters>")
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise where.error("hyperparameters", f"must be a mapping, got {given!r}")
    cls = algorithm_class(algorithm)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    valid = [p for p in valid if p not in RESERVED_HYPERPARAMETERS]
    for key in given:
        if key in RESERVED_HYPERPARAMETERS:
            raise where.error(f"hyperparameters.{key}", "is set by the trainer; remove it")
        if key not in valid:
            raise where.error(
                f"hyperparameters.{key}",
                f"unknown hyperparameter for {algorithm}; valid: {', '.join(sorted(valid))}",
            )
    for key in SCHEDULED:
        value = given.get(key)
        if isinstance(value, str) and not _is_linear(value):
            raise where.error(
                f"hyperparameters.{key}", f"must be a number or 'lin_<number>', got {value!r}"
            )
    kwargs = given.get("policy_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, Mapping):
            raise where.error("hyperparameters.policy_kwargs", f"must be a mapping, got {kwargs!r}")
        policy_cls = cls.policy_aliases[policy]
        accepted = [p for p in inspect.signature(policy_cls.__init__).parameters]
        accepted = [p for p in accepted if p not in ("self", "observation_space", "action_space")]
        accepted = [p for p in accepted if p not in ("lr_schedule", "use_sde")]
        for key in kwargs:
            if key not in accepted:
                raise where.error(
                    f"hyperparameters.policy_kwargs.{key}",
                    f"unknown for {policy}; valid: {', '.join(sorted(accepted))}",
                )
        activation = kwargs.get("activation_fn")
        if activation is not None and activation not in ACTIVATIONS:
            raise where.error(
                "hyperparameters.policy_kwargs.activation_fn",
                f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}",
            )
    return _plain(dict(given))


def build_hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """Constructor arguments from the config's YAML values: ``lin_<x>`` becomes a linear
    schedule, activation names become torch modules."""
    from stable_baselines3.common.utils import LinearSchedule
    from torch import nn

    out = dict(config.hyperparameters)
    for key in SCHEDULED:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = LinearSchedule(float(value[4:]), 0.0, 1.0)
    if "policy_kwargs" in out:
        kwargs = dict(out["policy_kwargs"])
        activation = kwargs.get("activation_fn")
        if activation is not None:
            kwargs["activation_fn"] = {
                "tanh": nn.Tanh,
                "relu": nn.ReLU,
                "elu": nn.ELU,
                "leaky_relu": nn.LeakyReLU,
            }[activation]
        out["policy_kwargs"] = kwargs
    return out


# ------------------------------------------------------------------------------- helpers
class _Where:
    """Builds ``file: field: problem`` errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key + ': ' if key else ''}{problem}")

    def unknown(self, prefix: str, data: Mapping[str, Any], valid: Sequence[str]) -> None:
        for key in data:
            if key not in valid:
                name = f"{prefix}.{key}" if prefix else str(key)
                raise self.error(name, f"unknown field; valid: {', '.join(valid)}")

    def positive_int(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(key, f"must be a positive integer, got {value!r}")
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value


def _is_linear(value: str) -> bool:
    if not value.startswith("lin_"):
        return False
    try:
        return math.isfinite(float(value[4:]))
    except ValueError:
        return False


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists (what YAML writes back)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _scenarios(value: Any, key: str, where: _Where, base: Path | None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise where.error(key, f"must be a non-empty list of scenarios, got {value!r}")
    names = []
    for item in value:
        if not isinstance(item, str):
            raise where.error(key, f"scenario {item!r} is not a name or a file path")
        candidate = base / item if base is not None else None
        if candidate is not None and item not in shipped_scenario_names() and candidate.is_file():
            item = str(candidate.resolve())
        try:
            load_scenario(item)
        except (ValueError, OSError) as error:
            raise where.error(
                key,
                f"bad scenario {item!r}: {error}; shipped: {', '.join(shipped_scenario_names())}",
            ) from error
        names.append(item)
    if len(set(names)) != len(names):
        raise where.error(key, f"scenario listed twice in {names}")
    return tuple(names)


def _env(data: Any, where: _Where, base: Path | None) -> EnvConfig:
    if not isinstance(data, Mapping):
        raise where.error("env", f"must be a mapping of {', '.join(ENV_KEYS)}")
    where.unknown("env", data, ENV_KEYS)
    default = EnvConfig()
    backend = data.get("backend", default.backend)
    if backend not in BACKENDS:
        raise where.error(
            "env.backend", f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}"
        )
    n_envs = where.positive_int("env.n_envs", data.get("n_envs", default.n_envs))
    scenarios = _scenarios(
        data.get("scenarios", list(default.scenarios)), "env.scenarios", where, base
    )
    if backend == "fluid" and n_envs < len(scenarios):
        raise where.error(
            "env.n_envs",
            f"backend fluid runs one batched env per scenario: n_envs ({n_envs}) must be at "
            f"least the number of scenarios ({len(scenarios)})",
        )
    features = data.get("features", default.features)
    try:
        groups = resolve_feature_groups(features)
    except (FeatureError, TypeError) as error:
        raise where.error("env.features", str(error)) from error
    if backend == "fluid":
        missing = [g for g in groups if g not in FLUID_FEATURES]
        if missing:
            raise where.error(
                "env.features",
                f"backend fluid cannot produce {', '.join(missing)}; it produces: "
                f"{', '.join(FLUID_FEATURES)}",
            )
    cost = data.get("migration_cost_per_gib", default.migration_cost_per_gib)
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost):
        raise where.error("env.migration_cost_per_gib", f"must be a number >= 0, got {cost!r}")
    if cost < 0:
        raise where.error("env.migration_cost_per_gib", f"must be a number >= 0, got {cost!r}")
    normalize = data.get("normalize", {"observation": True, "reward": True})
    if isinstance(normalize, bool):
        normalize = {"observation": normalize, "reward": normalize}
    if not isinstance(normalize, Mapping):
        raise where.error("env.normalize", f"must be true/false or a mapping, got {normalize!r}")
    where.unknown("env.normalize", normalize, NORMALIZE_KEYS)
    return EnvConfig(
        backend=backend,
        n_envs=n_envs,
        scenarios=scenarios,
        features=features if isinstance(features, str) else tuple(features),
        migration_cost_per_gib=float(cost),
        normalize_observation=where.boolean(
            "env.normalize.observation", normalize.get("observation", True)
        ),
        normalize_reward=where.boolean("env.normalize.reward", normalize.get("reward", True)),
    )


def _eval(data: Any, env: EnvConfig, where: _Where, base: Path | None) -> EvalConfig:
    if not isinstance(data, Mapping):
        raise where.error("eval", f"must be a mapping of {', '.join(EVAL_KEYS)}")
    where.unknown("eval", data, EVAL_KEYS)
    scenarios = _scenarios(
        data.get("scenarios", list(env.scenarios)), "eval.scenarios", where, base
    )
    seed = data.get("seed", EvalConfig.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise where.error("eval.seed", f"must be an integer >= 0, got {seed!r}")
    return EvalConfig(
        scenarios=scenarios,
        every_steps=where.positive_int("eval.every_steps", data.get("every_steps", 10_000)),
        episodes=where.positive_int("eval.episodes", data.get("episodes", 1)),
        seed=seed,
    )


def _check_nodes(scenarios: Sequence[str], where: _Where) -> None:
    counts = {name: len(load_scenario(name).nodes) for name in dict.fromkeys(scenarios)}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{Path(n).stem} {c}" for n, c in counts.items())
        raise where.error(
            "env.scenarios",
            f"training and eval scenarios must have the same number of memory nodes (one "
            f"policy serves them all); nodes per scenario: {listed}",
        )


def _seeds(value: Any, where: _Where) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise where.error("seeds", f"a count must be positive, got {value!r}")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise where.error(
            "seeds", f"must be a count or a non-empty list of integers, got {value!r}"
        )
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise where.error("seeds", f"seed {seed!r} is not an integer >= 0")
    if len(set(value)) != len(value):
        raise where.error("seeds", f"seed listed twice in {value}")
    return tuple(value)
