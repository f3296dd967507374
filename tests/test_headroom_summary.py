"""``python -m experiments.headroom_summary``: per-group medians, ranges and threshold counts of
returns relative to the reference, from a compare results folder."""

from __future__ import annotations

import pandas as pd

from experiments.compare.report import relative_returns
from experiments.headroom_summary import aggregate


def episodes() -> pd.DataFrame:
    rows = []
    returns = {"a": (100.0, 110.0, 90.0), "b": (200.0, 202.0, 220.0), "c": (50.0, 50.0, 60.0)}
    for scenario, (best, dp, auto) in returns.items():
        for seed in (0, 1):
            for policy, value in (("static-best", best), ("oracle-dp", dp), ("auto", auto)):
                rows.append({"scenario": scenario, "policy": policy, "seed": seed,
                             "return": value, "bound_return": 1.5 * best})  # fmt: skip
    return pd.DataFrame(rows)


def test_relative_returns_and_the_group_rows() -> None:
    table = relative_returns(episodes(), "static-best")
    assert table.loc["a", "oracle-dp"] == 1.1 and table.loc["b", "static-best"] == 200.0
    assert table.loc["c", "upper bound"] == 1.5
    text = aggregate(table, {"a": "drawn", "b": "drawn", "c": "shipped"}, "static-best")
    lines = text.splitlines()
    assert lines[0] == "| group | | auto | oracle-dp | upper bound |"
    assert lines[2] == (
        "| drawn (2 scenarios) | median (min-max) | 1.000 (0.900-1.100) | "
        "1.055 (1.010-1.100) | 1.500 (1.500-1.500) |"
    )
    assert lines[3] == "| drawn | at +4 % or more | 1 | 1 | 2 |"
    assert lines[4] == "| drawn | at +8 % or more | 1 | 1 | 2 |"
    assert lines[5].startswith("| shipped (1 scenarios) | median (min-max) | 1.200 (1.200-1.200)")
