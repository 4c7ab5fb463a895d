"""`explorer inspect | train | sweep | report`: argument parsing and wiring only."""

from __future__ import annotations

from explorer import devices

devices.keep_freed_memory()  # before the imports below start threads (see its docstring)

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from explorer import architecture as arch
from explorer import complexity
from explorer import space as spaces
from explorer.data import DatasetError, info
from explorer.results import ResultsError
from explorer.sweep import SweepError


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit status 2."""


USER_ERRORS = (
    UsageError,
    spaces.SpaceError,
    arch.ArchError,
    DatasetError,
    ResultsError,
    SweepError,
    devices.SettingError,
)


# ---------------------------------------------------------------- helpers
def parse_sets(pairs: list[str]) -> dict:
    """`--set key=value` pairs, values parsed as YAML and checked like a space file."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair}: expected key=value, e.g. squeeze_ratio=0.25")
        if key in spaces.DATA_KEYS:
            raise UsageError(f"--set {key}: set by the data set; use --dataset or --image-size")
        if key not in spaces.SPACE_KEYS:
            raise UsageError(
                f"--set {key}: unknown metaparameter; expected one of "
                + ", ".join(sorted(spaces.SPACE_KEYS))
            )
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out[key] = spaces.check_value(key, value, "--set", key)
    return out


def selected_points(args) -> tuple[str, list[spaces.Point], spaces.Space | None]:
    """The points a command works on: a space file's, or one preset with overrides."""
    sets = parse_sets(args.set or [])
    if args.space:
        space = spaces.load(args.space)
        pts = spaces.points(space)
        if sets:
            pts = [spaces.make_point(space, p.index, {**p.values, **sets}) for p in pts]
        if getattr(args, "point", None) is not None:
            if not 0 <= args.point < len(pts):
                raise UsageError(f"--point {args.point}: the space has points 0..{len(pts) - 1}")
            pts = [pts[args.point]]
        return space.name, pts, space
    data = info(args.dataset) if args.dataset else None
    spec = arch.preset(
        args.model,
        num_classes=args.num_classes or (data.num_classes if data else 1000),
        image_size=args.image_size or (data.image_size if data else 224),
        in_channels=args.in_channels or (data.in_channels if data else 3),
    )
    space = spaces.from_dict(
        {
            "name": args.model,
            "base": args.model,
            "dataset": {"name": args.dataset or "fashion_mnist"},
        },
        "--model",
    )
    arch_sets = {k: v for k, v in sets.items() if k in spaces.ARCH_TYPES}
    recipe = space.recipe.model_copy(update={k: v for k, v in sets.items() if k not in arch_sets})
    return args.model, [spaces.Point(0, spec.replace(**arch_sets), recipe, sets)], None


def human_bytes(n: float) -> str:
    """1234567 -> '1.23 MB' (decimal units, as model sizes are quoted)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def format_table(rows: list[dict]) -> str:
    """Plain aligned text table."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


# ---------------------------------------------------------------- inspect
def cmd_inspect(args) -> int:
    name, pts, space = selected_points(args)
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
            float32=human_bytes(r["bytes_f32"]),
            int8=human_bytes(r["bytes_int8"]),
            MFLOPs=f"{r['flops'] / 1e6:.1f}",
        )
        if args.xla:
            row["MFLOPs (XLA)"] = f"{r['flops_xla'] / 1e6:.1f}"
        rows.append(row)
    print(format_table(rows))
    if args.layers:
        for r in records:
            print(f"\npoint {r['index']}: " + ", ".join(f"{k}={v}" for k, v in r["values"].items()))
            print(format_table(r["layers"]))
    return 0


# ---------------------------------------------------------------- train
class Progress:
    """Per-epoch progress: a bar redrawn in place on a terminal, one line per epoch."""

    def __init__(self, epochs: int, stream=None):
        self.epochs, self.epoch = epochs, 1
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, done: int, total: int) -> None:
        if not self.tty:
            return
        width = 30
        fill = round(width * done / total)
        rate = ""
        elapsed = time.perf_counter() - self.t0
        if done and elapsed > 0:
            left = elapsed / done * (total - done)
            rate = f" {done}/{total} steps, {left:4.0f} s left"
        bar = "#" * fill + "." * (width - fill)
        self.stream.write(f"\repoch {self.epoch:>2}/{self.epochs} [{bar}]{rate}")
        self.stream.flush()

    def end_epoch(self, ep: int, m: dict) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        seeds = len(m["accuracy"])
        line = (
            f"epoch {ep:>2}/{self.epochs}  train loss {_mean(m['train_loss']):.4f}"
            f"  train acc {_pct(m['train_accuracy'])}  test acc {_pct(m['accuracy'])}"
            f"  top-5 {_pct(m['top5'])}  {m['epoch_s']:.1f} s"
        )
        if seeds > 1:
            line += f"  (mean of {seeds} seeds)"
        print(line, file=self.stream, flush=True)
        self.epoch, self.t0 = ep + 1, time.perf_counter()


def _mean(a) -> float:
    import numpy as np

    a = np.asarray(a, float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def _pct(a) -> str:
    return f"{100 * _mean(a):5.2f}%"


def cmd_train(args) -> int:
    from explorer import data as datasets
    from explorer import train

    if not args.space and not args.dataset:
        args.dataset = "fashion_mnist"
    sets = list(args.set or [])
    if args.epochs is not None:
        sets.append(f"epochs={args.epochs}")
    args.set = sets
    name, pts, space = selected_points(args)
    if len(pts) != 1:
        raise UsageError(f"{args.space}: has {len(pts)} points; choose one with --point N")
    point = pts[0]
    ds = space.dataset if space else None
    ds_name = ds.name if ds else args.dataset
    data_dir = args.data_dir or (ds.data_dir if ds else None)
    train_size = args.train_size or (ds.train_size if ds else None)
    test_size = args.test_size or (ds.test_size if ds else None)
    cache = train.compilation_cache(args.cache_dir)
    download = args.download or bool(ds and ds.download)
    data = datasets.load(ds_name, data_dir, train_size, test_size, download)
    spec, recipe = point.arch, point.recipe
    seeds = list(range(args.seed, args.seed + args.seeds))
    plan = arch.plan(spec)
    summ = complexity.summary(plan)
    print(
        f"{name}: {summ['params']:,} parameters, {human_bytes(summ['bytes_f32'])} float32, "
        f"{summ['flops'] / 1e6:.1f} MFLOPs/image; {ds_name} {len(data.x_train):,} train / "
        f"{len(data.x_test):,} test; {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"{recipe.optimizer} lr {recipe.learning_rate} {recipe.schedule}; "
        f"seed(s) {', '.join(map(str, seeds))}" + ("" if cache else "; compile cache off"),
        file=sys.stderr,
        flush=True,
    )
    progress = Progress(recipe.epochs)
    records = train.train_and_evaluate(
        spec, recipe, data, seeds, on_epoch=progress.end_epoch, on_step=progress.step
    )
    for r in records:
        r.update(
            space=name,
            point=point.index,
            trial_id=f"{name}-p{point.index:04d}-s{r['seed']}",
            base=point.values.get("base", space.base if space else args.model),
        )
    rows = [
        {
            "seed": r["seed"],
            "status": r["status"],
            "top-1": _pct([r["accuracy"]]),
            "top-5": _pct([r["top5"]]),
            "int8 top-1": _pct([r["int8_accuracy"]]),
            "float32": human_bytes(r["bytes_f32"]),
            "int8": human_bytes(r["bytes_int8"]),
            "lat b1": f"{r['latency_b1_ms']:.2f} ms",
            "lat b128": f"{r['latency_b128_ms']:.1f} ms",
            "img/s": f"{r['images_per_s']:.0f}",
            "compile": f"{r['compile_s']:.1f} s",
            "wall": f"{r['wall_s']:.0f} s",
        }
        for r in records
    ]
    print(format_table(rows))
    for r in records:
        if r["status"] != "ok":
            print(f"seed {r['seed']}: {r['status']}: {r['error']}", file=sys.stderr)
    if args.json:
        doc = records[0] if len(records) == 1 else records
        text = json.dumps(doc, indent=2, default=_json_default)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"record written to {args.json}", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _json_default(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


# ---------------------------------------------------------------- sweep
BEST_COLUMNS = (
    "trial_id",
    "status",
    "accuracy",
    "top5",
    "int8_accuracy",
    "params",
    "bytes_f32",
    "flops",
    "latency_b1_ms",
    "wall_s",
)


def best_rows(table, objectives: dict[str, str], n: int = 8) -> list[dict]:
    """The table's best ok rows by the first objective, formatted for printing."""
    metric, direction = next(iter(objectives.items()))
    ok = table[table["status"] == "ok"].sort_values(metric, ascending=direction == "min")
    rows = []
    for _, r in ok.head(n).iterrows():
        rows.append(
            {
                "trial": r["trial_id"],
                "top-1": f"{100 * r['accuracy']:.2f}%",
                "top-5": f"{100 * r['top5']:.2f}%",
                "int8 top-1": f"{100 * r['int8_accuracy']:.2f}%",
                "params": f"{int(r['params']):,}",
                "float32": human_bytes(r["bytes_f32"]),
                "MFLOPs": f"{r['flops'] / 1e6:.1f}",
                "lat b1": f"{r['latency_b1_ms']:.2f} ms",
                "wall": f"{r['wall_s']:.0f} s",
            }
        )
    return rows


def cmd_sweep(args) -> int:
    from explorer import sweep

    table = sweep.run(
        args.space,
        args.output,
        address=args.address,
        node_ip_address=args.node_ip_address,
        resume=args.resume,
        max_concurrent=args.max_concurrent,
    )
    space = spaces.load(args.space)
    counts = table["status"].value_counts().to_dict()
    out = args.output or f"runs/{space.name}"
    print(
        f"\n{len(table)} rows in {out}/results.parquet: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    print(f"best by {next(iter(space.objectives))}:")
    print(format_table(best_rows(table, space.objectives)))
    failed = table[table["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"failed: {r['trial_id']}: {r['error']}")
    if args.report:
        from analysis.report import write_report

        written = write_report(table, Path(out) / "report", objectives=dict(space.objectives))
        print(f"report: {Path(out) / 'report' / 'report.html'} ({len(written)} files)")
    return 0


# ---------------------------------------------------------------- report
def cmd_report(args) -> int:
    from analysis.report import write_report
    from explorer import results

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
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "space", None) and getattr(args, "dataset", None):
        print("explorer: error: --dataset: a space file names its own data set", file=sys.stderr)
        return 2
    try:
        devices.split_cpu()  # one XLA CPU device per core, before JAX starts
        return args.func(args)
    except USER_ERRORS as e:
        print(f"explorer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
