"""The floor guard (agents.controllers.guard): probe, trust, fall back, per load."""

from __future__ import annotations

import pytest

from agents.controllers import make_controller
from agents.controllers.base import Controller, ControllerError
from agents.controllers.guard import (
    FALLBACK,
    POLICY,
    PROBE,
    FloorGuard,
    GuardSettings,
)
from agents.controllers.static import StaticController
from experiments.compare.config import PolicySpec
from experiments.compare.episode import Trial, run_trial
from tests.test_controllers import make_context, make_measurements, make_nodes

FALLBACK_WEIGHTS, POLICY_WEIGHTS = [9, 1], [1, 3]
SETTINGS = GuardSettings(margin=0.05, probe_s=4, settle_s=1, window_s=3)


class Recording(StaticController):
    """A static policy that counts the measurements it saw."""

    def reset(self, context) -> None:  # type: ignore[no-untyped-def]
        super().reset(context)
        self.seen = 0

    def decide(self, measurements):  # type: ignore[no-untyped-def]
        self.seen += 1
        return super().decide(measurements)


def make_guard(settings: GuardSettings = SETTINGS) -> tuple[FloorGuard, Recording]:
    policy = Recording(weights=POLICY_WEIGHTS)
    guard = FloorGuard(policy, StaticController(weights=FALLBACK_WEIGHTS), settings)
    guard.reset(make_context(make_nodes()))
    return guard, policy


def run(guard: FloorGuard, throughput_under: dict[str, float], steps: int, apps=("a", "b")):
    """Step the guard: each interval's throughput depends on the weights it applied."""
    weights = guard.decide(make_measurements(throughput=(0.0,) * 0, app_names=()))
    modes = []
    for t in range(steps):
        tput = throughput_under[POLICY if weights.tolist() == POLICY_WEIGHTS else FALLBACK]
        measured = make_measurements(
            throughput=[tput] * len(apps), app_names=apps, weights=weights, time_s=t + 1.0
        )
        weights = guard.decide(measured)
        modes.append(guard.mode)
    return modes


def test_a_policy_that_holds_its_own_keeps_control_after_the_probe() -> None:
    guard, policy = make_guard()
    modes = run(guard, {POLICY: 99.0, FALLBACK: 100.0}, 20)  # 1 % worse: within the margin
    # the load appears in the first interval: 4 intervals at the probe's weights (the first
    # measured one settles), then the policy for good
    assert modes[:4] == [PROBE] * 4 and set(modes[4:]) == {POLICY}
    assert guard.references[("a", "b")] == {"a": 100.0, "b": 100.0}
    assert policy.seen == 21  # it saw every measurement, probe included


def test_a_losing_policy_is_overruled_on_that_load_and_whenever_it_returns() -> None:
    guard, _ = make_guard()
    modes = run(guard, {POLICY: 80.0, FALLBACK: 100.0}, 12)
    # probe 4, settle 1, then a full window of 3 scores at 0.8 -> fall back
    assert modes.index(FALLBACK) == 4 + 1 + 3
    assert set(modes[modes.index(FALLBACK) :]) == {FALLBACK}
    lost = [e for e in guard.events if e.mode == FALLBACK and e.score is not None]
    assert len(lost) == 1 and lost[0].score == pytest.approx(0.8)
    # another load gets its own probe and its own chance; the lost load stays overruled
    assert run(guard, {POLICY: 100.0, FALLBACK: 100.0}, 6, apps=("a",))[4] == POLICY
    assert set(run(guard, {POLICY: 80.0, FALLBACK: 100.0}, 6)) == {FALLBACK}


def test_idle_intervals_run_the_fallback() -> None:
    guard, _ = make_guard()
    weights = guard.decide(make_measurements(throughput=(), app_names=()))
    assert weights.tolist() == FALLBACK_WEIGHTS and guard.mode == FALLBACK


def test_make_controller_wraps_any_kind_with_the_kernel_auto_fallback() -> None:
    guard = make_controller("static", weights=[1, 3], guard={"margin": 0.1})
    assert isinstance(guard, FloorGuard) and guard.settings.margin == 0.1
    guard.reset(make_context(make_nodes()))
    assert guard.describe() == "static 1:3 (floor: kernel-auto 28:3)"
    assert not isinstance(make_controller("static", weights=[1, 3], guard=False), FloorGuard)


def test_the_fallback_may_be_an_operators_static_weights() -> None:
    guard = make_controller("static", weights=POLICY_WEIGHTS, guard={"fallback": [9, 1]})
    assert isinstance(guard, FloorGuard) and guard.settings == GuardSettings()
    guard.reset(make_context(make_nodes()))
    assert guard.describe() == "static 1:3 (floor: static 9:1)"
    # the probe places the load's first pages by the fallback's weights
    first = guard.decide(make_measurements(throughput=[1.0], app_names=("a",), time_s=1.0))
    assert guard.mode == PROBE and first.tolist() == FALLBACK_WEIGHTS
    named = make_controller("static", weights=[1, 3], guard={"fallback": "kernel-auto"})
    named.reset(make_context(make_nodes()))
    assert named.describe() == "static 1:3 (floor: kernel-auto 28:3)"
    wrong_size = make_controller("static", weights=[1, 3], guard={"fallback": [9, 1, 1]})
    with pytest.raises(ControllerError, match="has 3 values but the host has 2"):
        wrong_size.reset(make_context(make_nodes()))


@pytest.mark.parametrize(
    ("guard", "message"),
    [
        ({"margins": 0.1}, "unknown field 'margins'; valid: .*window_s, fallback"),
        ({"fallback": "fast"}, r"guard\.fallback: must be kernel-auto or a list of weights"),
        ({"fallback": []}, r"guard\.fallback: must be kernel-auto or a list of weights"),
        ({"fallback": {"table": "x.json"}}, r"guard\.fallback: must be kernel-auto or a list"),
        ({"fallback": [0, 1]}, r"guard\.fallback: static: parameter weights=\[0, 1\]"),
        ({"margin": 1.5}, r"guard\.margin: must be in \[0, 1\)"),
        ({"probe_s": "long"}, r"guard\.probe_s: must be a number"),
        ({"probe_s": 2, "settle_s": 2}, "settle_s .* must be below probe_s"),
        ("yes", "must be true or a mapping"),
    ],
)
def test_bad_settings_are_named(guard: object, message: str) -> None:
    with pytest.raises(ControllerError, match=message):
        make_controller("static", weights=[1, 3], guard=guard)


def test_a_guarded_privileged_policy_stays_privileged() -> None:
    guard = make_controller("oracle-greedy", guard=True)
    assert guard.privileged
    with pytest.raises(ControllerError, match="privileged"):
        guard.reset(make_context(make_nodes()))


def test_on_the_simulator_the_guard_lifts_a_bad_policy_towards_the_floor() -> None:
    """All pages on the CXL node on a bandwidth-light load: far below the kernel's auto
    weights; the guard gives most of that back (its probe and window still cost)."""

    def episode(kind: str, **params) -> float:  # type: ignore[no-untyped-def]
        trial = Trial("steady-single", PolicySpec(kind, kind, params), seed=0)
        return run_trial(trial).episode_return

    auto = episode("kernel-auto")
    bad = episode("static", weights=[1, 255])
    guarded = episode("static", weights=[1, 255], guard=True)
    assert bad < 0.9 * auto  # the premise: the policy is much worse than the floor
    assert guarded > bad + 0.5 * (auto - bad)


def test_guard_is_a_controller_without_a_kind_of_its_own() -> None:
    from agents.controllers import controller_kinds

    assert all(not issubclass(cls, FloorGuard) for cls in controller_kinds().values())
    assert issubclass(FloorGuard, Controller)
    guard = make_controller("static", weights=[2, 1], guard=True)
    assert isinstance(guard, FloorGuard) and guard.settings == GuardSettings()


# ------------------------------------------------------------------------ the daemon
from tests.test_host_end_to_end import SEED, scenario  # noqa: E402,F401  (a fixture)


def test_the_daemon_runs_a_guarded_controller_and_logs_its_mode(
    scenario,  # noqa: F811  (the imported fixture)
    tmp_path,
    monkeypatch,
    capsys,
):
    import json
    from pathlib import Path

    from tierenv.cli import main
    from tierenv.daemon import Daemon
    from tierenv.host.simulated_kernel import SimulatedKernel
    from tierenv.host.sysfs import SysfsRoot

    kernel = SimulatedKernel(tmp_path / "host", scenario, seed=SEED, initial_weights=[2, 1])
    kernel.advance()
    monkeypatch.setattr(Daemon, "_interruptible_sleep", lambda self, _s: kernel.advance())
    monkeypatch.setattr(
        "tierenv.daemon.SysfsRoot",
        lambda path: kernel.root if Path(path) == kernel.path else SysfsRoot(path),
    )
    log = tmp_path / "log.jsonl"
    base = [
        "daemon", "--sysfs-root", str(kernel.path), "--host-config", str(kernel.config_path),
        "--page-nodes", "none", "--controller", "static", "--param", "weights=[1,3]",
        "--journal", str(tmp_path / "j.json"), "--log", str(log), "--max-intervals", "3",
    ]  # fmt: skip
    assert main([*base, "--guard", '{"probe_s": 2, "settle_s": 1}']) == 0, capsys.readouterr()
    decisions = [
        record
        for record in map(json.loads, log.read_text().splitlines())
        if record["event"] == "decision"
    ]
    assert [d["guard"] for d in decisions][-1] in ("probe", "policy")
    assert all(d["guard_lost_loads"] == [] for d in decisions)
    capsys.readouterr()
    assert main([*base, "--guard", "{margin"]) == 2
    assert "--guard '{margin': not JSON" in capsys.readouterr().err
    assert main([*base, "--guard", '{"margin": 2}']) == 2
    assert "guard.margin: must be in [0, 1)" in capsys.readouterr().err
    # an operator's own weights as the floor: the new load's probe runs them
    guard = '{"probe_s": 2, "settle_s": 1, "fallback": [5, 1]}'
    own = tmp_path / "own.jsonl"
    argv = [*base[: base.index("--log")], "--log", str(own), "--max-intervals", "3"]
    assert main([*argv, "--guard", guard]) == 0, capsys.readouterr()
    records = [json.loads(line) for line in own.read_text().splitlines()]
    probes = [r for r in records if r["event"] == "decision" and r["guard"] == "probe"]
    assert probes and all(r["applied"] == [5, 1] for r in probes)


def test_a_guard_does_not_hide_a_policy_made_for_another_host():
    from types import SimpleNamespace

    from agents.controllers.base import HostNeeds
    from tierenv.daemon import check_controller_fits

    class ThreeNodes(StaticController):
        def needs(self) -> HostNeeds:
            return HostNeeds(n_nodes=3)

    metrics = SimpleNamespace(config=SimpleNamespace(n_nodes=2, source="host.toml"))
    guard = FloorGuard(ThreeNodes(weights=[1, 1, 1]), StaticController(weights=[1, 1]))
    with pytest.raises(ValueError, match=r"the policy is for 3 memory nodes; host\.toml lists 2"):
        check_controller_fits(guard, metrics, use_damos=False)  # type: ignore[arg-type]


def test_a_guard_needs_what_its_policy_and_fallback_need():
    from agents.controllers.base import ControllerError, HostNeeds

    policy = HostNeeds(n_nodes=2, feature_groups=("bandwidth", "damos_quota"))
    assert policy.merged(HostNeeds()) == policy
    assert HostNeeds().merged(policy) == policy
    both = policy.merged(HostNeeds(2, ("latency", "bandwidth")))
    assert both == HostNeeds(2, ("bandwidth", "damos_quota", "latency"))
    with pytest.raises(ControllerError, match="made for 2 and 3 memory nodes"):
        policy.merged(HostNeeds(n_nodes=3))
