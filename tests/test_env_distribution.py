"""The env on a scenario distribution (``scenario="random:NAME"``): every reset draws a new
scenario from the env's own generator, so a reset seed fixes the whole sequence, while the
spaces and info columns stay fixed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import tierenv  # noqa: F401  (registers the ids)
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.workload.generator import DistributionError, load_distribution


def scenario_sequence(env: WeightedInterleaveEnv, seed: int, episodes: int) -> list[str]:
    """The descriptions of the scenarios of ``episodes`` resets, the first seeded."""
    drawn = []
    for episode in range(episodes):
        env.reset(seed=seed if episode == 0 else None)
        drawn.append(f"{env.scenario.duration_s} {env.scenario.description}")
    return drawn


def test_a_seed_fixes_the_sequence_of_scenarios() -> None:
    env = WeightedInterleaveEnv("random:default")
    first = scenario_sequence(env, 0, 4)
    assert scenario_sequence(env, 0, 4) == first
    assert len(set(first)) == 4  # a new scenario every episode
    assert scenario_sequence(env, 1, 4) != first
    # a fresh env with the same seed draws the same scenarios
    assert scenario_sequence(WeightedInterleaveEnv("random:default"), 0, 4) == first


@pytest.mark.parametrize("name", ["default", "three-node", "four-node"])
def test_spaces_and_columns_stay_fixed_across_drawn_hosts(name: str) -> None:
    distribution = load_distribution(name)
    env = WeightedInterleaveEnv(f"random:{name}")
    observation_space, action_space = env.observation_space, env.action_space
    assert action_space.shape == (distribution.n_nodes,)
    assert env.app_names == tuple(f"app-{i}" for i in range(int(distribution.apps.count.high)))
    hosts = set()
    for seed in range(4):
        observation, info = env.reset(seed=seed)
        hosts.add(env.node_info.names)
        assert env.observation_space == observation_space and env.action_space == action_space
        assert observation_space.contains(observation)
        # the initial weights follow the drawn host's bandwidths (kernel auto)
        assert info["weights"].shape == (distribution.n_nodes,)
        steps, truncated = 0, False
        while not truncated:
            observation, _, _, truncated, info = env.step(action_space.sample())
            steps += 1
            assert info["app_throughput_gbps"].shape == (len(env.app_names),)
        assert steps == env.scenario.n_steps
        assert observation_space.contains(observation)
    assert len(hosts) > 1, "draws should visit more than one host"


def test_the_registered_id_takes_a_distribution() -> None:
    env = gym.make("tierenv/WeightedInterleave-v0", scenario="random:three-node",
                   max_episode_steps=-1)  # fmt: skip
    env.reset(seed=5)
    assert env.unwrapped.n_nodes == 3
    _, _, _, truncated, _ = env.step(env.action_space.sample())
    assert not truncated
    env.close()


def test_bad_distributions_and_host_factories_are_refused() -> None:
    with pytest.raises(DistributionError, match="no such distribution"):
        WeightedInterleaveEnv("random:no-such-distribution")
    with pytest.raises(ValueError, match="simulated host"):
        WeightedInterleaveEnv("random:default", host_factory=lambda seed, weights: None)


def test_an_ordinary_scenario_is_not_redrawn() -> None:
    """Only its run is realised anew (tierenv.workload.variation): same apps, same nodes."""
    env = WeightedInterleaveEnv("steady-single")
    nominal = env.nominal_scenario
    env.reset(seed=0)
    first = env.scenario
    env.reset(seed=1)
    assert env.nominal_scenario is nominal
    assert env.scenario.apps[0].app.mlp != first.apps[0].app.mlp
    assert env.scenario.name == nominal.name
    assert [r.app.name for r in env.scenario.apps] == [r.app.name for r in nominal.apps]
    assert np.array_equal(env.node_info.peak_gbps, nominal.node_info().peak_gbps)
