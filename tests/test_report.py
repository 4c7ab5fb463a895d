"""analysis.report.write_report and the pareto_frontier notebook, end to end."""

import base64
import re
import sys
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

from explorer import cli, results
from explorer.analysis.pareto import aggregate_seeds
from explorer.analysis.report import figures, markdown_table, pareto_table, write_report
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
    out = write_report(grid, tmp_path / "report")
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
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(pngs)  # self-contained: every figure embedded
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    assert "RESOURCE_EXHAUSTED" in page and "<table" in page
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))


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
    assert "<title>Grid study</title>" in out["report.html"].read_text(encoding="utf-8")


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


def run_notebook(extra: str = "") -> tuple[str, int]:
    """Execute the notebook (plus an `extra` last cell): its printed text, its image count."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
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
    return text, sum("image/png" in o.get("data", {}) for o in outputs)


def test_notebook_runs_on_a_results_table(grid, tmp_path, monkeypatch):
    path = results.save(grid, tmp_path / "results.parquet")
    monkeypatch.setenv("EXPLORER_RESULTS", str(path))
    text, images = run_notebook(extra="import sys; print(sys.executable)")
    assert f"{path}: 15 trials" in text
    assert "4 of 6 architectures on the front" in text
    assert text.strip().splitlines()[-1] == sys.executable
    assert images >= 3 + 1 + 2 * 2 + 2  # Pareto, EDFs, sensitivities


# ---------------------------------------------------------------- a real sweep
# analysis/example_results.parquet is the table `explorer sweep
# spaces/squeeze_ratio.yaml` wrote (experiments/squeezenet_dse): real trials.
EXAMPLE = NOTEBOOK.parent / "example_results.parquet"


def png_title(path: Path) -> str:
    with Image.open(path) as img:
        return img.text.get("Title", "")


def test_explorer_report_on_a_real_sweep_table(tmp_path, capsys):
    df = results.load(EXAMPLE)
    assert df["space"].eq("squeeze_ratio").all() and df["status"].eq("ok").all()
    assert cli.main(["report", str(EXAMPLE), "--out", str(tmp_path)]) == 0
    assert f"{tmp_path / 'report.md'}" in capsys.readouterr().out

    pngs = {p.name: p for p in tmp_path.glob("*.png")}
    expected = {"pareto_params.png", "pareto_flops.png", "pareto_latency_b1_ms.png"}
    expected |= {"edf.png", "edf_squeeze_ratio.png", "edf_squeeze_ratio_by_params.png"}
    expected |= {"sensitivity_squeeze_ratio.png"}
    assert expected <= set(pngs)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    for name, path in pngs.items():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
        title = png_title(path)
        assert title and f"### {title}\n\n![{title}]({name})" in md, name
    assert "accuracy" in png_title(pngs["pareto_params.png"]).lower()
    assert png_title(pngs["sensitivity_squeeze_ratio.png"]).startswith(
        "sensitivity to squeeze ratio (SR) (mean ± std, n=3 per level)"
    )
    # Eight architectures of three seeds, from one space, all ok.
    n = len(df)
    assert f"- **trials**: {n} (ok {n})" in md
    assert "- **architectures**: 8 (3 seeds each)" in md
    # Three vmapped seeds share a program, and its wall time, per point.
    assert df["seeds_in_program"].eq(3).all()
    hours = df.drop_duplicates("point")["wall_s"].sum() / 3600
    assert f"- **total trial-hours**: {hours:.2f}\n" in md


def test_notebook_runs_on_the_shipped_real_table(monkeypatch):
    monkeypatch.delenv("EXPLORER_RESULTS", raising=False)
    text, images = run_notebook()
    assert f"example_results.parquet: {len(results.load(EXAMPLE))} trials" in text
    assert "architectures on the front" in text
    # 3 Pareto plots, the EDF, 2 EDFs by squeeze ratio, 1 sensitivity plot.
    assert images == 3 + 1 + 2 + 1
