"""Does the fluid model agree with the full simulator on a policy's own episodes? Replays the
weights a policy chose in a ``tierenv compare`` results folder through both::

    python -m experiments.fluid_vs_full results/compare/learned-suite --policy ppo-random \\
        [--scenario merci-weight-switch ...] [--seed 100 ...] [--out FILE.md]

Policies are trained on the batched fluid model (``tierenv.sim.fluid``) and evaluated on the
full simulator (``WeightedInterleaveEnv``). When a learned policy loses at evaluation, one
suspect is that the two disagree on the states the policy drives them into, which the
static-weight checks of ``tests/test_fluid.py`` and ``tests/test_fluid_scenarios.py`` never
visit. For each selected (scenario, seed) of the policy (default: every one in the folder)
this takes the recorded weight schedule (``steps.csv.gz``: ``weight_<node>`` per step) and

* replays it through the full env (``reset(seed)``, then ``step_weights`` per step, with the
  config's ``env`` arguments, e.g. ``migration_cost_per_gib``). The simulator is
  deterministic, so the replay must reproduce the recorded episode: its return and every
  step's reward and migrated GiB, at the precision the CSV files keep (``%.6g``). A replay
  that does not is reported as such (and the command exits 1): its other figures then
  compare the fluid model with a run that is not the recorded one;
* replays it through the fluid model (a batch of 1, ``DEFAULT_CHUNKS`` chunks) on the *same
  realised run* of the scenario (``env.scenario`` after ``reset(seed)``: its ``[variation]``
  drawn from the seed), with the env's DAMOS setup and initial weights, so that the only
  difference left is the model itself. The reward is the env's (``tierenv.envs.reward``):
  weighted speedup minus ``migration_cost_per_gib`` x GiB migrated in the interval.

The table gives per episode the return recorded, replayed in full and in the fluid model, the
mean and largest per-step absolute reward difference (fluid - full, with the step of the
largest) and the GiB migrated over the episode in each. For scale: under static weights the
two agree on weighted speedup within 0.1 % on average, after one weight change within 1 %
(``tests/test_fluid_scenarios.py``); a policy changing weights every step is outside both.

Limitation: only the weights are recorded. A policy that sets the DAMOS quota itself (a
training run with ``quota_action: true``) cannot be replayed: its quota is not in the results.
Such policies are refused when the config's ``sb3``/``onnx`` policy names a ``run.json`` or
ONNX sidecar that says ``quota_action: true`` (also under a guard); when that file cannot be
read the table says the check was not made, and the reproduction column is the remaining
evidence (a quota the replay does not set changes the episode). Exits 2, naming the file or
field, on bad input: a missing folder or file, an unknown policy, scenario or seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments.compare.config import CompareConfig, PolicySpec, load_config
from experiments.compare.runner import for_seed
from tierenv.damon.abi import GiB
from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.files import write_text_atomically
from tierenv.provenance import stamp
from tierenv.sim.fluid import DEFAULT_CHUNKS, FluidModel

#: The precision ``tierenv compare`` writes floats with (``report._write_csv``).
CSV_FORMAT = "%.6g"
#: Controller kinds whose run files may say ``quota_action`` (``agents.policies``).
QUOTA_KINDS = ("sb3", "onnx")


@dataclass(frozen=True)
class Recorded:
    """One recorded episode of the policy."""

    scenario: str  # the scenario's own name (as the results files show it)
    ref: str  # where the config finds it: a shipped name or a scenario file
    seed: int
    weights: np.ndarray  # (steps, nodes) int64: the weights in force in each interval
    episode_return: float  # episodes.csv
    reward: np.ndarray  # (steps,) steps.csv.gz
    migrated_gib: np.ndarray  # (steps,)


@dataclass(frozen=True)
class Run:
    """Per-step reward and GiB migrated of one replay."""

    reward: np.ndarray
    migrated_gib: np.ndarray

    @property
    def episode_return(self) -> float:
        return float(self.reward.sum())  # as TrialResult.episode_return


@dataclass(frozen=True)
class Replayed:
    recorded: Recorded
    full: Run
    fluid: Run
    quota_check: str  # "" when checked (or not applicable), else why it was not made

    @property
    def reproduced(self) -> bool:
        """The full replay gives the recorded numbers at the CSV's precision."""
        return (
            _rounded(self.full.episode_return) == self.recorded.episode_return
            and _same(self.full.reward, self.recorded.reward)
            and _same(self.full.migrated_gib, self.recorded.migrated_gib)
        )


def _rounded(value: float) -> float:
    return float(CSV_FORMAT % value)


def _same(replayed: np.ndarray, recorded: np.ndarray) -> bool:
    return replayed.shape == recorded.shape and all(
        _rounded(a) == b for a, b in zip(replayed, recorded, strict=True)
    )


# ----------------------------------------------------------------------- reading the results
def read_results(folder: Path) -> tuple[CompareConfig, pd.DataFrame, pd.DataFrame]:
    """The folder's config, episodes and steps; a missing folder or file raises ValueError
    naming it."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such results folder (a `tierenv compare` output)")
    for name in ("config.yaml", "episodes.csv", "steps.csv.gz"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder / name}: missing; is {folder} a tierenv compare folder?")
    config = load_config(folder / "config.yaml")
    episodes = _read_csv(folder / "episodes.csv", ("scenario", "policy", "seed", "return"))
    steps = _read_csv(
        folder / "steps.csv.gz",
        ("scenario", "policy", "seed", "step", "reward", "migrated_gib", "weight_0"),
    )
    return config, episodes, steps


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; is it a tierenv compare file?")
    return frame


def select(
    config: CompareConfig,
    episodes: pd.DataFrame,
    policy: str,
    scenarios: list[str] | None,
    seeds: list[int] | None,
    folder: Path,
) -> list[tuple[str, int]]:
    """The (scenario, seed) pairs to replay; unknown names raise ValueError naming the file."""
    source = folder / "episodes.csv"
    if policy not in set(episodes["policy"]):
        raise ValueError(
            f"{source}: no policy {policy!r}; it has {', '.join(sorted(set(episodes['policy'])))}"
        )
    if policy not in config.policy_names:
        raise ValueError(f"{config.source}: policies: no policy named {policy!r}")
    mine = episodes[episodes["policy"] == policy]
    known = list(dict.fromkeys(mine["scenario"]))
    for scenario in scenarios or []:
        if scenario not in known:
            raise ValueError(
                f"{source}: policy {policy!r} has no episodes of scenario {scenario!r}; "
                f"it has {', '.join(known)}"
            )
        if scenario not in config.scenario_names:
            raise ValueError(f"{config.source}: scenarios: none is named {scenario!r}")
    pairs = []
    for scenario in dict.fromkeys(scenarios or known):
        present = sorted(int(s) for s in mine.loc[mine["scenario"] == scenario, "seed"])
        for seed in dict.fromkeys(seeds or present):
            if seed not in present:
                raise ValueError(
                    f"{source}: policy {policy!r} on {scenario!r} has no episode at seed "
                    f"{seed}; its seeds are {', '.join(map(str, present))}"
                )
            pairs.append((scenario, seed))
    return pairs


def recorded_episode(
    config: CompareConfig,
    episodes: pd.DataFrame,
    steps: pd.DataFrame,
    policy: str,
    scenario: str,
    seed: int,
    folder: Path,
) -> Recorded:
    """The policy's recorded episode of ``scenario`` at ``seed``."""
    refs = dict(zip(config.scenario_names, config.scenarios, strict=True))
    if scenario not in refs:
        raise ValueError(f"{config.source}: scenarios: none is named {scenario!r}")
    key = (steps["policy"] == policy) & (steps["scenario"] == scenario) & (steps["seed"] == seed)
    rows = steps[key].sort_values("step")
    if rows.empty:
        raise ValueError(
            f"{folder / 'steps.csv.gz'}: no steps of {policy!r} on {scenario!r} at seed {seed}"
        )
    columns = [c for c in rows.columns if c.startswith("weight_") and rows[c].notna().all()]
    weights = rows[columns].to_numpy()
    if not columns or not np.all(weights == np.round(weights)):
        raise ValueError(
            f"{folder / 'steps.csv.gz'}: weight_<node> of {policy!r} on {scenario!r} at seed "
            f"{seed}: missing or not integers"
        )
    episode = episodes[
        (episodes["policy"] == policy)
        & (episodes["scenario"] == scenario)
        & (episodes["seed"] == seed)
    ]
    return Recorded(
        scenario=scenario,
        ref=refs[scenario],
        seed=seed,
        weights=weights.astype(np.int64),
        episode_return=float(episode["return"].iloc[0]),
        reward=rows["reward"].to_numpy(dtype=float),
        migrated_gib=rows["migrated_gib"].to_numpy(dtype=float),
    )


# ---------------------------------------------------------------------- the DAMOS quota check
def quota_check(spec: PolicySpec, config: CompareConfig, seed: int) -> str:
    """Refuses (ValueError) a policy whose run file says it sets the DAMOS quota; returns ""
    when it does not (or cannot: not a learned kind), else why the check was not made."""
    if spec.kind not in QUOTA_KINDS:
        return ""
    if seed not in config.seeds:
        raise ValueError(f"{config.source}: seeds: {seed} is not one of {list(config.seeds)}")
    params = for_seed(spec.params, seed, config.seeds.index(seed))
    path = Path(str(params.get("path", "")))
    if spec.kind == "onnx":
        file = path.with_suffix(".json")  # the sidecar
    else:
        file = (path.parent if path.suffix == ".zip" else path) / "run.json"
    try:
        quota_action = json.loads(file.read_text()).get("quota_action", False)
    except (OSError, ValueError, AttributeError):
        return f"quota_action not checked ({file} unreadable)"
    if quota_action is True:
        raise ValueError(
            f"{file}: quota_action: true: policy {spec.name!r} sets the DAMOS quota itself, "
            "and the results record only its weights; its episodes cannot be replayed"
        )
    return ""


# ----------------------------------------------------------------------------------- replays
def replay(recorded: Recorded, env_args: dict) -> tuple[Run, Run]:
    """The recorded weights through the full env and through the fluid model on the run the
    env realised at the seed."""
    env = WeightedInterleaveEnv(recorded.ref, **env_args)
    env.reset(seed=recorded.seed)
    start = env.last_result
    assert start is not None  # set by reset
    if recorded.weights.shape != (env.horizon_steps, env.n_nodes):
        raise ValueError(
            f"{recorded.scenario} seed {recorded.seed}: the results hold "
            f"{recorded.weights.shape[0]} steps of {recorded.weights.shape[1]} weights, the "
            f"scenario has {env.horizon_steps} steps on {env.n_nodes} nodes"
        )
    model = FluidModel(env.scenario, n_chunks=DEFAULT_CHUNKS, damos=env.damos)
    state = model.initial_state(1, start.measurements.weights)
    cost = env.migration_cost_per_gib
    full_reward, full_gib, fluid_reward, fluid_gib = [], [], [], []
    for weights in recorded.weights:
        _, reward, _, _, info = env.step_weights(weights)
        full_reward.append(reward)
        full_gib.append(info["migrated_bytes"] / GiB)
        outputs = model.step(state, weights[None, :])
        migrated = float(outputs.migrated_bytes[0].sum()) / GiB
        fluid_reward.append(float(outputs.weighted_speedup[0]) - cost * migrated)
        fluid_gib.append(migrated)
    env.close()
    full = Run(np.array(full_reward), np.array(full_gib))
    return full, Run(np.array(fluid_reward), np.array(fluid_gib))


# -------------------------------------------------------------------------------- the table
def render(replays: list[Replayed], policy: str, folder: Path, command: str) -> str:
    """The report's Markdown."""
    failed = [r for r in replays if not r.reproduced]
    lines = [
        f"# Fluid model against the full simulator on `{policy}`'s episodes",
        "",
        stamp(command).rstrip("\n"),
        "",
        f"The weights `{policy}` chose in `{folder}`, replayed through the full env and "
        f"through the fluid model ({DEFAULT_CHUNKS} chunks) on the same realised run of each "
        "scenario; method in `experiments/fluid_vs_full.py`. Δ = fluid - full per step.",
        "",
    ]
    if failed:
        lines += [
            f"**{len(failed)} of {len(replays)} full replays did not reproduce the recorded "
            "episode** (return or a step's reward or migrated GiB differs at the CSV's "
            "precision): their full and fluid columns describe another run than the recorded.",
            "",
        ]
    else:
        lines += [
            f"Every full replay ({len(replays)}) reproduced its recorded episode exactly (at "
            "the CSV's precision).",
            "",
        ]
    lines += [
        "| scenario | seed | steps | return recorded | return full | return fluid | "
        "reproduced | mean abs Δ reward | max abs Δ reward (step) | GiB migrated full | "
        "GiB migrated fluid |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(r) for r in replays]
    unchecked = sorted({r.quota_check for r in replays if r.quota_check})
    if unchecked:
        lines += ["", *(f"Note: {text}." for text in unchecked)]
    return "\n".join(lines) + "\n"


def _row(r: Replayed) -> str:
    difference = np.abs(r.fluid.reward - r.full.reward)
    worst = int(np.argmax(difference))
    return (
        f"| {r.recorded.scenario} | {r.recorded.seed} | {len(difference)} | "
        f"{r.recorded.episode_return:.6g} | {r.full.episode_return:.6g} | "
        f"{r.fluid.episode_return:.6g} | {'yes' if r.reproduced else '**no**'} | "
        f"{difference.mean():.2e} | {difference[worst]:.2e} ({worst}) | "
        f"{r.full.migrated_gib.sum():.6g} | {r.fluid.migrated_gib.sum():.6g} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a tierenv compare results folder")
    parser.add_argument("--policy", required=True, help="the policy whose episodes to replay")
    parser.add_argument(
        "--scenario", action="append", help="a scenario's name (repeatable; default: all)"
    )
    parser.add_argument("--seed", type=int, action="append", help="repeatable; default: all")
    parser.add_argument("--out", type=Path, help="also write the report here (Markdown)")
    args = parser.parse_args(argv)
    command = "python -m experiments.fluid_vs_full " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    try:
        config, episodes, steps = read_results(args.results)
        pairs = select(config, episodes, args.policy, args.scenario, args.seed, args.results)
        spec = next(p for p in config.policies if p.name == args.policy)
        checks = {seed: quota_check(spec, config, seed) for seed in {s for _, s in pairs}}
        replays = []
        for scenario, seed in tqdm(pairs, desc="replays", unit="episode", disable=None):
            recorded = recorded_episode(
                config, episodes, steps, args.policy, scenario, seed, args.results
            )
            full, fluid = replay(recorded, config.env)
            replays.append(Replayed(recorded, full, fluid, checks[seed]))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = render(replays, args.policy, args.results, command)
    if args.out is not None:
        write_text_atomically(args.out, text)
    print(text)
    return 0 if all(r.reproduced for r in replays) else 1


if __name__ == "__main__":
    raise SystemExit(main())
