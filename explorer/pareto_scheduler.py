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
spread between seeds). Early epochs are noisy (networks overtake each other
long after them: experiments/pareto_search/settle.py), so a finished rival must
also have been ahead of the trial *at the same epoch* by more than the finished
trials' gains from that epoch on differ (the most one of them caught up on
another): a trial that could still overtake it as much as one already has is
not stopped.

A trial dominated by a *finished* network stops. One dominated only by rivals
still training (at the same rung) pauses, with its checkpoint: those rivals'
final accuracy is not known yet. Each time a network finishes, the paused are
judged again: dominated by what has finished, they stop; no longer dominated
by anything still training, they are promoted and resume from their
checkpoint, where they paused. So a network stops only for what is known.

Knowing the sizes also says which network to *start* next (`spread_order`):
the one farthest, over the known objectives in log scale, from every network
started so far, from the smallest up. The front is a curve over size; spreading
the first trials along it finds a network near each end and in the gaps early,
instead of wherever a random order happens to fall, trains one seed of every
architecture before any second one, and gives the stopping rule small finished
rivals soon. The sweep starts enumerated points (grid, random) in this order.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from explorer.metrics import DIRECTIONS

CONTINUE, PAUSE, STOP = "continue", "pause", "stop"
# The metrics learned epoch by epoch, in the order the scheduler prefers to judge by.
# A compressed network's accuracy is known only at the end; until then a trial
# reports its accuracy before compression in its place, which compression seldom
# beats (an optimistic stand-in; docs/compression.md).
LEARNED = ("accuracy", "compressed_accuracy", "int8_accuracy", "top5")


def rungs(max_t: int, grace: int = 1, eta: int = 3) -> list[int]:
    """The epochs at which trials are judged: grace, grace*eta, ... below max_t."""
    if int(eta) != eta or eta < 2 or int(grace) != grace or grace < 1:
        raise ValueError(f"rungs: expected integers grace >= 1 and eta >= 2, got {grace}, {eta}")
    out, t = [], grace
    while t < max_t:
        out.append(t)
        t *= eta
    return out


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
        pause: bool = True,
    ):
        if learned not in objectives:
            raise ValueError(f"objectives: must include the learned metric {learned!r}")
        self.learned, self.max_t, self.min_margin = learned, max_t, min_margin
        # without checkpoints a paused trial would start again: then stop instead
        self.pause = pause
        # trial -> (rung, optimistic self, value at the rung)
        self.paused: dict[str, tuple[int, Seen, float]] = {}
        self.stopped: set[str] = set()
        self.why: dict[str, str] = {}  # trial -> why it was stopped or paused, in words
        self.sign = 1.0 if objectives[learned] == "max" else -1.0  # learned, maximised
        self.known = {k: d for k, d in objectives.items() if k != learned}
        self.rungs = rungs(max_t, grace, eta)
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
        self.at_rung[t][trial] = Seen(known, value)
        hope = Seen(known, value + self.margin(curve, t))
        if self._beaten(t, value, hope):
            self.stopped.add(trial)
            self.why[trial] = f"stopped at epoch {t}: dominated by networks that finished"
            return STOP
        if dominated(hope, self._training_at(t, trial)):
            if not self.pause:
                self.stopped.add(trial)
                self.why[trial] = f"stopped at epoch {t}: dominated by networks still training"
                return STOP
            self.paused[trial] = (t, hope, value)
            self.why[trial] = f"paused at epoch {t}: dominated by networks still training"
            return PAUSE
        return CONTINUE

    def _beaten(self, t: int, value: float, hope: Seen) -> bool:
        """A finished network no larger ends above the trial's optimistic estimate and
        was ahead of it at epoch t by more than any finished trial caught up after t."""
        gains = [c[max(c)] - c[t] for c in self.finished_curves.values() if t in c]
        catch_up = max(self.min_margin, max(gains, default=0.0) - min(gains, default=0.0))
        return any(
            dominated(hope, [rival])
            and self.finished_curves[tid].get(t, -math.inf) > value + catch_up
            for tid, rival in self.finished.items()
        )

    def _training_at(self, t: int, but: str) -> list[Seen]:
        """Rivals at rung t that may still finish (neither stopped nor finished)."""
        return [
            s
            for tid, s in self.at_rung[t].items()
            if tid != but and tid not in self.stopped and tid not in self.finished
        ]

    def review(self) -> tuple[list[str], list[str]]:
        """(to stop, to promote) among the paused, given what has finished by now."""
        stop, promote = [], []
        for tid, (t, hope, value) in self.paused.items():
            if self._beaten(t, value, hope):
                stop.append(tid)
            elif not dominated(hope, self._training_at(t, tid)):
                promote.append(tid)
        for tid in stop:
            self.stopped.add(tid)
            del self.paused[tid]
        return stop, promote

    def promoted(self, trial: str) -> None:
        """A paused trial that resumes."""
        self.paused.pop(trial, None)

    def unblock(self) -> str | None:
        """The paused trial to resume when nothing else can run (the most hopeful)."""
        if not self.paused:
            return None
        best = max(self.paused, key=lambda tid: self.paused[tid][1].value)
        self.promoted(best)
        return best

    def margin(self, curve: dict[int, float], t: int) -> float:
        """How much better than now the trial could still end (optimistic)."""
        before = [e for e in curve if e < t]
        gain = max(curve[t] - curve[max(before)], 0.0) / (t - max(before)) if before else 0.0
        seen = [c[max(c)] - c[t] for c in self.finished_curves.values() if t in c]
        return max(self.min_margin, gain * (self.max_t - t), *seen)

    def on_complete(self, trial: str, result: dict) -> None:
        """A trial that trained to the end: a reference at its final value."""
        self.paused.pop(trial, None)
        if int(result.get("epoch", 0)) >= self.max_t and self.learned in result:
            value = self.sign * float(result[self.learned])
            if not math.isnan(value):
                self.curves.setdefault(trial, {})[int(result["epoch"])] = value
                self.finished[trial] = Seen(self._known(result), value)
                self.finished_curves[trial] = self.curves.get(trial, {})
                return
        self.stopped.add(trial)  # ended without a final value (diverged): no longer a rival


def farthest_first(x: np.ndarray, start: int | None = None, seen=None) -> list[int]:
    """x's row indices, each next the row farthest (Euclidean) from the rows chosen
    before it and from `seen` (ties: the lowest index); the first is `start` if given."""
    x = np.asarray(x, dtype=float)
    dmin = np.full(len(x), np.inf)
    for s in np.asarray(seen if seen is not None else [], dtype=float):  # O(n) memory
        dmin = np.minimum(dmin, np.linalg.norm(x - s, axis=1))
    order: list[int] = []
    for _ in range(len(x)):
        i = start if start is not None and not order else int(np.argmax(dmin))
        order.append(i)
        dmin = np.minimum(dmin, np.linalg.norm(x - x[i], axis=1))
        dmin[order] = -np.inf
    return order


def spread_order(known, seen=None) -> list[int]:
    """The order to start networks in, given their known objectives (rows of positive
    sizes, one column per objective): from the smallest, each next the farthest in
    log scale from every one started, counting `seen` (rows already trained) as
    started. A column with a missing value is left out; equal rows keep their order."""
    known = np.asarray(known, dtype=float).reshape(len(known), -1)
    seen = np.asarray(seen if seen is not None else [], dtype=float).reshape(-1, known.shape[1])
    both = np.log(np.maximum(np.vstack([known, seen]), 1.0))
    keep = ~np.isnan(both).any(axis=0)
    if not keep.any() or len(known) < 2:
        return list(range(len(known)))
    both = both[:, keep]
    span = both.max(axis=0) - both.min(axis=0)
    both = both / np.where(span > 0, span, 1.0)  # each objective counts alike
    z, z_seen = both[: len(known)], both[len(known) :]
    start = None if len(z_seen) else int(np.argmin(z.sum(axis=1)))
    return farthest_first(z, start, z_seen)


def start_order(objectives: dict[str, str], known: list[dict], seen=()) -> list[int]:
    """`spread_order` over the space's objectives known before training (all but the
    learned ones), given as one dict per network."""
    keys = [k for k in objectives if k not in LEARNED]
    if not keys:
        return list(range(len(known)))

    def table(rows):
        return [[float(r.get(k, math.nan)) for k in keys] for r in rows]

    return spread_order(table(known), table(seen))


def dominated(me: Seen, others) -> bool:
    """Some other is no larger in every known objective and better in the learned one."""
    return any(
        o.value > me.value and all(a <= b for a, b in zip(o.known, me.known, strict=True))
        for o in others
    )


def make(objectives: dict[str, str], max_t: int, time_attr: str = "epoch", pause: bool = True):
    """The Ray Tune scheduler: FIFO, with stops and pauses at rungs and promotions.

    pause: whether trials have checkpoints to resume from (else PAUSE becomes STOP).
    """
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    for k in objectives:
        if k not in DIRECTIONS:
            raise ValueError(f"objectives: unknown metric {k!r}")
    learned = next((m for m in LEARNED if m in objectives), "accuracy")

    class ParetoScheduler(FIFOScheduler):
        """Ray Tune's side of ParetoRungs."""

        def __init__(self):
            super().__init__()
            self.rungs = ParetoRungs(objectives, max_t, learned=learned, pause=pause)
            self.trials: dict[str, Trial] = {}
            self.promote: list[str] = []
            # Tune id -> why the trial was paused or stopped, in words; the row writer
            # puts it in the trial's rows (explorer.sweep_rows)
            self.why = self.rungs.why

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True  # the objectives come from the space, not from Tune's metric

        def on_trial_add(self, tune_controller, trial):
            self.trials[trial.trial_id] = trial

        def on_trial_result(self, tune_controller, trial, result):
            t = int(result.get(time_attr, 0))
            if result.get("done"):
                return TrialScheduler.CONTINUE
            decision = self.rungs.on_result(trial.trial_id, t, result)
            if decision == CONTINUE:
                return TrialScheduler.CONTINUE
            return TrialScheduler.PAUSE if decision == PAUSE else TrialScheduler.STOP

        def on_trial_complete(self, tune_controller, trial, result):
            if result:
                self.rungs.on_complete(trial.trial_id, result)
            self._review(tune_controller)

        def on_trial_error(self, tune_controller, trial):
            self.rungs.stopped.add(trial.trial_id)  # no longer a rival that may finish
            self._review(tune_controller)

        def _review(self, tune_controller) -> None:
            stop, promote = self.rungs.review()
            for tid in stop:
                trial = self.trials.get(tid)
                if trial is not None and trial.status == Trial.PAUSED:
                    self.why[tid] = "paused, then stopped: dominated by networks that finished"
                    tune_controller.stop_trial(trial)
            self.promote += [t for t in promote if t not in self.promote]

        def choose_trial_to_run(self, tune_controller):
            # promoted trials first: they may still reach the front, and their final
            # values let the scheduler judge the rest sooner
            for tid in list(self.promote):
                trial = self.trials.get(tid)
                self.promote.remove(tid)
                if trial is not None and trial.status == Trial.PAUSED:
                    self.rungs.promoted(tid)
                    return trial
            trials = tune_controller.get_trials()
            for trial in trials:
                if trial.status == Trial.PENDING:
                    return trial
            if self.rungs.paused and not any(t.status == Trial.RUNNING for t in trials):
                tid = self.rungs.unblock()  # never leave the sweep waiting on itself
                trial = self.trials.get(tid)
                if trial is not None and trial.status == Trial.PAUSED:
                    return trial
            return None

    return ParetoScheduler()
