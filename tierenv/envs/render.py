"""The env's render modes: a text line per step (``ansi``) and a plot of the episode so far
(``rgb_array`` and ``human``: placement, bandwidth and weights over time)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierenv.contracts.measurements import Measurements, NodeInfo, StepResult


@dataclass
class History:
    """The per-step series the plot draws (kept only in the plotting modes)."""

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


class EpisodePlot:
    """Draws the episode so far into one reused matplotlib figure.

    Building a figure, laying it out and drawing its axes costs a few hundred milliseconds,
    so that is done once (and again only when the data leave the axes' limits); each frame
    restores the cached background and draws the lines alone (blitting)."""

    PANELS = ("resident share", "bandwidth GB/s", "weight share")

    def __init__(self, nodes: NodeInfo, title: str, duration_s: float) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(6.4, 4.8), dpi=80)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.subplots(3, 1, sharex=True)
        self.lines: list[list[Any]] = []
        for ax, label in zip(self.axes, self.PANELS, strict=True):
            lines = [
                ax.plot([], [], label=f"node{node} {nodes.names[node]}", animated=True)[0]
                for node in range(nodes.n_nodes)
            ]
            self.lines.append(lines)
            ax.set_ylabel(label, fontsize=8)
        self.axes[0].set_title(title, fontsize=9)
        self.axes[-1].set_xlabel("simulated time (s)")
        self.axes[0].set_xlim(0.0, max(float(duration_s), 1.0))
        self.axes[0].set_ylim(0.0, 1.05)
        # the slowest node's peak to start with; grows (doubling) when the traffic exceeds it
        self.axes[1].set_ylim(0.0, 1.25 * float(np.min(nodes.peak_gbps)))
        self.axes[2].set_ylim(0.0, 1.05)
        self.axes[0].legend(
            handles=self.lines[0], fontsize=7, loc="upper right"
        )  # animated lines still show in the legend
        self.figure.tight_layout()
        self._background: Any = None

    def frame(self, history: History) -> np.ndarray:
        """An (H, W, 3) uint8 image of ``history``."""
        time = np.asarray(history.time_s, dtype=float)
        series = [
            np.asarray(values, dtype=float).reshape(len(time), -1)
            for values in (history.resident_share, history.bandwidth_gbps, history.weight_share)
        ]
        self._fit_limits(time, series)
        if self._background is None:
            self.canvas.draw()  # axes, ticks, labels and legend: cached below
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.canvas.restore_region(self._background)
        for ax, lines, data in zip(self.axes, self.lines, series, strict=True):
            for node, line in enumerate(lines):
                line.set_data(time, data[:, node] if data.size else [])
                ax.draw_artist(line)
        return np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()

    def _fit_limits(self, time: np.ndarray, series: list[np.ndarray]) -> None:
        """Widen an axis the data left (a longer run than planned, a node above its peak);
        the cached background is then redrawn."""
        changed = False
        if time.size and time.max() > self.axes[0].get_xlim()[1]:
            self.axes[0].set_xlim(0.0, 2.0 * float(time.max()))
            changed = True
        for ax, data in zip(self.axes, series, strict=True):
            top = ax.get_ylim()[1]
            if data.size and data.max() > top:
                ax.set_ylim(0.0, max(2.0 * top, 1.25 * float(data.max())))
                changed = True
        if changed:
            self._background = None


class HumanWindow:
    """``human`` mode: the same picture in a matplotlib window, updated at every step."""

    def __init__(self) -> None:
        import matplotlib.pyplot as plt

        self._plt = plt
        self._figure = plt.figure("tierenv", figsize=(6.4, 4.8), dpi=80)
        self._figure.subplots_adjust(0, 0, 1, 1)
        self._axes = self._figure.add_subplot()
        self._axes.set_axis_off()
        self._image: Any = None

    def show(self, frame: np.ndarray) -> None:
        if self._image is None:
            self._image = self._axes.imshow(frame)
            with warnings.catch_warnings():  # a non-GUI backend (Agg) says it cannot show
                warnings.simplefilter("ignore", UserWarning)
                self._plt.show(block=False)
        else:
            self._image.set_data(frame)
        self._figure.canvas.draw_idle()
        self._figure.canvas.flush_events()

    def close(self) -> None:
        self._plt.close(self._figure)
