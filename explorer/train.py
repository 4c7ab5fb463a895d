"""Training: optimiser from the recipe, a pure train step, evaluation, one record.

The data set sits on the device as uint8; each epoch shuffles from the seed, and
each compiled step cuts, normalises (and augments) its batch on the device, so the
host never feeds batches (epochs are Python loops over the step: see the note at
`make_runner`). On CPU every core is a device taking its share of each batch. K
seeds of one architecture train together as one program, over a seed axis of the
parameters, the optimiser state and the random keys (`train_and_evaluate(seeds=...)`):
vmapped on accelerators, one seed after another on CPU (`_per_seed`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental.compilation_cache import compilation_cache as persistent_cache

from explorer import architecture as arch
from explorer import complexity, measure, models
from explorer.data import Dataset
from explorer.devices import SettingError
from explorer.recipe import Recipe

CACHE_ENV = "EXPLORER_CACHE_DIR"
SEEDS_ENV = "EXPLORER_SEEDS"  # how a program of several seeds runs them: auto, vmap or loop


def compilation_cache(folder: str | os.PathLike | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns the folder (None: off).

    Folder: the argument, else $EXPLORER_CACHE_DIR, else ~/.cache/squeeze-explorer/jax.
    An empty string turns the cache off. A repeated architecture then loads its
    compiled program from disk instead of compiling again (in any process). A
    new folder takes effect at once, also in a process that compiled with
    another (JAX opens its cache at the first compile and keeps it otherwise).
    """
    if folder is None:
        folder = os.environ.get(CACHE_ENV)
    if folder is None:
        folder = os.path.join(os.path.expanduser("~"), ".cache", "squeeze-explorer", "jax")
    if folder:
        folder = os.path.abspath(os.fspath(folder))
        os.makedirs(folder, exist_ok=True)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_dir", folder or None)
    persistent_cache.reset_cache()
    return folder or None


class TrainingFailed(Exception):
    """A run that cannot go on (NaN loss, injected fault)."""


@dataclasses.dataclass(frozen=True)
class Runner:
    """Compiled functions for one (architecture, recipe, data shape) and K seeds.

    With several devices (CPU cores, see explorer.devices) the state and the data
    set are copied to each, every device takes its share of each batch, and the
    gradients are averaged across them: the same step as on one device.
    """

    init: Callable  # keys -> state
    step: Callable  # (state, x, y, mean, std, perm, j, keys) -> state
    shuffle: Callable  # keys -> perm (steps x batch indices)
    evaluate: Callable  # (params, x, y, mean, std, j) -> sums over eval batch j
    steps_per_epoch: int
    eval_batch: int
    eval_batches: int
    compile_s: float
    sharding: jax.sharding.Sharding | None = None  # where state and data live


# ---------------------------------------------------------------- optimiser
def schedule(recipe: Recipe, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate per step: linear warm-up, then poly (paper), cosine or constant."""
    total = recipe.epochs * steps_per_epoch
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    rest = max(total - warmup, 1)
    lr = recipe.learning_rate
    if recipe.schedule == "poly":  # paper: lr * (1 - t/T)^power
        main = optax.polynomial_schedule(lr, 0.0, recipe.poly_power, rest)
    elif recipe.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, rest)
    else:
        main = optax.constant_schedule(lr)
    if warmup == 0:
        return main
    ramp = optax.linear_schedule(lr / max(warmup, 1), lr, warmup)
    return optax.join_schedules([ramp, main], [warmup])


def optimizer(recipe: Recipe, steps_per_epoch: int) -> optax.GradientTransformation:
    """The recipe's optimiser; L2 weight decay for sgd/adam (as PyTorch), decoupled for adamw."""
    lr = schedule(recipe, steps_per_epoch)
    if recipe.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=recipe.weight_decay)
    base = (
        optax.sgd(lr, momentum=recipe.momentum or None, nesterov=recipe.nesterov)
        if recipe.optimizer == "sgd"
        else optax.adam(lr)
    )
    if recipe.weight_decay == 0:
        return base
    return optax.chain(optax.add_decayed_weights(recipe.weight_decay), base)


# ---------------------------------------------------------------- batches
def normalise(xb: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """uint8 NHWC -> float32, per-channel standardised."""
    return (xb.astype(jnp.float32) - mean) / std


def augment(key: jax.Array, xb: jax.Array) -> jax.Array:
    """Random crop from a 4-pixel zero-padded image, and a random horizontal flip."""
    n, h, w, _ = xb.shape
    padded = jnp.pad(xb, ((0, 0), (4, 4), (4, 4), (0, 0)))
    kc, kf = jax.random.split(key)
    offsets = jax.random.randint(kc, (n, 2), 0, 9)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    out = jax.vmap(crop)(padded, offsets)
    flip = jax.random.bernoulli(kf, 0.5, (n, 1, 1, 1))
    return jnp.where(flip, out[:, :, ::-1], out)


# ---------------------------------------------------------------- steps
# Measured on a 2-core CPU (benchmarks/train_throughput.py): a train step inside
# lax.scan or fori_loop runs ~7x slower under XLA:CPU than the same step called
# from Python (64 vs 490 images/s), so epochs are Python loops over a jitted,
# donated step. Batches are gathered from device-resident uint8 data by index,
# and metrics accumulate on the device, so the loop never waits for the host.
def make_runner(
    spec: arch.ArchSpec,
    recipe: Recipe,
    data: Dataset,
    num_seeds: int = 1,
    devices: int | None = None,
) -> Runner:
    """Build and compile (ahead of time, timed) the init, step and eval functions.

    devices: how many devices share each batch; default: every CPU device JAX
    has (one per core after `devices.split_cpu`) that the batch sizes divide
    into, and one device on an accelerator.
    """
    model = models.build(spec, many_seeds=num_seeds > 1)
    batched = num_seeds > 1 and seeds_vmapped()
    n_train = len(data.x_train)
    steps = n_train // recipe.batch_size
    if steps < 1:
        raise TrainingFailed(
            f"batch_size {recipe.batch_size} is larger than the {n_train} training images"
        )
    tx = optimizer(recipe, steps)
    shape = models.input_shape(spec, 1)
    eval_b = min(recipe.eval_batch_size, len(data.x_test))
    mesh = _mesh(devices, recipe.batch_size, eval_b)
    parts = 1 if mesh is None else mesh.size

    def part(a: jax.Array) -> jax.Array:
        """This device's share of a batch-sized array (all of it on one device)."""
        if parts == 1:
            return a
        n = a.shape[0] // parts
        return jax.lax.dynamic_slice_in_dim(a, jax.lax.axis_index(AXIS) * n, n)

    def across(tree):
        """The mean over the devices that share the batch."""
        return tree if parts == 1 else jax.lax.pmean(tree, AXIS)

    def init(key):
        params = model.init(key, jnp.zeros(shape, jnp.float32))["params"]
        return {"params": params, "opt": tx.init(params), "sums": jnp.zeros(2)}

    def loss_fn(params, xb, yb, key):
        logits = model.apply({"params": params}, xb, train=True, rngs={"dropout": key})
        labels = optax.smooth_labels(jax.nn.one_hot(yb, spec.num_classes), recipe.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, labels).mean()
        return loss, (logits.argmax(-1) == yb).mean()

    def step(state, x, y, mean, std, perm, j, key):
        """One optimiser step on batch j of this epoch's permutation; pure."""
        idx = part(jax.lax.dynamic_index_in_dim(perm, j, keepdims=False))
        key = jax.random.fold_in(key, j)
        if parts > 1:  # each device's share of the batch draws its own noise
            key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
        kaug, kdrop = jax.random.split(key)
        xb = x[idx]
        if recipe.augment:
            xb = augment(kaug, xb)
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], normalise(xb, mean, std), y[idx], kdrop
        )
        grads, loss, acc = across((grads, loss, acc))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt": opt, "sums": state["sums"] + jnp.stack([loss, acc])}

    def shuffle(key):
        """This epoch's order: steps x batch_size indices (the remainder is dropped)."""
        perm = jax.random.permutation(jax.random.fold_in(key, 0), n_train)
        return perm[: steps * recipe.batch_size].reshape(steps, recipe.batch_size)

    def evaluate(params, x, y, mean, std, j):
        """Sums of loss, top-1 and top-5 hits over eval batch j (labels < 0 are padding)."""
        xb = part(jax.lax.dynamic_slice_in_dim(x, j * eval_b, eval_b))
        yb = part(jax.lax.dynamic_slice_in_dim(y, j * eval_b, eval_b))
        logits = model.apply({"params": params}, normalise(xb, mean, std))
        valid = yb >= 0
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(yb, 0))
        top5 = jax.lax.top_k(logits, min(5, spec.num_classes))[1]
        hit5 = (top5 == yb[:, None]).any(-1)
        sums = jnp.stack([(loss * valid).sum(), (top5[:, 0] == yb).sum(), hit5.sum()])
        return sums if parts == 1 else jax.lax.psum(sums, AXIS)

    if num_seeds > 1:  # one program for K seeds: over a seed axis of state and keys
        init_k = _per_seed(init, (0,), batched)
        step_k = _per_seed(step, (0, None, None, None, None, 0, None, 0), batched)
        shuffle_k = _per_seed(shuffle, (0,), batched)
        eval_k = _per_seed(evaluate, (0, None, None, None, None, None), batched)
    else:
        init_k, step_k, shuffle_k, eval_k = init, step, shuffle, evaluate
    sharding = None
    if mesh is not None:  # every device runs the step on its share; results replicated
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        spmd = functools.partial(
            jax.shard_map,
            mesh=mesh,
            in_specs=jax.sharding.PartitionSpec(),
            out_specs=jax.sharding.PartitionSpec(),
            check_vma=False,
        )
        step_k, eval_k = spmd(step_k), spmd(eval_k)
    placed = {} if sharding is None else {"in_shardings": sharding, "out_shardings": sharding}

    keys = _keys(range(num_seeds))
    j = jax.ShapeDtypeStruct((), jnp.int32)
    ms = jax.ShapeDtypeStruct(data.mean.shape, jnp.float32)
    t0 = time.perf_counter()
    # init runs once per trial: compiled without LLVM's optimisations it is as
    # fast and compiles in ~2 s instead of ~10 s (random initialisers unroll).
    init_c = jax.jit(init_k, **placed).lower(keys).compile(ONCE)
    state = jax.eval_shape(init_k, keys)
    perm = jax.eval_shape(shuffle_k, keys)
    xs, ys = _spec(data.x_train), _spec(data.y_train)
    step_c = (
        jax.jit(step_k, donate_argnums=(0,), **placed)
        .lower(state, xs, ys, ms, ms, perm, j, keys)
        .compile()
    )
    shuffle_c = jax.jit(shuffle_k, **placed).lower(keys).compile(ONCE)
    n_eval = -(-len(data.x_test) // eval_b)
    xt = jax.ShapeDtypeStruct((n_eval * eval_b, *data.x_test.shape[1:]), data.x_test.dtype)
    yt = jax.ShapeDtypeStruct((n_eval * eval_b,), data.y_test.dtype)
    eval_c = jax.jit(eval_k, **placed).lower(state["params"], xt, yt, ms, ms, j).compile()
    compile_s = time.perf_counter() - t0
    if sharding is not None:  # callers pass host or one-device arrays: copy them to all
        init_c, step_c, shuffle_c, eval_c = (
            _placing(f, sharding) for f in (init_c, step_c, shuffle_c, eval_c)
        )
    return Runner(init_c, step_c, shuffle_c, eval_c, steps, eval_b, n_eval, compile_s, sharding)


def seeds_vmapped() -> bool:
    """Whether a program of several seeds vmaps them (see _per_seed).

    $EXPLORER_SEEDS: "vmap", "loop" (one after another), or "auto" (the
    default): vmap on accelerators, loop on CPU.
    """
    how = os.environ.get(SEEDS_ENV, "") or "auto"
    if how not in ("auto", "vmap", "loop"):
        raise SettingError(f"${SEEDS_ENV}: expected auto, vmap or loop, got {how!r}")
    return how == "vmap" or (how == "auto" and jax.default_backend() != "cpu")


def _per_seed(fn: Callable, in_axes: tuple, batched: bool) -> Callable:
    """fn over the leading seed axis of the arguments whose in_axes entry is 0.

    batched: `jax.vmap`, every seed in each operation (accelerators, where one
    small model leaves most of the device idle). Otherwise one seed after
    another within the program (`lax.map`): on CPU one seed's step already
    keeps every core busy, and batching seeds only made each operation slower
    (benchmarks/train_throughput.py, SqueezeNet 1.1 at 28x28x1, 2-core CPU:
    one seed 1,002 images/s; K=8 vmapped 520, one after another 868; README).
    """
    if batched:
        return jax.vmap(fn, in_axes=in_axes)

    def each(*args):
        def one(seeded):
            it = iter(seeded)
            return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, in_axes, strict=True)))

        return jax.lax.map(one, tuple(a for a, ax in zip(args, in_axes, strict=True) if ax == 0))

    return each


def _placing(fn: Callable, sharding: jax.sharding.Sharding) -> Callable:
    """fn with its arguments placed first, and at most IN_FLIGHT calls queued.

    Arguments already in place are not copied. Every IN_FLIGHT-th call waits for
    its result: XLA's CPU client runs each device's share of a multi-device
    program on a small thread pool (as many threads as cores) and blocks a
    thread there once 32 programs per device are queued, so a Python loop that
    ran that far ahead could leave a device's share without a thread while the
    other device waited for it in the gradient all-reduce (seen as an abort
    after XLA's 40 s rendezvous timeout, in long epochs on a busy 2-core
    machine). The wait costs one dispatch per IN_FLIGHT steps.
    """
    calls = itertools.count(1)

    @functools.wraps(fn)
    def call(*args):
        out = fn(*jax.device_put(args, sharding))
        if next(calls) % IN_FLIGHT == 0:
            jax.block_until_ready(out)
        return out

    return call


IN_FLIGHT = 8  # calls of a multi-device program queued at most (see _placing)
ONCE = {"xla_backend_optimization_level": 0}  # compiler options for run-once functions
AXIS = "batch"  # the mesh axis a batch is split along


def _mesh(devices: int | None, *batches: int) -> jax.sharding.Mesh | None:
    """A 1-D mesh of the devices that share each batch; None for a single device."""
    if devices is None:
        if jax.default_backend() != "cpu":
            return None
        devices = len(jax.local_devices())
        while devices > 1 and any(b % devices for b in batches):
            devices -= 1
    elif devices < 1 or devices > len(jax.local_devices()):
        raise ValueError(f"devices: expected 1 to {len(jax.local_devices())}, got {devices}")
    elif any(b % devices for b in batches):
        raise ValueError(f"devices: {devices} does not divide the batch sizes {batches}")
    if devices == 1:
        return None
    return jax.sharding.Mesh(np.array(jax.local_devices()[:devices]), (AXIS,))


def _spec(a: np.ndarray) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(a.shape, a.dtype)


def _keys(seeds: Sequence[int]) -> jax.Array:
    """One key per seed; a single seed gives an unbatched key."""
    keys = [jax.random.key(s) for s in seeds]
    return keys[0] if len(keys) == 1 else jnp.stack(keys)


def _split(keys: jax.Array, k: int):
    """Per-seed split of (possibly batched) keys into k keys each."""
    if keys.ndim == 0:
        return list(jax.random.split(keys, k))
    parts = jax.vmap(lambda key: jax.random.split(key, k))(keys)
    return [parts[:, i] for i in range(k)]


def _fold(keys: jax.Array, n: int) -> jax.Array:
    return (
        jax.random.fold_in(keys, n)
        if keys.ndim == 0
        else jax.vmap(lambda kk: jax.random.fold_in(kk, n))(keys)
    )


def run_epoch(
    runner: Runner, state, dev: dict, key, on_step: Callable[[int, int], None] | None = None
) -> tuple[dict, dict]:
    """One epoch of steps; returns the state and mean train loss/accuracy per seed.

    on_step(done, total) is called every few steps (for a progress bar); it does
    not wait for the device, so it costs nothing.
    """
    perm = runner.shuffle(key)
    sums0 = jnp.zeros_like(state["sums"])
    state = {**state, "sums": sums0}
    every = max(runner.steps_per_epoch // 50, 1)
    for j in range(runner.steps_per_epoch):
        state = runner.step(
            state, dev["x_train"], dev["y_train"], dev["mean"], dev["std"], perm, np.int32(j), key
        )
        if on_step is not None and (j + 1) % every == 0:
            on_step(j + 1, runner.steps_per_epoch)
    sums = np.asarray(state["sums"]).reshape(-1, 2) / runner.steps_per_epoch
    return state, {"loss": sums[:, 0], "accuracy": sums[:, 1]}


def device_data(data: Dataset, runner: Runner) -> dict:
    """The data set on the device; the test split padded to whole eval batches."""
    pad = runner.eval_batches * runner.eval_batch - len(data.x_test)
    x_test = np.concatenate([data.x_test, np.zeros((pad, *data.x_test.shape[1:]), np.uint8)])
    y_test = np.concatenate([data.y_test, np.full(pad, -1, np.int32)])
    put = functools.partial(jax.device_put, device=runner.sharding)
    return {
        "x_train": put(data.x_train),
        "y_train": put(data.y_train),
        "x_test": put(x_test),
        "y_test": put(y_test),
        "mean": put(np.asarray(data.mean, np.float32)),
        "std": put(np.asarray(data.std, np.float32)),
        "n_test": len(data.x_test),
    }


def evaluate(runner: Runner, params, dev: dict) -> tuple[np.ndarray, ...]:
    """Test loss, top-1 and top-5 per seed."""
    total = sum(
        runner.evaluate(params, dev["x_test"], dev["y_test"], dev["mean"], dev["std"], np.int32(j))
        for j in range(runner.eval_batches)
    )
    sums = np.asarray(total).reshape(-1, 3) / dev["n_test"]
    return sums[:, 0], sums[:, 1], sums[:, 2]


# ---------------------------------------------------------------- the run
def train_and_evaluate(
    spec: arch.ArchSpec,
    recipe: Recipe,
    data: Dataset,
    seeds: Sequence[int] = (0,),
    on_epoch: Callable[[int, dict], None] | None = None,
    measure_costs: bool = True,
    on_step: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Train len(seeds) copies of one architecture together; one record per seed.

    on_epoch(epoch, metrics) is called after each epoch with per-seed arrays of
    train loss/accuracy and test loss/top-1/top-5 and the epoch's time; it may
    raise to stop the run (a scheduler's early stop).
    """
    t_start = time.perf_counter()
    seeds = list(seeds)
    plan = arch.plan(spec)
    k = len(seeds)
    runner = make_runner(spec, recipe, data, num_seeds=k)
    init_key, loop_key = _split(_keys(seeds), 2)
    state = runner.init(init_key)
    dev = device_data(data, runner)

    status, error = ["ok"] * k, [""] * k
    train_time, epochs_done = 0.0, 0
    last = {"loss": np.full(k, np.nan), "accuracy": np.full(k, np.nan)}
    loss = top1 = top5 = np.full(k, np.nan)
    for ep in range(1, recipe.epochs + 1):
        if ep == recipe.fault_epoch and recipe.inject_fault == "error":
            raise TrainingFailed(f"injected fault (train.inject_fault: error) at epoch {ep}")
        if ep == recipe.fault_epoch and recipe.inject_fault == "nan":
            state = {**state, "params": jax.tree.map(lambda p: p * jnp.nan, state["params"])}
        t0 = time.perf_counter()
        state, metrics = run_epoch(runner, state, dev, _fold(loop_key, ep), on_step)
        epoch_s = time.perf_counter() - t0
        train_time += epoch_s
        epochs_done, last = ep, metrics
        bad = ~np.isfinite(metrics["loss"])
        for i in np.flatnonzero(bad):
            if status[i] == "ok":
                status[i] = "failed"
                error[i] = f"loss became {metrics['loss'][i]} in epoch {ep}"
        if bad.all():  # nothing left to train: stop instead of wasting the budget
            break
        loss, top1, top5 = evaluate(runner, state["params"], dev)
        if on_epoch is not None:
            on_epoch(
                ep,
                {
                    "train_loss": metrics["loss"],
                    "train_accuracy": metrics["accuracy"],
                    "test_loss": loss,
                    "accuracy": top1,
                    "top5": top5,
                    "epoch_s": epoch_s,
                    "status": list(status),
                },
            )

    per_seed = _unstack(state["params"], k)
    if measure_costs:  # int8 weights, measured: one more test pass (all seeds)
        int8_acc = evaluate(runner, measure.quantize_int8(state["params"], int(k > 1)), dev)[1]
        lat = measure.latency(plan, per_seed[0])
    else:
        int8_acc, lat = np.full(k, np.nan), {}
    wall = time.perf_counter() - t_start
    images = epochs_done * runner.steps_per_epoch * recipe.batch_size * k
    records = []
    for i, seed in enumerate(seeds):
        ok = status[i] == "ok"
        records.append(
            {
                **record_fields(spec, recipe, data),
                **complexity.summary(plan),
                "seed": seed,
                "status": status[i],
                "error": error[i],
                "epochs_done": epochs_done,
                "accuracy": float(top1[i]) if ok else math.nan,
                "top5": float(top5[i]) if ok else math.nan,
                "test_loss": float(loss[i]) if ok else math.nan,
                "train_accuracy": float(last["accuracy"][i]),
                "train_loss": float(last["loss"][i]),
                "int8_accuracy": float(int8_acc[i]) if ok else math.nan,
                "latency_b1_ms": lat.get("b1_ms", math.nan),
                "latency_b128_ms": lat.get("b128_ms", math.nan),
                "compile_s": runner.compile_s,
                "images_per_s": images / train_time if train_time else math.nan,
                "wall_s": wall,
                "seeds_in_program": k,
                "device": jax.devices()[0].device_kind,
            }
        )
    return records


def _unstack(tree, k: int) -> list:
    if k == 1:
        return [tree]
    return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(k)]


def spec_fields(spec: arch.ArchSpec) -> dict:
    """Metaparameter columns of a results row."""
    d = spec.as_dict()
    d["pool_after"] = ",".join(spec.pool_after)
    return d


def recipe_fields(recipe: Recipe) -> dict:
    """Recipe columns of a results row."""
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
    """Metaparameter, recipe and data columns of a results row."""
    return {
        **spec_fields(spec),
        **recipe_fields(recipe),
        "dataset": data.info.name,
        "train_examples": len(data.x_train),
        "test_examples": len(data.x_test),
    }
