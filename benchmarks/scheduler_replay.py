"""Replay early-stopping schedulers over recorded learning curves, in simulated time.

    python benchmarks/scheduler_replay.py experiments/pareto_search/broad_fire \
        [--orders 20] [--workers 2] [--eta 3] [--size bytes_int8]

Grid (no stopping), Ray Tune's ASHA on accuracy alone, Syne Tune's MOASHA (as
it decides, and with its ranking quirk mended) and the Pareto-aware scheduler
(and, to tell its two parts apart, its stopping alone in arrival order and its
size-spread start order alone), each over `--orders` random arrival orders of a real
full-budget sweep's trials (explorer.analysis.replay says how, and why the
hypervolume's reference point is the grid's worst accuracy and 1.1x its largest
size). Ends with one key=value line: for every scheduler S,
S_compute_to_95pct, S_front_recall and S_total_compute, as fractions of the
full grid.
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
    args = ap.parse_args()
    folder = Path(args.sweep)
    try:
        data = replay.full_curves(results.load(folder), results.load_curves(folder), args.size)
        got = replay.replay(
            data, orders=args.orders, workers=args.workers, eta=args.eta, seed=args.seed
        )
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
    print(got.key_values())


if __name__ == "__main__":
    main()
