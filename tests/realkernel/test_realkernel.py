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
    outcome: str  # passed, failed, error, skipped, xfailed
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
                if tag == "skipped" and child.get("type") == "pytest.xfail":
                    outcome = "xfailed"
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
        cases[f"{module}.py::{name.split('[')[0]}"].append(Case(name, outcome, message.strip()))
    return dict(cases)


# QEMU has no uncore PMU, so perf-based groups are unmeasurable in the guest (the daemon
# refuses such policies); hotness and access_share need --page-nodes move_pages.
NO_PERF = ("bandwidth", "latency", "read_fraction")
POLICIES = {"TIERENV_VM_POLICY": ("hotness", "access_share"), "TIERENV_VM_POLICY_HOTNESS": ()}


def export_policies(directory: Path) -> dict[str, str]:
    """Tiny PPO policies exported to ONNX for the guest's daemon tests, as
    tests/test_host_end_to_end.py builds them (torch is slow under emulation, so this runs
    host-side; the guest reads them from the results share). Returns env vars for the guest:
    the .onnx paths, or an error text."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        from agents.export import export_policy
        from agents.policies.learned import one_torch_thread
        from tests.test_learned_policy import sharpen, write_run
        from tierenv.contracts.features import DEFAULT_GROUPS, ObservationSpec
        from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
        from tierenv.workload.scenario import load_scenario

        scenario = load_scenario("co-runner")
        found = {}
        for name, left_out in POLICIES.items():
            groups = [g for g in DEFAULT_GROUPS if g not in NO_PERF + left_out]
            env = WeightedInterleaveEnv(scenario, features=groups)
            venv = VecNormalize(DummyVecEnv([lambda env=env: env]), norm_obs=True, norm_reward=True)
            model = PPO("MlpPolicy", venv, n_steps=64, batch_size=32, n_epochs=2, seed=0,
                        device="cpu")  # fmt: skip
            with one_torch_thread():
                model.learn(128)
            sharpen(model.policy.action_net)  # decisions that depend on the observation
            run = write_run(
                directory / name.lower(), model, venv, "PPO", feature_groups=groups,
                features=list(ObservationSpec(2, groups).names),
            )  # fmt: skip
            onnx = export_policy(run, run / "policy.onnx").onnx
            found[name] = f"{vm.GUEST_OUT}/{onnx.relative_to(directory)}"
        return found
    except Exception as error:  # the policy tests report it; the others still run
        return {"TIERENV_VM_POLICY_ERROR": f"{type(error).__name__}: {error}"}


@pytest.fixture(scope="session")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    if reason := vm.check():
        pytest.skip(reason)
    memtool = vm.ensure_memtool()
    out = tmp_path_factory.mktemp("vm-out")
    junit = f"{vm.GUEST_OUT}/junit.xml"
    command = (
        f"{sys.executable} -m pytest -c {GUEST / 'pytest.ini'} --rootdir {GUEST} -v --durations=0 "
        f"--junitxml={junit} {GUEST}"
    )
    env = {"TIERENV_VM_MEMTOOL": str(memtool), **export_policies(out)}
    result = vm.run(command, out_dir=out, env=env, cwd=REPO)
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
    xfailed = [c for c in cases if c.outcome == "xfailed"]
    if xfailed:  # a known failure the guest test recognised (its message says which)
        pytest.xfail(f"expected failure in the guest: {xfailed[0].message}")
    skipped = [c for c in cases if c.outcome == "skipped"]
    if len(skipped) == len(cases):
        pytest.skip(f"skipped in the guest: {skipped[0].message}")
