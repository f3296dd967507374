"""The env's render modes: a text line per step (``ansi``) and a plot of the episode so far
(``rgb_array``: placement, bandwidth and weights over time)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tierenv.contracts.measurements import Measurements, NodeInfo, StepResult


@dataclass
class History:
    """The per-step series the ``rgb_array`` plot draws (kept only in that mode)."""

    time_s: list[float] = field(default_factory=list)
    bandwidth_gbps: list[np.ndarray] = field(default_factory=list)
    resident_share: list[np.ndarray] = field(default_factory=list)
    weight_share: list[np.ndarray] = field(default_factory=list)

    def add(self, m: Measurements) -> None:
        resident = m.resident_pages.sum(axis=0).astype(float)
        self.time_s.append(m.time_s)
        self.bandwidth_gbps.append(m.node_bandwidth_gbps.copy())
        self.resident_share.append(resident / resident.sum() if resident.sum() else resident)
        self.weight_share.append(m.weights / m.weights.sum())


def ansi_line(result: StepResult, nodes: NodeInfo) -> str:
    m = result.measurements
    weights = ":".join(str(int(w)) for w in m.weights)
    bandwidth = " ".join(f"{b:6.1f}" for b in m.node_bandwidth_gbps)
    latency = " ".join(f"{x:4.0f}" for x in m.node_latency_ns)
    throughput = " ".join(
        f"{name}={gbps:.1f}" for name, gbps in zip(m.app_names, m.app_throughput_gbps, strict=True)
    )
    migrated = m.migrated_bytes.sum() / (1 << 20)
    return (
        f"t={m.time_s:7.1f}s w={weights:>9} bw[GB/s]={bandwidth} lat[ns]={latency} "
        f"moved={migrated:6.0f}MiB {throughput}\n"
    )


def render_rgb(history: History, nodes: NodeInfo, title: str) -> np.ndarray:
    """An (H, W, 3) uint8 image of the episode so far."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(3, 1, sharex=True)
    time = np.array(history.time_s)
    series = (
        (history.resident_share, "resident share"),
        (history.bandwidth_gbps, "bandwidth GB/s"),
        (history.weight_share, "weight share"),
    )
    for ax, (values, label) in zip(axes, series, strict=True):
        if values:
            data = np.array(values)
            for node in range(data.shape[1]):
                ax.plot(time, data[:, node], label=f"node{node} {nodes.names[node]}")
        ax.set_ylabel(label, fontsize=8)
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("simulated time (s)")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
