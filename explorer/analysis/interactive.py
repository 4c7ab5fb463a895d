"""Interactive figures of the front: each function takes a table, returns a Plotly Figure.

The counterparts of `plots` (whose matplotlib figures stay the PNGs of the
report) for looking around a front: `front` (accuracy against a size or cost
chosen from a dropdown, the Pareto points highlighted, presets marked, every
point's metaparameters and metrics on hover) and `parallel` (parallel
coordinates over three or more objectives). `interactive_curves` draws the
error EDFs and learning curves with this module's labels, axes, titles and
menus. Like `plots` they draw and do not compute: the architectures and their
columns come from `architectures`, fronts from `pareto.pareto_mask`. `to_html`
and `page` put figures on one page that needs no network (plotly.js inlined).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

import explorer.analysis.plots as plots
from explorer.analysis.architectures import (
    X_COLUMNS,
    architectures,
    numbers,
    objective_columns,
    ok_measured,
)
from explorer.analysis.pareto import ok_rows, pareto_mask, preset_names, varied_metaparameters
from explorer.results import DIRECTIONS, Direction

# Hover lines of a point after its metaparameters, when measured.
HOVER_METRICS: tuple[str, ...] = ("accuracy", "int8_accuracy", *X_COLUMNS, "latency_b128_ms")
# Columns `plots.LABELS` does not name (they may come with later measurements).
_LABELS = {
    "bytes_compressed": "model size (compressed)",
    "latency_ort_b1_ms": "latency, ONNX Runtime, batch 1 (ms)",
    "bytes_int8_onnx": "model size (int8 ONNX file)",
    "latency_ort_int8_b1_ms": "latency, int8 ONNX, ONNX Runtime, batch 1 (ms)",
    "int8_onnx_accuracy": "test top-1 accuracy, int8 ONNX file (%)",
    "flops": "FLOPs per image",
}
_FRONT = "#d62728"
_OTHERS = "#8c8c8c"
_PRESET_SYMBOLS = ("star", "diamond", "hexagram", "star-square")
_PRESET_COLOURS = ("gold", "#17becf", "#9467bd", "#2ca02c")


def axis_label(col: str) -> str:
    """Axis label of a column: `plots.axis_label`, with this module's additions."""
    return _LABELS.get(col) or plots.axis_label(col)


def listed(values: np.ndarray) -> list[float | None]:
    """Plain floats with None for NaN: what a dropdown's arguments carry."""
    return [None if math.isnan(v) else float(v) for v in values]


def axis_layout(col: str, values: np.ndarray | None = None) -> dict:
    """Title, scale and tick format of an axis showing `col`."""
    out: dict = {"title": {"text": axis_label(col)}, "type": "linear", "tickformat": ""}
    if values is not None and col not in plots.PERCENT and plots.decades(pd.Series(values)) > 1:
        out["type"] = "log"
    if col in plots.PERCENT:
        out["tickformat"] = ".0%"
    elif col.startswith("bytes") or col in ("params", "flops"):
        out["tickformat"] = "~s"
    out["ticksuffix"] = " B" if col.startswith("bytes") else ""
    return out


def title_layout(text: str) -> dict:
    """A title at the plot's top left."""
    return {"text": text, "x": 0.0, "xanchor": "left", "xref": "paper"}


def menu_layout(buttons: list[dict]) -> dict:
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
        if not m.startswith("bytes") and m not in ("params", "flops"):
            mean = [
                t if pd.isna(s) or s == 0 else f"{t} ± {_cell(m, s)}"
                for t, s in zip(mean, std, strict=True)
            ]
        columns.append(np.array(mean, dtype=object))
        name = axis_label(m).replace(" (%)", "")
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
    ok = ok_measured(df, y)
    agg = architectures(ok)
    xs = [c for c in (xs or X_COLUMNS) if c in agg and agg[c].notna().any()]
    if not xs:
        raise ValueError(f"front: none of {list(X_COLUMNS)} is measured in the table")
    ydir: Direction = DIRECTIONS.get(y, "max")
    yv = numbers(agg[y])
    ystd = np.nan_to_num(numbers(agg[f"{y}_std"])) if f"{y}_std" in agg else None
    presets = preset_names(agg)
    preset_list = sorted(set(presets.dropna()))
    custom, template = _hover(agg)

    def traces_for(x: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """x and y of each trace (all, front, presets...) when x is shown."""
        xv = numbers(agg[x])
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
        return title or f"{axis_label(y)} vs {axis_label(x)}: Pareto front"

    buttons = []
    for x in xs:
        bx, by = traces_for(x)
        axis = axis_layout(x, bx[0])
        buttons.append(
            {
                "label": f"x: {axis_label(x)}",
                "method": "update",
                "args": [
                    {"x": [listed(v) for v in bx], "y": [listed(v) for v in by]},
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
        title=title_layout(heading(x0)),
        xaxis=axis_layout(x0, tx[0]),
        yaxis=axis_layout(y),
        template="plotly_white",
        height=540,
        hovermode="closest",
        legend={"orientation": "h", "y": -0.18},
        margin={"t": 90},
        updatemenus=[menu_layout(buttons)] if len(xs) > 1 else [],
    )
    return fig


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
            dims.append({"label": param, "values": numbers(values)})
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
        v = numbers(agg[c])
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
                "tickformat": axis_layout(c)["tickformat"],
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
        title=title_layout(
            title
            or f"{len(agg)} architectures over {len(columns)} objectives "
            f"({int(on.sum())} on their joint Pareto front, red); better is up"
        ),
        template="plotly_white",
        height=520,
        margin={"l": 80, "r": 80, "t": 110, "b": 90},
    )
    return fig


_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


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
        config=_PLOTLY_CONFIG,
        validate=False,
    )


def page(title: str, body: str) -> str:
    """The report's HTML page around a body: its styles and plotly.js inline."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "table{border-collapse:collapse;font-size:90%;}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;}"
        "img{max-width:100%;}figure{margin:1.5em 0;}"
        ".hint{color:#555;font-size:90%;}"
    )
    # plotly.js once, inline: the page needs no network and no file beside it.
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{style}</style>\n"
        f'<script type="text/javascript">{plotly_js()}</script>\n</head>\n'
        f"<body>\n{body}\n</body></html>\n"
    )
