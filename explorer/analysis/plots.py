"""Figures of a results table: each function takes a table, returns a Figure.

Plots draw, they do not compute: `edf` and `sensitivity` frames come from
`analysis.edf`, Pareto flags from `analysis.pareto`. Figures are built with the
object API (`matplotlib.figure.Figure`), never pyplot's global state, so they
work headless and in threads; save them with `fig.savefig(path)`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from explorer.analysis.pareto import (
    DIRECTIONS,
    Direction,
    pareto_mask,
    preset_names,
    varied_metaparameters,
)
from explorer.console import human_bytes

# Axis label of every column a figure may show, with its unit. One place only.
LABELS: dict[str, str] = {
    "params": "parameters",
    "bytes_f32": "model size (float32)",
    "bytes_int8": "model size (int8)",
    "flops": "MFLOPs per image",
    "accuracy": "test top-1 accuracy (%)",
    "top5": "test top-5 accuracy (%)",
    "int8_accuracy": "test top-1 accuracy, int8 weights (%)",
    "train_accuracy": "training top-1 accuracy (%)",
    "test_loss": "test cross-entropy",
    "train_loss": "training loss",
    "latency_b1_ms": "latency, batch 1 (ms)",
    "latency_b128_ms": "latency, batch 128 (ms)",
    "compile_s": "compile time (s)",
    "images_per_s": "training throughput (images/s)",
    "wall_s": "wall time (s)",
    "error": "test top-1 error (%)",
    "fraction": "cumulative fraction of models",
    "squeeze_ratio": "squeeze ratio (SR)",
    "pct3x3": "fraction of 3x3 expand filters (pct3x3)",
    "base_e": "expand filters of the first Fire module (base_e)",
    "incr_e": "expand filters added every freq modules (incr_e)",
    "freq": "Fire modules between width increases (freq)",
    "bypass": "bypass",
    "num_fire": "Fire modules",
    "conv1_filters": "conv1 filters",
    "dropout": "dropout rate",
    "space": "design space",
}
PERCENT = {"accuracy", "top5", "int8_accuracy", "train_accuracy", "error"}
BYTES = {"bytes_f32", "bytes_int8"}
# Short names for annotating points with their metaparameters.
SHORT = {"squeeze_ratio": "SR", "pct3x3": "3x3", "conv1_filters": "c1"}


def axis_label(col: str) -> str:
    """The axis label of a column (the column's name when it has none)."""
    return LABELS.get(col, col)


def _si(value: float, units: tuple[tuple[str, float], ...], sep: str = "") -> str:
    for suffix, scale in units:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{sep}{suffix}"
    return f"{value:.3g}"


def human_count(value: float, _pos=None) -> str:
    """1234567 -> '1.23M'."""
    return _si(value, (("G", 1e9), ("M", 1e6), ("K", 1e3)))


def title(fig: Figure) -> str:
    """A figure's title: its suptitle, else its first axes' title."""
    return fig.get_suptitle() or (fig.axes[0].get_title() if fig.axes else "")


def decades(values: pd.Series) -> float:
    """How many decades the positive values span (0 for none)."""
    v = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    v = v[v > 0]
    return math.log10(v.max() / v.min()) if len(v) else 0.0


def format_axis(ax, which: str, col: str, values: pd.Series | None = None) -> None:
    """Label and units of ax's x or y axis; log scale when values span > 1 decade."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    if values is not None and col not in PERCENT and decades(values) > 1:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_label_text(axis_label(col))
    if col in PERCENT:
        axis.set_major_formatter(PercentFormatter(xmax=1.0))
    elif col in BYTES:
        axis.set_major_formatter(FuncFormatter(human_bytes))
    elif col == "flops":
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:.3g}"))
    elif col == "params":
        axis.set_major_formatter(FuncFormatter(human_count))
    else:
        return
    axis.set_minor_formatter(NullFormatter())  # log minor ticks stay unlabelled


def _annotation(row: pd.Series, cols: list[str]) -> str:
    parts = []
    for c in cols:
        v = row[c]
        text = "NA" if pd.isna(v) else (f"{v:.3g}" if isinstance(v, float) else str(v))
        parts.append(f"{SHORT.get(c, c)}={text}")
    return "\n".join(parts)


def pareto(
    df: pd.DataFrame,
    x: str = "params",
    y: str = "accuracy",
    objectives: dict[str, Direction] | None = None,
    title: str | None = None,
) -> Figure:
    """Scatter of y against x, the Pareto front highlighted and annotated."""
    if objectives is None:
        objectives = {x: DIRECTIONS.get(x, "min"), y: DIRECTIONS.get(y, "max")}
    xs = pd.to_numeric(df[x], errors="coerce").astype("float64")
    ys = pd.to_numeric(df[y], errors="coerce").astype("float64")
    shown = (xs.notna() & ys.notna()).to_numpy()
    on_front = pareto_mask(df, objectives) & shown
    varied = varied_metaparameters(df[shown])
    presets = preset_names(df)

    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot()
    rest = shown & ~on_front
    if rest.any():
        ax.scatter(xs[rest], ys[rest], s=18, color="0.6", alpha=0.7, label="others")
    # The front of (smaller x, larger y) is a staircase: between two front points
    # the best reachable y is the left one's.
    staircase = objectives.get(x) == "min" and objectives.get(y) == "max"
    order = np.flatnonzero(on_front)
    order = order[np.argsort(xs.to_numpy()[order], kind="stable")]
    ax.plot(
        xs.to_numpy()[order],
        ys.to_numpy()[order],
        "o-",
        color="C3",
        ms=6,
        drawstyle="steps-post" if staircase else "default",
        label="Pareto front",
    )
    for k, i in enumerate(order):
        text = _annotation(df.iloc[i], varied)
        if text:
            ax.annotate(
                text,
                (xs.iloc[i], ys.iloc[i]),
                xytext=(6, -10 if k % 2 else 6),
                textcoords="offset points",
                fontsize=7,
                color="C3",
            )
    for name in sorted(set(presets.dropna())):
        hit = (presets == name).fillna(False).to_numpy(dtype=bool) & shown
        if hit.any():
            ax.scatter(
                xs[hit],
                ys[hit],
                marker="*",
                s=160,
                edgecolor="k",
                zorder=3,
                label=name,
            )
    format_axis(ax, "x", x, xs[shown])
    format_axis(ax, "y", y)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or f"{axis_label(y)} vs {axis_label(x)}: Pareto front")
    return fig


def edf(edf_frame: pd.DataFrame, title: str | None = None) -> Figure:
    """Step plot of each group's error EDF (a frame from `analysis.edf.edf`)."""
    by = edf_frame.attrs.get("by")
    metric = edf_frame.attrs.get("metric", "accuracy")
    norm = edf_frame.attrs.get("normalize_by")
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for group, part in edf_frame.groupby("group", sort=False):
        # Start each curve at fraction 0 just left of its best model.
        e = np.concatenate([[part["error"].iloc[0]], part["error"].to_numpy()])
        f = np.concatenate([[0.0], part["fraction"].to_numpy()])
        name = str(group) if by is None else f"{by}={group}"
        ax.step(e, f, where="post", label=f"{name} (n={part['n'].iloc[0]})")
    ax.set_ylim(0, 1.02)
    format_axis(ax, "x", "error")
    if metric != "accuracy":
        ax.set_xlabel(f"1 - {axis_label(metric)}")
    ax.set_ylabel(axis_label("fraction"))
    ax.grid(True, alpha=0.3)
    if len(edf_frame):
        ax.legend(fontsize=8, loc="lower right")
    default = "error EDF" + (f" by {axis_label(by)}" if by else "")
    default += f", normalised by {axis_label(norm)}" if norm else ""
    ax.set_title(title or default)
    return fig


def sensitivity(sens_frame: pd.DataFrame, param: str, title: str | None = None) -> Figure:
    """One panel per metric of a `sensitivity` frame: mean ± std against `param`."""
    metrics = [c[: -len("_mean")] for c in sens_frame if c.endswith("_mean")]
    fig = Figure(figsize=(5 * max(1, len(metrics)), 4), layout="constrained")
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    levels = sens_frame[param]
    numeric = pd.api.types.is_numeric_dtype(levels) and levels.dtype != bool
    xs = levels.to_numpy(dtype=float) if numeric else levels.astype(str).to_numpy()
    for ax, m in zip(axes, metrics, strict=False):
        std = sens_frame[f"{m}_std"].fillna(0.0).to_numpy(dtype=float)
        ax.errorbar(
            xs,
            sens_frame[f"{m}_mean"].to_numpy(dtype=float),
            yerr=std,
            fmt="o-" if numeric else "o",
            capsize=4,
        )
        format_axis(ax, "x", param)
        format_axis(ax, "y", m)
        ax.grid(True, alpha=0.3)
        ax.set_title(axis_label(m))
    n = sens_frame["n"]
    seeds = f"n={n.min()}" if n.min() == n.max() else f"n={n.min()}-{n.max()}"
    fig.suptitle(title or f"sensitivity to {axis_label(param)} (mean ± std, {seeds} per level)")
    return fig
