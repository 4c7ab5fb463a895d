"""What each `explorer` command does with its parsed arguments: calls and printing.

`explorer.cli` parses; the work is in the modules these functions call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from explorer import architecture as arch
from explorer import complexity, console, results
from explorer import space as spaces
from explorer.selection import UsageError, select


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
    from explorer import devices, rows, train

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
    cache = devices.compilation_cache(cache_dir)
    data = datasets.load(
        ds.name, ds.data_dir, ds.train_size, ds.test_size, ds.download, settings.fashion_mnist_dir
    )
    spec, recipe = point.arch, point.recipe
    plan = arch.plan(spec)
    seeds = list(range(args.seed, args.seed + args.seeds))
    summ = complexity.summary(plan)
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
    run = train.start(plan, recipe, data, seeds, settings)
    for m in train.epochs(run, progress.step):
        progress.end_epoch(m["epoch"], m)
    base = point.values.get("base", sel.space.base if sel.space else args.model)
    named = [rows.identity(sel.name, point.index, s, base) for s in seeds]
    records = rows.trained(run, data, train.measure_costs(run), named)
    print(console.format_table(console.record_rows(records)))
    for r in records:
        if r["status"] != "ok":
            print(f"seed {r['seed']}: {r['status']}: {r['error']}", file=sys.stderr)
    if args.save:
        _save(args.save, run.params(), records, spec, recipe, data, ds)
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
    from explorer.analysis.pareto import trial_epochs

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
        storage=args.storage,
        settings=args.settings,
    )
    counts = table["status"].value_counts().to_dict()
    print(
        f"\n{len(table)} rows in {out}/results.parquet: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    done, asked = trial_epochs(table)  # what a scheduler saved
    if asked:
        print(
            f"trial-epochs: {done:,} of {asked:,} ({done / asked:.0%} of training all to the end)"
        )
    print(f"best by {next(iter(space.objectives))}:")
    print(console.format_table(console.best_rows(table, space.objectives)))
    failed = table[table["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"failed: {r['trial_id']}: {r['error']}")
    if args.report:
        from explorer.analysis.explored import candidates_table
        from explorer.analysis.report import write_report

        curves = results.load_curves(out)
        written = write_report(
            table, out / "report", objectives=dict(space.objectives), curves=curves,
            candidates=candidates_table(space),
        )  # fmt: skip
        print(f"report: {out / 'report' / 'report.html'} ({len(written)} files)")
    if len(failed):  # the sweep finished, but not every trial did: say so in the status
        print(f"{len(failed)} failed; after fixing the cause: --retry-failed", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- report
def cmd_report(args) -> int:
    from explorer import results
    from explorer.analysis.explored import candidates_table
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
    folder = src.parent if src.is_file() else src
    space = spaces.load(folder / "space.yaml") if (folder / "space.yaml").is_file() else None
    if objectives is None and space is not None:  # the sweep's own
        objectives = dict(space.objectives)
    out = Path(args.out) if args.out else folder / "report"
    curves = results.load_curves(folder) if (folder / "curves").is_dir() else None
    cands = candidates_table(space) if space is not None and not args.objective else None
    written = write_report(table, out, objectives=objectives, curves=curves, candidates=cands)
    pngs = [p for p in written if p.endswith(".png")]
    print(f"report written to {out}/report.md and report.html, {len(pngs)} plots")
    return 0


# ---------------------------------------------------------------- export, evaluate
def cmd_export(args) -> int:
    from explorer import deploy_front  # a checkpoint, a .sqz file, or a sweep's --front

    return deploy_front.cmd_export(args)


def cmd_compress(args) -> int:
    import pydantic

    from explorer import deploy
    from explorer.recipe import Compression

    try:
        how = Compression(
            sparsity=args.sparsity,
            per_layer=args.per_layer,
            rounds=args.rounds,
            bits=args.bits,
            retrain_epochs=args.retrain_epochs,
            finetune_epochs=args.finetune_epochs,
            learning_rate_scale=args.lr_scale,
        )
    except pydantic.ValidationError as e:
        err = e.errors(include_url=False)[0]
        flag = {"learning_rate_scale": "lr-scale"}.get(err["loc"][0], err["loc"][0])
        flag = str(flag).replace("_", "-")
        raise UsageError(f"--{flag}: {err['msg']}, got {err['input']!r}") from None
    folder, row = deploy.checkpoint_of(args.checkpoint, args.trial, args.best, args.where)
    name = str(row["trial_id"]) if row is not None else folder.name
    where = Path(args.checkpoint) if row is not None and Path(args.checkpoint).is_dir() else Path()
    out = Path(
        args.out or where / "compressed" / f"{name}-sp{round(100 * how.sparsity)}-b{how.bits}.sqz"
    )

    def stage(name: str, acc: float) -> None:
        print(f"  {name:<10} top-1 {100 * acc:.2f}%", file=sys.stderr, flush=True)

    print(
        f"{folder}: sparsity {how.sparsity:g}{' per layer' if how.per_layer else ''}, "
        f"{how.bits or 32} bits, retrain {how.rounds} x {how.retrain_epochs} + fine-tune "
        f"{how.finetune_epochs} epochs",
        file=sys.stderr,
    )
    done = deploy.compress_checkpoint(
        folder,
        how,
        out,
        args.data_dir,
        args.settings.fashion_mnist_dir,
        args.settings,
        None if row is None else str(row["trial_id"]),
        stage,
        Path(args.scan) if args.scan else None,
    )
    print(
        f"{out}: {console.human_bytes(done.bytes_compressed)} "
        f"({done.ratio:.1f}x smaller than float32's {console.human_bytes(done.bytes_f32)}); "
        f"top-1 {100 * done.compressed_accuracy:.2f}% "
        f"(trained {100 * done.accuracy_before:.2f}%), in {done.wall_s:.0f} s"
    )
    if args.json:
        record = {**done.as_dict(), "compression": how.model_dump(), "source": str(folder)}
        text = json.dumps(record, indent=1, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


def cmd_evaluate(args) -> int:
    from explorer import checkpoints, export, sqzfile
    from explorer import data as datasets

    if Path(args.model).suffix == sqzfile.SUFFIX:
        from explorer import deploy

        top1, n, decoded = deploy.evaluate_compressed(
            Path(args.model),
            args.test_size,
            args.data_dir,
            args.settings.fashion_mnist_dir,
            args.settings,
        )
        spec = checkpoints.spec_of(decoded.meta)
        f32 = complexity.bytes_f32(arch.plan(spec))
        print(
            f"{args.model}: top-1 {100 * top1:.2f}% on {n:,} {decoded.meta['dataset']} test "
            f"images (decoded from the file, JAX); {console.human_bytes(decoded.size)}, "
            f"{f32 / decoded.size:.1f}x smaller than float32"
        )
        return 0

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
