"""The published DDR/CXL interleaving checks (C1, C3, C5) against the model."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest

from tierenv.cli import main
from tierenv.hardware import validation
from tierenv.hardware.validation import CheckRow, render_markdown, run_checks


@pytest.fixture(scope="module")
def rows() -> list[CheckRow]:
    return run_checks()


def test_every_check_passes(rows: list[CheckRow]) -> None:
    failed = [
        f"{r.check} / {r.quantity}: model {r.model:.4g}, tolerance {r.tolerance_text()}"
        for r in rows
        if not r.passed
    ]
    assert not failed, failed
    for row in rows:
        assert math.isfinite(row.model), row
        if not row.calibrated:
            assert row.low < row.high
            assert row.low <= row.model <= row.high, row


@pytest.mark.parametrize("name", ["C1", "C3", "C5"])
def test_each_check_has_predictions(rows: list[CheckRow], name: str) -> None:
    mine = [r for r in rows if r.check.startswith(f"{name} ")]
    assert mine, f"no {name} rows"
    # Agreement on calibration inputs proves nothing; each check must predict something.
    assert any(not r.calibrated for r in mine)


def test_published_c1_quantities(rows: list[CheckRow]) -> None:
    c1 = {r.quantity: r for r in rows if r.check.startswith("C1 ")}
    # The DRAM-only Triad result sets STREAM's MLP: the solver must hit it.
    assert c1["DRAM only"].model == pytest.approx(208.524, rel=1e-6)
    assert c1["1:1 / CXL only"].model == pytest.approx(2.0, abs=0.2)
    assert 7 <= c1["best w:1 ratio"].model <= 11


def test_c5_slowdown_rises_with_the_cxl_share(rows: list[CheckRow]) -> None:
    slowdowns = [r.model for r in rows if r.check.startswith("C5 ") and "GB on CXL" in r.quantity]
    assert len(slowdowns) == 5
    assert all(b > a for a, b in itertools.pairwise(slowdowns))
    assert all(1.0 < s < 1.19 for s in slowdowns)


def test_subset_and_unknown_check() -> None:
    subset = run_checks(["C5"])
    assert subset and all(r.check.startswith("C5 ") for r in subset)
    with pytest.raises(ValueError, match=r"unknown check 'C9'.*C1, C3, C5"):
        run_checks(["C9"])


def test_a_row_outside_its_tolerance_fails(rows: list[CheckRow]) -> None:
    predicted = next(r for r in rows if not r.calibrated)
    outside = replace(predicted, model=predicted.high + abs(predicted.high) + 1)
    assert not outside.passed
    assert "| FAIL |" in render_markdown([outside])
    assert "| PASS |" in render_markdown([predicted])


def test_validate_command_writes_the_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "nested" / "validation.md"
    assert main(["validate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = run_checks()
    assert f"{len(rows)} of {len(rows)} rows pass" in printed
    text = out.read_text()
    assert text.startswith("# Model validation")
    assert "| check | quantity | published | model | tolerance | result | note |" in text
    lines = text.splitlines()
    assert any(line.startswith("- machine:") for line in lines)
    assert any(line.startswith("- command:") for line in lines)
    table = [line for line in lines if line.startswith("| C")]
    assert len(table) == len(rows)
    assert "FAIL" not in text
    assert sum("| PASS |" in line for line in table) == sum(not r.calibrated for r in rows)


def test_validate_command_fails_when_a_check_fails(tmp_path: Path, capsys, monkeypatch) -> None:
    failing = CheckRow("C1 made up", "quantity", "1.0x", 5.0, 0.9, 1.1, "x")
    monkeypatch.setitem(validation.CHECKS, "C1", lambda: [failing])
    out = tmp_path / "validation.md"
    assert main(["validate", "--checks", "C1", "--out", str(out)]) == 1
    assert "0 of 1 rows pass" in capsys.readouterr().out
    assert "| FAIL |" in out.read_text()


def test_validate_command_unknown_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "validation.md"
    assert main(["validate", "--checks", "C1,C7", "--out", str(out)]) == 2
    assert "unknown check 'C7'" in capsys.readouterr().err
    assert not out.exists()
