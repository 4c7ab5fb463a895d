"""The architectures of a results table, as the interactive figures and the notebook see them.

No drawing here: `architectures` averages each architecture over its seeds
(`pareto.aggregate_seeds`) with every size/cost column of `X_COLUMNS` and the
ids of its trials; `objective_columns` and `front_trial_ids` name what the
figures show; `edf_by` is `edf.edf` of the architectures by one metaparameter.
`meeting` and `choose` keep the architectures that meet a constraint and pick
the best of them, and `export_command` says how to export it (the notebook's
last step).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.analysis.edf import edf
from explorer.analysis.pareto import (
    ARCHITECTURE_KEYS,
    METRICS,
    aggregate_seeds,
    ok_rows,
    pareto_mask,
    varied_metaparameters,
)
from explorer.results import DIRECTIONS

# Size and cost columns the front's x axis may show, in the dropdown's order; a
# column is offered when the table has it and it was measured for some row.
X_COLUMNS: tuple[str, ...] = (
    "params",
    "bytes_f32",
    "bytes_int8",
    "bytes_int8_onnx",
    "bytes_compressed",
    "flops",
    "latency_b1_ms",
    "latency_ort_b1_ms",
    "latency_ort_int8_b1_ms",
)
MAX_EDF_LEVELS = 8  # more numeric levels than this are cut into quartiles


def numbers(values: pd.Series) -> np.ndarray:
    """A column as float64, NaN where it is not a number."""
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


def ok_measured(df: pd.DataFrame, y: str = "accuracy") -> pd.DataFrame:
    """The ok rows with a `y`; ValueError when there are none."""
    ok = ok_rows(df)
    if y not in ok:
        raise ValueError(f"no column {y!r} in the table")
    ok = ok[pd.notna(numbers(ok[y]))]
    if ok.empty:
        raise ValueError(f"no ok rows with a {y!r} to plot")
    return ok


def architectures(df: pd.DataFrame) -> pd.DataFrame:
    """`aggregate_seeds` of the ok rows, with every size/cost column and a `trials` column.

    Columns of `X_COLUMNS` that `pareto.METRICS` does not average yet are
    averaged too, and `trials` lists each architecture's trial ids (its seeds).
    """
    ok = ok_rows(df)
    metrics = list(dict.fromkeys([*METRICS, *(c for c in X_COLUMNS if c in ok)]))
    agg = aggregate_seeds(ok, metrics)
    if "trial_id" not in ok or agg.empty:
        agg["trials"] = ""
        return agg
    # aggregate_seeds groups on the string forms of these keys: so do we.
    keys = [c for c in ARCHITECTURE_KEYS if c in ok]
    if not keys:  # a table of metrics only: one architecture per row
        agg["trials"] = ok["trial_id"].astype("string").fillna("").to_numpy()
        return agg

    def key_text(frame: pd.DataFrame) -> pd.Series:
        text = frame[keys].astype("string").fillna("<NA>")
        joined = text[keys[0]]
        for c in keys[1:]:
            joined = joined + "\x1f" + text[c]
        return joined

    ids = ok["trial_id"].astype("string").fillna("")
    joined = ids.groupby(key_text(ok).to_numpy(), sort=False).agg(", ".join)
    agg["trials"] = key_text(agg).map(joined).fillna("").to_numpy()
    return agg


def objective_columns(df: pd.DataFrame, y: str = "accuracy") -> list[str]:
    """The objectives `parallel` shows: y, int8 accuracy and the measured size/cost columns."""
    cols = [y, "int8_accuracy", *X_COLUMNS]
    return [c for c in dict.fromkeys(cols) if c in df and pd.notna(numbers(df[c])).any()]


def front_trial_ids(df: pd.DataFrame, x: str = "params", y: str = "accuracy") -> list[str]:
    """Trial ids (every seed) of the architectures on the (x, y) Pareto front."""
    agg = architectures(ok_measured(df, y))
    on = pareto_mask(agg, {x: DIRECTIONS.get(x, "min"), y: DIRECTIONS.get(y, "max")})
    ids = agg.loc[on, "trials"].str.split(", ").explode()
    return [i for i in ids.dropna() if i]


def edf_levels(table: pd.DataFrame, param: str) -> tuple[pd.DataFrame, str]:
    """The table and column to group an EDF by: quartiles when too many levels."""
    numeric = pd.api.types.is_numeric_dtype(table[param])
    if table[param].nunique() <= MAX_EDF_LEVELS or not numeric:
        return table, param
    binned = f"{param} quartile"
    values = pd.to_numeric(table[param]).astype("float64")
    quartiles = pd.qcut(values, 4, duplicates="drop").astype(str)
    return table.assign(**{binned: quartiles}), binned


def edf_by(
    df: pd.DataFrame, param: str | None = None, normalize_by: str | None = None
) -> tuple[pd.DataFrame, bool]:
    """`edf.edf` of the architectures by one metaparameter, and whether seeds were used.

    With one architecture per level (a one-metaparameter study) an EDF over
    architectures would be one step per level, so each level's seeds become
    its distribution instead (the bool says so). Too many numeric levels are
    cut into quartiles (`edf_levels`).
    """
    ok = ok_rows(df)
    return edf_by_levels(ok, aggregate_seeds(ok), param, normalize_by)


def edf_by_levels(
    ok: pd.DataFrame, agg: pd.DataFrame, param: str | None, normalize_by: str | None
) -> tuple[pd.DataFrame, bool]:
    """`edf_by`, given the ok rows and their `aggregate_seeds`."""
    if param is None:
        return edf(agg, normalize_by=normalize_by), False
    per_seed = bool(agg[param].value_counts().max() == 1 and len(ok) > len(agg))
    table, by = edf_levels(ok if per_seed else agg, param)
    return edf(table, by=by, normalize_by=normalize_by), per_seed


def edf_groups(df: pd.DataFrame) -> list[str]:
    """What the EDFs are split by: the varied metaparameters, and `space` if several."""
    return groups_of(aggregate_seeds(ok_rows(df)))


def groups_of(agg: pd.DataFrame) -> list[str]:
    """`edf_groups`, given the ok rows' `aggregate_seeds`."""
    groups = varied_metaparameters(agg)
    if "space" in agg and agg["space"].nunique() > 1:
        groups.append("space")
    return groups


# ---------------------------------------------------------------- choosing a point
def _meets(agg: pd.DataFrame, constraint: str | None) -> pd.DataFrame:
    if not constraint:
        return agg
    try:
        return agg.query(constraint)
    except Exception as e:  # a typo in a notebook cell: say which expression
        raise ValueError(f"constraint {constraint!r}: {e}") from None


def meeting(df: pd.DataFrame, constraint: str | None) -> pd.DataFrame:
    """The ok rows (every seed) of the architectures that meet `constraint`.

    `constraint` is a `DataFrame.query` expression over the seed-averaged
    columns of `architectures`, e.g. "bytes_int8 <= 100_000 and flops < 2e7";
    None or "" keeps every architecture.
    """
    ok = ok_rows(df)
    ids = _meets(architectures(ok), constraint)["trials"].str.split(", ").explode()
    return ok[ok["trial_id"].astype("string").isin(set(ids.dropna())).to_numpy(dtype=bool)]


def choose(
    df: pd.DataFrame, constraint: str | None = None, y: str = "accuracy"
) -> pd.Series | None:
    """The architecture with the best mean y among those meeting `constraint`.

    `constraint` is a `DataFrame.query` expression over the seed-averaged
    columns (`architectures`), e.g. "bytes_int8 <= 100_000". Returns that
    architecture's row with `trial_id` set to its best seed's trial (the one to
    export), or None when no architecture meets the constraint.
    """
    ok = ok_measured(df, y)
    agg = architectures(ok)
    meets = _meets(agg, constraint)
    if meets.empty:
        return None
    ydir = DIRECTIONS.get(y, "max")
    values = pd.Series(numbers(meets[y]), index=meets.index)
    best = meets.loc[values.idxmax() if ydir == "max" else values.idxmin()].copy()
    seeds = ok[ok["trial_id"].astype("string").isin(str(best["trials"]).split(", "))]
    seed_values = pd.Series(numbers(seeds[y]), index=seeds.index)
    pick = seed_values.idxmax() if ydir == "max" else seed_values.idxmin()
    best["trial_id"] = str(seeds.loc[pick, "trial_id"])
    best[f"{y}_of_trial"] = float(seed_values[pick])
    return best


def export_command(results_path: str | Path, trial_id: str) -> str:
    """The `explorer export` command line for one trial of the sweep a table came from.

    `results_path` is the sweep folder or its table file (whose folder is then
    the sweep's); the trial's row names its checkpoint.
    """
    path = Path(results_path)
    folder = str(path if path.is_dir() else path.parent)
    out = shlex.quote(trial_id + ".onnx")
    return f"explorer export {shlex.quote(folder)} --trial {shlex.quote(trial_id)} --out {out}"
