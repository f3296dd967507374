"""Where a result came from: command, code version and machine, stamped on every results file."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

import tierenv


def git_commit() -> str:
    """The checkout's commit (with '+dirty' when tracked files differ), or 'unknown'."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=Path(tierenv.__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        # Regenerated result files do not make the code dirty.
        dirty = git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":(top)",
            ":(top,exclude)results",
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_summary() -> str:
    """One line naming the machine a measurement ran on."""
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def stamp(command: str | None = None) -> str:
    """Markdown lines recording command, commit, machine and date."""
    command = command or "tierenv " + " ".join(sys.argv[1:])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"- command: `{command}`\n"
        f"- tierenv {tierenv.__version__}, commit {git_commit()}\n"
        f"- machine: {machine_summary()}\n"
        f"- date: {now}\n"
    )
