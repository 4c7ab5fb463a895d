"""Mean +- std tables of the SqueezeNet studies, as Markdown, from their sweep tables.

    python experiments/squeezenet_dse/summarize.py [STUDY ...] > tables.md

Reads experiments/squeezenet_dse/<study>/results.parquet (written by
`explorer sweep`), averages each point over its seeds with the analysis
package, and prints one table per study plus the compute it cost.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from explorer import results
from explorer.analysis import (
    aggregate_seeds,
    busy_seconds,
    program_share,
    replay,
    stats,
    trial_seconds,
    varied_metaparameters,
)

HERE = Path(__file__).resolve().parent
STUDIES = ("squeeze_ratio", "pct3x3", "bypass", "versions", "bypass_full")
METRICS = ["accuracy", "top5", "int8_accuracy", "params", "bytes_f32", "bytes_int8", "flops"]
METRICS += ["latency_b1_ms", "latency_b128_ms", "images_per_s", "wall_s"]


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def table(df: pd.DataFrame) -> str:
    agg = aggregate_seeds(df, METRICS)
    keys = varied_metaparameters(agg) or ["base"]
    head = [*keys, "top-1 %", "top-5 %", "int8 top-1 %", "params", "float32", "int8"]
    head += ["MFLOPs", "latency b1 ms", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in agg.sort_values(keys).iterrows():
        cells = [str(r[k]) for k in keys]
        cells += [pm(r["accuracy"], r["accuracy_std"]), pm(r["top5"], r["top5_std"])]
        cells += [pm(r["int8_accuracy"], r["int8_accuracy_std"])]
        cells += [f"{int(r['params']):,}", f"{r['bytes_f32'] / 1e6:.2f} MB"]
        cells += [f"{r['bytes_int8'] / 1e3:.0f} KB", f"{r['flops'] / 1e6:.1f}"]
        cells += [f"{r['latency_b1_ms']:.2f}", str(int(r["n_seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparisons(df: pd.DataFrame) -> str:
    """Each level against the best: the difference of mean top-1 with its 95% bootstrap
    interval and the KS test of the two sets of seeds (explorer.analysis.stats)."""
    ok = df[df["status"] == "ok"]
    head = ["metaparameter", "level", "against", "difference of top-1, pts [95% CI]", "KS D", "p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for param in varied_metaparameters(ok):
        for _, c in stats.compare_levels(ok, param).iterrows():
            ci = f"{100 * c['diff']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"
            cells = [param, str(c[param]), str(c["against"]), ci, f"{c['ks']:.2f}"]
            lines.append("| " + " | ".join([*cells, f"{c['ks_p']:.3g}"]) + " |")
    return "\n".join(lines)


def cost(df: pd.DataFrame, curves: pd.DataFrame) -> str:
    """Trial-hours, wall time, and what early stopping would have saved on the
    study's own curves (explorer.analysis.replay; a study with fewer than 4 trials
    trained to the full budget, or run before curves were kept, has none)."""
    ok = df[df["status"] == "ok"]
    hours = trial_seconds(ok).sum() / 3600
    wall = busy_seconds(ok) / 3600
    programs = round(program_share(ok).sum())
    k = int(ok["seeds_in_program"].max())
    hosts = ", ".join(sorted(set(ok["host"].astype(str))))
    devices = ", ".join(sorted(set(ok["device"].astype(str))))
    said = (
        f"{len(ok)} ok rows ({programs} trials, {k} seed(s) per program), "
        f"{hours:.2f} trial-hours in {wall:.2f} hours of wall time; ran on {devices} ({hosts})"
    )
    if not len(curves):
        return (
            said
            + ". No replay: its learning curves were not recorded (run before sweeps kept them)"
        )
    data = replay.full_curves(ok, curves)
    if len(data.accuracy) < 4 or data.budget < 2:
        return said + ". No replay: fewer than 4 trials with full learning curves"
    got = replay.replay(data, schedulers=("asha", "pareto")).figures
    return said + (
        f". Replayed on its curves (accuracy against params), the Pareto-aware scheduler "
        f"would have spent {got.loc['pareto', 'total_compute']:.0%} of these trial-epochs "
        f"(front recall {got.loc['pareto', 'front_recall']:.2f}; "
        f"ASHA {got.loc['asha', 'total_compute']:.0%}, "
        f"recall {got.loc['asha', 'front_recall']:.2f})"
    )


def main() -> None:
    for study in sys.argv[1:] or STUDIES:
        path = HERE / study
        if not (path / "rows").is_dir():
            print(f"## {study}\n\n(no results yet: {path.relative_to(HERE)})\n")
            continue
        df = results.load(path)  # every finished row, also while the sweep is under way
        recipe = df["recipe"].iloc[0]
        print(f"## {study}\n\n{table(df)}\n\n{comparisons(df)}\n")
        print(f"{cost(df, results.load_curves(path))}. Recipe: `{recipe}`.\n")


if __name__ == "__main__":
    main()
