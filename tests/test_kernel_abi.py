"""Kernel ABI facts (tierenv.damon.abi) and the places that use them: config parsing and the
fake kernel tree. Expected values follow lib/kstrtox.c and lib/string.c."""

from __future__ import annotations

import errno
import pickle
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tierenv.damon import abi, config
from tierenv.damon.abi import (
    KernelParseError,
    kstrtobool,
    kstrtoint,
    kstrtoll,
    kstrtou8,
    kstrtouint,
    kstrtoul,
    kstrtoull,
    parse_integer,
    sysfs_streq,
)
from tierenv.damon.config import (
    BOOL_WORDS,
    ContextConfig,
    DamonConfigError,
    DamosFilter,
    Dest,
    QuotaGoal,
    Scheme,
    Target,
)
from tierenv.host.damon import KDAMONDS
from tierenv.host.fake_kernel import FakeKernel
from tierenv.host.interleave import WI_DIR
from tierenv.host.sysfs import SysfsError

EINVAL, ERANGE = errno.EINVAL, errno.ERANGE


def outcome(parse, text: str) -> int | bool | str:
    """The parsed value, or the errno's name."""
    try:
        return parse(text)
    except KernelParseError as error:
        return errno.errorcode[error.errno]


# --- kstrtox ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("4096", 4096),
        ("0x1000", 4096),
        ("0X1f", 31),
        ("010", 8),  # a leading 0 is octal
        ("+5", 5),  # one plus sign is allowed
        ("5\n", 5),  # one trailing newline is allowed
        (str(2**64 - 1), 2**64 - 1),
        ("0xffffffffffffffff", 2**64 - 1),
        ("00000000000000000000000001", 1),  # leading zeros never overflow
        ("08", "EINVAL"),  # octal: 8 is trailing garbage
        ("0x", "EINVAL"),  # 0x without a hex digit: octal 0, then "x"
        ("0xg", "EINVAL"),
        ("0x0x1", "EINVAL"),
        ("-5", "EINVAL"),  # no minus sign for unsigned
        ("-0", "EINVAL"),
        ("+-1", "EINVAL"),
        ("++1", "EINVAL"),
        (" 5", "EINVAL"),  # no whitespace
        ("5 ", "EINVAL"),
        ("5\n\n", "EINVAL"),  # only one newline
        ("\n", "EINVAL"),
        ("", "EINVAL"),
        ("1_000", "EINVAL"),  # Python's int() would take these
        ("١٢", "EINVAL"),
        ("5.0", "EINVAL"),
        (str(2**64), "ERANGE"),
        ("0x10000000000000000", "ERANGE"),
        ("99999999999999999999x", "ERANGE"),  # overflow is reported before trailing garbage
    ],
)
def test_kstrtoull(text: str, value: int | str) -> None:
    assert outcome(kstrtoull, text) == value
    assert outcome(kstrtoul, text) == value  # unsigned long is 64 bits wide


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-1", -1),
        ("-0x10", -16),
        ("-010", -8),
        ("+7", 7),
        ("-0", 0),
        ("-", "EINVAL"),
        ("-+1", "EINVAL"),
        ("+-1", "EINVAL"),
        ("--1", "EINVAL"),
        (str(2**63 - 1), 2**63 - 1),
        (str(-(2**63)), -(2**63)),
        (str(2**63), "ERANGE"),
        (str(-(2**63) - 1), "ERANGE"),
    ],
)
def test_kstrtoll(text: str, value: int | str) -> None:
    assert outcome(kstrtoll, text) == value


def test_narrow_types_are_erange_past_their_maximum() -> None:
    assert outcome(kstrtouint, str(2**32 - 1)) == 2**32 - 1
    assert outcome(kstrtouint, str(2**32)) == "ERANGE"
    assert outcome(kstrtouint, "-1") == "EINVAL"
    assert outcome(kstrtou8, "255") == 255
    assert outcome(kstrtou8, "0x100") == "ERANGE"
    assert outcome(kstrtoint, "-2147483648") == -(2**31)
    assert outcome(kstrtoint, "2147483648") == "ERANGE"
    assert outcome(kstrtoint, "-2147483649") == "ERANGE"
    assert outcome(kstrtoint, "0x7fffffff\n") == 2**31 - 1


def test_parse_integer_has_no_range_limit() -> None:
    assert parse_integer(str(2**70)) == 2**70
    assert parse_integer("-0x" + "f" * 20) == -(16**20 - 1)
    assert outcome(parse_integer, "+-1") == "EINVAL"


def test_parse_error_carries_errno_and_pickles() -> None:
    with pytest.raises(KernelParseError) as info:
        kstrtouint("4294967296")
    assert info.value.errno == ERANGE and info.value.function == "kstrtouint"
    copied = pickle.loads(pickle.dumps(info.value))
    assert (copied.errno, copied.text, str(copied)) == (ERANGE, "4294967296", str(info.value))


# An independent statement of the base-0 grammar (what tierenv used before the ABI module).
_GRAMMAR = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\n?")


def _by_grammar(text: str) -> int | None:
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        return None
    sign, digits = match.groups()
    if digits[:2].lower() == "0x":
        number = int(digits[2:], 16)
    else:
        number = int(digits, 8 if digits.startswith("0") else 10)
    return -number if sign == "-" else number


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.text(alphabet="0123456789abcdefxX+-\n 89", max_size=24))
def test_parsers_agree_with_the_grammar(text: str) -> None:
    expected = _by_grammar(text)
    assert outcome(parse_integer, text) == ("EINVAL" if expected is None else expected)
    unsigned = outcome(kstrtoull, text)
    if expected is None or text.startswith("-"):
        assert unsigned in ("EINVAL", "ERANGE")
    else:
        assert unsigned == (expected if expected <= abi.ULLONG_MAX else "ERANGE")
    signed = outcome(kstrtoll, text)
    if expected is not None and abi.LLONG_MIN <= expected <= abi.LLONG_MAX:
        assert signed == expected
    else:
        assert signed in ("EINVAL", "ERANGE")


# --- kstrtobool and sysfs_streq ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Y", True),
        ("y", True),
        ("1", True),
        ("t", True),
        ("True", True),
        ("yellow", True),  # only the first character counts
        ("N", False),
        ("0", False),
        ("f", False),
        ("nope", False),
        ("on", True),
        ("ON", True),
        ("off", False),
        ("of", False),
        ("ofx", False),
        ("o", "EINVAL"),
        ("ox", "EINVAL"),
        (" Y", "EINVAL"),  # no leading whitespace
        ("", "EINVAL"),
        ("maybe", "EINVAL"),
        ("2", "EINVAL"),
        ("enabled", True),  # 6.16
        ("Disabled", False),
    ],
)
def test_kstrtobool(text: str, value: bool | str) -> None:
    assert outcome(kstrtobool, text) == value


def test_kstrtobool_before_6_16_has_no_enabled_disabled() -> None:
    old = lambda text: kstrtobool(text, enabled_disabled=False)  # noqa: E731
    assert outcome(old, "enabled") == "EINVAL"
    assert outcome(old, "disabled") == "EINVAL"
    assert outcome(old, "yes") is True
    assert abi.ENABLED_DISABLED_SINCE == "6.16"


def test_sysfs_streq() -> None:
    assert sysfs_streq("paddr", "paddr")
    assert sysfs_streq("paddr\n", "paddr")
    assert sysfs_streq("paddr", "paddr\n")
    assert not sysfs_streq("paddr\n\n", "paddr")
    assert not sysfs_streq(" paddr", "paddr")
    assert not sysfs_streq("paddr ", "paddr")
    assert not sysfs_streq("PADDR", "paddr")
    assert not sysfs_streq("", "paddr")


# --- One definition of each fact --------------------------------------------------------------


def test_config_reexports_the_abi_facts() -> None:
    for name in (
        "ULONG_MAX",
        "UINT_MAX",
        "MIGRATE_ACTIONS",
        "KERNEL_ACTIONS",
        "GOAL_METRICS",
        "KERNEL_FILTER_TYPES",
        "KERNEL_OPERATIONS",
        "WATERMARK_METRICS",
        "MIN_NR_REGIONS",
        "DAMOS_MAX_SCORE",
    ):
        assert getattr(config, name) is getattr(abi, name), name
    assert set(config.SIMULATED_ACTIONS) <= set(abi.KERNEL_ACTIONS)
    assert set(config.OPERATIONS) <= set(abi.KERNEL_OPERATIONS)
    assert abi.ULONG_MAX == 2**64 - 1 and abi.UINT_MAX == 2**32 - 1 and abi.GiB == 2**30


# --- Config parsing: its own rules, stated against the kernel's -------------------------------


def filter_data(**fields: object) -> dict:
    return {"schemes": [{"action": "stat", "filters": [{"type": "addr", **fields}]}]}


@pytest.mark.parametrize(("word", "value"), sorted(BOOL_WORDS.items()))
def test_config_bool_words_mean_what_kstrtobool_makes_of_them(word: str, value: bool) -> None:
    for spelling in (word, word.upper(), word.capitalize()):
        assert kstrtobool(spelling) is value
        parsed = ContextConfig.from_dict(filter_data(matching=spelling))
        assert parsed.schemes[0].filters[0].matching is value


@pytest.mark.parametrize("word", ["yellow", "nope", "o", "enabled", "2", ""])
def test_config_bools_are_whole_words_not_the_kernel_rule(word: str) -> None:
    # kstrtobool would read most of these (first character); a config file reports them.
    with pytest.raises(DamonConfigError) as info:
        ContextConfig.from_dict(filter_data(allow=word))
    assert info.value.path == "schemes[0].filters[0].allow"
    assert info.value.problem.startswith("expected a bool")


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.text(alphabet="0123456789abcdefxX+-\n 8", min_size=1, max_size=12))
def test_config_integers_use_the_kernel_grammar(text: str) -> None:
    data = {"schemes": [{"action": "migrate_hot", "dests": [{"id": 0, "weight": text}]}]}
    expected = _by_grammar(text)
    try:
        weight = ContextConfig.from_dict(data).schemes[0].dests[0].weight
    except DamonConfigError as error:
        assert error.path == "schemes[0].dests[0].weight"
        if expected is None:
            assert "is not an integer" in error.problem
        else:  # grammatical, but outside the file's unsigned int range: said so
            assert expected < 0 or expected > abi.UINT_MAX
            assert re.search("negative|exceeds the unsigned int maximum", error.problem)
        return
    assert weight == expected


def test_config_negative_numbers_for_unsigned_files_are_named() -> None:
    # The kernel's kstrtouint says only EINVAL; the config names the problem.
    data = {"schemes": [{"action": "migrate_hot", "dests": [{"id": "-1", "weight": 1}]}]}
    with pytest.raises(DamonConfigError, match=r"dests\[0\]\.id: -1 is negative"):
        ContextConfig.from_dict(data)
    data = {"schemes": [{"action": "migrate_cold", "target_nid": "-0x1"}]}
    with pytest.raises(DamonConfigError, match="has no destination"):  # int file: -1 parses
        ContextConfig.from_dict(data)


def _keys(node: object) -> object:
    if isinstance(node, dict):
        return {key: _keys(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_keys(item) for item in node[:1]]
    return None


def test_module_docstring_schema_matches_the_declarations() -> None:
    block = config.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    schema = yaml.safe_load(textwrap.dedent(block))
    full = ContextConfig(
        targets=(Target(1, ((0, 4096),)),),
        schemes=(
            Scheme(
                "migrate_hot",
                dests=(Dest(0, 1),),
                filters=(DamosFilter("addr"),),
                quotas=config.Quotas(goals=(QuotaGoal("user_input", 1),)),
            ),
        ),
    )
    assert _keys(schema) == _keys(full.to_dict())
    assert list(schema) == list(full.to_dict())  # same order, too


def test_validate_rechecks_nested_fields_without_a_context_variable() -> None:
    scheme = Scheme("migrate_hot", dests=(Dest(0, 1),))
    object.__setattr__(scheme.dests[0], "weight", -3)  # bypass the frozen guard
    built = ContextConfig(schemes=(scheme,))  # building does not look inside built children
    built.validate(recheck_fields=False)
    with pytest.raises(DamonConfigError, match=r"^schemes\[0\]\.dests\[0\]\.weight: -3"):
        built.validate()
    assert not hasattr(config, "_RECHECK_CHILDREN")


# --- The fake kernel applies the kernel's rules -----------------------------------------------

FILTER = f"{KDAMONDS}/0/contexts/0/schemes/0/filters/0"


def fake_with_filter(tmp_path: Path, kernel: str = "7.3") -> FakeKernel:
    fk = FakeKernel(tmp_path, kernel=kernel)
    fk.root.write(f"{KDAMONDS}/nr_kdamonds", "1")
    fk.root.write(f"{KDAMONDS}/0/contexts/nr_contexts", "1")
    fk.root.write(f"{KDAMONDS}/0/contexts/0/schemes/nr_schemes", "1")
    fk.root.write(f"{KDAMONDS}/0/contexts/0/schemes/0/filters/nr_filters", "1")
    return fk


def write_errno(fk: FakeKernel, rel: str, text: str) -> int | None:
    try:
        fk.root.write(rel, text)
    except SysfsError as error:
        return error.errno
    return None


@pytest.mark.parametrize(
    ("word", "shown"), [("Y", "Y"), ("true", "Y"), ("on", "Y"), ("1\n", "Y"), ("no", "N")]
)
def test_fake_filter_booleans_take_kstrtobool_words_and_show_y_n(
    tmp_path: Path, word: str, shown: str
) -> None:
    # Bug fix: the fake took only Y/N/1/0 and stored the text as written; the kernel's
    # matching_store/allow_store use kstrtobool and the files show Y or N.
    fk = fake_with_filter(tmp_path)
    for name in ("matching", "allow"):
        assert write_errno(fk, f"{FILTER}/{name}", word) is None
        assert fk.root.read(f"{FILTER}/{name}") == shown
    assert write_errno(fk, f"{FILTER}/allow", "maybe") == EINVAL
    assert write_errno(fk, f"{FILTER}/allow", " Y") == EINVAL


def test_fake_kstrtobool_follows_the_kernel_version(tmp_path: Path) -> None:
    new = fake_with_filter(tmp_path / "new", kernel="6.18")
    assert write_errno(new, f"{FILTER}/matching", "disabled") is None
    assert new.root.read(f"{FILTER}/matching") == "N"
    old = fake_with_filter(tmp_path / "old", kernel="6.12")
    assert write_errno(old, f"{FILTER}/matching", "disabled") == EINVAL
    auto = FakeKernel(tmp_path / "auto", kernel="7.3", auto_weights=[2, 1])
    assert write_errno(auto, f"{WI_DIR}/auto", "enabled") is None
    assert auto.root.read(f"{WI_DIR}/auto") == "true"


def test_fake_keywords_compare_as_sysfs_streq(tmp_path: Path) -> None:
    # Bug fix: the fake stripped spaces before comparing; the kernel's sysfs_streq does not.
    fk = fake_with_filter(tmp_path)
    ops = f"{KDAMONDS}/0/contexts/0/operations"
    assert write_errno(fk, ops, "paddr\n") is None
    assert fk.root.read(ops) == "paddr"
    for text in (" paddr", "paddr ", "paddr\n\n"):
        assert write_errno(fk, ops, text) == EINVAL, text
    assert write_errno(fk, f"{FILTER}/type", "addr ") == EINVAL
    assert write_errno(fk, f"{KDAMONDS}/0/contexts/0/schemes/0/action", " stat") == EINVAL
    assert write_errno(fk, f"{KDAMONDS}/0/state", "on ") == EINVAL


def test_fake_integer_files_take_one_newline_and_report_the_parsers_errno(
    tmp_path: Path,
) -> None:
    fk = fake_with_filter(tmp_path)
    weight = f"{KDAMONDS}/0/contexts/0/schemes/0/quotas/weights/age_permil"
    assert write_errno(fk, weight, "0x10\n") is None
    assert fk.root.read(weight) == "16"
    assert write_errno(fk, weight, "5\n\n") == EINVAL  # bug fix: the fake took two newlines
    assert write_errno(fk, weight, str(2**32)) == ERANGE
    nid = f"{KDAMONDS}/0/contexts/0/schemes/0/target_nid"
    assert write_errno(fk, nid, "-1") is None
    assert write_errno(fk, nid, str(2**31)) == ERANGE
    nr = f"{KDAMONDS}/0/contexts/0/schemes/0/dests/nr_dests"
    assert write_errno(fk, nr, "-1") == EINVAL
    assert write_errno(fk, nr, str(2**31)) == ERANGE  # kstrtoint overflow, as the kernel
    node = f"{WI_DIR}/node0"
    assert write_errno(fk, node, "256") == EINVAL  # node_store: any kstrtou8 error is EINVAL
    assert write_errno(fk, node, "0x7") is None and fk.root.read(node) == "7"
