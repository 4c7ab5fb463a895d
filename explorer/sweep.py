"""`explorer sweep`: a space's points trained as Ray Tune trials, one results table.

A trial is one point of the space and one seed, or, with `search.vmap_seeds`
(the default when trials get a GPU), a point and all its seeds trained together.
Ray runs in this process when no address is given, or joins a cluster with
`address`. The sweep folder (`explorer.sweep_folder`) is the source of truth:
`--resume` starts trials only for what has no row yet, so after Ctrl-C or
`kill -9` no finished trial is lost or trained twice.

Before the first trial the data set is loaded here and, on a cluster, on every node,
so a missing or corrupt data set is one error line, not a failed row per trial. A point
over the constraints becomes a `skipped` row. A trial that fails (NaN loss, an
exception) is a `failed` row; one whose worker dies is retried `max_failures` times.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path

import pandas as pd

from explorer import results, rows, search
from explorer import settings as settings_mod
from explorer import space as spaces
from explorer import sweep_folder as folder
from explorer.pareto_scheduler import start_order
from explorer.settings import Settings
from explorer.sweep_folder import SweepError

CONNECT_TIMEOUT_S = 60  # a cluster that does not answer in this time is an error


class SweepInterrupted(Exception):
    """The sweep stopped before every row was done (Ctrl-C, SIGTERM); rows kept."""

    def __init__(self, done: int, total: int):
        super().__init__(f"interrupted: {done} of {total} rows; run again with --resume")
        self.done, self.total = done, total


def default_output(space: spaces.Space) -> Path:
    """Where a sweep writes when no --output is given."""
    return Path("runs") / space.name


# ---------------------------------------------------------------- planning
def seed_groups(space: spaces.Space) -> list[list[int]]:
    """Seeds trained together in one trial: all of them, or one each."""
    seeds = space.search.training_seeds
    vmap = space.search.vmap_seeds
    if vmap is None:  # auto: vmapped seeds pay off on accelerators, not on CPU
        vmap = space.resources.gpus_per_trial > 0
    return [seeds] if vmap else [[s] for s in seeds]


def preflight(space: spaces.Space, settings: Settings) -> None:
    """Load the data set once here, so a missing or corrupt one stops the sweep at once."""
    from explorer import data as datasets

    ds = space.dataset
    datasets.load(
        ds.name, ds.data_dir, ds.train_size, ds.test_size, ds.download, settings.fashion_mnist_dir
    )


def run(
    space_path: str | Path,
    out: str | Path | None = None,
    *,
    address: str | None = None,
    node_ip_address: str | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    max_concurrent: int | None = None,
    settings: Settings | None = None,
    storage: str | None = None,
    stream=None,
):
    """Run (or resume) a sweep; returns the results table.

    settings: how trials run; default: read from the environment (this is an
    entry point). storage: where Ray Tune keeps its experiment and the trials'
    checkpoints (a path every node sees, or a `pyarrow.fs` URI such as
    s3://bucket/runs); default: the sweep folder. Raises SweepInterrupted, after
    saving every finished row, when the sweep stopped before its last row.
    """
    stream = stream or sys.stderr
    settings = settings or settings_mod.from_env()
    space_path = Path(space_path)
    space = spaces.load(space_path)
    out = Path(out or default_output(space)).absolute()
    folder.prepare(space_path, space, out, resume or retry_failed)
    with folder.locked(out):
        how = search.METHODS[space.search.method]
        pts = [] if how.proposes else spaces.points(space)
        done = folder.done_rows(out, space, retry_failed, stream, pts)
        preflight(space, settings)
        if address is not None:
            node_ip_address = _reachable(address, node_ip_address)
        if how.proposes:  # a searcher proposes the points; done ones warm-start it
            todo_pts, skipped = [], []
            n_done = len({rows.point_id(t) for t in done})
            total = space.search.num_samples * space.search.seeds
            remaining = max(space.search.num_samples - n_done, 0)
            if how.enumerated:  # rows left, the seeds a point interrupted still lacks too
                remaining = max(total - len(done), 0)
        else:
            todo_pts, skipped = rows.skipped_rows(space, pts)
            total = len(pts) * space.search.seeds
            n_done = remaining = 0
        for r in skipped:
            if r["trial_id"] not in done:
                results.write_row(out, rows.stamped(r))
                done.add(r["trial_id"])
        # a trial the last driver left running continues from its latest checkpoint
        saved = folder.checkpoint_index(out)
        configs = [
            {"index": p.index, "values": p.values, "seeds": g, "resume": resume_at}
            for p in todo_pts
            for g in seed_groups(space)
            if not all(rows.trial_id(space.name, p.index, s) in done for s in g)
            for resume_at in [[saved.get(rows.trial_id(space.name, p.index, s)) for s in g]]
        ]
        if not how.proposes:
            configs = in_start_order(space, configs, todo_pts, done)
        print(
            f"sweep {space.name}: {total} rows ({space.search.method}, {space.search.seeds} "
            f"seed(s) per point), {len(done)} already done, into {out}",
            file=stream,
            flush=True,
        )
        if remaining if how.proposes else configs:
            ray_at = {"address": address, "node_ip_address": node_ip_address}
            if storage and "://" not in storage:
                storage = str(Path(storage).absolute())
            ray_at["storage"] = storage or str(out)
            _fit(space, out, configs, done, total, n_done, settings, max_concurrent, **ray_at)
        table = _keep_weights(space, results.load(out), out)
        results.save(table, out / "results.parquet")
        results.save_curves(results.load_curves(out), out / "curves.parquet")
    if len(table) < total:
        raise SweepInterrupted(len(table), total)
    return table


def in_start_order(space: spaces.Space, configs: list[dict], pts, done: set) -> list[dict]:
    """The configs in the order the space's scheduler starts them: the Pareto-aware one
    spreads them over their known sizes (pareto_scheduler.start_order), the points
    already trained counting as started; any other keeps the space's order."""
    if space.search.scheduler != "pareto":
        return configs  # no sizes to work out
    sizes = {p.index: rows.known_objectives(p) for p in pts}  # once per point
    seen = [
        sizes[p.index]
        for p in pts
        if any(rows.trial_id(space.name, p.index, s) in done for s in space.search.training_seeds)
    ]
    known = [sizes[c["index"]] for c in configs]
    order = start_order(dict(space.objectives), known, seen)
    return [configs[i] for i in order]


def _fit(space, out, configs, done, total, n_done, settings, max_concurrent, *, address,
         node_ip_address, storage):  # fmt: skip
    if address is None:
        settings_mod.local_ray_env()
    else:
        settings_mod.quiet_tune_env()
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from explorer.sweep_rows import RowWriter
    from explorer.trial import trainable

    # On an interrupt Tune tells the user to call Tuner.restore and lists every trial
    # that never started; the sweep's own line says what to do (--resume) instead.
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    env = settings_mod.worker_env(settings)
    res = space.resources
    if res.gpus_per_trial and res.gpus_per_trial < 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * res.gpus_per_trial:.3f}"
    kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            with _deadline(f"--address {address}: no Ray cluster answered within "
                           f"{CONNECT_TIMEOUT_S} s"):  # fmt: skip
                ray.init(address=address, _node_ip_address=node_ip_address, **kwargs)
            _check_nodes(space, settings)
        else:
            # "local": a Ray of this command's own, never a cluster found on the machine
            ray.init(address="local", include_dashboard=False, **kwargs)
    try:
        how = search.METHODS[space.search.method]
        fn = tune.with_parameters(trainable, space=space, settings=settings)
        fn = tune.with_resources(fn, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
        scheduler = search.scheduler(
            space.search.scheduler,
            dict(space.objectives),
            space.recipe.epochs,
            pause=space.search.checkpoint_every == 1,
        )
        search_alg = None
        if how.proposes:
            search_alg = SEARCHERS[space.search.method](space, seed_groups(space), out)
            # an enumerating searcher's configs hold the point; Tune samples nothing
            param_space = (
                {} if how.enumerated else {k: _tune_domain(d) for k, d in space.domains.items()}
            )
            num_samples = max(space.search.num_samples - n_done, 0)
            if how.enumerated:  # a trial per seed group: the rows left, a group at a time
                num_samples = max(total - len(done), 0) // len(seed_groups(space)[0])
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
        why = getattr(scheduler, "why", None)  # the Pareto scheduler's reasons, for the rows
        writer = RowWriter(out, space, total, len(done), n_done, why)
        run_cfg = tune.RunConfig(
            name="tune",
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
            # the latest checkpoint of each trial: what a retry resumes from, and the
            # final weights a row points to
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[writer, JsonLoggerCallback()],
            verbose=0,
        )
        tuner = tune.Tuner(fn, param_space=param_space, tune_config=tune_cfg, run_config=run_cfg)
        # Tune ends a run gracefully on SIGINT (Ctrl-C); SIGTERM asks for the same.
        previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
        try:
            tuner.fit()
        finally:
            signal.signal(signal.SIGTERM, previous)
        if writer.write_error:
            raise SweepError(f"{out}: cannot write rows ({writer.write_error})")
    finally:
        if started_here:
            ray.shutdown()


def _optuna_tpe(space: spaces.Space, groups: list, out: Path):
    from ray.tune.search.optuna import OptunaSearch

    prior = folder.prior_results(space, out)
    metrics, modes = list(space.objectives), list(space.objectives.values())
    return OptunaSearch(
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        seed=space.search.seed,
        points_to_evaluate=[p for p, _ in prior] or None,
        evaluated_rewards=[r for _, r in prior] or None,
    )


def _ehvi(space: spaces.Space, groups: list, out: Path):
    from explorer.front_search import FrontSearch  # Ray: after the driver's Ray settings

    return FrontSearch.from_folder(space, groups, out)


# method -> its Ray Tune searcher(space, seed groups, sweep folder), warm-started from rows
SEARCHERS = {"tpe": _optuna_tpe, "ehvi": _ehvi}


def _keep_weights(space: spaces.Space, table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Drop the final weights that `search.keep_weights` does not keep (front: those
    of rows off the Pareto front of the space's objectives; none: all)."""
    policy = space.search.keep_weights
    kept = table["checkpoint"].fillna("").ne("")
    if policy == "all" or not kept.any():
        return table
    keep = pd.Series(False, index=table.index)
    if policy == "front":
        from explorer.analysis.pareto import pareto_mask

        ok = table[(table["status"] == "ok") & kept]
        keep[ok.index] = pareto_mask(ok, dict(space.objectives))
    dropped = table.index[kept & ~keep]
    for i in dropped:
        shutil.rmtree(out / table.at[i, "checkpoint"], ignore_errors=True)
        results.write_row(out, rows.weights_dropped(table.loc[i].to_dict()))
    return results.load(out) if len(dropped) else table


def _reachable(address: str, node_ip_address: str | None) -> str | None:
    """Check that something listens at a head's address (seconds, not forever);
    for a loopback head, keep Ray on loopback. Returns the node address to use."""
    if address == "auto":
        return node_ip_address
    host, _, port = address.rpartition(":")
    try:
        port_n = int(port)
        with socket.create_connection((host, port_n), timeout=5):
            pass
    except (ValueError, OSError) as e:
        why = "expected HOST:PORT" if isinstance(e, ValueError) else (e.strerror or str(e))
        raise SweepError(
            f"--address {address}: no Ray head answers there ({why}); start one with "
            f"`ray start --head --node-ip-address={host or 'HOST'} --port={port or 'PORT'}`"
        ) from None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        # Ray rewrites 127.0.0.1 to the interface address unless told not to, and a
        # head reachable from this machine only runs without an auth token.
        settings_mod.local_ray_env()
        return node_ip_address or host
    return node_ip_address


class _deadline:
    """Exit the process with one line if a block (ray.init) outlasts CONNECT_TIMEOUT_S.

    ray.init retries a cluster that does not answer without a limit, and cannot
    be interrupted from another thread.
    """

    def __init__(self, message: str):
        self.timer = threading.Timer(CONNECT_TIMEOUT_S, self._expire, (message,))
        self.timer.daemon = True

    @staticmethod
    def _expire(message: str) -> None:
        print(f"explorer: error: {message}", file=sys.stderr, flush=True)
        os._exit(2)

    def __enter__(self):
        self.timer.start()

    def __exit__(self, *exc):
        self.timer.cancel()


def _check_nodes(space: spaces.Space, settings: Settings) -> None:
    """Load the data set on every node of the cluster, as its trials will."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def check(space, settings):
        preflight(space, settings)

    pending = {}
    for node in ray.nodes():
        if node.get("Alive"):
            where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ref = check.options(scheduling_strategy=where).remote(space, settings)
            pending[node.get("NodeManagerAddress", node["NodeID"])] = ref
    for addr, ref in pending.items():
        try:
            ray.get(ref, timeout=300)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None) or e
            ray.shutdown()
            raise SweepError(f"node {addr}: {str(cause).strip().splitlines()[-1]}") from None


def _tune_domain(d: spaces.Domain):
    """A space's domain as a Ray Tune search-space entry (for searchers)."""
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
