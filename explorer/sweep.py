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
import sys
from pathlib import Path

import pandas as pd

from explorer import results, rows, search
from explorer import settings as settings_mod
from explorer import space as spaces
from explorer.settings import Settings


class SweepError(Exception):
    """A sweep that cannot start or resume; printed as one line, exit status 2."""


def default_output(space: spaces.Space) -> Path:
    """Where a sweep writes when no --output is given."""
    return Path("runs") / space.name


# ---------------------------------------------------------------- planning
def seed_groups(space: spaces.Space) -> list[list[int]]:
    """Seeds trained together in one trial: all of them, or one each."""
    seeds = list(range(space.search.seeds))
    vmap = space.search.vmap_seeds
    if vmap is None:  # auto: vmapped seeds pay off on accelerators, not on CPU
        vmap = space.resources.gpus_per_trial > 0
    return [seeds] if vmap else [[s] for s in seeds]


def space_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_output(space_path: Path, out: Path, resume: bool) -> set[str]:
    """Create or reopen the sweep folder; the trial ids that already have rows."""
    saved = out / "space.yaml"
    row_dir = out / "rows"
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
    elif resume and row_dir.exists():
        raise SweepError(f"{out}: has rows but no space.yaml; cannot tell what to resume")
    out.mkdir(parents=True, exist_ok=True)
    if not saved.exists():
        saved.write_bytes(space_path.read_bytes())
    if not row_dir.exists():
        return set()
    done = {f.stem for f in row_dir.glob("*.parquet")}
    for f in row_dir.glob("*.tmp"):  # a write a crash interrupted: never a row
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
    settings: Settings | None = None,
    stream=None,
):
    """Run (or resume) a sweep; returns the results table.

    settings: how trials run; default: read from the environment (this is an entry point).
    """
    stream = stream or sys.stderr
    settings = settings or settings_mod.from_env()
    space_path = Path(space_path)
    space = spaces.load(space_path)
    out = Path(out or default_output(space)).resolve()
    done = prepare_output(space_path, out, resume)
    how = search.method(space)

    if how.proposes:  # a searcher proposes the points; done ones warm-start it
        todo_pts, skipped = [], []
        n_done = len({rows.point_id(t) for t in done})
        total = space.search.num_samples * space.search.seeds
        remaining = max(space.search.num_samples - n_done, 0)
    else:
        pts = spaces.points(space)
        todo_pts, skipped = rows.skipped_rows(space, pts)
        total = len(pts) * space.search.seeds
        n_done = 0
    for r in skipped:
        if r["trial_id"] not in done:
            r.update(finished_at=pd.Timestamp.now(tz="UTC"), versions=results.versions())
            results.write_row(out, r)
            done.add(r["trial_id"])
    configs = [
        {"index": p.index, "values": p.values, "seeds": g}
        for p in todo_pts
        for g in seed_groups(space)
        if not all(rows.trial_id(space.name, p.index, s) in done for s in g)
    ]
    print(
        f"sweep {space.name}: {total} rows ({space.search.method}, {space.search.seeds} "
        f"seed(s) per point), {len(done)} already done, into {out}",
        file=stream,
        flush=True,
    )
    if remaining if how.proposes else configs:
        ray_at = {"address": address, "node_ip_address": node_ip_address}
        _fit(space, out, configs, done, total, n_done, settings, max_concurrent, **ray_at)
    table = results.load(out)
    results.save(table, out / "results.parquet")
    return table


def _fit(space, out, configs, done, total, n_done, settings, max_concurrent, *, address,
         node_ip_address):  # fmt: skip
    if address is None:
        settings_mod.local_ray_env()
    else:
        settings_mod.quiet_tune_env()
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from explorer.sweep_rows import RowWriter
    from explorer.trial import trainable

    env = settings_mod.worker_env(settings)
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
        how = search.method(space)
        fn = tune.with_parameters(trainable, space=space, settings=settings)
        fn = tune.with_resources(fn, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
        scheduler = search.scheduler(space)
        search_alg = how.searcher(space, _prior_results(space, out)) if how.proposes else None
        if how.proposes:
            param_space = {k: search.tune_domain(d) for k, d in space.domains.items()}
            num_samples = max(space.search.num_samples - n_done, 0)
        else:
            param_space = {"cfg": tune.grid_search(configs)}
            num_samples = 1
        metric = mode = None
        if scheduler is not None or search_alg is not None:
            metric, mode = next(iter(space.objectives.items()))
        if search_alg is not None and len(space.objectives) > 1:
            metric = mode = None  # Tune takes them from the searcher
        tune_cfg = tune.TuneConfig(
            metric=metric,
            mode=mode,
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


def _prior_results(space: spaces.Space, out: Path) -> list[tuple[dict, list | float]]:
    """Finished points of a searcher and their objectives (mean over seeds), to warm-start it."""
    try:
        table = results.load(out)
    except results.ResultsError:
        return []
    keys, objectives = list(space.domains), list(space.objectives)
    if not set(keys) <= set(table.columns):
        return []  # a recipe key with no column of its own: start the searcher afresh
    ok = table[table["status"] == "ok"]
    prior = []
    for _, group in ok.groupby("point"):
        values = {k: _plain(group[k].iloc[0]) for k in keys}
        scores = [float(group[m].mean()) for m in objectives]
        prior.append((values, scores if len(scores) > 1 else scores[0]))
    return prior


def _plain(x):
    """numpy/pandas scalars -> Python, so a searcher sees the same values it proposed."""
    return x.item() if hasattr(x, "item") else x
