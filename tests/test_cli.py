"""The `tierenv` command line as a user runs it."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from tierenv.cli import main
from tierenv.hardware.profile import load_profile, profile_from_dict, shipped_profile_names

SUBCOMMANDS = ("profiles", "calibrate", "validate", "interleave")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- Help and entry points --------------------------------------------------------------------


def test_help_lists_the_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tierenv")
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", out, re.MULTILINE), name


def test_no_subcommand_prints_help_and_fails(capsys) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "calibrate" in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(capsys, name: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tierenv {name}")


def test_unknown_subcommand_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "frobnicate" in capsys.readouterr().err


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tierenv.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_installed_console_script() -> None:
    script = Path(sysconfig.get_path("scripts")) / "tierenv"
    assert script.exists(), f"console script not installed at {script}"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tierenv")
    for name in SUBCOMMANDS:
        assert name in result.stdout


# --- profiles ---------------------------------------------------------------------------------


def test_profiles_lists_every_shipped_profile(capsys) -> None:
    code, out, err = run(capsys, "profiles")
    assert code == 0 and err == ""
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["name", "kind"]
    names = shipped_profile_names()
    assert [row.split()[0] for row in rows] == names
    for row in rows:
        name, kind, idle, reads, mixed = row.split()[:5]
        profile = load_profile(name)
        assert kind == profile.kind
        assert float(idle) == pytest.approx(profile.idle_latency_ns, abs=0.05)
        assert float(reads) == pytest.approx(float(profile.saturation_gbps(1.0)), abs=0.05)
        assert float(mixed) == pytest.approx(float(profile.saturation_gbps(0.75)), abs=0.05)


def test_profiles_shows_one_profile_as_toml(capsys) -> None:
    code, out, _ = run(capsys, "profiles", "generic-cxl-x8")
    assert code == 0
    data = tomllib.loads(out)
    assert data["name"] == "generic-cxl-x8" and data["kind"] == "cxl"
    shown = profile_from_dict(data, "<stdout>")
    shipped = load_profile("generic-cxl-x8")
    for r in (0.0, 0.3, 0.58, 0.75, 1.0):
        capacity = float(shipped.saturation_gbps(r))
        assert float(shown.saturation_gbps(r)) == pytest.approx(capacity, rel=1e-5)
        grid = np.linspace(0, 0.95 * capacity, 10)
        np.testing.assert_allclose(shown.latency_ns(grid, r), shipped.latency_ns(grid, r), 1e-5)


def test_profiles_shows_a_profile_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "mine.toml"
    load_profile("bytedance-cxl-asic").scaled(0.5, name="half-asic").save(path)
    code, out, _ = run(capsys, "profiles", str(path))
    assert code == 0
    assert tomllib.loads(out)["name"] == "half-asic"


def test_profiles_unknown_name(capsys) -> None:
    code, out, err = run(capsys, "profiles", "nope")
    assert code == 2
    assert out == ""
    assert err.startswith("tierenv profiles: error: unknown profile 'nope'")
    for name in shipped_profile_names():
        assert name in err


def test_profiles_bad_file_names_file_and_field(tmp_path: Path, capsys) -> None:
    data = load_profile("generic-cxl-x8").to_dict()
    data["idle_latency_ns"] = -1.0
    path = tmp_path / "negative.toml"
    path.write_text(tomli_w.dumps(data))
    code, _, err = run(capsys, "profiles", str(path))
    assert code == 2
    assert f"{path}: field 'idle_latency_ns'" in err


# --- interleave -------------------------------------------------------------------------------


def interleave_table(out: str) -> list[list[str]]:
    header, *rows = out.strip().splitlines()
    assert header.split()[:2] == ["DDR:CXL", "GB/s"]
    assert header.split()[-4:] == ["CXL", "GB/s", "CXL", "ns"]
    return [row.split() for row in rows]


def test_interleave_table(capsys) -> None:
    code, out, err = run(capsys, "interleave")
    assert code == 0 and err == ""
    rows = interleave_table(out)
    assert [row[0] for row in rows] == ["1:0", *[f"{w}:1" for w in range(16, 0, -1)], "0:1"]
    throughput = np.array([float(row[1]) for row in rows])
    assert np.all(np.isfinite(throughput)) and np.all(throughput > 0)
    assert rows[0][2] == "+0.0%"
    for row in rows:
        values = [float(v.rstrip("%")) for v in row[1:]]
        assert all(math.isfinite(v) for v in values), row
    # DDR-only puts nothing on CXL, CXL-only nothing on DDR.
    assert float(rows[0][5]) == 0.0 and float(rows[-1][3]) == 0.0
    # The x8 CXL node alone cannot match the 8-channel socket.
    assert throughput[-1] < 0.5 * throughput[0]


def test_interleave_options(capsys) -> None:
    code, out, _ = run(
        capsys,
        "interleave",
        "--ddr",
        "bytedance-ddr5-snc",
        "--cxl",
        "bytedance-cxl-asic",
        "--mlp",
        "64",
        "--think-ns",
        "20",
        "--read-fraction",
        "1.0",
        "--max-weight",
        "3",
    )
    assert code == 0
    rows = interleave_table(out)
    assert [row[0] for row in rows] == ["1:0", "3:1", "2:1", "1:1", "0:1"]
    assert all(math.isfinite(float(row[1])) for row in rows)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--mlp", "0", "--mlp 0: "),
        ("--mlp", "-5", "--mlp -5: "),
        ("--mlp", "nan", "--mlp nan: "),
        ("--think-ns", "-1", "--think-ns -1: "),
        ("--read-fraction", "1.5", "read_fraction"),
        ("--ddr", "nope", "unknown profile 'nope'"),
    ],
)
def test_interleave_bad_input(capsys, option: str, value: str, problem: str) -> None:
    code, out, err = run(capsys, "interleave", option, value)
    assert code == 2
    assert out == ""
    assert err.startswith("tierenv interleave: error: ")
    assert problem in err
    assert "infs or NaNs" not in err  # a clear message, not a NaN that leaked through


def test_interleave_on_three_nodes_tries_the_grid_and_given_weights(capsys) -> None:
    nodes = "bytedance-ddr5-snc,bytedance-ddr5-remote-socket,bytedance-cxl-asic"
    code, out, err = run(capsys, "interleave", "--nodes", nodes, "--mlp", "256")
    assert code == 0 and err == ""
    header, *rows = out.strip().splitlines()
    assert header.split() == [
        "weights", "GB/s", "vs", "node0",
        *["node0", "GB/s", "node0", "ns", "node1", "GB/s", "node1", "ns"],
        *["node2", "GB/s", "node2", "ns"],
    ]  # fmt: skip
    from tierenv.envs.discrete import default_levels, weight_grid

    grid, _ = weight_grid(3, default_levels(3))
    assert [row.split()[0] for row in rows] == [":".join(map(str, w)) for w in grid]
    code, out, _ = run(capsys, "interleave", "--nodes", nodes, "--weights", "1:0:0", "2:1:1")
    rows = [row.split() for row in out.strip().splitlines()[1:]]
    assert [row[0] for row in rows] == ["1:0:0", "2:1:1"]
    assert rows[0][2] == "+0.0%"
    # Node 0 alone leaves the other nodes idle; 2:1:1 puts a quarter on each of them.
    assert float(rows[0][5]) == 0.0 and float(rows[0][7]) == 0.0
    load = [float(rows[1][3]), float(rows[1][5]), float(rows[1][7])]
    assert load[1] == pytest.approx(load[0] / 2, rel=0.02)
    assert load[2] == pytest.approx(load[0] / 2, rel=0.02)
    # A two-socket host with CXL gains from spreading a bandwidth-bound stream.
    assert float(rows[1][1]) > float(rows[0][1])


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--nodes", "bytedance-ddr5-snc"], "two or more profile names"),
        (["--nodes", "bytedance-ddr5-snc,,bytedance-cxl-asic"], "two or more profile names"),
        (["--weights", "1:1:1"], "3 weights for 2 nodes"),
        (["--weights", "0:0"], "not all 0"),
        (["--weights", "300:1"], "0..255"),
        (["--weights", "a:b"], "integers like 3:1"),
    ],
)
def test_interleave_bad_nodes_or_weights(capsys, args: list[str], problem: str) -> None:
    code, out, err = run(capsys, "interleave", *args)
    assert code == 2 and out == ""
    assert err.startswith("tierenv interleave: error: ") and problem in err


def test_scenarios_show_names_every_feature(capsys) -> None:
    code, out, _ = run(capsys, "scenarios", "colloid-antagonist")
    assert code == 0
    assert "bound to node0 (unmanaged), not in the reward" in out
    assert "DAMOS migrate_hot: quota 1 GiB/s" in out
    assert "runs vary per seed: moments by up to 2 s, phase intensity spread 0.02" in out
    code, out, _ = run(capsys, "scenarios", "micron-xeon6-cxl")
    assert "at 60 s: mlc: reads 67%" in out


def test_scenarios_shows_background_traffic_and_think_events(tmp_path: Path, capsys) -> None:
    path = tmp_path / "busy.toml"
    path.write_text(
        'name = "busy"\nduration_s = 60\n[damos]\nenabled = false\n'
        '[[nodes]]\nprofile = "bytedance-ddr5-snc"\ncapacity = "64 GiB"\n'
        '[[nodes]]\nprofile = "bytedance-cxl-asic"\ncapacity = "64 GiB"\n'
        '[[apps]]\nname = "a"\nworking_set = "1 GiB"\nmlp = 16\nthink_ns = 5\n'
        '[[events]]\nat_s = 30\napp = "a"\nthink_ns = 40\n'
        "[[traffic]]\nnode = 1\ngbps = 12.5\nread_fraction = 0.5\nstop_s = 20\n"
    )
    code, out, _ = run(capsys, "scenarios", str(path))
    assert code == 0
    assert "background traffic on node1: 12.5 GB/s, reads 50%, 0 s to 20" in out
    assert "at 30 s: a: think 40 ns" in out
    assert "DAMOS migrate_hot: off" in out
    path.write_text(
        path.read_text()
        + "[variation]\narrival_jitter_s = 0\nintensity_spread = 0\nlayout = false\n"
    )
    code, out, _ = run(capsys, "scenarios", str(path))
    assert "runs vary: no" in out


# --- bench ---------------------------------------------------------------------------------


def test_bench_writes_both_tables_with_the_machine(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.md"
    code, printed, _ = run(
        capsys,
        "bench",
        "steady-single",
        "--repeats",
        "1",
        "--batch-sizes",
        "2",
        "--batched-threads",
        "2",
        "--training-steps",
        "3072",  # one of the demo's updates
        "--out",
        str(out),
    )
    assert code == 0
    text = out.read_text()
    assert "## One environment, full DAMON fidelity" in text
    assert re.search(r"^\| steady-single \| constant \| [\d,]+ \| [\d.e-]+ \|", text, re.MULTILINE)
    assert re.search(r"^\| steady-single \| random \| [\d,]+ \| [\d.e-]+ \|", text, re.MULTILINE)
    assert re.search(r"^\| co-runner \| 2 \| 1 \| 180 \| [\d,]+ \|", text, re.MULTILINE)
    assert re.search(r"^\| 2 \| [\d,]+ \| [\d,]+ \| [\d.e-]+ \|$", text, re.MULTILINE)  # CartPole
    assert "## History by commit" in text
    assert re.search(r"^\| lean \| [\d,]+ \| [\d,]+ \| [\d.e-]+ \| [\d.]+ \|$", text, re.MULTILINE)
    assert re.search(r"^\| co-runner \| 2 \| 2 \| 180 \| [\d,]+ \|", text, re.MULTILINE)  # threads
    # header, 2 single, 1 batched, 1 batched on 2 threads and 2 training figures
    assert (tmp_path / "bench_history.csv").read_text().count("\n") == 1 + 6
    assert "machine:" in text and "command: `tierenv bench steady-single`" in text
    assert "written to" in printed


def test_bench_rejects_a_bad_batch_size(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.md"
    code, _, err = run(capsys, "bench", "--batch-sizes", "64,lots", "--out", str(out))
    assert code != 0 and "'lots'" in err
    assert not out.exists()
