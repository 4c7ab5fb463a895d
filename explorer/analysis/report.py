"""A sweep's report: summary, Pareto table, figures, failures, as Markdown and HTML.

`write_report(explorer.results.load(path), out_dir)` writes `report.md` (which
links the PNG files next to it) and `report.html`, and returns the paths it
wrote. report.html is one self-contained page that opens from disk with no
network: the interactive figures of `interactive` and `interactive_curves`
(`interactive_figures`, each a `<div>` by `interactive.to_html`, plotly.js inlined
once by `interactive.page` from the installed plotly package) and the same PNGs embedded as
base64 data URIs.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure

import explorer.analysis.interactive as interactive
import explorer.analysis.interactive_curves as interactive_curves
import explorer.analysis.plots as plots
from explorer.analysis.architectures import architectures, edf_by, objective_columns, ok_measured
from explorer.analysis.edf import edf, sensitivity
from explorer.analysis.explored import explored
from explorer.analysis.pareto import (
    DEFAULT_OBJECTIVES,
    DIRECTIONS,
    Direction,
    aggregate_seeds,
    busy_seconds,
    ok_rows,
    pareto_front,
    trial_epochs,
    trial_seconds,
    varied_metaparameters,
)
from explorer.analysis.replay import full_curves, replay, size_column
from explorer.analysis.stats import comparisons
from explorer.results import ResultsError

REQUIRED = ("trial_id", "status", "accuracy", "params")
PARETO_X = ("params", "flops", "latency_b1_ms")  # accuracy against each, if measured
TOP_ROWS = 20  # Pareto rows shown in the table
EXTRA_COLUMNS = ("params", "bytes_f32", "flops", "accuracy")  # in the Pareto table
# Computed from the architecture, the same for every seed: no spread to show.
ANALYTIC = {"params", "bytes_f32", "bytes_int8", "flops"}
SENSITIVITY = ("accuracy", "bytes_f32")  # the SqueezeNet paper's Figure 3 panels
STATUSES = ("ok", "failed", "skipped", "stopped")  # order of the summary's counts
REPLAY_TITLE = "What early stopping would have saved (replayed on this sweep's curves)"
REPLAY_HINT = (
    "Each scheduler replayed over random arrival orders of the trials trained to the "
    "full budget (pareto starts them spread over their sizes; pareto_arrival is its "
    "stopping alone, grid_spread its start order alone); compute as a fraction of "
    "training all of them to the end"
)
# The replay's cost grows with trials x orders (MOASHA's ranking with the square of
# the trials at a rung): a report bounds it.
MAX_REPLAYED, REPLAY_ORDERS = 400, 10


def check_table(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows with an accuracy and a size; ResultsError when there are none."""
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise ResultsError(f"not a results table: missing columns {missing}")
    ok = ok_rows(df)
    ok = ok[(ok["accuracy"].notna() & ok["params"].notna()).to_numpy(dtype=bool)]
    if ok.empty:
        counts = ", ".join(f"{k} {v}" for k, v in _status_counts(df).items())
        raise ResultsError(
            f"no ok trials with an accuracy to report ({len(df)} rows: {counts or '-'})"
        )
    return ok


def _status_counts(df: pd.DataFrame) -> dict[str, int]:
    """Trials per status, in STATUSES order, then any other status."""
    counts = df["status"].astype("string").fillna("NA").value_counts().to_dict()
    order = [*STATUSES, *sorted(set(counts) - set(STATUSES))]
    return {s: counts[s] for s in order if s in counts}


def _uniques(df: pd.DataFrame, col: str) -> str:
    if col not in df:
        return "-"
    values = sorted(str(v) for v in df[col].dropna().unique())
    return ", ".join(values) or "-"


def summary(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(name, value) lines: trials by status, spaces, data, best accuracy, cost."""
    ok = check_table(df)
    agg = aggregate_seeds(ok)
    best = ok.loc[pd.to_numeric(ok["accuracy"]).astype("float64").idxmax()]
    varied = varied_metaparameters(ok)
    where = ", ".join(f"{c}={best[c]}" for c in varied)
    wall = trial_seconds(df) if "wall_s" in df else None
    seeds = agg["n_seeds"]
    return [
        (
            "trials",
            f"{len(df)} (" + ", ".join(f"{k} {v}" for k, v in _status_counts(df).items()) + ")",
        ),
        ("spaces", _uniques(df, "space")),
        ("datasets", _uniques(df, "dataset")),
        ("varied metaparameters", ", ".join(varied) or "none"),
        (
            "architectures",
            f"{len(agg)} ({seeds.min()}-{seeds.max()} seeds each)"
            if seeds.min() != seeds.max()
            else f"{len(agg)} ({seeds.min()} seeds each)",
        ),
        (
            "best accuracy",
            f"{best['accuracy']:.2%} ({best['trial_id']}" + (f"; {where}" if where else "") + ")",
        ),
        ("total trial-hours", "-" if wall is None else f"{wall.sum() / 3600:.2f}"),
        ("wall time training", _hours(busy_seconds(df))),
        ("trial-epochs", _trial_epochs(df)),
        ("devices", _uniques(df, "device")),
    ]


def _hours(seconds: float) -> str:
    return "-" if pd.isna(seconds) else f"{seconds / 3600:.2f} hours"


def _trial_epochs(df: pd.DataFrame) -> str:
    done, asked = trial_epochs(df)
    if not asked:
        return "-"
    return f"{done:,} of {asked:,} ({done / asked:.0%} of training every trial to the end)"


def _fmt(col: str, value: float) -> str:
    if pd.isna(value):
        return "-"
    if col in plots.PERCENT:
        return f"{100 * value:.2f}"
    if col in plots.BYTES:
        return plots.human_bytes(value)
    if col == "flops":
        return f"{value / 1e6:.4g}"
    if col == "params":
        return f"{value:,.0f}"
    return f"{value:.4g}"


def pareto_table(
    agg: pd.DataFrame, objectives: dict[str, Direction], top: int = TOP_ROWS
) -> pd.DataFrame:
    """Front of a seed-aggregated table as text cells, mean ± std where seeds > 1."""
    front = pareto_front(agg, objectives).head(top)
    keys = varied_metaparameters(agg) or [c for c in ("base",) if c in agg]
    extra = [c for c in EXTRA_COLUMNS if c in agg]
    metrics = list(dict.fromkeys([*objectives, *extra]))
    out = pd.DataFrame(index=front.index)
    for c in keys:
        out[c] = front[c].astype("string").fillna("-")
    for m in metrics:
        std = front.get(f"{m}_std", pd.Series(float("nan"), index=front.index))
        cells = []
        for mean, sd, n in zip(front[m], std, front["n_seeds"], strict=True):
            text = _fmt(m, mean)
            if n > 1 and m not in ANALYTIC and not pd.isna(sd) and not pd.isna(mean):
                text += f" ± {_fmt(m, sd)}"
            cells.append(text)
        out[plots.axis_label(m)] = cells
    out["seeds"] = front["n_seeds"].astype(int).astype(str)
    return out.reset_index(drop=True)


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (cells made one-line)."""

    def cell(v) -> str:
        text = "" if pd.isna(v) else str(v)
        return " ".join(text.split()).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Failed, skipped and stopped trials with their error."""
    cols = [c for c in ("trial_id", "space", "status", "error") if c in df]
    bad = df[(df["status"] != "ok").fillna(True).to_numpy(dtype=bool)]
    return bad[cols].reset_index(drop=True)


def figures(df: pd.DataFrame, objectives: dict[str, Direction] | None = None) -> dict[str, Figure]:
    """Every figure of the report, by file stem: Pareto plots, EDFs, sensitivities."""
    ok = check_table(df)
    agg = aggregate_seeds(ok)
    figs: dict[str, Figure] = {}
    for x in PARETO_X:
        if x in agg and agg[x].notna().any():
            objs = {x: DIRECTIONS.get(x, "min"), "accuracy": "max"}
            figs[f"pareto_{x}"] = plots.pareto(agg, x=x, y="accuracy", objectives=objs)
    if "bytes_compressed" in agg and agg["bytes_compressed"].notna().any():
        # after Deep Compression: the accuracy of the very bytes on disk
        objs = {"bytes_compressed": "min", "compressed_accuracy": "max"}
        figs["pareto_bytes_compressed"] = plots.pareto(
            agg, x="bytes_compressed", y="compressed_accuracy", objectives=objs
        )
    if objectives and len(objectives) == 2 and set(objectives) <= set(agg.columns):
        # The report's own objectives, a cost ('min') on x, if not drawn above.
        x, y = sorted(objectives, key=lambda c: objectives[c] != "min")
        drawn = f"pareto_{x}" in figs and y in ("accuracy", "compressed_accuracy")
        if not drawn:
            figs[f"pareto_{y}_{x}"] = plots.pareto(agg, x=x, y=y, objectives=objectives)
    groups = varied_metaparameters(agg)
    if "space" in agg and agg["space"].nunique() > 1:
        groups.append("space")
    figs["edf"] = plots.edf(edf(agg))
    for param in groups:
        # One architecture per level (a one-metaparameter study): each level's
        # seeds are its distribution (architectures.edf_by), and the title says so.
        for stem, norm in ((f"edf_{param}", None), (f"edf_{param}_by_params", "params")):
            frame, per_seed = edf_by(ok, param, normalize_by=norm)
            fig = plots.edf(frame)
            if per_seed:
                ax = fig.axes[0]
                ax.set_title(ax.get_title() + " (each seed a model)")
            figs[stem] = fig
    sens_metrics = [m for m in SENSITIVITY if m in ok and ok[m].notna().any()]
    for param in varied_metaparameters(ok):
        if pd.api.types.is_numeric_dtype(ok[param]) and ok[param].dtype != bool:
            figs[f"sensitivity_{param}"] = plots.sensitivity(
                sensitivity(ok, param, metrics=sens_metrics), param
            )
    return figs


def interactive_figures(
    df: pd.DataFrame, curves: pd.DataFrame | None = None, y: str = "accuracy"
) -> dict[str, go.Figure]:
    """Every interactive figure of a table, by name: the front, the objectives
    (when three or more are measured), the EDFs and, given `curves`, the
    learning curves of the front's trials."""
    out = {"front": interactive.front(df, y=y)}
    agg = architectures(ok_measured(df, y))
    if len(objective_columns(agg, y)) >= 3 and len(agg) > 1:
        out["objectives"] = interactive.parallel(df)
    out["edfs"] = interactive_curves.edfs(df)
    if curves is not None and len(curves):
        out["learning_curves"] = interactive_curves.learning_curves(curves, df, y=y)
    return out


def scheduler_replay(
    df: pd.DataFrame, curves: pd.DataFrame | None, objectives: dict[str, Direction]
) -> tuple[str, pd.DataFrame | None] | None:
    """What early stopping would have saved on this sweep: each scheduler replayed
    over the curves of its trials (analysis.replay). None without curves of at least
    4 trials and 2 epochs, or when a scheduler already stopped some (the survivors'
    curves alone would flatter every scheduler); a sentence and no table when the
    sweep is too large to replay here."""
    if curves is None or not len(curves) or "accuracy" not in objectives:
        return None
    if (df["status"] == "stopped").any():
        return None
    data = full_curves(df, curves, size_column(objectives))
    if len(data.accuracy) < 4 or data.budget < 2:
        return None
    if len(data.accuracy) > MAX_REPLAYED:
        return (
            f"not replayed here: {len(data.accuracy)} trials, more than {MAX_REPLAYED} "
            "(benchmarks/scheduler_replay.py replays any number)",
            None,
        )
    got = replay(data, orders=REPLAY_ORDERS)
    table = got.figures.reset_index()
    for col in ("compute_to_95pct", "front_recall", "total_compute"):
        table[col] = [f"{v:.2f}" for v in table[col]]
    table.columns = [
        "scheduler",
        "compute to reach 95% of the grid's hypervolume",
        "front recall",
        "compute spent",
    ]
    return got.describe(), table


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="-")


def write_report(
    df: pd.DataFrame,
    out_dir: str | Path,
    title: str | None = None,
    objectives: dict[str, Direction] | None = None,
    curves: pd.DataFrame | None = None,
    candidates: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html and the figures' PNGs; return them by file name.

    `curves` (one row per trial, seed and epoch) adds the learning curves of the
    front's trials to the interactive figures; `candidates` (the points a proposing
    method chose from, with their known sizes) adds where the search went.
    """
    objectives = objectives or DEFAULT_OBJECTIVES
    ok = check_table(df)
    missing = [c for c in objectives if c not in df]
    if missing:
        raise ResultsError(f"objectives name columns not in the table: {missing}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = title or f"Design-space report: {_uniques(df, 'space')}"
    written: dict[str, Path] = {}
    images: list[tuple[str, str, bytes]] = []  # (file name, caption, png)
    figs, went = figures(df, objectives), None
    if candidates is not None:
        went, figs["explored"] = explored(df, candidates, objectives)
    for stem, fig in figs.items():
        path = out / f"{stem}.png"
        caption = plots.title(fig)
        fig.savefig(path, dpi=110, metadata={"Title": caption, "Software": "squeeze-explorer"})
        images.append((path.name, caption, path.read_bytes()))
        written[path.name] = path
    lines = summary(df) + ([("search", went)] if went else [])
    table = pareto_table(aggregate_seeds(ok), objectives)
    bad = failures(df)
    objs = ", ".join(f"{c} ({d})" for c, d in objectives.items())

    md = [f"# {title}", "", "## Summary", ""]
    md += [f"- **{name}**: {value}" for name, value in lines]
    md += ["", f"## Pareto front ({objs}; mean ± std over seeds)", ""]
    md += [markdown_table(table), "", "## Figures", ""]
    md += ["Interactive versions (hover, zoom, choose the axes) are in report.html.", ""]
    md += [f"### {cap}\n\n![{cap}]({name})\n" for name, cap, _ in images]
    compared = comparisons(ok)
    if len(compared):
        md += ["## Comparisons (each level against the best; bootstrap CI, KS test)", ""]
        md += [markdown_table(compared), ""]
    replayed = scheduler_replay(df, curves, objectives)
    if replayed:
        md += [f"## {REPLAY_TITLE}", "", f"{REPLAY_HINT} ({replayed[0]}).", ""]
        md += [markdown_table(replayed[1]), ""] if replayed[1] is not None else []
    md += [f"## Failed, skipped and stopped trials ({len(bad)})", ""]
    md += [markdown_table(bad) if len(bad) else "None.", ""]
    written["report.md"] = out / "report.md"
    written["report.md"].write_text("\n".join(md), encoding="utf-8")

    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", "<h2>Summary</h2>", "<ul>"]
    body += [f"<li><b>{esc(n)}</b>: {esc(v)}</li>" for n, v in lines]
    body += ["</ul>", f"<h2>Pareto front ({esc(objs)}; mean ± std over seeds)</h2>"]
    body += [_html_table(table), "<h2>Explore (interactive)</h2>"]
    body += [
        '<p class="hint">Hover a point for its trials, metaparameters and metrics; '
        "drag to zoom, double-click to reset; the menus choose what is shown.</p>"
    ]
    for name, fig in interactive_figures(df, curves=curves).items():
        body.append(f'<figure class="interactive">{interactive.to_html(fig, f"plot-{name}")}')
        body.append("</figure>")
    if len(compared):
        body += ["<h2>Comparisons (each level against the best; bootstrap CI, KS test)</h2>"]
        body += [_html_table(compared)]
    body += ["<h2>Figures</h2>"]
    for name, cap, png in images:
        data = base64.b64encode(png).decode("ascii")
        body.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(name)}">'
            f"<figcaption>{esc(cap)}</figcaption></figure>"
        )
    if replayed:
        body += [
            f"<h2>{esc(REPLAY_TITLE)}</h2>",
            f"<p>{esc(REPLAY_HINT)} ({esc(replayed[0])}).</p>",
        ]
        body += [_html_table(replayed[1])] if replayed[1] is not None else []
    body += [f"<h2>Failed, skipped and stopped trials ({len(bad)})</h2>"]
    body += [_html_table(bad) if len(bad) else "<p>None.</p>"]
    written["report.html"] = out / "report.html"
    written["report.html"].write_text(interactive.page(title, "\n".join(body)), encoding="utf-8")
    return written
