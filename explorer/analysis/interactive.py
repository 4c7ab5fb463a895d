"""Interactive figures of a results table: each function takes a table, returns a Plotly Figure.

The counterparts of `plots` (whose matplotlib figures stay the PNGs of the
report) for looking around a front: `front` (accuracy against a size or cost
chosen from a dropdown, the Pareto points highlighted, presets marked, every
point's metaparameters and metrics on hover), `parallel` (parallel
coordinates over three or more objectives), `edfs` (error EDFs by each varied
metaparameter, chosen from a dropdown) and `learning_curves` (per-epoch curves
of the front's trials, from a `curves` table). Like `plots` they draw and do not
compute: seeds are averaged by `pareto.aggregate_seeds`, fronts come from
`pareto.pareto_mask`, EDFs from `edf.edf`.

`choose` and `export_command` pick the best architecture under a constraint and
say how to export it (the notebook's last step). `to_html` turns a figure into a
`<div>` for a page that loads plotly.js once (`plotly_js`), with no network.
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

import explorer.analysis.plots as plots
from explorer.analysis.edf import edf
from explorer.analysis.pareto import (
    ARCHITECTURE_KEYS,
    METRICS,
    aggregate_seeds,
    ok_rows,
    pareto_mask,
    preset_names,
    varied_metaparameters,
)
from explorer.results import DIRECTIONS, Direction

# Size and cost columns the front's x axis may show, in the dropdown's order; a
# column is offered when the table has it and it was measured for some row.
X_COLUMNS: tuple[str, ...] = (
    "params",
    "bytes_f32",
    "bytes_int8",
    "bytes_compressed",
    "flops",
    "latency_b1_ms",
    "latency_ort_b1_ms",
)
# Hover lines of a point after its metaparameters, when measured.
HOVER_METRICS: tuple[str, ...] = ("accuracy", "int8_accuracy", *X_COLUMNS, "latency_b128_ms")
# Learning-curve columns a dropdown may show, when the curves table has them.
CURVE_METRICS: tuple[str, ...] = (
    "accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
    "top5",
)
MAX_EDF_LEVELS = 8  # more numeric levels than this are cut into quartiles
# Columns `plots.LABELS` does not name (they may come with later measurements).
_LABELS = {
    "bytes_compressed": "model size (compressed)",
    "latency_ort_b1_ms": "latency, ONNX Runtime, batch 1 (ms)",
    "flops": "FLOPs per image",
}
_FRONT = "#d62728"
_OTHERS = "#8c8c8c"
_PRESET_SYMBOLS = ("star", "diamond", "hexagram", "star-square")
_PRESET_COLOURS = ("gold", "#17becf", "#9467bd", "#2ca02c")
_CONFIG = {"displaylogo": False, "responsive": True}


def label(col: str) -> str:
    """Axis label of a column: `plots.label`, with this module's additions."""
    return _LABELS.get(col) or plots.label(col)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


def _listed(values: np.ndarray) -> list[float | None]:
    """Plain floats with None for NaN: what a dropdown's arguments carry."""
    return [None if math.isnan(v) else float(v) for v in values]


def _axis(col: str, values: np.ndarray | None = None) -> dict:
    """Title, scale and tick format of an axis showing `col`."""
    out: dict = {"title": {"text": label(col)}, "type": "linear", "tickformat": ""}
    if values is not None and col not in plots.PERCENT and plots.decades(pd.Series(values)) > 1:
        out["type"] = "log"
    if col in plots.PERCENT:
        out["tickformat"] = ".0%"
    elif col.startswith("bytes") or col in ("params", "flops"):
        out["tickformat"] = "~s"
    out["ticksuffix"] = " B" if col.startswith("bytes") else ""
    return out


def _cell(col: str, value) -> str:
    """A value as hover text: percentages, byte sizes, counts with separators."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    if col in plots.PERCENT:
        return f"{100 * value:.2f}%"
    if col.startswith("bytes"):
        return plots.human_bytes(value)
    if col in ("params", "flops"):
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ok_measured(df: pd.DataFrame, y: str = "accuracy") -> pd.DataFrame:
    ok = ok_rows(df)
    if y not in ok:
        raise ValueError(f"no column {y!r} in the table")
    ok = ok[pd.notna(_numbers(ok[y]))]
    if ok.empty:
        raise ValueError(f"no ok rows with a {y!r} to plot")
    return ok


def architectures(df: pd.DataFrame) -> pd.DataFrame:
    """`aggregate_seeds` of the ok rows, with every size/cost column and a `trials` column.

    Columns of `X_COLUMNS` that `pareto.METRICS` does not average yet are
    averaged too, and `trials` lists each architecture's trial ids (its seeds).
    """
    ok = ok_rows(df)
    metrics = list(dict.fromkeys([*METRICS, *(c for c in X_COLUMNS if c in ok)]))
    agg = aggregate_seeds(ok, metrics)
    if "trial_id" not in ok or agg.empty:
        agg["trials"] = ""
        return agg
    # aggregate_seeds groups on the string forms of these keys: so do we.
    keys = [c for c in ARCHITECTURE_KEYS if c in ok]
    if not keys:  # a table of metrics only: one architecture per row
        agg["trials"] = ok["trial_id"].astype("string").fillna("").to_numpy()
        return agg

    def key_text(frame: pd.DataFrame) -> pd.Series:
        text = frame[keys].astype("string").fillna("<NA>")
        joined = text[keys[0]]
        for c in keys[1:]:
            joined = joined + "\x1f" + text[c]
        return joined

    ids = ok["trial_id"].astype("string").fillna("")
    joined = ids.groupby(key_text(ok).to_numpy(), sort=False).agg(", ".join)
    agg["trials"] = key_text(agg).map(joined).fillna("").to_numpy()
    return agg


def _hover(agg: pd.DataFrame) -> tuple[np.ndarray, str]:
    """customdata (strings) and the hovertemplate reading it."""
    names = [c for c in ("base", *varied_metaparameters(agg)) if c in agg]
    names = list(dict.fromkeys(names))
    metrics = [m for m in HOVER_METRICS if m in agg and agg[m].notna().any()]
    columns, lines = [agg["trials"].astype(str).to_numpy()], ["<b>%{customdata[0]}</b>"]
    for name in names:
        columns.append(np.array([_cell(name, v) for v in agg[name]], dtype=object))
        lines.append(f"{name} = %{{customdata[{len(columns) - 1}]}}")
    for m in metrics:
        mean = [_cell(m, v) for v in agg[m]]
        std = agg.get(f"{m}_std", pd.Series(np.nan, index=agg.index))
        if m not in ("params", "bytes_f32", "bytes_int8", "flops", "bytes_compressed"):
            mean = [
                t if pd.isna(s) or s == 0 else f"{t} ± {_cell(m, s)}"
                for t, s in zip(mean, std, strict=True)
            ]
        columns.append(np.array(mean, dtype=object))
        name = label(m).replace(" (%)", "")
        lines.append(f"{name}: %{{customdata[{len(columns) - 1}]}}")
    columns.append(agg["n_seeds"].astype(int).astype(str).to_numpy())
    lines.append(f"seeds: %{{customdata[{len(columns) - 1}]}}")
    return np.column_stack(columns), "<br>".join(lines) + "<extra></extra>"


def front(
    df: pd.DataFrame,
    xs: tuple[str, ...] | list[str] | None = None,
    y: str = "accuracy",
    title: str | None = None,
) -> go.Figure:
    """y (mean ± std over seeds) against a size/cost column picked from a dropdown.

    One point per architecture (`architectures`); the Pareto points of (x, y)
    are drawn over them, joined as a staircase, for whichever x is shown;
    presets (`pareto.preset_names`) are stars. Hovering a point shows its trial
    ids, metaparameters and metrics. `xs` defaults to the measured `X_COLUMNS`.
    """
    ok = _ok_measured(df, y)
    agg = architectures(ok)
    xs = [c for c in (xs or X_COLUMNS) if c in agg and agg[c].notna().any()]
    if not xs:
        raise ValueError(f"front: none of {list(X_COLUMNS)} is measured in the table")
    ydir: Direction = DIRECTIONS.get(y, "max")
    yv = _numbers(agg[y])
    ystd = np.nan_to_num(_numbers(agg[f"{y}_std"])) if f"{y}_std" in agg else None
    presets = preset_names(agg)
    preset_list = sorted(set(presets.dropna()))
    custom, template = _hover(agg)

    def traces_for(x: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """x and y of each trace (all, front, presets...) when x is shown."""
        xv = _numbers(agg[x])
        xdir = DIRECTIONS.get(x, "min")
        on = pareto_mask(agg, {x: xdir, y: ydir})
        idx = np.flatnonzero(on)
        idx = idx[np.argsort(xv[idx], kind="stable")]
        out_x, out_y = [xv, xv[idx]], [yv, yv[idx]]
        for name in preset_list:
            hit = (presets == name).fillna(False).to_numpy(dtype=bool)
            out_x.append(xv[hit])
            out_y.append(yv[hit])
        return out_x, out_y

    x0 = xs[0]
    tx, ty = traces_for(x0)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=tx[0],
            y=ty[0],
            mode="markers",
            name=f"architectures ({len(agg)})",
            marker={"color": _OTHERS, "size": 7, "opacity": 0.75},
            error_y=None
            if ystd is None
            else {"type": "data", "array": ystd, "visible": True, "color": "#bbbbbb"},
            customdata=custom,
            hovertemplate=template,
            hoverlabel={"bgcolor": "white", "bordercolor": _OTHERS, "font": {"color": "black"}},
        )
    )
    staircase = ydir == "max"  # smaller x is better for every X_COLUMNS entry
    fig.add_trace(
        go.Scatter(
            x=tx[1],
            y=ty[1],
            mode="lines+markers",
            name="Pareto front",
            line={"color": _FRONT, "shape": "hv" if staircase else "linear"},
            marker={"color": _FRONT, "size": 9},
            hoverinfo="skip",
        )
    )
    for k, name in enumerate(preset_list):
        fig.add_trace(
            go.Scatter(
                x=tx[2 + k],
                y=ty[2 + k],
                mode="markers",
                name=name,
                marker={
                    "symbol": _PRESET_SYMBOLS[k % len(_PRESET_SYMBOLS)],
                    "size": 16,
                    "color": _PRESET_COLOURS[k % len(_PRESET_COLOURS)],
                    "line": {"color": "black", "width": 1},
                },
                hoverinfo="skip",
            )
        )

    def heading(x: str) -> str:
        return title or f"{label(y)} vs {label(x)}: Pareto front"

    buttons = []
    for x in xs:
        bx, by = traces_for(x)
        axis = _axis(x, bx[0])
        buttons.append(
            {
                "label": f"x: {label(x)}",
                "method": "update",
                "args": [
                    {"x": [_listed(v) for v in bx], "y": [_listed(v) for v in by]},
                    {
                        "xaxis.title.text": axis["title"]["text"],
                        "xaxis.type": axis["type"],
                        "xaxis.tickformat": axis["tickformat"],
                        "xaxis.ticksuffix": axis["ticksuffix"],
                        "xaxis.autorange": True,
                        "title.text": heading(x),
                    },
                ],
            }
        )
    fig.update_layout(
        title=_title(heading(x0)),
        xaxis=_axis(x0, tx[0]),
        yaxis=_axis(y),
        template="plotly_white",
        height=540,
        hovermode="closest",
        legend={"orientation": "h", "y": -0.18},
        margin={"t": 90},
        updatemenus=[_menu(buttons)] if len(xs) > 1 else [],
    )
    return fig


def _title(text: str) -> dict:
    return {"text": text, "x": 0.0, "xanchor": "left", "xref": "paper"}


def _menu(buttons: list[dict]) -> dict:
    """A dropdown above the plot's top right corner (the title stays at the left)."""
    return {
        "buttons": buttons,
        "direction": "down",
        "x": 1.0,
        "xanchor": "right",
        "y": 1.02,
        "yanchor": "bottom",
        "showactive": True,
    }


def objective_columns(df: pd.DataFrame, y: str = "accuracy") -> list[str]:
    """The objectives `parallel` shows: y, int8 accuracy and the measured size/cost columns."""
    cols = [y, "int8_accuracy", *X_COLUMNS]
    return [c for c in dict.fromkeys(cols) if c in df and pd.notna(_numbers(df[c])).any()]


def parallel(
    df: pd.DataFrame, columns: list[str] | None = None, title: str | None = None
) -> go.Figure:
    """Parallel coordinates: each architecture a line across its varied metaparameters
    and three or more objectives, every objective's axis with better upwards.

    Lines on the Pareto front of all the objectives together are red. Drag
    along an axis to keep the lines within a range (several axes combine).
    """
    ok = ok_rows(df)
    agg = architectures(ok)
    columns = columns or objective_columns(agg)
    if len(columns) < 3:
        raise ValueError(f"parallel: need 3 or more measured objectives, got {columns}")
    missing = [c for c in columns if c not in agg]
    if missing:
        raise ValueError(f"parallel: no column {missing[0]!r} in the table")
    directions = {c: DIRECTIONS.get(c, "min") for c in columns}
    on = pareto_mask(agg, directions).astype(float)
    dims = []
    for param in varied_metaparameters(agg):
        values = agg[param]
        if pd.api.types.is_numeric_dtype(values) and values.dtype != bool:
            dims.append({"label": param, "values": _numbers(values)})
        else:  # categories as integer positions, labelled with their names
            text = values.astype("string").fillna("NA")
            levels = sorted(text.unique())
            dims.append(
                {
                    "label": param,
                    "values": text.map({v: i for i, v in enumerate(levels)}).to_numpy(float),
                    "tickvals": list(range(len(levels))),
                    "ticktext": levels,
                }
            )
    for c in columns:
        v = _numbers(agg[c])
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        if lo == hi:
            lo, hi = lo - 0.5 * abs(lo or 1), hi + 0.5 * abs(hi or 1)
        arrow = "↑" if directions[c] == "max" else "↓"
        dims.append(
            {
                "label": f"{c} {arrow}",
                "values": v,
                # better upwards: a minimised column's axis runs from its max
                "range": [lo, hi] if directions[c] == "max" else [hi, lo],
                "tickformat": _axis(c)["tickformat"],
            }
        )
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": on,
                "colorscale": [[0.0, "#b0b0b0"], [1.0, _FRONT]],
                "cmin": 0.0,
                "cmax": 1.0,
            },
            labelangle=0,
            labelside="top",
        )
    )
    fig.update_layout(
        title=_title(
            title
            or f"{len(agg)} architectures over {len(columns)} objectives "
            f"({int(on.sum())} on their joint Pareto front, red); better is up"
        ),
        template="plotly_white",
        height=520,
        margin={"l": 80, "r": 80, "t": 110, "b": 90},
    )
    return fig


def edf_levels(table: pd.DataFrame, param: str) -> tuple[pd.DataFrame, str]:
    """The table and column to group an EDF by: quartiles when too many levels."""
    numeric = pd.api.types.is_numeric_dtype(table[param])
    if table[param].nunique() <= MAX_EDF_LEVELS or not numeric:
        return table, param
    binned = f"{param} quartile"
    values = pd.to_numeric(table[param]).astype("float64")
    quartiles = pd.qcut(values, 4, duplicates="drop").astype(str)
    return table.assign(**{binned: quartiles}), binned


def edf_by(
    df: pd.DataFrame, param: str | None = None, normalize_by: str | None = None
) -> tuple[pd.DataFrame, bool]:
    """`edf.edf` of the architectures by one metaparameter, and whether seeds were used.

    With one architecture per level (a one-metaparameter study) an EDF over
    architectures would be one step per level, so each level's seeds become
    its distribution instead (the bool says so). Too many numeric levels are
    cut into quartiles (`edf_levels`).
    """
    ok = ok_rows(df)
    return _edf_by(ok, aggregate_seeds(ok), param, normalize_by)


def _edf_by(
    ok: pd.DataFrame, agg: pd.DataFrame, param: str | None, normalize_by: str | None
) -> tuple[pd.DataFrame, bool]:
    if param is None:
        return edf(agg, normalize_by=normalize_by), False
    per_seed = bool(agg[param].value_counts().max() == 1 and len(ok) > len(agg))
    table, by = edf_levels(ok if per_seed else agg, param)
    return edf(table, by=by, normalize_by=normalize_by), per_seed


def edf_groups(df: pd.DataFrame) -> list[str]:
    """What the EDFs are split by: the varied metaparameters, and `space` if several."""
    return _groups(aggregate_seeds(ok_rows(df)))


def _groups(agg: pd.DataFrame) -> list[str]:
    groups = varied_metaparameters(agg)
    if "space" in agg and agg["space"].nunique() > 1:
        groups.append("space")
    return groups


def edfs(
    df: pd.DataFrame,
    by: list[str] | None = None,
    normalize_by: str | None = "params",
    title: str | None = None,
) -> go.Figure:
    """Error EDFs of the architectures: all of them, then by each of `by` (a dropdown).

    Each metaparameter comes twice: as is, and (with `normalize_by`) with its
    levels reweighted to the same distribution of that column, as in
    Radosavovic et al. (2019). `by` defaults to `edf_groups(df)`.
    """
    ok = _ok_measured(df)
    agg = aggregate_seeds(ok)
    by = _groups(agg) if by is None else by
    views: list[tuple[str, pd.DataFrame, str]] = [("all models", edf(agg), "error EDF")]
    for param in by:
        for norm in (None, normalize_by) if normalize_by else (None,):
            frame, per_seed = _edf_by(ok, agg, param, norm)
            name = f"by {param}" + (f", equal {norm}" if norm else "")
            heading = f"error EDF by {label(param)}"
            heading += f", normalised by {label(norm)}" if norm else ""
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
        title=_title(title or views[0][2]),
        xaxis={**_axis("error"), "title": {"text": label("error")}},
        yaxis={"title": {"text": label("fraction")}, "range": [0, 1.02]},
        template="plotly_white",
        height=480,
        margin={"t": 90},
        updatemenus=[_menu(buttons)] if len(views) > 1 else [],
    )
    return fig


def front_trial_ids(df: pd.DataFrame, x: str = "params", y: str = "accuracy") -> list[str]:
    """Trial ids (every seed) of the architectures on the (x, y) Pareto front."""
    agg = architectures(_ok_measured(df, y))
    on = pareto_mask(agg, {x: DIRECTIONS.get(x, "min"), y: DIRECTIONS.get(y, "max")})
    ids = agg.loc[on, "trials"].str.split(", ").explode()
    return [i for i in ids.dropna() if i]


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
    agg = architectures(_ok_measured(df, y))
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
                x=_numbers(line["epoch"]),
                y=_numbers(line[metrics[0]]),
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
            "label": label(m),
            "method": "update",
            "args": [
                {"y": [_listed(_numbers(g[m])) for _, g in groups]},
                {
                    "yaxis.title.text": label(m),
                    "yaxis.tickformat": ".0%" if m in plots.PERCENT else "",
                },
            ],
        }
        for m in metrics
    ]
    fig.update_layout(
        title=_title(title or f"learning curves of the front's trials ({y} vs {x})"),
        xaxis={"title": {"text": "epoch"}, "tick0": 1, "dtick": _epoch_step(part["epoch"])},
        yaxis={
            "title": {"text": label(metrics[0])},
            "tickformat": ".0%" if metrics[0] in plots.PERCENT else "",
        },
        template="plotly_white",
        height=480,
        margin={"t": 90},
        updatemenus=[_menu(buttons)] if len(metrics) > 1 else [],
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


# ---------------------------------------------------------------- choosing a point
def _meets(agg: pd.DataFrame, constraint: str | None) -> pd.DataFrame:
    if not constraint:
        return agg
    try:
        return agg.query(constraint)
    except Exception as e:  # a typo in a notebook cell: say which expression
        raise ValueError(f"constraint {constraint!r}: {e}") from None


def meeting(df: pd.DataFrame, constraint: str | None) -> pd.DataFrame:
    """The ok rows (every seed) of the architectures that meet `constraint`.

    `constraint` is a `DataFrame.query` expression over the seed-averaged
    columns of `architectures`, e.g. "bytes_int8 <= 100_000 and flops < 2e7";
    None or "" keeps every architecture.
    """
    ok = ok_rows(df)
    ids = _meets(architectures(ok), constraint)["trials"].str.split(", ").explode()
    return ok[ok["trial_id"].astype("string").isin(set(ids.dropna())).to_numpy(dtype=bool)]


def choose(
    df: pd.DataFrame, constraint: str | None = None, y: str = "accuracy"
) -> pd.Series | None:
    """The architecture with the best mean y among those meeting `constraint`.

    `constraint` is a `DataFrame.query` expression over the seed-averaged
    columns (`architectures`), e.g. "bytes_int8 <= 100_000". Returns that
    architecture's row with `trial_id` set to its best seed's trial (the one to
    export), or None when no architecture meets the constraint.
    """
    ok = _ok_measured(df, y)
    agg = architectures(ok)
    meets = _meets(agg, constraint)
    if meets.empty:
        return None
    ydir = DIRECTIONS.get(y, "max")
    values = pd.Series(_numbers(meets[y]), index=meets.index)
    best = meets.loc[values.idxmax() if ydir == "max" else values.idxmin()].copy()
    seeds = ok[ok["trial_id"].astype("string").isin(str(best["trials"]).split(", "))]
    seed_values = pd.Series(_numbers(seeds[y]), index=seeds.index)
    pick = seed_values.idxmax() if ydir == "max" else seed_values.idxmin()
    best["trial_id"] = str(seeds.loc[pick, "trial_id"])
    best[f"{y}_of_trial"] = float(seed_values[pick])
    return best


def export_command(results_path: str | Path, trial_id: str) -> str:
    """The `explorer export` command line for one trial of the sweep a table came from.

    `results_path` is the sweep folder or its table file (whose folder is
    then the sweep's); checkpoints live in `<sweep folder>/checkpoints/`.
    """
    path = Path(results_path)
    folder = path if path.is_dir() else path.parent
    checkpoint = os.path.join(str(folder), "checkpoints", trial_id)
    return f"explorer export {shlex.quote(checkpoint)} --out {shlex.quote(trial_id + '.onnx')}"


# ---------------------------------------------------------------- HTML
def plotly_js() -> str:
    """The installed plotly.js bundle (minified), to inline once in a page."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def to_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a `<div id=div_id>` and its script; plotly.js must be on the page."""
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        div_id=div_id,
        config=_CONFIG,
        validate=False,
    )


def figures(
    df: pd.DataFrame, curves: pd.DataFrame | None = None, y: str = "accuracy"
) -> dict[str, go.Figure]:
    """Every interactive figure of a table, by name: the front, the objectives
    (when three or more are measured), the EDFs and, given `curves`, the
    learning curves of the front's trials."""
    out = {"front": front(df, y=y)}
    agg = architectures(_ok_measured(df, y))
    if len(objective_columns(agg, y)) >= 3 and len(agg) > 1:
        out["objectives"] = parallel(df)
    out["edfs"] = edfs(df)
    if curves is not None and len(curves):
        out["learning_curves"] = learning_curves(curves, df, y=y)
    return out
