"""The batched env on the fluid model: Gymnasium vector API, autoreset, reward, the SB3
adapter, registration through ``vector_entry_point`` and bad actions."""

from __future__ import annotations

import dataclasses
import os
import zlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agents.training.vec_adapters import Sb3FluidVecEnv
from tierenv.contracts import ActionError, FeatureError, action_to_weights
from tierenv.contracts.actions import action_to_quota
from tierenv.envs import WeightedInterleaveEnv
from tierenv.envs.reward import compute_reward
from tierenv.envs.vector import (
    WeightedInterleaveVectorEnv,
    make_fluid_vec_env,
    quota_from_actions,
)
from tierenv.workload.scenario import load_scenario, parse_scenario

FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "20")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def short_scenario():
    """co-runner cut to 12 s: whole episodes in a few steps."""
    return dataclasses.replace(load_scenario("co-runner"), duration_s=12.0)


@pytest.fixture(scope="module")
def envs(short_scenario):
    return WeightedInterleaveVectorEnv(3, scenario=short_scenario)


def test_spaces_and_names_are_the_single_envs():
    single = WeightedInterleaveEnv()
    batched = WeightedInterleaveVectorEnv(5)
    assert batched.single_observation_space == single.observation_space
    assert batched.single_action_space == single.action_space
    assert batched.observation_names == single.observation_names
    assert batched.observation_space.shape == (5, *single.observation_space.shape)
    assert batched.action_space.shape == (5, *single.action_space.shape)
    assert batched.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    quota = WeightedInterleaveVectorEnv(2, quota_action=True)
    assert quota.single_action_space == WeightedInterleaveEnv(quota_action=True).action_space


def test_reset_and_step_shapes_dtypes_and_bounds(envs):
    observations, info = envs.reset(seed=7)
    assert observations.shape == envs.observation_space.shape
    assert observations.dtype == np.float32
    assert envs.observation_space.contains(observations)
    assert all(np.shape(value)[0] == 3 for value in info.values())
    assert envs.env_seeds == [7, 8, 9]
    envs.action_space.seed(0)
    for _ in range(4):
        observations, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert observations.dtype == np.float32 and envs.observation_space.contains(observations)
        assert rewards.shape == (3,) and rewards.dtype == np.float64
        assert terminated.dtype == bool and truncated.dtype == bool and not terminated.any()
        assert all(np.shape(value)[0] == 3 for value in info.values())
        assert info["app_throughput_gbps"].shape == (3, len(envs.app_names))


def test_reset_is_the_full_simulators_host_before_anything_ran(short_scenario):
    """reset returns the host at time 0 (begin: idle, nothing allocated, auto weights), the
    same observation and info as the single env; the first step is interval 0 under the
    action's weights, close to the page-level host's."""
    envs = WeightedInterleaveVectorEnv(1, scenario=short_scenario)
    single = WeightedInterleaveEnv(short_scenario)
    fluid, fluid_info = envs.reset(seed=0)
    full, full_info = single.reset(seed=0)
    np.testing.assert_allclose(fluid[0], full, atol=1e-6)
    for key in ("time_s", "weights", "node_bandwidth_gbps", "node_latency_ns", "reward_throughput"):
        np.testing.assert_allclose(fluid_info[key][0], full_info[key])
    assert fluid_info["time_s"][0] == 0.0 and envs.state.step[0] == 0
    action = np.array([0.2, -0.2], dtype=np.float32)  # 3:1, not the auto weights
    fluid, fluid_reward, _, _, fluid_info = envs.step(action[None])
    full, full_reward, _, _, full_info = single.step(action)
    assert fluid_info["time_s"][0] == full_info["time_s"] == short_scenario.control_interval_s
    np.testing.assert_array_equal(fluid_info["weights"][0], full_info["weights"])
    np.testing.assert_allclose(fluid[0], full, atol=0.01)
    assert fluid_reward[0] == pytest.approx(full_reward, rel=1e-3)


def test_next_step_autoreset_at_the_scenario_end(envs, short_scenario):
    first, first_info = envs.reset(seed=0)
    actions = np.zeros(envs.action_space.shape, dtype=np.float32)
    # reset ran nothing: the episode has n_steps steps, the first one interval 0
    for step in range(short_scenario.n_steps):
        observations, rewards, _, truncated, info = envs.step(actions)
        assert truncated.all() == (step == short_scenario.n_steps - 1)
        assert not truncated.any() or truncated.all()
    assert info["time_s"][0] == short_scenario.duration_s
    assert np.all(envs.state.step == short_scenario.n_steps)
    observations, rewards, terminated, truncated, info = envs.step(actions + 0.7)
    np.testing.assert_array_equal(observations, first)  # the action was ignored
    assert not rewards.any() and not terminated.any() and not truncated.any()
    assert np.all(info["time_s"] == 0.0)
    np.testing.assert_array_equal(info["weights"], first_info["weights"])
    assert np.all(envs.state.step == 0)  # reset, not advanced
    observations, _, _, truncated, info = envs.step(actions)
    assert not truncated.any() and np.all(envs.state.step == 1)
    assert np.all(info["time_s"] == short_scenario.control_interval_s)


def test_an_autoresetting_env_waits_while_the_others_step(short_scenario):
    """Envs out of step (max_episode_steps=4, env 1 reset one step after env 0): the env
    whose episode ended is reset and not advanced; the other advances exactly as alone."""
    envs = WeightedInterleaveVectorEnv(2, scenario=short_scenario, max_episode_steps=4)
    alone = WeightedInterleaveVectorEnv(1, scenario=short_scenario)
    first, _ = envs.reset(seed=0)
    alone.reset(seed=0)
    actions = np.random.default_rng(3).uniform(-1, 1, (9, 2, 2)).astype(np.float32)
    envs.step(actions[0])
    envs.reset_envs(np.array([1]))
    for k in range(1, 9):
        observations, rewards, _, truncated, info = envs.step(actions[k])
        assert truncated.tolist() == [k in (3, 8), k == 4]
        if k <= 4:  # env 1's first episode, against the same actions alone
            expected, expected_reward, *_ = alone.step(actions[k, 1:])
            np.testing.assert_array_equal(observations[1], expected[0])
            assert rewards[1] == expected_reward[0]
        resetting = {4: 0, 5: 1}.get(k)
        if resetting is not None:
            np.testing.assert_array_equal(observations[resetting], first[resetting])
            assert rewards[resetting] == 0.0 and info["time_s"][resetting] == 0.0
            assert info["migrated_bytes"][resetting] == 0.0
            assert envs.state.step[resetting] == 0
            assert info["time_s"][1 - resetting] > 0.0
    assert envs.state.step.tolist() == [4, 3]


def test_max_episode_steps_truncates_and_seeds_do_not_change_the_dynamics(short_scenario):
    envs = WeightedInterleaveVectorEnv(2, scenario=short_scenario, max_episode_steps=3)
    runs = []
    for seed in (1, 2):
        envs.reset(seed=seed)
        flags, observations = [], []
        for _ in range(5):
            obs, _, _, truncated, _ = envs.step(np.full((2, 2), 0.3, dtype=np.float32))
            flags.append(truncated.copy())
            observations.append(obs)
        runs.append(np.array(observations))
        assert [bool(f.all()) for f in flags] == [False, False, True, False, False]
    np.testing.assert_array_equal(runs[0], runs[1])  # the fluid model is deterministic


def test_reward_is_the_single_envs_definition(short_scenario):
    envs = WeightedInterleaveVectorEnv(
        4, scenario=short_scenario, migration_cost_per_gib=2.0, initial_weights=[1, 1]
    )
    envs.reset(seed=0)
    envs.step(np.zeros((4, 2), dtype=np.float32))  # interval 0 places the pages 1:1
    actions = np.array([[1, -1], [-1, 1], [0.2, 0], [0, 0]], dtype=np.float32)
    _, rewards, _, _, info = envs.step(actions)
    outputs = envs.last_outputs
    assert info["migrated_bytes"][:3].min() > 0  # the weight change moved pages
    for b in range(4):
        result = outputs.step_result(b, envs.model.params)
        reward = compute_reward(result.measurements, result.truth, 2.0)
        assert rewards[b] == pytest.approx(reward.total, rel=1e-12)
        assert info["reward_migration"][b] == pytest.approx(reward.migration, rel=1e-12)
    np.testing.assert_array_equal(info["weights"], action_to_weights(actions, 2))


MIXED_SCENARIO = """
name = "mixed"
duration_s = 30
page_size = "2 MiB"
[[nodes]]
profile = "spr-8460y-ddr5-socket"
capacity = "64 GiB"
[[nodes]]
profile = "generic-cxl-x8"
capacity = "64 GiB"
[[apps]]
name = "main"
working_set = "8 GiB"
mlp = 300
think_ns = 10
read_fraction = 0.67
[[apps]]
name = "unscored"
working_set = "4 GiB"
mlp = 200
think_ns = 10
reward = false
start_s = 5
[[apps]]
name = "pinned"
working_set = "4 GiB"
mlp = 300
think_ns = 10
bind_node = 1
start_s = 10
stop_s = 20
[[events]]
at_s = 12
app = "main"
think_ns = 30
read_fraction = 0.8
[[traffic]]
node = 0
gbps = 20.0
start_s = 15
[damos]
quota_per_s = "1 GiB"
"""


def test_bound_unrewarded_apps_phases_and_traffic_as_the_single_env():
    """A bound co-runner, an application outside the reward, a phase event, traffic and a
    scenario DAMOS quota: the batched env reports and rewards what the single env does."""
    # the fluid env runs the scenario as written; the single env realises its [variation]
    # at reset, so the comparison is on the nominal run (variation off)
    nominal = "[variation]\narrival_jitter_s = 0\nintensity_spread = 0\nlayout = false\n"
    scenario = parse_scenario(MIXED_SCENARIO + nominal, source="mixed.toml")
    envs = WeightedInterleaveVectorEnv(1, scenario=scenario, features="privileged")
    single = WeightedInterleaveEnv(scenario, features="privileged")
    assert envs.app_names == ("main", "unscored")
    fluid, _ = envs.reset(seed=0)
    full, _ = single.reset(seed=0)
    np.testing.assert_allclose(fluid[0], full, atol=1e-6)
    actions = np.array([[0.2, -0.2]] * 15 + [[-0.1, 0.1]] * 15, dtype=np.float32)
    errors = []
    for k, action in enumerate(actions):
        fluid, reward, _, truncated, info = envs.step(action[None])
        full, full_reward, _, full_truncated, full_info = single.step(action)
        assert truncated[0] == full_truncated == (k == scenario.n_steps - 1)
        # the same columns (app_names) and the same running applications in both envs
        assert single.app_names == envs.app_names
        assert np.array_equal(info["app_running"][0], full_info["app_running"])
        np.testing.assert_allclose(
            info["app_throughput_gbps"][0], full_info["app_throughput_gbps"], rtol=0.01
        )
        errors.append(abs(reward[0] / full_reward - 1))
        result = envs.last_outputs.step_result(0, envs.model.params)
        expected = compute_reward(result.measurements, result.truth, envs.migration_cost_per_gib)
        assert reward[0] == pytest.approx(expected.total, rel=1e-12)
    # the unscored app never counts: main's speedup alone, within 0.1 % of the full simulator
    assert np.mean(errors) < 1e-3 and max(errors) < 0.01


def test_the_fluid_id_builds_it_through_its_vector_entry_point(short_scenario):
    env_id = "tierenv/WeightedInterleaveFluid-v0"
    envs = gym.make_vec(env_id, num_envs=3, scenario=short_scenario)
    assert isinstance(envs, WeightedInterleaveVectorEnv) and envs.num_envs == 3
    observations, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(observations)
    envs.step(envs.action_space.sample())
    assert envs.spec.id == env_id
    # No single fluid env: make() says what to use instead.
    with pytest.raises(gym.error.Error, match="batched only"):
        gym.make(env_id)
    # The main id's default vectorisation stays full fidelity.
    assert gym.spec("tierenv/WeightedInterleave-v0").vector_entry_point is None
    assert make_fluid_vec_env(2, scenario=short_scenario).num_envs == 2


def test_sb3_adapter_autoresets_in_the_same_step(short_scenario):
    venv = Sb3FluidVecEnv(num_envs=2, scenario=short_scenario)
    venv.seed(0)
    first = venv.reset()
    ends = []
    for _ in range(short_scenario.n_steps + 2):
        observations, rewards, dones, infos = venv.step(np.zeros((2, 2), dtype=np.float32))
        assert rewards.dtype == np.float32 and observations.shape == (2, first.shape[1])
        if dones.any():
            ends.append(infos)
            np.testing.assert_array_equal(observations, first)  # already reset
    assert len(ends) == 1
    for info in ends[0]:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == first.shape[1:]
        assert not np.array_equal(info["terminal_observation"], first[0])
    assert venv.get_attr("n_nodes") == [2, 2]
    assert venv.env_is_wrapped(gym.Wrapper) == [False, False]


def test_training_snapshots_from_before_the_sb3_adapter_moved_still_load(monkeypatch):
    """The adapter moved from ``tierenv.envs.vector`` to ``agents.training.vec_adapters``; a
    checkpoint's pickled fluid venv names the old module, which ``loads_state`` maps."""
    from agents.training.envs import dumps_state, loads_state
    from tierenv.envs import vector

    with monkeypatch.context() as patch:  # pickle it under its old name
        patch.setattr(Sb3FluidVecEnv, "__module__", "tierenv.envs.vector")
        patch.setattr(vector, "Sb3FluidVecEnv", Sb3FluidVecEnv, raising=False)
        old = dumps_state({"inner": Sb3FluidVecEnv})
    assert not hasattr(vector, "Sb3FluidVecEnv")
    assert b"tierenv.envs.vector" in zlib.decompress(old)
    assert loads_state(old) == {"inner": Sb3FluidVecEnv}


def test_ppo_trains_on_the_sb3_adapter(short_scenario, tmp_path):
    from stable_baselines3 import PPO

    venv = Sb3FluidVecEnv(num_envs=8, scenario=short_scenario)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=512)
    assert model.num_timesteps >= 512
    model.save(tmp_path / "ppo")
    action, _ = PPO.load(tmp_path / "ppo", device="cpu").predict(venv.reset())
    assert action.shape == (8, 2)


@FUZZ_SETTINGS
@given(hnp.arrays(np.float64, (3, 2), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_any_action_batch_is_used_or_refused_with_an_action_error(envs, actions):
    envs.reset(seed=0)
    if np.all(np.isfinite(actions)):
        observations, *_ = envs.step(actions)
        assert envs.observation_space.contains(observations)
    else:
        with pytest.raises(ActionError, match="non-finite"):
            envs.step(actions)


@pytest.mark.parametrize("shape", [(3,), (2, 2), (3, 3), (3, 2, 1)])
def test_wrongly_shaped_actions_raise_action_errors(envs, shape):
    envs.reset(seed=0)
    with pytest.raises(ActionError, match="shape"):
        envs.step(np.zeros(shape, dtype=np.float32))


def test_quota_action_maps_like_the_single_env(short_scenario):
    values = np.linspace(-1.5, 1.5, 31)
    assert quota_from_actions(values).tolist() == [action_to_quota(v) for v in values]
    envs = WeightedInterleaveVectorEnv(2, scenario=short_scenario, quota_action=True)
    envs.reset(seed=0)
    _, _, _, _, info = envs.step(np.array([[0.5, 0, -1], [0.5, 0, 1]], dtype=np.float32))
    expected = [action_to_quota(-1.0), action_to_quota(1.0)]
    page = short_scenario.page_size
    np.testing.assert_allclose(info["damos_quota_bytes_per_s"], np.array(expected) // page * page)


def test_bad_arguments_are_refused(short_scenario):
    with pytest.raises(TypeError, match="unknown argument"):
        WeightedInterleaveVectorEnv(2, scenario=short_scenario, colour="red")
    with pytest.raises(ValueError, match="num_envs"):
        WeightedInterleaveVectorEnv(0, scenario=short_scenario)
    with pytest.raises(FeatureError):
        WeightedInterleaveVectorEnv(2, scenario=short_scenario, features=["nope"])
    with pytest.raises(ValueError, match="initial_weights"):
        WeightedInterleaveVectorEnv(2, scenario=short_scenario, initial_weights="best")
    envs = WeightedInterleaveVectorEnv(2, scenario=short_scenario, features="privileged")
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.zeros((2, 2)))
    observations, _ = envs.reset(seed=0)
    assert observations.shape == (2, len(envs.observation_names))
    with pytest.raises(ValueError, match="seed list"):
        envs.reset(seed=[1])


# --- autoreset modes (issue 20) -----------------------------------------------------------------


def _tiny(steps: int = 4):
    return dataclasses.replace(load_scenario("co-runner"), duration_s=float(steps))


def test_autoreset_mode_is_an_argument_and_in_the_instance_metadata():
    for name, mode in [
        ("same_step", AutoresetMode.SAME_STEP),
        ("SameStep", AutoresetMode.SAME_STEP),
        (AutoresetMode.DISABLED, AutoresetMode.DISABLED),
        ("next-step", AutoresetMode.NEXT_STEP),
    ]:
        env = WeightedInterleaveVectorEnv(2, scenario=_tiny(), autoreset_mode=name)
        assert env.autoreset_mode is mode and env.metadata["autoreset_mode"] is mode
    # the class keeps the default for code that reads it there
    assert WeightedInterleaveVectorEnv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    with pytest.raises(ValueError, match=r"autoreset_mode must be one of NEXT_STEP, .*'later'"):
        WeightedInterleaveVectorEnv(2, autoreset_mode="later")
    envs = gym.make_vec(
        "tierenv/WeightedInterleaveFluid-v0", num_envs=2, autoreset_mode="same_step"
    )
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP


def test_same_step_autoreset_puts_the_last_step_in_final_obs_and_final_info():
    scenario = _tiny(4)
    same = WeightedInterleaveVectorEnv(3, scenario=scenario, autoreset_mode="same_step")
    next_step = WeightedInterleaveVectorEnv(3, scenario=scenario)
    reset_obs, reset_info = same.reset(seed=0)
    next_step.reset(seed=0)
    actions = np.tile(np.array([0.4, -0.4], dtype=np.float32), (3, 1))
    for step in range(4):
        obs, rewards, terminated, truncated, info = same.step(actions)
        expected = next_step.step(actions)
        np.testing.assert_array_equal(rewards, expected[1])
        np.testing.assert_array_equal(truncated, expected[3])
        assert not terminated.any()
        if step < 3:
            assert "final_obs" not in info
            np.testing.assert_array_equal(obs, expected[0])
    # the last step: every env ended and was reset in the same step
    assert truncated.all()
    np.testing.assert_array_equal(obs, reset_obs)
    np.testing.assert_array_equal(info["time_s"], reset_info["time_s"])
    assert info["_final_obs"].all() and info["_final_info"].all()
    assert info["final_obs"].dtype == object
    np.testing.assert_array_equal(np.stack(info["final_obs"]), expected[0])
    np.testing.assert_array_equal(info["final_info"]["time_s"], expected[4]["time_s"])
    assert info["final_info"]["_time_s"].all()
    # the next step is the first interval of the new episode (no step is lost)
    obs, rewards, _, truncated, info = same.step(actions)
    assert np.all(info["time_s"] == 1.0) and not truncated.any() and np.all(rewards > 0)


def test_same_step_marks_only_the_envs_that_ended():
    envs = WeightedInterleaveVectorEnv(3, scenario=_tiny(4), autoreset_mode="same_step")
    envs.reset(seed=0)
    actions = np.zeros((3, 2), dtype=np.float32)
    envs.step(actions)
    envs.reset_envs(np.array([1]))  # env 1 starts over one step later than the others
    for _ in range(3):
        _, _, _, truncated, info = envs.step(actions)
    assert truncated.tolist() == [True, False, True]
    assert info["_final_obs"].tolist() == [True, False, True]
    assert info["final_obs"][1] is None
    assert info["final_info"]["_weights"].tolist() == [True, False, True]
    assert info["time_s"].tolist() == [0.0, 3.0, 0.0]


def test_disabled_autoreset_needs_a_masked_reset_before_stepping_an_ended_env():
    envs = WeightedInterleaveVectorEnv(2, scenario=_tiny(3), autoreset_mode="disabled")
    envs.reset(seed=0)
    actions = np.zeros((2, 2), dtype=np.float32)
    for _ in range(3):
        last_obs, _, _, truncated, _ = envs.step(actions)
    assert truncated.all()
    with pytest.raises(RuntimeError, match=r"env\(s\) \[0, 1\] ended .*reset_mask"):
        envs.step(actions)
    obs, info = envs.reset(options={"reset_mask": np.array([True, False])})
    assert info["time_s"].tolist() == [0.0, 3.0]
    np.testing.assert_array_equal(obs[1], last_obs[1])  # untouched
    with pytest.raises(RuntimeError, match=r"env\(s\) \[1\] ended"):
        envs.step(actions)
    envs.reset(options={"reset_mask": np.array([False, True])})
    _, _, _, truncated, info = envs.step(actions)
    assert info["time_s"].tolist() == [1.0, 1.0] and not truncated.any()
    with pytest.raises(ValueError, match=r"reset_mask must be a boolean array of shape \(2,\)"):
        envs.reset(options={"reset_mask": [1, 0]})
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) 'bogus'"):
        envs.reset(options={"bogus": 1})


def test_sb3_adapter_works_on_a_same_step_vector_env():
    same = WeightedInterleaveVectorEnv(2, scenario=_tiny(3), autoreset_mode="same_step")
    reference = Sb3FluidVecEnv(num_envs=2, scenario=_tiny(3))
    adapter = Sb3FluidVecEnv(same)
    adapter.reset()
    reference.reset()
    actions = np.zeros((2, 2), dtype=np.float32)
    for _ in range(3):
        obs, _, dones, infos = adapter.step(actions)
        expected = reference.step(actions)
    assert dones.all()
    np.testing.assert_array_equal(obs, expected[0])
    for got, want in zip(infos, expected[3], strict=True):
        np.testing.assert_array_equal(got["terminal_observation"], want["terminal_observation"])
        assert got["TimeLimit.truncated"] and want["TimeLimit.truncated"]
