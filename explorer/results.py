"""The results table: one row per trial, columns fixed here, stored as Parquet.

Every column and its unit lives in SCHEMA, and nowhere else. Rows are written one
file per trial (`rows/<trial_id>.parquet`, written to a temporary name and renamed,
so a crash never leaves half a row) and gathered with `load`, one pandas call.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import pandas as pd

# name -> (pandas dtype, meaning). Fractions are in [0, 1]; units in the names.
SCHEMA: dict[str, tuple[str, str]] = {
    # identity
    "trial_id": ("string", "unique id: space, point index and seed"),
    "space": ("string", "name of the space file the trial came from"),
    "point": ("Int64", "index of the point within its space"),
    "seed": ("Int64", "training seed"),
    "status": ("string", "ok | failed | skipped | stopped (early, by the scheduler)"),
    "error": ("string", "why a trial failed or was skipped; empty when ok"),
    # metaparameters (architecture.ArchSpec)
    "base": ("string", "preset the point starts from"),
    "num_classes": ("Int64", "classes"),
    "image_size": ("Int64", "input height = width, pixels"),
    "in_channels": ("Int64", "input channels"),
    "conv1_filters": ("Int64", "stem filters"),
    "conv1_kernel": ("Int64", "stem kernel size"),
    "conv1_stride": ("Int64", "stem stride"),
    "conv1_padding": ("Int64", "stem padding, pixels"),
    "num_fire": ("Int64", "Fire modules"),
    "base_e": ("Int64", "expand filters of the first Fire module"),
    "incr_e": ("Int64", "expand filters added every freq modules"),
    "freq": ("Int64", "modules between width increases"),
    "pct3x3": ("float64", "fraction of expand filters that are 3x3"),
    "squeeze_ratio": ("float64", "squeeze width / expand width (SR)"),
    "pool_after": ("string", "layers followed by a 3x3/2 max-pool, comma-separated"),
    "bypass": ("string", "none | simple | complex"),
    "dropout": ("float64", "dropout rate before conv10"),
    "head_relu": ("boolean", "ReLU after conv10 (torchvision) or not"),
    "head_init": ("string", "conv10 initialiser"),
    # recipe and data
    "dataset": ("string", "data set, named as in tensorflow-datasets"),
    "train_examples": ("Int64", "training images used"),
    "test_examples": ("Int64", "test images evaluated"),
    "epochs": ("Int64", "epochs asked for"),
    "epochs_done": ("Int64", "epochs completed"),
    "batch_size": ("Int64", "training batch"),
    "optimizer": ("string", "sgd | adam | adamw"),
    "learning_rate": ("float64", "peak learning rate"),
    "weight_decay": ("float64", "weight decay"),
    "schedule": ("string", "learning-rate schedule"),
    "augment": ("boolean", "random crop + flip"),
    "recipe": ("string", "the whole recipe, JSON"),
    # complexity (analytic, explorer.complexity)
    "params": ("Int64", "trainable parameters"),
    "bytes_f32": ("Int64", "model size, float32 weights, bytes"),
    "bytes_int8": ("Int64", "model size, int8 per-channel weights, bytes"),
    "flops": ("Int64", "forward FLOPs per image (2 x MACs, no padding taps)"),
    # quality
    "accuracy": ("float64", "test top-1 accuracy, fraction"),
    "top5": ("float64", "test top-5 accuracy, fraction"),
    "test_loss": ("float64", "test cross-entropy"),
    "train_accuracy": ("float64", "training top-1 over the last epoch, fraction"),
    "train_loss": ("float64", "training loss over the last epoch"),
    "int8_accuracy": ("float64", "test top-1 with int8-quantised weights, fraction"),
    # cost
    "latency_b1_ms": ("float64", "inference latency, batch 1, median, ms"),
    "latency_b128_ms": ("float64", "inference latency, batch 128, median, ms"),
    "compile_s": ("float64", "jit compile time of the train and eval steps, s"),
    "images_per_s": ("float64", "training throughput, images/s (all seeds together)"),
    "wall_s": ("float64", "wall time of the trial, s"),
    "seeds_in_program": ("Int64", "seeds trained together in one program"),
    # provenance
    "host": ("string", "machine that ran the trial"),
    "device": ("string", "JAX device, e.g. cpu or the GPU's name"),
    "versions": ("string", "jax, flax, optax versions, JSON"),
    "finished_at": ("datetime64[ns, UTC]", "when the row was written"),
}
COLUMNS = list(SCHEMA)

Direction = Literal["min", "max"]

# Which way is better, for every numeric outcome of a trial (the columns worth
# averaging over seeds and putting on a Pareto plot).
DIRECTIONS: dict[str, Direction] = {
    "accuracy": "max",
    "top5": "max",
    "int8_accuracy": "max",
    "test_loss": "min",
    "train_accuracy": "max",
    "train_loss": "min",
    "params": "min",
    "bytes_f32": "min",
    "bytes_int8": "min",
    "flops": "min",
    "latency_b1_ms": "min",
    "latency_b128_ms": "min",
    "compile_s": "min",
    "images_per_s": "max",
    "wall_s": "min",
}
MAXIMISED = frozenset(k for k, d in DIRECTIONS.items() if d == "max")
# What a space may name as an objective (a searcher's metric).
OBJECTIVES = (
    "accuracy",
    "top5",
    "int8_accuracy",
    "test_loss",
    "params",
    "bytes_f32",
    "bytes_int8",
    "flops",
    "latency_b1_ms",
    "latency_b128_ms",
    "wall_s",
)


class ResultsError(Exception):
    """A file or folder that is not a results table."""


def empty() -> pd.DataFrame:
    """A table with every column and no rows."""
    return conform(pd.DataFrame(columns=COLUMNS))


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in SCHEMA order with SCHEMA dtypes; missing ones filled with NA."""
    unknown = sorted(set(df.columns) - set(SCHEMA))
    if unknown:
        raise ResultsError(f"columns not in results.SCHEMA: {unknown}")
    out = pd.DataFrame(index=df.index)
    for col, (dtype, _) in SCHEMA.items():
        if col not in df:
            out[col] = pd.Series(pd.NA, index=df.index, dtype=_missing_dtype(dtype)).astype(dtype)
            continue
        values = df[col]
        if dtype.startswith("datetime"):
            out[col] = pd.to_datetime(values, utc=True)
        else:
            out[col] = values.astype(dtype)
    return out.reset_index(drop=True)


def _missing_dtype(dtype: str) -> str:
    # An all-missing column must start from a dtype that can hold the missing value:
    # float64 and datetimes want NaN/NaT, not pd.NA (pandas 3 refuses that cast).
    return "Float64" if dtype == "float64" else "object" if dtype.startswith("datetime") else dtype


def write_row(folder: str | Path, row: dict) -> Path:
    """Write one trial's row atomically as rows/<trial_id>.parquet."""
    rows = Path(folder) / "rows"
    rows.mkdir(parents=True, exist_ok=True)
    df = conform(pd.DataFrame([row]))
    target = rows / f"{_safe(row['trial_id'])}.parquet"
    fd, tmp = tempfile.mkstemp(dir=rows, suffix=".tmp")
    os.close(fd)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, target)  # atomic on POSIX: a reader sees all or nothing
    return target


def load(path: str | Path) -> pd.DataFrame:
    """A results table from a sweep folder, its rows/ folder, or a .parquet/.csv file."""
    path = Path(path)
    if path.is_dir():
        rows = path / "rows" if (path / "rows").is_dir() else path
        files = sorted(rows.glob("*.parquet"))
        if not files:
            raise ResultsError(f"{path}: no results (*.parquet rows) in this folder")
        df = pd.concat([_read(f) for f in files], ignore_index=True)
    elif path.suffix == ".parquet":
        df = _read(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path)
    else:
        raise ResultsError(f"{path}: expected a sweep folder, .parquet or .csv file")
    missing = [c for c in ("trial_id", "status", "accuracy", "params") if c not in df]
    if missing:
        raise ResultsError(f"{path}: not a results table (no column {missing[0]!r})")
    return conform(df[[c for c in df.columns if c in SCHEMA]])


def save(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a whole table to one Parquet file (e.g. results.parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conform(df).to_parquet(path, index=False)
    return path


def _read(f: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(f)
    except Exception as e:
        raise ResultsError(f"{f}: not a readable Parquet file ({e})") from None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def versions() -> str:
    """Versions of the libraries that produced a row, as JSON."""
    from importlib.metadata import version

    return json.dumps({p: version(p) for p in ("jax", "flax", "optax")})
