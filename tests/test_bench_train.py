"""experiments/bench_train.py: the training-rate benchmark's rows, table and CLI (tiny runs;
no timing is asserted)."""

from __future__ import annotations

import pytest

from experiments.bench_train import TrainRow, bench_training, main, training_table


@pytest.fixture(scope="module")
def rows() -> list[TrainRow]:
    # one update of the demo's 48 envs x 64 steps for each method
    return bench_training(
        "co-runner", total_steps=3072, methods=("sb3", "lean", "cleanrl", "env"), threads=(1,)
    )


def test_one_row_per_method_with_a_consistent_split(rows):
    assert [row.method for row in rows] == ["sb3", "lean", "cleanrl", "env"]
    for row in rows:
        assert row.scenario == "co-runner" and row.envs == 48
        assert row.steps == 3072  # whole updates of 48 x 64
        assert 0 < row.env_s <= row.rollout_s <= row.wall_s
        assert 0 <= row.update_s <= row.wall_s
        assert row.rollout_s + row.update_s + row.setup_s <= row.wall_s * 1.001
        assert row.env_steps_per_s > 0 and row.minutes_for_target > 0
        assert row.load >= 0
    trainers = [row for row in rows if row.method != "env"]
    assert all(row.update_s > 0 and row.threads == 1 for row in trainers)
    assert rows[-1].update_s == 0 and rows[-1].threads == 0


def test_the_table_has_a_line_per_row(rows):
    table = training_table(rows).splitlines()
    assert table[0].startswith("| method | scenario | envs | torch threads | steps | wall s")
    assert len(table) == 2 + len(rows)
    assert table[2].startswith("| sb3 | co-runner | 48 | 1 | 3,072 |")
    assert table[-1].startswith("| env | co-runner | 48 | - | 3,072 |")


def test_bad_arguments_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown"):
        bench_training(methods=("sb3", "rllib"))
    with pytest.raises(ValueError, match="total_steps"):
        bench_training(total_steps=0)
    with pytest.raises(ValueError, match="threads"):
        bench_training(threads=(0,))


def test_the_cli_prints_the_table(capsys):
    main(["--steps", "96", "--methods", "env", "--threads", "1"])
    out = capsys.readouterr().out
    assert "| env | co-runner | 48 | - | 96 |" in out
    with pytest.raises(SystemExit):
        main(["--methods", "nope"])
