"""`explorer export` and `explorer evaluate`: a kept network out to ONNX, checked.

A network to export is named by a checkpoint folder (`explorer train --save`)
or by a sweep folder and a trial: `--trial ID`, or the best row by a column
(`--best accuracy`) among those meeting a query (`--where "bytes_int8 <=
100_000"`); the row's `checkpoint` column says where its weights are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from explorer import architecture as arch
from explorer import checkpoints, complexity, export, results
from explorer import data as datasets
from explorer.console import human_bytes
from explorer.export import ExportError
from explorer.metrics import DIRECTIONS

CHECKED_IMAGES = 256  # test images whose logits are compared, ONNX Runtime against JAX
CALIBRATION = 512  # training images whose activations set an int8 file's ranges


@dataclasses.dataclass(frozen=True)
class Exported:
    """What `export_checkpoint` wrote and measured."""

    out: Path
    size_bytes: int
    source: Path
    epoch: int
    plan: arch.Plan
    max_diff: float
    checked: int
    top1: float
    test_images: int
    dataset: str
    jax_top1: float | None
    int8: bool = False  # the file is the int8 graph (export.quantize_int8)
    latency_b1_ms: float | None = None  # ONNX Runtime, one thread (int8 files)

    def int8_line(self, row_int8: float | None) -> str:
        """An int8 file's figures beside its row's int8 accuracy and `bytes_int8`."""
        want = complexity.bytes_int8(self.plan)
        return (
            f"int8 (QDQ): top-1 {100 * self.top1:.2f}% on {self.test_images:,} {self.dataset} "
            "test images (ONNX Runtime)"
            + (f"; the row's int8 accuracy: {100 * row_int8:.2f}%" if row_int8 is not None else "")
            + f"; {self.size_bytes / want:.2f}x bytes_int8 ({human_bytes(want)}); "
            f"batch-1 latency {self.latency_b1_ms:.2f} ms"
        )


def checkpoint_of(
    path: str | Path, trial: str | None = None, best: str | None = None, where: str | None = None
) -> tuple[Path, pd.Series | None]:
    """The checkpoint folder a command names, and its row when it came from a sweep."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such checkpoint or sweep folder")
    if (path / "rows").is_dir() or path.suffix in (".parquet", ".csv"):
        row = _row(results.load(path), path, trial, best, where)
        if pd.isna(row["checkpoint"]) or not str(row["checkpoint"]):
            raise ExportError(
                f"{path}: trial {row['trial_id']} kept no weights (its status is "
                f"{row['status']}; see search.checkpoint_every and search.keep_weights)"
            )
        folder = path if path.is_dir() else path.parent  # a row's checkpoint is relative to it
        return folder / str(row["checkpoint"]), row
    if trial or best or where:
        raise ExportError(f"{path}: --trial, --best and --where pick a row of a sweep folder")
    return _one_checkpoint(path), None


def _row(table: pd.DataFrame, path: Path, trial, best, where) -> pd.Series:
    if trial:
        hit = table[table["trial_id"] == trial]
        if hit.empty:
            some = ", ".join(sorted(table["trial_id"].astype(str))[:5])
            raise ExportError(f"{path}: no trial {trial!r} (it has {len(table)}: {some}, ...)")
        return hit.iloc[0]
    column = best or "accuracy"
    if column not in DIRECTIONS:
        raise ExportError(f"--best {column}: expected one of {', '.join(DIRECTIONS)}")
    kept = table[(table["status"] == "ok") & table["checkpoint"].fillna("").ne("")]
    if where:
        try:
            kept = kept.query(where)
        except Exception as e:
            raise ExportError(f"--where {where!r}: not a query over the table ({e})") from None
    kept = kept[kept[column].notna()]
    if kept.empty:
        raise ExportError(f"{path}: no trained trial with kept weights meets {where or 'it'}")
    order = kept[column].astype(float)
    return kept.loc[order.idxmax() if DIRECTIONS[column] == "max" else order.idxmin()]


def _one_checkpoint(folder: Path) -> Path:
    """The folder, or its one checkpoint folder (`train --save DIR` holds DIR/seed-K)."""
    if folder.is_dir() and not checkpoints.epochs(folder):
        inner = sorted(p for p in folder.iterdir() if p.is_dir() and checkpoints.epochs(p))
        if len(inner) == 1:
            return inner[0]
        if inner:
            names = ", ".join(p.name for p in inner)
            raise ExportError(f"{folder}: holds {len(inner)} checkpoints ({names}); name one")
    return folder


def export_checkpoint(
    folder: Path,
    out: Path,
    input_dtype: str = "uint8",
    epoch: int | None = None,
    test_size: int | None = None,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    trial_id: str | None = None,
    int8: bool = False,
) -> Exported:
    """Write the ONNX file of a checkpoint, verify it against JAX, measure its top-1.

    A file whose logits differ from JAX's by more than export.TOLERANCE is
    removed and raises ExportError. With int8, the verified float graph is then
    quantised (export.quantize_int8, calibrated on CALIBRATION training images) and
    the int8 file is what is written and measured, with its batch-1 latency.
    """
    params, _, meta = checkpoints.restore(folder, epoch)
    plan = arch.plan(checkpoints.spec_of(meta))
    keep = ("dataset", "epoch", "seed", "accuracy", "recipe")
    info = {k: meta[k] for k in keep if meta.get(k) is not None}
    if trial_id:
        info["trial_id"] = trial_id
    float_out = out.with_name(f".{out.name}.float32.onnx") if int8 else out
    export.to_onnx(plan, params, meta["mean"], meta["std"], float_out, input_dtype, info)
    data = _data(meta, data_dir, fashion_mnist_dir, None, test_size or meta.get("test_size"))
    check = data.x_test[:CHECKED_IMAGES]
    diff = export.verify(float_out, plan, params, meta["mean"], meta["std"], check)
    if diff > export.TOLERANCE:
        float_out.unlink()
        raise ExportError(
            f"{out}: ONNX Runtime's logits differ from JAX's by {diff:.2e} "
            f"(more than {export.TOLERANCE:g}); the file was removed"
        )
    latency = None
    if int8:
        try:
            export.quantize_int8(float_out, out, data.x_train[:CALIBRATION])
        finally:
            float_out.unlink()
        latency = export.ort_latency_b1_ms(out)
    return Exported(
        out,
        export.size_bytes(out),
        folder,
        int(meta["epoch"]),
        plan,
        diff,
        len(check),
        export.ort_top1(out, data),
        len(data.x_test),
        data.info.name,
        meta.get("accuracy"),
        int8,
        latency,
    )


def _data(meta: dict, data_dir, fashion_mnist_dir, train_size, test_size) -> datasets.Dataset:
    """The data set a checkpoint's (or compressed file's) meta names, where it came from."""
    extra = {"fashion_mnist_dir": fashion_mnist_dir} if fashion_mnist_dir else {}
    return datasets.load(
        meta["dataset"], data_dir or meta.get("data_dir"), train_size, test_size, False, **extra
    )


def compress_checkpoint(
    folder: Path,
    how,
    out: Path,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    settings=None,
    trial_id: str | None = None,
    on_stage=None,
):
    """Deep Compression of a checkpoint (explorer.compression), on the data it trained on."""
    from explorer import compression
    from explorer.recipe import Recipe

    params, _, meta = checkpoints.restore(folder)
    spec = checkpoints.spec_of(meta)
    recipe = Recipe.model_validate_json(meta["recipe"])
    data = _data(meta, data_dir, fashion_mnist_dir, meta.get("train_size"), meta.get("test_size"))
    keep = ("spec", "dataset", "mean", "std", "seed", "epoch", "recipe", "train_size", "test_size")
    info = {k: meta[k] for k in keep if meta.get(k) is not None}
    if trial_id:
        info["trial_id"] = trial_id
    return compression.compress(
        spec,
        recipe,
        data,
        params,
        how,
        out,
        info,
        seed=int(meta.get("seed", 0)),
        settings=settings,
        on_stage=on_stage,
    )


def evaluate_compressed(
    path: Path,
    test_size: int | None = None,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    settings=None,
) -> tuple[float, int, object]:
    """(top-1, test images, the decoded file) of a compressed network, decoded from its bytes."""
    from explorer import compression, sqzfile
    from explorer.recipe import Recipe

    decoded = sqzfile.read(path)
    meta = decoded.meta
    data = _data(meta, data_dir, fashion_mnist_dir, 1, test_size or meta.get("test_size"))
    recipe = Recipe.model_validate_json(meta["recipe"]) if meta.get("recipe") else Recipe()
    spec = checkpoints.spec_of(meta)
    top1 = compression.evaluate(
        spec, recipe, data, decoded.params, settings, meta.get("mean"), meta.get("std")
    )
    return top1, len(data.x_test), decoded
