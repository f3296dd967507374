"""`tierenv calibrate` under bad input (issue 19 item 8): no wrong fit with exit 0, no file
written outside the place asked for, nothing written for a failed fit, and the outputs of one
run land together or not at all."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.shared_data import MLC, data_path, needs_data
from tierenv.cli import main
from tierenv.cli.outputs import staged as _staged
from tierenv.hardware.fit import IDLE_ANCHOR_RANGE_NS, fit_profile
from tierenv.hardware.measurements import read_measurement_files, read_measurements

pytestmark = needs_data(MLC)

LOG = data_path(MLC) / "cxl_log_d0_c16_w2_r0"  # fitted to 3.8 % median, 14.9 % max error


def calibrate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["calibrate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The whole of stderr: one line in the CLI's error format, no traceback."""
    assert err.startswith("tierenv calibrate: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- The same measurement twice -----------------------------------------------------------


def test_the_same_log_twice_is_refused_naming_it(tmp_path: Path, capsys) -> None:
    """It used to be fitted as two curves: max error 14.9 % -> 72.2 %, "within tolerance"."""
    out = tmp_path / "p.toml"
    code, _, err = calibrate(capsys, str(LOG), str(LOG), "--out", str(out))
    assert code == 2
    assert f"{LOG}: given twice" in one_error_line(err)
    assert not out.exists()


def test_the_same_log_spelled_twice_is_refused(tmp_path: Path, capsys) -> None:
    other = LOG.parent / ".." / LOG.parent.name / LOG.name
    code, _, err = calibrate(capsys, str(LOG), str(other), "--out", str(tmp_path / "p.toml"))
    assert code == 2
    assert f"{other}: given twice (also as {LOG})" in one_error_line(err)


def test_a_copy_of_a_log_is_refused(tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy_of_log"
    shutil.copy(LOG, copy)
    code, _, err = calibrate(capsys, str(LOG), str(copy), "--out", str(tmp_path / "p.toml"))
    assert code == 2
    assert f"{copy}: the same contents as {LOG}" in one_error_line(err)


def test_the_library_refuses_a_curve_given_twice() -> None:
    (curve,) = read_measurements(LOG)
    with pytest.raises(ValueError, match="the same measurement as"):
        fit_profile([curve, curve], name="x", kind="cxl")
    with pytest.raises(ValueError, match="given twice"):
        read_measurement_files([LOG, LOG])


def test_two_runs_of_one_mix_fit_like_one() -> None:
    """Curves of one mix are merged; the merged points were cut again at the joint peak,
    which dropped the top of the rising branch and bent the fit (max error 14.9 % -> 72 %)."""
    (curve,) = read_measurements(LOG)
    rerun = replace(
        curve,
        source="rerun",
        bandwidth_gbps=curve.bandwidth_gbps * 0.999,
        latency_ns=curve.latency_ns * 1.002,
    )
    alone = fit_profile([curve], name="x", kind="cxl").reports[0]
    both = fit_profile([curve, rerun], name="x", kind="cxl").reports[0]
    assert both.max_abs_error == pytest.approx(alone.max_abs_error, abs=0.01)
    assert both.median_abs_error == pytest.approx(alone.median_abs_error, abs=0.005)


# --- Option ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e308", "inf", "5000", "10", "nan"])
def test_an_idle_anchor_outside_the_physical_range_is_refused(
    tmp_path: Path, capsys, value: str
) -> None:
    """1e308 used to shift the curves so far that every error read 0.00 %."""
    out = tmp_path / "p.toml"
    code, _, err = calibrate(capsys, str(LOG), f"--idle-latency-ns={value}", "--out", str(out))
    assert code == 2
    low, high = IDLE_ANCHOR_RANGE_NS
    assert f"--idle-latency-ns {float(value):g}: outside the physical range" in one_error_line(err)
    assert f"{low:g}..{high:g} ns" in err
    assert not out.exists()


def test_the_library_refuses_an_idle_anchor_outside_the_range() -> None:
    (curve,) = read_measurements(LOG)
    with pytest.raises(ValueError, match="outside the physical range"):
        fit_profile([curve], name="x", kind="cxl", idle_latency_ns=1e308)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "101"])
def test_a_tolerance_outside_0_100_is_refused(tmp_path: Path, capsys, value: str) -> None:
    out = tmp_path / "p.toml"
    code, _, err = calibrate(capsys, str(LOG), f"--tolerance={value}", "--out", str(out))
    assert code == 2
    assert f"--tolerance {float(value):g}: must be a percentage in (0, 100]" in one_error_line(err)
    assert not out.exists()


@pytest.mark.parametrize("name", ["../../evil", "sub/evil", "..", ".hidden", "-x", "a b", ""])
def test_a_name_that_is_not_a_plain_file_stem_is_refused(
    tmp_path: Path, monkeypatch, capsys, name: str
) -> None:
    """--name '../../evil' used to write ../../evil.toml and ../../evil-fit.png."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code, _, err = calibrate(capsys, str(LOG), f"--name={name}")
    assert code == 2
    assert f"--name {name!r}: not a plain file stem" in one_error_line(err)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_file_name_that_makes_no_plain_name_asks_for_name(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    odd = tmp_path / "my log (1).txt"
    shutil.copy(LOG, odd)
    monkeypatch.chdir(tmp_path)
    code, _, err = calibrate(capsys, str(odd))
    assert code == 2
    assert "'my log (1)', which is not a plain file stem; choose one with --name" in err
    code, _, _ = calibrate(capsys, str(odd), "--name", "my-cxl")
    assert code == 0 and (tmp_path / "my-cxl.toml").is_file()


# --- What gets written, and where ----------------------------------------------------------


def test_a_fit_that_misses_its_tolerance_writes_nothing(tmp_path: Path, capsys) -> None:
    out, plot = tmp_path / "p.toml", tmp_path / "p.png"
    out.write_text("old profile\n")
    code, printed, _ = calibrate(
        capsys, str(LOG), "--tolerance", "1", "--out", str(out), "--plot", str(plot)
    )
    assert code == 1
    assert "exceeds the tolerance 1%; nothing written" in printed
    assert out.read_text() == "old profile\n" and not plot.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml"]  # no temporary left


def test_no_plot_unless_asked(tmp_path: Path, monkeypatch, capsys) -> None:
    """The plot used to land in the current folder on every run."""
    monkeypatch.chdir(tmp_path)
    code, printed, _ = calibrate(capsys, str(LOG), "--name", "mine")
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.toml"]
    assert "plot" not in printed
    code, printed, _ = calibrate(capsys, str(LOG), "--out", "x/mine.toml", "--plot", "x/fit.png")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["fit.png", "mine.toml"]
    assert "plot written to x/fit.png" in printed


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--out", "{tmp}"], "--out {tmp}: is a folder; name a file"),
        (["--out", "{file}/p.toml"], "--out {file}/p.toml: cannot be written, {file} is not a"),
        (["--plot", "{file}/p.png"], "--plot {file}/p.png: cannot be written"),
        (["--out", "{log}"], "--out {log}: is the measurement file"),
        (["--out", "{tmp}/p.toml", "--plot", "{tmp}/./p.toml"], "the same file as the profile"),
    ],
)
def test_outputs_that_cannot_be_written_fail_before_the_fit(
    tmp_path: Path, monkeypatch, capsys, args: list[str], problem: str
) -> None:
    import tierenv.hardware.fit

    def no_fit(*_, **__):
        raise AssertionError("the fit ran before the outputs were checked")

    monkeypatch.setattr(tierenv.hardware.fit, "fit_profile", no_fit)
    log = tmp_path / "cxl_log"
    shutil.copy(LOG, log)
    file = tmp_path / "a_file"
    file.write_text("")
    places = {"tmp": tmp_path, "file": file, "log": log}
    code, _, err = calibrate(capsys, str(log), *(a.format(**places) for a in args))
    assert code == 2
    assert problem.format(**places) in one_error_line(err)
    assert log.read_bytes() == LOG.read_bytes()


def test_staged_outputs_land_together_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    first, second = tmp_path / "profile.toml", tmp_path / "plots" / "fit.png"
    first.write_text("old")
    # An error while writing: neither final file changes, no temporary is left.
    with pytest.raises(RuntimeError), _staged([first, second]) as (a, b):
        a.write_text("new")
        raise RuntimeError("the plot failed")
    assert first.read_text() == "old" and not second.exists()
    # The second rename fails: the first one is undone.
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst) == second:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"), _staged([first, second]) as (a, b):
        a.write_text("new")
        b.write_text("new plot")
    assert first.read_text() == "old" and not second.exists()
    monkeypatch.setattr(os, "replace", real_replace)
    with _staged([first, second]) as (a, b):
        a.write_text("new")
        b.write_text("new plot")
    assert first.read_text() == "new" and second.read_text() == "new plot"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
