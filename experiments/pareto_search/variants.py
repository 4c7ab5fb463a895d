"""Variants of the Pareto-aware scheduler, replayed over the broad Fire curves.

    python experiments/pareto_search/variants.py [SWEEP] [--size bytes_int8] [--subspaces 50]

Each variant is explorer.pareto_scheduler.ParetoRungs with one setting changed,
replayed as benchmarks/scheduler_replay.py replays the default (20 arrival
orders, 2 workers, eta 3 unless the variant changes it; trials started in the
size-spread order); then the default's stopping with the trials started as they
arrive, and the grid in either order. Prints a Markdown table:
the compute spent when the hypervolume first reaches 95% of the grid's, the
front recall and the compute spent in all, each as a fraction of the grid's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer import results
from explorer.analysis import replay
from explorer.pareto_scheduler import CONTINUE, PAUSE, ParetoRungs, Seen, dominated

SWEEP = Path(__file__).resolve().parent / "broad_fire"


class NoPausing(ParetoRungs):
    """Never pause for rivals still training: judge only by what has finished."""

    def _training_at(self, t: int, but: str) -> list:
        return []


class GainsOnly(ParetoRungs):
    """The first margin: stop on the optimistic estimate alone, with no check of how
    far ahead the finished rival was at the same epoch."""

    def _beaten(self, t, value, hope) -> bool:
        return dominated(hope, self.finished.values())


class Defer(ParetoRungs):
    """Also put off, rather than stop, a trial that a finished network no larger was
    ahead of at the same epoch: it waits (paused) until nothing else can run. Every
    trial still trains unless the default rule stops it; the likelier ones first."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.deferred: set[str] = set()

    def on_result(self, trial, t, result):
        said = super().on_result(trial, t, result)
        if said != CONTINUE or t not in self.at_rung:
            return said
        me = self.at_rung[t][trial]
        behind = [
            Seen(rival.known, self.finished_curves[tid].get(t, -float("inf")))
            for tid, rival in self.finished.items()
        ]
        if not dominated(me, behind):
            return said
        hope = Seen(me.known, me.value + self.margin(self.curves[trial], t))
        self.paused[trial] = (t, hope, me.value)
        self.deferred.add(trial)
        return PAUSE

    def review(self):
        stop, promote = super().review()
        return stop, [p for p in promote if p not in self.deferred]

    def unblock(self):
        if not self.paused:
            return None
        best = max(self.paused, key=lambda p: (p not in self.deferred, self.paused[p][1].value))
        self.promoted(best)
        self.deferred.discard(best)
        return best


VARIANTS = {
    "default (grace 1, eta 3, min margin 0.01)": lambda o, b, e: ParetoRungs(o, b, eta=e),
    "the first margin (gains only)": lambda o, b, e: GainsOnly(o, b, eta=e),
    "first rung at epoch 3": lambda o, b, e: ParetoRungs(o, b, grace=3, eta=e),
    "min margin 0.03": lambda o, b, e: ParetoRungs(o, b, eta=e, min_margin=0.03),
    "eta 2 (rungs 1, 2, 4, 8)": lambda o, b, e: ParetoRungs(o, b, eta=2),
    "no pausing": lambda o, b, e: NoPausing(o, b, eta=e),
    "put off what a smaller finished network led at the same epoch": (
        lambda o, b, e: Defer(o, b, eta=e)
    ),
}


def _row(name: str, f) -> None:
    print(
        f"| {name} | {f['compute_to_95pct']:.2f} | {f['front_recall']:.2f} "
        f"| {f['total_compute']:.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", nargs="?", default=str(SWEEP))
    ap.add_argument("--size", default="bytes_int8")
    ap.add_argument(
        "--subspaces",
        type=int,
        default=0,
        help="also replay each variant over this many random subspaces of 16 architectures",
    )
    args = ap.parse_args()
    folder = Path(args.sweep)
    data = replay.full_curves(results.load(folder), results.load_curves(folder), args.size)
    print(f"{len(data.trials)} trials x {data.budget} epochs ({folder.name})\n")
    print("| variant | compute to 95% | front recall | compute spent |")
    print("|---|---|---|---|")
    for name, judge in VARIANTS.items():
        _row(name, replay.replay(data, schedulers=("pareto",), judge=judge).figures.loc["pareto"])
    others = {
        "pareto_arrival": "default, trials started as they arrive (no spread order)",
        "grid_spread": "(grid, no stopping, in the spread order)",
        "grid": "(grid, no stopping, as they arrive)",
    }
    got = replay.replay(data, schedulers=tuple(others)).figures
    for s, name in others.items():
        _row(name, got.loc[s])
    if args.subspaces:
        print(
            f"\n{args.subspaces} random subspaces of 16 architectures: compute to 95% over "
            "the random-order grid's in the same subspace\n"
        )
        print("| variant | mean | needs more than the grid in | front recall, mean (lowest) |")
        print("|---|---|---|---|")
        for name, judge in VARIANTS.items():
            f = replay.subspaces(data, 16, args.subspaces, ("pareto",), judge=judge)
            f = f.loc["pareto"]
            print(
                f"| {name} | {f['ratio_mean']:.2f}x | {f['worse_than_grid']:.0%} "
                f"| {f['recall_mean']:.2f} ({f['recall_min']:.2f}) |"
            )


if __name__ == "__main__":
    main()
