"""Experiment configs for ``tierenv compare``: which policies, on which scenarios, over which
seeds. A YAML file, checked on load; every error names the file, the field and the problem.

```yaml
name: baselines                 # results go to results/compare/<name>/ unless --out says
description: every baseline controller on every shipped scenario
scenarios: all                  # or shipped names, scenario files, folders or globs of them
                                # (paths: beside the config when there, else from the
                                # working directory, as for training configs)
seeds: 5                        # seeds 0..4, or an explicit list [0, 1, 2]
env:                            # arguments of WeightedInterleaveEnv (optional)
  migration_cost_per_gib: 0.1
  initial_weights: auto
policies:                       # each: a unique name, a kind, the kind's parameters
  - {name: static-best, kind: static-best, levels: 17}
  - {name: kernel-auto, kind: kernel-auto}
  - {name: colloid, kind: colloid}
  - {name: ppo, kind: sb3, path: "runs/train/ppo-default/seed{index}"}  # {seed}, {index}
reference: static-best          # probability of improvement is measured against it
upper_bound: true               # compute the per-interval upper bound (simulator only)
timeseries_seed: 0              # the seed whose weights-over-time are plotted (null: none)
```

``kind: static-best`` is the best static weights in hindsight: every weight vector of the
discrete grid (``levels`` per node, as ``tierenv/WeightedInterleave-Discrete-v0``) runs on
every seed of the scenario, and the one with the highest mean return is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tierenv.files import read_yaml
from tierenv.schema import Reader, SchemaError
from tierenv.workload.scenario import load_scenario, scenario_files, shipped_scenario_names

STATIC_BEST = "static-best"
ENV_KEYS = ("migration_cost_per_gib", "initial_weights")
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "scenarios",
    "seeds",
    "env",
    "policies",
    "reference",
    "upper_bound",
    "timeseries_seed",
)
#: How an unknown field is reported (YAML configs say field, where TOML files say key).
UNKNOWN_FIELD = "unknown field; valid are"


class ConfigError(SchemaError):
    """An experiment config that cannot run; the message names the file and field."""


@dataclass(frozen=True)
class PolicySpec:
    """One policy of an experiment: a unique ``name`` (its label in tables and plots), a
    ``kind`` (a controller kind, ``static-best``, or later a learned-policy kind) and the
    kind's parameters."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CompareConfig:
    name: str
    scenarios: tuple[str, ...]  # as given: shipped names or scenario file paths
    seeds: tuple[int, ...]
    policies: tuple[PolicySpec, ...]
    env: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    upper_bound: bool = True
    timeseries_seed: int | None = 0  # None: no weights-over-time plots
    description: str = ""
    source: str = "<config>"  # the file it came from (for messages and provenance)
    text: str = ""  # the file's text, copied into the results

    @cached_property
    def scenario_names(self) -> tuple[str, ...]:
        """Each scenario's own name (what results files and tables show); read once."""
        return tuple(load_scenario(ref).name for ref in self.scenarios)

    @property
    def policy_names(self) -> tuple[str, ...]:
        return tuple(policy.name for policy in self.policies)

    def yaml_text(self) -> str:
        """The config as YAML: the file's own text when it came from one, else the fields."""
        if self.text:
            return self.text
        data = {
            "name": self.name,
            "description": self.description,
            "scenarios": list(self.scenarios),
            "seeds": list(self.seeds),
            "env": self.env,
            "policies": [{"name": p.name, "kind": p.kind, **p.params} for p in self.policies],
            "reference": self.reference,
            "upper_bound": self.upper_bound,
            "timeseries_seed": self.timeseries_seed,
        }
        return yaml.safe_dump(data, sort_keys=False)


def load_config(path: str | Path) -> CompareConfig:
    """Read and check an experiment config file."""
    data, text = read_yaml(path, "experiment config", ConfigError)
    return config_from_dict(data, source=str(path), text=text)


def config_from_dict(data: Any, source: str = "<config>", text: str = "") -> CompareConfig:
    """Check a parsed config (a mapping as in the module docstring)."""
    reader = Reader(source, ConfigError, unknown_key=UNKNOWN_FIELD)
    if not isinstance(data, dict):
        reader.fail("", f"expected a mapping of fields, got {type(data).__name__}")
    reader.keys(data, TOP_LEVEL_KEYS, "")
    for required in ("name", "scenarios", "seeds", "policies"):
        reader.value(data, required, "")

    name = data["name"]
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        reader.fail("name", f"must be a plain non-empty name (it names a folder), got {name!r}")

    scenarios = _scenarios(data["scenarios"], reader, _roots(source))
    seeds = _seeds(data["seeds"], reader)
    env = _env(data.get("env") or {}, reader)
    policies = _policies(data["policies"], reader)
    names = [policy.name for policy in policies]

    reference = data.get("reference")
    if reference is None and any(policy.kind == STATIC_BEST for policy in policies):
        reference = next(policy.name for policy in policies if policy.kind == STATIC_BEST)
    if reference is not None and reference not in names:
        reader.fail("reference", f"{reference!r} is not a policy; policies are {', '.join(names)}")

    upper_bound = reader.boolean(data, "upper_bound", "", default=True)
    timeseries_seed = data.get("timeseries_seed", seeds[0])
    if timeseries_seed is not None and timeseries_seed not in seeds:
        reader.fail("timeseries_seed", f"{timeseries_seed!r} is not one of the seeds {seeds}")
    description = reader.string(data, "description", "", default="")
    return CompareConfig(
        name=name,
        scenarios=scenarios,
        seeds=seeds,
        policies=policies,
        env=env,
        reference=reference,
        upper_bound=upper_bound,
        timeseries_seed=None if timeseries_seed is None else int(timeseries_seed),
        description=description.strip(),
        source=source,
        text=text,
    )


def _roots(source: str) -> list[Path]:
    """Where relative paths of a config are looked up: beside the config file, then the
    working directory."""
    folder = Path(source).parent
    return [folder, Path()] if Path(source).is_file() else [Path()]


def resolve_path(path: str, source: str) -> str:
    """A file a config names: beside the config when it is there, else as given."""
    return _first_file(path, _roots(source))


def _first_file(path: str, roots: list[Path]) -> str:
    for root in roots:
        if (root / path).is_file():
            return str(root / path)
    return path


def _scenarios(value: Any, reader: Reader, roots: list[Path]) -> tuple[str, ...]:
    if value == "all":
        return tuple(shipped_scenario_names())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        reader.fail("scenarios", "must be 'all' or a non-empty list of scenario names or files")
    names: list[str] = []
    refs: list[str] = []
    for item in value:
        if not isinstance(item, str):
            reader.fail("scenarios", f"{item!r} is not a scenario name or file")
        files = scenario_files(item, roots)  # a folder or a glob of scenario files
        if files is not None:
            if not files:
                what = "folder" if Path(item).is_dir() else "pattern"
                reader.fail("scenarios", f"{what} {item} names no scenario files (*.toml)")
            refs.extend(files)
            for file in files:
                try:
                    names.append(load_scenario(file).name)
                except (ValueError, OSError) as err:
                    raise reader.error_at("scenarios", str(err)) from err
            continue
        if item not in shipped_scenario_names():
            item = _first_file(item, roots)
        refs.append(item)
        try:
            names.append(load_scenario(item).name)
        except (ValueError, OSError) as err:
            raise reader.error_at("scenarios", str(err)) from err
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        reader.fail("scenarios", f"two scenarios are named {twice[0]!r}")
    return tuple(refs)


def _seeds(value: Any, reader: Reader) -> tuple[int, ...]:
    if isinstance(value, bool):
        reader.fail("seeds", f"must be a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            reader.fail("seeds", f"a count must be at least 1, got {value}")
        return tuple(range(value))
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        reader.fail("seeds", f"must be a count or a list of integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        reader.fail("seeds", "lists a seed twice")
    return tuple(value)


def _env(value: Any, reader: Reader) -> dict[str, Any]:
    if not isinstance(value, dict):
        reader.fail("env", "must be a mapping of WeightedInterleaveEnv arguments")
    reader.keys(value, ENV_KEYS, "env")
    if value.get("migration_cost_per_gib") is not None:  # null is left to the env to judge
        reader.number(value, "migration_cost_per_gib", "env", low=0)
    return dict(value)


def _policies(value: Any, reader: Reader) -> tuple[PolicySpec, ...]:
    if not isinstance(value, list) or not value:
        reader.fail("policies", "must be a non-empty list of {name, kind, ...parameters}")
    policies = []
    for index, item in enumerate(value):
        where = f"policies[{index}]"
        if not isinstance(item, dict):
            reader.fail(where, f"must be a mapping with name and kind, got {item!r}")
        params = dict(item)
        name, kind = params.pop("name", None), params.pop("kind", None)
        if not isinstance(name, str) or not name:
            reader.fail(f"{where}.name", "missing or empty")
        if not isinstance(kind, str) or not kind:
            reader.fail(f"{where}.kind", f"missing or empty (policy {name!r})")
        policies.append(PolicySpec(name, kind, params))
    names = [policy.name for policy in policies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        reader.fail("policies", f"policy name {duplicates[0]!r} is used twice")
    return tuple(policies)
