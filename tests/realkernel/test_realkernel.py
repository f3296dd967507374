"""Host side of the realkernel tests: one VM boot runs every guest test (guest/guest_*.py)
against a real Linux kernel; each guest test function is reported here as its own test.

Run with ``python -m pytest -m realkernel`` after ``python -m tests.realkernel.vm prepare``;
without a prepared VM (or QEMU) these tests skip and say why.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.realkernel import vm

pytestmark = pytest.mark.realkernel

HERE = Path(__file__).parent
GUEST = HERE / "guest"
REPO = HERE.parents[1]


def guest_tests() -> list[str]:
    """``file::function`` of every guest test function, read from the source (no import)."""
    found = []
    for path in sorted(GUEST.glob("guest_*.py")):
        tree = ast.parse(path.read_text())
        found += [
            f"{path.name}::{node.name}"
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
    return found


@dataclass
class Case:
    name: str
    outcome: str  # passed, failed, error, skipped
    message: str = ""


@dataclass
class GuestRun:
    returncode: int
    console: str
    seconds: float
    cases: dict[str, list[Case]] = field(default_factory=dict)

    def tail(self, chars: int = 6000) -> str:
        return self.console[-chars:]


def parse_junit(path: Path) -> dict[str, list[Case]]:
    """Guest results by ``file::function`` (parametrized cases grouped under their function)."""
    cases: dict[str, list[Case]] = defaultdict(list)
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1]
        name = case.get("name", "")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
        cases[f"{module}.py::{name.split('[')[0]}"].append(Case(name, outcome, message.strip()))
    return dict(cases)


@pytest.fixture(scope="session")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    if reason := vm.check():
        pytest.skip(reason)
    memtool = vm.ensure_memtool()
    out = tmp_path_factory.mktemp("vm-out")
    junit = f"{vm.GUEST_OUT}/junit.xml"
    command = (
        f"{sys.executable} -m pytest -c {GUEST / 'pytest.ini'} --rootdir {GUEST} -v "
        f"--junitxml={junit} {GUEST}"
    )
    result = vm.run(command, out_dir=out, env={"TIERENV_VM_MEMTOOL": str(memtool)}, cwd=REPO)
    run = GuestRun(result.returncode, result.console, result.seconds)
    if (out / "junit.xml").exists():
        run.cases = parse_junit(out / "junit.xml")
    total = sum(len(c) for c in run.cases.values())
    passed = sum(c.outcome == "passed" for cases in run.cases.values() for c in cases)
    SUMMARY.append(
        f"realkernel: VM boot + {total} guest tests ({passed} passed) took {run.seconds:.1f} s "
        f"(guest pytest exit code {run.returncode}; console log in {out / 'console.log'})"
    )
    return run


SUMMARY: list[str] = []  # printed by conftest.pytest_terminal_summary


@pytest.mark.parametrize("test_id", guest_tests())
def test_in_guest(guest_run: GuestRun, test_id: str) -> None:
    cases = guest_run.cases.get(test_id)
    assert cases, (
        f"{test_id} did not run in the guest (guest pytest exit code {guest_run.returncode}); "
        f"console tail:\n{guest_run.tail()}"
    )
    bad = [c for c in cases if c.outcome in ("failed", "error")]
    assert not bad, "\n\n".join(f"{c.name} {c.outcome}:\n{c.message}" for c in bad)
    skipped = [c for c in cases if c.outcome == "skipped"]
    if len(skipped) == len(cases):
        pytest.skip(f"skipped in the guest: {skipped[0].message}")
