"""`explorer inspect | train | sweep | report`: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from explorer import architecture as arch
from explorer import complexity
from explorer import space as spaces
from explorer.data import DatasetError, info


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit status 2."""


USER_ERRORS = (UsageError, spaces.SpaceError, arch.ArchError, DatasetError)


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
        out[key] = spaces._value(key, value, "--set", key)
    return out


def selected_points(args) -> tuple[str, list[spaces.Point], spaces.Space | None]:
    """The points a command works on: a space file's, or one preset with overrides."""
    sets = parse_sets(args.set or [])
    if args.space:
        space = spaces.load(args.space)
        pts = spaces.points(space)
        if sets:
            pts = [spaces._make_point(space, p.index, {**p.values, **sets}) for p in pts]
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
        {"name": args.model, "base": args.model,
         "dataset": {"name": args.dataset or "fashion_mnist"}}, "--model"
    )  # fmt: skip
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
        rec = {"index": p.index, "values": p.values, "metaparameters": p.arch.as_dict(),
               **complexity.summary(plan)}  # fmt: skip
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
        row.update(params=f"{r['params']:,}", float32=human_bytes(r["bytes_f32"]),
                   int8=human_bytes(r["bytes_int8"]), MFLOPs=f"{r['flops'] / 1e6:.1f}")  # fmt: skip
        if args.xla:
            row["MFLOPs (XLA)"] = f"{r['flops_xla'] / 1e6:.1f}"
        rows.append(row)
    print(format_table(rows))
    if args.layers:
        for r in records:
            print(f"\npoint {r['index']}: " + ", ".join(f"{k}={v}" for k, v in r["values"].items()))
            print(format_table(r["layers"]))
    return 0


# ---------------------------------------------------------------- parser
def add_selection(p: argparse.ArgumentParser, point: bool = True) -> None:
    p.add_argument("space", nargs="?", help="a search-space YAML file")
    p.add_argument("--model", default="squeezenet1_1", choices=sorted(arch.PRESETS),
                   help="preset to use when no space file is given")  # fmt: skip
    p.add_argument("--dataset", help="data set (TFDS name); sets image size and classes")
    p.add_argument("--image-size", type=int, help="input height = width (no --dataset)")
    p.add_argument("--num-classes", type=int, help="classes (no --dataset)")
    p.add_argument("--in-channels", type=int, help="input channels (no --dataset)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a metaparameter or recipe value; repeatable")  # fmt: skip
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
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.space and args.dataset:
        print("explorer: error: --dataset: a space file names its own data set", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"explorer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explorer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
