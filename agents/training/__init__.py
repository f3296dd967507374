"""Training SB3 agents on the weighted-interleave env: configs, runs, resume and tuning.

``load_config(path)`` reads a YAML training config; ``train(config, ...)`` trains its seeds
into run directories (``train_run`` one seed); ``tune(config, ...)`` searches PPO
hyperparameters with Optuna. See ``agents.training.train`` for the run-directory contract.
"""

from agents.training.config import ConfigError, TrainConfig, load_config, parse_config
from agents.training.train import RunExistsError, run_dir_for, train, train_run

__all__ = [
    "ConfigError",
    "RunExistsError",
    "TrainConfig",
    "load_config",
    "parse_config",
    "run_dir_for",
    "train",
    "train_run",
]
