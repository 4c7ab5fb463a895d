"""The ASHA schedulers a replay compares against, fed its results directly.

`RayAsha` is Ray Tune's own asynchronous successive halving on accuracy alone;
`Moasha` re-implements Syne Tune's MOASHA decision by decision (the package
itself is not a dependency; benchmarks/moasha_check.py compares the two).
"""

from __future__ import annotations

import types

import moocore
import numpy as np

from explorer.pareto_scheduler import farthest_first, rungs


class RayAsha:
    """Ray Tune's own AsyncHyperBandScheduler (one bracket, accuracy alone), fed the
    replay's results directly: it reads nothing of a trial but its id."""

    def __init__(self, budget: int, eta: int):
        from ray.tune.schedulers import AsyncHyperBandScheduler

        self.budget, self.added = budget, set()
        self.scheduler = AsyncHyperBandScheduler(
            time_attr="epoch", metric="accuracy", mode="max", max_t=budget,
            grace_period=1, reduction_factor=eta, brackets=1,
        )  # fmt: skip

    def decide(self, tid: str, t: int, acc: float) -> bool:
        """True to stop (at the full budget the trial has finished: never)."""
        trial = types.SimpleNamespace(trial_id=tid)
        if tid not in self.added:
            self.scheduler.on_trial_add(None, trial)
            self.added.add(tid)
        if t >= self.budget:
            return False
        result = {"epoch": t, "accuracy": acc}
        return self.scheduler.on_trial_result(None, trial, result) == "STOP"


class Moasha:
    """Syne Tune's MOASHA (0.16.0, default NonDominatedPriority, metrics [-accuracy,
    size] minimised) as it decides, re-implemented: checked against the installed
    package on 1,346 decisions (hand-made rungs and random interleavings with ties), none differing
    (benchmarks/moasha_check.py).

    Its rule (syne_tune/optimizer/schedulers/asha.py, Bracket.on_result): the first
    result at a rung goes on; otherwise, the new result last among the n recorded
    there, stop if rank / n > 1 / eta, rank being its searchsorted place among the
    sorted priorities (ties share the better place). The priorities it passes are
    nondominated_sort's list of indices in sorted order, used as if they were each
    row's priority: so the rank it reads is that of the index sorted last, not the
    new trial's own, and it can stop the best trial of a rung. `own_rank` reads the
    new trial's own place instead (what MOASHA means to do).
    """

    def __init__(self, budget: int, eta: int, sizes: dict, own_rank: bool = False):
        self.rungs, self.eta, self.sizes = set(rungs(budget, 1, eta)), eta, sizes
        self.own_rank = own_rank
        self.seen: dict[int, list[tuple[str, float]]] = {r: [] for r in self.rungs}

    def decide(self, tid: str, t: int, acc: float) -> bool:
        """True to stop."""
        if t not in self.rungs:
            return False
        seen = self.seen[t]
        seen.append((tid, acc))
        if len(seen) == 1:
            return False
        x = np.array([[-a, self.sizes[i]] for i, a in seen], float)
        order = np.array(_nondominated_sort(x))
        if self.own_rank:  # each row's place in the sorted order
            priorities = np.empty(len(order), int)
            priorities[order] = np.arange(len(order))
        else:
            priorities = order
        ranks = np.searchsorted(sorted(priorities), priorities) / len(priorities)
        return bool(ranks[-1] > 1 / self.eta)


def _nondominated_sort(x: np.ndarray) -> list[int]:
    """Syne Tune's nondominated_sort(x, dim=0) (multiobjective/non_dominated_priority.py):
    the indices front by front, each front in an epsilon-net order seeded at its
    lowest first column (unnormalised Euclidean distances), indexed, as there, by
    the epsilon-net's ranks rather than its order."""
    remaining, out = np.arange(len(x)), []
    while remaining.size:
        mask = moocore.is_nondominated(x[remaining], maximise=False, keep_weakly=True)
        front = remaining[mask]
        out += front[_epsilon_net_ranks(x[front])].tolist()
        remaining = remaining[~mask]
    return out


def _epsilon_net_ranks(x: np.ndarray) -> np.ndarray:
    """Each point's place in Syne Tune's epsilon-net order: from the lowest first
    column, each next the point farthest from those chosen (ties: the lowest index)."""
    order = farthest_first(x, start=int(np.argmin(x[:, 0])))
    ranks = np.empty(len(order), int)
    ranks[order] = np.arange(len(order))
    return ranks
