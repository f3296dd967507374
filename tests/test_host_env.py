"""The env's real-host backend (tierenv.host.backend) driven against the simulated kernel:
same spaces as the simulator, weights land in sysfs, the reward comes from the host config's
references, and closing the env restores the host."""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest

import tierenv  # noqa: F401  (registers the ids)
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.host.config import load_host_config
from tierenv.host.simulated_kernel import SimulatedKernel

SCENARIO = "steady-single"


@pytest.fixture
def kernel(tmp_path) -> SimulatedKernel:
    kernel = SimulatedKernel(tmp_path / "host", SCENARIO, seed=1, initial_weights=[1, 1])
    kernel.advance()
    return kernel


def host_env(kernel: SimulatedKernel, tmp_path, **changes) -> gymnasium.Env:
    config = load_host_config(kernel.config_path)
    assert kernel.last is not None and kernel.last.truth is not None
    alone = dict(
        zip(kernel.last.measurements.app_names, kernel.last.truth.app_alone_gbps, strict=True)
    )
    config = dataclasses.replace(
        config,
        apps=tuple(dataclasses.replace(a, reference_gbps=alone[a.name]) for a in config.apps),
    )
    options = dict(
        scenario=SCENARIO, sysfs_root=kernel.root, proc_root=kernel.proc_root,
        host_config=config, page_nodes=kernel.page_nodes(), journal=tmp_path / "journal.json",
        wait=lambda _s: kernel.advance(), initial_weights=[3, 1],
    )  # fmt: skip
    options.update(changes)
    return gymnasium.make("tierenv/WeightedInterleaveHost-v0", **options)


def test_the_host_env_has_the_simulator_spaces_and_restores_on_close(kernel, tmp_path):
    before = kernel.tree_weights().tolist()
    env = host_env(kernel, tmp_path)
    sim = WeightedInterleaveEnv(SCENARIO)
    assert env.spec.nondeterministic
    assert env.observation_space == sim.observation_space
    assert env.action_space == sim.action_space
    assert env.unwrapped.observation_names == sim.observation_names

    observation, info = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    assert kernel.tree_weights().tolist() == [3, 1]
    assert (tmp_path / "journal.json").exists()
    for action in ([1.0, -1.0], [-1.0, 1.0]):
        observation, _, terminated, truncated, info = env.step(np.array(action, np.float32))
        assert env.observation_space.contains(observation)
        assert kernel.tree_weights().tolist() == info["weights"].tolist()
        assert [d.tolist() for d in kernel.dests_in_tree()] == [info["weights"].tolist()]
        # The throughput reward is the simulator's own weighted speedup for the interval.
        truth = kernel.last.truth
        assert info["reward_throughput"] == pytest.approx(truth.weighted_speedup, rel=1e-9)
        assert not terminated and not truncated
    assert kernel.tree_weights().tolist() != before
    env.close()
    assert kernel.tree_weights().tolist() == before
    assert not (tmp_path / "journal.json").exists()
    assert kernel.snapshot()["kernel/mm/damon/admin/kdamonds/nr_kdamonds"].strip() == "0"


def test_host_arguments_are_checked(kernel, tmp_path):
    with pytest.raises(ValueError, match="host_options are for backend='host'"):
        WeightedInterleaveEnv(SCENARIO, host_options={"sysfs_root": kernel.root})
    with pytest.raises(TypeError, match="unknown argument"):
        WeightedInterleaveEnv(SCENARIO, sysfs_root=kernel.root)  # backend not "host"


def test_the_quota_action_sets_our_schemes_quota(kernel, tmp_path):
    from tierenv.contracts.actions import action_to_quota

    env = host_env(kernel, tmp_path, quota_action=True)
    assert env.action_space.shape == (3,)
    env.reset(seed=0)
    quota = "kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/0/quotas/bytes"
    for value in (-1.0, 0.5):
        _, _, _, _, info = env.step(np.array([0.0, 0.0, value], np.float32))
        page = kernel.scenario.page_size
        expected = action_to_quota(value) // page * page  # per 1 s window, whole pages
        assert int(kernel.snapshot()[quota]) == expected
        assert info["damos_quota_bytes_per_s"] == pytest.approx(expected)
    env.close()


def test_the_reward_needs_references_on_a_host(kernel, tmp_path):
    env = host_env(kernel, tmp_path, host_config=kernel.config_path)
    with pytest.raises(ValueError, match="no reference_gbps"):
        env.reset(seed=0)
    env.close()
    assert kernel.tree_weights().tolist() == [1, 1]
