"""Error distributions of design spaces, and one-metaparameter sensitivity.

`edf` follows Radosavovic et al. 2019, "On Network Design Spaces for Visual
Recognition" (Section 3): a design space is judged by the empirical distribution
function of its models' errors, F(e) = share of models with error <= e, and two
spaces are compared at equal complexity by reweighting their models so that
their complexity distributions match (Section 3.2, "normalized comparison").
`sensitivity` gives the numbers behind the SqueezeNet paper's Figure 3: a metric
against the levels of one metaparameter, mean and spread over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.analysis.pareto import ok_rows

ALL = "all"  # the group name when `by` is None


def complexity_weights(complexity: pd.Series, groups: pd.Series, bins: int = 10) -> np.ndarray:
    """Per-model weights that give every group the same complexity distribution.

    Log-complexity is cut into `bins` common bins; a model weighs 1 / (models of
    its group in its bin), normalised to sum to 1 within its group, so each group
    spreads its weight evenly over the complexity bins it covers.
    """
    logc = np.log10(pd.to_numeric(complexity, errors="coerce").astype("float64"))
    if logc.isna().any() or np.isinf(logc).any():
        raise ValueError("complexity_weights: complexity must be positive, not NaN")
    lo, hi = float(logc.min()), float(logc.max())
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo, lo + 1.0])
    bin_of = np.clip(np.searchsorted(edges, logc, side="right") - 1, 0, len(edges) - 2)
    keys = pd.DataFrame({"g": groups.to_numpy(), "b": bin_of}, index=complexity.index)
    count = keys.groupby(["g", "b"], dropna=False)["b"].transform("size")
    w = 1.0 / count.to_numpy(dtype="float64")
    total = pd.Series(w, index=keys.index).groupby(keys["g"], dropna=False)
    return w / total.transform("sum").to_numpy(dtype="float64")


def edf(
    df: pd.DataFrame,
    by: str | None = None,
    metric: str = "accuracy",
    normalize_by: str | None = None,
    bins: int = 10,
) -> pd.DataFrame:
    """Empirical distribution of error = 1 - metric, per level of `by` (ok rows).

    Returns one row per distinct error in each group: `group`, `error`,
    `fraction` (weighted share of the group's models with error <= that error,
    ending at 1) and `n` (models in the group). `normalize_by` ('params',
    'flops', ...) reweights models as in `complexity_weights`.
    """
    for col in (metric, by, normalize_by):
        if col is not None and col not in df:
            raise ValueError(f"edf: no column {col!r} in the table")
    ok = ok_rows(df)
    values = pd.to_numeric(ok[metric], errors="coerce").astype("float64")
    keep = values.notna()
    if normalize_by is not None:
        complexity = pd.to_numeric(ok[normalize_by], errors="coerce")
        keep &= complexity.astype("float64").gt(0).fillna(False)
    ok, values = ok[keep.to_numpy()], values[keep]
    groups = (
        pd.Series(ALL, index=ok.index, dtype="object")
        if by is None
        else ok[by].astype("object").where(ok[by].notna(), "<NA>")
    )
    if normalize_by is None:
        weights = np.ones(len(ok)) / groups.map(groups.value_counts()).to_numpy(float)
    else:
        weights = complexity_weights(ok[normalize_by], groups, bins=bins)
    frame = pd.DataFrame(
        {"group": groups.to_numpy(), "error": 1.0 - values.to_numpy(), "w": weights}
    )
    parts = []
    for group, part in frame.groupby("group", sort=True):
        at = part.groupby("error", sort=True)["w"].sum()  # ties: one step each
        fraction = np.minimum(at.cumsum().to_numpy(), 1.0)
        fraction[-1] = 1.0  # exactly, whatever the rounding of the weights
        parts.append(
            pd.DataFrame(
                {
                    "group": group,
                    "error": at.index.to_numpy(),
                    "fraction": fraction,
                    "n": len(part),
                }
            )
        )
    empty = pd.DataFrame(columns=["group", "error", "fraction", "n"])
    out = pd.concat(parts, ignore_index=True) if parts else empty
    out.attrs.update(by=by, metric=metric, normalize_by=normalize_by)
    return out


def sensitivity(
    df: pd.DataFrame,
    param: str,
    metrics: tuple[str, ...] | list[str] = ("accuracy", "bytes_f32"),
) -> pd.DataFrame:
    """Mean, std and count of each metric per level of one metaparameter (ok rows).

    Columns: `param`, `n` (ok rows at the level), then `<metric>_mean` and
    `<metric>_std` (std over all rows at the level: over seeds when only `param`
    varies, as in the SqueezeNet paper's Figure 3).
    """
    for col in (param, *metrics):
        if col not in df:
            raise ValueError(f"sensitivity: no column {col!r} in the table")
    ok = ok_rows(df)
    ok = ok[ok[param].notna().to_numpy()]
    values = pd.DataFrame(
        {m: pd.to_numeric(ok[m], errors="coerce").astype("float64") for m in metrics}
    )
    grouped = values.groupby(ok[param].to_numpy(), sort=True)
    means, stds = grouped.mean(), grouped.std(ddof=1)
    out = pd.DataFrame({param: means.index.to_numpy()})
    out["n"] = grouped.size().reindex(means.index).to_numpy()
    for m in metrics:
        out[f"{m}_mean"] = means[m].to_numpy()
        out[f"{m}_std"] = stds[m].to_numpy()
    out.attrs.update(param=param, metrics=tuple(metrics))
    return out
