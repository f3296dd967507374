"""Deployable static weights: the one setting an operator would pick for a machine in advance.

The best static weights in hindsight (``static-best`` in ``tierenv compare``) are chosen per
scenario after seeing it: no operator can deploy them, because they differ from load to load.
An operator tunes once per machine, on the loads the machine is expected to see. This module
does that tuning on a scenario distribution's own loads, never on the scenarios evaluated
later: for every host of the distribution it draws ``draws`` scenarios restricted to that
host (seed ``seed``, indices 0, 1, ...; the test suite uses seed 1000 and training its own
generator streams, so no test or training scenario is among them), runs every static weight
vector of the grid on each through the full simulator, and keeps the vector with the highest
mean *ratio* to the best vector of each draw (so a load with large returns does not outvote
the others). The table it writes is the ``static-deployable`` policy of ``tierenv compare``
(``{name: static-deployable, kind: static-deployable, table: PATH}``), which runs each
evaluated scenario under the weights of the host with the same node profiles (in order;
capacities may differ)::

    python -m experiments.deployable default --draws 24 --out results/deployable/default

writes ``deployable.json`` (the table, with its provenance), ``summary.md`` and
``ratio_by_share.png`` (each host's mean ratio against its fast node's weight share) into
the folder, all replaced together.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from agents.ray_session import add_ray_arguments
from experiments.compare.config import PolicySpec
from experiments.compare.episode import Trial, TrialResult
from experiments.compare.folders import FolderError, check_replaceable, replaced_folder
from experiments.compare.runner import MAX_GRID_POINTS, execute
from tierenv.envs.discrete import default_levels, weight_grid
from tierenv.files import write_text_atomically
from tierenv.provenance import git_commit, machine_summary, stamp
from tierenv.workload.generator import (
    ScenarioDistribution,
    draw_mapping,
    load_distribution,
    scenario_toml,
    seeded_rng,
)
from tierenv.workload.scenario import Scenario

TABLE_FILE = "deployable.json"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "ratio_by_share.png"
OUTPUTS = (TABLE_FILE, SUMMARY_FILE, PLOT_FILE)
TABLE_VERSION = 1
DEFAULT_DRAWS = 24
DEFAULT_SEED = 0
MAX_DRAWS = 1000
#: The test suite's seed (experiments/suites/README.md): tuning must never draw its scenarios.
SUITE_SEED = 1000


class DeployableError(ValueError):
    """A deployable-weights table that cannot be used; the message names the file or the
    scenario and the problem."""


@dataclass(frozen=True)
class HostWeights:
    """The deployable weights of one host and how they did on the tuning draws."""

    host: str
    profiles: tuple[str, ...]
    weights: tuple[int, ...]
    mean_ratio: float  # mean over draws of return / that draw's best grid return
    worst_ratio: float
    draws: int


# --- tuning -----------------------------------------------------------------------------


def host_draws(
    distribution: ScenarioDistribution, draws: int, seed: int, folder: Path
) -> dict[str, list[str]]:
    """Scenario files drawn per host (``draws`` each, written into ``folder``)."""
    files: dict[str, list[str]] = {}
    for host in distribution.hosts:
        only = dataclasses.replace(distribution, hosts=(dataclasses.replace(host, weight=1.0),))
        files[host.name] = []
        for index in range(draws):
            name = f"{distribution.name}-{host.name}-s{seed}-{index:03d}"
            mapping = draw_mapping(only, seeded_rng(seed, index), name=name)
            path = folder / f"{name}.toml"
            path.write_text(scenario_toml(mapping), encoding="utf-8")
            files[host.name].append(str(path))
    return files


def grid_specs(n_nodes: int, levels: int) -> list[PolicySpec]:
    """One static policy per weight vector of the grid."""
    if levels**n_nodes > MAX_GRID_POINTS:
        raise ValueError(
            f"levels {levels} on {n_nodes} nodes is {levels**n_nodes} grid points; at most "
            f"{MAX_GRID_POINTS}"
        )
    return [
        PolicySpec(":".join(map(str, weights)), "static", {"weights": weights.tolist()})
        for weights in weight_grid(n_nodes, levels)[0]
    ]


def choose(results: Sequence[TrialResult]) -> tuple[str, pd.DataFrame]:
    """The grid point with the highest mean ratio to each draw's best, and the ratios
    (rows: draws, columns: grid points)."""
    frame = pd.DataFrame(
        [(r.trial.scenario, r.trial.policy.name, r.episode_return) for r in results],
        columns=["scenario", "weights", "return"],
    )
    returns = frame.pivot(index="scenario", columns="weights", values="return")
    best = returns.max(axis=1)
    if (best <= 0).any():
        bad = best[best <= 0].index[0]
        raise RuntimeError(f"{bad}: no grid point earned a positive return")
    ratios = returns.div(best, axis=0)
    return str(ratios.mean().idxmax()), ratios


def tune(
    distribution: ScenarioDistribution,
    draws: int = DEFAULT_DRAWS,
    seed: int = DEFAULT_SEED,
    levels: int | None = None,
    env: Mapping[str, Any] | None = None,
    workers: int | None = None,
    show_progress: bool = True,
    use_ray: bool = False,
    ray_address: str | None = None,
    draws_dir: str | Path | None = None,
) -> tuple[list[HostWeights], dict[str, pd.DataFrame]]:
    """Tune every host of ``distribution`` (module docstring): its deployable weights and
    the ratio table behind each choice. Trials run in local processes, or as Ray tasks
    (``use_ray``: a local instance; ``ray_address``: a cluster, whose nodes must read the
    drawn scenario files, so they are written into ``draws_dir`` on a shared filesystem
    instead of a temporary folder)."""
    if ray_address and draws_dir is None:
        raise ValueError(
            "a Ray cluster's nodes must read the drawn scenarios: give a draws folder on a "
            "filesystem they share (--draws-dir)"
        )
    if not 1 <= draws <= MAX_DRAWS:
        raise ValueError(f"draws must be in 1..{MAX_DRAWS}, got {draws}")
    if seed == SUITE_SEED:
        raise ValueError(f"seed {SUITE_SEED} drew the test suite: tune on another seed")
    levels = levels or default_levels(distribution.n_nodes)
    specs = grid_specs(distribution.n_nodes, levels)
    env = dict(env or {})
    with contextlib.ExitStack() as stack:
        if draws_dir is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="tierenv-deployable-"))
        else:
            folder = str(Path(draws_dir).resolve())
            Path(folder).mkdir(parents=True, exist_ok=True)
        files = host_draws(distribution, draws, seed, Path(folder))
        tasks = [
            Trial(path, spec, 0, env)
            for host in distribution.hosts
            for path in files[host.name]
            for spec in specs
        ]
        results, _, _ = execute(
            tasks, workers, use_ray=use_ray, ray_address=ray_address, show_progress=show_progress
        )
    chosen: list[HostWeights] = []
    ratios: dict[str, pd.DataFrame] = {}
    per_host = len(files[distribution.hosts[0].name]) * len(specs)
    for k, host in enumerate(distribution.hosts):
        winner, table = choose(results[k * per_host : (k + 1) * per_host])
        ratios[host.name] = table
        chosen.append(
            HostWeights(
                host=host.name,
                profiles=tuple(profile for profile, _ in host.nodes),
                weights=tuple(int(w) for w in winner.split(":")),
                mean_ratio=float(table[winner].mean()),
                worst_ratio=float(table[winner].min()),
                draws=draws,
            )
        )
    return chosen, ratios


# --- the table ----------------------------------------------------------------------------


def table_json(
    distribution: ScenarioDistribution,
    hosts: Sequence[HostWeights],
    *,
    draws: int,
    seed: int,
    levels: int,
    env: Mapping[str, Any],
    command: str,
) -> dict[str, Any]:
    return {
        "version": TABLE_VERSION,
        "distribution": distribution.name,
        "distribution_version": distribution.version,
        "draws_per_host": draws,
        "seed": seed,
        "levels": levels,
        "env": dict(env),
        "command": command,
        "commit": git_commit(),
        "machine": machine_summary(),
        "hosts": [
            {
                "host": h.host,
                "profiles": list(h.profiles),
                "weights": list(h.weights),
                "mean_ratio": round(h.mean_ratio, 6),
                "worst_ratio": round(h.worst_ratio, 6),
                "draws": h.draws,
            }
            for h in hosts
        ],
    }


def load_table(path: str | Path) -> list[HostWeights]:
    """A table written by this module; any other content is refused with the file named."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DeployableError(
            f"{path}: no such deployable-weights table (write one with "
            "`python -m experiments.deployable DIST --out FOLDER`)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DeployableError(f"{path}: not a deployable-weights table ({error})") from error
    if not isinstance(data, dict) or data.get("version") != TABLE_VERSION:
        raise DeployableError(f"{path}: not a deployable-weights table of version {TABLE_VERSION}")
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise DeployableError(f"{path}: hosts: must be a non-empty list")
    out = []
    for index, entry in enumerate(hosts):
        where = f"{path}: hosts[{index}]"
        try:
            weights = tuple(entry["weights"])
            profiles = tuple(entry["profiles"])
            item = HostWeights(
                host=str(entry["host"]),
                profiles=profiles,
                weights=weights,
                mean_ratio=float(entry["mean_ratio"]),
                worst_ratio=float(entry["worst_ratio"]),
                draws=int(entry["draws"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DeployableError(f"{where}: malformed entry ({error!r})") from error
        if (
            len(weights) != len(profiles)
            or not all(isinstance(p, str) for p in profiles)
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in weights)
            or not all(1 <= w <= 255 for w in weights)
        ):
            raise DeployableError(
                f"{where}: weights must be one integer in 1..255 per profile, got "
                f"{list(weights)} for {list(profiles)}"
            )
        out.append(item)
    return out


def weights_for(table: Sequence[HostWeights], scenario: Scenario, source: str) -> HostWeights:
    """The entry whose node profiles are the scenario's, in order."""
    profiles = tuple(node.profile.name for node in scenario.nodes)
    for entry in table:
        if entry.profiles == profiles:
            return entry
    known = "; ".join(f"{e.host} ({', '.join(e.profiles)})" for e in table)
    raise DeployableError(
        f"{source}: no deployable weights for scenario {scenario.name!r}: its nodes "
        f"({', '.join(profiles)}) are none of the table's hosts: {known}"
    )


# --- outputs ------------------------------------------------------------------------------


def summary_markdown(
    distribution: ScenarioDistribution,
    hosts: Sequence[HostWeights],
    command: str,
    wall_s: float,
    episodes: int,
) -> str:
    lines = [
        f"# Deployable static weights: `{distribution.name}`",
        "",
        stamp(command),
        "The static weights an operator would set per machine before seeing its loads: for "
        f"each host of the `{distribution.name}` distribution (version "
        f"{distribution.version}), {hosts[0].draws} scenarios drawn for that host only, every "
        "static weight vector of the grid run on each at full fidelity, and the vector with "
        "the highest mean ratio to each draw's best vector kept. `tierenv compare` runs it "
        "as `kind: static-deployable`. The mean and worst ratios are on the tuning draws; "
        "how the weights fare on unseen loads is what a comparison measures.",
        "",
        f"{episodes} episodes; {wall_s:.0f} s wall time.",
        "",
        "| host | nodes | deployable weights | mean ratio to each load's best | worst |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {h.host} | {', '.join(h.profiles)} | {':'.join(map(str, h.weights))} | "
        f"{h.mean_ratio:.3f} | {h.worst_ratio:.3f} |"
        for h in hosts
    ]
    return "\n".join(lines) + "\n"


def plot_ratios(ratios: Mapping[str, pd.DataFrame], path: Path) -> None:
    """Each host's mean ratio against the first node's weight share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for host, table in ratios.items():
        weights = [np.array(list(map(int, c.split(":"))), dtype=float) for c in table.columns]
        share = np.array([w[0] / w.sum() for w in weights])
        order = np.argsort(share)
        axes.plot(share[order], table.mean().to_numpy()[order], marker=".", label=host)
    axes.set_xlabel("weight share of node 0 (the fast DDR)")
    axes.set_ylabel("mean ratio to each load's best")
    axes.set_ylim(bottom=max(0.0, axes.get_ylim()[0]))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def owned(relative: PurePath, is_dir: bool) -> bool:
    return not is_dir and len(relative.parts) == 1 and relative.name in OUTPUTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.deployable",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("distribution", help="a shipped distribution name or a file")
    parser.add_argument(
        "--draws",
        type=int,
        default=DEFAULT_DRAWS,
        help=f"tuning scenarios per host (1..{MAX_DRAWS})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"draw seed (not {SUITE_SEED})"
    )
    parser.add_argument("--levels", type=int, default=None, help="grid levels per node")
    parser.add_argument(
        "--migration-cost-per-gib", type=float, default=0.1, help="the env's migration cost"
    )
    parser.add_argument("--out", required=True, help="results folder (replaced whole)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_ray_arguments(parser, "trials", "needs --draws-dir, a folder every node reads")
    parser.add_argument(
        "--draws-dir",
        default=None,
        help="write the drawn scenarios here (a folder every Ray node reads) instead of a "
        "temporary folder",
    )
    args = parser.parse_args(argv)
    command = "python -m experiments.deployable " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        distribution = load_distribution(args.distribution)
        check_replaceable(args.out, owned, "deployable-weights folder")  # before the work
        env = {"migration_cost_per_gib": args.migration_cost_per_gib}
        levels = args.levels or default_levels(distribution.n_nodes)
        start = time.perf_counter()
        hosts, ratios = tune(
            distribution,
            draws=args.draws,
            seed=args.seed,
            levels=levels,
            env=env,
            workers=args.workers,
            show_progress=not args.quiet,
            use_ray=args.ray,
            ray_address=args.ray_address,
            draws_dir=args.draws_dir,
        )
        wall = time.perf_counter() - start
        episodes = sum(table.size for table in ratios.values())
        with replaced_folder(args.out, owned, "deployable-weights folder") as stage:
            table = table_json(
                distribution,
                hosts,
                draws=args.draws,
                seed=args.seed,
                levels=levels,
                env=env,
                command=command,
            )
            write_text_atomically(stage / TABLE_FILE, json.dumps(table, indent=2) + "\n")
            write_text_atomically(
                stage / SUMMARY_FILE,
                summary_markdown(distribution, hosts, command, wall, episodes),
            )
            plot_ratios(ratios, stage / PLOT_FILE)
    except (ValueError, OSError, FolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(Path(args.out) / TABLE_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
