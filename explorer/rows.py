"""A results row, built in one place: every key a row has is written here.

The CLI's `train`, a sweep's trials, Deep Compression and the driver's row
writer hand this module values (a trained run, its measured costs, a status)
and get rows back; none writes a key of its own. Columns and their units are
`explorer.results.SCHEMA`; curve points, `results.CURVE_SCHEMA`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd

from explorer import architecture as arch
from explorer import complexity
from explorer import space as spaces
from explorer.data import Dataset
from explorer.recipe import Recipe
from explorer.results import COLUMNS, versions


def trial_id(space_name: str, index: int, seed: int) -> str:
    """The row's id: space, point index and seed, e.g. `quickstart-p0003-s1`."""
    return f"{space_name}-p{index:04d}-s{seed}"


def point_id(tid: str) -> str:
    """The id of a trial's point (its trial id without the seed)."""
    return tid.rsplit("-s", 1)[0]


def spec_fields(spec: arch.ArchSpec) -> dict:
    """Metaparameter columns."""
    d = spec.as_dict()
    d["pool_after"] = ",".join(spec.pool_after)
    return d


def recipe_fields(recipe: Recipe) -> dict:
    """Recipe columns."""
    return {
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "learning_rate": recipe.learning_rate,
        "weight_decay": recipe.weight_decay,
        "schedule": recipe.schedule,
        "augment": recipe.augment,
        "recipe": recipe.model_dump_json(),
    }


def identity(space_name: str, index: int, seed: int, base: str) -> dict:
    """Which trial a row is: its id, space, point, seed and base preset."""
    return {
        "trial_id": trial_id(space_name, index, seed),
        "space": space_name,
        "point": index,
        "seed": seed,
        "base": base,
    }


def base_row(
    space: spaces.Space, point: spaces.Point, seed: int, plan: arch.Plan | None = None
) -> dict:
    """The columns known before training: identity, metaparameters, complexity.

    plan: the point's plan, when the caller has it (planned once).
    """
    return {
        **identity(space.name, point.index, seed, point.values.get("base", space.base)),
        "space_digest": space.digest,
        **spec_fields(point.arch),
        **recipe_fields(point.recipe),
        "dataset": space.dataset.name,
        **complexity.summary(plan or arch.plan(point.arch)),
        **compress_fields(point),
    }


@dataclasses.dataclass(frozen=True)
class Measured:
    """A trained network's measured costs (explorer.train.measure_costs; the sweep's
    trial adds ONNX Runtime's). A new measurement is a field here, named as its column."""

    int8_accuracy: Sequence[float]  # per seed
    latency_b1_ms: float = math.nan
    latency_b128_ms: float = math.nan
    latency_ort_b1_ms: float | None = None  # None: not measured (no column)
    bytes_int8_onnx: Sequence[float] | None = None  # per seed: the int8 ONNX file's size
    int8_onnx_accuracy: Sequence[float] | None = None  # per seed, in ONNX Runtime
    latency_ort_int8_b1_ms: float | None = None

    def columns(self, i: int, ok: bool) -> dict:
        """Seed i's columns (its accuracies NaN when its training failed)."""
        out = {k: v for k, v in vars(self).items() if v is not None and not _per_seed(v)}
        out.update({k: float(v[i]) if ok else math.nan for k, v in vars(self).items()
                    if _per_seed(v)})  # fmt: skip
        return out


def _per_seed(v) -> bool:
    return v is not None and not isinstance(v, float | int)


def trained(
    run, data: Dataset, measured: Measured | None = None, before=None, **values
) -> list[dict]:
    """One row per seed of a trained run (explorer.train.Run), from its bare metrics.

    before: each seed's row so far (base_row's, or identity's), extended here;
    values: other columns known (host).
    """
    k = len(run.seeds)
    last = run.final()
    done = last["epoch"]
    images = (done - run.first_epoch + 1) * run.runner.steps_per_epoch * run.recipe.batch_size
    measured = measured or Measured(int8_accuracy=[math.nan] * k)
    wall = run.wall_s()
    out = []
    for i, seed in enumerate(run.seeds):
        ok = run.status[i] == "ok"
        out.append(
            {
                **(before[i] if before else {}),
                **spec_fields(run.plan.spec),
                **recipe_fields(run.recipe),
                "dataset": data.info.name,
                "train_examples": len(data.x_train),
                "test_examples": len(data.x_test),
                **complexity.summary(run.plan),
                "seed": seed,
                "status": run.status[i],
                "error": run.error[i],
                "epochs_done": done,
                "resumed_from_epoch": run.first_epoch - 1,
                **{m: float(last[m][i]) if ok else math.nan for m in TESTED},
                **{m: float(last[m][i]) for m in TRAINED},
                **measured.columns(i, ok),
                "compile_s": run.runner.compile_s,
                "images_per_s": images * k / run.train_s if run.train_s else math.nan,
                "wall_s": wall,
                "seeds_in_program": k,
                "device": run.device,
                **_known(values),
            }
        )
    return out


TESTED = ("accuracy", "top5", "test_loss")  # an epoch's test metrics (NaN once failed)
TRAINED = ("train_accuracy", "train_loss")  # over its training batches
EPOCH_METRICS = TESTED + TRAINED  # a trial reports each, mean over its seeds


def curve(before: list[dict], epoch: dict, wall_s: float) -> list[dict]:
    """The points of each seed's learning curve for one epoch's metrics."""
    return [
        {"seed": r["seed"], "epoch": epoch["epoch"], "wall_s": wall_s,
         **{m: float(epoch[m][i]) for m in EPOCH_METRICS}}
        for i, r in enumerate(before)
    ]  # fmt: skip


def stopped(before: list[dict], epoch: dict, host: str) -> list[dict]:
    """Each seed's row if the scheduler stopped the trial after this epoch."""
    return [
        {**r, "status": "stopped", "epochs_done": epoch["epoch"],
         "error": "stopped early by the scheduler", "host": host,
         **{m: float(epoch[m][i]) for m in EPOCH_METRICS}}
        for i, r in enumerate(before)
    ]  # fmt: skip


def ended(before: list[dict], status: str, error: str, **values) -> list[dict]:
    """The rows with a status and its reason (skipped, failed); values: other columns
    known (wall_s, host)."""
    return [{**r, "status": status, "error": error, **_known(values)} for r in before]


def _known(values: dict) -> dict:
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not columns of results.SCHEMA: {sorted(unknown)}")
    return values


def compressed(row: dict, done) -> dict:
    """A row with its Deep Compression result (explorer.compression.Result) added."""
    return {
        **row,
        "bytes_compressed": done.bytes_compressed,
        "compressed_accuracy": done.compressed_accuracy,
        "wall_s": row.get("wall_s", 0.0) + done.wall_s,
    }


def finished(
    row: dict,
    space_name: str,
    index: int,
    attempts: int,
    wall_s: float,
    earlier_s: float = 0.0,
    checkpoint: str | None = None,
    compressed_file: str | None = None,
) -> dict:
    """A row as the driver writes it, when and with which versions it was written.

    index: the point's number if the row has none yet (a searcher's points are
    numbered as their trials start); attempts: how many ran; wall_s: seconds
    since the first started, taken when the trial retried or reported none;
    earlier_s: what attempts under earlier drivers took; checkpoint (kept for
    a finished or stopped row) and compressed_file: paths in the sweep folder.
    """
    out = dict(row)
    if out["point"] < 0:
        out["point"] = index
        out["trial_id"] = trial_id(space_name, index, out["seed"])
    out.setdefault("finished_at", pd.Timestamp.now(tz="UTC"))
    out.setdefault("versions", versions())
    out["attempts"] = max(attempts, 1)
    if checkpoint is not None and out["status"] in ("ok", "stopped"):
        out["checkpoint"] = checkpoint
    if compressed_file is not None:
        out["compressed_file"] = compressed_file
    if attempts > 1 or "wall_s" not in out:  # every attempt's time, lost ones too
        out["wall_s"] = wall_s
    out["wall_s"] += earlier_s
    return out


def weights_dropped(row: dict) -> dict:
    """A row whose checkpoint was deleted (search.keep_weights)."""
    return {**row, "checkpoint": ""}


def stamped(row: dict) -> dict:
    """A row with when, and with which versions, it was written."""
    return {**row, "finished_at": pd.Timestamp.now(tz="UTC"), "versions": versions()}


def compress_fields(point: spaces.Point) -> dict:
    """Deep Compression's settings columns (none when the point is not compressed)."""
    if point.compress is None:
        return {}
    c = point.compress
    return {"sparsity": c.sparsity, "per_layer": c.per_layer, "rounds": c.rounds, "bits": c.bits}


def bytes_compressed_known(point: spaces.Point, plan: arch.Plan | None = None) -> float:
    """The compressed size a scheduler may take as known before training (optimistic).

    Huffman coding of the indices gains what the trained weights allow; the
    estimate assumes it saves a fifth of their bits, more than it did on any
    network measured (docs/compression.md), so a network is never judged larger
    than it will be.
    """
    if point.compress is None:
        return math.nan
    c = point.compress
    return complexity.bytes_compressed_estimate(
        plan or arch.plan(point.arch), c.sparsity, c.bits, index_gain=0.8
    )


def known_objectives(point: spaces.Point) -> dict:
    """The objectives known before training: the sizes, and the compressed size's
    optimistic estimate (NaN when the point is not compressed)."""
    plan = arch.plan(point.arch)
    return {
        **complexity.summary(plan),
        "bytes_compressed": bytes_compressed_known(point, plan),
    }


def ended_rows(
    space: spaces.Space, point: spaces.Point, seeds: list[int], status: str, error: str
) -> list[dict]:
    """Rows of a point's seeds that ended without training (skipped, failed at start)."""
    return ended([base_row(space, point, s) for s in seeds], status, error, epochs_done=0)


def candidates(space: spaces.Space) -> list[tuple[spaces.Point, dict]]:
    """The points a proposing method chooses from (`space.candidates`) that meet the
    constraints, each with its objectives known before training (planned once)."""
    out = []
    for p in spaces.candidates(space):
        plan = arch.plan(p.arch)
        summary = complexity.summary(plan)
        if not space.constraints.violations(summary):
            out.append((p, {**summary, "bytes_compressed": bytes_compressed_known(p, plan)}))
    return out


def constraint_violations(
    space: spaces.Space, point: spaces.Point, plan: arch.Plan | None = None
) -> str:
    """Why the space's constraints skip this point ('' when they do not)."""
    why = space.constraints.violations(complexity.summary(plan or arch.plan(point.arch)))
    return "constraint: " + "; ".join(why) if why else ""


def skipped_rows(space: spaces.Space, pts: list[spaces.Point]) -> tuple[list, list[dict]]:
    """Split points into those to train and `skipped` rows for those over the constraints."""
    keep, out = [], []
    for p in pts:
        why = constraint_violations(space, p)
        if why:
            out += ended_rows(space, p, space.search.training_seeds, "skipped", why)
        else:
            keep.append(p)
    return keep, out
