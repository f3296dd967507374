"""The env's docstring (Gymnasium's CartPole layout): its observation table is generated from
the feature registry and its arguments table from the signature, so neither can drift from
the code; every section is there; its example runs."""

from __future__ import annotations

import doctest
import inspect
import re

import numpy as np

import tierenv.envs.weighted_interleave as module
from tierenv.contracts.features import GROUPS_BY_NAME, ObservationSpec
from tierenv.envs.weighted_interleave import (
    DEFAULT_SCENARIO,
    WeightedInterleaveEnv,
    arguments_table,
    observation_table,
)

DOC = WeightedInterleaveEnv.__doc__ or ""
SECTIONS = (
    "Description",
    "Action Space",
    "Observation Space",
    "Rewards",
    "Starting State",
    "Seeds",
    "Episode End",
    "Info",
    "Arguments",
    "Example",
    "Version History",
)


def rows(table: str) -> list[list[str]]:
    """A Markdown table's body cells (escaped pipes kept inside their cell)."""
    body = table.strip().splitlines()[2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in body]


def test_the_docstring_has_cartpoles_sections_in_order():
    headers = re.findall(r"^\s*## (.+)$", DOC, flags=re.MULTILINE)
    assert headers == list(SECTIONS)
    assert "[observation table" not in DOC and "[arguments table" not in DOC  # both filled


def test_the_docstring_carries_the_generated_observation_table():
    table = observation_table()
    assert inspect.cleandoc(table) in inspect.cleandoc(DOC)
    assert table in inspect.getdoc(WeightedInterleaveEnv)


def test_every_default_feature_is_in_the_docstring_with_its_index_unit_bounds_and_source():
    env = WeightedInterleaveEnv(DEFAULT_SCENARIO)
    assert env.n_nodes == module.DOC_NODES  # the table shows the default scenario's nodes
    spec = ObservationSpec(env.n_nodes, "default")
    assert env.observation_names == spec.names
    documented = {row[1].strip("`"): row for row in rows(observation_table())}
    assert list(documented) == list(env.observation_names)
    for index, name in enumerate(env.observation_names):
        group = GROUPS_BY_NAME[name.partition("[")[0]]
        row = documented[name]
        assert row == [
            str(index),
            f"``{name}``",
            group.unit,
            f"{group.low:g}..{group.high:g}",
            group.host_source,
        ]
        assert float(env.observation_space.low[index]) == group.low
        assert float(env.observation_space.high[index]) == group.high
        assert f"| {index} | ``{name}`` | {group.unit} |" in DOC
    env.close()


def test_the_privileged_table_flags_the_simulator_only_features():
    privileged = rows(observation_table(3, "privileged"))
    assert len(privileged) == len(ObservationSpec(3, "privileged").names)
    truth = [row for row in privileged if row[1].startswith("``true_")]
    assert truth and all(row[4] == "simulator only (privileged)" for row in truth)


def test_the_arguments_table_gives_every_argument_its_type_and_default():
    signature = inspect.signature(WeightedInterleaveEnv)
    parameters = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    table = rows(arguments_table())
    assert [row[0] for row in table] == [f"``{p.name}``" for p in parameters]
    for row, parameter in zip(table, parameters, strict=True):
        assert row[1].replace("\\|", "|") == f"``{parameter.annotation}``"
        assert row[2] == f"``{parameter.default!r}``"
        # and each one is explained in the list under the table
        assert f"- ``{parameter.name}``: " in DOC, parameter.name
    assert arguments_table() in inspect.getdoc(WeightedInterleaveEnv)


def test_the_host_option_names_in_the_docstring_are_the_dataclass_fields():
    from tierenv.host.backend import HostOptions

    section = DOC.split("- ``host_options``:", 1)[1].split("\n\n", 1)[0]
    names = HostOptions.names()
    listed = [name for name in re.findall(r"``(\w+)``", section) if name in names]
    assert listed[: len(names)] == list(names)  # every field, in order


def test_the_docstring_example_runs():
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(WeightedInterleaveEnv, "WeightedInterleaveEnv", globs={})
    assert test.examples, "the Example section has no >>> lines"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.failed == 0


def test_a_docstring_stripped_by_python_oo_stays_stripped():
    assert module._fill_docstring(None) is None


def test_the_env_is_a_parameterised_gymnasium_env():
    import gymnasium as gym

    assert WeightedInterleaveEnv.__orig_bases__ == (gym.Env[np.ndarray, np.ndarray],)
