"""Command-line errors come early and say what is wrong (issue 19 item 10, the CLI's part):
an output place that cannot be written fails before minutes of work, an out-of-range number
is refused naming its option, and a binary file given as TOML or YAML is named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tierenv.cli import build_parser, main
from tierenv.cli.interleave import MAX_MLP

REPO = Path(__file__).resolve().parents[1]
BINARY = b"\xff\xfe\x00\x80 not text"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, command: str) -> str:
    assert err.startswith(f"tierenv {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def never(what: str):
    def refuse(*_, **__):
        raise AssertionError(f"{what} started before its output place was checked")

    return refuse


# --- Help text --------------------------------------------------------------------------------


def test_no_help_shows_a_doubled_percent_sign(capsys) -> None:
    """calibrate's help printed "98%%" (and compare's "95%%"): descriptions are not
    %-formatted, only the options' help is."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "calibrate" in a.choices)
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        assert "%%" not in text, name
    assert "98% of peak" in re.sub(r"\s+", " ", subparsers.choices["calibrate"].format_help())


# --- Output places checked first -----------------------------------------------------------


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize("option", ["--out", "--runs"])
@pytest.mark.parametrize("under", [False, True])
def test_demo_refuses_a_file_for_a_folder_at_once(
    monkeypatch, capsys, a_file: Path, option: str, under: bool
) -> None:
    """`demo --out FILE` failed only after the training, minutes later."""
    import experiments.demo

    monkeypatch.setattr(experiments.demo, "run_demo", never("the demo"))
    place = a_file / "sub" if under else a_file
    code, _, err = run(capsys, "demo", option, str(place))
    assert code == 2
    problem = f"cannot be written, {a_file} is not a folder" if under else "is not a folder"
    assert f"{option} {place}: " in one_error_line(err, "demo") and problem in err


@pytest.mark.parametrize("under", [False, True])
def test_report_refuses_a_file_for_results_at_once(
    monkeypatch, capsys, a_file: Path, under: bool
) -> None:
    import tierenv.hardware.shipped

    monkeypatch.setattr(tierenv.hardware.shipped, "build", never("the report"))
    shared = a_file.parent / "shared"
    (shared / "data").mkdir(parents=True)
    place = a_file / "sub" if under else a_file
    code, _, err = run(capsys, "report", "--shared", str(shared), "--results", str(place))
    assert code == 2
    assert f"--results {place}: " in one_error_line(err, "report")


def test_bench_refuses_a_folder_for_its_table_at_once(monkeypatch, capsys, tmp_path) -> None:
    import experiments.bench_env

    monkeypatch.setattr(experiments.bench_env, "run_benchmark", never("the benchmark"))
    code, _, err = run(capsys, "bench", "--out", str(tmp_path))
    assert code == 2
    assert f"--out {tmp_path}: is a folder; name a file" in one_error_line(err, "bench")


def test_compare_refuses_a_file_for_its_results_at_once(monkeypatch, capsys, a_file) -> None:
    import experiments.compare.runner

    monkeypatch.setattr(experiments.compare.runner, "run_compare", never("the comparison"))
    config = REPO / "experiments" / "baselines.yaml"
    code, _, err = run(capsys, "compare", str(config), "--out", str(a_file))
    assert code == 2
    assert f"--out {a_file}: exists and is not a folder" in one_error_line(err, "compare")


# --- Numbers out of range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--mlp", "1e308"), ("--mlp", "inf"), ("--mlp", str(2 * MAX_MLP)), ("--think-ns", "1e308")],
)
def test_interleave_refuses_a_huge_number_naming_the_option(capsys, option, value) -> None:
    """--mlp 1e308 gave "Array must not contain infs or NaNs" without the option."""
    code, out, err = run(capsys, "interleave", option, value)
    assert code == 2 and out == ""
    assert f"{option} {float(value):g}: " in one_error_line(err, "interleave")


def test_interleave_takes_the_largest_mlp(capsys) -> None:
    code, out, _ = run(capsys, "interleave", "--mlp", f"{MAX_MLP:g}", "--max-weight", "1")
    assert code == 0 and "inf" not in out and "nan" not in out


# --- Binary files given as TOML or YAML ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["profiles", "{toml}"],
        ["interleave", "--ddr", "{toml}"],
        ["interleave", "--nodes", "{toml},generic-cxl-x8"],
        ["scenarios", "{toml}"],
        ["simulate", "{toml}"],
        ["scenarios", "generate", "{toml}", "--out", "{tmp}/drawn"],
        ["fakehost", "{tmp}/tree", "--scenario", "{toml}"],
        ["compare", "{yaml}", "--out", "{tmp}/results"],
    ],
    ids=lambda argv: " ".join(a for a in argv[:3] if "{" not in a),
)
def test_a_binary_config_is_named(tmp_path: Path, capsys, argv: list[str]) -> None:
    """These printed "'utf-8' codec can't decode byte 0xff in position 0" and no file."""
    places = {"toml": tmp_path / "binary.toml", "yaml": tmp_path / "binary.yaml", "tmp": tmp_path}
    places["toml"].write_bytes(BINARY)
    places["yaml"].write_bytes(BINARY)
    argv = [a.format(**places) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    line = one_error_line(err, argv[0])
    assert re.search(r"binary\.(toml|yaml): .*(UTF-8|text)", line), line
    assert not (tmp_path / "drawn").exists() and not (tmp_path / "tree").exists()


def test_a_binary_training_config_is_named(tmp_path: Path, capsys) -> None:
    config = tmp_path / "binary.yaml"
    config.write_bytes(BINARY)
    code, _, err = run(capsys, "train", str(config), "--runs", str(tmp_path / "runs"))
    assert code == 2
    assert f"{config}: " in one_error_line(err, "train") and "UTF-8" in err


def test_daemon_param_that_is_not_json_names_the_option(tmp_path) -> None:
    """--param values are JSON; a malformed one is named with the option, not a raw
    JSONDecodeError (issue 19 item 10)."""
    import subprocess
    import sys

    for item, expected in (
        ("weights=[7,2", "--param 'weights=[7,2': value '[7,2' is not JSON"),
        ("weights", "--param 'weights': expected NAME=JSON"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tierenv", "daemon", "--sysfs-root", str(tmp_path / "sys"),
             "--host-config", str(tmp_path / "host.toml"), "--controller", "static",
             "--param", item],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_loaders_name_binary_files(tmp_path) -> None:
    from tierenv.files import read_yaml
    from tierenv.host.config import HostConfigError, load_host_config
    from tierenv.workload.scenario import ScenarioError, load_scenario

    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match=r"bin\.toml: not a UTF-8 text file"):
        load_scenario(binary)
    with pytest.raises(HostConfigError, match=r"bin\.toml: not a UTF-8 text file"):
        load_host_config(binary)
    with pytest.raises(ValueError, match=r"bin\.toml: not a UTF-8 text file"):
        read_yaml(binary, "experiment config")
