"""A Pareto-aware early-stopping scheduler: stop what cannot reach the front.

In a design-space sweep half of every objective is known before training: a
network's parameters, bytes and FLOPs. Only the learned one (accuracy) comes
epoch by epoch. So at each rung (epochs grace, grace*eta, grace*eta^2, ...) a
trial is judged at its own size: it stops when even an optimistic estimate of
its final accuracy is dominated by a network already seen that is no larger in
every known objective and better in the learned one (finished networks at
their final accuracy, and the others that reached the same rung at theirs). A
network smaller than everything seen is never stopped for being less accurate.

The optimism is the largest of: the trial's latest gain per epoch carried on to
the full budget (learning curves flatten, so this overestimates); the most any
finished trial gained from this epoch to its end; and `min_margin` (about the
spread between seeds). Stopped trials end; pausing and promotion from
checkpoints are not implemented yet.
"""

from __future__ import annotations

import dataclasses
import math

from explorer.metrics import DIRECTIONS

CONTINUE, STOP = "continue", "stop"
# The metrics learned epoch by epoch, in the order the scheduler prefers to judge by.
# A compressed network's accuracy is known only at the end; until then a trial
# reports its accuracy before compression in its place, which compression seldom
# beats (an optimistic stand-in; docs/compression.md).
LEARNED = ("accuracy", "compressed_accuracy", "int8_accuracy", "top5")


@dataclasses.dataclass
class Seen:
    """A network's known objectives (minimised) and its learned value at some epoch."""

    known: tuple[float, ...]
    value: float


class ParetoRungs:
    """The scheduler's decisions, free of Ray (tested on hand-made curves)."""

    def __init__(
        self,
        objectives: dict[str, str],
        max_t: int,
        learned: str = "accuracy",
        grace: int = 1,
        eta: int = 3,
        min_margin: float = 0.01,
    ):
        if learned not in objectives:
            raise ValueError(f"objectives: must include the learned metric {learned!r}")
        self.learned, self.max_t, self.min_margin = learned, max_t, min_margin
        self.sign = 1.0 if objectives[learned] == "max" else -1.0  # learned, maximised
        self.known = {k: d for k, d in objectives.items() if k != learned}
        self.rungs = []
        t = grace
        while t < max_t:
            self.rungs.append(t)
            t *= eta
        self.finished: dict[str, Seen] = {}
        self.at_rung: dict[int, dict[str, Seen]] = {r: {} for r in self.rungs}
        self.curves: dict[str, dict[int, float]] = {}
        self.finished_curves: dict[str, dict[int, float]] = {}

    def _known(self, result: dict) -> tuple[float, ...]:
        return tuple(
            float(result[k]) if d == "min" else -float(result[k]) for k, d in self.known.items()
        )

    def on_result(self, trial: str, t: int, result: dict) -> str:
        """CONTINUE or STOP, for a trial that reported `result` after epoch t."""
        value = self.sign * float(result[self.learned])
        curve = self.curves.setdefault(trial, {})
        curve[t] = value
        if t not in self.at_rung or math.isnan(value):
            return CONTINUE
        known = self._known(result)
        me = Seen(known, value)
        rivals = [*self.finished.values(), *self.at_rung[t].values()]
        self.at_rung[t][trial] = me
        optimistic = value + self.margin(curve, t)
        for other in rivals:
            no_larger = all(o <= m for o, m in zip(other.known, known, strict=True))
            if no_larger and other.value > optimistic:
                return STOP
        return CONTINUE

    def margin(self, curve: dict[int, float], t: int) -> float:
        """How much better than now the trial could still end (optimistic)."""
        before = [e for e in curve if e < t]
        gain = max(curve[t] - curve[max(before)], 0.0) / (t - max(before)) if before else 0.0
        seen = [c[max(c)] - c[t] for c in self.finished_curves.values() if t in c]
        return max(self.min_margin, gain * (self.max_t - t), *seen)

    def on_complete(self, trial: str, result: dict) -> None:
        """A trial that trained to the end: a reference at its final value."""
        if int(result.get("epoch", 0)) >= self.max_t and self.learned in result:
            value = self.sign * float(result[self.learned])
            if not math.isnan(value):
                self.curves.setdefault(trial, {})[int(result["epoch"])] = value
                self.finished[trial] = Seen(self._known(result), value)
                self.finished_curves[trial] = self.curves.get(trial, {})


def make(objectives: dict[str, str], max_t: int, time_attr: str = "epoch"):
    """The Ray Tune scheduler (a FIFO scheduler that stops at rungs)."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    for k in objectives:
        if k not in DIRECTIONS:
            raise ValueError(f"objectives: unknown metric {k!r}")
    learned = next((m for m in LEARNED if m in objectives), "accuracy")

    class ParetoScheduler(FIFOScheduler):
        """Ray Tune's side of ParetoRungs."""

        def __init__(self):
            super().__init__()
            self.rungs = ParetoRungs(objectives, max_t, learned=learned)

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True  # the objectives come from the space, not from Tune's metric

        def on_trial_result(self, tune_controller, trial, result):
            t = int(result.get(time_attr, 0))
            if result.get("done"):
                return TrialScheduler.CONTINUE
            decision = self.rungs.on_result(trial.trial_id, t, result)
            return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

        def on_trial_complete(self, tune_controller, trial, result):
            if result:
                self.rungs.on_complete(trial.trial_id, result)

    return ParetoScheduler()
