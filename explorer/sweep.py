"""`explorer sweep`: a space's points trained as Ray Tune trials, one results table.

A trial is one point of the space and one seed, or, with `search.vmap_seeds`
(the default when trials get a GPU), a point and all its seeds trained together
by the vmapped trainer. Ray runs
in this process when no address is given, or joins a cluster with `address`.

The sweep folder is the source of truth:

    OUT/space.yaml        the space file as the sweep started (checked on --resume)
    OUT/rows/*.parquet    one file per finished trial-seed, written atomically by
                          this driver (so a cluster needs no shared file system)
    OUT/results.parquet   all rows, gathered when the sweep ends
    OUT/tune/             Ray Tune's own experiment folder

`--resume` reads rows/ and starts trials only for what has no row yet, so after
Ctrl-C or `kill -9` no finished trial is lost or trained twice. Constraints are
checked here before a trial starts: a point over them becomes a `skipped` row.
A trial that fails (NaN loss, an exception) becomes a `failed` row; one whose
worker dies is retried `search.max_failures` times first.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import sys
import time
from pathlib import Path

import pandas as pd

from explorer import architecture as arch
from explorer import complexity, results
from explorer import space as spaces
from explorer.recipe import METRICS

# Metrics a trial reports each epoch, mean over its seeds (for ASHA and TPE).
EPOCH_METRICS = ("accuracy", "top5", "test_loss", "train_loss", "train_accuracy")
MAXIMISED = {"accuracy", "top5", "int8_accuracy"}


class SweepError(Exception):
    """A sweep that cannot start or resume; printed as one line, exit status 2."""


# ---------------------------------------------------------------- planning
def trial_id(space_name: str, index: int, seed: int) -> str:
    return f"{space_name}-p{index:04d}-s{seed}"


def seed_groups(space: spaces.Space) -> list[list[int]]:
    """Seeds trained together in one trial: all of them, or one each."""
    seeds = list(range(space.search.seeds))
    vmap = space.search.vmap_seeds
    if vmap is None:  # auto: vmapped seeds pay off on accelerators, not on CPU
        vmap = space.resources.gpus_per_trial > 0
    return [seeds] if vmap else [[s] for s in seeds]


def base_row(space: spaces.Space, point: spaces.Point, seed: int) -> dict:
    """The columns of a row known before training: identity, metaparameters, complexity."""
    from explorer.train import recipe_fields, spec_fields

    summary = complexity.summary(arch.plan(point.arch))
    return {
        "trial_id": trial_id(space.name, point.index, seed),
        "space": space.name,
        "point": point.index,
        "seed": seed,
        "base": point.values.get("base", space.base),
        **spec_fields(point.arch),
        **recipe_fields(point.recipe),
        "dataset": space.dataset.name,
        **summary,
    }


def skipped_rows(space: spaces.Space, pts: list[spaces.Point]) -> tuple[list, list[dict]]:
    """Split points into those to train and rows for those the constraints skip."""
    keep, rows = [], []
    for p in pts:
        why = space.constraints.violations(complexity.summary(arch.plan(p.arch)))
        if why:
            for seed in range(space.search.seeds):
                rows.append(
                    {
                        **base_row(space, p, seed),
                        "status": "skipped",
                        "error": "constraint: " + "; ".join(why),
                        "epochs_done": 0,
                    }
                )
        else:
            keep.append(p)
    return keep, rows


def space_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- the trainable
def trainable(config: dict, space: spaces.Space) -> None:
    """One Ray Tune trial: train a point's seeds, report each epoch, then the rows."""
    from ray import tune

    from explorer import data as datasets
    from explorer import devices, train

    # One XLA CPU device per CPU this trial holds (a fresh worker process; a
    # reused one keeps the count it started with, the same for every trial).
    devices.split_cpu(max(1, int(space.resources.cpus_per_trial)))
    ctx = tune.get_context()
    point, seeds = spaces.point_from_config(space, config)  # a searcher's: RowWriter numbers it
    rows = [base_row(space, point, s) for s in seeds]

    why = space.constraints.violations(complexity.summary(arch.plan(point.arch)))
    if why:  # tpe proposed a point over the limits: record it, never train it
        for r in rows:
            r.update(status="skipped", error="constraint: " + "; ".join(why), epochs_done=0)
        tune.report({"epoch": 0, "done": True, "rows": rows, **_worst(space)})
        return

    _maybe_crash(point.recipe, ctx)
    train.compilation_cache()
    ds = space.dataset
    data = datasets.load(ds.name, ds.data_dir, ds.train_size, ds.test_size, ds.download)
    host = _host()

    def on_epoch(ep: int, m: dict) -> None:
        partial = []
        for i, r in enumerate(rows):
            partial.append(
                {
                    **r,
                    "status": "stopped",
                    "epochs_done": ep,
                    "error": "stopped early by the scheduler",
                    **{k: float(m[k][i]) for k in EPOCH_METRICS},
                    "host": host,
                }
            )
        # every metric a searcher or scheduler may ask for; unknown until the end: NaN
        means = {k: rows[0].get(k, math.nan) for k in METRICS}
        means.update({k: _nanmean(m[k]) for k in EPOCH_METRICS})
        tune.report({"epoch": ep, "done": False, "rows": partial, **means})

    t0 = time.perf_counter()
    try:
        records = train.train_and_evaluate(point.arch, point.recipe, data, seeds, on_epoch)
    except train.TrainingFailed as e:  # deterministic: record it, do not retry
        for r in rows:
            r.update(status="failed", error=str(e), wall_s=time.perf_counter() - t0, host=host)
        tune.report({"epoch": point.recipe.epochs, "done": True, "rows": rows, **_worst(space)})
        return
    final = [{**r, **rec, "host": host} for r, rec in zip(rows, records, strict=True)]
    summary = {k: _nanmean([r.get(k, math.nan) for r in final]) for k in METRICS}
    tune.report({"epoch": point.recipe.epochs, "done": True, "rows": final, **summary})


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


def _nanmean(xs) -> float:
    vals = [float(x) for x in xs if x is not None and not math.isnan(float(x))]
    return sum(vals) / len(vals) if vals else math.nan


def _worst(space: spaces.Space) -> dict:
    """Objective values for a trial that produced none, so a searcher avoids it."""
    return {m: (0.0 if m in MAXIMISED else 1e18) for m in METRICS}


def prepare_output(space_path: Path, out: Path, resume: bool) -> set[str]:
    """Create or reopen the sweep folder; the trial ids that already have rows."""
    saved = out / "space.yaml"
    rows = out / "rows"
    if saved.exists():
        if not resume:
            raise SweepError(
                f"{out}: a sweep already lives here; add --resume to continue it, "
                "or choose another --output"
            )
        if space_digest(saved) != space_digest(space_path):
            raise SweepError(
                f"{space_path}: differs from the space this sweep started with ({saved}); "
                "resume with that file, or start a new sweep in another --output"
            )
    elif resume and rows.exists():
        raise SweepError(f"{out}: has rows but no space.yaml; cannot tell what to resume")
    out.mkdir(parents=True, exist_ok=True)
    if not saved.exists():
        saved.write_bytes(space_path.read_bytes())
    if not rows.exists():
        return set()
    done = set()
    for f in rows.glob("*.parquet"):
        done.add(f.stem)
    for f in rows.glob("*.tmp"):  # a write a crash interrupted: never a row
        f.unlink()
    return done


def run(
    space_path: str | Path,
    out: str | Path | None = None,
    *,
    address: str | None = None,
    node_ip_address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    stream=None,
):
    """Run (or resume) a sweep; returns the results table."""
    stream = stream or sys.stderr
    space_path = Path(space_path)
    space = spaces.load(space_path)
    out = Path(out or Path("runs") / space.name).resolve()
    done = prepare_output(space_path, out, resume)

    groups = seed_groups(space)
    if space.search.method == "tpe":
        todo_pts, skipped = [], []
        n_done = len({_point_of(t) for t in done})
        total = space.search.num_samples * space.search.seeds
        remaining = max(space.search.num_samples - n_done, 0)
    else:
        todo_pts, skipped = skipped_rows(space, spaces.points(space))
        total = len(spaces.points(space)) * space.search.seeds
        n_done = 0
    for r in skipped:
        if r["trial_id"] not in done:
            r.update(finished_at=pd.Timestamp.now(tz="UTC"), versions=results.versions())
            results.write_row(out, r)
            done.add(r["trial_id"])
    configs = [
        {"index": p.index, "values": p.values, "seeds": g}
        for p in todo_pts
        for g in groups
        if not all(trial_id(space.name, p.index, s) in done for s in g)
    ]
    print(
        f"sweep {space.name}: {total} rows ({space.search.method}, {space.search.seeds} "
        f"seed(s) per point), {len(done)} already done, into {out}",
        file=stream,
        flush=True,
    )
    todo = remaining if space.search.method == "tpe" else len(configs)
    if todo:
        _fit(
            space,
            out,
            configs,
            done,
            total,
            address,
            node_ip_address,
            max_concurrent,
            n_done,
            stream,
        )
    table = results.load(out)
    results.save(table, out / "results.parquet")
    return table


def _point_of(tid: str) -> str:
    return tid.rsplit("-s", 1)[0]


def _fit(
    space, out, configs, done, total, address, node_ip_address, max_concurrent, n_done, stream
):
    if address is None:
        # An embedded Ray on this machine binds loopback only (Ray rewrites
        # 127.0.0.1 to the interface address unless told not to).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # ...and, being reachable from this machine only, needs no auth token.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Rows are written by RowWriter and progress is ours: keep Tune's JSON log of
    # each trial's results, not its CSV/TensorBoard logs or its console tables.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from explorer import devices
    from explorer.sweep_rows import RowWriter

    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # trials may share a GPU
    env.update(devices.worker_env())  # malloc keeps freed pages (devices.keep_freed_memory)
    for key in ("EXPLORER_CACHE_DIR", "FASHION_MNIST_DIR", "JAX_PLATFORMS"):
        if key in os.environ:
            env[key] = os.environ[key]
    res = space.resources
    if res.gpus_per_trial and res.gpus_per_trial < 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * res.gpus_per_trial:.3f}"
    kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, _node_ip_address=node_ip_address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    try:
        metric, direction = next(iter(space.objectives.items()))
        fn = tune.with_parameters(trainable, space=space)
        fn = tune.with_resources(fn, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
        scheduler = search_alg = None
        if space.search.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(
                time_attr="epoch", max_t=space.recipe.epochs, grace_period=1, reduction_factor=2
            )
        if space.search.method == "tpe":
            from ray.tune.search.optuna import OptunaSearch

            metrics = list(space.objectives)
            modes = list(space.objectives.values())
            prior = _prior_results(space, out)
            search_alg = OptunaSearch(
                metric=metrics if len(metrics) > 1 else metrics[0],
                mode=modes if len(modes) > 1 else modes[0],
                seed=space.search.seed,
                points_to_evaluate=[p for p, _ in prior] or None,
                evaluated_rewards=[r for _, r in prior] or None,
            )
            param_space = {k: _tune_domain(d) for k, d in space.domains.items()}
            num_samples = max(space.search.num_samples - n_done, 0)
            if len(metrics) > 1:
                metric = direction = None  # Tune takes them from the searcher
        else:
            param_space = {"cfg": tune.grid_search(configs)}
            num_samples = 1
        tune_cfg = tune.TuneConfig(
            metric=metric if scheduler or search_alg else None,
            mode=direction if scheduler or search_alg else None,
            num_samples=num_samples,
            search_alg=search_alg,
            scheduler=scheduler,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
        )
        if scheduler is not None and tune_cfg.metric is None:
            tune_cfg.metric, tune_cfg.mode = "accuracy", "max"
        writer = RowWriter(out, space, total, len(done), first_index=n_done)
        run_cfg = tune.RunConfig(
            name="tune",
            storage_path=str(out),
            failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
            callbacks=[writer, JsonLoggerCallback()],
            verbose=0,
        )
        tuner = tune.Tuner(fn, param_space=param_space, tune_config=tune_cfg, run_config=run_cfg)
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


def _tune_domain(d: spaces.Domain):
    from ray import tune

    if d.kind == "fixed":
        return d.values[0]
    if d.kind == "values":
        return tune.choice(list(d.values))
    if d.kind == "uniform":
        return tune.uniform(d.low, d.high)
    if d.kind == "loguniform":
        return tune.loguniform(d.low, d.high)
    return tune.randint(int(d.low), int(d.high) + 1)


def _prior_results(space: spaces.Space, out: Path) -> list[tuple[dict, list | float]]:
    """Finished tpe points and their objectives (mean over seeds), to warm-start Optuna."""
    try:
        table = results.load(out)
    except results.ResultsError:
        return []
    keys, objectives = list(space.domains), list(space.objectives)
    if not set(keys) <= set(table.columns):
        return []  # a recipe key with no column of its own: start Optuna afresh
    ok = table[table["status"] == "ok"]
    prior = []
    for _, group in ok.groupby("point"):
        values = {k: _plain(group[k].iloc[0]) for k in keys}
        scores = [float(group[m].mean()) for m in objectives]
        prior.append((values, scores if len(scores) > 1 else scores[0]))
    return prior


def _plain(x):
    """numpy/pandas scalars -> Python, so Optuna sees the same values it proposed."""
    return x.item() if hasattr(x, "item") else x
