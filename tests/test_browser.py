"""The report's interactive figures, opened from disk in a real browser (headless Chromium).

The report of the real example sweep (analysis/example_results.parquet, the
table `make demo` wrote: 8 architectures x 2 seeds) is written once; a
test-only copy of its report.html gets two small scripts: one first in <head>
that records JavaScript errors (window.onerror, rejected promises,
console.error), one last in <body> that, once the page has loaded,
reads what Plotly rendered, hovers every point of the front, picks every entry
of the dropdowns by clicking them, and writes all it saw as JSON into the DOM.
`chromium --headless --dump-dom` prints that DOM; the tests read it.

Skipped only where no Chromium is on PATH (`make browser` installs Debian's).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from explorer import results
from explorer.analysis import interactive
from explorer.analysis.architectures import architectures
from explorer.analysis.interactive import page as report_page
from explorer.analysis.interactive import to_html
from explorer.analysis.pareto import pareto_mask, varied_metaparameters
from explorer.analysis.report import interactive_figures, write_report

EXAMPLE = Path(__file__).resolve().parent.parent / "analysis/example_results.parquet"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (`make browser` installs Debian's package)"
)

# First in <head>, before plotly.js: every error the page raises is kept.
RECORD_ERRORS = """<script>
window.__errors = [];
window.addEventListener("error", e => __errors.push("error: " + e.message));
window.addEventListener("unhandledrejection", e => __errors.push("rejection: " + e.reason));
(function () {
  const original = console.error;
  console.error = function (...args) {
    __errors.push("console.error: " + args.join(" "));
    original.apply(console, args);
  };
})();
</script>"""

# Last in <body>: what each figure rendered, as a real user would meet it.
PROBE = """<script>
const pause = ms => new Promise(r => setTimeout(r, ms));
const click = el => el.dispatchEvent(new MouseEvent("click", {bubbles: true}));
const texts = (root, sel) => [...root.querySelectorAll(sel)].map(e => e.textContent);
function rendered(gd) {
  return {
    main_svg: gd.querySelectorAll("svg.main-svg").length,
    title: texts(gd, ".gtitle").join(""),
    xtitle: texts(gd, ".xtitle").join(""),
    // scatter markers drawn, per trace, and the lines drawn
    points: [...gd.querySelectorAll("g.trace.scatter")].map(
      g => g.querySelectorAll("path.point").length),
    lines: gd.querySelectorAll("g.trace.scatter path.js-line").length,
    error_bars: gd.querySelectorAll("g.errorbar").length,
    parcoords_axes: texts(gd, ".parcoords .axis-title"),
    parcoords_canvases: gd.querySelectorAll(".gl-container canvas").length,
    menu: texts(gd, ".updatemenu-header .updatemenu-item-text"),
  };
}
async function choose(gd) {
  // Open the dropdown and click each of its entries in turn, as a user would.
  const seen = [];
  const header = gd.querySelector(".updatemenu-header");
  if (!header) return seen;
  const count = gd.layout.updatemenus[0].buttons.length;
  for (let i = 0; i < count; i++) {
    click(header);
    await pause(100);
    const buttons = gd.querySelectorAll(".updatemenu-dropdown-button");
    click(buttons[i]);
    await pause(300);
    seen.push({entry: buttons[i].textContent, ...rendered(gd)});
  }
  return seen;
}
async function hoverAll(gd) {
  // Plotly's own hover for every point of the first trace: the label it draws.
  const labels = [];
  for (let i = 0; i < gd.calcdata[0].length; i++) {
    Plotly.Fx.hover(gd, [{curveNumber: 0, pointNumber: i}]);
    await pause(120);
    labels.push(texts(gd, ".hoverlayer .hovertext").join(" | "));
  }
  Plotly.Fx.unhover(gd);
  return labels;
}
window.addEventListener("load", async () => {
  const out = {errors: __errors, plots: {}, hover: [], menus: {}};
  try {
    await pause(500);
    for (const gd of document.querySelectorAll(".plotly-graph-div")) {
      out.plots[gd.id] = rendered(gd);
    }
    const front = document.getElementById("plot-front");
    if (window.__interact && front) out.hover = await hoverAll(front);
    for (const gd of document.querySelectorAll(".plotly-graph-div")) {
      if (window.__interact) out.menus[gd.id] = await choose(gd);
    }
  } catch (e) {
    out.errors.push("probe: " + e + " " + e.stack);
  }
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(profile: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile; its stderr carries the page's console messages."""
    cmd = [
        BROWSER,
        "--headless",
        f"--user-data-dir={profile}",
        "--no-sandbox",
        "--disable-gpu",
        # WebGL (the parallel coordinates) in software; the page is our own file
        "--enable-unsafe-swiftshader",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def table():
    return results.load(EXAMPLE)


@pytest.fixture(scope="module")
def report(table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return write_report(table, out)["report.html"]


def probe(page: str, folder: Path, interact: bool = True) -> dict:
    """Open a probed copy of a page from disk: what the probe wrote, and stderr.

    `interact`: hover every point of the front and click every menu entry too.
    """
    flag = f"<script>window.__interact = {'true' if interact else 'false'};</script>"
    probed = page.replace("<head>", "<head>" + flag + RECORD_ERRORS, 1)
    probed = probed.replace("</body>", PROBE + "</body>", 1)
    copy = folder / "report.html"
    copy.write_text(probed, encoding="utf-8")
    (folder / "profile").mkdir()
    # Virtual time runs the probe's pauses at once; the DOM is dumped after.
    run = chromium(folder / "profile", "--virtual-time-budget=60000", "--dump-dom", copy.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the probe wrote nothing (exit {run.returncode}): {run.stderr[-2000:]}"
    out = json.loads(html.unescape(found.group(1)))
    out["stderr"] = run.stderr
    return out


@pytest.fixture(scope="module")
def seen(report, tmp_path_factory) -> dict:
    return probe(report.read_text(encoding="utf-8"), tmp_path_factory.mktemp("probe"))


def test_page_has_no_javascript_error(seen):
    assert seen["errors"] == []
    # Chromium's own log of the page's console says the same
    console = [line for line in seen["stderr"].splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line], console


def test_every_figure_rendered_as_svg(seen, report):
    ids = re.findall(r'<div id="(plot-[a-z_]+)" class="plotly-graph-div"', report.read_text())
    assert ids == ["plot-front", "plot-objectives", "plot-edfs"]
    assert set(seen["plots"]) == set(ids)
    for name, plot in seen["plots"].items():
        assert plot["main_svg"] >= 1, name
        assert plot["title"], name


def test_front_draws_every_architecture_and_the_front(seen, table):
    agg = architectures(table)
    on_front = pareto_mask(agg, {"params": "min", "accuracy": "max"})
    front = seen["plots"]["plot-front"]
    # every architecture a marker, the front's drawn again over them, joined by a line
    assert front["points"][:2] == [len(agg), int(on_front.sum())]
    assert front["lines"] == 1 and front["error_bars"] >= 1
    assert front["xtitle"] == "parameters"
    assert front["menu"] == ["x: parameters"]


def test_hover_shows_each_points_trials_metaparameters_and_metrics(seen, table):
    agg = architectures(table)
    labels = seen["hover"]
    assert len(labels) == len(agg)
    for label, (_, arch) in zip(labels, agg.iterrows(), strict=True):
        for trial_id in arch["trials"].split(", "):
            assert trial_id in label
        for param in varied_metaparameters(agg):
            assert f"{param} = {arch[param]:.4g}" in label
        assert f"{100 * arch['accuracy']:.2f}%" in label
        assert f"parameters: {arch['params']:,.0f}" in label
    every_id = {t for label in labels for t in re.findall(r"quickstart-p\d+-s\d", label)}
    assert every_id == set(table["trial_id"])


def test_dropdown_changes_the_x_axis_and_the_front(seen, table):
    agg = architectures(table)
    entries = seen["menus"]["plot-front"]
    xs = ["params", "bytes_f32", "bytes_int8", "flops", "latency_b1_ms", "latency_ort_b1_ms"]
    assert [e["entry"] for e in entries] == [f"x: {interactive.axis_label(x)}" for x in xs]
    for x, entry in zip(xs, entries, strict=True):
        on_front = pareto_mask(agg, {x: "min", "accuracy": "max"})
        assert entry["xtitle"] == interactive.axis_label(x)
        assert entry["points"][:2] == [len(agg), int(on_front.sum())], x
    # latency is not monotone in size here: its front is not the size front
    latency = entries[xs.index("latency_b1_ms")]
    assert latency["points"][1] < entries[0]["points"][1]


def test_parallel_coordinates_show_every_objective(seen, table):
    par = seen["plots"]["plot-objectives"]
    assert par["parcoords_canvases"] >= 1
    axes = [a.split()[0] for a in par["parcoords_axes"]]
    # the varied metaparameters first, then every objective
    assert axes == [
        *varied_metaparameters(architectures(table)),
        "accuracy",
        "int8_accuracy",
        "params",
        "bytes_f32",
        "bytes_int8",
        "flops",
        "latency_b1_ms",
        "latency_ort_b1_ms",
    ]


def test_edf_dropdown_shows_one_curve_per_level(seen, table):
    agg = architectures(table)
    varied = varied_metaparameters(agg)
    assert seen["plots"]["plot-edfs"]["lines"] == 1
    entries = {e["entry"]: e for e in seen["menus"]["plot-edfs"]}
    by = [[f"by {p}", f"by {p}, equal params"] for p in varied]
    assert list(entries) == ["all models", *(e for pair in by for e in pair)]
    assert entries["all models"]["lines"] == 1
    for param in varied:
        levels = table[param].nunique()
        assert entries[f"by {param}"]["lines"] == levels, param
        assert entries[f"by {param}, equal params"]["lines"] == levels, param
        # several architectures a level: each is a model, not each seed
        assert agg.groupby(param).size().min() > 1
        assert entries[f"by {param}"]["title"].startswith("error EDF by ")
        assert "(each seed a model)" not in entries[f"by {param}"]["title"]


def test_a_thousand_rows_render(tmp_path):
    # The report's interactive part for 1,000 rows (test_report times the whole
    # report): every figure renders every architecture, with no error.
    from tests.test_report import synthetic

    df = synthetic(1000)
    figures = interactive_figures(df)
    body = "\n".join(to_html(fig, f"plot-{name}") for name, fig in figures.items())
    seen = probe(report_page("1,000 rows", body), tmp_path, interact=False)
    assert seen["errors"] == []
    n = len(architectures(df))
    assert n > 400
    assert seen["plots"]["plot-front"]["points"][0] == n
    assert seen["plots"]["plot-objectives"]["parcoords_canvases"] >= 1
    assert seen["plots"]["plot-edfs"]["lines"] == 1
