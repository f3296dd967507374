"""`tierenv daemon`: apply a policy's or controller's weights on a host.

The options and the run live in tierenv.daemon, which `tierenvd` runs on its own too."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tierenv.daemon import HELP, build_parser

    parser.description = HELP
    build_parser(parser)


def run(args: argparse.Namespace) -> int:
    from tierenv.daemon import run_daemon

    return run_daemon(args)
