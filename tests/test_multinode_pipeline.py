"""The pipeline beyond two nodes: on the suite's three- and four-node hosts a policy trains,
exports to ONNX, and the daemon run against the simulated kernel makes the decisions the same
policy makes in the simulator env, with DAMOS dests for every node."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.test_host_end_to_end import GROUPS, env_decisions, run_daemon_on, train_and_export
from tierenv.host.simulated_kernel import SimulatedKernel
from tierenv.sim.damos_setup import DamosSetup
from tierenv.workload.scenario import load_scenario

SEED = 3
STEPS = 12


def shortened(name: str) -> Any:
    """Shipped ``name`` cut to 16 s with every start, stop and event moved into it, so
    applications still arrive and leave during the run."""
    shipped = load_scenario(name)
    scale = 16.0 / shipped.duration_s
    apps = tuple(
        dataclasses.replace(
            run,
            start_s=round(run.start_s * scale),
            stop_s=None if run.stop_s is None else round(run.stop_s * scale),
        )
        for run in shipped.apps
    )
    events = tuple(dataclasses.replace(e, at_s=round(e.at_s * scale)) for e in shipped.events)
    return dataclasses.replace(shipped, duration_s=16.0, apps=apps, events=events)


@pytest.fixture(
    scope="module", params=["two-socket-cxl", "caption-load-phases", "colloid-antagonist"]
)
def case(request, tmp_path_factory) -> dict[str, Any]:
    scenario = shortened(request.param)
    # seed 1: its tiny policies change their weights on all three hosts
    run, onnx = train_and_export(tmp_path_factory.mktemp("runs"), scenario, GROUPS, seed=1)
    return {"scenario": scenario, "run": run, "onnx": onnx, "n_nodes": len(scenario.nodes)}


def test_the_daemon_decides_as_the_policy_does_on_n_nodes(case, tmp_path) -> None:
    scenario, n_nodes = case["scenario"], case["n_nodes"]
    initial = [2] + [1] * (n_nodes - 1)
    expected, _ = env_decisions(scenario, case["run"], STEPS, initial, SEED)
    assert all(len(w) == n_nodes for w in expected)
    assert len({tuple(w) for w in expected}) > 1, "the test policy must vary its weights"

    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=SEED, initial_weights=initial)
    config = kernel.config_path.read_text()
    for run in scenario.apps:  # the daemon manages the managed apps only, as on a host
        assert (f'name = "{run.app.name}"' in config) == (run.bind_node is None)
    kernel.advance()
    before = kernel.snapshot()
    # the operator runs DAMOS as the scenario does (--damos-quota): the policy sees the quota
    out = run_daemon_on(kernel, case["onnx"], tmp_path, STEPS, DamosSetup.for_scenario(scenario))

    assert out["code"] == 0, out["records"][-3:]
    decided = [d["asked"] for d in out["decisions"]]
    assert decided == expected
    assert all(d["error"] is None and d["fallback"] is None for d in out["decisions"])
    # Every kdamond's dests name all nodes, weighted as the policy asked.
    for applied, dests in zip(decided[:-1], out["dests"][1:], strict=False):
        assert all(d.tolist() == applied for d in dests)
    after = kernel.snapshot()
    wi = "kernel/mm/mempolicy/weighted_interleave"
    assert {k: v for k, v in after.items() if k.startswith(wi)} == {
        k: v for k, v in before.items() if k.startswith(wi)
    }
    assert after["kernel/mm/damon/admin/kdamonds/nr_kdamonds"].strip() == "0"
