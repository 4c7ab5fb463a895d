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
from typing import Any

# The entries take plain values (objectives {metric: "min" | "max"}, seeds, epochs), not
# a Space: the space module reads this registry, so this one imports nothing of the package.
Objectives = dict[str, str]


@dataclasses.dataclass(frozen=True)
class Method:
    """How a sweep picks its points."""

    name: str
    sampled: bool  # points drawn at random (num_samples of them), else the full grid
    # a searcher proposes the points as results come in (sweep.SEARCHERS builds it);
    # else the driver enumerates them
    proposes: bool = False
    # the searcher proposes enumerated points ({"cfg": ...}), not values Tune samples
    enumerated: bool = False


METHODS: dict[str, Method] = {
    "grid": Method("grid", sampled=False),
    "random": Method("random", sampled=True),
    "tpe": Method("tpe", sampled=True, proposes=True),  # Optuna's TPE inside Tune
    # num_samples points by expected hypervolume improvement (explorer.proposer)
    "ehvi": Method("ehvi", sampled=True, proposes=True, enumerated=True),
}


def _asha(objectives: Objectives, epochs: int, pause: bool = True) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=1, reduction_factor=2)


def _pareto(objectives: Objectives, epochs: int, pause: bool = True) -> Any:
    from explorer import pareto_scheduler

    return pareto_scheduler.make(dict(objectives), epochs, pause=pause)


# name -> scheduler(objectives, epochs, pause) -> a Ray Tune TrialScheduler; None:
# every trial runs to the end. pause: trials checkpoint every epoch, so a paused
# one can resume where it paused.
SCHEDULERS: dict[str, Callable[..., Any] | None] = {
    "none": None,
    "asha": _asha,  # successive halving on the first objective alone
    "pareto": _pareto,  # stops a trial dominated at its own size (explorer.pareto_scheduler)
}


def scheduler(name: str, objectives: Objectives, epochs: int, pause: bool = True) -> Any:
    """The named scheduler for these objectives and budget, or None."""
    make = SCHEDULERS[name]
    return make(objectives, epochs, pause) if make else None
