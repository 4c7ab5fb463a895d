"""Which metaparameters of the broad Fire space matter for accuracy per byte?

    python experiments/design_space/study.py [SWEEP] > experiments/design_space/study.md

In the manner of Radosavovic et al., "On Network Design Spaces for Visual
Recognition" (2019): every architecture of a random sample of the space is one
model (its seeds averaged); for each metaparameter, the error EDF of each of its
levels, normalised for complexity; and a two-sample Kolmogorov-Smirnov test
between levels (explorer.analysis.stats).

Complexity: int8 bytes, the sweep's size objective. For the EDF figure, models
are reweighted so that every level has the same distribution of log-bytes
(explorer.analysis.edf, Section 3.2 of the paper). For the tests, each model's
error is taken relative to what its size predicts (the residual of a
least-squares line of error against log10 bytes over all models): a level
whose networks are more accurate *for their size* has negative residuals. The
KS statistic of a metaparameter is the largest over its pairs of levels, its
p-value Bonferroni-corrected for the number of pairs; the ranking is by that
statistic. Writes edfs.png beside this file.

Then the same front after Deep Compression: `compress_front.sh` compresses each
architecture on the int8 front (its kept seed) to 50% sparsity and 4 bits, and
this script compares the front of the compressed files with the int8 front
(front_compressed.png). `study.py --front-trials` prints the trials it compresses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from explorer import results
from explorer.analysis import aggregate_seeds, pareto_mask, stats
from explorer.analysis.edf import edf

HERE = Path(__file__).resolve().parent
SWEEP = HERE.parent / "pareto_search" / "broad_fire"
PARAMS = ("squeeze_ratio", "pct3x3", "base_e", "incr_e", "pool_after", "bypass")
SIZE = "bytes_int8"


def models(sweep: Path) -> pd.DataFrame:
    """One row per architecture: seeds averaged, error and its residual for its size."""
    agg = aggregate_seeds(results.load(sweep))
    agg["error"] = 1.0 - agg["accuracy"]
    x = np.log10(agg[SIZE].astype(float))
    slope, intercept = np.polyfit(x, agg["error"], 1)
    agg["residual"] = agg["error"] - (slope * x + intercept)
    agg.attrs["fit"] = (slope, intercept)
    return agg


def ranking(agg: pd.DataFrame) -> pd.DataFrame:
    out = []
    for param in PARAMS:
        pairs = stats.compare_pairs(agg, param, "residual")  # the worse level first
        testable = pairs[(pairs["n_a"] >= 2) & (pairs["n_b"] >= 2)] if len(pairs) else pairs
        if testable.empty:
            continue
        top = testable.loc[testable["ks"].idxmax()]
        extreme = pairs.loc[pairs["diff"].idxmax()]  # the worst level against the best
        sizes = agg.groupby(param).size()
        out.append(
            {
                "metaparameter": param,
                "KS D (largest pair)": top["ks"],
                "p (Bonferroni)": min(1.0, top["ks_p"] * len(pairs)),
                "pair": f"{_level(top['a'])} vs {_level(top['b'])}",
                "best level": _level(extreme["b"]),
                "worst level": _level(extreme["a"]),
                "residual error, worst - best [95% CI], pts": f"{100 * extreme['diff']:+.2f} "
                f"[{100 * extreme['ci_low']:+.2f}, {100 * extreme['ci_high']:+.2f}]",
                "models per level": ", ".join(f"{k}: {n}" for k, n in sizes.items()),
            }
        )
    return pd.DataFrame(out).sort_values("KS D (largest pair)", ascending=False)


def _level(v) -> str:
    """A level as the space file writes it (pandas may hand integers back as floats)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def figure(agg: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True, sharey=True)
    for ax, param in zip(axes.ravel(), PARAMS, strict=True):
        frame = edf(agg.assign(**{param: agg[param].astype(str)}), by=param, normalize_by=SIZE)
        for level, g in frame.groupby("group"):
            ax.step(g["error"], g["fraction"], where="post", label=f"{level} ({g['n'].iloc[0]})")
        ax.set_title(param)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("test error")
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of models (int8 bytes normalised)")
    fig.suptitle("Error EDFs of the broad Fire space by metaparameter (Fashion-MNIST)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def by_point(sweep: Path) -> pd.DataFrame:
    """One row per point of the sweep (an architecture): its seeds' mean accuracy."""
    rows = results.load(sweep)
    ok = rows[rows["status"] == "ok"]
    return ok.groupby("point").agg(
        accuracy=("accuracy", "mean"), **{SIZE: (SIZE, "first")}, params=("params", "first")
    )


def front_trials(sweep: Path) -> list[str]:
    """A trial of each architecture on the front of seed-averaged accuracy against
    int8 bytes: the one already compressed, else one whose weights the sweep kept
    (it keeps the front's)."""
    points = by_point(sweep)
    on = points[pareto_mask(points, {"accuracy": "max", SIZE: "min"})]
    index = sweep / "checkpoints.json"
    if not index.is_file():
        print(f"{index}: not found; the sweep keeps its front's weights there", file=sys.stderr)
        sys.exit(2)
    kept = json.loads(index.read_text())
    rows = results.load(sweep)
    out = []
    done = {compressed_trial(f) for f in (HERE / "compressed").glob("*.sqz")}
    for point in on.index:
        seeds = sorted(rows.loc[rows["point"] == point, "trial_id"])
        # an architecture compressed once (its seed's weights since dropped) is done
        tids = [t for t in seeds if t in done] or [t for t in seeds if t in kept]
        out += tids[:1]
    return out


def compressed_trial(path) -> str:
    """The trial a compressed file of compress_front.sh was made from."""
    return Path(path).name.rsplit("-sp", 1)[0]


def compressed(sweep: Path) -> pd.DataFrame | None:
    """The compressed files of compress_front.sh, each beside its architecture's int8 row."""
    files = sorted((HERE / "compressed").glob("*.json"))
    if not files:
        return None
    got = pd.DataFrame([json.loads(f.read_text()) for f in files])
    got["trial_id"] = [compressed_trial(p) for p in got["path"]]
    point = results.load(sweep).set_index("trial_id")["point"]
    got["point"] = [point[t] for t in got["trial_id"]]
    return got.merge(by_point(sweep).reset_index(), on="point")


def compressed_section(agg: pd.DataFrame, sweep: Path) -> list[str]:
    got = compressed(sweep)
    if got is None:
        return ["(no compressed files yet: experiments/design_space/compress_front.sh)"]
    both = pd.concat(
        [
            pd.DataFrame({"bytes": agg[SIZE], "accuracy": agg["accuracy"], "form": "int8"}),
            pd.DataFrame(
                {"bytes": got["bytes_compressed"], "accuracy": got["compressed_accuracy"],
                 "form": "compressed"}
            ),
        ],
        ignore_index=True,
    )  # fmt: skip
    on = both[pareto_mask(both, {"accuracy": "max", "bytes": "min"})]
    out = [
        "| trial | params | int8 bytes | top-1 % (seeds averaged) | top-1 % (this seed) "
        "| compressed bytes | compressed top-1 % | x smaller than int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in got.sort_values(SIZE).iterrows():
        out.append(
            f"| {r['trial_id']} | {int(r['params']):,} | {int(r[SIZE]):,} | "
            f"{100 * r['accuracy']:.2f} | {100 * r['accuracy_before']:.2f} | "
            f"{int(r['bytes_compressed']):,} | "
            f"{100 * r['compressed_accuracy']:.2f} | {r[SIZE] / r['bytes_compressed']:.1f} |"
        )
    out += [
        "",
        f"Joint front of the {len(agg)} int8 networks and the {len(got)} compressed files: "
        f"{(on['form'] == 'compressed').sum()} compressed, {(on['form'] == 'int8').sum()} int8.",
        "",
        "![front after Deep Compression](front_compressed.png)",
    ]
    _front_figure(agg, got, HERE / "front_compressed.png")
    return out


def _front_figure(agg: pd.DataFrame, got: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(agg[SIZE], agg["accuracy"], s=14, color="0.6", label="every architecture, int8")
    for x, y, label, style in (
        (SIZE, "accuracy", "the int8 front", "o-"),
        ("bytes_compressed", "compressed_accuracy", "the same, Deep Compression 50%, 4 bits", "s-"),
    ):
        pts = got.sort_values(x)
        ax.plot(pts[x], pts[y], style, label=label)
    for _, r in got.iterrows():
        ax.plot([r[SIZE], r["bytes_compressed"]], [r["accuracy"], r["compressed_accuracy"]],
                ":", color="0.5", lw=0.8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("bytes")
    ax.set_ylabel("test top-1 (seeds averaged; compressed: one seed's file)")
    ax.set_title("The broad Fire front before and after Deep Compression (Fashion-MNIST)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--front-trials"]:
        print(" ".join(front_trials(Path(argv[1]) if len(argv) > 1 else SWEEP)))
        return 0
    sweep = Path(argv[0]) if argv else SWEEP
    agg = models(sweep)
    slope, intercept = agg.attrs["fit"]
    rank = ranking(agg)
    figure(agg, HERE / "edfs.png")
    print(f"{len(agg)} architectures ({sweep.name}, seeds averaged); error = "
          f"{slope:+.4f} x log10({SIZE}) {intercept:+.4f} fitted over all of them.\n")  # fmt: skip
    cols = list(rank.columns)
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for _, r in rank.iterrows():
        cells = [f"{r[c]:.2f}" if c.startswith("KS") else f"{r[c]:.3g}" if c.startswith("p ")
                 else str(r[c]) for c in cols]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print("\n![EDFs](edfs.png)\n\n## The front after Deep Compression\n")
    print("\n".join(compressed_section(agg, sweep)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
