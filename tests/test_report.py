"""analysis.report.write_report and the pareto_frontier notebook, end to end."""

import base64
import re
import sys
import time
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

from explorer import cli, results
from explorer.analysis import architectures, interactive, interactive_curves
from explorer.analysis.pareto import aggregate_seeds, pareto_mask, varied_metaparameters
from explorer.analysis.report import (
    figures,
    markdown_table,
    pareto_table,
    write_report,
)
from explorer.results import COLUMNS, ResultsError, conform

matplotlib.use("Agg")  # headless; the figures never touch pyplot anyway

NOTEBOOK = Path(__file__).resolve().parent.parent / "analysis/pareto_frontier.ipynb"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(i: int, sr: float, pct: float, seed: int, **extra) -> dict:
    params = int(700_000 * (0.5 + sr) * (0.5 + pct))
    out = dict(
        trial_id=f"grid-{i}-s{seed}",
        space="grid",
        point=i,
        seed=seed,
        status="ok",
        error="",
        base="squeezenet1_1",
        squeeze_ratio=sr,
        pct3x3=pct,
        base_e=128,
        incr_e=128,
        freq=2,
        bypass="none",
        dataset="fashion_mnist",
        recipe="{}",
        params=params,
        bytes_f32=4 * params,
        bytes_int8=params,
        flops=40 * params,
        accuracy=0.80 + 0.05 * sr + 0.02 * pct + 0.004 * seed,
        latency_b1_ms=1.0 + sr,
        wall_s=90.0,
        device="cpu",
    )
    out.update(extra)
    return out


@pytest.fixture
def grid() -> pd.DataFrame:
    """A 3 x 2 grid over SR and pct3x3, two seeds each, plus three bad trials."""
    rows = [
        row(i * 2 + j, sr, pct, seed)
        for i, sr in enumerate([0.125, 0.5, 1.0])
        for j, pct in enumerate([0.25, 0.75])
        for seed in range(2)
    ]
    rows += [
        dict(
            trial_id="grid-6-s0",
            space="grid",
            point=6,
            seed=0,
            status="failed",
            error="RESOURCE_EXHAUSTED: out of memory",
            squeeze_ratio=4.0,
        ),
        dict(
            trial_id="grid-7-s0",
            space="grid",
            point=7,
            seed=0,
            status="skipped",
            error="flops 9e9 over the budget | 1e9",
        ),
        dict(
            trial_id="grid-8-s0",
            space="grid",
            point=8,
            seed=0,
            status="stopped",
            error="",
            squeeze_ratio=0.25,
            accuracy=0.3,
            params=500_000,
        ),
    ]
    # Every column named, so conform sees NaN (not pd.NA) in the absent ones.
    return conform(pd.DataFrame(rows, columns=COLUMNS))


def test_write_report_files(grid, tmp_path):
    # with a curves table (one row per trial, seed and epoch): the front's learning curves
    curves = pd.DataFrame(
        dict(trial_id="grid-0-s0", seed=0, epoch=[1, 2], accuracy=[0.5, 0.6], train_loss=[1, 0.5])
    )
    out = write_report(grid, tmp_path / "report", curves=curves)
    assert out["report.md"] == tmp_path / "report/report.md"
    pngs = sorted(name for name in out if name.endswith(".png"))
    expected = {
        "pareto_params.png",
        "pareto_flops.png",
        "pareto_latency_b1_ms.png",
        "edf.png",
        "edf_squeeze_ratio.png",
        "edf_pct3x3_by_params.png",
        "sensitivity_squeeze_ratio.png",
        "sensitivity_pct3x3.png",
    }
    assert expected <= set(pngs)
    for name in pngs:
        data = out[name].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name

    md = out["report.md"].read_text(encoding="utf-8")
    for name in pngs:
        assert f"]({name})" in md  # the Markdown links every figure
    assert "- **trials**: 15 (ok 12, failed 1, skipped 1, stopped 1)" in md
    assert "- **architectures**: 6 (2 seeds each)" in md
    assert "- **total trial-hours**: 0.30" in md  # 12 x 90 s
    best = "- **best accuracy**: 86.90% (grid-5-s1; pct3x3=0.75, squeeze_ratio=1.0)"
    assert best in md
    # Failed, skipped and stopped trials are listed with their error.
    assert "| grid-6-s0 | grid | failed | RESOURCE_EXHAUSTED: out of memory |" in md
    assert "flops 9e9 over the budget \\| 1e9" in md
    assert "grid-8-s0" in md

    page = out["report.html"].read_text(encoding="utf-8")
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(pngs)  # self-contained: every figure embedded
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    assert "RESOURCE_EXHAUSTED" in page and "<table" in page
    html_only = page.replace(interactive.plotly_js(), "")  # the page, less plotly.js
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', html_only))
    assert_interactive_page(
        page, ["plot-front", "plot-objectives", "plot-edfs", "plot-learning_curves"]
    )
    assert "Interactive versions" in md and "plotly" not in md


def assert_interactive_page(page: str, plots: list[str]) -> None:
    """One page, offline: plotly.js inlined exactly once, no script from anywhere, every plot."""
    assert page.count("<html") == 1 and page.count("</html>") == 1
    assert page.count(interactive.plotly_js()) == 1
    assert page.count("plotly.js v") == 1  # the bundle's banner: inlined once
    html_only = page.replace(interactive.plotly_js(), "")
    assert not re.search(r"<script[^>]*\bsrc=", html_only)  # no CDN, no file beside it
    assert "<script" in html_only and "http" not in html_only.replace("http://www.w3.org", "")
    ids = re.findall(r'<div id="(plot-[a-z_]+)" class="plotly-graph-div"', page)
    assert ids == plots
    for div in ids:
        assert f'Plotly.newPlot(                        "{div}"' in page


def test_pareto_table_mean_and_std_over_seeds(grid):
    table = pareto_table(aggregate_seeds(grid), {"params": "min", "accuracy": "max"})
    acc = table["test top-1 accuracy (%)"]
    # Smallest model: SR 0.125, pct3x3 0.25, accuracies 0.81125 and 0.81525.
    assert table.iloc[0][["squeeze_ratio", "pct3x3"]].tolist() == ["0.125", "0.25"]
    assert acc.iloc[0] == "81.33 ± 0.28"
    assert table["parameters"].iloc[0] == "328,125"  # analytic: no spread shown
    # 4 of the 6 architectures are on the front, smallest first.
    assert table["squeeze_ratio"].tolist() == ["0.125", "0.5", "1.0", "1.0"]
    assert table["seeds"].tolist() == ["2"] * len(table)


def test_figures_by_space_and_string_metaparameters(grid):
    # Two spaces and a varied string metaparameter: EDFs by each, and no
    # sensitivity plot for the string one (it has no numeric axis).
    ok = grid[grid["status"] == "ok"].copy()
    ok["space"] = ["a"] * 6 + ["b"] * 6  # rows come in seed pairs
    ok["bypass"] = ["none", "none", "simple", "simple"] * 3
    figs = figures(ok)
    assert {"edf_space", "edf_space_by_params", "edf_bypass"} <= set(figs)
    assert "sensitivity_bypass" not in figs
    assert "sensitivity_squeeze_ratio" in figs
    assert "pareto_latency_b1_ms" in figs
    # The report's objectives get their own plot, cost on the x axis.
    figs = figures(ok, objectives={"accuracy": "max", "bytes_f32": "min"})
    ax = figs["pareto_accuracy_bytes_f32"].axes[0]
    assert ax.get_xlabel() == "model size (float32)"


def test_edf_by_level_uses_seeds_when_each_level_is_one_architecture(grid):
    # Two architectures per SR level: the EDF is over architectures (n=2 each).
    ax = figures(grid)["edf_squeeze_ratio"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"squeeze_ratio={sr} (n=2)" for sr in (0.125, 0.5, 1.0)
    ]
    assert "each seed" not in ax.get_title()
    # One architecture per level (as in a bypass study): each level's seeds
    # are its distribution, two steps per curve, and the title says so.
    one = grid[(grid["status"] == "ok") & (grid["pct3x3"] == 0.25)]
    for stem in ("edf_squeeze_ratio", "edf_squeeze_ratio_by_params"):
        ax = figures(one)[stem].axes[0]
        assert ax.get_title().endswith("(each seed a model)")
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [f"squeeze_ratio={sr} (n=2)" for sr in (0.125, 0.5, 1.0)]
        # Seeds differ in accuracy: each curve rises in two steps (plus its start).
        assert all(len(line.get_xdata()) == 3 for line in ax.get_lines())


def test_markdown_table_escapes_cells():
    frame = pd.DataFrame({"a": ["x|y", "two\nlines"], "b": [1, None]})
    assert markdown_table(frame).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | 1.0 |",
        "| two lines |  |",
    ]


def test_report_from_a_saved_table_as_the_cli_calls_it(grid, tmp_path):
    path = results.save(grid, tmp_path / "results.parquet")
    out = write_report(results.load(path), tmp_path / "out", title="Grid study")
    assert out["report.md"].read_text(encoding="utf-8").startswith("# Grid study\n")
    page = out["report.html"].read_text(encoding="utf-8")
    assert "<title>Grid study</title>" in page
    assert_interactive_page(page, ["plot-front", "plot-objectives", "plot-edfs"])  # no curves


def test_table_without_required_columns_is_rejected(tmp_path):
    df = pd.DataFrame({"trial_id": ["a"], "status": ["ok"], "accuracy": [0.5]})
    with pytest.raises(ResultsError, match="params"):
        write_report(df, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_table_without_ok_trials_is_rejected(grid, tmp_path):
    bad = grid[grid["status"] != "ok"]
    with pytest.raises(ResultsError, match="no ok trials.*failed 1"):
        write_report(bad, tmp_path)


def test_unknown_objective_is_rejected(grid, tmp_path):
    with pytest.raises(ResultsError, match="energy"):
        write_report(grid, tmp_path, objectives={"energy": "min", "accuracy": "max"})


# ---------------------------------------------------------------- interactive figures
def test_front_figure_points_hover_presets_and_dropdown(grid):
    fig = interactive.front(grid)
    agg = architectures.architectures(grid)
    assert len(agg) == 6
    everything, front = fig.data[0], fig.data[1]
    assert len(everything.x) == 6 and front.name == "Pareto front"
    on = pareto_mask(agg, {"params": "min", "accuracy": "max"})
    assert len(front.x) == on.sum() == 4
    assert list(front.x) == sorted(front.x) and front.line.shape == "hv"
    # error bars: the seeds' spread of the accuracy
    np.testing.assert_allclose(everything.error_y.array, agg["accuracy_std"])
    # hover: every architecture's trial ids, metaparameters and metrics
    custom = np.asarray(everything.customdata)
    assert list(custom[:, 0]) == [f"grid-{i}-s0, grid-{i}-s1" for i in range(6)]
    template = everything.hovertemplate
    for name in ("squeeze_ratio = ", "pct3x3 = ", "parameters: ", "model size (int8): ", "seeds: "):
        assert name in template
    column = {
        line.split("%{")[0]: int(re.search(r"customdata\[(\d+)\]", line)[1])
        for line in template.split("<br>")
    }
    assert custom[0][column["squeeze_ratio = "]] == "0.125"
    assert custom[0][column["test top-1 accuracy: "]] == "81.33% ± 0.28%"
    assert custom[0][column["parameters: "]] == "328,125"
    # no preset in this grid (squeezenet1_1 has pct3x3 0.5)
    assert [t.name for t in fig.data[2:]] == []
    # the dropdown: every measured size/cost column, each with its own front
    menu = fig.layout.updatemenus[0]
    labels = [b.label for b in menu.buttons]
    assert labels == [
        f"x: {interactive.axis_label(c)}"
        for c in ("params", "bytes_f32", "bytes_int8", "flops", "latency_b1_ms")
    ]
    latency = menu.buttons[-1].args
    on = pareto_mask(agg, {"latency_b1_ms": "min", "accuracy": "max"})
    assert latency[0]["x"][0] == list(agg["latency_b1_ms"])
    assert len(latency[0]["x"][1]) == on.sum()
    assert latency[1]["xaxis.title.text"] == "latency, batch 1 (ms)"


def test_front_marks_presets_and_offers_later_columns(grid):
    # Columns other work may add appear in the menu when measured; presets are stars.
    ok = grid[grid["status"] == "ok"].copy()
    ok["bytes_compressed"] = ok["bytes_int8"] // 2
    ok["latency_ort_b1_ms"] = np.nan
    ok.loc[ok["point"] == 0, "pct3x3"] = 0.5  # SR 0.125: squeezenet1_1's metaparameters
    fig = interactive.front(ok)
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert "x: model size (compressed)" in labels
    assert not any("ONNX" in label for label in labels)  # not measured: not offered
    stars = [t for t in fig.data if t.name == "squeezenet1_1"]
    assert len(stars) == 1 and len(stars[0].x) == 1 and stars[0].marker.symbol == "star"


def test_parallel_edfs_and_learning_curves(grid):
    par = interactive.parallel(grid)
    names = [d.label.split()[0] for d in par.data[0].dimensions]
    assert names[:2] == ["pct3x3", "squeeze_ratio"]  # the varied metaparameters first
    assert names[2:] == ["accuracy", "params", "bytes_f32", "bytes_int8", "flops", "latency_b1_ms"]
    size = par.data[0].dimensions[3]
    assert size.range[0] > size.range[1]  # a minimised objective: better is up
    with pytest.raises(ValueError, match="3 or more"):
        interactive.parallel(grid, columns=["accuracy", "params"])

    edfs = interactive_curves.edfs(grid)
    views = [b.label for b in edfs.layout.updatemenus[0].buttons]
    assert views == [
        "all models",
        "by pct3x3",
        "by pct3x3, equal params",
        "by squeeze_ratio",
        "by squeeze_ratio, equal params",
    ]
    shown = [t for t in edfs.data if t.visible]
    assert len(shown) == 1 and shown[0].y[-1] == 1.0
    by_sr = edfs.layout.updatemenus[0].buttons[3].args[0]["visible"]
    assert [t.name for t, v in zip(edfs.data, by_sr, strict=True) if v] == [
        f"squeeze_ratio={sr} (n=2)" for sr in (0.125, 0.5, 1.0)
    ]

    # curves: one row per trial, seed and epoch; only the front's trials are drawn
    curves = pd.DataFrame(
        [
            dict(
                trial_id=f"grid-{p}-s{s}",
                seed=s,
                epoch=e,
                accuracy=0.5 + 0.1 * e,
                train_loss=1.0 / (e + 1),
            )
            for p in range(6)
            for s in range(2)
            for e in range(1, 4)
        ]
    )
    fig = interactive_curves.learning_curves(curves, grid)
    front = set(architectures.front_trial_ids(grid))
    assert len(front) == 8  # 4 architectures x 2 seeds
    assert len(fig.data) == 8 and all(list(t.x) == [1, 2, 3] for t in fig.data)
    assert {t.hovertemplate.split("<br>")[0].split(",")[0] for t in fig.data} == front
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == [
        "test top-1 accuracy (%)",
        "training loss",
    ]
    with pytest.raises(ValueError, match="epoch"):
        interactive_curves.learning_curves(curves.drop(columns="epoch"), grid)


def test_choose_under_a_constraint_and_the_export_command(grid, tmp_path):
    # bytes_int8 = params here: three architectures of at most 600,000 bytes
    # (SR 0.125 with pct3x3 0.25 and 0.75, SR 0.5 with 0.25), the last the best
    choice = architectures.choose(grid, "bytes_int8 <= 600_000")
    assert (choice["squeeze_ratio"], choice["pct3x3"]) == (0.5, 0.25)
    assert choice["bytes_int8"] == 525_000
    assert choice["trial_id"] == "grid-2-s1"  # the better of its two seeds
    assert choice["accuracy_of_trial"] == pytest.approx(0.80 + 0.025 + 0.005 + 0.004)
    assert architectures.choose(grid, "bytes_int8 <= 1000") is None
    assert architectures.choose(grid)["trial_id"] == "grid-5-s1"  # no constraint: the best
    with pytest.raises(ValueError, match="bytes_int"):
        architectures.choose(grid, "bytes_int <= 3")
    kept = architectures.meeting(grid, "bytes_int8 <= 600_000")
    assert sorted(kept["trial_id"]) == [f"grid-{p}-s{s}" for p in (0, 1, 2) for s in (0, 1)]
    sweep = tmp_path / "runs" / "my sweep"
    sweep.mkdir(parents=True)
    assert architectures.export_command(sweep, "grid-1-s1") == (
        f"explorer export '{sweep}' --trial grid-1-s1 --out grid-1-s1.onnx"
    )
    assert architectures.export_command(sweep / "results.parquet", "t") == (
        f"explorer export '{sweep}' --trial t --out t.onnx"
    )


def synthetic(n: int = 1000, seeds: int = 2) -> pd.DataFrame:
    """n rows: n / seeds random architectures over four metaparameters."""
    rng = np.random.default_rng(0)
    k = n // seeds
    sr = rng.choice([0.125, 0.25, 0.375, 0.5, 0.75, 1.0], k)
    pct = rng.uniform(0.1, 0.9, k).round(3)
    base_e = rng.choice([64, 96, 128, 160], k)
    bypass = rng.choice(["none", "simple", "complex"], k)
    rows = []
    for i in range(k):
        params = int(base_e[i] * 5000 * (0.5 + sr[i]) * (0.5 + pct[i]))
        for s in range(seeds):
            accuracy = 0.6 + 0.05 * np.log(params / 1e5) + rng.normal(0, 0.01)
            rows.append(
                row(
                    i,
                    sr[i],
                    pct[i],
                    s,
                    trial_id=f"big-p{i:04d}-s{s}",
                    space="big",
                    base_e=int(base_e[i]),
                    bypass=bypass[i],
                    params=params,
                    bytes_f32=4 * params,
                    bytes_int8=params + 4000,
                    flops=40 * params,
                    accuracy=float(np.clip(accuracy, 0, 1)),
                    latency_b1_ms=params / 1e6 + rng.uniform(0, 0.2),
                )
            )
    return conform(pd.DataFrame(rows, columns=COLUMNS))


def test_report_of_a_thousand_rows_is_one_page_in_seconds(tmp_path):
    df = synthetic(1000)
    assert len(df) == 1000
    start = time.perf_counter()
    out = write_report(df, tmp_path)
    seconds = time.perf_counter() - start
    assert seconds < 30, f"report of 1,000 rows took {seconds:.1f} s"
    assert [p.name for p in tmp_path.glob("*.html")] == ["report.html"]
    page = out["report.html"].read_text(encoding="utf-8")
    assert_interactive_page(page, ["plot-front", "plot-objectives", "plot-edfs"])
    # every architecture's trial ids travel to the page for its hover
    n = len(architectures.architectures(df))
    assert all(f"big-p{i:04d}-s0" in page for i in range(n))
    assert len(page) < 15_000_000  # plotly.js is about 4.8 MB of it


def run_notebook(extra: str = "", constraint: str | None = None) -> tuple[str, int, list[dict]]:
    """Execute the notebook (plus an `extra` last cell, and under `constraint`
    instead of its own CONSTRAINT when given): its printed text, its image count
    and the Plotly figures it showed (their JSON)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    if constraint is not None:
        cells = [c for c in nb.cells if c.source.startswith("CONSTRAINT = ")]
        assert len(cells) == 1
        _, _, rest = cells[0].source.partition("\n")
        cells[0].source = f"CONSTRAINT = {constraint!r}\n{rest}"
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    # jupyter_client starts the "python3" kernel with this interpreter
    # (sys.executable), so the kernel sees the venv and the project.
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    plotly = "application/vnd.plotly.v1+json"  # what fig.show() displays in a kernel
    return text, images, [o["data"][plotly] for o in outputs if plotly in o.get("data", {})]


def titles(figures: list[dict]) -> list[str]:
    return [f["layout"]["title"]["text"] for f in figures]


def test_notebook_runs_on_a_results_table(grid, tmp_path, monkeypatch):
    path = results.save(grid, tmp_path / "results.parquet")
    # the sweep's learning curves beside the table, as `explorer sweep` writes them
    for p in range(6):
        for s in range(2):
            points = [dict(seed=s, epoch=e, accuracy=0.5 + 0.1 * e) for e in (1, 2)]
            results.write_curve(tmp_path, f"grid-{p}-s{s}", points)
    monkeypatch.setenv("EXPLORER_RESULTS", str(path))
    # the grid's models are all over the notebook's 100 KB: 600 KB keeps three
    text, images, figures = run_notebook(
        extra="import sys; print(sys.executable)", constraint="bytes_int8 <= 600_000"
    )
    assert f"{path}: 15 trials" in text
    assert "4 of 6 architectures on the front" in text
    assert text.strip().splitlines()[-1] == sys.executable
    assert images >= 3 + 1 + 2 * 2 + 2  # Pareto, EDFs, sensitivities
    # interactive: the front, the objectives, the EDFs, the front's learning curves
    # (4 architectures x 2 seeds), the front under the constraint
    assert titles(figures) == [
        "test top-1 accuracy (%) vs parameters: Pareto front",
        "6 architectures over 6 objectives (6 on their joint Pareto front, red); better is up",
        "error EDF",
        "learning curves of the front's trials (accuracy vs params)",
        "Pareto front under bytes_int8 <= 600_000",
    ]
    assert len(figures[3]["data"]) == 8
    assert "3 of 6 architectures meet 'bytes_int8 <= 600_000'" in text
    assert "chosen: grid-2-s1 (pct3x3=0.25, squeeze_ratio=0.5;" in text
    command = f"explorer export {tmp_path} --trial grid-2-s1 --out grid-2-s1.onnx"
    assert f"export it with:\n{command}\n" in text


# ---------------------------------------------------------------- a real sweep
# analysis/example_results.parquet is the table `make demo` wrote (`explorer
# sweep spaces/quickstart.yaml --output runs/quickstart`), its checkpoints named
# relative to that folder: 8 real networks x 2 seeds; example_curves.parquet is
# that sweep's curves.parquet.
EXAMPLE = NOTEBOOK.parent / "example_results.parquet"
EXAMPLE_CURVES = NOTEBOOK.parent / "example_curves.parquet"


def png_title(path: Path) -> str:
    with Image.open(path) as img:
        return img.text.get("Title", "")


def test_example_table_is_the_quickstart_sweeps():
    df = results.load(EXAMPLE)
    assert df["space"].eq("quickstart").all() and df["status"].eq("ok").all()
    assert df["trial_id"].str.fullmatch(r"quickstart-p\d{4}-s\d").all()
    # no string names the machine it ran on: checkpoints are relative
    for col in df.columns:
        if pd.api.types.is_string_dtype(df[col]):
            assert not df[col].dropna().astype(str).str.startswith("/").any(), col
    assert df["checkpoint"].str.startswith("tune/").all()
    curves = results.load_curves(EXAMPLE_CURVES)
    assert set(curves["trial_id"]) == set(df["trial_id"])


def test_explorer_report_on_a_real_sweep_table(tmp_path, capsys):
    df = results.load(EXAMPLE)
    assert df["space"].eq("quickstart").all() and df["status"].eq("ok").all()
    assert cli.main(["report", str(EXAMPLE), "--out", str(tmp_path)]) == 0
    assert f"{tmp_path / 'report.md'}" in capsys.readouterr().out

    agg = aggregate_seeds(df)
    varied = varied_metaparameters(agg)
    assert sorted(varied) == ["base_e", "pct3x3", "squeeze_ratio"]
    pngs = {p.name: p for p in tmp_path.glob("*.png")}
    expected = {"pareto_params.png", "pareto_flops.png", "pareto_latency_b1_ms.png", "edf.png"}
    for param in varied:
        expected |= {f"edf_{param}.png", f"edf_{param}_by_params.png"}
        expected |= {f"sensitivity_{param}.png"}
    assert expected <= set(pngs)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for name, path in pngs.items():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
        title = png_title(path)
        assert title and f"### {title}\n\n![{title}]({name})" in md, name
    assert "accuracy" in png_title(pngs["pareto_params.png"]).lower()
    # every ok trial at each of the two levels of SR
    per_level = len(df) // df["squeeze_ratio"].nunique()
    assert png_title(pngs["sensitivity_squeeze_ratio.png"]).startswith(
        f"sensitivity to squeeze ratio (SR) (mean ± std, n={per_level} per level)"
    )
    # Eight architectures of two seeds, from one space, all ok.
    n = len(df)
    assert f"- **trials**: {n} (ok {n})" in md
    seeds = df["seed"].nunique()
    assert (len(agg), seeds) == (8, 2)
    assert f"- **architectures**: {len(agg)} ({seeds} seeds each)" in md
    # One seed per trial: each trial's wall time is its own.
    assert df["seeds_in_program"].eq(1).all()
    hours = df["wall_s"].sum() / 3600
    assert f"- **total trial-hours**: {hours:.2f}\n" in md


def test_notebook_runs_on_the_shipped_real_table(monkeypatch):
    monkeypatch.delenv("EXPLORER_RESULTS", raising=False)
    text, images, figures = run_notebook()
    df = results.load(EXAMPLE)
    assert f"example_results.parquet: {len(df)} trials" in text
    agg = architectures.architectures(df)
    on_front = pareto_mask(agg, {"params": "min", "accuracy": "max"})
    assert f"{int(on_front.sum())} of {len(agg)} architectures on the front" in text
    # 3 Pareto plots, the EDF, 2 EDFs and 1 sensitivity plot per varied metaparameter
    assert images == 3 + 1 + 3 * len(varied_metaparameters(agg))
    # the front, the objectives, the EDFs, the front's learning curves (from
    # example_curves.parquet), the front under the constraint
    columns = architectures.objective_columns(agg)
    joint = pareto_mask(agg, {c: results.DIRECTIONS.get(c, "min") for c in columns})
    assert titles(figures) == [
        "test top-1 accuracy (%) vs parameters: Pareto front",
        f"{len(agg)} architectures over {len(columns)} objectives "
        f"({int(joint.sum())} on their joint Pareto front, red); better is up",
        "error EDF",
        "learning curves of the front's trials (accuracy vs params)",
        "Pareto front under bytes_int8 <= 100_000",
    ]
    assert "no learning curves beside this table" not in text
    # a line per trial (one seed each) of the front's architectures
    assert len(figures[3]["data"]) == sum(len(t.split(", ")) for t in agg[on_front]["trials"])
    front = figures[0]["data"]
    assert len(front[0]["customdata"]) == len(agg)  # one hover per architecture
    assert "quickstart-p0000-s0, quickstart-p0000-s1" in str(front[0]["customdata"])
    # under 100 KB of int8 weights: some of the architectures, the best of them
    # (SR 0.25, e 32, pct3x3 0.25) and its best seed
    kept = agg[agg["bytes_int8"] <= 100_000]
    assert 1 < len(kept) < len(agg)
    assert f"{len(kept)} of {len(agg)} architectures meet 'bytes_int8 <= 100_000'" in text
    assert (
        "chosen: quickstart-p0004-s0 (base_e=32, pct3x3=0.25, squeeze_ratio=0.25; "
        "mean accuracy 56.29%, this seed 59.40%; 67,440 bytes int8)" in text
    )
    assert "explorer export . --trial quickstart-p0004-s0 --out quickstart-p0004-s0.onnx" in text


def test_report_replays_early_stopping_on_the_sweeps_own_curves(grid, tmp_path):
    from explorer.analysis.report import REPLAY_TITLE

    ok = grid[grid["status"] == "ok"]
    curves = pd.DataFrame(  # 9 epochs each, rising towards the row's accuracy
        [
            {"trial_id": r["trial_id"], "seed": r["seed"], "epoch": e,
             "accuracy": r["accuracy"] * (1 - 0.5 * np.exp(-e))}
            for _, r in ok.iterrows()
            for e in range(1, 10)
        ]
    )  # fmt: skip
    out = write_report(ok, tmp_path / "replayed", curves=curves)
    md = out["report.md"].read_text(encoding="utf-8")
    assert f"## {REPLAY_TITLE}" in md and f"({len(ok)} trials x 9 epochs" in md
    for name in ("grid", "asha", "moasha", "moasha_own_rank", "pareto"):
        assert f"\n| {name} | " in md
    assert "| grid | " in md and "| 1.00 | 1.00 |" in md  # the grid trains all of it
    page = out["report.html"].read_text(encoding="utf-8")
    assert REPLAY_TITLE.replace("'", "&#x27;") in page
    # a sweep in which a scheduler stopped trials: its survivors' curves would flatter
    stopped = write_report(grid, tmp_path / "stopped", curves=curves)
    assert REPLAY_TITLE not in stopped["report.md"].read_text(encoding="utf-8")


def test_explorer_report_judges_a_sweep_by_its_own_objectives(grid, tmp_path, capsys):
    results.save(grid, tmp_path / "results.parquet")
    space = (Path(__file__).resolve().parent.parent / "spaces/quickstart.yaml").read_text()
    space = space.replace(
        "objectives: {accuracy: max, params: min}", "objectives: {accuracy: max, bytes_int8: min}"
    )
    (tmp_path / "space.yaml").write_text(space)
    assert cli.main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report/report.md").read_text(encoding="utf-8")
    assert "## Pareto front (accuracy (max), bytes_int8 (min);" in md
    # --objective still decides when given
    assert (
        cli.main(
            ["report", str(tmp_path), "--objective", "accuracy:max", "--objective", "flops:min"]
        )
        == 0
    )
    md = (tmp_path / "report/report.md").read_text(encoding="utf-8")
    assert "## Pareto front (accuracy (max), flops (min);" in md
