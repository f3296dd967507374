"""The `tierenv` command line: thin wrappers over the library.

One module per subcommand, each with ``add_arguments(parser)`` and ``run(args) -> int``
(heavy imports stay inside ``run``, so that ``tierenv --help`` starts fast), and one table,
:data:`SUBCOMMANDS`, from which the parser and its list of subcommands are built. A new
subcommand is a module and a row; shared output-path helpers are in
:mod:`tierenv.cli.outputs`."""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tierenv.cli import (
    bench,
    calibrate,
    compare,
    daemon,
    demo,
    export,
    fakehost,
    interleave,
    profiles,
    report,
    scenarios,
    simulate,
    train,
    tune,
    validate,
)


class Command(Protocol):
    """What a subcommand module provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True)
class Subcommand:
    name: str
    module: Command
    help: str  # one line in `tierenv --help`


# The parser's order too, which argparse's "invalid choice" error repeats: kept as it was.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("report", report, "refit the shipped profiles, run the published checks (results/)"),
    Subcommand("profiles", profiles, "list the shipped memory-node profiles, or show one"),
    Subcommand(
        "calibrate", calibrate, "fit a node profile to MLC --loaded_latency logs or Mess curves"
    ),
    Subcommand(
        "validate", validate, "reproduce published DDR/CXL interleaving results with the model"
    ),
    Subcommand(
        "interleave", interleave, "throughput and node latencies of one application across weights"
    ),
    Subcommand(
        "scenarios", scenarios, "list the shipped scenarios, show one, or draw new ones (generate)"
    ),
    Subcommand(
        "simulate", simulate, "run a scenario with static weights: time-series table and plot"
    ),
    Subcommand("bench", bench, "measure environment speed and write results/bench_env.md"),
    Subcommand("compare", compare, "evaluate policies on scenarios over seeds: tables and plots"),
    Subcommand("train", train, "train policies with stable-baselines3 from a YAML config"),
    Subcommand("tune", tune, "search PPO hyperparameters with Optuna"),
    Subcommand("demo", demo, "the main job: train a policy, compare with baselines and oracle"),
    Subcommand("export", export, "export a trained policy to ONNX for the daemon"),
    Subcommand("daemon", daemon, "apply a policy's or controller's weights on a host"),
    Subcommand(
        "fakehost", fakehost, "a simulated host in sysfs/procfs trees: the daemon without root"
    ),
)

HELP_WIDTH = 79  # the description is preformatted (RawDescriptionHelpFormatter): 80 columns


def describe(table: tuple[Subcommand, ...] = SUBCOMMANDS) -> str:
    """The top-level description: what tierenv is and one entry per subcommand."""
    column = max(len(command.name) for command in table) + 4
    lines = [
        "tierenv: learn how Linux should interleave memory across DDR and CXL.",
        "Start with `tierenv demo`, the main job.",
        "",
        "subcommands:",
    ]
    for command in table:
        first, *more = textwrap.wrap(command.help, HELP_WIDTH - column)
        lines.append(f"  {command.name:<{column - 2}}{first}")
        lines.extend(" " * column + line for line in more)
    lines += ["", "Run `tierenv SUBCOMMAND --help` for the options of each."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierenv",
        description=describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # No help= per subparser: argparse would list every subcommand a second time.
    sub = parser.add_subparsers(
        dest="command", metavar="SUBCOMMAND", help="one of the subcommands listed above"
    )
    for command in SUBCOMMANDS:
        p = sub.add_parser(command.name)
        command.module.add_arguments(p)
        p.set_defaults(handler=command.module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except UnicodeDecodeError as err:  # a loader read a binary file without naming it
        print(f"tierenv {args.command}: error: {_not_text(args, err)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:
        print(f"tierenv {args.command}: error: {err}", file=sys.stderr)
        return 2


MAX_TEXT_CHECKED = 64 << 20  # bytes of a named file read to find the one that is not text


def _not_text(args: argparse.Namespace, err: UnicodeDecodeError) -> str:
    """The error for a file that is not UTF-8 text, naming the first such file on the
    command line: the decoder's own message names no file."""
    names: list[str | Path] = []
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Path):
                names.append(item)
            elif isinstance(item, str):  # a profile or scenario name, or a --nodes list
                names.extend(part for part in item.split(",") if part)
    for name in names:
        path = Path(name)
        try:
            if not path.is_file():
                continue
            with open(path, "rb") as handle:
                handle.read(MAX_TEXT_CHECKED).decode("utf-8")
        except UnicodeDecodeError as bad:
            if bad.end < MAX_TEXT_CHECKED - 4:  # not a character cut at the read limit
                return (
                    f"{path}: not a UTF-8 text file (byte 0x{bad.object[bad.start]:02x} at "
                    f"offset {bad.start})"
                )
        except OSError:
            continue
    return f"a file it read is not UTF-8 text ({err})"
