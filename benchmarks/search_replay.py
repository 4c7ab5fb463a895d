"""Replay proposers over a tabular benchmark: compute to the front, in simulated time.

    python benchmarks/search_replay.py experiments/time_to_front/bench \
        [--seeds 20] [--workers 2] [--part 1/2] [--subspaces 20 --architectures 60]

Random search, Optuna's multi-objective TPE and NSGA-II samplers (called
through Optuna) and ehvi (explorer.proposer), each alone and under the
Pareto-aware scheduler (`_pareto`), choose architectures from a full-budget
sweep's recorded ones and are handed each one's curve epoch by epoch
(explorer.analysis.search_replay says how). Figures are means over `--seeds`
runs, in trial-epochs as fractions of training every architecture once to the
full budget: compute to 95% and to 99% of the pool's hypervolume (reference:
its worst final accuracy and 1.1x its largest size, as scheduler_replay.py) and
the share of the true front trained to the end at 25% of that compute.

`--ablations` adds ehvi without results before the last epoch (ehvi_no_rungs)
and without its model of accuracy (ehvi_no_model: every candidate believed at the
mean of what has been seen, so only sizes steer it). `--part K/N` replays the
K-th of N equal parts of the pool (in point order: each part is its own random
draw of the space), to check a figure on data it was not tuned on.
`--training-seed K` replays the curves of training seed K (a sweep with
`search.first_seed`), to check a figure on other curves of the same networks.
`--subspaces S` also replays S random subsets of `--architectures`
architectures (a few seeds each) and prints how the ratio of each method's
compute to 95% to random search's varies across them.

Ends with one key=value line: M_compute_to_95pct, M_compute_to_99pct and
M_front_recall_at_25pct for every method M, and ours=ehvi.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from explorer import results  # noqa: E402
from explorer import space as spaces  # noqa: E402
from explorer.analysis import search_replay as sr  # noqa: E402

ALL = [*sr.METHODS, *(f"{m}_pareto" for m in sr.METHODS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="a full-budget sweep folder (space.yaml, rows/, curves/)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="bytes_int8")
    ap.add_argument("--methods", default=",".join(ALL))
    ap.add_argument("--ablations", action="store_true", help="also ehvi without each part")
    ap.add_argument("--part", default="1/1", help="K/N: the K-th of N parts of the pool")
    ap.add_argument("--training-seed", type=int, default=0, help="whose curves to replay")
    ap.add_argument("--subspaces", type=int, default=0)
    ap.add_argument("--architectures", type=int, default=60)
    args = ap.parse_args()
    folder = Path(args.sweep)
    methods = args.methods.split(",") + (list(sr.ABLATIONS) if args.ablations else [])
    try:
        k, n = (int(x) for x in args.part.split("/"))
        if not 1 <= k <= n:
            raise ValueError
    except ValueError:
        print(f"search_replay: --part: expected K/N with 1 <= K <= N, got {args.part!r}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    try:
        space = spaces.load(folder / "space.yaml")
        rows, curves = results.load(folder), results.load_curves(folder)
        pool = sr.load_pool(rows, curves, space, args.size, seed=args.training_seed)
        trials = pool.trials
        pool = pool.subset(np.array_split(np.array(trials), n)[k - 1])
        for m in methods:
            sr.make_method(m.removesuffix("_pareto"), pool, 0)
    except (results.ResultsError, spaces.SpaceError, ValueError) as e:
        print(f"search_replay: {args.sweep}: {e}", file=sys.stderr)
        sys.exit(2)
    ref, front = sr.truth(pool)
    print(
        f"{args.sweep} part {args.part}, training seed {args.training_seed}: "
        f"{len(pool.trials)} architectures x "
        f"{pool.data.budget} epochs, true front {len(front)}, reference accuracy "
        f"{-ref.point[0]:.4f} and {args.size} {ref.point[1]:.0f}; {args.seeds} seeds, "
        f"{args.workers} workers"
    )
    t0 = time.perf_counter()
    got = sr.compare(pool, methods, args.seeds, args.workers)
    for name, r in got.iterrows():
        print(
            f"{name:>19}: 95% of the hypervolume at {r['compute_to_95pct']:.3f}, 99% at "
            f"{r['compute_to_99pct']:.3f}; front recall at 25% {r['front_recall_at_25pct']:.2f}"
        )
    if args.subspaces:
        print(f"{args.subspaces} random subspaces of {args.architectures} architectures "
              "(compute to 95% over random search's in the same subspace):")  # fmt: skip
        ratios = sr.subspaces(pool, methods, args.architectures, args.subspaces, args.workers)
        for name, r in ratios.iterrows():
            print(
                f"{name:>19}: mean {r['ratio_mean']:.2f}x, median {r['ratio_median']:.2f}x, "
                f"above random in {r['worse_than_random']:.0%}"
            )
    print(f"replay took {time.perf_counter() - t0:.0f} s")
    keys = " ".join(f"{m}_{c}={v:.3f}" for m, row in got.iterrows() for c, v in row.items())
    print(f"{keys} ours={sr.OURS}")


if __name__ == "__main__":
    main()
