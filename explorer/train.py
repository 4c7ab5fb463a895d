"""Training: optimiser from the recipe, a pure train step, the epochs of a run.

The step has the Flax examples' shape (`make_train_step`); `explorer.execution`
runs it over seeds and devices. A run of one planned network reads top to
bottom: `start` (compile, initialise or resume), `epochs` (yields each epoch's
metrics; the caller checkpoints and reports between them), `measure_costs`
(int8 accuracy, latency); `train_and_evaluate` is the three without a caller
in between. Its records are built by `explorer.rows.trained`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from explorer import architecture as arch
from explorer import execution, lowering, measure, models, rows
from explorer.data import Dataset
from explorer.recipe import Recipe
from explorer.settings import Settings


class TrainingFailed(Exception):
    """A run that cannot start or go on (a batch larger than the data set)."""


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


# ---------------------------------------------------------------- the step
@dataclasses.dataclass(frozen=True)
class Trainable:
    """What a run trains when it is not a network's parameters from scratch.

    start: the trainable tree the run starts from (host arrays); to_params:
    the network's parameters from that tree (traced; e.g. shared weights
    gathered from their codebooks); wrap: the recipe's optimiser around
    (e.g. its updates masked, so pruned weights stay zero). Deep Compression's
    retraining steps are such runs (explorer.compression).
    """

    start: Any
    to_params: Callable = lambda p: p
    wrap: Callable[[optax.GradientTransformation], optax.GradientTransformation] = lambda tx: tx


def make_train_step(
    model: models.SqueezeNet,
    tx: optax.GradientTransformation,
    recipe: Recipe,
    to_params: Callable = lambda p: p,
):
    """train_step(state, batch, key, axis=None) -> (state, metrics); pure.

    state: {"params", "opt"}; batch: {"image": float32 NHWC, "label": int32};
    key: the dropout key. With `axis`, the devices along that mesh axis share
    the batch and their gradients and metrics are averaged (as in Flax's
    data-parallel examples). to_params: the network's parameters from the
    trained tree (see Trainable).
    """
    num_classes = model.plan.spec.num_classes

    def loss_fn(params, images, labels, key):
        logits = model.apply(
            {"params": to_params(params)}, images, train=True, rngs={"dropout": key}
        )
        targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), recipe.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    def train_step(state, batch, key, axis=None):
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], batch["image"], batch["label"], key
        )
        if axis is not None:
            grads, loss, acc = jax.lax.pmean((grads, loss, acc), axis)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt": opt}, {"loss": loss, "accuracy": acc}

    return train_step


def make_eval_step(model: models.SqueezeNet, to_params: Callable = lambda p: p):
    """eval_step(params, batch) -> sums of loss, top-1 and top-5 hits (labels < 0: padding)."""
    num_classes = model.plan.spec.num_classes

    def eval_step(params, batch):
        logits = model.apply({"params": to_params(params)}, batch["image"])
        labels = batch["label"]
        valid = labels >= 0
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
        top5 = jax.lax.top_k(logits, min(5, num_classes))[1]
        hit5 = (top5 == labels[:, None]).any(-1)
        return jnp.stack([(loss * valid).sum(), (top5[:, 0] == labels).sum(), hit5.sum()])

    return eval_step


def make_runner(
    model: models.SqueezeNet,
    recipe: Recipe,
    data: Dataset,
    num_seeds: int = 1,
    devices: int | None = None,
    settings: Settings | None = None,
    trainable: Trainable | None = None,
) -> execution.Runner:
    """The compiled init, step, shuffle and eval functions of a training run.

    The data set sits on the device as uint8; each step cuts its batch from
    this epoch's permutation, augments and normalises it there, so the host
    never feeds batches. model: `models.build(plan, settings=settings,
    many_seeds=num_seeds > 1)`. devices: how many share each batch
    (execution.mesh). trainable: train this instead of freshly initialised
    parameters.
    """
    settings = settings or Settings()
    n_train = len(data.x_train)
    steps = n_train // recipe.batch_size
    if steps < 1:
        raise TrainingFailed(
            f"batch_size {recipe.batch_size} is larger than the {n_train} training images"
        )
    tx = optimizer(recipe, steps)
    to_params = lambda p: p  # noqa: E731
    if trainable is not None:
        tx, to_params = trainable.wrap(tx), trainable.to_params
    train_step = make_train_step(model, tx, recipe, to_params)
    eval_step = make_eval_step(model, to_params)
    one_image = (1, *data.x_train.shape[1:])  # the data's images are the model's input
    eval_b = min(recipe.eval_batch_size, len(data.x_test))

    def init(key):
        if trainable is not None:
            params = jax.tree.map(jnp.asarray, trainable.start)
        else:
            params = model.init(key, jnp.zeros(one_image, jnp.float32))["params"]
        return {"params": params, "opt": tx.init(params), "sums": jnp.zeros(2)}

    def step(state, d, perm, j, key, part, axis):
        """One optimiser step on batch j of this epoch's permutation; metrics summed."""
        idx = part(jax.lax.dynamic_index_in_dim(perm, j, keepdims=False))
        key = jax.random.fold_in(key, j)
        if axis is not None:  # each device's share of the batch draws its own noise
            key = jax.random.fold_in(key, jax.lax.axis_index(axis))
        kaug, kdrop = jax.random.split(key)
        images = d["x"][idx]
        if recipe.augment:
            images = augment(kaug, images)
        batch = {"image": normalise(images, d["mean"], d["std"]), "label": d["y"][idx]}
        params_opt = {"params": state["params"], "opt": state["opt"]}
        new, metrics = train_step(params_opt, batch, kdrop, axis)
        return {**new, "sums": state["sums"] + jnp.stack([metrics["loss"], metrics["accuracy"]])}

    def shuffle(key):
        """This epoch's order: steps x batch_size indices (the remainder is dropped)."""
        perm = jax.random.permutation(jax.random.fold_in(key, 0), n_train)
        return perm[: steps * recipe.batch_size].reshape(steps, recipe.batch_size)

    def evaluate(params, d, j, part, axis):
        images = part(jax.lax.dynamic_slice_in_dim(d["x"], j * eval_b, eval_b))
        labels = part(jax.lax.dynamic_slice_in_dim(d["y"], j * eval_b, eval_b))
        sums = eval_step(params, {"image": normalise(images, d["mean"], d["std"]), "label": labels})
        return sums if axis is None else jax.lax.psum(sums, axis)

    n_eval = -(-len(data.x_test) // eval_b)
    program = execution.Program(init, step, shuffle, evaluate, steps, eval_b, n_eval)
    return execution.compile_runner(
        program,
        data,
        num_seeds,
        execution.mesh(devices, recipe.batch_size, eval_b),
        batched=num_seeds > 1 and execution.seeds_vmapped(settings),
    )


# ---------------------------------------------------------------- the run
@dataclasses.dataclass
class Run:
    """K seeds of one planned network in training: what the loop reads and updates.

    history: each epoch's metrics, as `epochs` yields them; status/error: per
    seed ("failed" once its loss stops being finite).
    """

    plan: arch.Plan
    recipe: Recipe
    seeds: list[int]
    model: models.SqueezeNet  # one seed's model, as a deployment runs it (its latency)
    runner: execution.Runner
    dev: dict
    state: dict
    loop_key: jax.Array
    first_epoch: int
    t_start: float
    status: list[str]
    error: list[str]
    history: list[dict] = dataclasses.field(default_factory=list)
    train_s: float = 0.0

    def states(self) -> list[dict]:
        """Each seed's params and optimiser state, on the host (to checkpoint them)."""
        host = jax.device_get({"params": self.state["params"], "opt": self.state["opt"]})
        return _unstack(host, len(self.seeds))

    def params(self) -> list:
        """Each seed's parameters."""
        return _unstack(self.state["params"], len(self.seeds))

    @property
    def device(self) -> str:
        """The JAX device kind it runs on (cpu, or the GPU's name)."""
        return jax.devices()[0].device_kind

    def wall_s(self) -> float:
        """Seconds since the run started compiling."""
        return time.perf_counter() - self.t_start

    def final(self) -> dict:
        """The last epoch's metrics; a run resumed after its last epoch is tested here."""
        if self.history:
            return self.history[-1]
        loss, top1, top5 = execution.evaluate(self.runner, self.state["params"], self.dev)
        nan = np.full(len(self.seeds), np.nan)
        epoch = self.first_epoch - 1
        return _metrics(epoch, {"loss": nan, "accuracy": nan}, (loss, top1, top5), 0.0, self)


def start(
    plan: arch.Plan,
    recipe: Recipe,
    data: Dataset,
    seeds: Sequence[int] = (0,),
    settings: Settings | None = None,
    trainable: Trainable | None = None,
    resume: tuple[int, list[dict]] | None = None,
) -> Run:
    """Compile the run of len(seeds) copies of a planned network; initialise or resume it.

    resume = (epochs done, each seed's {"params", "opt": its leaves}) goes on
    from there. Epoch keys depend on the epoch alone, so a resumed run computes
    what the uninterrupted one would have. trainable: what to train instead of
    freshly initialised parameters (one seed; see Trainable).
    """
    t_start = time.perf_counter()
    seeds = list(seeds)
    k = len(seeds)
    # built once, here: a program of k seeds may compute convolutions another
    # way than one seed does (lowering.choose); latency measures one seed's
    one, many = lowering.choose(settings), lowering.choose(settings, many_seeds=k > 1)
    model, one_seed = models.build(plan, many), models.build(plan, one)
    runner = make_runner(model, recipe, data, num_seeds=k, settings=settings, trainable=trainable)
    init_key, loop_key = execution.split_keys(execution.seed_keys(seeds), 2)
    state = runner.init(init_key)
    first = 1
    if resume is not None:
        state, first = execution.restored(state, resume[1], runner), resume[0] + 1
    dev = execution.device_data(data, runner)
    status, error = ["ok"] * k, [""] * k
    return Run(plan, recipe, seeds, one_seed, runner, dev, state, loop_key, first, t_start,
               status, error)  # fmt: skip


def epochs(run: Run, on_step: Callable[[int, int], None] | None = None) -> Iterator[dict]:
    """Train the run's remaining epochs; yield each one's metrics (per-seed arrays).

    Stops early, without yielding, at the epoch where every seed's loss stops
    being finite. A caller that stops iterating stops the run (an early stop).
    """
    k = len(run.seeds)
    for ep in range(run.first_epoch, run.recipe.epochs + 1):
        t0 = time.perf_counter()
        key = execution.fold_keys(run.loop_key, ep)
        run.state, train = execution.run_epoch(run.runner, run.state, run.dev, key, on_step)
        epoch_s = time.perf_counter() - t0
        run.train_s += epoch_s
        bad = ~np.isfinite(train["loss"])
        for i in np.flatnonzero(bad):
            if run.status[i] == "ok":
                run.status[i] = "failed"
                run.error[i] = f"loss became {train['loss'][i]} in epoch {ep}"
        nan = np.full(k, np.nan)
        if bad.all():  # nothing left to train: stop instead of wasting the budget
            run.history.append(_metrics(ep, train, (nan, nan, nan), epoch_s, run))
            return
        test = execution.evaluate(run.runner, run.state["params"], run.dev)
        run.history.append(_metrics(ep, train, test, epoch_s, run))
        yield run.history[-1]


def train_and_evaluate(
    plan: arch.Plan,
    recipe: Recipe,
    data: Dataset,
    seeds: Sequence[int] = (0,),
    settings: Settings | None = None,
    trainable: Trainable | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Run:
    """Train len(seeds) copies of a planned network to the end; the run (state, history)."""
    run = start(plan, recipe, data, seeds, settings, trainable)
    for _ in epochs(run, on_step):
        pass
    return run


def measure_costs(run: Run) -> rows.Measured:
    """The trained network's measured costs: int8-weight top-1 per seed (one more test
    pass) and seed 0's forward latency on one device (rows.Measured names them)."""
    int8 = measure.quantize_int8(run.state["params"], int(len(run.seeds) > 1))
    lat = measure.latency(run.model, run.params()[0], run.dev["test"]["x"].shape[1:])
    return rows.Measured(
        int8_accuracy=execution.evaluate(run.runner, int8, run.dev)[1],
        latency_b1_ms=lat["b1_ms"],
        latency_b128_ms=lat["b128_ms"],
    )


def _metrics(epoch: int, train: dict, test: tuple, epoch_s: float, run: Run) -> dict:
    loss, top1, top5 = test
    return {
        "epoch": epoch,
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "test_loss": loss,
        "accuracy": top1,
        "top5": top5,
        "epoch_s": epoch_s,
        "status": list(run.status),
    }


def _unstack(tree, k: int) -> list:
    if k == 1:
        return [tree]
    return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(k)]
