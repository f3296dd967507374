"""``tierenv bench`` refuses bad batch sizes and scenarios before it allocates or times
anything (issue 19 item 7: a huge batch size died in an ``_ArrayMemoryError`` traceback after
minutes of single-env timing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import bench_env as bench
from experiments import bench_env_batched as bench_batched
from experiments.bench_env_batched import MAX_BATCH_SIZE, check_batch_sizes
from tierenv.cli import main


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("ran before the options were checked")


@pytest.mark.parametrize("size", [MAX_BATCH_SIZE + 1, 10**11, 0, -3])
def test_a_batch_size_outside_the_limit_fails_before_any_env_exists(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_batched, "WeightedInterleaveVectorEnv", _never)
    monkeypatch.setattr(bench, "bench_single", _never)
    message = rf"^--batch-sizes: {size:,} envs is outside 1\.\.{MAX_BATCH_SIZE:,} "
    with pytest.raises(ValueError, match=message):
        bench_batched.bench_batched("co-runner", [1, size])
    with pytest.raises(ValueError, match=message):
        bench.run_benchmark(["steady-single"], 1, [64, size])


@pytest.mark.parametrize("size", [1.5, "64", True])
def test_a_batch_size_must_be_a_whole_number(size: object) -> None:
    with pytest.raises(ValueError, match=r"^--batch-sizes: .* is not a whole number of envs"):
        check_batch_sizes([size])  # type: ignore[list-item]


def test_the_limit_and_the_defaults_pass() -> None:
    sizes = [*bench_batched.DEFAULT_BATCH_SIZES, np.int64(MAX_BATCH_SIZE)]
    assert check_batch_sizes(sizes) == [*bench_batched.DEFAULT_BATCH_SIZES, MAX_BATCH_SIZE]


def test_a_bad_scenario_fails_before_anything_is_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "bench_single", _never)
    with pytest.raises(ValueError, match="nope"):
        bench.run_benchmark(["steady-single"], 1, [64], batched_scenario="nope")
    with pytest.raises(ValueError, match="nope"):
        bench.run_benchmark(["steady-single", "nope"], 1, [])


@pytest.mark.parametrize("scenario", ["nope", "random:nope"])
def test_a_bad_training_scenario_fails_before_anything_is_timed(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "bench_single", _never)
    with pytest.raises(ValueError, match=f"^--training-scenario {scenario}: .*nope"):
        bench.run_benchmark(["steady-single"], 1, [], training_steps=10, training_scenario=scenario)


def test_the_cli_prints_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "bench_single", _never)
    out = tmp_path / "bench.md"
    argv = ["bench", "steady-single", "--batch-sizes", "1,100000000000", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"tierenv bench: error: --batch-sizes: 100,000,000,000 envs is outside "
        f"1..{MAX_BATCH_SIZE:,} (a batch's envs are allocated at once, about 5 KB each)"
    ]
    assert not out.exists()


def test_a_batch_within_the_limit_is_timed() -> None:
    (row,) = bench_batched.bench_batched("co-runner", [2], steps=1, warmup_steps=0)
    assert row.num_envs == 2 and row.vector_steps == 1 and row.wall_s > 0


def test_a_batched_env_larger_than_its_limit_is_refused_before_allocating():
    from tierenv.envs.vector import MAX_NUM_ENVS, WeightedInterleaveVectorEnv
    from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

    for make in (WeightedInterleaveVectorEnv, MixedScenarioVectorEnv):
        with pytest.raises(ValueError, match=r"num_envs must be at most 65,536, got 1,000,000,000"):
            make(num_envs=10**9)
        with pytest.raises(ValueError, match="positive integer, got True"):
            make(num_envs=True)
    assert MAX_NUM_ENVS == 65_536
