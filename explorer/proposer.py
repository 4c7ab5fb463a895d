"""Which network to train next: expected hypervolume improvement at a known size.

Every candidate's size (params, bytes, FLOPs) is exact before training, so of
the objectives only accuracy has to be learned. `FrontProposer` fits a Gaussian
process of accuracy on the candidates' metaparameters and log sizes and
proposes, one at a time, the candidate whose accuracy distribution, at its exact
size, is expected to add the most hypervolume to the current front (Emmerich et
al.'s EHVI, with one uncertain objective it has a closed form; with several
known objectives it is read off moocore's exact hypervolume).

Results at any epoch feed the model, as BOHB and DEHB feed theirs with rung
results: a trial still training, or stopped by the scheduler, counts at its
latest accuracy plus the median gain finished trials made from that epoch on,
with the spread of those gains as its noise (docs/search.md). A proposed
candidate whose accuracy is not yet known stands in the front at its predicted
mean (the "kriging believer"), so parallel workers get different points.

Why a Gaussian process (scikit-learn's): a sweep has tens to a few hundred
trained points, where an exact GP's fit costs milliseconds and its variance is
calibrated far from the data, which is what steers exploration; a forest's
spread across trees is near zero away from the data it split on.
"""

from __future__ import annotations

import math
import warnings

import moocore
import numpy as np
from scipy.special import ndtr
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, Matern, WhiteKernel

# Noise assumed for a trial's gain to the end when no trial has finished yet (a
# fraction of accuracy: a few points, as early epochs differ from final ones here).
PRIOR_GAIN_SD = 0.05


def encode(values: list[dict], keys: list[str]) -> np.ndarray:
    """Candidates' metaparameters as numbers in [0, 1]: a numeric key scaled over
    its range (in log where it spans 4x or more of positive values), any other
    one-hot; keys with one value are left out."""
    cols = []
    for k in keys:
        col = [v[k] for v in values]
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in col):
            x = np.asarray(col, dtype=float)
            if x.min() > 0 and x.max() >= 4 * x.min():
                x = np.log(x)
            span = x.max() - x.min()
            if span > 0:
                cols.append(((x - x.min()) / span)[:, None])
            continue
        labels = [repr(x) for x in col]
        levels = sorted(set(labels))
        if len(levels) > 1:
            cols.append(np.array([[s == lv for lv in levels] for s in labels], dtype=float))
    return np.hstack(cols) if cols else np.zeros((len(values), 0))


def log_sizes(known: np.ndarray) -> np.ndarray:
    """Known objectives (positive sizes) in log scale, each scaled to [0, 1]."""
    z = np.log(np.maximum(np.asarray(known, dtype=float), 1.0))
    span = z.max(axis=0) - z.min(axis=0)
    return (z - z.min(axis=0)) / np.where(span > 0, span, 1.0)


def ehvi_2d(front: np.ndarray, ref: np.ndarray, size, mu, sd) -> np.ndarray:
    """Expected hypervolume improvement of candidates at exact sizes whose accuracy is
    N(mu, sd), over `front` (rows: size, accuracy; size minimised, accuracy maximised)
    against `ref` (size, accuracy). Exact: the improvement is an integral over size of
    how far the candidate's accuracy rises above the front's staircase there."""
    size, mu = np.atleast_1d(size).astype(float), np.atleast_1d(mu).astype(float)
    sd = np.maximum(np.atleast_1d(sd).astype(float), 1e-9)
    front = front[(front[:, 0] < ref[0]) & (front[:, 1] > ref[1])]
    front = front[np.argsort(front[:, 0], kind="stable")]
    # the staircase: level l_j on [b_j, b_j+1), with b_0 = -inf and the last edge ref size
    edges = np.concatenate([[-np.inf], front[:, 0], [ref[0]]])
    levels = np.maximum.accumulate(np.concatenate([[ref[1]], front[:, 1]]))
    lo = np.maximum(size[:, None], edges[None, :-1])
    width = np.clip(edges[None, 1:] - lo, 0.0, None)
    return (width * _psi(mu[:, None] - levels[None, :], sd[:, None])).sum(axis=1)


def _psi(above: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[(A - l)+] for A ~ N(mu, sd), given above = mu - l."""
    z = above / sd
    return above * ndtr(z) + sd * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


def ehvi(front: np.ndarray, ref: np.ndarray, known: np.ndarray, mu, sd) -> np.ndarray:
    """EHVI for any number of known objectives (columns of `known` and the first of
    `front`/`ref`, minimised) and one learned (the last column, maximised), exact:
    a candidate's improvement is piecewise linear in its accuracy, with kinks at the
    front's accuracies, so it is sum_k slope_change_k * (A - kink_k)+ with the slopes
    read off moocore's hypervolume at the kinks. With one known objective it equals
    `ehvi_2d`."""
    mu, sd = np.asarray(mu, dtype=float), np.maximum(np.asarray(sd, dtype=float), 1e-9)
    known = np.asarray(known, dtype=float).reshape(len(mu), -1)
    sign = np.r_[np.ones(known.shape[1]), -1.0]  # to minimised
    f = front[(front[:, :-1] < ref[:-1]).all(axis=1) & (front[:, -1] > ref[-1])]
    r = np.asarray(ref, dtype=float) * sign
    base = float(moocore.hypervolume(f * sign, ref=r)) if len(f) else 0.0
    kinks = np.unique(np.r_[ref[-1], f[:, -1]])
    at = np.r_[kinks, kinks[-1] + 1.0]  # one step past the last kink: the last slope
    out = np.zeros(len(mu))
    for i in range(len(mu)):
        if not (known[i] < ref[:-1]).all():
            continue
        g = [
            float(moocore.hypervolume(np.vstack([f, np.r_[known[i], a]]) * sign, ref=r)) - base
            for a in at
        ]
        slopes = np.diff(g) / np.diff(at)
        change = np.diff(np.r_[0.0, slopes])
        out[i] = float((change * _psi(mu[i] - kinks, sd[i])).sum())
    return out


class FrontProposer:
    """Proposes candidates, one at a time, by expected hypervolume improvement.

    candidates: (n, d) features (`encode`); known: (n, k) known objectives,
    minimised and positive (sizes); budget: the full number of epochs. Feed it
    results with `observe`; `propose` never returns a candidate twice.
    """

    def __init__(
        self,
        features: np.ndarray,
        known: np.ndarray,
        budget: int,
        seed: int = 0,
        initial: int = 6,
        refit_every: int = 8,
        rungs: bool = True,
        model: bool = True,
    ):
        self.known = np.asarray(known, dtype=float).reshape(len(features), -1)
        self.x = np.hstack([np.asarray(features, dtype=float), log_sizes(self.known)])
        self.budget, self.initial, self.refit_every = budget, initial, refit_every
        # the parts, to measure what each gains (benchmarks/search_replay.py): rungs,
        # results before the last epoch feed the model; model, the GP (else every
        # candidate is believed at the mean and spread of what has been seen)
        self.rungs, self.model = rungs, model
        self.rng = np.random.default_rng(seed)
        self.proposed: list[int] = []
        self.curves: dict[int, dict[int, float]] = {}  # candidate -> epoch -> accuracy
        self.ended: set[int] = set()  # stopped or failed: no more epochs will come
        self.kernel = None  # fitted kernel, reused between hyperparameter fits
        self.fitted_at = 0
        self.ref_size = 1.1 * self.known.max(axis=0)

    # ------------------------------------------------------------ results
    def observe(self, i: int, epoch: int, accuracy: float) -> None:
        """Candidate i reached `accuracy` after `epoch` epochs."""
        if math.isfinite(accuracy):
            self.curves.setdefault(i, {})[int(epoch)] = float(accuracy)

    def end(self, i: int) -> None:
        """Candidate i will report no more epochs (stopped early, or failed)."""
        self.ended.add(i)

    def finished(self) -> dict[int, float]:
        """Candidates trained to the full budget and their final accuracy."""
        return {i: c[self.budget] for i, c in self.curves.items() if self.budget in c}

    def _gains(self) -> dict[int, tuple[float, float]]:
        """epoch -> (median, spread) of the finished trials' gain from it to the end."""
        fin = [c for c in self.curves.values() if self.budget in c]
        out = {}
        for t in range(1, self.budget):
            g = [c[self.budget] - c[t] for c in fin if t in c]
            if len(g) >= 3:
                out[t] = (float(np.median(g)), float(np.std(g)) + 0.005)
        return out

    def targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(candidates, estimated final accuracy, its noise variance) of every one seen."""
        gains, idx, y, var = self._gains(), [], [], []
        for i, c in self.curves.items():
            if not self.rungs and self.budget not in c:
                continue
            t = max(c)
            g, s = (0.0, 0.0) if t >= self.budget else gains.get(t, (0.0, PRIOR_GAIN_SD))
            idx.append(i)
            y.append(c[t] + g)
            var.append(s**2)
        return np.array(idx, int), np.array(y), np.array(var)

    # ------------------------------------------------------------ model
    def _fit(self, idx: np.ndarray, y: np.ndarray, var: np.ndarray) -> GaussianProcessRegressor:
        optimise = self.kernel is None or len(idx) >= self.fitted_at + self.refit_every
        # One length scale for all features, plus a linear trend (accuracy mostly rises
        # with size): with tens of points, per-feature length scales overfit and are
        # overconfident (docs/search.md).
        kernel = self.kernel or (
            ConstantKernel(1.0, (1e-2, 1e2)) * Matern(1.0, (5e-2, 2e1), nu=2.5)
            + ConstantKernel(0.1, (1e-3, 1e1)) * DotProduct(1.0, (1e-2, 1e2))
            + WhiteKernel(1e-2, (1e-5, 1.0))
        )
        gp = GaussianProcessRegressor(
            kernel,
            alpha=var / max(np.var(y), 1e-6) + 1e-8,  # in the normalised units of y
            normalize_y=True,
            optimizer="fmin_l_bfgs_b" if optimise else None,
            random_state=int(self.rng.integers(2**31)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(self.x[idx], y)
        if optimise:
            self.kernel, self.fitted_at = gp.kernel_, len(idx)
        return gp

    def predict(self, seen=None) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate's predicted final accuracy: mean and standard deviation
        (`seen`: `targets()`, when the caller has it already)."""
        idx, y, var = seen if seen is not None else self.targets()
        if len(idx) < 2 or not self.model:
            mean, sd = (y.mean(), y.std() + 1e-3) if len(idx) >= 2 else (0.5, 0.1)
            return np.full(len(self.x), mean), np.full(len(self.x), sd)
        mu, sd = self._fit(idx, y, var).predict(self.x, return_std=True)
        return mu, sd

    # ------------------------------------------------------------ proposals
    def propose(self, n: int = 1) -> list[int]:
        """The next n candidates to train (fewer when the pool runs out)."""
        out = []
        for _ in range(n):
            left = np.setdiff1d(np.arange(len(self.x)), self.proposed)
            if not len(left):
                break
            i = self._initial(left) if len(self.proposed) < self.initial else self._best(left)
            self.proposed.append(i)
            out.append(i)
        return out

    def _initial(self, left: np.ndarray) -> int:
        """Before the model has data: the smallest candidate (on every front: nothing
        smaller can dominate it), then one drawn from each of `initial - 1` equal strata
        of log size, smallest first, so the model sees the whole range of sizes."""
        k = len(self.proposed)
        order = np.argsort(log_sizes(self.known).sum(axis=1), kind="stable")
        if k == 0:
            return int(order[0])
        stratum = np.array_split(order[1:], self.initial - 1)[k - 1]
        free = np.intersect1d(stratum, left)
        return int(self.rng.choice(free if len(free) else left))

    def _best(self, left: np.ndarray) -> int:
        targets = self.targets()
        mu, sd = self.predict(targets)
        y = targets[1]
        seen = self.finished()
        front_i = list(seen)
        acc = [seen[i] for i in front_i]
        # proposed and not finished: believed at the model's mean until they report
        for i in self.proposed:
            if i not in seen and i not in self.ended:
                front_i.append(i)
                acc.append(mu[i])
        ref_acc = float(min(y.min() if len(y) else mu.min(), mu[left].min()))
        front = np.column_stack([self.known[front_i], acc]) if front_i else np.zeros((0, 2))
        ref = np.r_[self.ref_size, ref_acc]
        if self.known.shape[1] == 1:
            score = ehvi_2d(front, ref, self.known[left, 0], mu[left], sd[left])
        else:  # exact over a short list: the candidates most likely to matter
            ucb = mu[left] + 2 * sd[left]
            short = left[np.argsort(-ucb)[:200]]
            score = np.full(len(left), -np.inf)
            pos = np.searchsorted(left, short)
            score[pos] = ehvi(front, ref, self.known[short], mu[short], sd[short])
        best = np.flatnonzero(score >= score.max() - 1e-15)
        return int(left[self.rng.choice(best)])
