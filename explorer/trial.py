"""One Ray Tune trial: a point's seeds trained, each epoch reported, the rows returned.

The trainable only calls: the point from its config (`space.point_from_config`),
rows from `explorer.rows`, training from `explorer.train`. The rows travel to
the driver in the trial's last result, and the driver writes them
(`explorer.sweep_rows`), so a cluster needs no shared file system.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

from explorer import rows as rowlib
from explorer import space as spaces
from explorer.metrics import MAXIMISED, OBJECTIVES
from explorer.settings import Settings

# Metrics a trial reports each epoch, mean over its seeds (for schedulers and searchers).
EPOCH_METRICS = ("accuracy", "top5", "test_loss", "train_loss", "train_accuracy")


def trainable(config: dict, space: spaces.Space, settings: Settings) -> None:
    """Train a point's seeds; report each epoch's metrics, then the rows."""
    from ray import tune

    from explorer import data as datasets
    from explorer import devices, train

    # One XLA CPU device per CPU this trial holds (a fresh worker process; a
    # reused one keeps the count it started with, the same for every trial).
    devices.split_cpu(max(1, int(space.resources.cpus_per_trial)))
    point, seeds = spaces.point_from_config(space, config)  # a searcher's: RowWriter numbers it
    rows = [rowlib.base_row(space, point, s) for s in seeds]

    why = rowlib.constraint_violations(space, point)
    if why:  # a searcher proposed a point over the limits: record it, never train it
        for r in rows:
            r.update(status="skipped", error=why, epochs_done=0)
        tune.report({"epoch": 0, "done": True, "rows": rows, **worst()})
        return

    _maybe_crash(point.recipe, tune.get_context())
    train.compilation_cache(settings.cache_folder)
    ds = space.dataset
    data = datasets.load(
        ds.name, ds.data_dir, ds.train_size, ds.test_size, ds.download, settings.fashion_mnist_dir
    )
    host = _host()
    t0 = time.perf_counter()

    def on_epoch(ep: int, m: dict) -> None:
        partial = [
            {
                **r,
                "status": "stopped",
                "epochs_done": ep,
                "error": "stopped early by the scheduler",
                **{k: float(m[k][i]) for k in EPOCH_METRICS},
                "host": host,
            }
            for i, r in enumerate(rows)
        ]
        curve = [
            {"seed": r["seed"], "epoch": ep, **{k: float(m[k][i]) for k in EPOCH_METRICS},
             "wall_s": time.perf_counter() - t0}
            for i, r in enumerate(rows)
        ]  # fmt: skip
        # every metric a searcher or scheduler may ask for; unknown until the end: NaN
        means = {k: rows[0].get(k, math.nan) for k in OBJECTIVES}
        means.update({k: nanmean(m[k]) for k in EPOCH_METRICS})
        tune.report({"epoch": ep, "done": False, "rows": partial, "curve": curve, **means})

    try:
        records = train.train_and_evaluate(
            point.arch, point.recipe, data, seeds, on_epoch, settings=settings
        )
    except train.TrainingFailed as e:  # deterministic: record it, do not retry
        for r in rows:
            r.update(status="failed", error=str(e), wall_s=time.perf_counter() - t0, host=host)
        tune.report({"epoch": point.recipe.epochs, "done": True, "rows": rows, **worst()})
        return
    final = [{**r, **rec, "host": host} for r, rec in zip(rows, records, strict=True)]
    summary = {k: nanmean([r.get(k, math.nan) for r in final]) for k in OBJECTIVES}
    tune.report({"epoch": point.recipe.epochs, "done": True, "rows": final, **summary})


def worst() -> dict:
    """Objective values for a trial that produced none, so a searcher avoids it."""
    return {m: (0.0 if m in MAXIMISED else 1e18) for m in OBJECTIVES}


def nanmean(xs) -> float:
    """Mean of the finite values (NaN when there are none)."""
    vals = [float(x) for x in xs if x is not None and not math.isnan(float(x))]
    return sum(vals) / len(vals) if vals else math.nan


def _host() -> str:
    """This machine's name and, inside a Ray cluster, its node address."""
    try:
        import ray

        return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    except Exception:
        return socket.gethostname()


def _maybe_crash(recipe, ctx) -> None:
    """inject_fault: crash kills the worker process on a trial's first attempt."""
    if recipe.inject_fault != "crash":
        return
    marker = Path(ctx.get_trial_dir()) / "crashed-once"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("the first attempt of this trial was killed on purpose\n")
        os._exit(1)
