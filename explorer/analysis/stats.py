"""Statistics a reader can trust when two groups of trials are compared (scipy).

For two samples of a metric (the seeds of two variants, or all the networks of
two design spaces): mean and std of each, a bootstrap confidence interval of
the difference of their means, and the two-sample Kolmogorov-Smirnov
statistic and p-value of their distributions, as Radosavovic et al. compare
design spaces by their error EDFs ("On Network Design Spaces for Visual
Recognition", 2019).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

from explorer.analysis.pareto import varied_metaparameters

CONFIDENCE = 0.95
RESAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Sample a against sample b."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    diff: float  # mean_a - mean_b
    ci_low: float  # bootstrap confidence interval of diff
    ci_high: float
    ks: float  # Kolmogorov-Smirnov statistic: the largest gap between the two EDFs
    ks_p: float

    @property
    def separated(self) -> bool:
        """The interval of the difference excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0


def bootstrap_diff(
    a, b, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): a percentile bootstrap interval, each sample
    resampled on its own (scipy.stats.bootstrap). A sample of one value stays that
    value (two give a point interval); an empty sample gives NaNs."""
    from scipy import stats

    a, b = _finite(a), _finite(b)
    if len(a) == 0 or len(b) == 0:
        return (np.nan, np.nan, np.nan)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 and len(b) < 2:
        return (diff, diff, diff)
    kwargs = dict(
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    if len(a) < 2 or len(b) < 2:  # one value resamples to itself: only the other varies
        many, one, sign = (b, a[0], -1.0) if len(a) < 2 else (a, b[0], 1.0)
        ci = stats.bootstrap((many,), np.mean, **kwargs).confidence_interval
        ends = sorted(sign * (m - one) for m in (ci.low, ci.high))
        return (diff, float(ends[0]), float(ends[1]))
    res = stats.bootstrap(
        (a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis), **kwargs
    )
    return (diff, float(res.confidence_interval.low), float(res.confidence_interval.high))


def ks(a, b) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp)."""
    from scipy import stats

    a, b = _finite(a), _finite(b)
    if len(a) == 0 or len(b) == 0:
        return (np.nan, np.nan)
    res = stats.ks_2samp(a, b)
    return (float(res.statistic), float(res.pvalue))


def compare(a, b, confidence: float = CONFIDENCE, seed: int = 0) -> Comparison:
    """Everything above, for sample a against sample b."""
    a, b = _finite(a), _finite(b)
    diff, low, high = bootstrap_diff(a, b, confidence, seed=seed)
    stat, p = ks(a, b)
    return Comparison(
        len(a), len(b), _mean(a), _mean(b), _std(a), _std(b), diff, low, high, stat, p
    )


def compare_levels(
    df: pd.DataFrame, column: str, metric: str = "accuracy", reference=None
) -> pd.DataFrame:
    """Each level of `column` against the reference level (default: the best mean).

    One row per other level: its comparison with the reference, over the rows'
    `metric` (for a one-metaparameter study, every seed of the level).
    """
    levels = {k: g[metric].to_numpy(float) for k, g in df.groupby(column, dropna=False)}
    if reference is None:
        reference = max(levels, key=lambda k: _mean(_finite(levels[k])))
    out = []
    for level, values in levels.items():
        if level == reference:
            continue
        c = compare(values, levels[reference])
        out.append({column: level, "against": reference, **dataclasses.asdict(c)})
    return pd.DataFrame(out)


def compare_pairs(df: pd.DataFrame, column: str, metric: str = "accuracy") -> pd.DataFrame:
    """Every pair of levels of `column`, the better mean first."""
    levels = {k: g[metric].to_numpy(float) for k, g in df.groupby(column, dropna=False)}
    order = sorted(levels, key=lambda k: -_mean(_finite(levels[k])))
    rows = []
    for x, y in itertools.combinations(order, 2):
        rows.append({"a": x, "b": y, **dataclasses.asdict(compare(levels[x], levels[y]))})
    return pd.DataFrame(rows)


def _finite(x) -> np.ndarray:
    x = np.asarray(x, float).ravel()
    return x[np.isfinite(x)]


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else np.nan


def _std(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else np.nan


MAX_COMPARED_LEVELS = 8  # a metaparameter with more levels is not a study's comparison


def comparisons(ok: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Each varied metaparameter's levels against its best: mean ± std, the difference
    with its 95% bootstrap interval, and the KS statistic of their EDFs (analysis.stats).

    Only metaparameters with at most MAX_COMPARED_LEVELS levels (a study, not a
    random sample's continuum); the rows of a level are all its trials.
    """
    out = []
    for param in varied_metaparameters(ok):
        if ok[param].nunique() > MAX_COMPARED_LEVELS or metric not in ok:
            continue
        for _, c in compare_levels(ok, param, metric).iterrows():
            out.append(
                {
                    "metaparameter": param,
                    "level": c[param],
                    "against": c["against"],
                    "n": f"{c['n_a']} vs {c['n_b']}",
                    metric: f"{c['mean_a']:.4f} ± {c['std_a']:.4f} vs "
                    f"{c['mean_b']:.4f} ± {c['std_b']:.4f}",
                    "difference [95% CI]": f"{c['diff']:+.4f} [{c['ci_low']:+.4f}, "
                    f"{c['ci_high']:+.4f}]",
                    "KS D (p)": f"{c['ks']:.2f} ({c['ks_p']:.3g})",
                }
            )
    return pd.DataFrame(out)
