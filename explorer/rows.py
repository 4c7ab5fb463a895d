"""A results row's fields, built in one place: identity, metaparameters, recipe, data.

The CLI's `train`, a sweep's trials and the driver's row writer all build rows
here, so a trial id's format and the fields known before training are defined
once. Columns and their units are `explorer.results.SCHEMA`.
"""

from __future__ import annotations

import math

from explorer import architecture as arch
from explorer import complexity
from explorer import space as spaces
from explorer.data import Dataset
from explorer.recipe import Recipe


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


def record_fields(spec: arch.ArchSpec, recipe: Recipe, data: Dataset) -> dict:
    """Metaparameter, recipe and data columns of a trained record."""
    return {
        **spec_fields(spec),
        **recipe_fields(recipe),
        "dataset": data.info.name,
        "train_examples": len(data.x_train),
        "test_examples": len(data.x_test),
    }


def base_row(space: spaces.Space, point: spaces.Point, seed: int) -> dict:
    """The columns known before training: identity, metaparameters, complexity."""
    return {
        "trial_id": trial_id(space.name, point.index, seed),
        "space": space.name,
        "space_digest": space.digest,
        "point": point.index,
        "seed": seed,
        "base": point.values.get("base", space.base),
        **spec_fields(point.arch),
        **recipe_fields(point.recipe),
        "dataset": space.dataset.name,
        **complexity.summary(arch.plan(point.arch)),
        **compress_fields(point),
    }


def compress_fields(point: spaces.Point) -> dict:
    """Deep Compression's settings columns (none when the point is not compressed)."""
    if point.compress is None:
        return {}
    return {"sparsity": point.compress.sparsity, "bits": point.compress.bits}


def bytes_compressed_known(point: spaces.Point) -> float:
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
        arch.plan(point.arch), c.sparsity, c.bits, index_gain=0.8
    )


def known_objectives(point: spaces.Point) -> dict:
    """The objectives known before training: the sizes, and the compressed size's
    optimistic estimate (NaN when the point is not compressed)."""
    return {
        **complexity.summary(arch.plan(point.arch)),
        "bytes_compressed": bytes_compressed_known(point),
    }


def ended_rows(
    space: spaces.Space, point: spaces.Point, seeds: list[int], status: str, error: str
) -> list[dict]:
    """Rows of a point's seeds that ended without training (skipped, failed at start)."""
    return [
        {**base_row(space, point, s), "status": status, "error": error, "epochs_done": 0}
        for s in seeds
    ]


def candidates(space: spaces.Space) -> list[tuple[spaces.Point, dict]]:
    """The points a proposing method chooses from (`space.candidates`) that meet the
    constraints, each with its objectives known before training (planned once)."""
    out = []
    for p in spaces.candidates(space):
        summary = complexity.summary(arch.plan(p.arch))
        if not space.constraints.violations(summary):
            out.append((p, {**summary, "bytes_compressed": bytes_compressed_known(p)}))
    return out


def constraint_violations(space: spaces.Space, point: spaces.Point) -> str:
    """Why the space's constraints skip this point ('' when they do not)."""
    why = space.constraints.violations(complexity.summary(arch.plan(point.arch)))
    return "constraint: " + "; ".join(why) if why else ""


def skipped_rows(space: spaces.Space, pts: list[spaces.Point]) -> tuple[list, list[dict]]:
    """Split points into those to train and `skipped` rows for those over the constraints."""
    keep, out = [], []
    for p in pts:
        why = constraint_violations(space, p)
        if why:
            out += ended_rows(space, p, list(range(space.search.seeds)), "skipped", why)
        else:
            keep.append(p)
    return keep, out
