"""The command line's layout (issue 21 item 3): one module per subcommand and one table,
SUBCOMMANDS, from which the parser and its description are built, so that neither can
forget a subcommand."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tierenv.cli import SUBCOMMANDS, build_parser, describe, main

NAMES = [command.name for command in SUBCOMMANDS]


def subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a.choices, dict))
    return action.choices


def test_the_table_names_each_subcommand_once() -> None:
    assert len(set(NAMES)) == len(NAMES)
    assert list(subparsers()) == NAMES


def test_the_description_lists_every_subcommand_with_its_help() -> None:
    text = describe()
    for command in SUBCOMMANDS:
        entry = re.search(rf"^  {command.name} +(.+(?:\n {{6,}}.+)*)", text, re.MULTILINE)
        assert entry, command.name
        assert " ".join(entry.group(1).split()) == command.help
    assert build_parser().description == text


def test_the_description_fits_80_columns_and_names_demo_the_main_job() -> None:
    text = describe()
    assert all(len(line) < 80 for line in text.splitlines())
    assert "Start with `tierenv demo`, the main job." in text
    entries = [line for line in text.splitlines() if "main job" in line]
    assert len(entries) == 2 and re.match(r"  demo +the main job", entries[1])


def test_top_level_help_shows_the_description(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert re.search(rf"^  {name} ", out, re.MULTILINE), name


@pytest.mark.parametrize("name", NAMES)
def test_each_subcommand_help_exits_0(capsys, name: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tierenv {name}")
    assert len(out.splitlines()) > 3  # a description or options, not just the usage


def test_scenarios_generate_help_exits_0(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["scenarios", "generate", "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: tierenv scenarios generate")


def test_seeds_help_says_count_or_list() -> None:
    """`compare --seeds 3` runs seeds 0, 1, 2 and `train --seeds 3` seed 3: both forms are
    in use, so each help says which one it takes."""
    choices = subparsers()
    compare = " ".join(choices["compare"].format_help().split())
    train = " ".join(choices["train"].format_help().split())
    assert "--seeds N use seeds 0..N-1" in compare and "a count" in compare
    assert "comma-separated seeds" in train and "--seeds 3 trains seed 3 only" in train


def test_building_the_parser_imports_nothing_heavy() -> None:
    """`tierenv --help` stays fast: the learning and plotting stacks load in `run` only."""
    heavy = ["torch", "stable_baselines3", "optuna", "onnxruntime", "matplotlib", "pandas"]
    code = (
        "import sys; from tierenv.cli import build_parser; build_parser(); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["tierenv", "tierenv.cli"])
def test_python_dash_m_runs_the_command_line(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tierenv")
    assert all(name in result.stdout for name in NAMES)
