"""A lean vectorised PPO for the batched fluid model: stable-baselines3's PPO, faster.

What it computes is SB3's ``PPO("MlpPolicy", VecNormalize(venv), ...)`` as
``agents.training`` trains it on the fluid backend (``agents.training.envs``):

- envs: one ``MixedScenarioVectorEnv`` per training scenario (``n_envs`` split as
  ``split_envs`` does), side by side, Gymnasium SAME_STEP autoreset; a seed ``s`` seeds env
  ``i`` with ``s + i`` as SB3 does;
- ``VecNormalize``'s observation and reward normalisation (running mean and variance in
  float64, observations clipped to +-10, rewards divided by the running standard deviation of
  the discounted return and clipped to +-10, the same update order; the last observation of a
  truncated episode normalised after the update) with the statistics in ``normalizer``;
- the policy: separate actor and critic MLPs (``net_arch``, tanh), orthogonal init (gains
  sqrt(2), 0.01 for the action mean, 1 for the value), a state-independent log std
  (``log_std_init``), Gaussian actions clipped to the action space for the env, the unclipped
  ones stored;
- the rollout: ``n_steps`` per env, a truncated episode's last value bootstrapped into its
  last (normalised) reward (``reward += gamma * V(final_obs)``), GAE(``gamma``,
  ``gae_lambda``);
- the update: ``n_epochs`` passes over a fresh permutation in minibatches of
  ``batch_size``, per-minibatch advantage normalisation (unbiased std + 1e-8), clipped
  surrogate (``clip_range``), value loss ``mean((returns - V)^2)`` times ``vf_coef`` (no
  value clipping), entropy bonus ``ent_coef``, global gradient norm clipped to
  ``max_grad_norm``, Adam (eps 1e-5); ``learning_rate`` and ``clip_range`` take a constant or
  a schedule of the remaining progress, as SB3's do.

Why it is faster: SB3 spends most of a fluid-model run in its update's per-operation
overhead (autograd, ``nn.Module`` calls, the optimiser's bookkeeping) and its VecEnv
wrappers, not in the env (``experiments/bench_train.py`` measures it). Here the actor and
critic are stacked into batched matrix products (one ``baddbmm`` per layer for both), the
forward and backward passes are written out by hand (no autograd graph), all parameters,
gradients and Adam moments live in one flat tensor each (so gradient clipping and Adam are a
handful of operations), the observation and reward normalisation is numpy on small arrays,
and nothing builds per-env info dicts. ``check_gradients`` compares the hand-written
gradients with autograd's. Run it with one torch thread (``torch.set_num_threads(1)``, as
``train_run`` does): its operations are too small to gain from more, and on a busy 2-core
machine a second thread makes it several times slower.

The result is interchangeable with SB3's: ``load_into_sb3(model)`` copies the weights into
an SB3 ``PPO`` policy and the statistics into its ``VecNormalize``, so saving, evaluation,
ONNX export and the daemon work on a lean-trained policy unchanged.

    from agents.training.lean_ppo import LeanPPO
    model = LeanPPO.from_config(load_config("experiments/train/ppo-random.yaml"), seed=0)
    model.learn(300_000)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.running_mean_std import RunningMeanStd

from tierenv.envs.vector_mixed import MixedScenarioVectorEnv

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from agents.training.config import TrainConfig

__all__ = [
    "FluidTrainEnvs",
    "LeanPPO",
    "LeanPPOParams",
    "PolicyNet",
    "VecNormalizer",
    "check_gradients",
    "gae",
]

LOG_2PI = math.log(2.0 * math.pi)
Schedule = Callable[[float], float]


# ---------------------------------------------------------------------------- envs
class FluidTrainEnvs:
    """The fluid backend's training envs without SB3's wrappers: one
    ``MixedScenarioVectorEnv`` per scenario (SAME_STEP autoreset), stepped side by side.
    ``step`` returns raw observations, rewards, ``truncated`` and ``terminated`` masks and the
    raw last observation of every env whose episode ended in that step (rows of ``final_obs``;
    other rows are undefined)."""

    def __init__(
        self,
        scenarios: Sequence[str],
        n_envs: int,
        features: str | Sequence[str] = "default",
        migration_cost_per_gib: float = 0.1,
        quota_action: bool = False,
    ) -> None:
        from agents.training.envs import split_envs

        counts = split_envs(n_envs, len(scenarios))
        self.parts = [
            MixedScenarioVectorEnv(
                count,
                scenario=scenario,
                autoreset_mode=AutoresetMode.SAME_STEP,
                features=features,
                migration_cost_per_gib=migration_cost_per_gib,
                quota_action=quota_action,
            )
            for scenario, count in zip(scenarios, counts, strict=True)
        ]
        self.offsets = np.cumsum([0] + [part.num_envs for part in self.parts])
        self.num_envs = int(self.offsets[-1])
        first = self.parts[0]
        self.observation_space = first.single_observation_space
        self.action_space = first.single_action_space
        self.observation_names = first.observation_names

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all envs; env ``i`` gets seed ``seed + i`` (SB3's ``VecEnv.seed``)."""
        out = []
        for part, offset in zip(self.parts, self.offsets, strict=False):
            seeds = None if seed is None else [seed + int(offset) + i for i in range(part.num_envs)]
            observations, _ = part.reset(seed=seeds)
            out.append(observations)
        return np.concatenate(out)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if len(self.parts) == 1:
            return self._step_part(self.parts[0], actions)
        results = [
            self._step_part(part, actions[lo:hi])
            for part, lo, hi in zip(self.parts, self.offsets[:-1], self.offsets[1:], strict=True)
        ]
        return tuple(np.concatenate([r[k] for r in results]) for k in range(5))  # type: ignore[return-value]

    @staticmethod
    def _step_part(
        part: MixedScenarioVectorEnv, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        observations, rewards, terminated, truncated, info = part.step(actions)
        final = observations
        ended = terminated | truncated
        if ended.any():
            final = observations.copy()
            rows = np.flatnonzero(ended)
            final[rows] = np.stack(info["final_obs"][rows])
        return observations, rewards, terminated, truncated, final

    def close(self) -> None:
        for part in self.parts:
            part.close()


# ------------------------------------------------------------------- normalisation
class VecNormalizer:
    """``VecNormalize``'s training-time arithmetic on plain arrays."""

    def __init__(
        self,
        observation_size: int,
        num_envs: int,
        gamma: float,
        norm_obs: bool = True,
        norm_reward: bool = True,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        epsilon: float = 1e-8,
    ) -> None:
        # SB3's own statistics class: the same arithmetic as its VecNormalize by construction
        self.obs_rms = RunningMeanStd(shape=(observation_size,))
        self.ret_rms = RunningMeanStd(shape=())
        self.returns = np.zeros(num_envs)
        self.gamma, self.epsilon = gamma, epsilon
        self.norm_obs, self.norm_reward = norm_obs, norm_reward
        self.clip_obs, self.clip_reward = clip_obs, clip_reward

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return obs.astype(np.float32)
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def reset(self, obs: np.ndarray) -> np.ndarray:
        self.returns[:] = 0.0
        if self.norm_obs:
            self.obs_rms.update(obs)
        return self.normalize_obs(obs)

    def step(
        self, obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Update the statistics with a step's raw outputs; its normalised observations and
        rewards (the caller normalises final observations after this, as VecNormalize)."""
        if self.norm_obs:
            self.obs_rms.update(obs)
        normalized = self.normalize_obs(obs)
        self.returns = self.returns * self.gamma + rewards
        self.ret_rms.update(self.returns)
        if self.norm_reward:
            rewards = np.clip(
                rewards / np.sqrt(self.ret_rms.var + self.epsilon),
                -self.clip_reward,
                self.clip_reward,
            )
        self.returns[dones] = 0.0
        return normalized, rewards.astype(np.float32)


# --------------------------------------------------------------------------- policy
class PolicyNet:
    """Actor and critic MLPs (same hidden sizes, tanh) stacked as ``[2, in, out]`` weight
    tensors (index 0 the actor, 1 the critic), the action mean and value heads and the log
    std, all views into one flat parameter vector ``theta`` (gradients into ``grad``)."""

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        net_arch: Sequence[int] = (64, 64),
        log_std_init: float = 0.0,
        ortho_init: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if not net_arch:
            raise ValueError("net_arch needs at least one hidden layer")
        self.obs_size, self.act_size = observation_size, action_size
        sizes = [observation_size, *map(int, net_arch)]
        self.layer_sizes = list(itertools.pairwise(sizes))
        last = sizes[-1]
        shapes: list[tuple[int, ...]] = []
        for n_in, n_out in self.layer_sizes:
            shapes += [(2, n_in, n_out), (2, 1, n_out)]
        shapes += [(last, action_size), (action_size,), (last, 1), (1,), (action_size,)]
        total = sum(math.prod(s) for s in shapes)
        self.theta = torch.zeros(total)
        self.grad = torch.zeros(total)
        self.params = self._views(self.theta, shapes)
        self.grads = self._views(self.grad, shapes)
        n_layers = len(self.layer_sizes)
        self.weights = self.params[0 : 2 * n_layers : 2]
        self.biases = self.params[1 : 2 * n_layers : 2]
        self.w_mu, self.b_mu, self.w_v, self.b_v, self.log_std = self.params[2 * n_layers :]
        self.g_weights = self.grads[0 : 2 * n_layers : 2]
        self.g_biases = self.grads[1 : 2 * n_layers : 2]
        self.g_w_mu, self.g_b_mu, self.g_w_v, self.g_b_v, self.g_log_std = self.grads[
            2 * n_layers :
        ]
        self._init(log_std_init, ortho_init, generator)

    @staticmethod
    def _views(flat: torch.Tensor, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
        out, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            out.append(flat[start : start + size].view(shape))
            start += size
        return out

    def _init(
        self, log_std_init: float, ortho_init: bool, generator: torch.Generator | None
    ) -> None:
        def linear(n_in: int, n_out: int, gain: float) -> torch.Tensor:
            """An ``nn.Linear`` weight ([out, in]) initialised as SB3 does, transposed."""
            weight = torch.empty(n_out, n_in)
            if ortho_init:
                torch.nn.init.orthogonal_(weight, gain, generator=generator)
            else:  # nn.Linear's default
                bound = 1.0 / math.sqrt(n_in)
                weight.uniform_(-bound, bound, generator=generator)
            return weight.T

        with torch.no_grad():
            for (n_in, n_out), weight, bias in zip(
                self.layer_sizes, self.weights, self.biases, strict=True
            ):
                for k in range(2):
                    weight[k] = linear(n_in, n_out, math.sqrt(2))
                    if not ortho_init:
                        bound = 1.0 / math.sqrt(n_in)
                        bias[k].uniform_(-bound, bound, generator=generator)
            last = self.layer_sizes[-1][1]
            self.w_mu.copy_(linear(last, self.act_size, 0.01))
            self.w_v.copy_(linear(last, 1, 1.0))
            if not ortho_init:
                bound = 1.0 / math.sqrt(last)
                self.b_mu.uniform_(-bound, bound, generator=generator)
                self.b_v.uniform_(-bound, bound, generator=generator)
            self.log_std.fill_(log_std_init)

    # -- forward passes (no autograd anywhere)
    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Hidden activations ``[2, n, size]`` of every layer, the input (expanded) first."""
        h = x.unsqueeze(0).expand(2, -1, -1)
        out = [h]
        for weight, bias in zip(self.weights, self.biases, strict=True):
            h = torch.tanh(torch.baddbmm(bias, h, weight))
            out.append(h)
        return out

    def act(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """Sampled actions, their log-probabilities and the values of normalised ``x``."""
        h = self.trunk(x)[-1]
        mean = torch.addmm(self.b_mu, h[0], self.w_mu)
        noise = torch.randn(mean.shape, generator=generator)
        actions = mean + noise * self.log_std.exp()
        log_prob = -0.5 * (noise * noise).sum(1) - (
            self.log_std.sum() + 0.5 * LOG_2PI * self.act_size
        )
        return actions, log_prob, torch.addmm(self.b_v, h[1], self.w_v).view(-1)

    def mean_action(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic action (the Gaussian's mean) for normalised ``x``."""
        h = self.trunk(x)[-1]
        return torch.addmm(self.b_mu, h[0], self.w_mu)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for weight, bias in zip(self.weights, self.biases, strict=True):
            h = torch.tanh(torch.addmm(bias[1], h, weight[1]))
        return torch.addmm(self.b_v, h, self.w_v).view(-1)

    def loss_and_grad(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_prob: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        clip_range: float,
        ent_coef: float,
        vf_coef: float,
        normalize_advantage: bool = True,
    ) -> dict[str, torch.Tensor]:
        """SB3 PPO's minibatch loss; writes its gradient into ``grad`` (overwriting it) and
        returns the loss terms (tensors, not synchronised)."""
        n = obs.shape[0]
        hs = self.trunk(obs)
        last = hs[-1]
        mean = torch.addmm(self.b_mu, last[0], self.w_mu)
        values = torch.addmm(self.b_v, last[1], self.w_v).view(-1)
        inv_std = torch.exp(-self.log_std)
        z = (actions - mean) * inv_std
        log_prob = -0.5 * (z * z).sum(1) - (self.log_std.sum() + 0.5 * LOG_2PI * self.act_size)
        ratio = torch.exp(log_prob - old_log_prob)
        if normalize_advantage and n > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        surrogate = advantages * ratio
        clipped = advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
        policy_loss = -torch.minimum(surrogate, clipped).mean()
        error = values - returns
        value_loss = (error * error).mean()
        entropy = self.log_std.sum() + (0.5 + 0.5 * LOG_2PI) * self.act_size
        # backward: d loss / d log_prob (the clipped branch has no gradient outside the range)
        g_log_prob = torch.where(surrogate <= clipped, advantages, 0.0) * ratio * (-1.0 / n)
        g_mean = (g_log_prob.unsqueeze(1) * z) * inv_std
        torch.sum(g_log_prob.unsqueeze(1) * (z * z - 1.0), 0, out=self.g_log_std)
        self.g_log_std.sub_(ent_coef)
        g_values = error.mul(2.0 * vf_coef / n).unsqueeze(1)
        torch.mm(last[0].T, g_mean, out=self.g_w_mu)
        torch.sum(g_mean, 0, out=self.g_b_mu)
        torch.mm(last[1].T, g_values, out=self.g_w_v)
        torch.sum(g_values, 0, out=self.g_b_v)
        g_h = torch.empty_like(last)
        torch.mm(g_mean, self.w_mu.T, out=g_h[0])
        torch.mm(g_values, self.w_v.T, out=g_h[1])
        for k in range(len(self.weights) - 1, -1, -1):
            g_pre = torch.ops.aten.tanh_backward(g_h, hs[k + 1])  # g_h * (1 - h^2)
            torch.bmm(hs[k].transpose(1, 2), g_pre, out=self.g_weights[k])
            torch.sum(g_pre, 1, keepdim=True, out=self.g_biases[k])
            if k:
                g_h = torch.bmm(g_pre, self.weights[k].transpose(1, 2))
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy_loss": -entropy,
        }

    # -- SB3 interchange
    def sb3_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters under SB3 ``ActorCriticPolicy``'s names and shapes."""
        out: dict[str, torch.Tensor] = {"log_std": self.log_std.clone()}
        for k, name in enumerate(("policy_net", "value_net")):
            for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
                prefix = f"mlp_extractor.{name}.{2 * layer}"
                out[f"{prefix}.weight"] = weight[k].T.clone()
                out[f"{prefix}.bias"] = bias[k, 0].clone()
        out["action_net.weight"] = self.w_mu.T.clone()
        out["action_net.bias"] = self.b_mu.clone()
        out["value_net.weight"] = self.w_v.T.clone()
        out["value_net.bias"] = self.b_v.clone()
        return out

    def load_sb3_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Set the parameters from an SB3 ``ActorCriticPolicy`` state dict."""
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])
            for k, name in enumerate(("policy_net", "value_net")):
                for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
                    prefix = f"mlp_extractor.{name}.{2 * layer}"
                    weight[k].copy_(state[f"{prefix}.weight"].T)
                    bias[k, 0].copy_(state[f"{prefix}.bias"])
            self.w_mu.copy_(state["action_net.weight"].T)
            self.b_mu.copy_(state["action_net.bias"])
            self.w_v.copy_(state["value_net.weight"].T)
            self.b_v.copy_(state["value_net.bias"])


class Adam:
    """``torch.optim.Adam`` (no weight decay, no amsgrad) on one flat tensor."""

    def __init__(
        self,
        param: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-5,
    ) -> None:
        self.param, self.lr, self.eps = param, lr, eps
        self.beta1, self.beta2 = betas
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    def step(self, grad: torch.Tensor) -> None:
        self.steps += 1
        self.exp_avg.lerp_(grad, 1.0 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        bias_correction1 = 1.0 - self.beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1.0 - self.beta2**self.steps)
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-self.lr / bias_correction1)


def check_gradients(net: PolicyNet, batch: int = 64, seed: int = 0, **loss_kwargs: Any) -> float:
    """The largest absolute difference between ``loss_and_grad``'s gradient and autograd's on
    the same loss written as SB3 writes it (random data; for tests)."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, net.obs_size, generator=gen)
    actions = torch.randn(batch, net.act_size, generator=gen)
    old_log_prob = torch.randn(batch, generator=gen) * 0.3 - 2.0
    advantages = torch.randn(batch, generator=gen)
    returns = torch.randn(batch, generator=gen)
    kwargs = {"clip_range": 0.2, "ent_coef": 0.01, "vf_coef": 0.5, **loss_kwargs}
    net.loss_and_grad(obs, actions, old_log_prob, advantages, returns, **kwargs)
    theta = net.theta.detach().clone().requires_grad_(True)
    shapes = [p.shape for p in net.params]
    params, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        params.append(theta[start : start + size].view(shape))
        start += size
    n_layers = len(net.layer_sizes)
    weights, biases = params[0 : 2 * n_layers : 2], params[1 : 2 * n_layers : 2]
    w_mu, b_mu, w_v, b_v, log_std = params[2 * n_layers :]
    pi = vf = obs
    for weight, bias in zip(weights, biases, strict=True):
        pi = torch.tanh(pi @ weight[0] + bias[0])
        vf = torch.tanh(vf @ weight[1] + bias[1])
    distribution = torch.distributions.Normal(pi @ w_mu + b_mu, log_std.exp().expand(batch, -1))
    log_prob = distribution.log_prob(actions).sum(1)
    entropy = distribution.entropy().sum(1)
    values = (vf @ w_v + b_v).flatten()
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = torch.exp(log_prob - old_log_prob)
    clip = kwargs["clip_range"]
    policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
    value_loss = torch.nn.functional.mse_loss(returns, values)
    loss = policy_loss - kwargs["ent_coef"] * entropy.mean() + kwargs["vf_coef"] * value_loss
    loss.backward()
    assert theta.grad is not None
    return float((theta.grad - net.grad).abs().max())


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    last_dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns (``[n_steps, n_envs]``) as SB3's
    ``RolloutBuffer.compute_returns_and_advantage``: ``episode_starts[t]`` marks an
    observation that began an episode, ``last_values``/``last_dones`` are the values and
    ends after the last step."""
    n_steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    last_gae = np.zeros(rewards.shape[1], rewards.dtype)
    for step in reversed(range(n_steps)):
        if step == n_steps - 1:
            not_done = 1.0 - last_dones.astype(np.float32)
            next_values = last_values
        else:
            not_done = 1.0 - episode_starts[step + 1]
            next_values = values[step + 1]
        delta = rewards[step] + gamma * next_values * not_done - values[step]
        last_gae = delta + gamma * gae_lambda * not_done * last_gae
        advantages[step] = last_gae
    return advantages, advantages + values


# ------------------------------------------------------------------------------ PPO
#: SB3 PPO hyperparameters the lean PPO takes (with SB3's defaults), and the policy_kwargs.
SB3_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4,
    "n_steps": 2048,
    "batch_size": 64,
    "n_epochs": 10,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "clip_range_vf": None,
    "normalize_advantage": True,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "use_sde": False,
    "target_kl": None,
}
POLICY_KWARGS = ("net_arch", "activation_fn", "log_std_init", "ortho_init")


@dataclass
class LeanPPOParams:
    """SB3 PPO's hyperparameters (its defaults) that the lean PPO implements."""

    learning_rate: float | Schedule = 3e-4
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float | Schedule = 0.2
    normalize_advantage: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    log_std_init: float = 0.0
    ortho_init: bool = True

    @classmethod
    def from_sb3(cls, hyperparameters: Mapping[str, Any]) -> LeanPPOParams:
        """From SB3 ``PPO`` keyword arguments (``build_hyperparameters``' output: schedules
        as callables); a ``ValueError`` names what the lean PPO does not implement."""
        unknown = sorted(set(hyperparameters) - set(SB3_DEFAULTS) - {"policy_kwargs"})
        if unknown:
            raise ValueError(f"lean PPO does not implement hyperparameters {unknown}")
        for key in ("clip_range_vf", "target_kl"):
            if hyperparameters.get(key) is not None:
                raise ValueError(f"lean PPO does not implement {key}")
        if hyperparameters.get("use_sde"):
            raise ValueError("lean PPO does not implement use_sde")
        kwargs = {
            k: v
            for k, v in hyperparameters.items()
            if k not in ("policy_kwargs", "clip_range_vf", "target_kl", "use_sde")
        }
        policy = dict(hyperparameters.get("policy_kwargs") or {})
        extra = sorted(set(policy) - set(POLICY_KWARGS))
        if extra:
            raise ValueError(f"lean PPO does not implement policy_kwargs {extra}")
        activation = policy.pop("activation_fn", None)
        if activation not in (None, "tanh", torch.nn.Tanh):
            name = getattr(activation, "__name__", activation)
            raise ValueError(f"lean PPO implements tanh activations only, not {name!r}")
        arch = policy.pop("net_arch", (64, 64))
        if isinstance(arch, Mapping):
            if list(arch.get("pi", [])) != list(arch.get("vf", [])):
                raise ValueError("lean PPO needs the same hidden sizes for pi and vf")
            arch = arch["pi"]
        return cls(**kwargs, net_arch=tuple(int(s) for s in arch), **policy)


@dataclass
class TrainStats:
    """What a ``learn`` call measured: wall time per part, episodes' raw returns."""

    env_s: float = 0.0  # inside the envs' step
    rollout_s: float = 0.0  # the whole rollout (env included)
    update_s: float = 0.0  # GAE and the gradient steps
    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)


def _schedule(value: float | Schedule) -> Schedule:
    if callable(value):
        return value
    constant = float(value)

    def schedule(_progress_remaining: float) -> float:
        return constant

    return schedule


class LeanPPO:
    """PPO on ``FluidTrainEnvs`` (module docstring). ``learn(total_timesteps)`` trains;
    ``stats`` holds timings and episode returns; ``predict`` acts as deployed (mean action,
    frozen statistics); ``load_into_sb3`` hands the result to SB3."""

    def __init__(
        self,
        envs: FluidTrainEnvs,
        params: LeanPPOParams | None = None,
        seed: int = 0,
        normalize_observation: bool = True,
        normalize_reward: bool = True,
    ) -> None:
        self.envs = envs
        self.params = params = params or LeanPPOParams()
        obs_shape, act_shape = envs.observation_space.shape, envs.action_space.shape
        assert obs_shape is not None and act_shape is not None
        self.obs_size, self.act_size = int(obs_shape[0]), int(act_shape[0])
        self.n_envs = envs.num_envs
        if params.batch_size > params.n_steps * self.n_envs:
            raise ValueError(
                f"batch_size {params.batch_size} exceeds n_steps x n_envs "
                f"({params.n_steps * self.n_envs})"
            )
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.net = PolicyNet(
            self.obs_size,
            self.act_size,
            params.net_arch,
            params.log_std_init,
            params.ortho_init,
            self.generator,
        )
        self.lr_schedule = _schedule(params.learning_rate)
        self.clip_schedule = _schedule(params.clip_range)
        self.optimizer = Adam(self.net.theta, lr=self.lr_schedule(1.0), eps=1e-5)
        self.normalizer = VecNormalizer(
            self.obs_size, self.n_envs, params.gamma, normalize_observation, normalize_reward
        )
        self.low = np.asarray(envs.action_space.low, np.float32)  # type: ignore[attr-defined]
        self.high = np.asarray(envs.action_space.high, np.float32)  # type: ignore[attr-defined]
        self.num_timesteps = 0
        self.stats = TrainStats()
        self._last_obs: np.ndarray | None = None
        self._last_starts = np.ones(self.n_envs, np.float32)
        self._episode_return = np.zeros(self.n_envs)
        n, e = params.n_steps, self.n_envs
        self._obs = np.zeros((n, e, self.obs_size), np.float32)
        self._actions = np.zeros((n, e, self.act_size), np.float32)
        self._log_probs = np.zeros((n, e), np.float32)
        self._values = np.zeros((n, e), np.float32)
        self._rewards = np.zeros((n, e), np.float32)
        self._starts = np.zeros((n, e), np.float32)

    @classmethod
    def from_config(cls, config: TrainConfig, seed: int = 0) -> LeanPPO:
        """The lean counterpart of ``train_run``'s SB3 model for a fluid-backend PPO config."""
        from agents.training.config import build_hyperparameters

        if config.algorithm != "PPO" or config.policy != "MlpPolicy":
            raise ValueError(
                f"lean PPO trains PPO MlpPolicy, not {config.algorithm} {config.policy}"
            )
        if config.env.backend != "fluid":
            raise ValueError("lean PPO trains on the fluid backend only")
        env = config.env
        envs = FluidTrainEnvs(
            env.scenarios, env.n_envs, env.features, env.migration_cost_per_gib, env.quota_action
        )
        return cls(
            envs,
            LeanPPOParams.from_sb3(build_hyperparameters(config)),
            seed=seed,
            normalize_observation=env.normalize_observation,
            normalize_reward=env.normalize_reward,
        )

    # ---------------------------------------------------------------------- training
    def learn(
        self,
        total_timesteps: int,
        callback: Callable[[LeanPPO], bool | None] | None = None,
    ) -> LeanPPO:
        """Train until ``num_timesteps`` reaches ``total_timesteps`` (whole rollouts, as SB3);
        ``callback(self)`` after each update, stopping when it returns False."""
        if self._last_obs is None:
            self._last_obs = self.normalizer.reset(self.envs.reset(seed=self.seed))
        while self.num_timesteps < total_timesteps:
            start = time.perf_counter()
            last_values, last_dones = self._collect_rollout()
            middle = time.perf_counter()
            self.stats.rollout_s += middle - start
            progress_remaining = 1.0 - self.num_timesteps / total_timesteps
            self._update(last_values, last_dones, progress_remaining)
            self.stats.update_s += time.perf_counter() - middle
            if callback is not None and callback(self) is False:
                break
        return self

    def _collect_rollout(self) -> tuple[np.ndarray, np.ndarray]:
        p, stats, norm, envs = self.params, self.stats, self.normalizer, self.envs
        assert self._last_obs is not None
        obs = self._last_obs
        dones = np.zeros(self.n_envs, bool)
        with torch.inference_mode():
            for step in range(p.n_steps):
                actions_t, log_prob, values = self.net.act(torch.from_numpy(obs), self.generator)
                actions = actions_t.numpy()
                clock = time.perf_counter()
                raw_obs, rewards, terminated, truncated, final = envs.step(
                    np.clip(actions, self.low, self.high)
                )
                stats.env_s += time.perf_counter() - clock
                self.num_timesteps += self.n_envs
                dones = terminated | truncated
                new_obs, norm_rewards = norm.step(raw_obs, rewards, dones)
                self._episode_return += rewards
                if dones.any():
                    rows = np.flatnonzero(dones)
                    stats.episode_returns += self._episode_return[rows].tolist()
                    stats.episode_end_steps += [self.num_timesteps] * rows.size
                    self._episode_return[rows] = 0.0
                    boot = np.flatnonzero(truncated & ~terminated)
                    if boot.size:
                        final_obs = torch.from_numpy(norm.normalize_obs(final[boot]))
                        norm_rewards[boot] += p.gamma * self.net.value(final_obs).numpy()
                self._obs[step] = obs
                self._actions[step] = actions
                self._log_probs[step] = log_prob.numpy()
                self._values[step] = values.numpy()
                self._rewards[step] = norm_rewards
                self._starts[step] = self._last_starts
                obs = new_obs
                self._last_starts = dones.astype(np.float32)
            last_values = self.net.value(torch.from_numpy(obs)).numpy()
        self._last_obs = obs
        return last_values, dones

    def _update(self, last_values: np.ndarray, last_dones: np.ndarray, progress: float) -> None:
        p = self.params
        advantages, returns = gae(
            self._rewards,
            self._values,
            self._starts,
            last_values,
            last_dones,
            p.gamma,
            p.gae_lambda,
        )
        # one table of the rollout: obs | actions | old log-prob | advantage | return
        size = p.n_steps * self.n_envs
        o, a = self.obs_size, self.act_size
        table = torch.from_numpy(
            np.concatenate(
                [
                    self._obs.reshape(size, o),
                    self._actions.reshape(size, a),
                    self._log_probs.reshape(size, 1),
                    advantages.reshape(size, 1),
                    returns.reshape(size, 1),
                ],
                axis=1,
            )
        )
        self.optimizer.lr = float(self.lr_schedule(progress))
        clip_range = float(self.clip_schedule(progress))
        net, grad, max_norm = self.net, self.net.grad, p.max_grad_norm
        # SB3 logs each loss term's mean over every minibatch of the update; summed as
        # tensors so the loop never waits for a value
        sums: dict[str, torch.Tensor] = {}
        minibatches = 0
        for _ in range(p.n_epochs):
            order = torch.randperm(size, generator=self.generator)
            for first in range(0, size, p.batch_size):
                batch = table[order[first : first + p.batch_size]]
                terms = net.loss_and_grad(
                    batch[:, :o],
                    batch[:, o : o + a],
                    batch[:, o + a],
                    batch[:, o + a + 1],
                    batch[:, o + a + 2],
                    clip_range,
                    p.ent_coef,
                    p.vf_coef,
                    p.normalize_advantage,
                )
                for key, value in terms.items():
                    sums[key] = sums[key] + value if key in sums else value.detach().clone()
                minibatches += 1
                norm = torch.linalg.vector_norm(grad)
                grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
                self.optimizer.step(grad)
        self.stats.losses = {key: float(value) / minibatches for key, value in sums.items()}

    # -------------------------------------------------------------------- deployment
    def predict(self, raw_obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for raw observations (statistics frozen), clipped to the
        action space."""
        with torch.inference_mode():
            x = torch.from_numpy(self.normalizer.normalize_obs(np.asarray(raw_obs)))
            return np.clip(self.net.mean_action(x).numpy(), self.low, self.high)

    def load_into_sb3(self, model: BaseAlgorithm) -> None:
        """Copy the weights into an SB3 ``PPO`` (same observation and action sizes,
        ``net_arch``) and the statistics into its ``VecNormalize``, if it has one."""
        from stable_baselines3.common.vec_env import VecNormalize

        model.policy.load_state_dict(self.net.sb3_state_dict(), strict=True)
        venv = model.get_env()
        if isinstance(venv, VecNormalize):
            for ours, theirs in (
                (self.normalizer.obs_rms, venv.obs_rms),
                (self.normalizer.ret_rms, venv.ret_rms),
            ):
                assert not isinstance(theirs, dict)  # a Box observation space
                theirs.mean, theirs.var = ours.mean.copy(), ours.var.copy()
                theirs.count = ours.count
        model.num_timesteps = self.num_timesteps

    # ------------------------------------------------------------------ checkpoints
    def training_state(self) -> dict[str, Any]:
        """Everything the next ``learn`` step depends on, between updates: the parameters,
        Adam's moments, the normalisation statistics and running returns, the generator,
        the envs themselves (hosts, RNGs) and the last observation. Pickle it with
        ``agents.training.envs.dumps_state`` (the envs hold module references)."""
        return {
            "theta": self.net.theta.clone(),
            "adam": (self.optimizer.exp_avg.clone(), self.optimizer.exp_avg_sq.clone()),
            "adam_steps": self.optimizer.steps,
            "normalizer": self.normalizer,
            "generator": self.generator.get_state(),
            "envs": self.envs,
            "num_timesteps": self.num_timesteps,
            "last_obs": self._last_obs,
            "last_starts": self._last_starts.copy(),
            "episode_return": self._episode_return.copy(),
        }

    def restore_training_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``training_state`` (of a model built from the same config and
        seed) exactly as if never interrupted; this model's own envs are closed."""
        if state["theta"].shape != self.net.theta.shape:
            raise ValueError("the training state is of another network")
        self.envs.close()
        self.envs = state["envs"]
        with torch.no_grad():
            self.net.theta.copy_(state["theta"])
            self.optimizer.exp_avg.copy_(state["adam"][0])
            self.optimizer.exp_avg_sq.copy_(state["adam"][1])
        self.optimizer.steps = int(state["adam_steps"])
        self.normalizer = state["normalizer"]
        self.generator.set_state(state["generator"])
        self.num_timesteps = int(state["num_timesteps"])
        self._last_obs = state["last_obs"]
        self._last_starts = np.asarray(state["last_starts"], np.float32).copy()
        self._episode_return = np.asarray(state["episode_return"], np.float64).copy()

    def close(self) -> None:
        self.envs.close()
