"""SB3 callbacks: a tqdm progress bar and rollout-boundary evaluation and checkpoints.

Evaluation and checkpoints run at the first rollout boundary at or after each multiple of
their period (for PPO every ``n_steps x n_envs`` steps; for SAC with ``train_freq=1`` every
step), evaluation first, so a checkpoint holds the state after that evaluation and a resumed
run takes the same path as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable

from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm


class ProgressBar(BaseCallback):
    """A tqdm bar over timesteps (SB3's own needs ``rich``, which is not installed)."""

    def __init__(self, total: int, desc: str = "train", position: int = 0) -> None:
        super().__init__()
        self.total, self.desc, self.position = total, desc, position
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(
            total=self.total,
            initial=min(self.num_timesteps, self.total),
            desc=self.desc,
            unit="step",
            position=self.position,
            leave=True,
            dynamic_ncols=True,
        )

    def _on_step(self) -> bool:
        assert self.bar is not None
        done = min(self.num_timesteps, self.total)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Periodic(BaseCallback):
    """Calls ``action(num_timesteps)`` at the first rollout boundary at or after every
    multiple of ``every`` timesteps."""

    def __init__(self, every: int, action: Callable[[int], object]) -> None:
        super().__init__()
        self.every, self.action = every, action
        self.next = 0

    def _on_training_start(self) -> None:
        self.next = self._after(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next:
            self.action(self.num_timesteps)
            self.next = self._after(self.num_timesteps)

    def _on_step(self) -> bool:
        return True

    def _after(self, step: int) -> int:
        return (step // self.every + 1) * self.every
