"""agents/training/lean_ppo.py: the lean PPO computes what SB3's PPO computes.

Piece by piece (fast): the hand-written gradients against autograd on SB3's loss, the flat
Adam against ``torch.optim.Adam``, the envs and normalisation against SB3's fluid training
VecEnv with ``VecNormalize`` step by step, and the weights handed to SB3 acting the same.
As a whole: a short run learns far beyond a random policy; the slow test trains both for
the same steps on the same task and compares their deployed returns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.training.config import build_hyperparameters, load_config
from agents.training.lean_ppo import (
    Adam,
    FluidTrainEnvs,
    LeanPPO,
    LeanPPOParams,
    PolicyNet,
    VecNormalizer,
    check_gradients,
    gae,
)
from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

SCENARIO = "co-runner"


def demo(**env: object):
    """ppo-random's settings (the demo's hyperparameters, weights only) on ``SCENARIO``."""
    config = load_config("experiments/train/ppo-random.yaml")
    return config.replace(env={"scenarios": (SCENARIO,), **env})


def deployed_return(act, seed: int = 10_000, n_envs: int = 16) -> float:
    """Mean return of one episode of deterministic actions on 4 realisations of the scenario
    (seeds training never used), raw rewards."""
    env = MixedScenarioVectorEnv(n_envs, scenario=SCENARIO, groups=4)
    obs, _ = env.reset(seed=seed)
    total = np.zeros(n_envs)
    while True:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += reward
        if (terminated | truncated).all():
            return float(total.mean())


def random_return(seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return deployed_return(lambda obs: rng.uniform(-1.0, 1.0, (obs.shape[0], 2)).astype(np.float32))


# --------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize(
    ("arch", "actions", "kwargs"),
    [
        ((64, 64), 2, {}),
        ((64, 64), 2, {"clip_range": 0.02, "ent_coef": 0.1}),  # most ratios clipped
        ((16, 8, 4), 3, {"vf_coef": 1.3}),
    ],
)
def test_hand_written_gradients_are_autograds(arch, actions, kwargs):
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        gen = torch.Generator().manual_seed(1)
        net = PolicyNet(27, actions, arch, generator=gen)
        with torch.no_grad():  # away from the init (small action head, zero biases)
            net.theta.add_(0.3 * torch.randn(net.theta.shape, generator=gen))
        for seed in range(3):
            assert check_gradients(net, batch=48, seed=seed, **kwargs) < 1e-10
    finally:
        torch.set_default_dtype(before)
    # and in float32, as trained
    assert check_gradients(PolicyNet(27, 2), batch=256) < 1e-5


def test_flat_adam_is_torch_adam():
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(50, generator=gen)
    reference = theta.clone().requires_grad_(True)
    ours = Adam(theta, lr=7e-4, eps=1e-5)
    theirs = torch.optim.Adam([reference], lr=7e-4, eps=1e-5)
    for _ in range(20):
        grad = torch.randn(50, generator=gen)
        ours.step(grad)
        reference.grad = grad.clone()
        theirs.step()
    torch.testing.assert_close(theta, reference.detach(), rtol=1e-6, atol=1e-7)


def test_gae_is_sb3s_rollout_buffer():
    from gymnasium import spaces
    from stable_baselines3.common.buffers import RolloutBuffer

    rng = np.random.default_rng(0)
    n_steps, n_envs = 16, 3
    buffer = RolloutBuffer(
        n_steps,
        spaces.Box(-1, 1, (2,)),
        spaces.Box(-1, 1, (1,)),
        n_envs=n_envs,
        gamma=0.9,
        gae_lambda=0.8,
    )
    rewards = rng.normal(size=(n_steps, n_envs)).astype(np.float32)
    values = rng.normal(size=(n_steps, n_envs)).astype(np.float32)
    starts = (rng.random((n_steps, n_envs)) < 0.2).astype(np.float32)
    for t in range(n_steps):
        buffer.add(
            np.zeros((n_envs, 2), np.float32),
            np.zeros((n_envs, 1), np.float32),
            rewards[t],
            starts[t],
            torch.as_tensor(values[t]),
            torch.zeros(n_envs),
        )
    last_values = rng.normal(size=n_envs).astype(np.float32)
    last_dones = np.array([True, False, False])
    buffer.compute_returns_and_advantage(torch.as_tensor(last_values), last_dones)
    advantages, returns = gae(rewards, values, starts, last_values, last_dones, 0.9, 0.8)
    np.testing.assert_allclose(advantages, buffer.advantages, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(returns, buffer.returns, rtol=1e-6, atol=1e-6)


def test_envs_and_normalisation_are_sb3s_vecnormalize_step_by_step():
    """Same seed, same actions: raw and normalised observations, normalised rewards, episode
    ends and the normalised last observations equal SB3's fluid training VecEnv's, through an
    episode end (co-runner: 180 steps)."""
    from agents.training.envs import make_train_venv

    config = demo(n_envs=4)
    venv = make_train_venv(config)
    venv.seed(7)
    expected = venv.reset()
    envs = FluidTrainEnvs([SCENARIO], 4)
    norm = VecNormalizer(envs.observation_space.shape[0], 4, gamma=0.9)
    got = norm.reset(envs.reset(seed=7))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(200):
        actions = rng.uniform(-1.0, 1.0, (4, 2)).astype(np.float32)
        expected, expected_rewards, expected_dones, infos = venv.step(actions)
        raw, rewards, terminated, truncated, final = envs.step(actions)
        np.testing.assert_allclose(raw, venv.get_original_obs(), rtol=1e-12)
        dones = terminated | truncated
        obs, norm_rewards = norm.step(raw, rewards, dones)
        np.testing.assert_array_equal(dones, expected_dones)
        np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(norm_rewards, expected_rewards, rtol=1e-5, atol=1e-6)
        for row in np.flatnonzero(dones):
            ended += 1
            assert truncated[row] and infos[row]["TimeLimit.truncated"]
            np.testing.assert_allclose(
                norm.normalize_obs(final[row : row + 1])[0],
                infos[row]["terminal_observation"],
                rtol=1e-5,
                atol=1e-5,
            )
    assert ended == 4
    venv.close()
    envs.close()


def test_the_hyperparameters_are_sb3s_or_refused():
    params = LeanPPOParams.from_sb3(build_hyperparameters(demo()))
    assert (params.n_steps, params.batch_size, params.n_epochs) == (64, 256, 10)
    assert (params.gamma, params.gae_lambda, params.ent_coef) == (0.9, 0.9, 0.000012)
    assert params.learning_rate == 0.000687 and params.net_arch == (64, 64)
    assert (params.clip_range, params.vf_coef, params.max_grad_norm) == (0.2, 0.5, 0.5)
    for bad in ({"clip_range_vf": 0.2}, {"target_kl": 0.01}, {"use_sde": True}, {"foo": 1}):
        with pytest.raises(ValueError, match="does not implement"):
            LeanPPOParams.from_sb3(bad)
    with pytest.raises(ValueError, match="tanh"):
        LeanPPOParams.from_sb3({"policy_kwargs": {"activation_fn": torch.nn.ReLU}})
    with pytest.raises(ValueError, match="fluid"):
        LeanPPO.from_config(demo(backend="full"))


def test_logged_losses_are_the_mean_over_every_minibatch_of_the_update() -> None:
    """As SB3 logs them (not the last minibatch's)."""
    model = LeanPPO.from_config(demo(), seed=0)
    compute, seen = model.net.loss_and_grad, []

    def recorded(*args, **kwargs):
        terms = compute(*args, **kwargs)
        seen.append({key: float(value) for key, value in terms.items()})
        return terms

    model.net.loss_and_grad = recorded  # type: ignore[method-assign]
    try:
        model.learn(1)  # one update: 10 epochs of 12 minibatches
    finally:
        model.close()
    assert len(seen) == 120
    for key, value in model.stats.losses.items():
        values = [terms[key] for terms in seen]
        assert value == pytest.approx(np.mean(values), rel=1e-5)
    # minibatches' losses differ, so the last one's would not pass
    assert model.stats.losses["value_loss"] != pytest.approx(seen[-1]["value_loss"], rel=1e-3)


@pytest.fixture(scope="module")
def short_run() -> LeanPPO:
    """Ten updates of the demo's settings (30,720 steps) on co-runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = LeanPPO.from_config(demo(), seed=0)
        model.learn(30_000)
    finally:
        torch.set_num_threads(threads)
    model.close()
    return model


def test_a_short_run_learns_far_beyond_a_random_policy(short_run):
    assert short_run.num_timesteps == 30_720  # whole updates of 48 x 64
    stats = short_run.stats
    assert len(stats.episode_returns) == 48 * (30_720 // (48 * 180))
    assert all(np.isfinite(list(stats.losses.values())))
    assert 0 < stats.env_s < stats.rollout_s and stats.update_s > 0
    baseline = random_return()
    trained = deployed_return(short_run.predict)
    # random actions: about 96; ten updates reach about 200 (as SB3's do); with the
    # advantages' sign flipped the policy gets about 60
    assert trained > baseline + 80, (trained, baseline)


def test_weights_handed_to_sb3_act_and_value_the_same(short_run):
    from stable_baselines3 import PPO

    from agents.training.envs import make_train_venv

    config = demo(n_envs=4)
    venv = make_train_venv(config)
    model = PPO("MlpPolicy", venv, device="cpu", **build_hyperparameters(config))
    short_run.load_into_sb3(model)
    venv.training = False
    raw = FluidTrainEnvs([SCENARIO], 8).reset(seed=3)
    normalized = venv.normalize_obs(raw)
    actions, _ = model.predict(normalized, deterministic=True)
    np.testing.assert_allclose(actions, short_run.predict(raw), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        values = model.policy.predict_values(torch.as_tensor(normalized)).flatten().numpy()
    ours = short_run.net.value(torch.from_numpy(short_run.normalizer.normalize_obs(raw)))
    np.testing.assert_allclose(values, ours.numpy(), rtol=1e-5, atol=1e-5)
    assert model.num_timesteps == short_run.num_timesteps
    venv.close()


# --------------------------------------------------------------------------------- whole
@pytest.mark.slow
def test_lean_ppo_learns_as_sb3_ppo_on_the_same_task():
    """Both trained with the demo's hyperparameters on co-runner for 20 updates (61,440
    steps), three seeds each: the lean PPO's mean deployed return is within a few percent of
    SB3's and both are far above a random policy's."""
    from stable_baselines3 import PPO

    from agents.training.envs import make_train_venv

    config = demo()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sb3, lean = [], []
    try:
        for seed in range(3):
            venv = make_train_venv(config)
            model = PPO("MlpPolicy", venv, seed=seed, device="cpu", **build_hyperparameters(config))
            model.learn(61_440)
            venv.training = False
            sb3.append(
                deployed_return(
                    lambda obs: model.predict(venv.normalize_obs(obs), deterministic=True)[0]  # noqa: B023
                )
            )
            venv.close()
            ours = LeanPPO.from_config(config, seed=seed).learn(61_440)
            lean.append(deployed_return(ours.predict))
            ours.close()
    finally:
        torch.set_num_threads(threads)
    baseline = random_return()
    assert min(sb3) > baseline + 60 and min(lean) > baseline + 60, (sb3, lean, baseline)
    assert abs(np.mean(lean) - np.mean(sb3)) < 0.05 * np.mean(sb3), (lean, sb3)
