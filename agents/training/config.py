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
  scenarios: [co-runner, steady-single]   # shipped names, scenario files, folders or
                                          # globs of them, or distributions (random:default,
                                          # random:default?exclude=HOST leaves a host out)
  features: default       # feature set or list of groups
  migration_cost_per_gib: 0.1
  quota_action: false     # true: one more action value sets the DAMOS quota
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
valid values, so a typo fails before minutes of training rather than after. The whole config
is checked before anything is written: ``name`` must be a plain folder name (it becomes
``<runs>/<name>/``), every hyperparameter and policy keyword has a type and a range (those that
need a Python object, such as ``optimizer_class``, cannot be set here), and sizes that are
allocated at once are bounded: ``env.n_envs`` <= 1024, ``n_steps`` x ``n_envs`` <= 1,000,000
(an on-policy rollout), ``buffer_size`` <= 10,000,000 (SAC's replay buffer), network layers
<= 2048 wide and <= 8 deep, an LSTM state over the rollout <= 50,000,000 numbers, at most
1000 seeds, each < 2**31.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tierenv.contracts.features import FeatureError, resolve_feature_groups
from tierenv.files import read_yaml
from tierenv.sim.fluid import FLUID_FEATURES
from tierenv.workload.generator import (
    RANDOM_PREFIX,
    distribution_of,
    shipped_distribution_names,
)
from tierenv.workload.scenario import load_scenario, scenario_files, shipped_scenario_names

if TYPE_CHECKING:  # SB3 is imported where an algorithm is needed, not with the config
    from stable_baselines3.common.base_class import BaseAlgorithm

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
# Limits on what is allocated at once (see the module docstring).
MAX_N_ENVS = 1024
MAX_ROLLOUT_STEPS = 1_000_000  # n_steps x n_envs: the on-policy rollout buffer
MAX_BUFFER_SIZE = 10_000_000  # SAC's replay buffer (transitions)
MAX_LAYER_WIDTH = 2048
MAX_LAYERS = 8
MAX_LSTM_STATE = 50_000_000  # rollout x n_lstm_layers x lstm_hidden_size (stored per step)
MAX_SEEDS = 1000
MAX_SEED = 2**31 - 1  # numpy's global seed takes < 2**32; SB3 adds the env index
# a run folder name: one plain path component, never "." or ".." or hidden
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
ENV_KEYS = (
    "backend",
    "n_envs",
    "scenarios",
    "features",
    "migration_cost_per_gib",
    "quota_action",
    "normalize",
)
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
    # one more action value sets the DAMOS migrate_hot quota (action_to_quota)
    quota_action: bool = False
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
        return scenario_node_count(self.env.scenarios[0])

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
                "quota_action": env.quota_action,
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
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise where.error(
            "name",
            "must be a plain folder name (up to 100 letters, digits, '.', '_', '+', '-', "
            f"starting with a letter or digit), got {name!r}",
        )
    algorithm = data["algorithm"]
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise where.error(
            "algorithm", f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}"
        )
    policies = ALGORITHMS[algorithm][2]
    policy = data.get("policy", policies[0])
    if policy not in policies:
        raise where.error(
            "policy", f"{policy!r} is not a policy for {algorithm}; valid: {', '.join(policies)}"
        )
    env = _env(data.get("env") or {}, where, base)
    hyperparameters = check_hyperparameters(
        algorithm, policy, data.get("hyperparameters"), where, env
    )
    evaluation = _eval(data.get("eval") or {}, env, where, base)
    _check_nodes(env.scenarios + evaluation.scenarios, where)
    timesteps = where.positive_int("timesteps", data["timesteps"])
    seeds = _seeds(data.get("seeds", [0]), where)
    checkpoint_every = where.positive_int("checkpoint_every", data.get("checkpoint_every", 20_000))
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise where.error("description", f"must be a string, got {description!r}")
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
def algorithm_class(algorithm: str) -> type[BaseAlgorithm]:
    """The SB3 (or sb3-contrib) class of an algorithm name."""
    module, cls, _ = ALGORITHMS[algorithm]
    return getattr(importlib.import_module(module), cls)


# A check of one value: raises ``where.error(key, ...)`` when it is out of type or range.
Check = Callable[["_Where", str, Any], None]


def _int(low: int, high: int | None = None) -> Check:
    span = f">= {low}" if high is None else f"in {low}..{high:,}"

    def check(where: _Where, key: str, value: Any) -> None:
        whole = not isinstance(value, bool) and isinstance(value, int)
        if not whole or value < low or (high is not None and value > high):
            raise where.error(key, f"must be an integer {span}, got {value!r}")

    return check


def _number(low: float, high: float = math.inf, *, above: bool = False) -> Check:
    """A finite number in [low, high] (``above``: strictly above ``low``)."""
    span = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")

    def check(where: _Where, key: str, value: Any) -> None:
        if not _is_number(value) or value < low or value > high or (above and value == low):
            raise where.error(key, f"must be a number {span}, got {value!r}")

    return check


def _boolean(where: _Where, key: str, value: Any) -> None:
    where.boolean(key, value)


def _optional(check: Check) -> Check:
    def optional(where: _Where, key: str, value: Any) -> None:
        if value is not None:
            check(where, key, value)

    return optional


def _schedule(high: float) -> Check:
    """A number in (0, high], or ``lin_<that number>`` (linear decay to 0). The bounds keep
    float32 finite; above them training only diverges into NaN."""

    def check(where: _Where, key: str, value: Any) -> None:
        if isinstance(value, str):
            number = _float(value[4:]) if value.startswith("lin_") else None
        else:
            number = float(value) if _is_number(value) else None
        if number is None or not 0 < number <= high:  # NaN fails the comparison too
            raise where.error(
                key, f"must be a number in (0, {high:g}] or 'lin_<that number>', got {value!r}"
            )

    return check


def _sac_ent_coef(where: _Where, key: str, value: Any) -> None:
    """``auto``, ``auto_<initial value in (0, 10]>`` or a fixed coefficient in [0, 10]."""
    if isinstance(value, str):
        initial = _float(value[5:]) if value.startswith("auto_") else None
        if value != "auto" and not (initial is not None and 0 < initial <= 10):
            raise where.error(
                key, f"must be 'auto', 'auto_<number in (0, 10]>' or in [0, 10], got {value!r}"
            )
        return
    _number(0.0, 10.0)(where, key, value)


def _target_entropy(where: _Where, key: str, value: Any) -> None:
    if value != "auto" and not _is_number(value):
        raise where.error(key, f"must be 'auto' or a number, got {value!r}")


def _train_freq(where: _Where, key: str, value: Any) -> None:
    """Every ``n`` steps, or ``[n, step|episode]``."""
    every = value[0] if isinstance(value, list) and len(value) == 2 else value
    try:
        if every is not value and value[1] not in ("step", "episode"):
            raise where.error(key, "")
        _int(1)(where, key, every)
    except ConfigError:
        raise where.error(
            key, f"must be an integer >= 1 or [integer >= 1, step|episode], got {value!r}"
        ) from None


def _layers(where: _Where, key: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        raise where.error(
            key, f"must be a list of at most {MAX_LAYERS} layer widths, got {value!r}"
        )
    for width in value:
        try:
            _int(1, MAX_LAYER_WIDTH)(where, key, width)
        except ConfigError:
            raise where.error(
                key, f"layer width {width!r} is not an integer in 1..{MAX_LAYER_WIDTH}"
            ) from None


def _net_arch(parts: tuple[str, str]) -> Check:
    """Hidden layer widths shared by both networks, or a mapping of both ``parts`` (the
    actor's and the critic's: SB3 ignores other keys, and SAC refuses a missing one)."""

    def check(where: _Where, key: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            _layers(where, key, value)
            return
        if set(value) != set(parts):
            raise where.error(
                key, f"a mapping must have exactly {' and '.join(parts)}, got {value!r}"
            )
        for part, layers in value.items():
            _layers(where, f"{key}.{part}", layers)

    return check


def _activation(where: _Where, key: str, value: Any) -> None:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise where.error(key, f"unknown activation {value!r}; valid: {', '.join(ACTIVATIONS)}")


_ON_POLICY: dict[str, Check] = {
    "learning_rate": _schedule(1.0),
    "n_steps": _int(1, MAX_ROLLOUT_STEPS),
    "batch_size": _int(2, MAX_ROLLOUT_STEPS),  # SB3: a minibatch of 1 has no advantage spread
    "n_epochs": _int(1, 1000),  # passes over each rollout: more only looks like a hang
    "gamma": _number(0.0, 1.0),
    "gae_lambda": _number(0.0, 1.0),
    "clip_range": _schedule(10.0),
    "clip_range_vf": _optional(_number(0.0, 1e6, above=True)),  # in reward units
    "normalize_advantage": _boolean,
    "ent_coef": _number(0.0, 10.0),
    "vf_coef": _number(0.0, 100.0),
    "max_grad_norm": _number(0.0, 1e6, above=True),
    "use_sde": _boolean,
    "sde_sample_freq": _int(-1),
    "target_kl": _optional(_number(0.0, 10.0, above=True)),
    "stats_window_size": _int(1, 1_000_000),
}
# the hyperparameters a YAML config can set, with their checks (the others need Python
# objects or combinations SB3 checks only once training runs)
HYPERPARAMETERS: dict[str, dict[str, Check]] = {
    "PPO": _ON_POLICY,
    "RecurrentPPO": _ON_POLICY,
    "SAC": {
        "learning_rate": _schedule(1.0),
        "buffer_size": _int(1, MAX_BUFFER_SIZE),
        "learning_starts": _int(0),
        "batch_size": _int(1, MAX_BUFFER_SIZE),
        "tau": _number(0.0, 1.0, above=True),
        "gamma": _number(0.0, 1.0),
        "train_freq": _train_freq,
        "gradient_steps": _int(-1, 1000),  # -1: as many as environment steps collected
        "n_steps": _int(1, 1000),
        "ent_coef": _sac_ent_coef,
        "target_update_interval": _int(1),
        "target_entropy": _target_entropy,
        "use_sde": _boolean,
        "sde_sample_freq": _int(-1),
        "use_sde_at_warmup": _boolean,
        "stats_window_size": _int(1, 1_000_000),
    },
}
NET_ARCH_PARTS = {"PPO": ("pi", "vf"), "RecurrentPPO": ("pi", "vf"), "SAC": ("pi", "qf")}
# policy keywords (those a policy takes: checked against its signature too)
POLICY_KWARGS: dict[str, Check] = {
    "net_arch": _net_arch(("pi", "vf")),  # SAC's critic is "qf" (see NET_ARCH_PARTS)
    "activation_fn": _activation,
    "ortho_init": _boolean,
    "log_std_init": _number(-20.0, 20.0),
    "full_std": _boolean,
    "use_expln": _boolean,
    "clip_mean": _number(0.0, 100.0, above=True),
    "share_features_extractor": _boolean,
    "n_critics": _int(1, 16),
    "lstm_hidden_size": _int(1, MAX_LAYER_WIDTH),
    "n_lstm_layers": _int(1, MAX_LAYERS),
    "shared_lstm": _boolean,
    "enable_critic_lstm": _boolean,
}


def check_hyperparameters(
    algorithm: str,
    policy: str,
    given: Any,
    where: _Where | None = None,
    env: EnvConfig | None = None,
) -> dict[str, Any]:
    """Check every hyperparameter and policy keyword: known to the algorithm (or its policy),
    settable from YAML, of the right type and range, and (given ``env``) within the size
    limits. Errors name the field and the valid values."""
    where = where or _Where("<hyperparameters>")
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise where.error("hyperparameters", f"must be a mapping, got {given!r}")
    cls = algorithm_class(algorithm)
    signature = inspect.signature(cls.__init__).parameters
    checks = HYPERPARAMETERS[algorithm]
    valid = [*sorted(key for key in checks if key in signature), "policy_kwargs"]
    for key, value in given.items():
        name = f"hyperparameters.{key}"
        if key in RESERVED_HYPERPARAMETERS:
            raise where.error(name, "is set by the trainer; remove it")
        if key not in valid:
            problem = (
                "cannot be set in a training config"
                if key in signature
                else f"unknown hyperparameter for {algorithm}"
            )
            raise where.error(name, f"{problem}; valid: {', '.join(valid)}")
        if key != "policy_kwargs":
            checks[key](where, name, value)
    kwargs = given.get("policy_kwargs")
    if kwargs is not None:
        _check_policy_kwargs(cls, algorithm, policy, kwargs, where)
    if env is not None:
        _check_sizes(algorithm, signature, given, env, where)
    return _plain(dict(given))


def _check_policy_kwargs(cls: Any, algorithm: str, policy: str, kwargs: Any, where: _Where) -> None:
    key = "hyperparameters.policy_kwargs"
    if not isinstance(kwargs, Mapping):
        raise where.error(key, f"must be a mapping, got {kwargs!r}")
    signature = inspect.signature(cls.policy_aliases[policy].__init__).parameters
    valid = sorted(name for name in POLICY_KWARGS if name in signature)
    for name, value in kwargs.items():
        if name not in valid:
            problem = (
                "cannot be set in a training config"
                if name in signature
                else f"unknown for {policy}"
            )
            raise where.error(f"{key}.{name}", f"{problem}; valid: {', '.join(valid)}")
        check = _net_arch(NET_ARCH_PARTS[algorithm]) if name == "net_arch" else POLICY_KWARGS[name]
        check(where, f"{key}.{name}", value)
    # combinations the recurrent policy refuses in its constructor
    defaults = {name: signature[name].default for name in valid}
    merged = defaults | dict(kwargs)
    if merged.get("shared_lstm") and merged.get("enable_critic_lstm"):
        raise where.error(
            f"{key}.shared_lstm",
            "a shared LSTM excludes enable_critic_lstm (set it to false), got both true",
        )
    if merged.get("shared_lstm") and not merged.get("share_features_extractor", True):
        raise where.error(
            f"{key}.shared_lstm", "a shared LSTM needs share_features_extractor: true"
        )


def _check_sizes(
    algorithm: str,
    signature: Mapping[str, Any],
    given: Mapping[str, Any],
    env: EnvConfig,
    where: _Where,
) -> None:
    """What SB3 allocates at once (or asserts) from the hyperparameters and ``env.n_envs``."""

    def value(key: str) -> Any:
        return given[key] if key in given else signature[key].default

    if algorithm == "SAC":
        frequency = value("train_freq")
        if isinstance(frequency, list) and frequency[1] == "episode" and env.n_envs > 1:
            raise where.error(
                "hyperparameters.train_freq",
                f"training every episode needs env.n_envs 1, got {env.n_envs}",
            )
        return
    rollout = value("n_steps") * env.n_envs
    if rollout > MAX_ROLLOUT_STEPS:
        raise where.error(
            "hyperparameters.n_steps",
            f"n_steps x env.n_envs = {value('n_steps'):,} x {env.n_envs} = {rollout:,} is over "
            f"the rollout limit of {MAX_ROLLOUT_STEPS:,}",
        )
    if rollout < 2 and value("normalize_advantage"):
        raise where.error(
            "hyperparameters.n_steps",
            "n_steps x env.n_envs must be at least 2 to normalise advantages "
            "(or set normalize_advantage: false)",
        )
    if algorithm == "RecurrentPPO":
        if rollout % value("batch_size") == 1 and value("normalize_advantage"):
            # unlike PPO, it normalises a last minibatch of one step too: by a NaN std
            raise where.error(
                "hyperparameters.batch_size",
                f"n_steps x env.n_envs = {rollout:,} leaves a last minibatch of 1 step with "
                f"batch_size {value('batch_size')}; RecurrentPPO's advantages would turn NaN",
            )
        kwargs = given.get("policy_kwargs") or {}
        hidden = kwargs.get("lstm_hidden_size", 256)
        state = rollout * kwargs.get("n_lstm_layers", 1) * hidden
        if state > MAX_LSTM_STATE:
            raise where.error(
                "hyperparameters.policy_kwargs.lstm_hidden_size",
                f"the rollout stores an LSTM state of n_steps x n_envs x n_lstm_layers x "
                f"lstm_hidden_size = {state:,} numbers, over the limit of {MAX_LSTM_STATE:,}",
            )


def build_hyperparameters(config: TrainConfig) -> dict[str, Any]:
    """Constructor arguments from the config's YAML values: ``lin_<x>`` becomes a linear
    schedule, activation names become torch modules."""
    from stable_baselines3.common.utils import LinearSchedule
    from torch import nn

    out = dict(config.hyperparameters)
    if isinstance(out.get("train_freq"), list):  # SB3 takes (n, unit) only as a tuple
        out["train_freq"] = tuple(out["train_freq"])
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


def _is_number(value: Any) -> bool:
    """A finite int or float (YAML's booleans are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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


def scenario_node_count(reference: str) -> int:
    """Memory nodes of a checked scenario reference: a scenario name or file, or a
    distribution (``random:NAME`` or ``random:FILE``, every draw of which has its nodes)."""
    distribution = distribution_of(reference)
    if distribution is not None:
        return distribution.n_nodes
    return len(load_scenario(reference).nodes)


def _scenario_files(item: str, base: Path | None) -> list[str] | None:
    """The scenario files a folder or a glob pattern names (None if ``item`` is neither)."""
    if item.startswith(RANDOM_PREFIX) or item in shipped_scenario_names():
        return None
    # as for files: beside the config when it is there, else from the working directory
    roots = [base, Path()] if base is not None else [Path()]
    files = scenario_files(item, roots)
    return None if files is None else [str(Path(path).resolve()) for path in files]


def _scenarios(value: Any, key: str, where: _Where, base: Path | None) -> tuple[str, ...]:
    """Scenario references: shipped names, scenario files, folders or glob patterns of
    scenario files (a generated suite), and distributions (``random:NAME``/``random:FILE``)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise where.error(key, f"must be a non-empty list of scenarios, got {value!r}")
    names = []
    for item in value:
        if not isinstance(item, str):
            raise where.error(key, f"scenario {item!r} is not a name or a file path")
        files = _scenario_files(item, base)
        if files is not None and not files:
            raise where.error(key, f"{item!r} names no scenario files (*.toml)")
        for reference in files or [_resolved(item, base)]:
            _check_reference(reference, key, where)
            names.append(reference)
    if len(set(names)) != len(names):
        raise where.error(key, f"scenario listed twice in {names}")
    return tuple(names)


def _resolved(item: str, base: Path | None) -> str:
    """``item`` with a file path (plain or after ``random:``) made absolute against the
    config's folder when a file of that name is there."""
    prefix = RANDOM_PREFIX if item.startswith(RANDOM_PREFIX) else ""
    rest, query = item[len(prefix) :], ""
    if prefix:  # a distribution may end in a host filter (?exclude=...)
        rest, mark, query = rest.partition("?")
        query = mark + query
    shipped = shipped_distribution_names() if prefix else shipped_scenario_names()
    candidate = base / rest if base is not None else None
    if candidate is not None and rest not in shipped and candidate.is_file():
        return prefix + str(candidate.resolve()) + query
    return item


def _check_reference(reference: str, key: str, where: _Where) -> None:
    try:
        if reference.startswith(RANDOM_PREFIX):
            distribution_of(reference)
        else:
            load_scenario(reference)
    except (ValueError, OSError) as error:
        shipped = (
            f"shipped distributions: {', '.join(shipped_distribution_names())}"
            if reference.startswith(RANDOM_PREFIX)
            else f"shipped: {', '.join(shipped_scenario_names())}"
        )
        raise where.error(key, f"bad scenario {reference!r}: {error}; {shipped}") from error


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
    if n_envs > MAX_N_ENVS:
        raise where.error("env.n_envs", f"must be at most {MAX_N_ENVS}, got {n_envs:,}")
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
        quota_action=where.boolean("env.quota_action", data.get("quota_action", False)),
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
    _int(0, MAX_SEED)(where, "eval.seed", seed)
    return EvalConfig(
        scenarios=scenarios,
        every_steps=where.positive_int("eval.every_steps", data.get("every_steps", 10_000)),
        episodes=where.positive_int("eval.episodes", data.get("episodes", 1)),
        seed=seed,
    )


def _check_nodes(scenarios: Sequence[str], where: _Where) -> None:
    counts = {name: scenario_node_count(name) for name in dict.fromkeys(scenarios)}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{Path(n).stem} {c}" for n, c in counts.items())
        raise where.error(
            "env.scenarios",
            f"training and eval scenarios must have the same number of memory nodes (one "
            f"policy serves them all); nodes per scenario: {listed}",
        )


def _seeds(value: Any, where: _Where) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise where.error("seeds", f"a count must be in 1..{MAX_SEEDS}, got {value!r}")
        return tuple(range(value))
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SEEDS:
        raise where.error(
            "seeds", f"must be a count or a list of 1..{MAX_SEEDS} integers, got {value!r}"
        )
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise where.error("seeds", f"seed {seed!r} is not an integer in 0..{MAX_SEED}")
    if len(set(value)) != len(value):
        raise where.error("seeds", f"seed listed twice in {value}")
    return tuple(value)
