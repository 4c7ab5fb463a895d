"""`explorer export` and `explorer evaluate`: a kept network out to ONNX, checked.

A network to export is named by a checkpoint folder (`explorer train --save`),
by a sweep folder and a trial: `--trial ID`, or the best row by a column
(`--best accuracy`) among those meeting a query (`--where "bytes_int8 <=
100_000"`); the row's `checkpoint` column says where its weights are; or by a
compressed file (`.sqz`, `explorer compress`), exported as the network it
decodes to. Checkpoints and compressed files take one path to ONNX
(`export_network`); a sweep's whole front is explorer.deploy_front's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from explorer import architecture as arch
from explorer import checkpoints, complexity, export, export_int8, results
from explorer import data as datasets
from explorer.console import first_line, human_bytes
from explorer.export import ExportError
from explorer.metrics import DIRECTIONS

CHECKED_IMAGES = 256  # test images whose logits are compared, ONNX Runtime against JAX
CALIBRATION = 512  # training images whose activations set an int8 file's ranges (docs/deploy.md)
MAX_INT8_BITS = 8  # a compressed file's codebook that int8 holds: 2^8 values per layer


@dataclasses.dataclass(frozen=True)
class Exported:
    """What `export_checkpoint` wrote and measured."""

    out: Path
    size_bytes: int
    source: Path
    epoch: int | None
    plan: arch.Plan
    max_diff: float
    checked: int
    top1: float
    test_images: int
    dataset: str
    jax_top1: float | None  # the network's own top-1 in JAX (a checkpoint's, a decoded file's)
    int8: bool = False  # the file is the int8 graph (export_int8.quantize_int8)
    latency_b1_ms: float | None = None  # ONNX Runtime, one thread

    def int8_line(self, reference: float | None, label: str = "the row's int8 accuracy") -> str:
        """An int8 file's figures beside a reference top-1 (its row's int8 accuracy) and
        `bytes_int8`."""
        want = complexity.bytes_int8(self.plan)
        return (
            f"int8 (QLinearConv): top-1 {100 * self.top1:.2f}% on {self.test_images:,} "
            f"{self.dataset} test images (ONNX Runtime)"
            + (f"; {label}: {100 * reference:.2f}%" if reference is not None else "")
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
    if is_sweep(path):
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


def is_sweep(path: Path) -> bool:
    """A sweep folder (one with rows/) or a sweep's results table."""
    return (path / "rows").is_dir() or path.suffix in (".parquet", ".csv")


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
    cache: dict | None = None,
) -> Exported:
    """Write the ONNX file of a checkpoint, verify it against JAX, measure its top-1
    (`export_network`). cache: data sets already loaded, kept across calls (--front)."""
    params, _, meta = checkpoints.restore(folder, epoch)
    plan = arch.plan(checkpoints.spec_of(meta))
    info = _info(meta, ("dataset", "epoch", "seed", "accuracy", "recipe"), trial_id)
    data = _data(meta, data_dir, fashion_mnist_dir, _train_size(int8),
                 test_size or meta.get("test_size"), cache)  # fmt: skip
    return export_network(plan, params, meta, out, data, folder, input_dtype, int8, info)


def export_compressed(
    path: Path,
    out: Path,
    input_dtype: str = "uint8",
    test_size: int | None = None,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    int8: bool = False,
    settings=None,
) -> tuple[Exported, object]:
    """The network a `.sqz` file decodes to as an ONNX file (`export_network`), and the
    decoded file; the Exported's jax_top1 is the decoded network's (`evaluate_compressed`).

    int8 only for a file whose weights are shared among at most 2^8 values per layer
    (bits <= 8; 0: not shared, float32 as a checkpoint's); otherwise ExportError.
    """
    from explorer import sqzfile

    decoded = sqzfile.read(path)
    meta = decoded.meta
    bits = int(meta.get("bits", 0))
    if int8 and bits > MAX_INT8_BITS:
        raise ExportError(
            f"{path}: --int8 expects a codebook that fits int8 (at most {MAX_INT8_BITS} bits); "
            f"this file's has {bits} bits"
        )
    plan = arch.plan(checkpoints.spec_of(meta))
    keep = ("dataset", "epoch", "seed", "recipe", "trial_id", "compression")
    info = _info(meta, keep, None)
    info["compressed_file"] = {"name": Path(path).name, "bytes": decoded.size}
    data = _data(meta, data_dir, fashion_mnist_dir, _train_size(int8),
                 test_size or meta.get("test_size"))  # fmt: skip
    jax_top1 = _decoded_top1(decoded, data, settings)
    done = export_network(plan, decoded.params, meta, out, data, Path(path), input_dtype, int8,
                          info)  # fmt: skip
    return dataclasses.replace(done, jax_top1=jax_top1), decoded


def export_network(
    plan: arch.Plan,
    params,
    meta: dict,
    out: Path,
    data: datasets.Dataset,
    source: Path,
    input_dtype: str = "uint8",
    int8: bool = False,
    info: dict | None = None,
) -> Exported:
    """Write a network's ONNX file, verify it against JAX, measure its top-1 and latency.

    meta: the network's `mean`, `std` (pixel units) and, if known, `epoch` and
    `accuracy` (its own top-1); info: the file's metadata. A file whose logits differ
    from JAX's by more than export.TOLERANCE on CHECKED_IMAGES test images is removed
    and raises ExportError. With int8, the verified float graph is then quantised
    (export_int8.quantize_int8, calibrated on the first CALIBRATION training images) and the
    int8 file is what is written and measured.
    """
    float_out = out.with_name(f".{out.name}.float32.onnx") if int8 else out
    export.to_onnx(plan, params, meta["mean"], meta["std"], float_out, input_dtype, info)
    check = data.x_test[:CHECKED_IMAGES]
    diff = export.verify(float_out, plan, params, meta["mean"], meta["std"], check)
    if diff > export.TOLERANCE:
        float_out.unlink()
        raise ExportError(
            f"{out}: ONNX Runtime's logits differ from JAX's by {diff:.2e} "
            f"(more than {export.TOLERANCE:g}); the file was removed"
        )
    if int8:
        try:
            export_int8.quantize_int8(float_out, out, data.x_train[:CALIBRATION])
        finally:
            float_out.unlink()
    epoch = meta.get("epoch")
    return Exported(
        out,
        export.size_bytes(out),
        source,
        None if epoch is None else int(epoch),
        plan,
        diff,
        len(check),
        export.ort_top1(out, data),
        len(data.x_test),
        data.info.name,
        meta.get("accuracy"),
        int8,
        export.ort_latency_b1_ms(out),
    )


def int8_figures(
    float_onnx_path: str | Path,
    plan: arch.Plan | arch.ArchSpec,
    data: datasets.Dataset,
    out: str | Path | None = None,
) -> dict:
    """The int8 file of a network's float32 ONNX file (export.to_onnx), measured.

    Written to `out`, by default beside the float file (NAME.int8.onnx), as
    `explorer export --int8` writes it: calibrated on the first CALIBRATION training
    images of `data`. Returns bytes_int8_onnx (its size on disk), int8_onnx_accuracy
    (its top-1 on data's test split) and latency_ort_int8_b1_ms (batch 1), both in ONNX
    Runtime on one thread. ExportError when the file is not this plan's network (its
    metadata's spec), there is no calibration image, or any step fails.
    """
    src = Path(float_onnx_path)
    out = Path(out) if out is not None else src.with_name(f"{src.stem}.int8.onnx")
    spec = plan.spec if isinstance(plan, arch.Plan) else plan
    try:
        if export.metadata(src).get("spec") != spec.as_dict():
            raise ExportError(f"{src}: its metadata's spec is not this plan's network")
        if not len(data.x_train):
            raise ExportError(f"{src}: no training images to calibrate the int8 file on")
        export_int8.quantize_int8(src, out, data.x_train[:CALIBRATION])
        return {
            "bytes_int8_onnx": export.size_bytes(out),
            "int8_onnx_accuracy": export.ort_top1(out, data, threads=1),  # a trial's share
            "latency_ort_int8_b1_ms": export.ort_latency_b1_ms(out),
        }
    except ExportError:
        raise
    except Exception as e:  # ONNX Runtime's run errors, a full disk: one line for the row
        raise ExportError(f"{src}: int8 figures failed ({first_line(e)})") from None


def _info(meta: dict, keep: tuple[str, ...], trial_id: str | None) -> dict:
    """The ONNX file's metadata: these keys of a network's meta, and its trial."""
    info = {k: meta[k] for k in keep if meta.get(k) is not None}
    if trial_id:
        info["trial_id"] = trial_id
    return info


def _train_size(int8: bool) -> int:
    """Training images an export needs: the calibration images of an int8 file."""
    return CALIBRATION if int8 else 1


def _data(
    meta: dict, data_dir, fashion_mnist_dir, train_size, test_size, cache: dict | None = None
) -> datasets.Dataset:
    """The data set a checkpoint's (or compressed file's) meta names, where it came from
    (the first train_size/test_size images). cache: loaded ones by what was asked."""
    where = data_dir or meta.get("data_dir")
    key = (meta["dataset"], where, train_size, test_size, fashion_mnist_dir)
    if cache is not None and key in cache:
        return cache[key]
    extra = {"fashion_mnist_dir": fashion_mnist_dir} if fashion_mnist_dir else {}
    data = datasets.load(meta["dataset"], where, train_size, test_size, False, **extra)
    if cache is not None:
        cache[key] = data
    return data


def compress_checkpoint(
    folder: Path,
    how,
    out: Path,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    settings=None,
    trial_id: str | None = None,
    on_stage=None,
    scan_path: Path | None = None,
):
    """Deep Compression of a checkpoint (explorer.compression), on the data it trained on.

    For per-layer rates, the sensitivity scan is read from scan_path when it
    holds one of this checkpoint, else measured and written there.
    """
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
    scanned = None
    if how.per_layer and how.sparsity:
        scanned = _scan(scan_path, folder, spec, recipe, data, params, settings, on_stage)
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
        scanned=scanned,
    )


def _scan(path, folder, spec, recipe, data, params, settings, on_stage):
    from explorer import compression, sqzfile

    if path is not None and Path(path).is_file():
        scanned = json.loads(Path(path).read_text())
        layers = {p for p in sqzfile.flat(params) if p.endswith("/kernel")}
        if scanned.get("source") == str(folder) and set(scanned["layers"]) == layers:
            return scanned

    def each(layer, accs):
        if on_stage:
            worst = min(accs.values())
            on_stage(f"scan {layer} at {float(max(accs, key=float)):.0%}", worst)

    scanned = compression.sensitivity(spec, recipe, data, params, settings, on_layer=each)
    scanned["source"] = str(folder)
    if path is not None:
        Path(path).write_text(json.dumps(scanned, indent=1) + "\n")
    return scanned


def evaluate_compressed(
    path: Path,
    test_size: int | None = None,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
    settings=None,
) -> tuple[float, int, object]:
    """(top-1, test images, the decoded file) of a compressed network, decoded from its bytes."""
    from explorer import sqzfile

    decoded = sqzfile.read(path)
    meta = decoded.meta
    data = _data(meta, data_dir, fashion_mnist_dir, 1, test_size or meta.get("test_size"))
    return _decoded_top1(decoded, data, settings), len(data.x_test), decoded


def _decoded_top1(decoded, data: datasets.Dataset, settings=None) -> float:
    """Test top-1 of a decoded compressed file's network in JAX (compression.evaluate)."""
    from explorer import compression
    from explorer.recipe import Recipe

    meta = decoded.meta
    recipe = Recipe.model_validate_json(meta["recipe"]) if meta.get("recipe") else Recipe()
    spec = checkpoints.spec_of(meta)
    return compression.evaluate(
        spec, recipe, data, decoded.params, settings, meta.get("mean"), meta.get("std")
    )
