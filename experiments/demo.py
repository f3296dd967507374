"""``tierenv demo``: the whole loop on a fresh machine in a few minutes.

1. train PPO choosing weights and the DAMOS quota on the two-node scenario distribution with
   ``experiments/train/demo.yaml`` (5 seeds, two at a time);
2. compare those policies, with and without the floor guard, on a held-out slice of the
   fixed test suite against the deployable static weights, the best static weights in
   hindsight, the kernel's auto weights and the DP oracle (``experiments/demo.yaml``);
3. print the return table, the learned policy against the targets of
   ``experiments.learned_targets`` (written as ``targets.md``), and where the tables, the
   plots of weights over time (policy against the DP oracle's schedule) and the TensorBoard
   logs are.

Training resumes finished or interrupted runs instead of starting over, so running the demo
again only redoes the comparison.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd

from agents.training import load_config as load_train_config
from agents.training import train
from experiments.compare.config import load_config as load_compare_config
from experiments.compare.report import Summary, write_results
from experiments.compare.runner import run_compare
from experiments.learned_targets import Roles, measure, render, training_seconds
from tierenv.files import write_text_atomically

HERE = Path(__file__).resolve().parent
TRAIN_CONFIG = HERE / "train" / "demo.yaml"
COMPARE_CONFIG = HERE / "demo.yaml"
# the learned policy without and with the floor guard, as experiments/demo.yaml names them
DEMO_POLICIES = ("ppo", "ppo-guarded")


def run_demo(
    out: Path = Path("results/demo"),
    runs: Path = Path("runs/demo"),
    workers: int = 2,
    progress: bool = True,
) -> Summary:
    """Train, compare, report; returns the comparison's summary."""
    start = time.perf_counter()
    train_config = load_train_config(TRAIN_CONFIG)
    _say(
        f"[1/2] training {train_config.algorithm} ({len(train_config.seeds)} seeds, "
        f"{train_config.timesteps:,} steps each) into {runs / train_config.name}/"
    )
    run_dirs = train(train_config, out_root=runs, workers=workers, resume=True, progress=progress)
    # The comparison evaluates the runs just trained, wherever --runs put them.
    template = str(run_dirs[0].parent / "seed_{index}")
    config = load_compare_config(COMPARE_CONFIG)
    policies = tuple(
        dataclasses.replace(p, params={**p.params, "path": template}) if p.kind == "sb3" else p
        for p in config.policies
    )
    config = dataclasses.replace(config, policies=policies)
    _say(f"[2/2] comparing with the baselines on held-out seeds {list(config.seeds)}")
    results = run_compare(config, workers=workers, show_progress=progress)
    summary = write_results(results, out, command="tierenv demo", tensorboard_dir=runs / "compare")
    print(summary.table)
    _report_targets(results.episodes, out, run_dirs[0].parent)
    print(f"tables: {out / 'summary.md'}")
    print(f"plots:  {', '.join(str(p) for p in sorted(out.glob('*.png')))}")
    print(f"TensorBoard (training and evaluation): tensorboard --logdir {runs}")
    _say(f"done in {time.perf_counter() - start:.0f} s")
    return summary


def _report_targets(episodes: pd.DataFrame, out: Path, runs: Path) -> None:
    """targets.md for the guarded policy (what a host would run), and the headline of both."""
    seconds = training_seconds(runs)
    measured = {policy: measure(episodes, Roles(policy), seconds) for policy in DEMO_POLICIES}
    for policy, m in measured.items():
        worst = m.floor.iloc[0]
        print(
            f"{policy}: IQM {m.iqm:.3f} [{m.iqm_ci[0]:.3f}, {m.iqm_ci[1]:.3f}] of the "
            f"deployable static weights' return, P(improvement) {m.improvement:.2f}; worst "
            f"scenario {worst['mean_ratio']:.3f} of kernel-auto's ({worst['scenario']})"
        )
    text = render(measured["ppo-guarded"], Roles("ppo-guarded"), "tierenv demo", out)
    write_text_atomically(out / "targets.md", text)
    print(f"targets: {out / 'targets.md'}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
