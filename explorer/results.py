"""The results table: one row per trial, columns fixed here, stored as Parquet.

Every column and its unit lives in SCHEMA, and nowhere else. Rows are written one
file per trial (`rows/<trial_id>.parquet`, written to a temporary name and renamed,
so a crash never leaves half a row) and gathered with `load`, one pandas call.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd

# name -> (pandas dtype, meaning). Fractions are in [0, 1]; units in the names.
SCHEMA: dict[str, tuple[str, str]] = {
    # identity
    "trial_id": ("string", "unique id: space, point index and seed"),
    "space": ("string", "name of the space file the trial came from"),
    "point": ("Int64", "index of the point within its space"),
    "seed": ("Int64", "training seed"),
    "space_digest": ("string", "hash of what the space file says (rows of another space differ)"),
    "status": ("string", "ok | failed | skipped | stopped (early, by the scheduler)"),
    "error": ("string", "why a trial failed or was skipped; empty when ok"),
    "attempts": ("Int64", "times the trial was started (more when a worker died)"),
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
    "resumed_from_epoch": ("Int64", "epochs restored from a checkpoint by the last attempt"),
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
    # Deep Compression (explorer.compression), when the space asks for it
    "sparsity": ("float64", "fraction of every kernel pruned (overall, with per_layer)"),
    "per_layer": ("boolean", "each layer pruned at its own rate, from a sensitivity scan"),
    "rounds": ("Int64", "prune-retrain rounds reaching the sparsity"),
    "bits": ("Int64", "bits per shared-weight index (2^bits per layer); 0: float32 values"),
    "bytes_compressed": ("Int64", "the compressed file's size on disk, bytes"),
    "compressed_accuracy": ("float64", "test top-1 of the network decoded from that file"),
    "compressed_file": ("string", "the compressed file, in the sweep folder"),
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
    "latency_ort_b1_ms": ("float64", "the exported ONNX model's batch-1 latency, ONNX Runtime, ms"),
    "bytes_int8_onnx": ("Int64", "the int8 ONNX file's size on disk (export --int8), bytes"),
    "int8_onnx_accuracy": ("float64", "test top-1 of that int8 file in ONNX Runtime, fraction"),
    "latency_ort_int8_b1_ms": ("float64", "that int8 file's batch-1 latency, ONNX Runtime, ms"),
    "compile_s": ("float64", "jit compile time of the train and eval steps, s"),
    "images_per_s": ("float64", "training throughput, images/s (all seeds together)"),
    "wall_s": ("float64", "wall time of the trial, every attempt included, s"),
    "seeds_in_program": ("Int64", "seeds trained together in one program"),
    # what the trial kept
    "checkpoint": ("string", "this seed's final weights, in the sweep folder; empty: none kept"),
    # provenance
    "host": ("string", "machine that ran the trial"),
    "device": ("string", "JAX device, e.g. cpu or the GPU's name"),
    "versions": ("string", "jax, flax, optax versions, JSON"),
    "finished_at": ("datetime64[ns, UTC]", "when the row was written"),
}
COLUMNS = list(SCHEMA)

# Metric directions and objectives live in explorer.metrics (no pandas there, so
# the trainer can import them); re-exported here beside the columns they describe.
from explorer.metrics import DIRECTIONS, MAXIMISED, OBJECTIVES, Direction  # noqa: E402, F401

# The learning curves beside the rows (curves.parquet): one row per trial, seed and epoch.
CURVE_SCHEMA: dict[str, tuple[str, str]] = {
    "trial_id": ("string", "the row's trial id"),
    "seed": ("Int64", "training seed"),
    "epoch": ("Int64", "epochs done, from 1"),
    "train_loss": ("float64", "training loss over the epoch"),
    "train_accuracy": ("float64", "training top-1 over the epoch, fraction"),
    "test_loss": ("float64", "test cross-entropy after the epoch"),
    "accuracy": ("float64", "test top-1 after the epoch, fraction"),
    "top5": ("float64", "test top-5 after the epoch, fraction"),
    "wall_s": ("float64", "wall time of the attempt so far, s"),
}


class ResultsError(Exception):
    """A file or folder that is not a results table."""


def empty() -> pd.DataFrame:
    """A table with every column and no rows."""
    return conform(pd.DataFrame(columns=COLUMNS))


def conform(df: pd.DataFrame, schema: dict = SCHEMA, name: str = "SCHEMA") -> pd.DataFrame:
    """Columns in the schema's order with its dtypes; missing ones filled with NA.

    schema: SCHEMA (rows) or CURVE_SCHEMA (named `name` in the error for an unknown column).
    """
    unknown = sorted(set(df.columns) - set(schema))
    if unknown:
        raise ResultsError(f"columns not in results.{name}: {unknown}")
    out = pd.DataFrame(index=df.index)
    for col, (dtype, _) in schema.items():
        if col not in df:
            out[col] = pd.Series(pd.NA, index=df.index, dtype=_missing_dtype(dtype)).astype(dtype)
            continue
        values = df[col]
        try:
            if dtype.startswith("datetime"):
                out[col] = pd.to_datetime(values, utc=True)
            else:
                out[col] = values.astype(dtype)
        except (ValueError, TypeError) as e:
            bad = _first_bad(values, dtype)
            raise ResultsError(f"column {col!r}: expected {dtype}, got {bad!r} ({e})") from None
    return out.reset_index(drop=True)


def _missing_dtype(dtype: str) -> str:
    # An all-missing column must start from a dtype that can hold the missing value:
    # float64 and datetimes want NaN/NaT, not pd.NA (pandas 3 refuses that cast).
    return "Float64" if dtype == "float64" else "object" if dtype.startswith("datetime") else dtype


def write_row(folder: str | Path, row: dict) -> Path:
    """Write one trial's row atomically as rows/<trial_id>.parquet."""
    rows = Path(folder) / "rows"
    rows.mkdir(parents=True, exist_ok=True)
    target = rows / f"{_safe(row['trial_id'])}.parquet"
    _write_atomically(conform(pd.DataFrame([row])), target)
    return target


def load(path: str | Path) -> pd.DataFrame:
    """A results table from a sweep folder, its rows/ folder, or a .parquet/.csv file."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no such file or folder")
    if path.is_dir():
        rows = path / "rows" if (path / "rows").is_dir() else path
        files = sorted(rows.glob("*.parquet"))
        if not files:
            raise ResultsError(f"{path}: no results (*.parquet rows) in this folder")
        df = pd.concat([_read(f) for f in files], ignore_index=True)
    elif path.suffix == ".parquet":
        df = _read(path)
    elif path.suffix == ".csv":
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ResultsError(f"{path}: not a readable CSV table ({_short(e)})") from None
    else:
        raise ResultsError(f"{path}: expected a sweep folder, .parquet or .csv file")
    missing = [c for c in ("trial_id", "status", "accuracy", "params") if c not in df]
    if missing:
        raise ResultsError(f"{path}: not a results table (no column {missing[0]!r})")
    return conform(df[[c for c in df.columns if c in SCHEMA]])


def write_curve(folder: str | Path, trial_id: str, points: list[dict]) -> Path:
    """Write one trial-seed's curve so far, atomically, as curves/<trial_id>.parquet.

    A retried epoch (a resumed trial) replaces the earlier one.
    """
    target = _curve_path(folder, trial_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(points).drop_duplicates(["seed", "epoch"], keep="last")
    df = df.sort_values("epoch").assign(trial_id=trial_id)
    _write_atomically(_curves(df), target)
    return target


def read_curve(folder: str | Path, trial_id: str) -> list[dict]:
    """The epochs already in curves/<trial_id>.parquet (none if there is no file)."""
    path = _curve_path(folder, trial_id)
    if not path.is_file():
        return []
    return _read(path).drop(columns="trial_id").to_dict("records")


def attempt_seconds(points: list[dict]) -> float:
    """The wall time of the attempts recorded in a curve (read_curve's epochs): each
    attempt's clock starts at zero again, so a fall in wall_s from one epoch to the
    next starts another attempt; the sum of each attempt's last wall_s."""
    total = last = 0.0
    for p in sorted(points, key=lambda p: p["epoch"]):
        wall = float(p.get("wall_s", math.nan))
        if math.isnan(wall):
            continue
        if wall < last:
            total += last
        last = wall
    return total + last


def _curve_path(folder: str | Path, trial_id: str) -> Path:
    return Path(folder) / "curves" / f"{_safe(trial_id)}.parquet"


def load_curves(folder: str | Path) -> pd.DataFrame:
    """All learning curves of a sweep folder (or a curves.parquet file)."""
    path = Path(folder)
    if path.is_file():
        return _curves(_read(path))
    files = sorted((path / "curves").glob("*.parquet"))
    if not files:
        return _curves(pd.DataFrame(columns=list(CURVE_SCHEMA)))
    return _curves(pd.concat([_read(f) for f in files], ignore_index=True))


def save(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a whole table to one Parquet file (e.g. results.parquet), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(conform(df), path)
    return path


def _curves(df: pd.DataFrame) -> pd.DataFrame:
    return conform(df, CURVE_SCHEMA, "CURVE_SCHEMA")


def save_curves(df: pd.DataFrame, path: str | Path) -> Path:
    """Write all learning curves to one Parquet file (curves.parquet), atomically."""
    path = Path(path)
    _write_atomically(_curves(df), path)
    return path


def _write_atomically(df: pd.DataFrame, target: Path) -> None:
    """Write to a temporary file beside target, then rename: a reader sees all or nothing.

    The temporary file is removed on every error (a full disk, an interrupt).
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, target)  # atomic on POSIX
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(f: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(f)
    except Exception as e:
        raise ResultsError(f"{f}: not a readable Parquet file ({_short(e)})") from None


def _short(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:200]


def _first_bad(values: pd.Series, dtype: str):
    """The first value of a column that does not convert to dtype (for the message)."""
    for v in values:
        try:
            pd.Series([v]).astype(dtype)
        except (ValueError, TypeError):
            return v
    return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def versions() -> str:
    """Versions of the libraries that produced a row, as JSON."""
    from importlib.metadata import version

    return json.dumps({p: version(p) for p in ("jax", "flax", "optax")})
