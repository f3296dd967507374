"""The Gymnasium environment: API conformance, determinism, bad input, vectorisation."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tierenv  # noqa: F401 - registers the env ids
from tierenv.contracts import ActionError, FeatureError, action_to_weights
from tierenv.contracts.features import GROUPS_BY_NAME
from tierenv.envs import WeightedInterleaveEnv
from tierenv.workload.scenario import ScenarioError, load_scenario

ENV_ID = "tierenv/WeightedInterleave-v0"
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("TIERENV_HYPOTHESIS_EXAMPLES", "15")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def short_scenario():
    """The co-runner scenario cut to 12 s so whole episodes run quickly."""
    import dataclasses

    scenario = load_scenario("co-runner")
    return dataclasses.replace(scenario, duration_s=12.0)


def rollout(env: gym.Env, seed: int, actions: list[np.ndarray]):
    observations, rewards = [], []
    obs, _ = env.reset(seed=seed)
    observations.append(obs)
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards)


def test_gymnasium_env_checker_passes():
    env = gym.make(ENV_ID, render_mode="ansi")
    gym_check_env(env.unwrapped)
    env.close()


def test_sb3_env_checker_passes():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV_ID)
    sb3_check_env(env, warn=True)


def test_random_policy_runs_to_truncation_never_terminating(short_scenario):
    env = gym.make(ENV_ID, scenario=short_scenario)
    env.action_space.seed(0)
    obs, info = env.reset(seed=0)
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        assert not terminated
        if truncated:
            break
    # reset only reports the idle host: every interval is a step
    assert steps == short_scenario.n_steps
    assert info["time_s"] == pytest.approx(short_scenario.duration_s)


def test_max_episode_steps_truncates_earlier():
    env = gym.make(ENV_ID, max_episode_steps=3)
    env.reset(seed=0)
    ends = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert ends == [False, False, True]


def test_same_seed_and_actions_give_the_same_trajectory():
    import dataclasses

    # A Zipf-like hot set: DAMON's sampling (and so its regions) depends on the seed
    scenario = dataclasses.replace(load_scenario("hot-set-shift"), duration_s=12.0)
    rng = np.random.default_rng(5)
    actions = [rng.uniform(-1, 1, 2).astype(np.float32) for _ in range(11)]
    env = gym.make(ENV_ID, scenario=scenario)
    first = rollout(env, 42, actions)
    second = rollout(gym.make(ENV_ID, scenario=scenario), 42, actions)
    again = rollout(env, 42, actions)  # the same env object, reset with the seed again
    for run in (second, again):
        assert np.array_equal(first[0], run[0]) and np.array_equal(first[1], run[1])
    other = rollout(env, 43, actions)
    assert not np.array_equal(first[0], other[0])


def test_info_reports_weights_reward_terms_and_measurements():
    env = gym.make(ENV_ID, migration_cost_per_gib=2.0)
    env.reset(seed=0)
    env.step(np.zeros(2, dtype=np.float32))  # the first pages, placed 1:1
    action = np.array([0.6, -0.6], dtype=np.float32)
    for _ in range(3):  # moving pages toward new weights migrates
        _, reward, _, _, info = env.step(action)
    assert np.array_equal(info["weights"], action_to_weights(action, 2))
    assert reward == pytest.approx(info["reward_throughput"] - info["reward_migration"])
    assert info["reward_migration"] == pytest.approx(2.0 * info["migrated_bytes"] / 2**30)
    assert info["migrated_bytes"] > 0
    for key in ("node_bandwidth_gbps", "node_latency_ns"):
        assert info[key].shape == (2,) and np.all(info[key] > 0)
    # one column per application of the scenario; only bw-a runs in the first 60 s
    assert env.unwrapped.app_names == ("bw-a", "bw-b")
    assert info["app_running"].tolist() == [True, False]
    assert info["app_throughput_gbps"].shape == (2,) and info["app_throughput_gbps"][1] == 0


def test_observation_features_read_what_the_host_measured():
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    names = env.unwrapped.observation_names
    idle = dict(zip(names, obs, strict=True))
    # reset reports the idle host: nothing runs or is allocated yet
    assert idle["apps"] == 0 and idle["resident[node0]"] == idle["resident[node1]"] == 0
    assert idle["free[node0]"] == idle["free[node1]"] == pytest.approx(1)
    obs, *_ = env.step(np.zeros(2, dtype=np.float32))
    value = dict(zip(names, obs, strict=True))
    # one application alone: all of it resident, placed by the step's weights
    assert value["resident[node0]"] + value["resident[node1]"] == pytest.approx(1, abs=1e-6)
    assert value["apps"] == 1
    hotness = [v for n, v in value.items() if n.startswith("hotness[")]
    assert sum(hotness) == pytest.approx(1, abs=1e-5)
    weights = env.unwrapped.host.weights
    assert value["weights[node0]"] == pytest.approx(weights[0] / weights.sum(), abs=1e-6)


def test_privileged_features_are_opt_in_and_flagged():
    default = gym.make(ENV_ID).unwrapped
    privileged = gym.make(ENV_ID, features="privileged").unwrapped
    assert default.observation_spec.host_observable
    assert not privileged.observation_spec.host_observable
    assert "true_hot_share[node0]" in privileged.observation_names
    assert not any(name.startswith("true_") for name in default.observation_names)
    obs, _ = privileged.reset(seed=0)
    assert privileged.observation_space.contains(obs)


@pytest.mark.parametrize(
    "action", [[np.nan, 0.0], [0.0, np.inf], [0.0], [0.0, 0.0, 0.0], [[0.0, 0.0]]]
)
def test_bad_actions_raise_clear_errors(action):
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    with pytest.raises(ActionError):
        env.step(np.array(action, dtype=np.float32))


def test_out_of_range_actions_are_clipped():
    env = gym.make(ENV_ID, disable_env_checker=True)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([9.0, -9.0], dtype=np.float32))
    assert np.array_equal(info["weights"], action_to_weights([1.0, -1.0], 2))


def test_unknown_scenario_kwarg_and_features_list_the_valid_ones():
    with pytest.raises(ScenarioError, match=r"shipped: .*co-runner"):
        gym.make(ENV_ID, scenario="no-such-scenario")
    with pytest.raises(TypeError, match=r"unknown argument.*bogus.*valid: scenario, features"):
        gym.make(ENV_ID, bogus=1)
    with pytest.raises(FeatureError, match="groups: bandwidth"):
        gym.make(ENV_ID, features=["bandwidth", "nope"])
    with pytest.raises(ValueError, match="render_mode"):
        WeightedInterleaveEnv(render_mode="video")
    with pytest.raises(ValueError, match="initial_weights"):
        gym.make(ENV_ID, initial_weights="best")


def test_quota_action_adds_a_dimension_that_sets_the_damos_quota():
    env = gym.make(ENV_ID, quota_action=True)
    assert env.action_space.shape == (3,)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.5, -0.5, -1.0], dtype=np.float32))
    assert info["damos_quota_bytes_per_s"] == 16 << 20


def test_render_modes():
    ansi = gym.make(ENV_ID, render_mode="ansi")
    ansi.reset(seed=0)
    ansi.step(ansi.action_space.sample())
    line = ansi.render()
    assert line.startswith("t=") and "w=" in line and line.endswith("\n")
    picture = gym.make(ENV_ID, render_mode="rgb_array")
    picture.reset(seed=0)
    for _ in range(3):
        picture.step(picture.action_space.sample())
    frame = picture.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.std() > 0  # something was drawn


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasium_vector_envs(mode):
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode=mode)
    obs, _ = envs.reset(seed=[1, 2])
    assert obs.shape == (2, envs.single_observation_space.shape[0])
    for _ in range(3):
        obs, rewards, terminated, _, _ = envs.step(envs.action_space.sample())
    assert rewards.shape == (2,) and not terminated.any()
    envs.close()


@pytest.mark.parametrize("vec_env", ["dummy", "subproc"])
def test_sb3_vec_envs(vec_env):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls = DummyVecEnv if vec_env == "dummy" else SubprocVecEnv
    # "module:id" makes each worker process import tierenv (and so register the id) first
    envs = make_vec_env(f"tierenv:{ENV_ID}", n_envs=2, seed=0, vec_env_cls=cls)
    obs = envs.reset()
    assert obs.shape[0] == 2
    for _ in range(3):
        obs, _, _, infos = envs.step(np.zeros((2, 2), dtype=np.float32))
    assert "weights" in infos[0]
    envs.close()


def test_sb3_ppo_smoke_run(short_scenario, tmp_path):
    from stable_baselines3 import PPO

    env = gym.make(ENV_ID, scenario=short_scenario)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    model.save(tmp_path / "ppo")
    action, _ = PPO.load(tmp_path / "ppo", device="cpu").predict(env.reset(seed=0)[0])
    assert env.action_space.contains(action)


@FUZZ_SETTINGS
@given(hnp.arrays(np.float64, 2, elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_fuzzed_actions_either_step_or_raise_action_error(fuzz_env, action):
    if not np.all(np.isfinite(action)):
        with pytest.raises(ActionError):
            fuzz_env.step(action)
        return
    obs, reward, _, truncated, info = fuzz_env.step(action)
    assert fuzz_env.observation_space.contains(obs) and np.isfinite(reward)
    assert np.all((info["weights"] >= 1) & (info["weights"] <= 255))
    if truncated:
        fuzz_env.reset()


@pytest.fixture(scope="module")
def fuzz_env():
    env = WeightedInterleaveEnv()
    env.reset(seed=0)
    return env


@FUZZ_SETTINGS
@given(
    features=st.one_of(
        st.sampled_from(["default", "privileged"]),
        st.lists(st.sampled_from(sorted(GROUPS_BY_NAME)), min_size=1, max_size=5, unique=True),
    ),
    initial=st.one_of(
        st.sampled_from(["auto", "uniform"]), st.lists(st.integers(1, 255), min_size=2, max_size=2)
    ),
    migration_cost=st.floats(0, 100),
    quota_action=st.booleans(),
)
def test_fuzzed_configurations_make_valid_envs(features, initial, migration_cost, quota_action):
    env = WeightedInterleaveEnv(
        features=features,
        initial_weights=initial,
        migration_cost_per_gib=migration_cost,
        quota_action=quota_action,
    )
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert len(env.observation_names) == obs.size
    obs, reward, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)


def test_discrete_variant_applies_exactly_the_grid_weights():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from tierenv.envs.discrete import weight_grid

    env = gym.make("tierenv/WeightedInterleave-Discrete-v0")
    sb3_check_env(env)
    choices, _ = weight_grid(2)
    assert env.action_space.n == len(choices) == 33
    shares = choices[:, 0] / choices.sum(axis=1)
    assert np.all(np.diff(shares) < 0)  # ordered from most to least on node 0
    env.reset(seed=0)
    for index in (0, 12, 32):
        _, _, _, _, info = env.step(index)
        assert np.array_equal(info["weights"], choices[index])
    with pytest.raises(ValueError, match=r"not in 0\.\.32"):
        env.step(33)


# --- RL-tool compatibility and hostile input (issues 19 and 20) ---------------------------------


def test_unknown_arguments_are_refused_in_pythons_own_wording():
    """TorchRL's GymEnv passes frameskip and drops it only when the TypeError reads as
    Python's; the message still lists the valid arguments."""
    for env_id in (ENV_ID, "tierenv/WeightedInterleave-Discrete-v0"):
        with pytest.raises(
            TypeError,
            match=r"__init__\(\) got an unexpected keyword argument 'frameskip' "
            r"\(unknown argument\(s\): 'frameskip'; valid: .*scenario, features",
        ):
            gym.make(env_id, frameskip=4)


def test_the_env_pickles_and_the_copy_goes_on_identically():
    import pickle

    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=3)
    for _ in range(5):
        env.step(np.array([0.5, -0.5], dtype=np.float32))
    env.render()  # the cached figure is not pickled: rebuilt on first use
    copy = pickle.loads(pickle.dumps(env))
    for _ in range(5):
        action = np.array([-0.2, 0.3], dtype=np.float32)
        obs, reward, _, _, info = env.step(action)
        copy_obs, copy_reward, _, _, copy_info = copy.step(action)
        np.testing.assert_array_equal(obs, copy_obs)
        assert reward == copy_reward
        np.testing.assert_array_equal(info["weights"], copy_info["weights"])
    np.testing.assert_array_equal(env.render(), copy.render())


def test_the_ids_declare_the_default_scenarios_horizon():
    from tierenv.envs.registration import DEFAULT_HORIZON_STEPS
    from tierenv.envs.weighted_interleave import DEFAULT_SCENARIO

    horizon = load_scenario(DEFAULT_SCENARIO).n_steps
    assert DEFAULT_HORIZON_STEPS == horizon == 180
    assert gym.spec(ENV_ID).max_episode_steps == horizon
    assert gym.spec("tierenv/WeightedInterleave-Discrete-v0").max_episode_steps == horizon
    # a host runs as long as it is stepped; the fluid env truncates at each scenario's end
    assert gym.spec("tierenv/WeightedInterleaveHost-v0").max_episode_steps is None
    assert gym.spec("tierenv/WeightedInterleaveFluid-v0").max_episode_steps is None


def _steps_to_truncation(env: gym.Env) -> int:
    env.reset(seed=0)
    action = np.zeros(2, dtype=np.float32)
    for step in range(1, 10_000):
        *_, terminated, truncated, _ = env.step(action)
        assert not terminated
        if truncated:
            return step
    raise AssertionError("never truncated")


def test_time_limit_and_the_scenario_end_agree():
    """The default scenario: TimeLimit and the env truncate at the same step. A longer scenario
    is cut by TimeLimit at the registered horizon unless make() lifts it."""
    import dataclasses

    env = gym.make(ENV_ID)
    assert _steps_to_truncation(env) == 180
    assert env.unwrapped.horizon_steps == 180 and env.unwrapped._ended  # the env's own end
    longer = dataclasses.replace(load_scenario("co-runner"), duration_s=190.0)
    assert _steps_to_truncation(gym.make(ENV_ID, scenario=longer)) == 180
    assert _steps_to_truncation(gym.make(ENV_ID, scenario=longer, max_episode_steps=-1)) == 190
    shorter = dataclasses.replace(load_scenario("co-runner"), duration_s=20.0)
    assert _steps_to_truncation(gym.make(ENV_ID, scenario=shorter)) == 20


def test_stepping_after_the_episode_ended_asks_for_a_reset(short_scenario):
    env = WeightedInterleaveEnv(short_scenario)
    assert _steps_to_truncation(env) == 12
    for step in (lambda: env.step(np.zeros(2, np.float32)), lambda: env.step_weights([1, 1])):
        with pytest.raises(gym.error.ResetNeeded, match=r"truncated at t=12 s .*call reset\(\)"):
            step()
    env.reset(seed=1)
    env.step(np.zeros(2, np.float32))  # a new episode steps again


def test_reset_refuses_options():
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match=r"unknown reset option\(s\) 'scenario'.* takes none"):
        env.reset(seed=0, options={"scenario": "steady-single"})
    env.reset(seed=0, options={})  # nothing asked, nothing refused


def test_action_errors_print_plain_numbers():
    env = WeightedInterleaveEnv()
    env.reset(seed=0)
    with pytest.raises(ActionError) as error:
        env.step(np.array([np.nan, 0.0]))
    assert str(error.value) == "action has a non-finite value nan at index 0"
    with pytest.raises(ActionError, match=r"value inf at index 1$"):
        env.step(np.array([0.0, np.inf], dtype=np.float32))


def test_info_is_numeric_with_the_same_keys_and_shapes_at_reset_and_every_step():
    """Batched info readers (TorchRL's, Gymnasium's vector envs) stack info values: each is a
    numpy number or array, the same key set and shapes throughout, application names aside."""
    env = gym.make(ENV_ID)
    _, first = env.reset(seed=0)
    infos = [first]
    for _ in range(65):  # bw-b starts at 60 s: the running set changes
        infos.append(env.step(env.action_space.sample())[4])
    for info in infos:
        assert info.keys() == first.keys()
        for key, value in info.items():
            assert isinstance(value, np.ndarray | np.number | np.bool_), (key, type(value))
            assert np.shape(value) == np.shape(first[key]) and value.dtype == first[key].dtype
    assert env.unwrapped.app_names == ("bw-a", "bw-b")
    assert infos[1]["app_running"].tolist() == [True, False]
    assert infos[-1]["app_running"].tolist() == [True, True]


def test_discrete_env_is_a_discrete_env_underneath_and_refuses_non_integers():
    from tierenv.envs.discrete import WeightedInterleaveDiscreteEnv, weight_grid

    env = gym.make("tierenv/WeightedInterleave-Discrete-v0")
    assert isinstance(env.unwrapped, WeightedInterleaveDiscreteEnv)
    assert env.unwrapped.action_space == gym.spaces.Discrete(33)
    gym_check_env(env.unwrapped)
    choices, _ = weight_grid(2)
    env.reset(seed=0)
    for action in (np.int64(4), np.array(4), np.array([4]), 4):
        assert np.array_equal(env.step(action)[4]["weights"], choices[4])
    for bad in (1.5, 2.5, np.float32(2.0), True, "3", [1, 2], None):
        with pytest.raises(ActionError, match=r"action must be one integer in 0\.\.32"):
            env.step(bad)
    with pytest.raises(ActionError, match=r"action -1 is not in 0\.\.32"):
        env.step(-1)
    with pytest.raises(ValueError, match="quota_action=True is not available"):
        gym.make("tierenv/WeightedInterleave-Discrete-v0", quota_action=True)
    # same env otherwise: levels and the continuous env's arguments
    coarse = gym.make("tierenv/WeightedInterleave-Discrete-v0", levels=3, scenario="steady-single")
    assert coarse.action_space.n == len(weight_grid(2, 3)[0])


def test_rgb_array_reuses_one_figure_and_draws_the_new_steps():
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([0.8, -0.8], dtype=np.float32))
    first = env.render()
    plot = env.unwrapped._plot
    for _ in range(3):
        env.step(np.array([-0.8, 0.8], dtype=np.float32))
    second = env.render()
    assert env.unwrapped._plot is plot  # one figure for the episode's frames
    assert first.shape == second.shape == (384, 512, 3) and first.dtype == np.uint8
    assert np.any(first != second)  # the new steps were drawn
    # the same history drawn by a fresh figure gives the same picture
    env.unwrapped._plot = None
    np.testing.assert_array_equal(env.render(), second)


def test_human_mode_draws_a_window_at_every_step():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        pytest.skip(f"matplotlib backend {matplotlib.get_backend()} would open a real window")
    env = gym.make(ENV_ID, render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    window = env.unwrapped._window
    assert window is not None and window._image is not None
    assert env.render() is None
    env.close()
    assert env.unwrapped._window is None
