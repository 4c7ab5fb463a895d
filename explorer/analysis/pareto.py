"""Seed aggregation, Pareto fronts and hypervolume over a results table.

Everything here is a pure function of a `explorer.results` table (or of the
aggregated table `aggregate_seeds` returns, which keeps the same column names
for the metrics, so both can be passed to `pareto_front` and the plots).
"""

from __future__ import annotations

import moocore
import numpy as np
import pandas as pd

from explorer.architecture import FIELDS, PRESETS
from explorer.results import DIRECTIONS, Direction

# Metaparameter columns of results.SCHEMA: the preset a point starts from, then
# every ArchSpec field (architecture.FIELDS), in the order the schema lists them.
# Deep Compression's settings come last: the same network compressed two ways is two models.
METAPARAMETERS: tuple[str, ...] = ("base", *FIELDS, "sparsity", "per_layer", "rounds", "bits")

# What identifies one architecture trained under one recipe on one data set: the
# rows that share these are seeds of the same model.
ARCHITECTURE_KEYS: tuple[str, ...] = (*METAPARAMETERS, "dataset", "recipe")

# Numeric outcomes of a trial that make sense to average over seeds.
METRICS: tuple[str, ...] = tuple(DIRECTIONS)

DEFAULT_OBJECTIVES: dict[str, Direction] = {"params": "min", "accuracy": "max"}


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with status 'ok' (all rows of a table without a status column)."""
    if "status" not in df:
        return df
    return df[(df["status"] == "ok").fillna(False).to_numpy(dtype=bool)]


def program_share(df: pd.DataFrame) -> pd.Series:
    """Each row's share of the program that trained it: 1/K for K vmapped seeds.

    A seed trained alone (or a row without `seeds_in_program`) counts 1, so the
    sum over rows is the number of trials.
    """
    if "seeds_in_program" not in df:
        return pd.Series(1.0, index=df.index)
    shared = pd.to_numeric(df["seeds_in_program"], errors="coerce").astype("float64")
    return 1.0 / shared.fillna(1.0).clip(lower=1.0)


def trial_seconds(df: pd.DataFrame) -> pd.Series:
    """Each row's share of its program's wall time, in seconds.

    K vmapped seeds train in one program and each of their rows carries that
    program's `wall_s`, so a row is charged 1/K of it (`program_share`).
    """
    return pd.to_numeric(df["wall_s"], errors="coerce").astype("float64") * program_share(df)


def trial_epochs(df: pd.DataFrame) -> tuple[int, int]:
    """Epochs trained, and epochs asked for (every trial to the end), skipped rows aside:
    what an early-stopping scheduler saved. A failed trial is asked for the epochs it
    ran: the ones it never reached were lost, not saved."""
    trained = df[df["status"] != "skipped"]
    done = pd.to_numeric(trained["epochs_done"], errors="coerce").fillna(0)
    asked = pd.to_numeric(trained["epochs"], errors="coerce").fillna(0)
    asked = asked.where(trained["status"] != "failed", done)
    return int(done.sum()), int(asked.sum())


def busy_seconds(df: pd.DataFrame) -> float:
    """Wall time during which at least one of the rows' programs was training: the
    union of their intervals (finished_at - wall_s, finished_at), so that a sweep
    resumed days later is not charged the days between."""
    if "wall_s" not in df or "finished_at" not in df:
        return float("nan")
    wall = pd.to_numeric(df["wall_s"], errors="coerce")
    end = pd.to_datetime(df["finished_at"], errors="coerce", utc=True)
    spans = sorted(
        (e.timestamp() - w, e.timestamp())
        for w, e in zip(wall, end, strict=True)
        if pd.notna(w) and pd.notna(e)
    )
    if not spans:
        return float("nan")  # not known, rather than none
    total, reach = 0.0, -np.inf
    for start, stop in spans:
        total += max(0.0, stop - max(start, reach))
        reach = max(reach, stop)
    return total


def varied_metaparameters(df: pd.DataFrame) -> list[str]:
    """Metaparameter columns taking more than one distinct value among the rows."""
    return [c for c in METAPARAMETERS if c in df and df[c].nunique(dropna=False) > 1]


def aggregate_seeds(
    df: pd.DataFrame, metrics: list[str] | tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Mean and std of each metric over the seeds of each architecture (ok rows).

    One row per architecture (all metaparameters + dataset + recipe); a metric
    keeps its name for the mean, `<metric>_std` is the standard deviation over
    seeds (NaN for one seed), `n_seeds` counts the rows, `space` lists spaces.
    """
    ok = ok_rows(df)
    keys = [c for c in ARCHITECTURE_KEYS if c in ok]
    metrics = [m for m in (metrics or METRICS) if m in ok]
    # Nullable integers become float so means of missing values are NaN.
    values = pd.DataFrame(
        {m: pd.to_numeric(ok[m], errors="coerce").astype("float64") for m in metrics},
        index=ok.index,
    )
    if keys:
        # Number the architectures on string forms of the keys: nullable and NA
        # values then group reliably, and no key column is swallowed as an index.
        text = ok[keys].astype("string").fillna("<NA>")
        gid = text.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    else:  # a table of metrics only: every row is its own architecture
        gid = np.arange(len(ok))
    _, first = np.unique(gid, return_index=True)  # ngroup numbers in row order
    out = ok[keys].iloc[first].reset_index(drop=True)
    groups = values.groupby(gid, sort=True)
    means, stds = groups.mean(), groups.std(ddof=1)
    for m in metrics:
        out[m] = means[m].to_numpy()
        out[f"{m}_std"] = stds[m].to_numpy()
    out["n_seeds"] = groups.size().to_numpy()
    if "space" in ok:
        spaces = ok["space"].astype("string").fillna("")
        out["space"] = (
            spaces.groupby(gid, sort=True).agg(lambda s: ",".join(sorted(set(s) - {""}))).to_numpy()
        )
    return out


def _objective_matrix(df: pd.DataFrame, objectives: dict[str, Direction]) -> np.ndarray:
    """Objective values as floats, negated where larger is better (all minimised)."""
    if not objectives:
        raise ValueError("objectives: give at least one column, e.g. {'params': 'min'}")
    cols = []
    for col, direction in objectives.items():
        if direction not in ("min", "max"):
            raise ValueError(f"objectives[{col!r}]: expected 'min' or 'max'")
        if col not in df:
            raise ValueError(f"objectives: no column {col!r} in the table")
        values = pd.to_numeric(df[col], errors="coerce").astype("float64").to_numpy()
        cols.append(values if direction == "min" else -values)
    return np.column_stack(cols)


def pareto_mask(df: pd.DataFrame, objectives: dict[str, Direction]) -> np.ndarray:
    """Non-dominated flags, in any number of objectives; rows with a NaN objective
    are never on the front.

    A row is dominated iff another is at least as good in every objective and
    strictly better in one, so duplicates of a front point are all on it
    (moocore's `is_nondominated` with `keep_weakly`).
    """
    x = _objective_matrix(df, objectives)
    valid = ~np.isnan(x).any(axis=1)
    mask = np.zeros(len(x), dtype=bool)
    if valid.any():
        mask[valid] = moocore.is_nondominated(x[valid], maximise=False, keep_weakly=True)
    return mask


def pareto_front(df: pd.DataFrame, objectives: dict[str, Direction] | None = None) -> pd.DataFrame:
    """The non-dominated rows, sorted by the first 'min' objective (then the rest)."""
    objectives = objectives or DEFAULT_OBJECTIVES
    front = df[pareto_mask(df, objectives)]
    order = sorted(objectives, key=lambda c: objectives[c] != "min")
    return front.sort_values(
        order, ascending=[objectives[c] == "min" for c in order], kind="stable"
    )


def hypervolume(
    df: pd.DataFrame,
    objectives: dict[str, Direction],
    reference: dict[str, float],
) -> float:
    """Exact hypervolume the rows dominate up to the reference point, in any number
    of objectives (moocore); only rows strictly better than the reference in every
    objective count. Choose the reference with care: with accuracy 0 the region
    below the worst network dwarfs the front."""
    if set(reference) != set(objectives):
        raise ValueError(
            f"hypervolume: reference must give {sorted(objectives)}, got {sorted(reference)}"
        )
    x = _objective_matrix(df, objectives)
    ref = np.array(
        [reference[c] if d == "min" else -reference[c] for c, d in objectives.items()],
        dtype="float64",
    )
    x = x[~np.isnan(x).any(axis=1)]
    x = x[(x < ref).all(axis=1)]
    return float(moocore.hypervolume(x, ref=ref)) if len(x) else 0.0


def hypervolume_2d(
    df: pd.DataFrame,
    objectives: dict[str, Direction],
    reference: dict[str, float],
) -> float:
    """`hypervolume` of two objectives (the area under the front's staircase)."""
    if len(objectives) != 2:
        raise ValueError(f"hypervolume_2d: needs 2 objectives, got {len(objectives)}")
    return hypervolume(df, objectives, reference)


def preset_names(df: pd.DataFrame) -> pd.Series:
    """Which rows are the squeezenet1_0/1_1 presets (name, or NA for other rows).

    A row is a preset when its trial_id or space names one, or when its `base` is
    one and its Fire metaparameters are the paper's defaults (Section 5).
    """
    names = pd.Series(pd.NA, index=df.index, dtype="string")
    defaults = PRESETS["squeezenet1_1"]
    default_cols = {
        "squeeze_ratio": defaults.squeeze_ratio,
        "pct3x3": defaults.pct3x3,
        "base_e": defaults.base_e,
        "incr_e": defaults.incr_e,
        "freq": defaults.freq,
        "bypass": defaults.bypass,
    }
    is_default = pd.Series(True, index=df.index)
    for col, value in default_cols.items():
        if col not in df:
            is_default[:] = False
            break
        is_default &= (df[col] == value).fillna(False).astype(bool)
    for name in sorted(PRESETS):
        hit = pd.Series(False, index=df.index)
        for col in ("trial_id", "space"):
            if col in df:
                text = df[col].astype("string")
                hit |= text.str.contains(name, regex=False).fillna(False).astype(bool)
        if "base" in df:
            hit |= (df["base"] == name).fillna(False).astype(bool) & is_default
        names[hit & names.isna()] = name
    return names
