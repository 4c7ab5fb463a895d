"""Replay proposers over a tabular benchmark: which network to train next, in simulated time.

Pool-based, as HPOBench and YAHPO replay a table: the pool is a sweep's
architectures (one trial each, with every epoch's accuracy recorded). A method
picks the next architecture from the pool whenever one of `workers` frees, and
is handed its recorded curve epoch by epoch; with the Pareto-aware scheduler
(explorer.pareto_scheduler, driven as `replay.simulate` drives it) a trial may
stop or pause at a rung. Compute is counted in trial-epochs, as a fraction of
training every architecture of the pool once to the full budget.

Methods: random (a random order of the pool); optuna_tpe and optuna_nsga2
(Optuna's own multi-objective TPESampler and NSGAIISampler, through its
ask-and-tell interface: a sampled point not in the pool becomes the nearest
untrained one, and Optuna is told that point and its objectives); ehvi
(explorer.proposer.FrontProposer, the registry's method of that name). Each
with `_pareto` appended runs under the Pareto-aware scheduler.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools

import numpy as np
import pandas as pd

from explorer.analysis import replay
from explorer.analysis.replay import OBJ, Curves, Reference, full_curves
from explorer.pareto_scheduler import PAUSE, STOP, ParetoRungs
from explorer.proposer import FrontProposer, encode

METHODS = ("random", "optuna_tpe", "optuna_nsga2", "ehvi")
OURS = "ehvi"
# ehvi without one of its parts, to tell what each gains: results before the last
# epoch (rungs) and the model of accuracy (model)
ABLATIONS = ("ehvi_no_rungs", "ehvi_no_model")
TARGETS = (0.95, 0.99)  # of the pool's hypervolume
RECALL_AT = 0.25  # of the pool's compute


@dataclasses.dataclass
class Pool:
    """The recorded architectures: curves and sizes (`Curves`), and each one's values
    of the space's varied keys, in `Curves.trials` order."""

    data: Curves
    values: list[dict]

    @property
    def trials(self) -> list[str]:
        return self.data.trials

    def subset(self, keep) -> Pool:
        """The pool of some of its trials (a part of the space)."""
        keep = [t for t in self.trials if t in set(keep)]
        at = {t: i for i, t in enumerate(self.trials)}
        d = self.data
        part = Curves({t: d.accuracy[t] for t in keep}, {t: d.size[t] for t in keep},
                      d.budget, d.size_column)  # fmt: skip
        return Pool(part, [self.values[at[t]] for t in keep])


class RandomOrder:
    """Random search over the pool: a random order, no repeats."""

    def __init__(self, pool: Pool, seed: int):
        self.order = list(np.random.default_rng(seed).permutation(len(pool.trials)))

    def propose(self, n: int = 1) -> list[int]:
        out, self.order = self.order[:n], self.order[n:]
        return [int(i) for i in out]

    def observe(self, i: int, epoch: int, accuracy: float) -> None:
        pass

    def end(self, i: int) -> None:
        pass


class OptunaPool:
    """An Optuna sampler choosing from the pool through ask and tell.

    Each key varied in the pool is a categorical parameter (as Ray Tune's
    `tune.choice` becomes one in OptunaSearch). An asked point not in the pool, or
    already trained, becomes the untrained pool point nearest in Hamming distance;
    the asked trial is told FAIL and the point trained is added as a trial of its
    own, so Optuna learns from what was really trained. A trial is told its
    accuracy when it ends (its last epoch's, if the scheduler stopped it), as
    OptunaSearch tells it in a sweep."""

    def __init__(self, pool: Pool, sampler: str, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.optuna = optuna
        keys = [k for k in pool.values[0] if len({repr(v[k]) for v in pool.values}) > 1]
        self.keys = keys
        self.labels = np.array([[repr(v[k]) for k in keys] for v in pool.values])
        self.dists = {
            k: optuna.distributions.CategoricalDistribution(sorted(set(self.labels[:, j])))
            for j, k in enumerate(keys)
        }
        make = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler}
        self.study = optuna.create_study(
            directions=["maximize", "minimize"], sampler=make[sampler](seed=seed)
        )
        self.sizes = [pool.data.size[t] for t in pool.trials]
        self.rng = np.random.default_rng(seed)
        self.left = set(range(len(pool.trials)))
        self.asked: dict[int, object] = {}  # pool index -> its Optuna trial
        self.last: dict[int, float] = {}

    def propose(self, n: int = 1) -> list[int]:
        out = []
        for _ in range(min(n, len(self.left))):
            trial = self.study.ask(self.dists)
            want = np.array([trial.params[k] for k in self.keys])
            left = np.array(sorted(self.left))
            dist = (self.labels[left] != want).sum(axis=1)
            i = int(self.rng.choice(left[dist == dist.min()]))
            self.left.discard(i)
            self.asked[i] = trial
            out.append(i)
        return out

    def observe(self, i: int, epoch: int, accuracy: float) -> None:
        self.last[i] = accuracy

    def end(self, i: int) -> None:
        """The trial ended (finished, stopped or failed): Optuna is told its values."""
        trial = self.asked.pop(i)
        values = [self.last.get(i, 0.0), self.sizes[i]]
        params = dict(zip(self.keys, self.labels[i], strict=True))
        if params == trial.params:
            self.study.tell(trial, values)
            return
        attrs = self.study.get_trials(deepcopy=False)[trial.number].system_attrs
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        self.study.add_trial(
            self.optuna.trial.create_trial(
                params=params, distributions=self.dists, values=values,
                system_attrs=dict(attrs),
            )
        )  # fmt: skip


def make_method(name: str, pool: Pool, seed: int):
    """The proposer of a method name (without `_pareto`)."""
    if name == "random":
        return RandomOrder(pool, seed)
    if name.startswith("optuna_"):
        return OptunaPool(pool, name.removeprefix("optuna_"), seed)
    if name == OURS or name in ABLATIONS:
        keys = list(pool.values[0])
        sizes = [[pool.data.size[t]] for t in pool.trials]
        without = {"rungs": name != "ehvi_no_rungs", "model": name != "ehvi_no_model"}
        return FrontProposer(
            encode(pool.values, keys), sizes, pool.data.budget, seed=seed, **without
        )
    raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {name!r}")


def simulate(name: str, pool: Pool, seed: int, ref: Reference, front: set, workers: int = 2,
             eta: int = 3, trace=None) -> dict:  # fmt: skip
    """One run of a method (with `_pareto`: under the Pareto-aware scheduler): the
    compute spent when the finished networks' hypervolume first reaches each of
    TARGETS of the pool's, and the share of the true front finished at RECALL_AT
    of the compute. Ends once all three are known. `trace`, a list, receives
    (time, pool index, epoch, decision) for every epoch."""
    data, trials = pool.data, pool.trials
    method = make_method(name.removesuffix("_pareto"), pool, seed)
    judge = ParetoRungs(OBJ, data.budget, grace=1, eta=eta) if name.endswith("_pareto") else None
    total = len(trials) * data.budget
    running: list[tuple[int, int, int, int]] = []  # (time its epoch ends, seq, trial, done)
    paused: dict[int, int] = {}
    resume = collections.deque()
    spent, now, seq, finished = 0, 0, itertools.count(), []
    at = {t: None for t in TARGETS}
    recall = None
    while None in at.values() or recall is None:
        while len(running) < workers:
            if resume:
                i, done = resume.popleft()
            else:
                got = method.propose(1)
                if not got:
                    break
                i, done = got[0], 0
            heapq.heappush(running, (now + 1, next(seq), i, done))
        if not running:
            if not paused:
                break
            tid = judge.unblock()
            resume.append((int(tid), paused.pop(int(tid))))
            continue
        now, _, i, done = heapq.heappop(running)
        t, value = done + 1, data.accuracy[trials[i]][done]
        spent += 1
        method.observe(i, t, value)
        said = None
        if judge is not None:
            said = judge.on_result(str(i), t, {"accuracy": value, "size": data.size[trials[i]]})
        if trace is not None:
            trace.append((now, i, t, said or "continue"))
        if recall is None and spent >= RECALL_AT * total:
            recall = len(front & {trials[j] for j in finished}) / len(front)
        if t == data.budget:
            finished.append(i)
            method.end(i)
            hv = ref.hv([trials[j] for j in finished], data)
            for target in TARGETS:
                if at[target] is None and hv >= target * ref.grid - 1e-12:
                    at[target] = spent
        elif said == PAUSE:
            paused[i] = t
        elif said == STOP:
            method.end(i)
        else:
            heapq.heappush(running, (now + 1, next(seq), i, t))
        if judge is not None and (t == data.budget or said == STOP):
            result = {"epoch": t, "accuracy": value, "size": data.size[trials[i]]}
            judge.on_complete(str(i), result if t == data.budget else {"epoch": t})
            stopped, promote = judge.review()
            for p in stopped:
                paused.pop(int(p))
                method.end(int(p))
            for p in promote:
                judge.promoted(p)
                resume.appendleft((int(p), paused.pop(int(p))))
    return {
        **{
            f"compute_to_{round(100 * k)}pct": (v if v is not None else total) / total
            for k, v in at.items()
        },  # fmt: skip
        f"front_recall_at_{round(100 * RECALL_AT)}pct": recall if recall is not None else 1.0,
    }


def truth(pool: Pool) -> tuple[Reference, set]:
    """The pool's reference point and hypervolume, and its true front (`replay.truth`)."""
    return replay.truth(pool.data)


def compare(pool: Pool, methods, seeds: int = 20, workers: int = 2, eta: int = 3,
            first_seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Each method's figures (columns of `simulate`) averaged over `seeds` runs."""
    ref, front = truth(pool)
    rows = {}
    for m in methods:
        runs = [simulate(m, pool, first_seed + s, ref, front, workers, eta) for s in range(seeds)]
        rows[m] = pd.DataFrame(runs).mean()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def load_pool(rows: pd.DataFrame, curves: pd.DataFrame, space, size: str, seed: int = 0) -> Pool:
    """The pool of a sweep's table: its ok trials of one training seed with full
    curves, each with its point's values of the space's varied keys (`space`: the
    sweep's own space, whose points the rows number)."""
    from explorer import space as spaces

    data = full_curves(rows[rows["seed"] == seed], curves, size)
    pts = {p.index: p for p in spaces.points(space)}
    point = rows.set_index("trial_id")["point"]
    values = [{k: pts[int(point[t])].values[k] for k in space.varied} for t in data.trials]
    return Pool(data, values)


def subspaces(pool: Pool, methods, architectures: int, draws: int, workers: int = 2,
              seeds: int = 3, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """How a figure varies across spaces: `draws` random subsets of `architectures`
    of the pool, each replayed against its own hypervolume (`seeds` runs a method).
    Per method: the mean and median over the draws of its compute to 95% over random
    search's in the same draw, and the share of draws where it needs more."""
    if not 4 <= architectures <= len(pool.trials) or draws < 1:
        raise ValueError(
            f"subspaces: expected 4 to {len(pool.trials)} architectures and 1+ draws, "
            f"got {architectures} and {draws}"
        )
    rng = np.random.default_rng(seed)
    ratios = collections.defaultdict(list)
    for _ in range(draws):
        part = pool.subset(rng.choice(pool.trials, architectures, replace=False))
        first = int(rng.integers(2**31))
        got = compare(part, dict.fromkeys(["random", *methods]), seeds, workers, first_seed=first)
        for m in methods:
            ratios[m].append(got.loc[m, "compute_to_95pct"] / got.loc["random", "compute_to_95pct"])
    return pd.DataFrame(
        {
            m: {
                "ratio_mean": np.mean(r),
                "ratio_median": np.median(r),
                "worse_than_random": np.mean(np.asarray(r) > 1.0),
            }
            for m, r in ratios.items()
        }
    ).T.rename_axis("method")
