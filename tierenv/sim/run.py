"""Run a scenario under fixed weights and report its time series as a table and a plot.

This is ``tierenv simulate``: the reference a learned policy is compared with is a sweep of
such runs (static weights), and the plot is how one sees a scenario's dynamics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierenv.contracts.measurements import GroundTruth
from tierenv.files import atomic_path
from tierenv.sim.host import SimulatedHost, StepResult
from tierenv.workload.scenario import Scenario


@dataclass(frozen=True)
class Trace:
    """One run: a StepResult per control interval."""

    scenario: Scenario
    weights: tuple[int, ...]
    steps: tuple[StepResult, ...]

    @property
    def app_names(self) -> list[str]:
        names: list[str] = []
        for step in self.steps:
            names.extend(n for n in step.measurements.app_names if n not in names)
        return names

    def app_series(self, value: Callable[[StepResult, int], float]) -> dict[str, np.ndarray]:
        """Per application, ``value(step, index of the app in that step)`` or NaN when idle."""
        series = {}
        for name in self.app_names:
            column = np.full(len(self.steps), np.nan)
            for t, step in enumerate(self.steps):
                names = step.measurements.app_names
                if name in names:
                    column[t] = value(step, names.index(name))
            series[name] = column
        return series

    @property
    def times(self) -> np.ndarray:
        return np.array([step.measurements.time_s for step in self.steps])

    def mean_weighted_speedup(self) -> float:
        return float(np.mean([_truth(step).weighted_speedup for step in self.steps]))


def _truth(step: StepResult) -> GroundTruth:
    """A simulated step's ground truth (only a real host's steps have none)."""
    assert step.truth is not None
    return step.truth


def simulate(
    scenario: Scenario,
    weights: list[int],
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Trace:
    """Run ``scenario`` to its end with static ``weights``."""
    host = SimulatedHost(scenario, weights=weights, seed=seed)
    steps = []
    total = scenario.n_steps
    while not host.done:
        steps.append(host.step())
        if progress is not None:
            progress(len(steps), total)
    return Trace(scenario, tuple(int(w) for w in weights), tuple(steps))


def table(trace: Trace, every: int = 10) -> str:
    """A text table: time, per-node bandwidth and latency, per-app throughput and local share."""
    n_nodes = len(trace.scenario.nodes)
    names = trace.app_names
    header = ["t (s)"]
    header += [f"node{i} GB/s" for i in range(n_nodes)]
    header += [f"node{i} ns" for i in range(n_nodes)]
    header += [f"{name} GB/s" for name in names] + [f"{name} on node0" for name in names]
    header += ["migrated MB", "weighted speedup"]
    throughput = trace.app_series(lambda s, j: s.measurements.app_throughput_gbps[j])
    local = trace.app_series(
        lambda s, j: (
            s.measurements.resident_pages[j, 0] / max(s.measurements.resident_pages[j].sum(), 1)
        )
    )
    rows = []
    for t, step in enumerate(trace.steps):
        if (t + 1) % every and t != len(trace.steps) - 1:
            continue
        m, truth = step.measurements, _truth(step)
        row = [f"{m.time_s:.0f}"]
        row += [f"{b:.1f}" for b in m.node_bandwidth_gbps]
        row += [f"{lat:.0f}" for lat in m.node_latency_ns]
        row += ["-" if np.isnan(throughput[n][t]) else f"{throughput[n][t]:.1f}" for n in names]
        row += ["-" if np.isnan(local[n][t]) else f"{local[n][t]:.0%}" for n in names]
        row += [f"{m.migrated_bytes.sum() / 1e6:.0f}", f"{truth.weighted_speedup:.3f}"]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [" | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def plot(trace: Trace, path: Path) -> Path:
    """A PNG of per-node bandwidth and latency, per-app throughput and placement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = trace.times
    names = [node.profile.name for node in trace.scenario.nodes]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    bandwidth = np.array([s.measurements.node_bandwidth_gbps for s in trace.steps])
    latency = np.array([s.measurements.node_latency_ns for s in trace.steps])
    for i, name in enumerate(names):
        axes[0].plot(times, bandwidth[:, i], label=f"node{i} {name}")
        axes[1].plot(times, latency[:, i], label=f"node{i}")
    axes[0].set_ylabel("node bandwidth (GB/s)")
    axes[1].set_ylabel("node latency (ns)")
    for name, series in trace.app_series(
        lambda s, j: s.measurements.app_throughput_gbps[j]
    ).items():
        axes[2].plot(times, series, label=name)
    axes[2].set_ylabel("application throughput (GB/s)")
    local = trace.app_series(
        lambda s, j: (
            s.measurements.resident_pages[j, 0] / max(s.measurements.resident_pages[j].sum(), 1)
        )
    )
    hot_local = trace.app_series(
        lambda s, j: _truth(s).app_hot_pages[j, 0] / max(_truth(s).app_hot_pages[j].sum(), 1)
    )
    for name in local:
        line = axes[3].plot(times, 100 * local[name], label=f"{name}: pages on node0")
        axes[3].plot(
            times,
            100 * hot_local[name],
            linestyle="--",
            color=line[0].get_color(),
            label=f"{name}: hot pages on node0",
        )
    axes[3].set_ylabel("placement (%)")
    axes[3].set_ylim(-2, 102)
    axes[3].set_xlabel("time (s)")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    weights = ":".join(str(w) for w in trace.weights)
    fig.suptitle(f"{trace.scenario.name}, static weights {weights}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
