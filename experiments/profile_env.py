"""Where a full-fidelity env step spends its time: ``python -m experiments.profile_env``.

Profiles whole episodes of ``WeightedInterleaveEnv`` under uniformly random actions (new
weights every step, so DAMOS migrates and placement changes every interval) with cProfile,
after an untimed episode, and groups the time spent inside each function by the part of the
code it belongs to. Writes ``results/profile_env.md``. cProfile's own overhead inflates the
per-call cost, so the shares matter here, not the absolute times (``tierenv bench`` has
those).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from pathlib import Path

import numpy as np

from tierenv.envs.weighted_interleave import WeightedInterleaveEnv
from tierenv.files import write_text_atomically
from tierenv.provenance import stamp

# (label, path fragment of the function's file); the first match wins, unmatched time (numpy,
# Python built-ins and numba's dispatch called from anywhere) is its own group. A compiled
# kernel counts where it is defined (cProfile sees numba's dispatchers as the functions).
PARTS = (
    ("DAMON monitoring and DAMOS (tierenv/damon)", "/tierenv/damon/"),
    ("throughput solver (tierenv/hardware)", "/tierenv/hardware/"),
    ("pages and placement (tierenv/memory)", "/tierenv/memory/"),
    ("simulated host bookkeeping (tierenv/sim)", "/tierenv/sim/"),
    ("env: action mapping, features, reward, info", "/tierenv/envs/"),
    ("env: action mapping, features, reward, info", "/tierenv/contracts/"),
)
OTHER = "numpy, Python built-ins and numba's dispatch (called from all of the above)"


def profile(scenario: str, episodes: int, seed: int = 0) -> tuple[dict[str, float], int, int]:
    """Seconds per part, total function calls and env steps over ``episodes`` episodes."""
    seconds, calls, steps, _ = profile_functions(scenario, episodes, seed)
    return seconds, calls, steps


def profile_functions(
    scenario: str, episodes: int, seed: int = 0
) -> tuple[dict[str, float], int, int, list[tuple[str, int, float]]]:
    """``profile``'s numbers and every function's (name, calls, seconds inside it), most
    time first."""
    env = WeightedInterleaveEnv(scenario)
    rng = np.random.default_rng(seed)

    def run() -> int:
        env.reset(seed=seed)
        steps, truncated = 0, False
        while not truncated:
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            _, _, _, truncated, _ = env.step(action)
            steps += 1
        return steps

    run()  # compiled kernels loaded, caches warm
    profiler = cProfile.Profile()
    profiler.enable()
    steps = sum(run() for _ in range(episodes))
    profiler.disable()
    seconds: dict[str, float] = {}
    calls = 0
    functions = []
    # Stats.stats: {(file, line, function): (calls, ncalls, tottime, cumtime, callers)}
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # typeshed omits it
    for (filename, _, function), (_, ncalls, tottime, _, _) in table.items():
        part = next((label for label, fragment in PARTS if fragment in filename), OTHER)
        seconds[part] = seconds.get(part, 0.0) + tottime
        calls += ncalls
        where = filename.split("/tierenv/")[-1] if "/tierenv/" in filename else filename
        functions.append((f"{where}:{function}", ncalls, tottime))
    functions.sort(key=lambda row: -row[2])
    return seconds, calls, steps, functions


def report(scenario: str, episodes: int, top: int = 15) -> str:
    seconds, calls, steps, functions = profile_functions(scenario, episodes)
    total = sum(seconds.values())
    lines = [
        f"{episodes} episodes of `{scenario}` ({steps:,} steps) under random actions, one core, "
        f"cProfile: {calls / steps:,.0f} Python function calls per step.",
        "",
        "| part | share of step time |",
        "|---|---|",
    ]
    for part, value in sorted(seconds.items(), key=lambda item: -item[1]):
        lines.append(f"| {part} | {100 * value / total:.0f} % |")
    lines += [
        "",
        f"The {top} functions with the most time inside them (compiled kernels count under "
        "their module, and their time is their whole work):",
        "",
        "| function | calls per step | share of step time |",
        "|---|---|---|",
    ]
    for name, ncalls, tottime in functions[:top]:
        lines.append(f"| `{name}` | {ncalls / steps:.2f} | {100 * tottime / total:.1f} % |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="co-runner")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/profile_env.md"))
    args = parser.parse_args()
    table = report(args.scenario, args.episodes)
    print(table)
    command = f"python -m experiments.profile_env {args.scenario} --episodes {args.episodes}"
    write_text_atomically(
        args.out, "# Where an env step's time goes\n\n" + stamp(command) + "\n" + table
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
