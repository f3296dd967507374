"""``tierenv bench`` keeps its figures by commit beside CartPole's (issue 22 item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from experiments import bench_env
from experiments.bench_cartpole import cartpole_single_steps_per_s, cartpole_vector_steps_per_s
from experiments.bench_history import (
    FIELDS,
    Figure,
    Run,
    batched_name,
    history_csv,
    history_table,
    read_history,
    single_name,
)
from tierenv.cli import main

REPO = Path(__file__).resolve().parents[1]


def _run(date: str, single: float, batched: float | None, cartpole: float | None) -> Run:
    figures = [
        Figure(single_name("co-runner", "random"), single, cartpole),
        Figure(single_name("hot-set-shift", "random"), single / 2, cartpole),
        Figure(single_name("hot-set-shift", "constant"), single / 4, cartpole),
    ]
    if batched is not None:
        figures += [
            Figure(batched_name("co-runner", 64), batched / 2, cartpole),
            Figure(batched_name("co-runner", 4096), batched, cartpole),
        ]
    return Run(date, "abc123", "Some CPU, 2 logical CPUs", tuple(figures))


def test_the_history_round_trips_through_its_file(tmp_path: Path) -> None:
    runs = [_run("2026-01-01 00:00 UTC", 2000.0, None, None), _run("d2", 4000.5, 1e6, 2e5)]
    path = tmp_path / "history.csv"
    path.write_text(history_csv(runs))
    again = read_history(path)
    assert [run.date for run in again] == ["2026-01-01 00:00 UTC", "d2"]
    assert again[0].figures[0].ratio is None
    assert again[1].figures[0].steps_per_s == pytest.approx(4000.5)
    assert again[1].figures[0].ratio == pytest.approx(4000.5 / 2e5)
    assert read_history(tmp_path / "missing.csv") == []


def test_the_table_shows_headlines_with_their_cartpole_ratio() -> None:
    table = history_table(
        [_run("d1", 2000.0, None, None), _run("d2", 4000.0, 1e6, 2e5)], "co-runner", "co-runner"
    )
    rows = table.splitlines()[2:]
    assert len(rows) == 2
    # the slowest scenario under random actions (not the constant row, which is slower)
    assert "| 2,000 | 1,000 hot-set-shift | – | – |" in rows[0]
    assert "| 4,000 (0.02x) | 2,000 (0.01x) hot-set-shift | 1,000,000 (5x) at 4096 | – |" in rows[1]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("date,commit\n", "header must be"),
        (",".join(FIELDS) + "\nd,c,m,f,fast,,\n", r"line 2: steps_per_s 'fast' is not a number"),
        (",".join(FIELDS) + "\nd,c,m,f,10,-3,\n", r"line 2: cartpole_steps_per_s '-3' is not a"),
        (",".join(FIELDS) + "\nd,c,m,f,nan,,\n", r"line 2: steps_per_s 'nan' is not a positive"),
    ],
)
def test_a_malformed_history_is_named_with_its_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + problem):
        read_history(path)


def test_the_shipped_history_reads() -> None:
    runs = read_history(REPO / "results" / "bench_env_history.csv")
    assert runs and all(run.figures for run in runs)


def test_cartpole_rates_are_measured() -> None:
    assert cartpole_single_steps_per_s(steps=3_000) > 1_000
    assert cartpole_vector_steps_per_s(16, env_steps=3_200) > 1_000
    with pytest.raises(ValueError, match="num_envs"):
        cartpole_vector_steps_per_s(0)


def _fake_benchmark(*args: object, **kwargs: object) -> bench_env.Benchmark:
    figures = (Figure(single_name("co-runner", "random"), 1234.0, 123400.0),)
    return bench_env.Benchmark("## Tables\n", figures)


def test_the_cli_appends_to_the_history_and_tables_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_env, "run_benchmark", _fake_benchmark)
    out = tmp_path / "bench.md"
    for _ in range(2):
        assert main(["bench", "--out", str(out)]) == 0
    runs = read_history(tmp_path / "bench_history.csv")
    assert sum(len(run.figures) for run in runs) == 2  # one figure per run, both kept
    text = out.read_text()
    assert "## History by commit" in text
    assert len(re.findall(r"^\| .* \| 1,234 \(0\.01x\) \|", text, re.MULTILINE)) == 2


def test_a_bad_history_fails_before_anything_is_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("timed before the history was read")

    monkeypatch.setattr(bench_env, "run_benchmark", never)
    history = tmp_path / "h.csv"
    history.write_text("not,a,history\n")
    out = tmp_path / "bench.md"
    assert main(["bench", "--out", str(out), "--history", str(history)]) == 2
    assert "header must be" in capsys.readouterr().err
    assert main(["bench", "--out", str(out), "--history", str(out)]) == 2
    assert "is also --out" in capsys.readouterr().err
    assert not out.exists()
