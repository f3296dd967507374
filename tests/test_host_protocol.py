"""The ``Host`` protocol's ``close`` and ``reference_gbps`` (the env calls them, no
``getattr``), on every host; and the real host's options as a ``HostOptions`` dataclass that
the env also takes as a dict or as keyword arguments."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import numpy as np
import pytest

from tierenv.contracts.host import Host
from tierenv.contracts.measurements import StepResult
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.host.backend import HostOptions, RealHost
from tierenv.host.config import load_host_config
from tierenv.host.simulated_kernel import SimulatedKernel
from tierenv.sim.host import SimulatedHost
from tierenv.workload.scenario import load_scenario

SCENARIO = "co-runner"


def protocol_members() -> set[str]:
    names = {name for name in vars(Host) if not name.startswith("_")}
    return names | set(typing.get_type_hints(Host))


@pytest.mark.parametrize("host_class", [SimulatedHost, RealHost])
def test_every_host_implements_every_member_of_the_protocol(host_class):
    assert {"close", "reference_gbps"} <= protocol_members()
    missing = [name for name in protocol_members() if not hasattr(host_class, name)]
    assert missing == []


def test_the_simulated_host_is_a_host_whose_references_are_its_truth():
    host = SimulatedHost(load_scenario(SCENARIO), weights=[3, 1], seed=0)
    assert isinstance(host, Host)
    host.begin()
    checked = 0
    for _ in range(75):  # bw-b joins at 60 s
        result = host.step()
        names = result.measurements.app_names
        assert result.truth is not None
        np.testing.assert_array_equal(host.reference_gbps(names), result.truth.app_alone_gbps)
        checked += len(names)
    assert checked > 75  # two applications ran at some point
    with pytest.raises(ValueError, match="not running"):
        host.reference_gbps(("nobody",))
    assert host.close() == []
    assert host.close() == []


class TruthlessHost:
    """A simulated host that reports no ground truth, as a real host does: the env must
    take the reward's references from ``reference_gbps``."""

    def __init__(self, inner: SimulatedHost, close_failures: list[str] | None = None) -> None:
        self.inner = inner
        self.asked: list[tuple[str, ...]] = []
        self.closed = 0
        self.close_failures = close_failures or []

    node_info = property(lambda self: self.inner.node_info)
    control_interval_s = property(lambda self: self.inner.control_interval_s)
    time_s = property(lambda self: self.inner.time_s)
    done = property(lambda self: self.inner.done)
    weights = property(lambda self: self.inner.weights)

    def set_weights(self, weights):
        self.inner.set_weights(weights)

    def set_damos_quota(self, bytes_per_s):
        self.inner.set_damos_quota(bytes_per_s)

    def begin(self) -> StepResult:
        return StepResult(self.inner.begin().measurements, None)

    def step(self) -> StepResult:
        return StepResult(self.inner.step().measurements, None)

    def reference_gbps(self, app_names):
        self.asked.append(app_names)
        return self.inner.reference_gbps(app_names)

    def close(self) -> list[str]:
        self.closed += 1
        return self.close_failures


def test_the_env_takes_the_rewards_references_from_a_truthless_host():
    scenario = load_scenario(SCENARIO)
    hosts: list[TruthlessHost] = []

    def truthless(seed, weights):
        hosts.append(TruthlessHost(SimulatedHost(scenario, weights=weights, seed=seed)))
        return hosts[-1]

    def simulated(seed, weights):
        return SimulatedHost(scenario, weights=weights, seed=seed)

    envs = [WeightedInterleaveEnv(scenario, host_factory=f) for f in (truthless, simulated)]
    for env in envs:
        env.reset(seed=4)
    for step in range(70):
        action = np.array([0.4, -0.4] if step % 20 < 10 else [-0.2, 0.2], np.float32)
        (obs_a, reward_a, *_, info_a), (obs_b, reward_b, *_, info_b) = (
            env.step(action) for env in envs
        )
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == pytest.approx(reward_b, rel=1e-12)
        assert info_a["reward_throughput"] == pytest.approx(info_b["reward_throughput"])
    host = hosts[-1]
    assert len(host.asked) == 71  # reset and every step
    envs[0].close()
    envs[1].close()
    assert host.closed == 1


def test_closing_the_env_reports_what_the_host_could_not_restore():
    scenario = load_scenario(SCENARIO)
    env = WeightedInterleaveEnv(
        scenario,
        host_factory=lambda seed, weights: TruthlessHost(
            SimulatedHost(scenario, weights=weights, seed=seed), ["weights: EBUSY"]
        ),
    )
    with pytest.raises(RuntimeError, match=r"could not be fully restored.*EBUSY"):
        env.close()


# ---------------------------------------------------------------------- HostOptions
def test_host_options_are_real_hosts_arguments_with_its_defaults():
    parameters = list(inspect.signature(RealHost).parameters.values())
    fields = dataclasses.fields(HostOptions)
    assert [p.name for p in parameters] == [f.name for f in fields] == list(HostOptions.names())
    for parameter, field in zip(parameters, fields, strict=True):
        default = dataclasses.MISSING if parameter.default is parameter.empty else parameter.default
        assert field.default == default, field.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        HostOptions("/x", "/y").journal = "/z"  # type: ignore[misc]


def test_host_options_of_a_dict_with_more_on_top():
    options = HostOptions.of({"sysfs_root": "/a", "host_config": "/c", "pids": [1]}, pids=[2])
    assert options == HostOptions("/a", "/c", pids=[2])
    assert HostOptions.of(options, use_damos=False) == HostOptions(
        "/a", "/c", pids=[2], use_damos=False
    )
    assert HostOptions.of(options).arguments()["pids"] is options.pids  # not copied


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"sysfs_root": "/a", "host_config": "/c", "sysfs": "/b"}, r"unknown host option.*'sysfs'"),
        ({"sysfs_root": "/a"}, "needs host_config"),
        ({}, "needs sysfs_root and host_config"),
    ],
)
def test_host_options_name_what_is_wrong(given, message):
    with pytest.raises(TypeError, match=message):
        HostOptions.of(given)


def test_the_env_names_an_unknown_host_option_before_touching_a_host(tmp_path):
    with pytest.raises(TypeError, match=r"unknown host option.*'sysfs'.*host options: sysfs_root"):
        WeightedInterleaveEnv(
            "steady-single",
            backend="host",
            host_options={"sysfs_root": tmp_path, "host_config": tmp_path / "h", "sysfs": 1},
        )
    with pytest.raises(ValueError, match="host_options are for backend='host'"):
        WeightedInterleaveEnv("steady-single", host_options=HostOptions(tmp_path, tmp_path))


@pytest.fixture
def kernel(tmp_path) -> SimulatedKernel:
    kernel = SimulatedKernel(tmp_path / "host", "steady-single", seed=1, initial_weights=[1, 1])
    kernel.advance()
    return kernel


def references_config(kernel: SimulatedKernel):
    config = load_host_config(kernel.config_path)
    assert kernel.last is not None and kernel.last.truth is not None
    truth, names = kernel.last.truth, kernel.last.measurements.app_names
    alone = dict(zip(names, truth.app_alone_gbps, strict=True))
    apps = tuple(dataclasses.replace(a, reference_gbps=alone[a.name]) for a in config.apps)
    return dataclasses.replace(config, apps=apps)


@pytest.mark.parametrize("form", ["dataclass", "dict", "dict and keywords", "keywords"])
def test_the_env_takes_host_options_in_every_form(kernel, tmp_path, form):
    before = kernel.tree_weights().tolist()
    options = HostOptions(
        sysfs_root=kernel.root,
        host_config=references_config(kernel),
        proc_root=kernel.proc_root,
        journal=tmp_path / "journal.json",
        page_nodes=kernel.page_nodes(),
        wait=lambda _s: kernel.advance(),
    )
    arguments = options.arguments()
    given = {
        "dataclass": {"host_options": options},
        "dict": {"host_options": arguments},
        "dict and keywords": {
            "host_options": {**arguments, "journal": tmp_path / "elsewhere.json"},
            "journal": tmp_path / "journal.json",  # the keyword wins
        },
        "keywords": arguments,
    }[form]
    env = WeightedInterleaveEnv("steady-single", backend="host", initial_weights=[3, 1], **given)
    assert isinstance(env.host, RealHost) and isinstance(env.host, Host)
    env.reset(seed=0)
    assert (tmp_path / "journal.json").exists()
    assert kernel.tree_weights().tolist() == [3, 1]
    *_, info = env.step(np.array([1.0, -1.0], np.float32))
    assert kernel.tree_weights().tolist() == info["weights"].tolist()
    assert info["reward_throughput"] == pytest.approx(kernel.last.truth.weighted_speedup)
    env.close()
    assert kernel.tree_weights().tolist() == before
    assert not (tmp_path / "journal.json").exists()
