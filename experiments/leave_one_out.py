"""Leave one host out: does a policy trained on the scenario distribution carry over to
hardware it never saw? For every host named, this

1. trains the learned policy of ``--compare`` (its ``kind: sb3`` entry, trained by
   ``--train``) again on the same distribution without that host
   (``random:NAME?exclude=HOST``), into ``<runs>/<name>-no-<HOST>/seed_<k>``; the training
   evaluation leaves that host's scenarios out as well, so nothing of it is seen;
2. compares, on the scenarios of ``--compare`` that run on that host's hardware (the same
   node profiles: its test-suite scenarios and published-result mirrors), the held-out policy
   with the policy trained on every host (when its runs exist) and every baseline of
   ``--compare`` (the deployable static weights, tuned on that host as an operator would,
   stay the reference);
3. writes one ``tierenv compare`` results folder per host and ``summary.md``, the
   leave-one-hardware-out table (``experiments.learned_targets`` measurements for both
   policies), all into ``--out`` at once::

    python -m experiments.leave_one_out amd-damos-v4 xeon6-micron-8dev --workers 2

Training resumes finished or interrupted runs, so a second call only redoes the comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path, PurePath

from agents.training import load_config as load_train_config
from agents.training import train
from agents.training.config import TrainConfig
from experiments.compare.config import CompareConfig, PolicySpec
from experiments.compare.config import load_config as load_compare_config
from experiments.compare.folders import check_replaceable, replaced_folder
from experiments.compare.report import is_results_file, write_results
from experiments.compare.runner import run_compare
from experiments.learned_targets import Measured, Roles, measure, training_seconds
from tierenv.files import write_text_atomically
from tierenv.provenance import stamp
from tierenv.workload.generator import (
    RANDOM_PREFIX,
    ScenarioDistribution,
    distribution_of,
)
from tierenv.workload.scenario import load_scenario

HERE = Path(__file__).resolve().parent
TRAIN_CONFIG = HERE / "train" / "ppo-random.yaml"
COMPARE_CONFIG = HERE / "learned-suite.yaml"


class LeaveOneOutError(ValueError):
    """Configs or hosts this experiment cannot use; the message says which and why."""


def learned_policies(config: CompareConfig) -> list[PolicySpec]:
    """The compare config's learned (``kind: sb3``) policies: one training run, perhaps
    with and without a guard."""
    learned = [p for p in config.policies if p.kind == "sb3"]
    paths = {p.params.get("path") for p in learned}
    if not learned or len(paths) != 1:
        raise LeaveOneOutError(
            f"{config.source}: needs policies of kind sb3 of one training run to hold out, "
            f"has {[(p.name, p.params.get('path')) for p in learned]}"
        )
    return learned


def training_distribution(config: TrainConfig) -> tuple[str, ScenarioDistribution]:
    """The training config's one distribution (``random:NAME``, without a host filter)."""
    specs = config.env.scenarios
    if len(specs) != 1 or not specs[0].startswith(RANDOM_PREFIX) or "?" in specs[0]:
        raise LeaveOneOutError(
            f"{config.source}: env.scenarios must be one distribution without a host "
            f"filter (random:NAME) to leave a host out of, got {list(specs)}"
        )
    distribution = distribution_of(specs[0])
    assert distribution is not None
    return specs[0], distribution


def host_profiles(distribution: ScenarioDistribution, host: str) -> tuple[str, ...]:
    for choice in distribution.hosts:
        if choice.name == host:
            return tuple(profile for profile, _ in choice.nodes)
    raise LeaveOneOutError(
        f"no host {host!r} in distribution {distribution.name!r}; its hosts: "
        f"{', '.join(h.name for h in distribution.hosts)}"
    )


def on_hardware(scenarios: tuple[str, ...], profiles: tuple[str, ...]) -> tuple[str, ...]:
    """The scenarios whose nodes have exactly these profiles, in order."""
    return tuple(
        ref
        for ref in scenarios
        if tuple(node.profile.name for node in load_scenario(ref).nodes) == profiles
    )


def held_out_training(config: TrainConfig, spec: str, host: str, profiles: tuple) -> TrainConfig:
    """``config`` trained without ``host``: its distribution filtered, its evaluation without
    that hardware's scenarios."""
    others = tuple(s for s in config.eval.scenarios if s not in on_hardware((s,), profiles))
    if not others:
        raise LeaveOneOutError(f"{config.source}: every eval scenario runs on {host}'s hardware")
    return config.replace(
        name=f"{config.name}-no-{host}",
        description=f"{config.description} (without host {host})",
        env={"scenarios": (f"{spec}?exclude={host}",)},
        eval={"scenarios": others},
    )


def host_comparison(
    config: CompareConfig, host: str, scenarios: tuple[str, ...], held_out: Path, every: Path
) -> CompareConfig:
    """``config`` on one host's scenarios, with the held-out policies (and the policies trained
    on every host, when ``every``'s runs exist) in place of its learned policies."""
    learned = learned_policies(config)
    policies: list[PolicySpec] = []
    for policy in config.policies:
        if policy not in learned:
            policies.append(policy)
            continue
        held = {**policy.params, "path": str(held_out / "seed_{index}")}
        policies.append(PolicySpec(f"{policy.name}-no-{host}", "sb3", held))
        if (every / "seed_0").is_dir():
            policies.append(
                PolicySpec(
                    policy.name, "sb3", {**policy.params, "path": str(every / "seed_{index}")}
                )
            )
    return dataclasses.replace(
        config,
        name=f"{config.name}-no-{host}",
        description=(
            f"{learned[0].name} trained without host {host} against the same policy trained "
            f"on every host and the baselines, on {host}'s scenarios"
        ),
        scenarios=scenarios,
        policies=tuple(policies),
        text="",  # the config is no longer the file's
    )


def summary_table(rows: list[tuple[str, int, str, Measured]], roles: Roles) -> str:
    """The leave-one-hardware-out table: one row per (host, policy)."""
    lines = [
        f"| held-out host | scenarios | policy | IQM ratio to `{roles.deployable}` [95 % CI] "
        f"| P(improvement) [CI] | worst scenario vs `{roles.floor}` |",
        "|---|---|---|---|---|---|",
    ]
    for host, n, policy, m in rows:
        worst = m.floor.iloc[0]
        lines.append(
            f"| {host} | {n} | `{policy}` | {m.iqm:.3f} [{m.iqm_ci[0]:.3f}, {m.iqm_ci[1]:.3f}] "
            f"| {m.improvement:.2f} [{m.improvement_ci[0]:.2f}, {m.improvement_ci[1]:.2f}] "
            f"| {worst['mean_ratio']:.3f} ({worst['scenario']}) |"
        )
    return "\n".join(lines)


def run(
    hosts: list[str],
    train_config: TrainConfig,
    compare_config: CompareConfig,
    runs: Path,
    out: Path,
    workers: int,
    command: str,
    progress: bool = True,
) -> str:
    """Train, compare and write (module docstring); returns summary.md's text."""
    start = time.perf_counter()
    spec, distribution = training_distribution(train_config)
    learned = learned_policies(compare_config)
    plans = []
    for host in dict.fromkeys(hosts):
        profiles = host_profiles(distribution, host)
        scenarios = on_hardware(compare_config.scenarios, profiles)
        if not scenarios:
            raise LeaveOneOutError(
                f"{compare_config.source}: no scenario runs on {host}'s hardware"
            )
        plans.append((host, held_out_training(train_config, spec, host, profiles), scenarios))
    owned = _owned([host for host, _, _ in plans])
    check_replaceable(out, owned, "leave-one-out folder")  # before an hour of training
    every = runs / train_config.name
    comparisons = []
    for host, config, scenarios in plans:
        _say(f"{host}: training {config.name} ({len(config.seeds)} seeds) without it")
        train(config, out_root=runs, workers=workers, resume=True, progress=progress)
        comparison = host_comparison(compare_config, host, scenarios, runs / config.name, every)
        _say(f"{host}: comparing on its {len(scenarios)} scenarios")
        results = run_compare(comparison, workers=workers, show_progress=progress)
        comparisons.append((host, config, comparison, results))
    roles = Roles(learned[0].name, deployable=compare_config.reference or "static-deployable")
    rows = []
    for host, config, comparison, results in comparisons:
        for policy, folder in [
            pair
            for spec in learned
            for pair in ((f"{spec.name}-no-{host}", runs / config.name), (spec.name, every))
        ]:
            if policy in comparison.policy_names:
                measured = measure(
                    results.episodes,
                    dataclasses.replace(roles, policy=policy),
                    training_seconds(folder),
                )
                rows.append((host, len(comparison.scenarios), policy, measured))
    text = "\n".join(
        [
            "# Leave one host out",
            "",
            stamp(command),
            "",
            f"`{learned[0].name}` trained on `{spec}` without the held-out host, against the same "
            "policy trained on every host, on the held-out host's scenarios of "
            f"`{compare_config.source}` (evaluation seeds {list(compare_config.seeds)}). The "
            "deployable static weights were tuned on each host's own draws, as an operator "
            "would. Per-host results: the folders beside this file.",
            "",
            summary_table(rows, roles),
            "",
            f"{time.perf_counter() - start:.0f} s wall time on {workers} workers.",
            "",
        ]
    )
    with replaced_folder(out, owned, "leave-one-out folder") as stage:
        for host, _, _, results in comparisons:
            write_results(results, stage / host, command=command)
        write_text_atomically(stage / "summary.md", text)
    return text


def _owned(hosts: list[str]):
    def owned(relative: PurePath, is_dir: bool) -> bool:
        if len(relative.parts) == 1:
            return (is_dir and relative.name in hosts) or relative.name == "summary.md"
        return relative.parts[0] in hosts and is_results_file(PurePath(*relative.parts[1:]), is_dir)

    return owned


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hosts", nargs="+", help="hosts of the training distribution to hold out")
    parser.add_argument("--train", type=Path, default=TRAIN_CONFIG, help="training config")
    parser.add_argument("--compare", type=Path, default=COMPARE_CONFIG, help="compare config")
    parser.add_argument("--runs", type=Path, default=Path("runs/train"), help="training runs")
    parser.add_argument(
        "--out", type=Path, default=Path("results/compare/leave-one-out"), help="results folder"
    )
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    command = "python -m experiments.leave_one_out " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    try:
        text = run(
            args.hosts,
            load_train_config(args.train),
            load_compare_config(args.compare),
            args.runs,
            args.out,
            args.workers,
            command,
            progress=not args.quiet,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
