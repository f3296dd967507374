"""deploy/tierenvd.service: its ExecStart parses with the daemon's options, and systemd accepts
the unit (where systemd-analyze exists)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tierenv.daemon import build_parser

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "tierenvd.service"


def exec_start() -> list[str]:
    text = UNIT.read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_the_unit_runs_a_valid_daemon_command():
    argv = exec_start()
    assert argv[:2] == ["/usr/local/bin/tierenv", "daemon"]
    args = build_parser().parse_args(argv[2:])
    assert args.sysfs_root == "/sys" and str(args.proc_root) == "/proc"
    assert args.policy is not None and args.host_config is not None
    assert str(args.journal).startswith("/var/lib/tierenv/")  # the unit's StateDirectory


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    executable = Path(sys.executable).parent / "tierenv"
    if not executable.exists():
        pytest.skip(f"no tierenv entry point next to {sys.executable}")
    unit = tmp_path / "tierenvd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/tierenv", str(executable)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
