"""How a pure train step runs: over K seeds, over the devices, ahead of time.

`explorer.train` writes the step as the Flax examples do, `train_step(state,
batch, key) -> (state, metrics)`, for one seed on one device. This layer turns
it into the program that runs:

- seeds: K seeds of one architecture as one program over a leading seed axis,
  vmapped (accelerators) or one after another (`lax.map`, CPU), per the settings;
- devices: on CPU every core is a device taking its share of each batch
  (`shard_map`, gradients averaged inside the step), state replicated;
- at most `IN_FLIGHT` multi-device calls queued (see `placing`);
- compiled once, ahead of time, and timed.

Epochs are Python loops over the compiled step (a step inside `lax.scan` ran
several times slower under XLA:CPU; docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from explorer.settings import Settings

if TYPE_CHECKING:
    from explorer.data import Dataset

AXIS = "batch"  # the mesh axis a batch is split along
IN_FLIGHT = 8  # calls of a multi-device program queued at most (see placing)
ONCE = {"xla_backend_optimization_level": 0}  # compiler options for run-once functions


@dataclasses.dataclass(frozen=True)
class Runner:
    """Compiled functions for one (architecture, recipe, data shape) and K seeds."""

    init: Callable  # keys -> state
    step: Callable  # (state, data, perm, j, keys) -> state
    shuffle: Callable  # keys -> perm (steps x batch indices)
    evaluate: Callable  # (params, data, j) -> sums over eval batch j
    steps_per_epoch: int
    eval_batch: int
    eval_batches: int
    compile_s: float
    sharding: jax.sharding.Sharding | None = None  # where state and data live


@dataclasses.dataclass(frozen=True)
class Program:
    """The per-seed, per-device pure functions a Runner compiles.

    step(state, data, perm, j, key, axis) and evaluate(params, data, j, axis)
    take `axis`, the mesh axis name when several devices share each batch
    (None on one device), and `part`, which cuts this device's share of a
    batch-sized array.
    """

    init: Callable  # key -> state
    step: Callable  # (state, data, perm, j, key, part, axis) -> state
    shuffle: Callable  # key -> perm
    evaluate: Callable  # (params, data, j, part, axis) -> sums
    steps_per_epoch: int
    eval_batch: int
    eval_batches: int


def seeds_vmapped(settings: Settings | None = None, backend: str | None = None) -> bool:
    """Whether a program of several seeds vmaps them (else one after another).

    auto: vmap on accelerators, where one small model leaves most of the device
    idle; on CPU one seed's step already keeps every core busy, and batching
    seeds only made each operation slower (docs/performance.md).
    """
    how = (settings or Settings()).seeds
    return how == "vmap" or (how == "auto" and (backend or jax.default_backend()) != "cpu")


def per_seed(fn: Callable, in_axes: tuple, batched: bool) -> Callable:
    """fn over the leading seed axis of the arguments whose in_axes entry is 0."""
    if batched:
        return jax.vmap(fn, in_axes=in_axes)

    def each(*args):
        def one(seeded):
            it = iter(seeded)
            return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, in_axes, strict=True)))

        return jax.lax.map(one, tuple(a for a, ax in zip(args, in_axes, strict=True) if ax == 0))

    return each


def mesh(devices: int | None, *batches: int) -> jax.sharding.Mesh | None:
    """A 1-D mesh of the devices that share each batch; None for a single device.

    devices: how many; default every CPU device JAX has (one per core after
    `devices.split_cpu`) that the batch sizes divide into, one on an accelerator.
    """
    local = jax.local_devices()
    if devices is None:
        if jax.default_backend() != "cpu":
            return None
        devices = len(local)
        while devices > 1 and any(b % devices for b in batches):
            devices -= 1
    elif devices < 1 or devices > len(local):
        raise ValueError(f"devices: expected 1 to {len(local)}, got {devices}")
    elif any(b % devices for b in batches):
        raise ValueError(f"devices: {devices} does not divide the batch sizes {batches}")
    if devices == 1:
        return None
    return jax.sharding.Mesh(np.array(local[:devices]), (AXIS,))


def placing(fn: Callable, sharding: jax.sharding.Sharding) -> Callable:
    """fn with its arguments placed first, and at most IN_FLIGHT calls queued.

    Every IN_FLIGHT-th call waits for its result: XLA's CPU client blocks a
    thread of its small pool once 32 programs per device are queued, and a
    Python loop that far ahead could leave one device's share without a thread
    while the other waited for it in the all-reduce (docs/performance.md).
    """
    calls = itertools.count(1)

    @functools.wraps(fn)
    def call(*args):
        out = fn(*jax.device_put(args, sharding))
        if next(calls) % IN_FLIGHT == 0:
            jax.block_until_ready(out)
        return out

    return call


def compile_runner(
    program: Program,
    data: Dataset,
    num_seeds: int = 1,
    the_mesh: jax.sharding.Mesh | None = None,
    batched: bool = False,
) -> Runner:
    """Compile a program's functions (ahead of time, timed) for K seeds, a mesh and
    the shapes of a data set on the device (device_data)."""
    parts = 1 if the_mesh is None else the_mesh.size
    axis = None if parts == 1 else AXIS

    def part(a: jax.Array) -> jax.Array:
        """This device's share of a batch-sized array (all of it on one device)."""
        if parts == 1:
            return a
        n = a.shape[0] // parts
        return jax.lax.dynamic_slice_in_dim(a, jax.lax.axis_index(AXIS) * n, n)

    def step(state, data, perm, j, key):
        return program.step(state, data, perm, j, key, part, axis)

    def evaluate(params, data, j):
        return program.evaluate(params, data, j, part, axis)

    init, shuffle = program.init, program.shuffle
    if num_seeds > 1:  # one program for K seeds: over a seed axis of state and keys
        init = per_seed(init, (0,), batched)
        step = per_seed(step, (0, None, 0, None, 0), batched)
        shuffle = per_seed(shuffle, (0,), batched)
        evaluate = per_seed(evaluate, (0, None, None), batched)
    sharding = None
    if the_mesh is not None:  # every device runs the step on its share; results replicated
        sharding = jax.sharding.NamedSharding(the_mesh, jax.sharding.PartitionSpec())
        spmd = functools.partial(
            jax.shard_map,
            mesh=the_mesh,
            in_specs=jax.sharding.PartitionSpec(),
            out_specs=jax.sharding.PartitionSpec(),
            check_vma=False,
        )
        step, evaluate = spmd(step), spmd(evaluate)
    placed = {} if sharding is None else {"in_shardings": sharding, "out_shardings": sharding}

    keys = seed_keys(range(num_seeds))
    j = jax.ShapeDtypeStruct((), jnp.int32)
    data_specs, eval_specs = _data_specs(data, program.eval_batch, program.eval_batches)
    t0 = time.perf_counter()
    # init runs once per trial: compiled without LLVM's optimisations it is as
    # fast and compiles in seconds less (random initialisers unroll).
    init_c = jax.jit(init, **placed).lower(keys).compile(ONCE)
    state = jax.eval_shape(init, keys)
    perm = jax.eval_shape(shuffle, keys)
    step_c = (
        jax.jit(step, donate_argnums=(0,), **placed)
        .lower(state, data_specs, perm, j, keys)
        .compile()
    )
    shuffle_c = jax.jit(shuffle, **placed).lower(keys).compile(ONCE)
    eval_c = jax.jit(evaluate, **placed).lower(state["params"], eval_specs, j).compile()
    compile_s = time.perf_counter() - t0
    if sharding is not None:  # callers pass host or one-device arrays: copy them to all
        init_c, step_c, shuffle_c, eval_c = (
            placing(f, sharding) for f in (init_c, step_c, shuffle_c, eval_c)
        )
    return Runner(
        init_c,
        step_c,
        shuffle_c,
        eval_c,
        program.steps_per_epoch,
        program.eval_batch,
        program.eval_batches,
        compile_s,
        sharding,
    )


# ---------------------------------------------------------------- epochs
def run_steps(runner: Runner, state, dev: dict, perm, key, start: int, n: int):
    """n steps from batch `start` of this epoch's permutation (wrapping around)."""
    for j in range(start, start + n):
        state = runner.step(state, dev["train"], perm, np.int32(j % runner.steps_per_epoch), key)
    return state


def run_epoch(
    runner: Runner,
    state,
    dev: dict,
    key,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[dict, dict]:
    """One epoch of steps; returns the state and mean train loss/accuracy per seed.

    on_step(done, total) is called every few steps (for a progress bar); it does
    not wait for the device, so it costs nothing.
    """
    perm = runner.shuffle(key)
    state = {**state, "sums": jnp.zeros_like(state["sums"])}
    total = runner.steps_per_epoch
    every = max(total // 50, 1)
    for j in range(0, total, every):
        n = min(every, total - j)
        state = run_steps(runner, state, dev, perm, key, j, n)
        if on_step is not None:
            on_step(j + n, total)
    sums = np.asarray(state["sums"]).reshape(-1, 2) / total
    return state, {"loss": sums[:, 0], "accuracy": sums[:, 1]}


def device_data(data: Dataset, runner: Runner) -> dict:
    """The data set on the device; the test split padded to whole eval batches."""
    pad = runner.eval_batches * runner.eval_batch - len(data.x_test)
    x_test = np.concatenate([data.x_test, np.zeros((pad, *data.x_test.shape[1:]), np.uint8)])
    y_test = np.concatenate([data.y_test, np.full(pad, -1, np.int32)])
    put = functools.partial(jax.device_put, device=runner.sharding)
    mean, std = put(np.asarray(data.mean, np.float32)), put(np.asarray(data.std, np.float32))
    return {
        "train": {"x": put(data.x_train), "y": put(data.y_train), "mean": mean, "std": std},
        "test": {"x": put(x_test), "y": put(y_test), "mean": mean, "std": std},
        "n_test": len(data.x_test),
    }


def restored(state: dict, saved: list[dict], runner: Runner) -> dict:
    """The runner's state with each seed's saved params and optimiser leaves put in."""
    params = [s["params"] for s in saved]
    leaves = [list(s["opt"]) for s in saved]
    if len(saved) > 1:  # stack the seeds along the program's seed axis
        params = [jax.tree.map(lambda *a: np.stack(a), *params)]
        leaves = [[np.stack(ls) for ls in zip(*leaves, strict=True)]]
    opt = jax.tree.unflatten(jax.tree.structure(state["opt"]), leaves[0])
    state = {"params": params[0], "opt": opt, "sums": state["sums"]}
    return jax.device_put(state, runner.sharding)


def _data_specs(data: Dataset, eval_batch: int, eval_batches: int) -> tuple[dict, dict]:
    """Shapes of device_data's train and test splits, to compile against."""
    ms = jax.ShapeDtypeStruct(data.mean.shape, jnp.float32)
    n = eval_batch * eval_batches
    x, y = data.x_test, data.y_test
    return (
        {"x": _spec(data.x_train), "y": _spec(data.y_train), "mean": ms, "std": ms},
        {
            "x": jax.ShapeDtypeStruct((n, *x.shape[1:]), x.dtype),
            "y": jax.ShapeDtypeStruct((n,), y.dtype),
            "mean": ms,
            "std": ms,
        },
    )


def _spec(a: np.ndarray) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(a.shape, a.dtype)


def evaluate(runner: Runner, params, dev: dict) -> tuple[np.ndarray, ...]:
    """Test loss, top-1 and top-5 per seed."""
    total = sum(
        runner.evaluate(params, dev["test"], np.int32(j)) for j in range(runner.eval_batches)
    )
    sums = np.asarray(total).reshape(-1, 3) / dev["n_test"]
    return sums[:, 0], sums[:, 1], sums[:, 2]


# ---------------------------------------------------------------- seed keys
def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """One key per seed; a single seed gives an unbatched key."""
    keys = [jax.random.key(s) for s in seeds]
    return keys[0] if len(keys) == 1 else jnp.stack(keys)


def split_keys(keys: jax.Array, k: int) -> list:
    """Per-seed split of (possibly batched) keys into k keys each."""
    if keys.ndim == 0:
        return list(jax.random.split(keys, k))
    parts = jax.vmap(lambda key: jax.random.split(key, k))(keys)
    return [parts[:, i] for i in range(k)]


def fold_keys(keys: jax.Array, n: int) -> jax.Array:
    """Per-seed fold_in of n."""
    if keys.ndim == 0:
        return jax.random.fold_in(keys, n)
    return jax.vmap(lambda kk: jax.random.fold_in(kk, n))(keys)
