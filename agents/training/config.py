"""Training configs: a YAML file in the style of rl-baselines3-zoo, loaded and checked.

```yaml
name: ppo-default
algorithm: PPO            # PPO | SAC | RecurrentPPO
policy: MlpPolicy         # MlpLstmPolicy for RecurrentPPO
trainer: sb3              # or lean: agents.training.lean_ppo (PPO, MlpPolicy, fluid only)
hyperparameters:          # the algorithm's constructor arguments (checked against it)
  learning_rate: 0.0003   # or "lin_0.0003": linear decay to 0 over the run
  n_steps: 256
  policy_kwargs: {net_arch: [64, 64], activation_fn: tanh}
env:                      # every key: a field of EnvConfig, documented there
  backend: full
  n_envs: 4
  scenarios: [co-runner, steady-single]
  normalize: {observation: true, reward: true}
eval:                     # every key: a field of EvalConfig
  scenarios: [co-runner, steady-single, hot-set-shift]
  every_steps: 10000
timesteps: 100000
seeds: [0, 1, 2, 3, 4]    # or a count: 5 means 0..4
checkpoint_every: 20000
```

The keys are the fields of :class:`TrainConfig`, :class:`EnvConfig` and :class:`EvalConfig`,
each declared once with its default, the check that reads its YAML value and a line saying what
it is (a key such as ``normalize.observation`` sits in a nested mapping); the key lists, the
defaults and :meth:`TrainConfig.to_dict` are derived from them.

Every error is a ``ConfigError`` (a :class:`tierenv.schema.SchemaError`, so a ``ValueError``)
naming the file, the field and the valid values, so a typo fails before minutes of training
rather than after. The whole config is checked before anything is written: ``name`` must be a
plain folder name (it becomes ``<runs>/<name>/``), every hyperparameter and policy keyword has
a type and a range (those that need a Python object, such as ``optimizer_class``, cannot be set
here), and sizes that are allocated at once are bounded: ``env.n_envs`` <= 1024, ``n_steps`` x
``n_envs`` <= 1,000,000 (an on-policy rollout), ``buffer_size`` <= 10,000,000 (SAC's replay
buffer), network layers <= 2048 wide and <= 8 deep, an LSTM state over the rollout <=
50,000,000 numbers, at most 1000 seeds, each < 2**31.
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
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from tierenv.contracts.features import FeatureError, resolve_feature_groups
from tierenv.files import read_yaml
from tierenv.schema import Reader, SchemaError, join_path
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
TRAINERS = ("sb3", "lean")  # stable-baselines3's learn, or agents.training.lean_ppo
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


class ConfigError(SchemaError):
    """A training config that cannot run; the message names the file and the field."""


class _Reader(Reader):
    """Reads a training config: errors are ``ConfigError``s (``file: field: problem``, an
    unknown key listed with ``unknown field; valid: ...``); ``base`` is the config file's
    folder, where relative scenario files are looked for first."""

    def __init__(self, source: str, base: Path | None = None) -> None:
        super().__init__(source, ConfigError, unknown_key="unknown field; valid:")
        self.base = base


# ------------------------------------------------------------------ checks of one value
# A check reads one YAML value: it raises ``reader.fail(key, ...)`` when the value is out of
# type or range, and returns it as the config keeps it.
Check = Callable[[_Reader, str, Any], Any]


def _int(low: int, high: int | None = None) -> Check:
    span = f">= {low}" if high is None else f"in {low}..{high:,}"

    def check(reader: _Reader, key: str, value: Any) -> int:
        whole = not isinstance(value, bool) and isinstance(value, int)
        if not whole or value < low or (high is not None and value > high):
            reader.fail(key, f"must be an integer {span}, got {value!r}")
        return value

    return check


def _positive_int(reader: _Reader, key: str, value: Any) -> int:
    """A YAML integer >= 1. Not ``Reader.integer``: that takes a whole float (``2.0``, as TOML
    configs may write counts), which a training config refuses as it always has."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        reader.fail(key, f"must be a positive integer, got {value!r}")
    return value


def _number(low: float, high: float = math.inf, *, above: bool = False) -> Check:
    """A finite number in [low, high] (``above``: strictly above ``low``)."""
    span = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")

    def check(reader: _Reader, key: str, value: Any) -> Any:
        if not _is_number(value) or value < low or value > high or (above and value == low):
            reader.fail(key, f"must be a number {span}, got {value!r}")
        return value

    return check


def _boolean(reader: _Reader, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        reader.fail(key, f"must be true or false, got {value!r}")
    return value


def _trainer(reader: _Reader, key: str, value: Any) -> str:
    if value not in TRAINERS:
        reader.fail(key, f"unknown trainer {value!r}; valid: {', '.join(TRAINERS)}")
    return value


# ------------------------------------------------------------- checks of env and eval keys
def _backend(reader: _Reader, key: str, value: Any) -> str:
    if value not in BACKENDS:
        reader.fail(key, f"unknown backend {value!r}; valid: {', '.join(BACKENDS)}")
    return value


def _n_envs(reader: _Reader, key: str, value: Any) -> int:
    n_envs = _positive_int(reader, key, value)
    if n_envs > MAX_N_ENVS:
        reader.fail(key, f"must be at most {MAX_N_ENVS}, got {n_envs:,}")
    return n_envs


def _features(reader: _Reader, key: str, value: Any) -> str | tuple[str, ...]:
    try:
        resolve_feature_groups(value)
    except (FeatureError, TypeError) as error:
        raise reader.error_at(key, str(error)) from error
    return value if isinstance(value, str) else tuple(value)


def _cost(reader: _Reader, key: str, value: Any) -> float:
    return float(_number(0.0)(reader, key, value))


def _scenarios(reader: _Reader, key: str, value: Any) -> tuple[str, ...]:
    """Scenario references: shipped names, scenario files, folders or glob patterns of
    scenario files (a generated suite), and distributions (``random:NAME``/``random:FILE``)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        reader.fail(key, f"must be a non-empty list of scenarios, got {value!r}")
    names = []
    for item in value:
        if not isinstance(item, str):
            reader.fail(key, f"scenario {item!r} is not a name or a file path")
        files = _scenario_files(item, reader.base)
        if files is not None and not files:
            reader.fail(key, f"{item!r} names no scenario files (*.toml)")
        for reference in files or [_resolved(item, reader.base)]:
            _check_reference(reference, key, reader)
            names.append(reference)
    if len(set(names)) != len(names):
        reader.fail(key, f"scenario listed twice in {names}")
    return tuple(names)


# ------------------------------------------------------------------------------ the schema
def setting(default: Any, check: Check, key: str | None = None) -> Any:
    """A field of a config section: its default, the check that reads its YAML value, and its
    YAML key when that is not the field's name (``normalize.observation``: the key
    ``observation`` of the mapping ``normalize``)."""
    return dataclasses.field(default=default, metadata={"check": check, "key": key})


def _key(field: dataclasses.Field[Any]) -> str:
    """The YAML key of a field (dotted when it sits in a nested mapping)."""
    return field.metadata.get("key") or field.name


@dataclass(frozen=True)
class EnvConfig:
    """``env``: what the agent trains on. A new key is one more field here, declared with
    ``setting(default, check)`` and a line under it saying what it is; the parser, the key
    lists and ``to_dict`` follow from it (a check across keys goes in ``_check_env``)."""

    backend: str = setting("full", _backend)
    """full (WeightedInterleaveEnv) | fluid (the batched fluid model)"""
    n_envs: int = setting(4, _n_envs)
    """environments stepped at once (at most MAX_N_ENVS; fluid: at least one per scenario)"""
    scenarios: tuple[str, ...] = setting(("co-runner",), _scenarios)
    """shipped names, scenario files, folders or globs of them, or distributions
    (random:default; random:default?exclude=HOST leaves a host out)"""
    features: str | tuple[str, ...] = setting("default", _features)
    """the observation: a feature set or a list of groups (fluid: the groups it produces)"""
    migration_cost_per_gib: float = setting(0.1, _cost)
    """the reward's migration coefficient: subtracted per GiB migrated (>= 0)"""
    quota_action: bool = setting(False, _boolean)
    """true: one more action value sets the DAMOS migrate_hot quota (action_to_quota)"""
    normalize_observation: bool = setting(True, _boolean, key="normalize.observation")
    """VecNormalize the observations (``normalize: false`` sets both to false)"""
    normalize_reward: bool = setting(True, _boolean, key="normalize.reward")
    """VecNormalize the rewards"""

    @property
    def normalize(self) -> bool:
        return self.normalize_observation or self.normalize_reward


@dataclass(frozen=True)
class EvalConfig:
    """``eval``: periodic evaluation (deterministic policy, full-fidelity env, raw returns)."""

    scenarios: tuple[str, ...] = setting(("co-runner",), _scenarios)
    """what is evaluated, as env.scenarios (default: env.scenarios)"""
    every_steps: int = setting(10_000, _positive_int)
    """training steps between evaluations"""
    episodes: int = setting(1, _positive_int)
    """episodes per scenario"""
    seed: int = setting(1000, _int(0, MAX_SEED))
    """seed of the first episode (episode i: seed + i)"""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A checked training config: the fields before ``source`` are the YAML's top-level keys,
    in the order ``to_dict`` writes them. ``parse_config`` checks them."""

    name: str
    """the run's folder, <runs>/<name>/: a plain folder name"""
    description: str = ""
    """free text"""
    algorithm: str
    """PPO | SAC | RecurrentPPO"""
    policy: str
    """one of the algorithm's policies in ALGORITHMS (default: its first)"""
    trainer: str = setting("sb3", _trainer)
    """sb3 (the algorithm's own learn) | lean (agents.training.lean_ppo: PPO, MlpPolicy and
    env.backend fluid only; the run folder is an SB3 run's)"""
    hyperparameters: dict[str, Any]
    """the algorithm's constructor arguments as YAML values (``lin_<x>``: a linear schedule)"""
    env: EnvConfig
    """what the agent trains on (EnvConfig)"""
    eval: EvalConfig
    """periodic evaluation (EvalConfig)"""
    timesteps: int
    """training steps per seed"""
    seeds: tuple[int, ...] = (0,)
    """one run per seed (written as a list, or a count n: 0..n-1)"""
    checkpoint_every: int = 20_000
    """training steps between checkpoints"""
    source: str = dataclasses.field(default="<config>", metadata={"yaml": False})
    """the file it came from (for messages); not a key"""

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
        return _yaml_form(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def yaml_keys(cls: type, group: str = "") -> tuple[str, ...]:
    """The YAML keys of a config dataclass in declaration order (``group``: the keys of that
    nested mapping, such as ``normalize``)."""
    keys = [_key(field) for field in dataclasses.fields(cls) if field.metadata.get("yaml", True)]
    if group:
        return tuple(key[len(group) + 1 :] for key in keys if key.startswith(f"{group}."))
    return tuple(dict.fromkeys(key.split(".", 1)[0] for key in keys))


TOP_LEVEL_KEYS = yaml_keys(TrainConfig)
ENV_KEYS = yaml_keys(EnvConfig)
NORMALIZE_KEYS = yaml_keys(EnvConfig, "normalize")
EVAL_KEYS = yaml_keys(EvalConfig)


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a training config file (relative scenario paths are taken relative to
    the file's folder when a file of that name is there)."""
    path = Path(path)
    data, _ = read_yaml(path, "training config", ConfigError)
    return parse_config(data, source=str(path), base=path.parent)


def parse_config(data: Any, source: str = "<config>", base: Path | None = None) -> TrainConfig:
    """Check a config given as a mapping (what ``load_config`` parsed)."""
    reader = _Reader(source, base)
    if not isinstance(data, Mapping):
        reader.fail("", f"must be a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    reader.keys(data, TOP_LEVEL_KEYS, "")
    for key in ("name", "algorithm", "timesteps"):
        reader.value(data, key, "")
    name = data["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        reader.fail(
            "name",
            "must be a plain folder name (up to 100 letters, digits, '.', '_', '+', '-', "
            f"starting with a letter or digit), got {name!r}",
        )
    algorithm = data["algorithm"]
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        reader.fail("algorithm", f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")
    policies = ALGORITHMS[algorithm][2]
    policy = data.get("policy", policies[0])
    if policy not in policies:
        reader.fail(
            "policy", f"{policy!r} is not a policy for {algorithm}; valid: {', '.join(policies)}"
        )
    env = _section(EnvConfig, data.get("env") or {}, "env", reader)
    _check_env(env, reader)
    hyperparameters = check_hyperparameters(
        algorithm, policy, data.get("hyperparameters"), reader, env
    )
    evaluation = _section(
        EvalConfig, data.get("eval") or {}, "eval", reader, {"scenarios": env.scenarios}
    )
    _check_nodes(env.scenarios + evaluation.scenarios, reader)
    timesteps = _positive_int(reader, "timesteps", data["timesteps"])
    seeds = _seeds(data.get("seeds", _plain(TrainConfig.seeds)), reader)
    checkpoint_every = _positive_int(
        reader, "checkpoint_every", data.get("checkpoint_every", TrainConfig.checkpoint_every)
    )
    description = data.get("description") or TrainConfig.description
    if not isinstance(description, str):
        reader.fail("description", f"must be a string, got {description!r}")
    trainer_field = _TRAIN_FIELDS["trainer"]
    trainer = trainer_field.metadata["check"](
        reader, "trainer", data.get("trainer", trainer_field.default)
    )
    config = TrainConfig(
        name=name,
        algorithm=algorithm,
        policy=policy,
        trainer=trainer,
        hyperparameters=hyperparameters,
        env=env,
        eval=evaluation,
        timesteps=timesteps,
        seeds=seeds,
        checkpoint_every=checkpoint_every,
        description=str(description),
        source=source,
    )
    if trainer == "lean":
        _check_lean(config, reader)
    return config


_TRAIN_FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def with_trainer(config: TrainConfig, trainer: str) -> TrainConfig:
    """``config`` trained by ``trainer`` (``tierenv train --trainer``), checked as the YAML
    key is: errors name the config and the override."""
    data = {**config.to_dict(), "trainer": trainer}
    return parse_config(data, source=f"{config.source} (with --trainer {trainer})")


def _check_lean(config: TrainConfig, reader: _Reader) -> None:
    """What ``trainer: lean`` needs: PPO with MlpPolicy on the fluid backend, and only the
    hyperparameters ``LeanPPOParams`` implements (checked here, not after minutes of
    training)."""
    from agents.training.lean_ppo import LeanPPOParams

    for key, value, wanted in (
        ("algorithm", config.algorithm, "PPO"),
        ("policy", config.policy, "MlpPolicy"),
        ("env.backend", config.env.backend, "fluid"),
    ):
        if value != wanted:
            reader.fail(key, f"trainer lean needs {wanted}, got {value!r} (or set trainer: sb3)")
    try:
        params = LeanPPOParams.from_sb3(build_hyperparameters(config))
    except (ValueError, TypeError) as error:
        raise reader.error_at(
            "hyperparameters", f"trainer lean: {error} (or set trainer: sb3)"
        ) from error
    rollout = params.n_steps * config.env.n_envs
    if params.batch_size > rollout:
        reader.fail(
            "hyperparameters.batch_size",
            f"trainer lean needs batch_size <= n_steps x env.n_envs = {rollout:,}, "
            f"got {params.batch_size:,}",
        )


Section = TypeVar("Section", EnvConfig, EvalConfig)


def _section(
    cls: type[Section],
    data: Any,
    path: str,
    reader: _Reader,
    defaults: Mapping[str, Any] | None = None,
) -> Section:
    """A section read from its YAML mapping, each field by its check; an absent key takes the
    field's default (or ``defaults[field name]``) in its YAML form."""
    keys = yaml_keys(cls)
    if not isinstance(data, Mapping):
        reader.fail(path, f"must be a mapping of {', '.join(keys)}")
    reader.keys(data, keys, path)
    groups: dict[str, Mapping[str, Any]] = {}
    values = {}
    for field in dataclasses.fields(cls):
        group, _, key = _key(field).rpartition(".")
        table = data
        if group:
            if group not in groups:
                groups[group] = _group(cls, data, group, join_path(path, group), reader)
            table = groups[group]
        default = (defaults or {}).get(field.name, field.default)
        value = table.get(key, _plain(default))
        values[field.name] = field.metadata["check"](reader, join_path(path, _key(field)), value)
    return cls(**values)


def _group(cls: type, data: Mapping[str, Any], group: str, path: str, reader: _Reader) -> Any:
    """A nested mapping of switches (``normalize``): absent, one true/false for all of them,
    or a mapping of some."""
    keys = yaml_keys(cls, group)
    value = data.get(group, {})
    if isinstance(value, bool):
        value = dict.fromkeys(keys, value)
    if not isinstance(value, Mapping):
        reader.fail(path, f"must be true/false or a mapping, got {value!r}")
    reader.keys(value, keys, path)
    return value


def _check_env(env: EnvConfig, reader: _Reader) -> None:
    """What the fluid backend needs of the other env keys."""
    if env.backend != "fluid":
        return
    if env.n_envs < len(env.scenarios):
        reader.fail(
            "env.n_envs",
            f"backend fluid runs one batched env per scenario: n_envs ({env.n_envs}) must be at "
            f"least the number of scenarios ({len(env.scenarios)})",
        )
    missing = [g for g in resolve_feature_groups(env.features) if g not in FLUID_FEATURES]
    if missing:
        reader.fail(
            "env.features",
            f"backend fluid cannot produce {', '.join(missing)}; it produces: "
            f"{', '.join(FLUID_FEATURES)}",
        )


def _check_nodes(scenarios: Sequence[str], reader: _Reader) -> None:
    counts = {name: scenario_node_count(name) for name in dict.fromkeys(scenarios)}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{Path(n).stem} {c}" for n, c in counts.items())
        reader.fail(
            "env.scenarios",
            f"training and eval scenarios must have the same number of memory nodes (one "
            f"policy serves them all); nodes per scenario: {listed}",
        )


def _seeds(value: Any, reader: _Reader) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            reader.fail("seeds", f"a count must be in 1..{MAX_SEEDS}, got {value!r}")
        return tuple(range(value))
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SEEDS:
        reader.fail("seeds", f"must be a count or a list of 1..{MAX_SEEDS} integers, got {value!r}")
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            reader.fail("seeds", f"seed {seed!r} is not an integer in 0..{MAX_SEED}")
    if len(set(value)) != len(value):
        reader.fail("seeds", f"seed listed twice in {value}")
    return tuple(value)


def _yaml_form(config: Any) -> dict[str, Any]:
    """A config dataclass as YAML values, nested where a key says so (``normalize.reward``)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if not field.metadata.get("yaml", True):
            continue
        value = getattr(config, field.name)
        *groups, key = _key(field).split(".")
        table = out
        for group in groups:
            table = table.setdefault(group, {})
        table[key] = _yaml_form(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


# ---------------------------------------------------------------------------- algorithms
def algorithm_class(algorithm: str) -> type[BaseAlgorithm]:
    """The SB3 (or sb3-contrib) class of an algorithm name."""
    module, cls, _ = ALGORITHMS[algorithm]
    return getattr(importlib.import_module(module), cls)


def _optional(check: Check) -> Check:
    def optional(reader: _Reader, key: str, value: Any) -> None:
        if value is not None:
            check(reader, key, value)

    return optional


def _schedule(high: float) -> Check:
    """A number in (0, high], or ``lin_<that number>`` (linear decay to 0). The bounds keep
    float32 finite; above them training only diverges into NaN."""

    def check(reader: _Reader, key: str, value: Any) -> None:
        if isinstance(value, str):
            number = _float(value[4:]) if value.startswith("lin_") else None
        else:
            number = float(value) if _is_number(value) else None
        if number is None or not 0 < number <= high:  # NaN fails the comparison too
            reader.fail(
                key, f"must be a number in (0, {high:g}] or 'lin_<that number>', got {value!r}"
            )

    return check


def _sac_ent_coef(reader: _Reader, key: str, value: Any) -> None:
    """``auto``, ``auto_<initial value in (0, 10]>`` or a fixed coefficient in [0, 10]."""
    if isinstance(value, str):
        initial = _float(value[5:]) if value.startswith("auto_") else None
        if value != "auto" and not (initial is not None and 0 < initial <= 10):
            reader.fail(
                key, f"must be 'auto', 'auto_<number in (0, 10]>' or in [0, 10], got {value!r}"
            )
        return
    _number(0.0, 10.0)(reader, key, value)


def _target_entropy(reader: _Reader, key: str, value: Any) -> None:
    if value != "auto" and not _is_number(value):
        reader.fail(key, f"must be 'auto' or a number, got {value!r}")


def _train_freq(reader: _Reader, key: str, value: Any) -> None:
    """Every ``n`` steps, or ``[n, step|episode]``."""
    every = value[0] if isinstance(value, list) and len(value) == 2 else value
    try:
        if every is not value and value[1] not in ("step", "episode"):
            reader.fail(key, "")
        _int(1)(reader, key, every)
    except ConfigError:
        raise reader.error_at(
            key, f"must be an integer >= 1 or [integer >= 1, step|episode], got {value!r}"
        ) from None


def _layers(reader: _Reader, key: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        reader.fail(key, f"must be a list of at most {MAX_LAYERS} layer widths, got {value!r}")
    for width in value:
        try:
            _int(1, MAX_LAYER_WIDTH)(reader, key, width)
        except ConfigError:
            raise reader.error_at(
                key, f"layer width {width!r} is not an integer in 1..{MAX_LAYER_WIDTH}"
            ) from None


def _net_arch(parts: tuple[str, str]) -> Check:
    """Hidden layer widths shared by both networks, or a mapping of both ``parts`` (the
    actor's and the critic's: SB3 ignores other keys, and SAC refuses a missing one)."""

    def check(reader: _Reader, key: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            _layers(reader, key, value)
            return
        if set(value) != set(parts):
            reader.fail(key, f"a mapping must have exactly {' and '.join(parts)}, got {value!r}")
        for part, layers in value.items():
            _layers(reader, f"{key}.{part}", layers)

    return check


def _activation(reader: _Reader, key: str, value: Any) -> None:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        reader.fail(key, f"unknown activation {value!r}; valid: {', '.join(ACTIVATIONS)}")


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
    reader: _Reader | None = None,
    env: EnvConfig | None = None,
) -> dict[str, Any]:
    """Check every hyperparameter and policy keyword: known to the algorithm (or its policy),
    settable from YAML, of the right type and range, and (given ``env``) within the size
    limits. Errors name the field and the valid values."""
    reader = reader or _Reader("<hyperparameters>")
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        reader.fail("hyperparameters", f"must be a mapping, got {given!r}")
    cls = algorithm_class(algorithm)
    signature = inspect.signature(cls.__init__).parameters
    checks = HYPERPARAMETERS[algorithm]
    valid = [*sorted(key for key in checks if key in signature), "policy_kwargs"]
    for key, value in given.items():
        name = f"hyperparameters.{key}"
        if key in RESERVED_HYPERPARAMETERS:
            reader.fail(name, "is set by the trainer; remove it")
        if key not in valid:
            problem = (
                "cannot be set in a training config"
                if key in signature
                else f"unknown hyperparameter for {algorithm}"
            )
            reader.fail(name, f"{problem}; valid: {', '.join(valid)}")
        if key != "policy_kwargs":
            checks[key](reader, name, value)
    kwargs = given.get("policy_kwargs")
    if kwargs is not None:
        _check_policy_kwargs(cls, algorithm, policy, kwargs, reader)
    if env is not None:
        _check_sizes(algorithm, signature, given, env, reader)
    return _plain(dict(given))


def _check_policy_kwargs(
    cls: Any, algorithm: str, policy: str, kwargs: Any, reader: _Reader
) -> None:
    key = "hyperparameters.policy_kwargs"
    if not isinstance(kwargs, Mapping):
        reader.fail(key, f"must be a mapping, got {kwargs!r}")
    signature = inspect.signature(cls.policy_aliases[policy].__init__).parameters
    valid = sorted(name for name in POLICY_KWARGS if name in signature)
    for name, value in kwargs.items():
        if name not in valid:
            problem = (
                "cannot be set in a training config"
                if name in signature
                else f"unknown for {policy}"
            )
            reader.fail(f"{key}.{name}", f"{problem}; valid: {', '.join(valid)}")
        check = _net_arch(NET_ARCH_PARTS[algorithm]) if name == "net_arch" else POLICY_KWARGS[name]
        check(reader, f"{key}.{name}", value)
    # combinations the recurrent policy refuses in its constructor
    defaults = {name: signature[name].default for name in valid}
    merged = defaults | dict(kwargs)
    if merged.get("shared_lstm") and merged.get("enable_critic_lstm"):
        reader.fail(
            f"{key}.shared_lstm",
            "a shared LSTM excludes enable_critic_lstm (set it to false), got both true",
        )
    if merged.get("shared_lstm") and not merged.get("share_features_extractor", True):
        reader.fail(f"{key}.shared_lstm", "a shared LSTM needs share_features_extractor: true")


def _check_sizes(
    algorithm: str,
    signature: Mapping[str, Any],
    given: Mapping[str, Any],
    env: EnvConfig,
    reader: _Reader,
) -> None:
    """What SB3 allocates at once (or asserts) from the hyperparameters and ``env.n_envs``."""

    def value(key: str) -> Any:
        return given[key] if key in given else signature[key].default

    if algorithm == "SAC":
        frequency = value("train_freq")
        if isinstance(frequency, list) and frequency[1] == "episode" and env.n_envs > 1:
            reader.fail(
                "hyperparameters.train_freq",
                f"training every episode needs env.n_envs 1, got {env.n_envs}",
            )
        return
    rollout = value("n_steps") * env.n_envs
    if rollout > MAX_ROLLOUT_STEPS:
        reader.fail(
            "hyperparameters.n_steps",
            f"n_steps x env.n_envs = {value('n_steps'):,} x {env.n_envs} = {rollout:,} is over "
            f"the rollout limit of {MAX_ROLLOUT_STEPS:,}",
        )
    if rollout < 2 and value("normalize_advantage"):
        reader.fail(
            "hyperparameters.n_steps",
            "n_steps x env.n_envs must be at least 2 to normalise advantages "
            "(or set normalize_advantage: false)",
        )
    if algorithm == "RecurrentPPO":
        if rollout % value("batch_size") == 1 and value("normalize_advantage"):
            # unlike PPO, it normalises a last minibatch of one step too: by a NaN std
            reader.fail(
                "hyperparameters.batch_size",
                f"n_steps x env.n_envs = {rollout:,} leaves a last minibatch of 1 step with "
                f"batch_size {value('batch_size')}; RecurrentPPO's advantages would turn NaN",
            )
        kwargs = given.get("policy_kwargs") or {}
        hidden = kwargs.get("lstm_hidden_size", 256)
        state = rollout * kwargs.get("n_lstm_layers", 1) * hidden
        if state > MAX_LSTM_STATE:
            reader.fail(
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
def _is_number(value: Any) -> bool:
    """A finite int or float (YAML's booleans are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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


def _check_reference(reference: str, key: str, reader: _Reader) -> None:
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
        raise reader.error_at(key, f"bad scenario {reference!r}: {error}; {shipped}") from error
