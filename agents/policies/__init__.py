"""Trained policies as controllers: a stable-baselines3 training run acts in the experiment
harness (and, for host-observable features, on a host) like any baseline."""

from __future__ import annotations

from agents.policies.learned import (
    ALGORITHMS,
    LearnedPolicy,
    ObservationNormalizer,
    RunFiles,
    load_normalizer,
    locate_run,
    one_torch_thread,
)

__all__ = [
    "ALGORITHMS",
    "LearnedPolicy",
    "ObservationNormalizer",
    "RunFiles",
    "load_normalizer",
    "locate_run",
    "one_torch_thread",
]
