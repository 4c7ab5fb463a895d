"""Comparison statistics (explorer.analysis.stats) against scipy and hand-made samples."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from explorer.analysis import stats


def test_ks_is_scipys_and_the_largest_gap_between_the_edfs():
    a, b = [0.71, 0.72, 0.74, 0.80], [0.60, 0.73, 0.75]
    d, p = stats.ks(a, b)
    ref = sp.ks_2samp(a, b)
    assert (d, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    # by hand: the EDFs at every point of either sample
    grid = np.sort(np.concatenate([a, b]))
    gap = max(abs(np.mean(np.array(a) <= t) - np.mean(np.array(b) <= t)) for t in grid)
    assert d == pytest.approx(gap)
    assert stats.ks([1, 2, 3], [4, 5, 6])[0] == 1.0  # disjoint samples: the whole height


def test_bootstrap_interval_is_scipys_percentile_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.80, 0.01, 5), rng.normal(0.78, 0.01, 5)
    diff, low, high = stats.bootstrap_diff(a, b, seed=7)
    ref = sp.bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
        n_resamples=stats.RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (low, high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert low < diff < high


def test_the_interval_separates_what_differs_and_not_what_does_not():
    rng = np.random.default_rng(1)
    apart = stats.compare(rng.normal(0.9, 0.005, 6), rng.normal(0.8, 0.005, 6))
    assert apart.separated and apart.ci_low > 0.08 and apart.ks == 1.0 and apart.ks_p < 0.01
    same = stats.compare(rng.normal(0.8, 0.02, 8), rng.normal(0.8, 0.02, 8))
    assert same.ci_low < 0 < same.ci_high and not same.separated
    # NaNs (failed seeds) are left out; single values give a point interval
    one = stats.compare([0.5, np.nan], [0.4])
    assert (one.n_a, one.diff, one.ci_low, one.ci_high) == (
        1,
        pytest.approx(0.1),
        *[pytest.approx(0.1)] * 2,
    )


def test_one_value_against_many_resamples_the_many_only():
    """A level left with one seed (the others failed) is still compared, not an error."""
    many = np.array([0.80, 0.82, 0.84, 0.86])
    diff, low, high = stats.bootstrap_diff([0.70], many, seed=3)
    ref = sp.bootstrap(
        (many,), np.mean, n_resamples=stats.RESAMPLES, method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval  # fmt: skip
    assert diff == pytest.approx(0.70 - many.mean())
    assert (low, high) == (pytest.approx(0.70 - ref.high), pytest.approx(0.70 - ref.low))
    d2, low2, high2 = stats.bootstrap_diff(many, [0.70], seed=3)
    assert (d2, low2, high2) == (pytest.approx(-diff), pytest.approx(-high), pytest.approx(-low))


def test_levels_are_compared_with_the_best():
    df = pd.DataFrame(
        {"bypass": ["none"] * 3 + ["simple"] * 3, "accuracy": [0.70, 0.71, 0.72, 0.80, 0.81, 0.79]}
    )
    out = stats.compare_levels(df, "bypass")
    assert list(out["bypass"]) == ["none"] and (out["against"] == "simple").all()
    assert out.loc[0, "diff"] == pytest.approx(-0.09) and out.loc[0, "ci_high"] < 0
    pairs = stats.compare_pairs(df, "bypass")
    assert list(pairs[["a", "b"]].iloc[0]) == ["simple", "none"] and pairs.loc[0, "diff"] > 0


def test_the_report_compares_each_level_with_the_best(tmp_path):
    from explorer import results
    from explorer.analysis.report import write_report

    df = results.load(results_path := "analysis/example_results.parquet")
    ok = df[df["status"] == "ok"]
    write_report(df, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "## Comparisons" in text, results_path
    means = ok.groupby("squeeze_ratio")["accuracy"].mean()
    worse, best = means.idxmin(), means.idxmax()
    c = stats.compare(
        ok[ok["squeeze_ratio"] == worse]["accuracy"], ok[ok["squeeze_ratio"] == best]["accuracy"]
    )
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| squeeze_ratio | {worse} "))
    assert f"{c.diff:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}]" in line
    assert f"{c.ks:.2f} ({c.ks_p:.3g})" in line
