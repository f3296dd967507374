"""The batched fluid env on a distribution (``MixedScenarioVectorEnv``): groups of envs run
drawn scenarios that change every episode, a seed fixes them, the three autoreset modes
work across scenario changes, and each group steps as a lone fluid env on its scenario."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import tierenv  # noqa: F401  (registers the ids)
from agents.training.vec_adapters import Sb3FluidVecEnv
from tests.test_variation import signature
from tierenv.envs.vector import WeightedInterleaveVectorEnv
from tierenv.envs.vector_mixed import MixedScenarioVectorEnv


def run_until_every_group_redrew(env: MixedScenarioVectorEnv, actions: np.ndarray) -> list:
    """Step with constant ``actions`` until each group has finished an episode; returns the
    scenario names seen per group."""
    seen = [[s.description] for s in env.scenarios]
    for _ in range(400):
        env.step(actions)
        for g, scenario in enumerate(env.scenarios):
            if scenario.description != seen[g][-1]:
                seen[g].append(scenario.description)
        if all(len(s) > 1 for s in seen):
            break
    return seen


def test_make_vec_on_a_distribution_mixes_scenarios_and_redraws_them() -> None:
    env = gym.make_vec("tierenv/WeightedInterleaveFluid-v0", num_envs=6, scenario="random:default")
    assert isinstance(env, MixedScenarioVectorEnv)
    mixed = MixedScenarioVectorEnv(6, "random:default", groups=3)
    observations, info = mixed.reset(seed=0)
    assert observations.shape == (6, *mixed.single_observation_space.shape)
    assert info["app_throughput_gbps"].shape == (6, len(mixed.app_names))
    assert mixed.group_of_env.tolist() == [0, 0, 1, 1, 2, 2]
    first = [s.description for s in mixed.scenarios]
    assert len(set(first)) == 3
    actions = np.zeros(mixed.action_space.shape, dtype=np.float32)
    seen = run_until_every_group_redrew(mixed, actions)
    assert all(len(s) > 1 for s in seen), "every group draws a new scenario after its episode"
    # the same seed draws the same scenarios
    mixed.reset(seed=0)
    assert [s.description for s in mixed.scenarios] == first
    mixed.reset(seed=1)
    assert [s.description for s in mixed.scenarios] != first


def test_a_group_steps_as_a_lone_fluid_env_on_its_scenario() -> None:
    mixed = MixedScenarioVectorEnv(4, "random:three-node", groups=2)
    mixed.reset(seed=3)
    rng = np.random.default_rng(0)
    lone = WeightedInterleaveVectorEnv(2, scenario=mixed.scenarios[1])
    lone.reset()
    for _ in range(20):
        actions = rng.uniform(-1, 1, mixed.action_space.shape).astype(np.float32)
        observations, rewards, _, _, info = mixed.step(actions)
        lone_observations, lone_rewards, _, _, lone_info = lone.step(actions[2:])
        np.testing.assert_allclose(observations[2:], lone_observations)
        np.testing.assert_allclose(rewards[2:], lone_rewards)
        columns = [mixed.app_names.index(n) for n in lone.app_names]
        np.testing.assert_allclose(
            info["app_throughput_gbps"][2:, columns], lone_info["app_throughput_gbps"]
        )


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_autoreset_modes_across_scenario_changes(mode: str) -> None:
    env = MixedScenarioVectorEnv(4, "random:default", groups=2, autoreset_mode=mode)
    env.reset(seed=2)
    actions = np.zeros(env.action_space.shape, dtype=np.float32)
    lengths = [s.n_steps for s in env.scenarios]
    for step in range(1, max(lengths) + 3):
        if mode == "disabled" and env._autoreset.any():
            with pytest.raises(RuntimeError, match="DISABLED"):
                env.step(actions)
            before = [s.description for s in env.scenarios]
            env.reset(options={"reset_mask": env._autoreset.copy()})
            assert [s.description for s in env.scenarios] != before
        observations, _, _, truncated, info = env.step(actions)
        assert env.observation_space.contains(observations)
        for g, rows in enumerate(([0, 1], [2, 3])):
            if step == lengths[g]:
                assert truncated[rows].all()
                if mode == "same_step":
                    assert info["_final_obs"][rows].all()
                    assert all(info["final_obs"][r] is not None for r in rows)
        if step > max(lengths):
            break


def test_sb3_adapter_and_bad_arguments() -> None:
    venv = Sb3FluidVecEnv(num_envs=4, scenario="random:four-node")
    observations = venv.reset()
    assert observations.shape == (4, *venv.observation_space.shape)
    venv.step(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="MixedScenarioVectorEnv"):
        WeightedInterleaveVectorEnv(2, scenario="random:default")
    with pytest.raises(TypeError, match="unexpected keyword argument 'frameskip'"):
        MixedScenarioVectorEnv(2, "random:default", frameskip=4)
    with pytest.raises(ValueError, match="groups"):
        MixedScenarioVectorEnv(2, "random:default", groups=0)
    assert MixedScenarioVectorEnv(2, "random:default").metadata["autoreset_mode"] is (
        AutoresetMode.NEXT_STEP
    )


def test_one_scenario_runs_a_fresh_realisation_per_group_and_episode() -> None:
    """Given one scenario, the groups run its realisations (tierenv.workload.variation): they
    differ between groups and episodes, a seed fixes them, and the info columns are the
    scenario's applications."""
    env = MixedScenarioVectorEnv(4, "co-runner", groups=2)
    env.reset(seed=3)
    assert env.app_names == ("bw-a", "bw-b")
    assert all(s.name == "co-runner" and not s.variation.active for s in env.scenarios)
    first = [signature(s) for s in env.scenarios]
    assert first[0] != first[1]
    again = MixedScenarioVectorEnv(4, "co-runner", groups=2)
    again.reset(seed=3)
    assert [signature(s) for s in again.scenarios] == first
    for _ in range(env.scenarios[0].n_steps + 1):  # the end, then NEXT_STEP's autoreset redraws
        env.step(np.zeros((4, 2), dtype=np.float32))
    assert all(signature(new) != old for new, old in zip(env.scenarios, first, strict=True))
