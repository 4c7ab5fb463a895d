"""The seed spread of the tabular benchmark: how much of a network's accuracy its
architecture decides, and how much its training seed.

    python experiments/time_to_front/seed_spread.py [BENCH] [SEEDS]

BENCH (default bench/) holds seed 0 of every architecture, SEEDS (default
bench_seeds/) seeds 1 and 2 of the first 40. For those 40 it prints each seed's
spread, the intraclass correlation of final top-1 (the share of its variance
that lies between architectures), the rank correlation between seeds, and how
much of one seed's accuracy-per-byte front is the front of another seed.
"""

from __future__ import annotations

import sys
from itertools import combinations
from pathlib import Path

import pandas as pd
from scipy import stats

from explorer import results
from explorer.analysis import pareto

HERE = Path(__file__).resolve().parent
OBJECTIVES = {"accuracy": "max", "bytes_int8": "min"}


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Final top-1 of every ok row: one row per point, one column per training seed."""
    ok = rows[rows["status"] == "ok"]
    wide = ok.pivot_table(index="point", columns="seed", values="accuracy")
    return wide.dropna()  # the points with every seed


def icc(wide: pd.DataFrame) -> float:
    """ICC(1): one-way random effects, architectures as groups of k seeds."""
    a = wide.to_numpy()
    n, k = a.shape
    between = k * ((a.mean(1) - a.mean()) ** 2).sum() / (n - 1)
    within = ((a - a.mean(1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    return (between - within) / (between + (k - 1) * within)


def fronts(rows: pd.DataFrame, points, seeds) -> dict[int, set[int]]:
    """Each seed's front among `points`: the set of point numbers on it."""
    out = {}
    for s in seeds:
        part = rows[(rows["seed"] == s) & rows["point"].isin(points) & (rows["status"] == "ok")]
        out[s] = set(pareto.pareto_front(part, OBJECTIVES)["point"])
    return out


def main() -> None:
    bench = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "bench"
    more = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "bench_seeds"
    extra = results.load(more)
    rows = pd.concat([results.load(bench), extra], ignore_index=True)
    wide = table(rows)
    agreement = icc(wide)
    seeds = [int(s) for s in wide.columns]
    spread = wide.std(axis=1, ddof=1)
    print(f"{len(wide)} architectures with seeds {seeds} (final top-1, 5 epochs on 4k images)")
    print(
        f"seed spread (std over seeds, points of top-1): median {100 * spread.median():.2f}, "
        f"mean {100 * spread.mean():.2f}, max {100 * spread.max():.2f}; "
        f"range over seeds median {100 * (wide.max(axis=1) - wide.min(axis=1)).median():.2f}"
    )
    print(
        f"spread between architectures (std of the seed means): "
        f"{100 * wide.mean(axis=1).std(ddof=1):.2f} points; ICC(1) {agreement:.2f}"
    )
    for a, b in combinations(seeds, 2):
        rho = stats.spearmanr(wide[a], wide[b]).statistic
        print(f"rank correlation of seed {a} and seed {b}: {rho:.2f}")
    front = fronts(rows, wide.index, seeds)
    for a, b in combinations(seeds, 2):
        shared = len(front[a] & front[b])
        print(
            f"fronts of seed {a} ({len(front[a])} points) and seed {b} ({len(front[b])}): "
            f"{shared} shared, Jaccard {shared / len(front[a] | front[b]):.2f}"
        )
    means = wide.mean(axis=1).rename("accuracy").reset_index()
    sizes = rows.drop_duplicates("point").set_index("point")["bytes_int8"]
    means["bytes_int8"] = means["point"].map(sizes)
    mean_front = set(pareto.pareto_front(means, OBJECTIVES)["point"])
    for s in seeds:
        recall = len(front[s] & mean_front) / len(mean_front)
        print(f"seed {s}'s front holds {recall:.0%} of the front of the {len(seeds)}-seed means")
    print(f"seeds_rows={len(extra)} seeds_trial_hours={extra['wall_s'].sum() / 3600:.2f} "
          f"icc={agreement:.3f} median_seed_std={spread.median():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
