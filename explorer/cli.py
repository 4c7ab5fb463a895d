"""`explorer inspect | train | sweep | report | export | evaluate`: argument parsing and wiring
only."""

from __future__ import annotations

from explorer import devices

devices.keep_freed_memory()  # before the imports below start threads (see its docstring)

import argparse
import json
import sys
from pathlib import Path

from explorer import architecture as arch
from explorer import complexity, console
from explorer import settings as settings_mod
from explorer import space as spaces
from explorer.checkpoints import CheckpointError
from explorer.data import DatasetError
from explorer.export import DTYPES, ExportError
from explorer.results import ResultsError
from explorer.selection import UsageError, select
from explorer.sweep import SweepError, SweepInterrupted

USER_ERRORS = (
    UsageError,
    spaces.SpaceError,
    arch.ArchError,
    DatasetError,
    ResultsError,
    SweepError,
    settings_mod.SettingError,
    CheckpointError,
    ExportError,
)


def _selection(args):
    return select(
        args.space,
        args.model,
        args.dataset,
        args.image_size,
        args.num_classes,
        args.in_channels,
        args.set,
        getattr(args, "point", None),
    )


# ---------------------------------------------------------------- inspect
def cmd_inspect(args) -> int:
    sel = _selection(args)
    name, pts, space = sel.name, sel.points, sel.space
    records = []
    for p in pts:
        plan = arch.plan(p.arch)
        rec = {
            "index": p.index,
            "values": p.values,
            "metaparameters": p.arch.as_dict(),
            **complexity.summary(plan),
        }
        if args.xla:
            from explorer.measure import xla_flops

            rec["flops_xla"] = xla_flops(plan)
        if args.layers or args.json:
            rec["layers"] = arch.layer_table(plan)
        records.append(rec)
    if args.json:
        doc = {"space": name, "num_points": len(records), "points": records}
        if space:
            doc["seeds"] = space.search.seeds
            doc["method"] = space.search.method
        print(json.dumps(doc, indent=2))
        return 0
    varied = space.varied if space else list(pts[0].values)
    header = f"{name}: {len(records)} point(s)"
    if space:
        header += f", {space.search.seeds} seed(s) each, {space.search.method} search"
        header += f", data {space.dataset.name}"
    print(header)
    rows = []
    for r in records:
        row = {"#": r["index"]}
        row.update({k: r["values"].get(k, r["metaparameters"].get(k)) for k in varied})
        row.update(
            params=f"{r['params']:,}",
            float32=console.human_bytes(r["bytes_f32"]),
            int8=console.human_bytes(r["bytes_int8"]),
            MFLOPs=f"{r['flops'] / 1e6:.1f}",
        )
        if args.xla:
            row["MFLOPs (XLA)"] = f"{r['flops_xla'] / 1e6:.1f}"
        rows.append(row)
    print(console.format_table(rows))
    if args.layers:
        for r in records:
            print(f"\npoint {r['index']}: " + ", ".join(f"{k}={v}" for k, v in r["values"].items()))
            print(console.format_table(r["layers"]))
    return 0


# ---------------------------------------------------------------- train
def cmd_train(args) -> int:
    from explorer import data as datasets
    from explorer import rows, train

    settings = args.settings
    if not args.space and not args.dataset:
        args.dataset = "fashion_mnist"
    args.set = list(args.set or []) + ([f"epochs={args.epochs}"] if args.epochs is not None else [])
    sel = _selection(args)
    if len(sel.points) != 1:
        raise UsageError(f"{args.space}: has {len(sel.points)} points; choose one with --point N")
    point = sel.points[0]
    ds = dataset_config(sel, args)
    if args.save:
        _check_save(args.save, range(args.seed, args.seed + args.seeds))
    cache_dir = settings.cache_folder if args.cache_dir is None else args.cache_dir
    cache = train.compilation_cache(cache_dir)
    data = datasets.load(
        ds.name, ds.data_dir, ds.train_size, ds.test_size, ds.download, settings.fashion_mnist_dir
    )
    spec, recipe = point.arch, point.recipe
    seeds = list(range(args.seed, args.seed + args.seeds))
    summ = complexity.summary(arch.plan(spec))
    print(
        f"{sel.name}: {summ['params']:,} parameters, "
        f"{console.human_bytes(summ['bytes_f32'])} float32, "
        f"{summ['flops'] / 1e6:.1f} MFLOPs/image; {ds.name} {len(data.x_train):,} train / "
        f"{len(data.x_test):,} test; {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"{recipe.optimizer} lr {recipe.learning_rate} {recipe.schedule}; "
        f"seed(s) {', '.join(map(str, seeds))}" + ("" if cache else "; compile cache off"),
        file=sys.stderr,
        flush=True,
    )
    progress = console.Progress(recipe.epochs)
    final = {}
    records = train.train_and_evaluate(
        spec,
        recipe,
        data,
        seeds,
        progress.end_epoch,
        on_step=progress.step,
        settings=settings,
        on_end=(lambda per_seed: final.update(params=per_seed)) if args.save else None,
    )
    for r in records:
        r.update(
            space=sel.name,
            point=point.index,
            trial_id=rows.trial_id(sel.name, point.index, r["seed"]),
            base=point.values.get("base", sel.space.base if sel.space else args.model),
        )
    print(console.format_table(console.record_rows(records)))
    for r in records:
        if r["status"] != "ok":
            print(f"seed {r['seed']}: {r['status']}: {r['error']}", file=sys.stderr)
    if args.save:
        _save(args.save, final["params"], records, spec, recipe, data, ds)
    if args.json:
        doc = records[0] if len(records) == 1 else records
        text = json.dumps(doc, indent=2, default=console.json_default)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"record written to {args.json}", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def dataset_config(sel, args):
    """The space's data set section (or the default one), with the command line's overrides."""
    from explorer.recipe import DatasetConfig

    base = sel.space.dataset if sel.space else DatasetConfig(name=args.dataset)
    changes = {
        "data_dir": args.data_dir,
        "train_size": args.train_size,
        "test_size": args.test_size,
        "download": args.download or None,
    }
    return base.model_copy(update={k: v for k, v in changes.items() if v is not None})


def _check_save(folder: str, seeds) -> None:
    """Refuse, before training, a --save folder that already holds these seeds' checkpoints."""
    from explorer import checkpoints

    for seed in seeds:
        sub = Path(folder) / f"seed-{seed}"
        if checkpoints.epochs(sub):
            raise UsageError(f"--save {folder}: {sub} already holds a checkpoint; choose another")


def _save(folder: str, per_seed: list, records: list, spec, recipe, data, ds) -> None:
    """Each trained seed's final parameters as a checkpoint in folder/seed-K."""
    from explorer import checkpoints

    for params, r in zip(per_seed, records, strict=True):
        if r["status"] != "ok":
            print(f"seed {r['seed']}: {r['status']}, no checkpoint saved", file=sys.stderr)
            continue
        extra = {k: r[k] for k in ("accuracy", "trial_id", "space", "point")}
        meta = checkpoints.meta_for(spec, recipe, data, r["seed"], ds, **extra)
        sub = Path(folder) / f"seed-{r['seed']}"
        checkpoints.save(sub, params, epoch=r["epochs_done"], meta=meta)
        print(f"checkpoint written to {sub} (epoch {r['epochs_done']})", file=sys.stderr)


# ---------------------------------------------------------------- sweep
def cmd_sweep(args) -> int:
    from explorer import sweep

    space = spaces.load(args.space)
    out = Path(args.output) if args.output else sweep.default_output(space)
    table = sweep.run(
        args.space,
        out,
        address=args.address,
        node_ip_address=args.node_ip_address,
        resume=args.resume,
        retry_failed=args.retry_failed,
        max_concurrent=args.max_concurrent,
        settings=args.settings,
    )
    counts = table["status"].value_counts().to_dict()
    print(
        f"\n{len(table)} rows in {out}/results.parquet: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    print(f"best by {next(iter(space.objectives))}:")
    print(console.format_table(console.best_rows(table, space.objectives)))
    failed = table[table["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"failed: {r['trial_id']}: {r['error']}")
    if args.report:
        from explorer.analysis.report import write_report

        written = write_report(table, out / "report", objectives=dict(space.objectives))
        print(f"report: {out / 'report' / 'report.html'} ({len(written)} files)")
    if len(failed):  # the sweep finished, but not every trial did: say so in the status
        print(f"{len(failed)} failed; after fixing the cause: --retry-failed", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- report
def cmd_report(args) -> int:
    from explorer import results
    from explorer.analysis.report import write_report

    table = results.load(args.results)
    objectives = None
    if args.objective:
        objectives = {}
        for item in args.objective:
            metric, _, direction = item.partition(":")
            if direction not in ("min", "max") or metric not in results.SCHEMA:
                raise UsageError(f"--objective {item}: expected COLUMN:min or COLUMN:max")
            objectives[metric] = direction
    src = Path(args.results)
    out = Path(args.out) if args.out else (src.parent if src.is_file() else src) / "report"
    written = write_report(table, out, objectives=objectives)
    pngs = [p for p in written if p.endswith(".png")]
    print(f"report written to {out}/report.md and report.html, {len(pngs)} plots")
    return 0


# ---------------------------------------------------------------- export, evaluate
def cmd_export(args) -> int:
    from explorer import checkpoints, export
    from explorer import data as datasets

    folder = _checkpoint_folder(args.checkpoint)
    params, _, meta = checkpoints.restore(folder, args.epoch)
    plan = arch.plan(checkpoints.spec_of(meta))
    out = Path(args.out)
    keep = ("dataset", "epoch", "seed", "trial_id", "accuracy", "recipe")
    export.to_onnx(
        plan,
        params,
        meta["mean"],
        meta["std"],
        out,
        args.input_dtype,
        metadata={k: meta[k] for k in keep if meta.get(k) is not None},
    )
    test_size = args.test_size or meta.get("test_size")
    data = datasets.load(
        meta["dataset"],
        args.data_dir or meta.get("data_dir"),
        None,
        test_size,
        False,
        args.settings.fashion_mnist_dir,
    )
    check = data.x_test[:256]
    diff = export.verify(out, plan, params, meta["mean"], meta["std"], check)
    if diff > export.TOLERANCE:
        out.unlink()
        raise ExportError(
            f"{out}: ONNX Runtime's logits differ from JAX's by {diff:.2e} "
            f"(more than {export.TOLERANCE:g}); the file was removed"
        )
    print(
        f"{out}: {console.human_bytes(export.size_bytes(out))}, from {folder} "
        f"(epoch {meta['epoch']}); input {args.input_dtype} [N, "
        f"{plan.spec.image_size}, {plan.spec.image_size}, {plan.spec.in_channels}] "
        f"pixels 0-255, output logits [N, {plan.spec.num_classes}]"
    )
    print(f"max |ONNX Runtime - JAX| on {len(check)} test images: {diff:.2e}")
    top1 = export.ort_top1(out, data)
    jax_top1 = meta.get("accuracy")
    print(
        f"top-1 {100 * top1:.2f}% on {len(data.x_test):,} {data.info.name} test images "
        "(ONNX Runtime)"
        + (f"; JAX at training: {100 * jax_top1:.2f}%" if jax_top1 is not None else "")
    )
    return 0


def cmd_evaluate(args) -> int:
    from explorer import data as datasets
    from explorer import export

    meta = export.metadata(args.model)
    name = args.dataset or meta.get("dataset") or "fashion_mnist"
    data = datasets.load(
        name, args.data_dir, None, args.test_size, args.download, args.settings.fashion_mnist_dir
    )
    top1 = export.ort_top1(args.model, data)
    print(
        f"{args.model}: top-1 {100 * top1:.2f}% on {len(data.x_test):,} {name} test images "
        "(ONNX Runtime)"
    )
    latency = export.ort_latency_b1_ms(args.model)
    print(f"batch-1 latency {latency:.3f} ms (median; ONNX Runtime, CPU, 1 thread)")
    return 0


def _checkpoint_folder(path: str) -> Path:
    """The checkpoint folder: the path, or its one checkpoint folder (train --save DIR)."""
    from explorer import checkpoints

    folder = Path(path)
    if folder.is_dir() and not checkpoints.epochs(folder):
        inner = sorted(p for p in folder.iterdir() if p.is_dir() and checkpoints.epochs(p))
        if len(inner) == 1:
            return inner[0]
        if inner:
            names = ", ".join(p.name for p in inner)
            raise UsageError(f"{folder}: holds {len(inner)} checkpoints ({names}); name one")
    return folder


# ---------------------------------------------------------------- parser
def add_selection(p: argparse.ArgumentParser, point: bool = True) -> None:
    p.add_argument("space", nargs="?", help="a search-space YAML file")
    p.add_argument(
        "--model",
        default="squeezenet1_1",
        choices=sorted(arch.PRESETS),
        help="preset to use when no space file is given",
    )
    p.add_argument("--dataset", help="data set (TFDS name); sets image size and classes")
    p.add_argument("--image-size", type=int, help="input height = width (no --dataset)")
    p.add_argument("--num-classes", type=int, help="classes (no --dataset)")
    p.add_argument("--in-channels", type=int, help="input channels (no --dataset)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a metaparameter or recipe value; repeatable",
    )
    if point:
        p.add_argument("--point", type=int, help="only this point of the space")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="explorer", description="Design-space explorer for SqueezeNet-like CNNs."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="validate a space; params, bytes, FLOPs per point")
    add_selection(p)
    p.add_argument("--layers", action="store_true", help="print each point's layer table")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--xla", action="store_true", help="also count FLOPs with XLA")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("train", help="train one architecture; per-epoch progress and a summary")
    add_selection(p)
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    p.add_argument(
        "--seeds", type=int, default=1, help="train this many seeds together in one program"
    )
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--train-size", type=int, help="use the first N training images")
    p.add_argument("--test-size", type=int, help="evaluate on the first N test images")
    p.add_argument("--data-dir", help="TFDS data_dir holding the prepared data set")
    p.add_argument(
        "--download",
        action="store_true",
        help="let tensorflow-datasets download the data set (needs the internet)",
    )
    p.add_argument(
        "--cache-dir",
        help="JAX compilation cache folder ('' turns it off; "
        "default $EXPLORER_CACHE_DIR or ~/.cache/squeeze-explorer/jax)",
    )
    p.add_argument("--json", metavar="PATH", help="write the record(s) as JSON ('-': stdout)")
    p.add_argument(
        "--save",
        metavar="DIR",
        help="save each seed's final parameters as a checkpoint in DIR/seed-K (explorer export)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train a space's points as Ray Tune trials")
    p.add_argument("space", help="a search-space YAML file")
    p.add_argument(
        "--address",
        help="join a Ray cluster ('auto' or host:port); default: start Ray on this machine",
    )
    p.add_argument("--node-ip-address", help="this machine's address in the cluster")
    p.add_argument("--output", help="sweep folder (default runs/<space name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --output: train only what has no row yet",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="continue the sweep in --output and train its failed trials again",
    )
    p.add_argument("--max-concurrent", type=int, help="at most N trials at once")
    p.add_argument("--report", action="store_true", help="write the report when done")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="Markdown + HTML report with Pareto and EDF plots")
    p.add_argument("results", help="a sweep folder, or a results .parquet/.csv file")
    p.add_argument("--out", help="report folder (default: <sweep folder>/report)")
    p.add_argument(
        "--objective",
        action="append",
        metavar="COLUMN:min|max",
        help="objectives of the Pareto front; repeatable (default accuracy:max, params:min)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="a checkpoint as an ONNX file, checked against JAX")
    p.add_argument("checkpoint", help="a checkpoint folder (explorer train --save DIR: DIR/seed-K)")
    p.add_argument("--out", default="model.onnx", help="the ONNX file (default model.onnx)")
    p.add_argument(
        "--input-dtype",
        choices=DTYPES,
        default="uint8",
        help="the input's element type; pixels are 0-255 either way (default uint8)",
    )
    p.add_argument("--epoch", type=int, help="this epoch's checkpoint (default: the latest)")
    p.add_argument(
        "--test-size", type=int, help="top-1 on the first N test images (default: as trained)"
    )
    p.add_argument("--data-dir", help="TFDS data_dir holding the prepared data set")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="an ONNX file's top-1 and batch-1 latency (ONNX Runtime)")
    p.add_argument("model", help="an ONNX file (explorer export)")
    p.add_argument(
        "--dataset",
        help="TFDS name (default: the file's own data set, else fashion_mnist)",
    )
    p.add_argument("--test-size", type=int, help="evaluate on the first N test images")
    p.add_argument("--data-dir", help="TFDS data_dir holding the prepared data set")
    p.add_argument(
        "--download",
        action="store_true",
        help="let tensorflow-datasets download the data set (needs the internet)",
    )
    p.set_defaults(func=cmd_evaluate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "space", None) and getattr(args, "dataset", None):
        print("explorer: error: --dataset: a space file names its own data set", file=sys.stderr)
        return 2
    try:
        args.settings = settings_mod.from_env()  # the environment, read once
        devices.split_cpu(args.settings.cpu_devices)  # one XLA CPU device per core, before JAX
        return args.func(args)
    except USER_ERRORS as e:
        print(f"explorer: error: {e}", file=sys.stderr)
        return 2
    except SweepInterrupted as e:
        print(f"explorer: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("explorer: interrupted; finished rows are kept (sweep: --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
