"""`explorer export`: a checkpoint, a compressed file (`.sqz`) or a sweep's whole front as
ONNX files, each checked against JAX and measured in ONNX Runtime (explorer.deploy).

`--front` exports every row on the sweep's Pareto front as the report draws it: the
architectures (means over seeds, `analysis.architectures`) that no other dominates in
the sweep's objectives (its space.yaml's; else params and accuracy), each of their
seeds' rows. `search.keep_weights: front` keeps the weights of the rows on the rows' own
front (seed by seed: an architecture's weaker seed may have none); a front row without
kept weights is a line of the table that says so.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pandas as pd

from explorer import console, deploy, results
from explorer.export import ExportError

FRONT_CSV = "front.csv"
NO_WEIGHTS = "no kept weights (search.keep_weights)"


# ---------------------------------------------------------------- the front
def objectives_of(folder: Path) -> dict[str, str]:
    """The objectives the report draws a sweep's front by: its space's, else the default."""
    from explorer import space as spaces
    from explorer.analysis.pareto import DEFAULT_OBJECTIVES

    yaml = folder / "space.yaml"
    return dict(spaces.load(yaml).objectives) if yaml.is_file() else dict(DEFAULT_OBJECTIVES)


def front_rows(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The rows (every seed, status ok) of the architectures on the front of these
    objectives, in the report's order (the first 'min' objective first)."""
    from explorer.analysis.architectures import architectures
    from explorer.analysis.pareto import ok_rows, pareto_front

    ok = ok_rows(table)
    missing = [c for c in objectives if c not in ok]
    if ok.empty or missing:
        why = f"no column {missing[0]!r}" if missing else "no row with status ok"
        raise ExportError(f"the sweep has no front ({why})")
    front = pareto_front(architectures(ok), objectives)
    ids = front["trials"].str.split(", ").explode().dropna()
    by_id = ok.set_index(ok["trial_id"].astype(str))
    return by_id.loc[[i for i in ids if i in by_id.index]].reset_index(drop=True)


def export_front(
    path: Path,
    out_dir: Path,
    int8: bool = False,
    input_dtype: str = "uint8",
    test_size: int | None = None,
    data_dir: str | None = None,
    fashion_mnist_dir: str | None = None,
) -> list[dict]:
    """Write out_dir/<trial_id>.onnx for every front row with kept weights, and
    out_dir/front.csv; one record per front row (`error` says why a row has no file)."""
    table = results.load(path)
    folder = path if path.is_dir() else path.parent  # a row's checkpoint is relative to it
    rows = front_rows(table, objectives_of(folder))
    if not rows["checkpoint"].fillna("").astype(str).ne("").any():
        raise ExportError(
            f"{path}: none of the {len(rows)} rows on its front kept its weights "
            "(search.keep_weights: front or all keeps them)"
        )
    column = "int8_accuracy" if int8 else "accuracy"
    cache: dict = {}
    out = []
    for _, row in rows.iterrows():
        trial = str(row["trial_id"])
        rec = {"trial_id": trial, "file": "", "bytes": None, "top1_ort": None,
               column: _number(row.get(column)), "latency_b1_ms": None, "error": ""}  # fmt: skip
        if int8:  # the row's analytic int8 size, beside the file's
            rec["bytes_int8"] = _number(row.get("bytes_int8"))
        kept = row["checkpoint"]
        if pd.isna(kept) or not str(kept):
            rec["error"] = NO_WEIGHTS
        else:
            target = out_dir / f"{trial}.onnx"
            try:
                done = deploy.export_checkpoint(
                    folder / str(kept), target, input_dtype, None, test_size, data_dir,
                    fashion_mnist_dir, trial, int8, cache,
                )  # fmt: skip
            except _row_errors() as e:
                rec["error"] = str(e)
            else:
                rec.update(file=str(target), bytes=done.size_bytes, top1_ort=done.top1,
                           latency_b1_ms=done.latency_b1_ms)  # fmt: skip
        out.append(rec)
    write_csv(out, out_dir / FRONT_CSV)
    return out


def _row_errors() -> tuple[type[Exception], ...]:
    """What one row's export may fail with, that the other rows survive."""
    from explorer.checkpoints import CheckpointError
    from explorer.data import DatasetError

    return ExportError, CheckpointError, DatasetError


def _number(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def write_csv(records: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows([{k: "" if v is None else v for k, v in r.items()} for r in records])
    tmp.replace(path)
    return path


def front_table(records: list[dict], column: str) -> str:
    """The front's files as a text table: a row without a file says why."""

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    lines = []
    for r in records:
        line = {"trial": r["trial_id"], "file": Path(r["file"]).name if r["file"] else "-"}
        if r["error"]:
            line.update(size="-", **{"top-1 (ORT)": "-"})
        else:
            line.update(size=console.human_bytes(r["bytes"]), **{"top-1 (ORT)": pct(r["top1_ort"])})
        line[f"row's {column}"] = pct(r[column])
        if r.get("bytes_int8") and r["bytes"]:
            line["x bytes_int8"] = f"{r['bytes'] / r['bytes_int8']:.3f}"
        lat = r["latency_b1_ms"]
        line["batch-1 ms"] = "-" if lat is None else f"{lat:.3f}"
        if any(x["error"] for x in records):
            line["note"] = r["error"]
        lines.append(line)
    return console.format_table(lines)


# ---------------------------------------------------------------- the command
def cmd_export(args) -> int:
    """`explorer export`: a checkpoint (or a sweep's row), a .sqz file, or a sweep's front."""
    from explorer import sqzfile

    src = Path(args.checkpoint)
    picks = [f for f, v in (("--trial", args.trial), ("--best", args.best),
                            ("--where", args.where), ("--epoch", args.epoch)) if v]  # fmt: skip
    if args.front:
        if picks:
            raise ExportError(
                f"{picks[0]}: --front exports every row on the front; "
                "--trial, --best, --where and --epoch pick one network"
            )
        return _front(args, src)
    if src.suffix == sqzfile.SUFFIX:
        if picks:
            raise ExportError(f"{picks[0]}: picks a row of a sweep folder; {src} is one network")
        return _compressed(args, src)
    return _checkpoint(args)


def _front(args, src: Path) -> int:
    if not src.exists():
        raise ExportError(f"{src}: no such sweep folder")
    if not deploy.is_sweep(src):
        raise ExportError(
            f"{src}: --front expects a sweep folder (one with rows/) or its results table; "
            "this is not one"
        )
    folder = src if src.is_dir() else src.parent
    out_dir = Path(args.out or folder / ("front-int8" if args.int8 else "front-onnx"))
    records = export_front(src, out_dir, args.int8, args.input_dtype, args.test_size,
                           args.data_dir, args.settings.fashion_mnist_dir)  # fmt: skip
    column = "int8_accuracy" if args.int8 else "accuracy"
    kind = "int8 (QLinearConv)" if args.int8 else f"float32, input {args.input_dtype}"
    print(f"{src}: {len(records)} rows on the front; ONNX files ({kind}) in {out_dir}")
    print(front_table(records, column))
    print(f"table written to {out_dir / FRONT_CSV}")
    failed = [r for r in records if r["error"] and r["error"] != NO_WEIGHTS]
    for r in failed:
        print(f"{r['trial_id']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def _compressed(args, src: Path) -> int:
    out = Path(args.out or src.with_suffix(".onnx").name)
    done, decoded = deploy.export_compressed(src, out, args.input_dtype, args.test_size,
                                             args.data_dir, args.settings.fashion_mnist_dir,
                                             args.int8, args.settings)  # fmt: skip
    how = decoded.meta.get("compression") or {}
    bits = int(decoded.meta.get("bits", 0))
    what = f"sparsity {how.get('sparsity', 0):g}, " + (f"{bits} bits" if bits else "float32")
    _header(args, out, done, f"{src} ({console.human_bytes(decoded.size)}; {what})")
    ref = "the decoded network in JAX (float32)"
    if done.int8:
        print(done.int8_line(done.jax_top1, ref))
        return 0
    print(
        f"top-1 {100 * done.top1:.2f}% on {done.test_images:,} {done.dataset} test images "
        f"(ONNX Runtime); {ref}: {100 * done.jax_top1:.2f}%; "
        f"batch-1 latency {done.latency_b1_ms:.2f} ms"
    )
    return 0


def _checkpoint(args) -> int:
    folder, row = deploy.checkpoint_of(args.checkpoint, args.trial, args.best, args.where)
    out = Path(args.out or (f"{row['trial_id']}.onnx" if row is not None else "model.onnx"))
    trial = None if row is None else str(row["trial_id"])
    done = deploy.export_checkpoint(folder, out, args.input_dtype, args.epoch, args.test_size,
                                    args.data_dir, args.settings.fashion_mnist_dir, trial,
                                    args.int8)  # fmt: skip
    _header(args, out, done, f"{folder} (epoch {done.epoch})")
    if done.int8:
        print(done.int8_line(row.get("int8_accuracy") if row is not None else None))
        return 0
    jax_top1 = row["accuracy"] if row is not None else done.jax_top1
    print(
        f"top-1 {100 * done.top1:.2f}% on {done.test_images:,} {done.dataset} test images "
        "(ONNX Runtime)" + (f"; JAX: {100 * jax_top1:.2f}%" if jax_top1 is not None else "")
    )
    return 0


def _header(args, out: Path, done: deploy.Exported, source: str) -> None:
    s = done.plan.spec
    print(
        f"{out}: {console.human_bytes(done.size_bytes)}, from {source}; "
        f"input {args.input_dtype} [N, {s.image_size}, {s.image_size}, {s.in_channels}] "
        f"pixels 0-255, output logits [N, {s.num_classes}]"
    )
    before = " (the float32 graph, before quantisation)" if done.int8 else ""
    print(f"max |ONNX Runtime - JAX| on {done.checked} test images: {done.max_diff:.2e}{before}")
