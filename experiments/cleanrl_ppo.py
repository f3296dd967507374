"""PPO on tierenv in one file, in the style of CleanRL's ``ppo_continuous_action.py``.

A starting point to copy: everything (agent, rollout, GAE, update) is here, on the batched
fluid model (``tierenv/WeightedInterleaveFluid-v0``) with Gymnasium's SAME_STEP autoreset, as
CleanRL's gymnasium-1.x scripts expect: the step that ends an episode returns the next
episode's first observation, and the ended episode's last observation is in
``infos["final_obs"]``. tierenv's episodes never terminate, they only truncate at the
scenario's end, so that last observation is bootstrapped (``reward += gamma * V(final_obs)``)
rather than treated as a terminal state.

Hyperparameters default to the tuned settings of ``experiments/train/ppo-random.yaml`` (48
envs, 64 steps per env per update, 256 per minibatch, 10 epochs, gamma 0.9, GAE lambda 0.9,
learning rate 6.87e-4). Observations are normalised inside the agent by running statistics
(so ``final_obs`` is normalised the same way). Check a trained policy at full DAMON fidelity
(``tierenv/WeightedInterleave-v0``) before trusting its numbers::

    python experiments/cleanrl_ppo.py --total-timesteps 300000 --scenario co-runner

It differs from the project's SB3 training on purpose (no reward normalisation, an annealed
learning rate, the plain fluid env without per-episode variation); the trainer that computes
what SB3's PPO computes, about three times as fast, is ``agents/training/lean_ppo.py``.
``train`` also returns the wall seconds spent stepping the envs, in rollouts and in updates
(``experiments/bench_train.py`` reads them).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions.normal import Normal

import tierenv  # noqa: F401 - registers the env ids

ENV_ID = "tierenv/WeightedInterleaveFluid-v0"


@dataclass
class Args:
    scenario: str = "co-runner"
    seed: int = 0
    total_timesteps: int = 300_000
    num_envs: int = 48
    num_steps: int = 64  # per env per update
    minibatch_size: int = 256
    update_epochs: int = 10
    learning_rate: float = 6.87e-4
    anneal_lr: bool = True
    gamma: float = 0.9
    gae_lambda: float = 0.9
    clip_coef: float = 0.2
    ent_coef: float = 1.2e-5
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    max_episode_steps: int | None = None  # None: the scenario's end
    save: str | None = None  # write the agent's state_dict here
    verbose: bool = True  # print a line per iteration


class RunningMeanStd(nn.Module):
    """Running mean and variance of observations (a buffer, saved with the agent)."""

    mean: torch.Tensor  # buffers
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.tensor(1e-4))

    def update(self, x: torch.Tensor) -> None:
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (
            self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        ) / total
        self.count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -10.0, 10.0)


def layer(inputs: int, outputs: int, std: float = np.sqrt(2)) -> nn.Linear:
    linear = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(linear.weight, std)
    nn.init.constant_(linear.bias, 0.0)
    return linear


class Agent(nn.Module):
    def __init__(self, observations: int, actions: int) -> None:
        super().__init__()
        self.normalize = RunningMeanStd(observations)
        self.critic = nn.Sequential(
            layer(observations, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, 1, 1.0)
        )
        self.actor_mean = nn.Sequential(
            layer(observations, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, actions, 0.01)
        )
        self.actor_logstd = nn.Parameter(torch.zeros(1, actions))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.normalize(x))

    def get_action_and_value(
        self, x: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.normalize(x)
        mean = self.actor_mean(x)
        probs = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


def make_envs(args: Args) -> gym.vector.VectorEnv:
    envs = gym.make_vec(
        ENV_ID,
        num_envs=args.num_envs,
        scenario=args.scenario,
        max_episode_steps=args.max_episode_steps,
        autoreset_mode="same_step",
    )
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def train(args: Args) -> dict[str, Any]:
    """Train; returns the agent and what happened (episodes finished, their returns, the
    number of bootstrapped truncations, the last update's losses, and wall seconds spent in
    the envs' step, in the rollouts (envs included) and in the updates)."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    envs = make_envs(args)
    obs_shape = envs.single_observation_space.shape
    action_space = envs.single_action_space
    assert obs_shape is not None and isinstance(action_space, gym.spaces.Box)
    obs_size = obs_shape[0]
    agent = Agent(obs_size, action_space.shape[0])
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    batch_size = args.num_envs * args.num_steps
    iterations = max(1, args.total_timesteps // batch_size)

    obs = torch.zeros((args.num_steps, args.num_envs, obs_size))
    actions = torch.zeros((args.num_steps, args.num_envs, action_space.shape[0]))
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))

    returns_seen: list[float] = []
    bootstrapped = 0
    losses: dict[str, float] = {}
    timings = {"env_s": 0.0, "rollout_s": 0.0, "update_s": 0.0}
    start = time.time()
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32)
    next_done = torch.zeros(args.num_envs)
    for iteration in range(1, iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * (
                1.0 - (iteration - 1.0) / iterations
            )
        rollout_start = time.perf_counter()
        for step in range(args.num_steps):
            agent.normalize.update(next_obs)
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value.flatten()
            clipped = np.clip(action.numpy(), action_space.low, action_space.high)
            env_start = time.perf_counter()
            next_obs_np, reward, terminations, truncations, infos = envs.step(clipped)
            timings["env_s"] += time.perf_counter() - env_start
            reward = torch.as_tensor(reward, dtype=torch.float32)
            # SAME_STEP: an ended episode's last observation is in final_obs; a truncated one
            # goes on in expectation, so its value is bootstrapped into the last reward.
            if "final_obs" in infos:
                ended = np.flatnonzero(infos["_final_obs"] & truncations & ~terminations)
                if ended.size:
                    final = torch.as_tensor(
                        np.stack(infos["final_obs"][ended]), dtype=torch.float32
                    )
                    with torch.no_grad():
                        reward[ended] += args.gamma * agent.get_value(final).flatten()
                    bootstrapped += ended.size
            if "episode" in infos:
                returns_seen += [float(r) for r in infos["episode"]["r"][infos["_episode"]]]
            rewards[step] = reward
            next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32)
            next_done = torch.as_tensor(terminations | truncations, dtype=torch.float32)

        update_start = time.perf_counter()
        timings["rollout_s"] += update_start - rollout_start
        with torch.no_grad():  # GAE
            next_value = agent.get_value(next_obs).flatten()
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    not_done, following = 1.0 - next_done, next_value
                else:
                    not_done, following = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + args.gamma * following * not_done - values[t]
                last = delta + args.gamma * args.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values

        b_obs, b_actions = obs.reshape(-1, obs_size), actions.reshape(batch_size, -1)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        indices = np.arange(batch_size)
        for _ in range(args.update_epochs):
            np.random.shuffle(indices)
            for first in range(0, batch_size, args.minibatch_size):
                mb = indices[first : first + args.minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb], b_actions[mb]
                )
                ratio = (newlogprob - b_logprobs[mb]).exp()
                mb_adv = b_advantages[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_adv * ratio,
                    -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef),
                ).mean()
                v_loss = 0.5 * ((newvalue.flatten() - b_returns[mb]) ** 2).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        losses = {
            "policy": pg_loss.item(),
            "value": v_loss.item(),
            "entropy": entropy_loss.item(),
        }
        timings["update_s"] += time.perf_counter() - update_start
        if not args.verbose:
            continue
        recent = np.mean(returns_seen[-args.num_envs :]) if returns_seen else float("nan")
        sps = int(iteration * batch_size / (time.time() - start))
        print(
            f"iteration {iteration}/{iterations} steps {iteration * batch_size} "
            f"episodes {len(returns_seen)} recent return {recent:.2f} "
            f"value loss {losses['value']:.3f} sps {sps}"
        )
    envs.close()
    if args.save:
        torch.save(agent.state_dict(), args.save)
    return {
        "agent": agent,
        "episode_returns": returns_seen,
        "bootstrapped": bootstrapped,
        "losses": losses,
        "steps": iterations * batch_size,
        **timings,
    }


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in vars(Args()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif name in ("max_episode_steps",):
            parser.add_argument(flag, type=int, default=default)
        elif name == "save":
            parser.add_argument(flag, type=str, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return Args(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    train(parse_args())
