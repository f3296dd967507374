"""Figures for ``tierenv compare``: per-scenario bars, weight time series, regret, learning curves.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas rather than through
pyplot, so plotting never touches global backend state and leaks no open figures in a long
comparison run. Every input is checked before anything is drawn, and every file is written to
a temporary name beside its destination and renamed over it (``tierenv.files.atomic_path``): a
failed plot leaves no file and an existing file keeps its old content.

Tables are pandas DataFrames, as in ``stats``: each function names the columns it reads and
ignores the others and the row index; the order of the rows matters where a docstring says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter
from numpy.typing import NDArray

from experiments.compare import stats
from tierenv.files import atomic_path

__all__ = [
    "DPI",
    "plot_learning_curves",
    "plot_regret",
    "plot_scenario_bars",
    "plot_weight_timeseries",
]

DPI = 110
_REFERENCE_HATCH = "///"
_LINESTYLES = ("-", "--", "-.", ":")


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: plots are written as PNG; give a path ending in .png")
    return path


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG through a temporary file and a rename."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return path


def _is(column: pd.Series, value: Any) -> NDArray[np.bool_]:
    """Which rows of ``column`` equal ``value`` (a missing value equals nothing)."""
    return column.eq(value).to_numpy(dtype=bool, na_value=False)


def _ordered(column: pd.Series) -> list[Any]:
    """Distinct values as Python scalars, in order of first appearance (the caller's order,
    e.g. summarise's)."""
    return list(dict.fromkeys(column.tolist()))


def _choose(available: list[Any], wanted: Sequence[Any] | None, what: str) -> list[Any]:
    if wanted is None:
        return available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; available: {available}")
    if not wanted:
        raise ValueError(f"no {what} selected")
    return list(wanted)


def _colours(policies: Sequence[Any]) -> dict[Any, Any]:
    """One colour per policy, the same in every panel of a figure."""
    cmap = colormaps["tab10" if len(policies) <= 10 else "tab20"]
    colours = list(cmap.colors)  # type: ignore[attr-defined]
    return {p: colours[i % len(colours)] for i, p in enumerate(policies)}


def _legend_outside(ax: Axes, **kwargs: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kwargs)


# --------------------------------------------------------------------------------------------
# Per-scenario bars


def _bars(
    summary: pd.DataFrame,
    metric_label: str,
    reference: str | None,
    policies: Sequence[str] | None,
    title: str | None,
    sharey: bool,
) -> Figure:
    scenarios = _ordered(summary["scenario"])
    available = _ordered(summary["policy"])
    chosen = _choose(available, policies, "policies")
    if reference is not None and reference not in available:
        raise ValueError(f"unknown reference policy {reference!r}; available: {available}")
    colours = _colours(chosen)
    point = stats.numeric_column(summary, "iqm", "summary")
    low = stats.numeric_column(summary, "ci_low", "summary")
    high = stats.numeric_column(summary, "ci_high", "summary")
    keys = zip(summary["scenario"].tolist(), summary["policy"].tolist(), strict=True)
    row_of = {key: i for i, key in enumerate(keys)}  # a repeated key: its last row

    ncols = min(3, len(scenarios))
    nrows = math.ceil(len(scenarios) / ncols)
    width = ncols * max(3.4, 0.42 * len(chosen) + 1.4)
    fig = _figure(min(width, 18.0), 0.6 + nrows * (2.9 + 0.06 * max(map(len, map(str, chosen)))))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    x = np.arange(len(chosen))
    for k, ax in enumerate(axes.flat):
        if k >= len(scenarios):
            ax.set_visible(False)
            continue
        scenario = scenarios[k]
        for j, policy in enumerate(chosen):
            i = row_of.get((scenario, policy))
            if i is None:  # the policy did not run on this scenario
                continue
            err = [[max(point[i] - low[i], 0.0)], [max(high[i] - point[i], 0.0)]]
            is_ref = policy == reference
            ax.bar(
                x[j],
                point[i],
                color=colours[policy],
                edgecolor="black" if is_ref else "none",
                linewidth=1.2,
                hatch=_REFERENCE_HATCH if is_ref else None,
                yerr=err,
                capsize=3,
                error_kw={"elinewidth": 1.0, "ecolor": "0.2"},
            )
            if is_ref:
                ax.axhline(point[i], color="0.35", linestyle="--", linewidth=0.9, zorder=0)
        if np.nanmin(low) < 0.0 < np.nanmax(high):
            ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_title(str(scenario))
        ax.set_xticks(x)
        ax.set_xticklabels([str(p) for p in chosen], rotation=35, ha="right")
        ax.tick_params(axis="x", labelsize=8)
        for label, policy in zip(ax.get_xticklabels(), chosen, strict=True):
            if policy == reference:
                label.set_fontweight("bold")
        ax.grid(axis="y", alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel(metric_label)
    note = "bars: IQM over seeds; error bars: bootstrap CI"
    if "n" in summary.columns:
        counts = summary["n"].to_numpy(dtype=int)
        lo, hi = counts.min(), counts.max()
        note += f"; {lo if lo == hi else f'{lo}-{hi}'} seeds per bar"
    fig.suptitle(f"{title or metric_label}\n{note}", fontsize=11)
    if reference is not None:
        fig.legend(
            handles=[
                Patch(facecolor="white", edgecolor="black", hatch=_REFERENCE_HATCH),
                Line2D([], [], color="0.35", linestyle="--"),
            ],
            labels=[f"reference: {reference}", "reference IQM"],
            loc="outside lower center",
            ncols=2,
            frameon=False,
        )
    return fig


def plot_scenario_bars(
    summary: pd.DataFrame,
    path: str | Path,
    metric_label: str,
    reference: str | None = None,
    policies: Sequence[str] | None = None,
    title: str | None = None,
    sharey: bool = False,
) -> Path:
    """One panel per scenario, one bar per policy: IQM with its CI as error bars.

    ``summary`` is a DataFrame like :func:`stats.summarise`'s table: columns scenario, policy,
    iqm, ci_low, ci_high and optionally n (runs per bar, noted in the title); one row per
    (scenario, policy). Panels and bars follow the order in which scenarios and policies first
    appear in it. ``metric_label`` names the metric with its unit for the y axis. The reference
    policy, if given, is hatched with its IQM drawn across the panel, so that "better than the
    reference" reads off at a glance. Panels keep their own y scale unless ``sharey`` (useful
    for normalised scores). Returns ``path``.
    """
    path = _check_path(path)
    summary = stats.checked_table(
        summary, ["scenario", "policy", "iqm", "ci_low", "ci_high"], "summary"
    )
    return _save(_bars(summary, metric_label, reference, policies, title, sharey), path)


def plot_regret(
    steps: pd.DataFrame,
    path: str | Path,
    reference: str | None = None,
    policies: Sequence[str] | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Path:
    """Per scenario and policy, the relative regret ``1 - sum(reward_throughput)/sum(bound)``.

    ``steps`` is a DataFrame with one row per interval and columns scenario, policy, seed,
    reward_throughput and the interval's upper bound ``bound`` (as
    :func:`stats.regret_per_episode`). Bars are the IQM over seeds with bootstrap CIs of
    :func:`stats.summarise` (lower is better, 0 = at the bound throughout). Returns ``path``.
    """
    path = _check_path(path)
    summary = stats.summarise(
        stats.regret_per_episode(steps),
        "regret",
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
    label = "relative regret 1 − Σreward / Σbound"
    fig = _bars(summary, label, reference, policies, "Regret against the upper bound", False)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Weights over time


def _node_columns(names: Sequence[str], prefix: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)$")
    found = sorted((int(m.group(1)), n) for n in names if (m := pattern.match(n)))
    return [n for _, n in found]


def _runs(
    steps: pd.DataFrame, numeric: Sequence[str], policies: Sequence[Any]
) -> list[pd.DataFrame]:
    """Each policy's rows of ``steps`` in time order, the ``numeric`` columns (those of all
    rows checked) as floats."""
    steps = steps.assign(**{name: stats.numeric_column(steps, name, "steps") for name in numeric})
    return [
        steps[_is(steps["policy"], policy)].sort_values("time_s", kind="stable")
        for policy in policies
    ]


def plot_weight_timeseries(
    steps: pd.DataFrame,
    scenario: str,
    seed: int,
    path: str | Path,
    policies: Sequence[str] | None = None,
    bandwidth_policy: str | None = None,
    title: str | None = None,
) -> Path:
    """How each policy's DDR weight share follows the load, for one scenario and seed.

    ``steps`` is a DataFrame with one row per interval and columns scenario, policy, seed,
    time_s, n_apps, share_0 (node 0's share of the weights) and total_throughput_gbps; with
    ``bandwidth_policy`` also bandwidth_gbps_0, bandwidth_gbps_1, ... (every node's). Policies
    are drawn in the order they first appear (or of ``policies``), each run in time order.
    Panels share the time axis: the number of running applications (the load, with every change
    marked by a dotted line through all panels); node 0's (DDR's) share of the interleave
    weights per policy; the total throughput per policy; and, if ``bandwidth_policy`` is given,
    that policy's bandwidth per node. Returns ``path``.
    """
    path = _check_path(path)
    required = ["scenario", "policy", "seed", "time_s", "n_apps", "total_throughput_gbps"]
    required.append("share_0")
    steps = stats.checked_table(steps, required, "steps")
    bandwidth = _node_columns([str(c) for c in steps.columns], "bandwidth_gbps")
    if bandwidth_policy is not None:
        required += bandwidth or ["bandwidth_gbps_0"]
        steps = stats.checked_table(steps, required, "steps")
    in_scenario = _is(steps["scenario"], scenario)
    if not in_scenario.any():
        scenarios = _ordered(steps["scenario"])
        raise ValueError(f"no steps for scenario {scenario!r}; scenarios: {scenarios}")
    selected = in_scenario & _is(steps["seed"], seed)
    if not selected.any():
        seeds = _ordered(steps["seed"][in_scenario])
        raise ValueError(f"no steps for seed {seed!r} of scenario {scenario!r}; seeds: {seeds}")
    rows = steps.loc[selected, required]
    available = _ordered(rows["policy"])
    chosen = _choose(available, policies, "policies")
    if bandwidth_policy is not None and bandwidth_policy not in available:
        raise ValueError(f"unknown bandwidth_policy {bandwidth_policy!r}; available: {available}")
    numeric = ["time_s", "n_apps", "share_0", "total_throughput_gbps"]
    series = dict(zip(chosen, _runs(rows, numeric, chosen), strict=True))

    panels = 4 if bandwidth_policy is not None else 3
    ratios = [1.0, 2.0, 1.6, 1.6][:panels]
    fig = _figure(10.0, 1.2 + 1.7 * sum(ratios) / 1.4)
    axes = fig.subplots(panels, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    colours = _colours(chosen)

    # The load is set by the scenario, the same for every policy: draw it once.
    first = series[chosen[0]]
    t_load, n_load = first["time_s"].to_numpy(), first["n_apps"].to_numpy()
    axes[0].fill_between(t_load, n_load, step="post", color="0.75", linewidth=0)
    axes[0].step(t_load, n_load, where="post", color="0.3", linewidth=1.0)
    axes[0].set_ylabel("running apps")
    axes[0].set_ylim(0, max(1.0, float(n_load.max())) * 1.15)
    axes[0].yaxis.get_major_locator().set_params(integer=True)
    changes = t_load[1:][np.diff(n_load) != 0]

    for k, policy in enumerate(chosen):
        run = series[policy]
        time = run["time_s"].to_numpy()
        style = {"color": colours[policy], "linestyle": _LINESTYLES[k // 10 % 4], "linewidth": 1.4}
        share, throughput = run["share_0"].to_numpy(), run["total_throughput_gbps"].to_numpy()
        axes[1].step(time, share, where="post", label=str(policy), **style)
        axes[2].step(time, throughput, where="post", label=str(policy), **style)
    axes[1].set_ylabel("node 0 (DDR)\nweight share")
    axes[1].set_ylim(-0.03, 1.03)
    axes[2].set_ylabel("total throughput\n(GB/s)")
    _legend_outside(axes[1], title="policy")

    if bandwidth_policy is not None:
        (run,) = _runs(rows, ["time_s", *bandwidth], [bandwidth_policy])
        time = run["time_s"].to_numpy()
        for i, column in enumerate(bandwidth):
            label = f"node {column.rsplit('_', 1)[1]}" + (" (DDR)" if i == 0 else "")
            axes[3].step(time, run[column].to_numpy(), where="post", label=label)
        axes[3].set_ylabel(f"bandwidth (GB/s)\n{bandwidth_policy}")
        _legend_outside(axes[3])

    for ax in axes:
        ax.grid(alpha=0.3)
        if len(changes) <= 60:
            for t in changes:
                ax.axvline(t, color="0.5", linestyle=":", linewidth=0.8, zorder=0)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title or f"Weights under changing load: scenario {scenario}, seed {seed}")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Learning curves


def plot_learning_curves(
    curves: pd.DataFrame,
    path: str | Path,
    policies: Sequence[str] | None = None,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    ylabel: str = "evaluation return",
    title: str | None = None,
) -> Path:
    """Per policy, the IQM over seeds of ``eval_return`` against training steps, with a CI band.

    ``curves`` is a DataFrame with columns policy, seed, timesteps, eval_return (one row per
    evaluation of a training run, as ``report.learning_curves``); seeds are matched on equal
    ``timesteps``. The band is the percentile bootstrap CI over the seeds at each point (a
    point with one seed has no band; the resamples draw the seeds in the table's row order).
    Policies are drawn sorted by name. Returns ``path``.
    """
    path = _check_path(path)
    curves = stats.checked_table(curves, ["policy", "seed", "timesteps", "eval_return"], "curves")
    runs = curves[["policy", "seed"]].assign(
        timesteps=stats.numeric_column(curves, "timesteps", "curves"),
        eval_return=stats.numeric_column(curves, "eval_return", "curves"),
    )
    chosen = _choose(sorted(_ordered(runs["policy"]), key=str), policies, "policies")
    fig = _figure(8.5, 4.6)
    ax = fig.subplots()
    colours = _colours(chosen)
    seeds_seen = []
    for k, policy in enumerate(chosen):
        mine = runs[_is(runs["policy"], policy)]
        xs, centre, low, high = [], [], [], []
        # points in increasing timesteps; each point's seeds in row order
        for x, at in mine.groupby("timesteps", sort=True)["eval_return"]:
            v = at.to_numpy()
            lo, hi = stats.bootstrap_ci(v, stats.iqm, confidence, resamples, seed)
            xs.append(x)
            centre.append(stats.iqm(v))
            low.append(lo)
            high.append(hi)
        seeds_seen.append(mine["seed"].nunique(dropna=False))
        colour = colours[policy]
        style = _LINESTYLES[k // 10 % 4]
        points = np.asarray(xs, dtype=np.float64)
        ax.plot(points, centre, color=colour, linestyle=style, linewidth=1.6, label=str(policy))
        ax.fill_between(points, low, high, color=colour, alpha=0.2, linewidth=0)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"{ylabel}\n(IQM over seeds)")
    ax.grid(alpha=0.3)
    _legend_outside(ax, title="policy")
    seeds = f"{min(seeds_seen)}" if min(seeds_seen) == max(seeds_seen) else "various"
    band = f"band: {confidence:.0%} bootstrap CI over seeds ({seeds} seeds)"
    ax.set_title(f"{title or 'Learning curves'}\n{band}", fontsize=11)
    return _save(fig, path)
