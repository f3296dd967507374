"""Summarise a headroom comparison over many scenarios: per group of scenarios (each folder of
scenario files in the config, and the shipped scenarios), the median and range of every
policy's and the bound's return relative to the reference, and how many scenarios reach
+4 % and +8 %. Reads a ``tierenv compare`` results folder (``episodes.csv``, ``config.yaml``)
and writes ``aggregate.md`` into it::

    python -m experiments.headroom_summary results/headroom-test-suite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.compare.config import load_config
from experiments.compare.report import relative_returns
from tierenv.files import write_text_atomically
from tierenv.workload.scenario import load_scenario

THRESHOLDS = (1.04, 1.08)


def scenario_groups(refs: list[str]) -> dict[str, str]:
    """Scenario name -> group: the folder of a scenario file, or "shipped"."""
    return {
        load_scenario(ref).name: str(Path(ref).parent) if ref.endswith(".toml") else "shipped"
        for ref in refs
    }


def aggregate(table: pd.DataFrame, groups: dict[str, str], reference: str) -> str:
    """Markdown: one block of rows per group (see the module docstring)."""
    columns = [c for c in table.columns if c != reference]
    header = "| group | | " + " | ".join(columns) + " |"
    rows = [header, "|---" * (len(columns) + 2) + "|"]
    by_group = pd.Series(groups).reindex(table.index)
    for group in sorted(by_group.unique()):
        part = table[by_group == group]
        cells = [
            f"{part[c].median():.3f} ({part[c].min():.3f}-{part[c].max():.3f})" for c in columns
        ]
        rows.append(f"| {group} ({len(part)} scenarios) | median (min-max) | " + " | ".join(cells))
        for threshold in THRESHOLDS:
            counts = [str(int((part[c] >= threshold).sum())) for c in columns]
            label = f"at +{round(100 * (threshold - 1))} % or more"
            rows.append(f"| {group} | {label} | " + " | ".join(counts) + " |")
    return "\n".join(row if row.endswith("|") else row + " |" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a tierenv compare results folder")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.results / "config.yaml")  # folders expand to their files
        episodes = pd.read_csv(args.results / "episodes.csv")
    except (OSError, ValueError) as error:
        print(f"headroom_summary: {args.results}: {error}", file=sys.stderr)
        return 2
    reference = config.reference
    if reference is None:
        print(f"headroom_summary: {args.results}: the comparison has no reference", file=sys.stderr)
        return 2
    table = relative_returns(episodes, reference)
    text = "\n".join(
        [
            f"# Headroom of `{config.name}` by group of scenarios",
            "",
            f"- command: `python -m experiments.headroom_summary {args.results}`",
            f"- from: `{args.results / 'episodes.csv'}` (its `summary.md` says how it was made)",
            "",
            f"Mean return over the seeds relative to `{reference}` on each scenario; per group, "
            "the median and range over its scenarios, and how many scenarios reach a "
            "threshold.",
            "",
            aggregate(table, scenario_groups(list(config.scenarios)), reference),
            "",
        ]
    )
    write_text_atomically(args.results / "aggregate.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
