"""The shared config-error module (tierenv.schema): errors name the source, the line and the
path of the field; the typed accessors say what was expected; every config reader's error
class shares the base."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable

import pytest

from experiments.compare.config import ConfigError, config_from_dict
from tierenv.damon.config import ContextConfig, DamonConfigError
from tierenv.host.config import HostConfigError, parse_host_config
from tierenv.schema import (
    REQUIRED,
    Reader,
    SchemaError,
    TomlReader,
    field_message,
    join_path,
)
from tierenv.workload.scenario import ScenarioError, parse_scenario

# Two applications, so that a path must find the second [[apps]] header, not the first.
TWO_APPS = """\
name = "two"
[[apps]]
name = "a"
[apps.distribution]
kind = "zipf"
[[apps]]
name = "b"
mlp = 3
[apps.distribution]
kind = "hotcold"
hot_share = 0.9
"""


def failure_of(action: Callable[[], object]) -> SchemaError:
    """The SchemaError ``action`` raises (the test fails if it raises none)."""
    with pytest.raises(SchemaError) as info:
        action()
    return info.value


# --- the error --------------------------------------------------------------------------------


def test_the_message_names_source_line_path_and_problem() -> None:
    error = SchemaError("-1 is too small", "apps[1].mlp", "tiny.toml", 12)
    assert str(error) == "tiny.toml:12: apps[1].mlp: -1 is too small"
    assert (error.problem, error.path, error.source, error.line) == (
        "-1 is too small",
        "apps[1].mlp",
        "tiny.toml",
        12,
    )
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("bad", "x.y", "f.toml", None), "f.toml: x.y: bad"),  # no line: source alone
        (("bad", "x.y", None, 3), "x.y: bad"),  # a line means nothing without its file
        (("bad", "", "f.toml", None), "f.toml: bad"),  # the file as a whole
        (("f.toml: cannot read", "", None, None), "f.toml: cannot read"),  # a bare message
    ],
)
def test_unknown_parts_are_left_out(parts: tuple, message: str) -> None:
    assert field_message(*parts) == message
    assert str(SchemaError(*parts)) == message


@pytest.mark.parametrize(
    "error",
    [
        ScenarioError("unknown key", "apps[0].speed", "tiny.toml", 8),
        DamonConfigError("schemes[0].action", "unknown action 'x'", "tier.yaml"),
        ConfigError("bare message from read_yaml"),
    ],
)
def test_errors_pickle_whatever_the_constructor_order(error: SchemaError) -> None:
    """Vectorised envs send errors between processes; DamonConfigError takes the path first."""
    copied = pickle.loads(pickle.dumps(error))
    assert type(copied) is type(error)
    assert str(copied) == str(error)
    assert (copied.problem, copied.path, copied.source, copied.line) == (
        error.problem,
        error.path,
        error.source,
        error.line,
    )


@pytest.mark.parametrize(
    "cls", [ScenarioError, HostConfigError, ConfigError, DamonConfigError], ids=lambda c: c.__name__
)
def test_every_config_error_shares_the_base(cls: type) -> None:
    assert issubclass(cls, SchemaError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(
    ("prefix", "key", "path"),
    [
        ("", "name", "name"),
        ("apps", "", "apps"),
        ("apps", "[1]", "apps[1]"),
        ("apps[1]", "distribution", "apps[1].distribution"),
    ],
)
def test_join_path(prefix: str, key: str, path: str) -> None:
    assert join_path(prefix, key) == path


# --- where: the line of a key path in TOML text -------------------------------------------------


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("name", 1),
        ("apps[1].distribution.kind", 10),  # the second app's, not the first's (line 5)
        ("apps[0].distribution.kind", 5),
        ("apps[1].mlp", 8),
        ("apps[1].think_ns", 6),  # a key not written: the header of its table
    ],
)
def test_toml_errors_name_the_line_of_the_path(path: str, line: int) -> None:
    error = failure_of(lambda: TomlReader(TWO_APPS, "two.toml").fail(path, "bad"))
    assert error.line == line
    assert str(error) == f"two.toml:{line}: {path}: bad"


def test_a_table_that_is_not_there_has_no_line() -> None:
    error = failure_of(lambda: TomlReader(TWO_APPS, "two.toml").fail("nodes[0].profile", "bad"))
    assert error.line is None and str(error) == "two.toml: nodes[0].profile: bad"


def test_malformed_toml_names_the_source() -> None:
    with pytest.raises(ScenarioError, match=r"^bad\.toml: not valid TOML: "):
        TomlReader('name = "x"\nname = "y"\n', "bad.toml", ScenarioError).load()


def test_a_reader_raises_its_readers_error_class() -> None:
    with pytest.raises(HostConfigError) as info:
        TomlReader(TWO_APPS, "two.toml", HostConfigError).fail("name", "bad")
    assert info.value.path == "name" and info.value.line == 1


def test_an_error_class_outside_the_family_gets_the_same_message() -> None:
    class PlainError(ValueError):
        pass

    with pytest.raises(PlainError, match=re.escape("two.toml:8: apps[1].mlp: bad")):
        TomlReader(TWO_APPS, "two.toml", PlainError).fail("apps[1].mlp", "bad")


# --- what: the typed accessors ----------------------------------------------------------------


def test_unknown_keys_are_named_with_the_valid_ones_listed() -> None:
    reader = Reader("c.yaml")
    table = {"name": "x", "colour": 1, "size": 2}
    error = failure_of(lambda: reader.keys(table, ("name", "seeds"), "top"))
    assert str(error) == "c.yaml: top.colour: unknown key; expected one of name, seeds"
    reader.keys({"name": 1}, ("name", "seeds"), "top")  # known keys pass


def test_a_reader_keeps_its_wording_for_unknown_keys() -> None:
    reader = Reader("c.yaml", unknown_key="unknown field; valid are")
    error = failure_of(lambda: reader.keys({7: 1}, ("name",), ""))
    assert str(error) == "c.yaml: 7: unknown field; valid are name"


def test_required_and_optional_keys() -> None:
    reader = Reader("c.yaml")
    assert reader.value({"a": 1}, "a", "t") == 1
    assert reader.value({}, "a", "t", default=None) is None
    assert str(failure_of(lambda: reader.value({}, "a", "t", REQUIRED))) == (
        "c.yaml: t.a: missing (required)"
    )
    # the typed accessors: no default means required, a default is returned as given
    assert str(failure_of(lambda: reader.number({}, "n", "t"))) == "c.yaml: t.n: missing (required)"
    assert reader.number({}, "n", "t", default=2.5) == 2.5
    assert reader.boolean({}, "b", "t", default=False) is False


@pytest.mark.parametrize(
    ("value", "limits", "problem"),
    [
        (True, {}, "expected a number, got True"),
        ("3", {}, "expected a number, got '3'"),
        (float("nan"), {}, "expected a finite number, got nan"),
        (10**400, {}, "expected a finite number"),
        (-1, {"low": 0}, "-1 is too small; must be >= 0"),
        (0, {"low": 0, "strict": True}, "0 is too small; must be > 0"),
        (1.5, {"high": 1.0}, "1.5 is too large; must be <= 1.0"),
    ],
)
def test_number_messages(value: object, limits: dict, problem: str) -> None:
    error = failure_of(lambda: Reader("c.yaml").number({"x": value}, "x", "t", **limits))
    assert error.path == "t.x"
    assert error.problem.startswith(problem), error.problem


def test_numbers_in_range_pass() -> None:
    reader = Reader("c.yaml")
    assert reader.number({"x": 0}, "x", "", low=0) == 0.0
    assert reader.number({"x": 1}, "x", "", low=0, high=1, strict=True) == 1.0


def test_whole_numbers() -> None:
    reader = Reader("c.toml")
    assert reader.integer({"n": 4.0}, "n", "", low=1) == 4
    assert reader.integer({"n": 2**60 + 1}, "n", "", low=1) == 2**60 + 1  # exact, not via float
    assert failure_of(lambda: reader.integer({"n": 4.5}, "n", "", low=1)).problem == (
        "expected a whole number, got 4.5"
    )
    assert failure_of(lambda: reader.integer({"n": 0}, "n", "", low=1)).problem.startswith(
        "0 is too small"
    )


def test_text_booleans_and_sizes() -> None:
    reader = Reader("c.toml")
    assert reader.string({"s": "x"}, "s", "") == "x"
    assert failure_of(lambda: reader.string({"s": 3}, "s", "t")).problem == "expected text, got 3"
    assert failure_of(lambda: reader.boolean({"b": 1}, "b", "t")).problem == (
        "expected true or false, got 1"
    )
    assert reader.size({"s": "16 GiB"}, "s", "") == 16 << 30
    error = failure_of(lambda: reader.size({"s": "lots"}, "s", "apps[0]"))
    # parse_size names the field itself: the message names it once
    assert str(error).count("apps[0].s") == 1 and error.path == "apps[0].s"


def test_toml_tables() -> None:
    reader = TomlReader("damos = 3\n", "s.toml")
    assert reader.table({}, "damos") == {}
    assert reader.tables({}, "apps") == []
    assert str(failure_of(lambda: reader.table({"damos": 3}, "damos"))) == (
        "s.toml:1: damos: expected a table ([damos]), got 3"
    )
    assert failure_of(lambda: reader.tables({"apps": {"a": 1}}, "apps")).problem.startswith(
        "expected a list of tables ([[apps]])"
    )


# --- the readers built on it ------------------------------------------------------------------


def test_a_scenario_error_carries_its_parts() -> None:
    text = 'name = "t"\nduration_s = 10\n[[nodes]]\nprofile = "bytedance-ddr5-snc"\n'
    text += 'capacity = "4 GiB"\n[[apps]]\nname = "a"\nworking_set = "1 GiB"\nmlp = 0\n'
    text += "think_ns = 5\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="t.toml")
    assert (info.value.source, info.value.line, info.value.path) == ("t.toml", 9, "apps[0].mlp")
    assert info.value.problem == "0 is too small; must be > 0.0"


def test_a_host_config_error_carries_its_parts() -> None:
    with pytest.raises(HostConfigError) as info:
        parse_host_config(
            '[[nodes]]\nprofile = "generic-cxl-x8"\n[perf]\nspawn = "yes"\n', "h.toml"
        )
    assert (info.value.line, info.value.path) == (4, "perf.spawn")


def test_a_compare_config_error_carries_its_parts() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"name": "x", "colour": 1}, source="exp.yaml")
    assert (info.value.source, info.value.path, info.value.line) == ("exp.yaml", "colour", None)


def test_a_damon_error_carries_its_source_and_nested_path() -> None:
    data = {"schemes": [{"action": "stat", "quotas": {"weight": 1}}]}
    with pytest.raises(DamonConfigError) as info:
        ContextConfig.from_dict(data, source="tier.yaml")
    assert (info.value.source, info.value.path) == ("tier.yaml", "schemes[0].quotas.weight")
    assert str(info.value).startswith("tier.yaml: schemes[0].quotas.weight: unknown key;")
