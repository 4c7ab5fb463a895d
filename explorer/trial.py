"""One Ray Tune trial: a point's seeds trained, each epoch reported, the rows returned.

The trainable only calls: the point from its config (`space.point_from_config`),
rows from `explorer.rows`, training from `explorer.train`. The rows travel to
the driver in the trial's last result, and the driver writes them
(`explorer.sweep_rows`), so a cluster needs no shared file system.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from explorer import architecture as arch
from explorer import checkpoints
from explorer import rows as rowlib
from explorer import space as spaces
from explorer.console import mean
from explorer.metrics import MAXIMISED, OBJECTIVES
from explorer.settings import Settings


def trainable(config: dict, space: spaces.Space, settings: Settings) -> None:
    """Train a point's seeds; report each epoch's metrics, then the rows."""
    from ray import tune

    from explorer import data as datasets
    from explorer import devices, train

    # One XLA CPU device per CPU this trial holds (a fresh worker process; a
    # reused one keeps the count it started with, the same for every trial).
    devices.split_cpu(max(1, int(space.resources.cpus_per_trial)))
    point, seeds = spaces.point_from_config(space, config)  # a searcher's: RowWriter numbers it
    plan = arch.plan(point.arch)  # the network, planned once for the whole trial
    rows = [rowlib.base_row(space, point, s, plan) for s in seeds]

    why = rowlib.constraint_violations(space, point, plan)
    if why:  # a searcher proposed a point over the limits: record it, never train it
        rows = rowlib.ended(rows, "skipped", why, epochs_done=0)
        tune.report({"epoch": 0, "done": True, "rows": rows, **worst()})
        return

    devices.compilation_cache(settings.cache_folder)
    ds = space.dataset
    data = datasets.load(
        ds.name, ds.data_dir, ds.train_size, ds.test_size, ds.download, settings.fashion_mnist_dir
    )
    host = _host()
    t0 = time.perf_counter()
    keeper = Keeper(space, point, seeds, data)
    resume = keeper.restore(tune.get_checkpoint()) or keeper.resume(config.get("cfg", config))
    try:
        run = train.start(plan, point.recipe, data, seeds, settings, resume=resume)
    except train.TrainingFailed as e:  # deterministic: record it, do not retry
        rows = rowlib.ended(rows, "failed", str(e), wall_s=time.perf_counter() - t0, host=host)
        tune.report({"epoch": point.recipe.epochs, "done": True, "rows": rows, **worst()})
        return

    curve: list = []
    for m in train.epochs(run):
        keeper.save(m["epoch"], run.states)
        curve = rowlib.curve(rows, m, time.perf_counter() - t0)
        if m["epoch"] == point.recipe.epochs:
            # the last epoch is reported once, with the final rows: a scheduler that
            # ends trials at the budget (ASHA) would otherwise end this one here
            break
        report = {"epoch": m["epoch"], "done": False, "rows": rowlib.stopped(rows, m, host)}
        tune.report({**report, "curve": curve, **_means(point, plan, rows[0], m)},
                    checkpoint=keeper.take())  # fmt: skip

    measured = train.measure_costs(run)
    if space.search.onnx_latency or space.search.onnx_int8:
        onnx = _onnx_figures(plan, run.params(), data, space.search)
        measured = dataclasses.replace(measured, **onnx)
    final = rowlib.trained(run, data, measured, rows, host=host)
    files = {}
    if point.compress is not None:
        files = _compress(point, data, ds, final, run.params(), settings)
    summary = {k: mean([r.get(k, math.nan) for r in final]) for k in OBJECTIVES}
    final_report = {"epoch": point.recipe.epochs, "done": True, "rows": final, **summary}
    if files:
        final_report["files"] = files
    tune.report({**final_report, "curve": curve}, checkpoint=keeper.take())
    keeper.close()


def _means(point: spaces.Point, plan: arch.Plan, row: dict, m: dict) -> dict:
    """Every metric a searcher or scheduler may ask for after an epoch, mean over the
    seeds; those unknown until the end: NaN (or an optimistic stand-in)."""
    means = {k: row.get(k, math.nan) for k in OBJECTIVES}
    means.update({k: mean(m[k]) for k in rowlib.EPOCH_METRICS})
    if point.compress is not None:  # optimistic stand-ins until compressed (see rows)
        means.update(
            bytes_compressed=rowlib.bytes_compressed_known(point, plan),
            compressed_accuracy=means["accuracy"],
        )
    return means


def _compress(point: spaces.Point, data, ds, final: list[dict], params: list, settings) -> dict:
    """Deep Compression of each seed's network; its columns set in `final`; the files' bytes.

    A compression that fails (its retraining diverges) fails the row: its
    objective is missing.
    """
    from explorer import checkpoints, compression, sqzfile, train

    files = {}
    for i, (row, p) in enumerate(zip(final, params, strict=True)):
        if row["status"] != "ok":
            continue
        meta = checkpoints.meta_for(point.arch, point.recipe, data, row["seed"], ds)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "net.sqz"
            try:
                done = compression.compress(
                    point.arch, point.recipe, data, p, point.compress, path, meta,
                    seed=row["seed"], settings=settings,
                )  # fmt: skip
            except (train.TrainingFailed, sqzfile.CompressionError) as e:
                final[i] = rowlib.ended([row], "failed", f"compression: {e}")[0]
                continue
            files[str(row["seed"])] = path.read_bytes()
        final[i] = rowlib.compressed(row, done)
    return files


def _onnx_figures(plan: arch.Plan, params: list, data, search) -> dict:
    """The ONNX Runtime columns `search` asks for (rows.Measured's names): seed 0's
    float32 latency; each seed's int8 file's bytes and top-1, and seed 0's int8 latency.
    NaN where an export fails (the row keeps JAX's own figures)."""
    from explorer import deploy, export

    out: dict = {}
    int8: dict[str, list] = {k: [] for k in INT8_ONNX}
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(params if search.onnx_int8 else params[:1]):
            path = Path(tmp) / f"seed{i}.onnx"
            try:
                export.to_onnx(plan, p, data.mean, data.std, path,
                               metadata={"spec": plan.spec.as_dict()})  # fmt: skip
                if i == 0 and search.onnx_latency:
                    out["latency_ort_b1_ms"] = export.ort_latency_b1_ms(path)
                got = deploy.int8_figures(path, plan, data) if search.onnx_int8 else {}
            except export.ExportError:
                if i == 0 and search.onnx_latency:
                    out.setdefault("latency_ort_b1_ms", math.nan)
                got = dict.fromkeys(int8, math.nan) if search.onnx_int8 else {}
            for k, v in got.items():
                int8[k].append(v)
    if search.onnx_int8:
        out.update(int8, latency_ort_int8_b1_ms=int8["latency_ort_int8_b1_ms"][0])
    return out


INT8_ONNX = ("bytes_int8_onnx", "int8_onnx_accuracy", "latency_ort_int8_b1_ms")


def worst() -> dict:
    """Objective values for a trial that produced none, so a searcher avoids it."""
    return {m: (0.0 if m in MAXIMISED else 1e18) for m in OBJECTIVES}


def _host() -> str:
    """This machine's name and, inside a Ray cluster, its node address."""
    try:
        import ray

        return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
    except Exception:
        return socket.gethostname()


class Keeper:
    """A trial's checkpoints: each seed's weights and optimiser state every
    `search.checkpoint_every` epochs (and at the last), handed to Tune, which
    stores them in the sweep folder and gives the latest back to a retried trial.
    """

    def __init__(self, space: spaces.Space, point: spaces.Point, seeds: list[int], data):
        self.every, self.epochs = space.search.checkpoint_every, point.recipe.epochs
        self.meta = [
            checkpoints.meta_for(point.arch, point.recipe, data, s, space.dataset) for s in seeds
        ]
        self.seeds, self.folder, self.reported = seeds, None, None

    def save(self, epoch: int, states: Callable[[], list[dict]]) -> None:
        """Each seed's state (states(): on the host) when this epoch is one to keep."""
        if not self.every or (epoch % self.every and epoch != self.epochs):
            return
        self.close()  # Tune copied the last one into the sweep folder when it was reported
        self.folder = Path(tempfile.mkdtemp(prefix="explorer-ckpt-"))
        for seed, state, meta in zip(self.seeds, states(), self.meta, strict=True):
            checkpoints.save(
                self.folder / f"seed{seed}", state["params"], state["opt"], epoch=epoch, meta=meta
            )

    def take(self):
        """This epoch's checkpoint for tune.report (None: none this epoch)."""
        from ray import tune

        if self.folder is None:
            return None
        self.reported, self.folder = self.folder, None
        return tune.Checkpoint.from_directory(str(self.reported))

    def close(self) -> None:
        if self.reported is not None:
            shutil.rmtree(self.reported, ignore_errors=True)
            self.reported = None

    def restore(self, checkpoint) -> tuple[int, list[dict]] | None:
        """(epochs done, each seed's params and optimiser leaves) from Tune's latest."""
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return self._restored([Path(folder) / f"seed{s}" for s in self.seeds])

    def resume(self, config: dict) -> tuple[int, list[dict]] | None:
        """From the checkpoints a resumed sweep found for this trial's seeds, if all have one."""
        folders = config.get("resume") or []
        if not folders or not all(folders):
            return None
        try:
            return self._restored([Path(f) for f in folders])
        except checkpoints.CheckpointError:
            return None  # damaged or gone: train from the start

    def _restored(self, folders: list[Path]) -> tuple[int, list[dict]] | None:
        import jax

        saved = [checkpoints.restore(f) for f in folders]
        epochs = {meta["epoch"] for _, _, meta in saved}
        if len(epochs) != 1:
            return None  # seeds saved at different epochs: start again
        states = [{"params": p, "opt": jax.tree.leaves(o)} for p, o, _ in saved]
        return epochs.pop(), states
