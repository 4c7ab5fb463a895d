"""Interactive curves of a table: error EDFs and learning curves, as Plotly Figures.

`edfs` draws the error EDFs of the architectures, all of them and then by each
varied metaparameter (chosen from a dropdown, each also at equal complexity,
as in Radosavovic et al. 2019); `learning_curves` the per-epoch curves of the
front's trials, from a `curves` table, the metric chosen from a dropdown. They
draw and do not compute: EDFs come from `architectures.edf_by` (`edf.edf`),
fronts from `pareto.pareto_mask`; labels, axes, titles and menus are those of
`interactive`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

import explorer.analysis.plots as plots
from explorer.analysis.architectures import (
    architectures,
    edf_by_levels,
    groups_of,
    numbers,
    ok_measured,
)
from explorer.analysis.edf import edf
from explorer.analysis.interactive import axis_label, axis_layout, listed, menu_layout, title_layout
from explorer.analysis.pareto import aggregate_seeds, pareto_mask, varied_metaparameters
from explorer.results import DIRECTIONS

# Learning-curve columns a dropdown may show, when the curves table has them.
CURVE_METRICS: tuple[str, ...] = (
    "accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
    "top5",
)


def edfs(
    df: pd.DataFrame,
    by: list[str] | None = None,
    normalize_by: str | None = "params",
    title: str | None = None,
) -> go.Figure:
    """Error EDFs of the architectures: all of them, then by each of `by` (a dropdown).

    Each metaparameter comes twice: as is, and (with `normalize_by`) with its
    levels reweighted to the same distribution of that column, as in
    Radosavovic et al. (2019). `by` defaults to `architectures.edf_groups(df)`.
    """
    ok = ok_measured(df)
    agg = aggregate_seeds(ok)
    by = groups_of(agg) if by is None else by
    views: list[tuple[str, pd.DataFrame, str]] = [("all models", edf(agg), "error EDF")]
    for param in by:
        for norm in (None, normalize_by) if normalize_by else (None,):
            frame, per_seed = edf_by_levels(ok, agg, param, norm)
            name = f"by {param}" + (f", equal {norm}" if norm else "")
            heading = f"error EDF by {axis_label(param)}"
            heading += f", normalised by {axis_label(norm)}" if norm else ""
            heading += " (each seed a model)" if per_seed else ""
            views.append((name, frame, heading))
    fig = go.Figure()
    spans: list[tuple[int, int]] = []
    for k, (_, frame, _) in enumerate(views):
        start = len(fig.data)
        column = frame.attrs.get("by")
        for group, part in frame.groupby("group", sort=False):
            e = np.concatenate([[part["error"].iloc[0]], part["error"].to_numpy()])
            f = np.concatenate([[0.0], part["fraction"].to_numpy()])
            text = str(group) if column is None else f"{column}={group}"
            fig.add_trace(
                go.Scatter(
                    x=e,
                    y=f,
                    mode="lines",
                    line={"shape": "hv"},
                    name=f"{text} (n={part['n'].iloc[0]})",
                    visible=k == 0,
                    hovertemplate=f"{text}<br>error ≤ %{{x:.2%}}: %{{y:.0%}} of models"
                    "<extra></extra>",
                )
            )
        spans.append((start, len(fig.data)))
    buttons = []
    for (name, _, heading), (start, stop) in zip(views, spans, strict=True):
        visible = [start <= i < stop for i in range(len(fig.data))]
        buttons.append(
            {
                "label": name,
                "method": "update",
                "args": [{"visible": visible}, {"title.text": title or heading}],
            }
        )
    fig.update_layout(
        title=title_layout(title or views[0][2]),
        xaxis={**axis_layout("error"), "title": {"text": axis_label("error")}},
        yaxis={"title": {"text": axis_label("fraction")}, "range": [0, 1.02]},
        template="plotly_white",
        height=480,
        margin={"t": 90},
        updatemenus=[menu_layout(buttons)] if len(views) > 1 else [],
    )
    return fig


def learning_curves(
    curves: pd.DataFrame,
    df: pd.DataFrame,
    x: str = "params",
    y: str = "accuracy",
    title: str | None = None,
) -> go.Figure:
    """Per-epoch curves of the trials on the (x, y) front; the metric from a dropdown.

    `curves` has one row per trial, seed and epoch: `trial_id`, `seed`,
    `epoch` and metrics (`accuracy`, `train_loss`, ...). A line per trial and
    seed, coloured by architecture.
    """
    missing = [c for c in ("trial_id", "epoch") if c not in curves]
    if missing:
        raise ValueError(f"learning_curves: the curves table has no column {missing[0]!r}")
    metrics = [m for m in CURVE_METRICS if m in curves and curves[m].notna().any()]
    if not metrics:
        raise ValueError(f"learning_curves: the curves table has none of {list(CURVE_METRICS)}")
    agg = architectures(ok_measured(df, y))
    on = pareto_mask(agg, {x: DIRECTIONS.get(x, "min"), y: DIRECTIONS.get(y, "max")})
    varied = varied_metaparameters(agg)
    arch_of: dict[str, str] = {}
    for _, row in agg[on].iterrows():
        name = ", ".join(f"{plots.SHORT.get(c, c)}={row[c]}" for c in varied) or str(
            row.get("base", "")
        )
        for tid in str(row["trials"]).split(", "):
            arch_of[tid] = name
    ids = curves["trial_id"].astype("string")
    part = curves[ids.isin(list(arch_of)).fillna(False).to_numpy(dtype=bool)]
    keys = ["trial_id", "seed"] if "seed" in part else ["trial_id"]
    part = part.sort_values([*keys, "epoch"], kind="stable")
    names = sorted(set(arch_of.values()))
    colours = {n: _palette(i) for i, n in enumerate(names)}
    fig = go.Figure()
    shown: set[str] = set()
    for key, line in part.groupby(keys, sort=True):
        tid = key[0] if isinstance(key, tuple) else key
        arch = arch_of[str(tid)]
        seed = f", seed {key[1]}" if len(keys) > 1 else ""
        fig.add_trace(
            go.Scatter(
                x=numbers(line["epoch"]),
                y=numbers(line[metrics[0]]),
                mode="lines+markers",
                name=arch,
                legendgroup=arch,
                showlegend=arch not in shown,
                line={"color": colours[arch]},
                marker={"size": 5},
                hovertemplate=f"{tid}{seed}<br>epoch %{{x}}: %{{y:.4g}}<extra>{arch}</extra>",
            )
        )
        shown.add(arch)
    groups = list(part.groupby(keys, sort=True))
    buttons = [
        {
            "label": axis_label(m),
            "method": "update",
            "args": [
                {"y": [listed(numbers(g[m])) for _, g in groups]},
                {
                    "yaxis.title.text": axis_label(m),
                    "yaxis.tickformat": ".0%" if m in plots.PERCENT else "",
                },
            ],
        }
        for m in metrics
    ]
    fig.update_layout(
        title=title_layout(title or f"learning curves of the front's trials ({y} vs {x})"),
        xaxis={"title": {"text": "epoch"}, "tick0": 1, "dtick": _epoch_step(part["epoch"])},
        yaxis={
            "title": {"text": axis_label(metrics[0])},
            "tickformat": ".0%" if metrics[0] in plots.PERCENT else "",
        },
        template="plotly_white",
        height=480,
        margin={"t": 90},
        updatemenus=[menu_layout(buttons)] if len(metrics) > 1 else [],
    )
    return fig


def _epoch_step(epochs: pd.Series) -> int:
    """Whole epochs on the axis, about ten ticks at most."""
    last = pd.to_numeric(epochs, errors="coerce").max()
    return 1 if pd.isna(last) else max(1, math.ceil(float(last) / 10))


def _palette(i: int) -> str:
    colours = (
        "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
        "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#d62728",
    )  # fmt: skip
    return colours[i % len(colours)]
