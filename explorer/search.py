"""Search methods and schedulers, one registry entry each.

A method either lets the driver enumerate the space's points (the grid, or a
seeded random sample: every point is known before the sweep starts), or hands
the choice to a searcher that proposes points as results come in (TPE). A
scheduler decides, epoch by epoch, whether a running trial goes on. Adding
either is one entry here and its test; `space`, `sweep` and the row writer
only ask an entry what it does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for types only: this module loads before explorer.space
    from explorer.space import Domain, Space


@dataclasses.dataclass(frozen=True)
class Method:
    """How a sweep picks its points."""

    name: str
    sampled: bool  # points drawn at random (num_samples of them), else the full grid
    # searcher(space, prior) -> a Ray Tune Searcher; None: the driver enumerates the points.
    # prior: finished points and their objectives, [(values, score or [scores])].
    searcher: Callable[[Space, list], Any] | None = None

    @property
    def proposes(self) -> bool:
        """A searcher proposes the points (they are numbered as trials start)."""
        return self.searcher is not None


def _optuna_tpe(space: Space, prior: list) -> Any:
    from ray.tune.search.optuna import OptunaSearch

    metrics, modes = list(space.objectives), list(space.objectives.values())
    return OptunaSearch(
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        seed=space.search.seed,
        points_to_evaluate=[p for p, _ in prior] or None,
        evaluated_rewards=[r for _, r in prior] or None,
    )


METHODS: dict[str, Method] = {
    "grid": Method("grid", sampled=False),
    "random": Method("random", sampled=True),
    "tpe": Method("tpe", sampled=True, searcher=_optuna_tpe),
}


def _asha(space: Space) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch", max_t=space.recipe.epochs, grace_period=1, reduction_factor=2
    )


def _pareto(space: Space) -> Any:
    from explorer import pareto_scheduler

    return pareto_scheduler.make(dict(space.objectives), space.recipe.epochs)


# name -> scheduler(space) -> a Ray Tune TrialScheduler; None: every trial runs to the end.
SCHEDULERS: dict[str, Callable[[Space], Any] | None] = {
    "none": None,
    "asha": _asha,  # successive halving on the first objective alone
    "pareto": _pareto,  # stops a trial dominated at its own size (explorer.pareto_scheduler)
}


def method(space: Space) -> Method:
    """The space's search method."""
    return METHODS[space.search.method]


def scheduler(space: Space) -> Any:
    """The space's scheduler, or None."""
    make = SCHEDULERS[space.search.scheduler]
    return make(space) if make else None


def tune_domain(d: Domain) -> Any:
    """A space's domain as a Ray Tune search-space entry (for searchers)."""
    from ray import tune

    if d.kind == "fixed":
        return d.values[0]
    if d.kind == "values":
        return tune.choice(list(d.values))
    if d.kind == "uniform":
        return tune.uniform(d.low, d.high)
    if d.kind == "loguniform":
        return tune.loguniform(d.low, d.high)
    return tune.randint(int(d.low), int(d.high) + 1)
