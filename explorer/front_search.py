"""Ray Tune's side of the `ehvi` method: `FrontProposer` choosing a sweep's points.

The candidates are the space's grid (every point, when the space is discrete and
within the grid limit) or a seeded sample of that many points, enumerated and
sized once, here; points over the space's constraints are never candidates.
Each proposal is one point, trained as one trial per seed group; every epoch a
trial reports feeds the proposer, so the scheduler's stopped trials count at
their last rung. Rows and curves already in the sweep folder are fed first, so
a resumed sweep never proposes a point it has trained.
"""

from __future__ import annotations

import collections

import pandas as pd
from ray.tune.search import Searcher

from explorer import results, rows
from explorer import space as spaces
from explorer.pareto_scheduler import LEARNED
from explorer.proposer import FrontProposer, encode


class FrontSearch(Searcher):
    """Proposes the candidate with the highest expected hypervolume improvement."""

    def __init__(self, space: spaces.Space, groups: list[list[int]], table=None, curves=None):
        learned = next((m for m in LEARNED if m in space.objectives), None)
        known_keys = [k for k in space.objectives if k != learned]
        if learned is None or not known_keys or space.objectives[learned] != "max":
            raise ValueError(
                "search.method ehvi: expected objectives with one learned metric to "
                f"maximise ({', '.join(LEARNED)}) and sizes to minimise, got "
                f"{dict(space.objectives)}"
            )
        super().__init__(metric=learned, mode="max")
        self.space, self.groups, self.learned = space, groups, learned
        allowed = rows.candidates(space)
        if not allowed:
            raise ValueError("search.method ehvi: every point breaks the constraints")
        self.points = pts = [p for p, _ in allowed]
        known = [[float(s[k]) for k in known_keys] for _, s in allowed]
        self.proposer = FrontProposer(
            encode([p.values for p in pts], space.varied), known, space.recipe.epochs,
            seed=space.search.seed,
        )  # fmt: skip
        self.at = {p.index: i for i, p in enumerate(pts)}  # point index -> candidate
        self.trials: dict[str, int] = {}  # Tune trial id -> candidate
        self.queue: collections.deque = collections.deque()  # seed groups still to start
        self.running = collections.Counter()  # candidate -> trials not yet ended
        self._feed(table, curves)

    @classmethod
    def from_folder(cls, space: spaces.Space, groups: list[list[int]], out) -> FrontSearch:
        """The searcher of a sweep, fed what its folder already holds."""
        try:
            return cls(space, groups, results.load(out), results.load_curves(out))
        except results.ResultsError:  # nothing written yet
            return cls(space, groups)

    def _feed(self, table: pd.DataFrame | None, curves: pd.DataFrame | None) -> None:
        """What the sweep folder already holds: those points are proposed, and known."""
        if table is None or not len(table):
            return
        ours = table[table["point"].isin(list(self.at))]
        for index, rows_of in ours.groupby("point"):
            i = self.at[int(index)]
            self.proposer.proposed.append(i)
            seeds = set(rows_of["seed"])
            missing = [g for g in self.groups if not set(g) <= seeds]  # an interrupted point
            self.queue.extend((i, g) for g in missing)
            if not missing:
                self.proposer.end(i)
        if curves is not None and len(curves):
            mine = curves[curves["trial_id"].isin(set(ours["trial_id"]))]
            point = ours.set_index("trial_id")["point"]
            means = mine.groupby(["trial_id", "epoch"])[self.learned].mean()
            for (tid, epoch), value in means.items():
                self.proposer.observe(self.at[int(point[tid])], int(epoch), float(value))

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the objectives come from the space

    # A resumed sweep feeds the searcher from the sweep folder's rows and curves
    # (`_feed`), so Tune's own searcher checkpoint holds nothing it needs.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def suggest(self, trial_id: str):
        if not self.queue:
            got = self.proposer.propose(1)
            if not got:
                return Searcher.FINISHED
            self.queue.extend((got[0], g) for g in self.groups)
        i, seeds = self.queue.popleft()
        self.trials[trial_id] = i
        self.running[i] += 1
        p = self.points[i]
        return {"cfg": {"index": p.index, "values": p.values, "seeds": seeds,
                        "resume": [None] * len(seeds)}}  # fmt: skip

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        i = self.trials.get(trial_id)
        value = result.get(self.learned)
        if i is not None and value is not None and result.get("epoch"):
            self.proposer.observe(i, int(result["epoch"]), float(value))

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        i = self.trials.pop(trial_id, None)
        if i is None:
            return
        if result and not error:
            self.on_trial_result(trial_id, result)
        self.running[i] -= 1
        if self.running[i] <= 0:
            self.proposer.end(i)
