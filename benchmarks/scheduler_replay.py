"""Replay early-stopping schedulers over recorded learning curves, in simulated time.

    python benchmarks/scheduler_replay.py experiments/pareto_search/broad_fire \
        [--orders 20] [--workers 2] [--eta 3] [--size bytes_int8]

In the manner of Syne Tune's simulator: each trial of a real full-budget sweep
(its rows and its curves) arrives in a random order; `workers` trials train at
once, one epoch per time step; a scheduler may stop a trial at a rung, and then
its remaining epochs are never spent. For each scheduler it reports, averaged
over the arrival orders: the compute (trial-epochs, as a fraction of the full
grid's) spent when the hypervolume of the networks trained to the full budget
first reaches 95% of the full grid's; the fraction of the true front's trials
trained to the full budget; and the compute spent in all.

The hypervolume's reference point is the grid's worst final accuracy and 1.1x
its largest size: with accuracy 0 as the reference the region below the worst
network dwarfs the front, and even a random-order grid with no stopping shows
nearly all of the final hypervolume early, which says nothing.

Schedulers: grid (no stopping), asha (successive halving on accuracy alone,
asynchronous: a trial goes on if it is in the top 1/eta of those that reached
its rung), moasha (the same quota by non-dominated sorting of the reported
accuracy and size, as Syne Tune's MOASHA ranks trials; a re-implementation),
pareto (explorer.pareto_scheduler). Ends with one key=value line.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer import results  # noqa: E402
from explorer.analysis.pareto import hypervolume, pareto_mask  # noqa: E402
from explorer.pareto_scheduler import PAUSE, STOP, ParetoRungs  # noqa: E402


def load(folder: Path, size: str) -> tuple[dict, dict, int]:
    """Per trial: its accuracy by epoch, and its known size; the full budget."""
    rows = results.load(folder)
    rows = rows[rows["status"] == "ok"].set_index("trial_id")
    curves = results.load_curves(folder)
    curves = curves[curves["trial_id"].isin(rows.index)]
    budget = int(curves["epoch"].max())
    acc, sizes = {}, {}
    for tid, c in curves.groupby("trial_id"):
        c = c.sort_values("epoch")
        if int(c["epoch"].max()) == budget and len(c) == budget:
            acc[tid] = c["accuracy"].to_numpy(float)
            sizes[tid] = float(rows.loc[tid, size])
    return acc, sizes, budget


def rungs_of(budget: int, eta: int) -> list[int]:
    out, t = [], 1
    while t < budget:
        out.append(t)
        t *= eta
    return out


class Quota:
    """Asynchronous successive halving: go on if in the top 1/eta at the rung so far."""

    def __init__(self, budget: int, eta: int, sizes: dict | None):
        self.rungs, self.eta, self.sizes = set(rungs_of(budget, eta)), eta, sizes
        self.seen: dict[int, list[tuple[str, float]]] = {r: [] for r in self.rungs}

    def decide(self, tid: str, t: int, acc: float) -> bool:
        """True to stop."""
        if t not in self.rungs:
            return False
        seen = self.seen[t]
        seen.append((tid, acc))
        if len(seen) < self.eta:
            return False
        keep = max(1, len(seen) // self.eta)
        return self._rank(seen, tid) >= keep

    def _rank(self, seen, tid) -> int:
        if self.sizes is None:  # accuracy alone
            order = sorted(seen, key=lambda p: -p[1])
            return [p[0] for p in order].index(tid)
        pts = pd.DataFrame(
            {"accuracy": [a for _, a in seen], "size": [self.sizes[t] for t, _ in seen]}
        )
        ranks = np.zeros(len(pts), int)  # non-dominated sorting, then by accuracy in a front
        left, level = np.ones(len(pts), bool), 0
        while left.any():
            front = np.zeros(len(pts), bool)
            front[left] = pareto_mask(pts[left], {"accuracy": "max", "size": "min"})
            ranks[front] = level
            left &= ~front
            level += 1
        order = sorted(range(len(pts)), key=lambda i: (ranks[i], -pts["accuracy"][i]))
        return [seen[i][0] for i in order].index(tid)


def simulate(name, order, acc, sizes, budget, workers, eta, grid_hv, ref) -> dict:
    """One arrival order: compute spent when the HV first reaches 95%, recall, total."""
    if name == "pareto":
        rungs = ParetoRungs({"accuracy": "max", "size": "min"}, budget, grace=1, eta=eta)
    elif name in ("asha", "moasha"):
        quota = Quota(budget, eta, sizes if name == "moasha" else None)
    queue, running, spent, finished, at95 = [(t, 0) for t in order], [], 0, [], None
    clock, paused = 0, {}  # paused trial -> epochs done (it resumes from its checkpoint)
    while queue or running or paused:
        if not queue and not running:  # only paused trials left: resume the most hopeful
            tid = rungs.unblock()
            queue.append((tid, paused.pop(tid)))
        while queue and len(running) < workers:  # (time, trial, epochs done)
            tid, done = queue.pop(0)
            heapq.heappush(running, (clock, tid, done))
        clock, tid, done = heapq.heappop(running)
        t = done + 1
        spent += 1
        value = acc[tid][t - 1]
        stop = pause = False
        if name == "pareto":
            said = rungs.on_result(tid, t, {"accuracy": value, "size": sizes[tid]})
            stop, pause = said == STOP, said == PAUSE
        elif name in ("asha", "moasha"):
            stop = quota.decide(tid, t, value)
        if t == budget:
            if name == "pareto":
                rungs.on_complete(tid, {"epoch": t, "accuracy": value, "size": sizes[tid]})
                stopped, promote = rungs.review()
                for p in stopped:
                    paused.pop(p)
                for p in promote:  # promoted trials go first, from where they paused
                    rungs.promoted(p)
                    queue.insert(0, (p, paused.pop(p)))
            finished.append(tid)
            hv = _hv(finished, acc, sizes, ref)
            if at95 is None and hv >= 0.95 * grid_hv:
                at95 = spent
        elif pause:
            paused[tid] = t
        elif not stop:
            heapq.heappush(running, (clock + 1, tid, t))
    return {"at95": at95, "finished": set(finished), "spent": spent}


def _hv(trials, acc, sizes, ref) -> float:
    df = pd.DataFrame(
        {"accuracy": [acc[t][-1] for t in trials], "size": [sizes[t] for t in trials]}
    )
    return hypervolume(df, {"accuracy": "max", "size": "min"}, ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="a full-budget sweep folder (rows/ and curves/)")
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--size", default="bytes_int8")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    acc, sizes, budget = load(Path(args.sweep), args.size)
    if len(acc) < 4:
        sys.exit(f"{args.sweep}: {len(acc)} trials with full curves; need at least 4")
    trials = sorted(acc)
    final = pd.DataFrame(
        {"accuracy": [acc[t][-1] for t in trials], "size": [sizes[t] for t in trials]}
    )
    ref = {"accuracy": float(final["accuracy"].min()), "size": 1.1 * float(final["size"].max())}
    grid_hv = hypervolume(final, {"accuracy": "max", "size": "min"}, ref)
    front = {t for t, on in zip(trials, pareto_mask(final, {"accuracy": "max", "size": "min"}),
                                strict=True) if on}  # fmt: skip
    total = len(trials) * budget
    print(
        f"{args.sweep}: {len(trials)} trials x {budget} epochs, true front {len(front)}, "
        f"reference accuracy {ref['accuracy']:.4f}, {args.size} {ref['size']:.0f}; "
        f"{args.orders} orders, {args.workers} workers, eta {args.eta}"
    )
    rng = np.random.default_rng(args.seed)
    orders = [list(rng.permutation(trials)) for _ in range(args.orders)]
    figures = {}
    for name in ("grid", "asha", "moasha", "pareto"):
        runs = [
            simulate(name, o, acc, sizes, budget, args.workers, args.eta, grid_hv, ref)
            for o in orders
        ]
        to95 = np.mean([(r["at95"] if r["at95"] is not None else total) / total for r in runs])
        recall = np.mean([len(front & r["finished"]) / len(front) for r in runs])
        spent = np.mean([r["spent"] / total for r in runs])
        figures.update(
            {f"{name}_compute_to_95pct": to95, f"{name}_front_recall": recall,
             f"{name}_total_compute": spent}
        )  # fmt: skip
        print(f"{name:>7}: 95% of the grid's hypervolume at {to95:.2f} of its compute, "
              f"front recall {recall:.2f}, compute spent {spent:.2f}")  # fmt: skip
    print(" ".join(f"{k}={v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
