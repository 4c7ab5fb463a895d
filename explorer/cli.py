"""`explorer inspect | train | sweep | report | export | evaluate`: argument parsing and wiring
only."""

from __future__ import annotations

from explorer import devices

devices.keep_freed_memory()  # before the imports below start threads (see its docstring)

import argparse
import sys

from explorer import architecture as arch
from explorer import commands
from explorer import settings as settings_mod
from explorer import space as spaces
from explorer.checkpoints import CheckpointError
from explorer.data import DatasetError
from explorer.export import DTYPES, ExportError
from explorer.results import ResultsError
from explorer.selection import UsageError
from explorer.sqzfile import CompressionError
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
    CompressionError,
)


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


def add_data_source(
    p: argparse.ArgumentParser,
    test_size: str = "evaluate on the first N test images",
    download: bool = True,
) -> None:
    p.add_argument("--test-size", type=int, help=test_size)
    p.add_argument("--data-dir", help="TFDS data_dir holding the prepared data set")
    if download:
        p.add_argument(
            "--download",
            action="store_true",
            help="let tensorflow-datasets download the data set (needs the internet)",
        )


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
    p.set_defaults(func=commands.cmd_inspect)

    p = sub.add_parser("train", help="train one architecture; per-epoch progress and a summary")
    add_selection(p)
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    p.add_argument(
        "--seeds", type=int, default=1, help="train this many seeds together in one program"
    )
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--train-size", type=int, help="use the first N training images")
    add_data_source(p)
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
    p.set_defaults(func=commands.cmd_train)

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
    p.add_argument(
        "--storage",
        help="where Tune keeps trials and checkpoints: a path every node sees, or a URI "
        "such as s3://bucket/runs (default: the sweep folder)",
    )
    p.add_argument("--report", action="store_true", help="write the report when done")
    p.set_defaults(func=commands.cmd_sweep)

    p = sub.add_parser("report", help="Markdown + HTML report with Pareto and EDF plots")
    p.add_argument("results", help="a sweep folder, or a results .parquet/.csv file")
    p.add_argument("--out", help="report folder (default: <sweep folder>/report)")
    p.add_argument(
        "--objective",
        action="append",
        metavar="COLUMN:min|max",
        help="objectives of the Pareto front; repeatable (default accuracy:max, params:min)",
    )
    p.set_defaults(func=commands.cmd_report)

    p = sub.add_parser("export", help="a kept network as an ONNX file, checked against JAX")
    p.add_argument(
        "checkpoint",
        help="a checkpoint folder, a sweep folder (with --trial, --best or --front) "
        "or a compressed .sqz file",
    )
    p.add_argument("--trial", help="the sweep's trial to export")
    p.add_argument("--best", metavar="COLUMN", help="the sweep's best trial by COLUMN")
    p.add_argument("--where", metavar="QUERY", help='only rows meeting e.g. "bytes_int8 <= 1e5"')
    p.add_argument(
        "--front",
        action="store_true",
        help="every row on the sweep's Pareto front (as the report's), one file each, "
        "and a table (DIR/front.csv)",
    )
    p.add_argument(
        "--out",
        help="the ONNX file (default TRIAL.onnx, NAME.onnx for NAME.sqz, or model.onnx); "
        "with --front a folder (default SWEEP/front-onnx, or front-int8)",
    )
    p.add_argument(
        "--input-dtype",
        choices=DTYPES,
        default="uint8",
        help="the input's element type; pixels are 0-255 either way (default uint8)",
    )
    p.add_argument("--epoch", type=int, help="this epoch's checkpoint (default: the latest)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="write the int8 graph (QLinearConv: integer convolutions in ONNX Runtime), calibrated "
        "on 512 training images",
    )
    add_data_source(p, "top-1 on the first N test images (default: as trained)", download=False)
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser(
        "compress", help="Deep Compression of a kept network: prune, share weights, Huffman-code"
    )
    p.add_argument(
        "checkpoint", help="a sweep folder (with --trial or --best) or a checkpoint folder"
    )
    p.add_argument("--trial", help="the sweep's trial to compress")
    p.add_argument("--best", metavar="COLUMN", help="the sweep's best trial by COLUMN")
    p.add_argument("--where", metavar="QUERY", help='only rows meeting e.g. "bytes_int8 <= 1e5"')
    p.add_argument("--sparsity", type=float, default=0.33, help="pruned fraction (default 0.33)")
    p.add_argument(
        "--bits", type=int, default=6, help="2^BITS shared weights per layer; 0: float32 (6)"
    )
    p.add_argument(
        "--per-layer",
        action="store_true",
        help="each layer its own rate from a sensitivity scan, SPARSITY overall",
    )
    p.add_argument("--scan", metavar="PATH", help="the sensitivity scan's JSON (read, or written)")
    p.add_argument("--rounds", type=int, default=1, help="prune-retrain rounds (default 1)")
    p.add_argument(
        "--retrain-epochs", type=int, default=1, help="after each round's pruning (default 1)"
    )
    p.add_argument("--finetune-epochs", type=int, default=1, help="of the centroids (default 1)")
    p.add_argument(
        "--lr-scale", type=float, default=0.1, help="of the recipe's learning rate (default 0.1)"
    )
    p.add_argument("--out", help="the compressed file (default: compressed/NAME-spS-bB.sqz)")
    p.add_argument("--json", metavar="PATH", help="write what was measured as JSON ('-': stdout)")
    p.add_argument("--data-dir", help="TFDS data_dir holding the prepared data set")
    p.set_defaults(func=commands.cmd_compress)

    p = sub.add_parser(
        "evaluate",
        help="top-1 of an ONNX file (and its batch-1 latency) or of a compressed network",
    )
    p.add_argument("model", help="an ONNX file (explorer export) or a .sqz (explorer compress)")
    p.add_argument(
        "--dataset",
        help="TFDS name (default: the file's own data set, else fashion_mnist)",
    )
    add_data_source(p)
    p.set_defaults(func=commands.cmd_evaluate)
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
