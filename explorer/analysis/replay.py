"""Replay early-stopping schedulers over a sweep's recorded learning curves.

In the manner of Syne Tune's simulator: each trial of a full-budget sweep (its
rows and its curves) arrives in a random order; `workers` trials train at once,
one epoch per time step; a scheduler may stop a trial at a rung, and then its
remaining epochs are never spent. For each scheduler, averaged over the arrival
orders: the compute (trial-epochs, as a fraction of the full grid's) spent when
the hypervolume of the networks trained to the full budget first reaches 95% of
the full grid's; the fraction of the true front's trials trained to the full
budget; and the compute spent in all.

The hypervolume's reference point is the grid's worst final accuracy and 1.1x
its largest size: with accuracy 0 as the reference the region below the worst
network dwarfs the front, and even a random-order grid with no stopping shows
nearly all of the final hypervolume early, which says nothing.

Schedulers: grid (no stopping); asha (Ray Tune's own asynchronous successive
halving on accuracy alone); moasha (Syne Tune's MOASHA, its quota over
non-dominated sorting of the reported accuracy and size, re-implemented to
decide exactly as it does, quirk included: see `asha.Moasha`); moasha_own_rank (the
same with the quirk mended); pareto (explorer.pareto_scheduler, pausing and
promoting as it does live, and starting the trials in its size-spread order as
a sweep over enumerated points does); and, to tell the two apart,
pareto_arrival (its stopping alone, trials started as they arrive, as with a
searcher that proposes one point at a time) and grid_spread (its start order
alone, no stopping).
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import re

import moocore
import numpy as np
import pandas as pd

from explorer.analysis.asha import Moasha, RayAsha
from explorer.analysis.pareto import pareto_mask
from explorer.pareto_scheduler import PAUSE, STOP, ParetoRungs, rungs, spread_order

SCHEDULERS = (
    "grid", "asha", "moasha", "moasha_own_rank", "pareto", "pareto_arrival", "grid_spread"
)  # fmt: skip
# the schedulers that start trials in the Pareto-aware order rather than as they arrive
SPREAD = ("pareto", "grid_spread")
# size objectives computed from the architecture, in the order the replay prefers
SIZES = ("bytes_int8", "bytes_f32", "params", "flops")
TARGET = 0.95  # of the full grid's hypervolume
OBJ = {"accuracy": "max", "size": "min"}  # a replay's objectives: its curves and sizes


@dataclasses.dataclass
class Curves:
    """Per trial: its accuracy by epoch (all `budget` of them) and its known size."""

    accuracy: dict[str, np.ndarray]
    size: dict[str, float]
    budget: int
    size_column: str

    @property
    def trials(self) -> list[str]:
        return sorted(self.accuracy)


def size_column(objectives: dict[str, str]) -> str:
    """The replay's size axis: the sweep's first objective known before training."""
    return next((c for c in objectives if c in SIZES), "params")


def full_curves(rows: pd.DataFrame, curves: pd.DataFrame, size: str = "params") -> Curves:
    """The ok trials whose curves reach the sweep's full budget, every epoch recorded
    and finite (a diverged trial is left out), and whose size is known."""
    if size not in rows:
        raise ValueError(f"size: expected a column of the rows such as {', '.join(SIZES)}")
    ok = rows[rows["status"] == "ok"].set_index("trial_id")
    curves = curves[curves["trial_id"].isin(ok.index)]
    budget = int(curves["epoch"].max()) if len(curves) else 0
    acc, sizes = {}, {}
    for tid, c in curves.groupby("trial_id"):
        c = c.sort_values("epoch")
        curve, known = c["accuracy"].to_numpy(float), float(ok.loc[tid, size])
        if len(c) == budget and int(c["epoch"].max()) == budget and np.isfinite(curve).all():
            if np.isfinite(known):
                acc[tid], sizes[tid] = curve, known
    return Curves(acc, sizes, budget, size)


def simulate(
    name: str, order: list[str], data: Curves, workers: int, eta: int, ref, trace=None, judge=None
) -> dict:
    """One arrival order: compute spent when the hypervolume first reaches TARGET of
    the grid's (`ref`: Reference), what finished, and the compute spent in all.

    Each worker trains one epoch per time step; a trial that starts when a worker
    frees at time `now` reports its first epoch at now + 1. The Pareto-aware
    scheduler is driven as it is live: its paused trials are reviewed whenever a
    trial stops or finishes, and promoted ones resume first, where they paused.
    `trace`, a list, receives (time, trial, epoch, decision) for every epoch.
    `judge(objectives, budget, eta)` makes the Pareto-aware scheduler's decisions
    (ParetoRungs by default; a variant to compare)."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler: expected one of {', '.join(SCHEDULERS)}, got {name!r}")
    acc, sizes, budget = data.accuracy, data.size, data.budget
    if name in SPREAD:
        order = [order[i] for i in spread_order([[sizes[t]] for t in order])]
    kind = name.removesuffix("_arrival").removesuffix("_spread")
    if kind == "pareto":
        judge = (judge or _default_judge)(OBJ, budget, eta)
    elif name == "asha":
        quota = RayAsha(budget, eta)
    elif name in ("moasha", "moasha_own_rank"):
        quota = Moasha(budget, eta, sizes, own_rank=name == "moasha_own_rank")
    queue = collections.deque((t, 0) for t in order)  # (trial, epochs done)
    running: list[tuple[int, int, str, int]] = []  # (time its epoch ends, seq, trial, done)
    paused: dict[str, int] = {}  # paused trial -> epochs done (resumes from its checkpoint)
    spent, finished, at95, now, seq = 0, [], None, 0, itertools.count()
    while queue or running or paused:
        if not queue and not running:  # only paused trials left: resume the most hopeful
            tid = judge.unblock()
            queue.append((tid, paused.pop(tid)))
        while queue and len(running) < workers:
            tid, done = queue.popleft()
            heapq.heappush(running, (now + 1, next(seq), tid, done))
        now, _, tid, done = heapq.heappop(running)
        t = done + 1
        spent += 1
        value = acc[tid][t - 1]
        stop = pause = False
        if kind == "pareto":
            said = judge.on_result(tid, t, {"accuracy": value, "size": sizes[tid]})
            stop, pause = said == STOP, said == PAUSE
        elif kind != "grid":
            stop = quota.decide(tid, t, value)
        if trace is not None:
            trace.append((now, tid, t, "stop" if stop else "pause" if pause else "go"))
        if t == budget:
            finished.append(tid)
            if at95 is None and ref.hv(finished, data) >= TARGET * ref.grid:
                at95 = spent
        elif pause:
            paused[tid] = t
        elif not stop:
            heapq.heappush(running, (now + 1, next(seq), tid, t))
        if kind == "pareto" and (t == budget or stop):
            if t == budget:
                judge.on_complete(tid, {"epoch": t, "accuracy": value, "size": sizes[tid]})
            else:
                judge.on_complete(tid, {"epoch": t})  # stopped: no longer a rival
            stopped, promote = judge.review()
            for p in stopped:
                paused.pop(p)
            for p in promote:
                judge.promoted(p)
            queue.extendleft((p, paused.pop(p)) for p in reversed(promote))
    return {"at95": at95, "finished": set(finished), "spent": spent}


def _default_judge(objectives: dict[str, str], budget: int, eta: int) -> ParetoRungs:
    return ParetoRungs(objectives, budget, grace=1, eta=eta)


@dataclasses.dataclass
class Reference:
    """The hypervolume's reference point (minimised: -accuracy, size) and the grid's
    hypervolume against it."""

    point: np.ndarray
    grid: float = 0.0

    @classmethod
    def of(cls, data: Curves, point=None) -> Reference:
        """The reference for `data`: `point` if given, else the worst final accuracy
        and 1.1x the largest size; with the whole grid's hypervolume filled in."""
        if point is None:
            final = [data.accuracy[t][-1] for t in data.trials]
            point = [-min(final), 1.1 * max(data.size[t] for t in data.trials)]
        ref = cls(np.asarray(point, dtype=float))
        ref.grid = ref.hv(data.trials, data)
        return ref

    def hv(self, trials, data: Curves) -> float:
        x = np.array([[-data.accuracy[t][-1], data.size[t]] for t in trials]).reshape(-1, 2)
        x = x[(x < self.point).all(axis=1)]  # only networks better than the reference count
        return float(moocore.hypervolume(x, ref=self.point)) if len(x) else 0.0


def truth(data: Curves) -> tuple[Reference, set[str]]:
    """The recorded trials' reference point and hypervolume, and their true front."""
    final = pd.DataFrame({"accuracy": [data.accuracy[t][-1] for t in data.trials],
                          "size": [data.size[t] for t in data.trials]})  # fmt: skip
    front = {t for t, on in zip(data.trials, pareto_mask(final, OBJ), strict=True) if on}
    return Reference.of(data), front


@dataclasses.dataclass
class Replay:
    """What `replay` measured: one row per scheduler, and the setting it ran in."""

    figures: pd.DataFrame  # index scheduler; compute_to_95pct, front_recall, total_compute
    trials: int
    budget: int
    front: int
    reference: dict[str, float]
    orders: int
    workers: int
    eta: int
    size_column: str

    def key_values(self) -> str:
        return " ".join(
            f"{s}_{k}={v:.3f}" for s, row in self.figures.iterrows() for k, v in row.items()
        )

    def describe(self) -> str:
        return (
            f"{self.trials} trials x {self.budget} epochs, true front {self.front}, "
            f"reference accuracy {self.reference['accuracy']:.4f}, {self.size_column} "
            f"{self.reference['size']:.0f}; {self.orders} orders, {self.workers} workers, "
            f"eta {self.eta}"
        )


def replay(
    data: Curves,
    schedulers=SCHEDULERS,
    orders: int = 20,
    workers: int = 2,
    eta: int = 3,
    seed: int = 0,
    judge=None,
) -> Replay:
    """Replay each scheduler over `orders` random arrival orders of `data`'s trials
    (`judge`: see `simulate`)."""
    if len(data.accuracy) < 4 or data.budget < 2:
        raise ValueError(
            f"replay: needs at least 4 trials with full curves of 2+ epochs, "
            f"got {len(data.accuracy)} of {data.budget}"
        )
    if orders < 1 or workers < 1:
        raise ValueError(f"replay: orders and workers must be 1 or more, got {orders}, {workers}")
    rungs(data.budget, 1, eta)  # checks eta
    trials = data.trials
    ref, front = truth(data)
    total = len(trials) * data.budget
    rng = np.random.default_rng(seed)
    arrivals = [list(rng.permutation(trials)) for _ in range(orders)]
    rows = {}
    for name in schedulers:
        runs = [simulate(name, o, data, workers, eta, ref, judge=judge) for o in arrivals]
        rows[name] = {
            "compute_to_95pct": np.mean(
                [(r["at95"] if r["at95"] is not None else total) / total for r in runs]
            ),
            "front_recall": np.mean([len(front & r["finished"]) / len(front) for r in runs]),
            "total_compute": np.mean([r["spent"] / total for r in runs]),
        }
    figures = pd.DataFrame.from_dict(rows, orient="index").rename_axis("scheduler")
    reference = {"accuracy": -float(ref.point[0]), "size": float(ref.point[1])}
    return Replay(
        figures, len(trials), data.budget, len(front), reference, orders, workers, eta,
        data.size_column,
    )  # fmt: skip


def architecture(trial_id: str) -> str:
    """A trial's architecture: its id without the seed (`name-p0003-s1` -> `name-p0003`)."""
    return re.sub(r"-s\d+$", "", trial_id)


def subspaces(
    data: Curves,
    architectures: int = 16,
    draws: int = 50,
    schedulers=SCHEDULERS,
    orders: int = 8,
    workers: int = 2,
    eta: int = 3,
    seed: int = 0,
    judge=None,
) -> pd.DataFrame:
    """How much a figure of `replay` owes to the one space it was measured on: replay
    `draws` random subspaces of `architectures` architectures each (all their seeds),
    each against its own full grid. Per scheduler: the mean and median over the draws
    of its compute to 95% as a multiple of the random-order grid's in the same draw,
    the share of draws where it needs more than the grid, and its mean and lowest
    front recall (`judge`: see `simulate`)."""
    groups = collections.defaultdict(list)
    for t in data.trials:
        groups[architecture(t)].append(t)
    names = sorted(groups)
    if not 2 <= architectures <= len(names) or draws < 1:
        raise ValueError(
            f"subspaces: expected 2 to {len(names)} architectures and 1+ draws, "
            f"got {architectures} and {draws}"
        )
    rng = np.random.default_rng(seed)
    ratios, recalls = collections.defaultdict(list), collections.defaultdict(list)
    both = tuple(dict.fromkeys(("grid", *schedulers)))
    for _ in range(draws):
        keep = [t for a in rng.choice(names, architectures, replace=False) for t in groups[a]]
        part = Curves(
            {t: data.accuracy[t] for t in keep}, {t: data.size[t] for t in keep},
            data.budget, data.size_column,
        )  # fmt: skip
        f = replay(part, both, orders, workers, eta, int(rng.integers(2**31)), judge).figures
        for s in schedulers:
            ratios[s].append(f.loc[s, "compute_to_95pct"] / f.loc["grid", "compute_to_95pct"])
            recalls[s].append(f.loc[s, "front_recall"])
    return pd.DataFrame(
        {
            s: {
                "ratio_mean": np.mean(ratios[s]),
                "ratio_median": np.median(ratios[s]),
                "worse_than_grid": np.mean(np.asarray(ratios[s]) > 1.0),
                "recall_mean": np.mean(recalls[s]),
                "recall_min": np.min(recalls[s]),
            }
            for s in schedulers
        }
    ).T.rename_axis("scheduler")
