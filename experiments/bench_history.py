"""The history of ``tierenv bench``'s figures by commit, kept beside ``results/bench_env.md``.

Each run of ``tierenv bench`` appends its figures to a CSV file (one row per figure: date,
commit, machine, figure, tierenv's rate, CartPole's rate in the same run and their ratio) and
the Markdown report ends with a table of the headline figures of every run so far. Rates from
different machines are not comparable; the ratio to CartPole measured in the same run is the
figure to follow across machines.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("date", "commit", "machine", "figure", "steps_per_s", "cartpole_steps_per_s", "ratio")
#: A history file larger than this is refused rather than read (a few hundred runs fit).
MAX_HISTORY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Figure:
    """One measured rate, with CartPole's matching rate from the same run (None if none)."""

    name: str  # e.g. "single co-runner random", "batched co-runner x4096"
    steps_per_s: float
    cartpole_steps_per_s: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.cartpole_steps_per_s is None:
            return None
        return self.steps_per_s / self.cartpole_steps_per_s


@dataclass(frozen=True)
class Run:
    """The figures of one ``tierenv bench`` run."""

    date: str
    commit: str
    machine: str
    figures: tuple[Figure, ...]


def single_name(scenario: str, policy: str) -> str:
    return f"single {scenario} {policy}"


def batched_name(scenario: str, num_envs: int) -> str:
    return f"batched {scenario} x{num_envs}"


def training_name(trainer: str, scenario: str) -> str:
    return f"training {trainer} {scenario}"


def read_history(path: Path) -> list[Run]:
    """The runs recorded in ``path`` in file order ([] when it does not exist); a malformed
    file is a ``ValueError`` naming the file, line and field."""
    if not path.exists():
        return []
    if path.stat().st_size > MAX_HISTORY_BYTES:
        raise ValueError(f"{path}: larger than {MAX_HISTORY_BYTES:,} bytes; not a bench history")
    runs: dict[tuple[str, str, str], list[Figure]] = {}
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: header must be {','.join(FIELDS)}")
        for record in reader:
            where = f"{path} line {reader.line_num}"
            key = (record["date"], record["commit"], record["machine"])
            runs.setdefault(key, []).append(
                Figure(
                    name=record["figure"],
                    steps_per_s=_rate(record["steps_per_s"], where, "steps_per_s"),
                    cartpole_steps_per_s=(
                        _rate(record["cartpole_steps_per_s"], where, "cartpole_steps_per_s")
                        if record["cartpole_steps_per_s"]
                        else None
                    ),
                )
            )
    return [Run(*key, figures=tuple(figures)) for key, figures in runs.items()]


def _rate(text: str | None, where: str, field: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise ValueError(f"{where}: {field} {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: {field} {text!r} is not a positive rate")
    return value


def history_csv(runs: Sequence[Run]) -> str:
    """The CSV text recording ``runs``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for run in runs:
        for figure in run.figures:
            cartpole = figure.cartpole_steps_per_s
            writer.writerow(
                [
                    run.date,
                    run.commit,
                    run.machine,
                    figure.name,
                    f"{figure.steps_per_s:.1f}",
                    "" if cartpole is None else f"{cartpole:.1f}",
                    "" if figure.ratio is None else f"{figure.ratio:.5f}",
                ]
            )
    return out.getvalue()


def _cell(figure: Figure | None) -> str:
    if figure is None:
        return "–"
    if figure.ratio is None:
        return f"{figure.steps_per_s:,.0f}"
    return f"{figure.steps_per_s:,.0f} ({figure.ratio:.3g}x)"


def _slowest_single(run: Run, policy: str) -> Figure | None:
    singles = [
        f for f in run.figures if f.name.startswith("single ") and f.name.endswith(f" {policy}")
    ]
    return min(singles, key=lambda f: f.steps_per_s, default=None)


def history_table(runs: Sequence[Run], default_scenario: str, batched_scenario: str) -> str:
    """A Markdown table with one row per run: the default scenario's full-fidelity rate
    under random actions, the slowest scenario's, the largest batch's aggregate rate and the
    fastest trainer's rate, each with its ratio to CartPole when one was measured."""
    lines = [
        f"| date | commit | CPU | single {default_scenario} random | slowest single, random "
        "| batched fluid, largest batch | PPO training, fastest trainer |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        by_name = {figure.name: figure for figure in run.figures}
        batched = [f for f in run.figures if f.name.startswith(f"batched {batched_scenario} x")]
        largest = max(batched, key=lambda f: int(f.name.rsplit("x", 1)[1]), default=None)
        slowest = _slowest_single(run, "random")
        slowest_where = "" if slowest is None else " " + slowest.name.split()[1]
        largest_where = "" if largest is None else " at " + largest.name.rsplit("x", 1)[1]
        trainings = [f for f in run.figures if f.name.startswith("training ")]
        training = max(trainings, key=lambda f: f.steps_per_s, default=None)
        training_where = "" if training is None else " " + training.name.split()[1]
        lines.append(
            f"| {run.date} | {run.commit} | {run.machine.split(',')[0]} "
            f"| {_cell(by_name.get(single_name(default_scenario, 'random')))} "
            f"| {_cell(slowest)}{slowest_where} | {_cell(largest)}{largest_where} "
            f"| {_cell(training)}{training_where} |"
        )
    return "\n".join(lines) + "\n"
