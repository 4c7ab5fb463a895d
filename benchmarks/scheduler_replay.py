"""Replay early-stopping schedulers over recorded learning curves, in simulated time.

    python benchmarks/scheduler_replay.py experiments/pareto_search/broad_fire \
        [--orders 20] [--workers 2] [--eta 3] [--size bytes_int8] \
        [--subspaces 50 --architectures 16]

Grid (no stopping), Ray Tune's ASHA on accuracy alone, Syne Tune's MOASHA (as
it decides, and with its ranking quirk mended) and the Pareto-aware scheduler
(and, to tell its two parts apart, its stopping alone in arrival order and its
size-spread start order alone), each over `--orders` random arrival orders of a real
full-budget sweep's trials (explorer.analysis.replay says how, and why the
hypervolume's reference point is the grid's worst accuracy and 1.1x its largest
size). Ends with one key=value line: for every scheduler S,
S_compute_to_95pct, S_front_recall and S_total_compute, as fractions of the
full grid. With `--subspaces N`, also how much those figures owe to the one
space they were measured on: N random subspaces of `--architectures`
architectures each, replayed against their own grids (8 orders each), and for
every scheduler but the grid S_subspace_ratio_mean (its compute to 95% over the
random-order grid's, the mean over the subspaces), S_subspace_worse (the share
of subspaces where it needs more than the grid) and S_subspace_recall_min.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer import results  # noqa: E402
from explorer.analysis import replay  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="a full-budget sweep folder (rows/ and curves/)")
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--size", default="bytes_int8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subspaces", type=int, default=0, help="random subspaces to replay")
    ap.add_argument("--architectures", type=int, default=16, help="architectures per subspace")
    args = ap.parse_args()
    folder = Path(args.sweep)
    try:
        data = replay.full_curves(results.load(folder), results.load_curves(folder), args.size)
        got = replay.replay(
            data, orders=args.orders, workers=args.workers, eta=args.eta, seed=args.seed
        )
        parts = None
        if args.subspaces:
            others = [s for s in replay.SCHEDULERS if s != "grid"]
            parts = replay.subspaces(
                data, args.architectures, args.subspaces, others, workers=args.workers,
                eta=args.eta, seed=args.seed,
            )  # fmt: skip
    except (results.ResultsError, ValueError) as e:
        print(f"scheduler_replay: {args.sweep}: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{args.sweep}: {got.describe()}")
    for name, r in got.figures.iterrows():
        print(
            f"{name:>15}: {replay.TARGET:.0%} of the grid's hypervolume at "
            f"{r['compute_to_95pct']:.2f} of its compute, front recall "
            f"{r['front_recall']:.2f}, compute spent {r['total_compute']:.2f}"
        )
    keys = got.key_values()
    if parts is not None:
        print(
            f"{args.subspaces} random subspaces of {args.architectures} architectures "
            "(compute to 95% over the random-order grid's in the same subspace):"
        )
        for name, r in parts.iterrows():
            print(
                f"{name:>15}: mean {r['ratio_mean']:.2f}x, median {r['ratio_median']:.2f}x, "
                f"more than the grid in {r['worse_than_grid']:.0%}, front recall "
                f"{r['recall_mean']:.2f} (lowest {r['recall_min']:.2f})"
            )
        keys += "".join(
            f" {s}_subspace_ratio_mean={r['ratio_mean']:.3f}"
            f" {s}_subspace_worse={r['worse_than_grid']:.3f}"
            f" {s}_subspace_recall_min={r['recall_min']:.3f}"
            for s, r in parts.iterrows()
        )
    print(keys)


if __name__ == "__main__":
    main()
