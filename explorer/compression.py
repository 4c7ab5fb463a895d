"""Deep Compression of a trained network (Han et al., ICLR 2016), and its file.

Three stages, each starting from the last one's parameters:

1. **prune**: in every convolution, the `sparsity` fraction of its kernel with
   the smallest magnitudes is set to zero (or each layer's own rate, chosen by
   explorer.pruning from a sensitivity scan), and the network retrained under
   that mask: the optimiser's updates are masked, so a pruned weight stays
   exactly 0. With `rounds` > 1 the rates are reached in steps, each pruned
   and retrained in turn.
2. **share**: each layer's kept weights are clustered by k-means
   (scikit-learn) into 2^bits centroids, initialised linearly over the
   weights' range as the paper found best; a weight becomes the index of its
   centroid. The centroids (and the biases) are then fine-tuned by their
   gradients, the sum of the gradients of the weights that share them.
3. **code**: each layer's indices and the positions of the kept weights (the
   gaps between them, the paper's relative indices) are Huffman-coded, with
   canonical codes (bitarray), and written with the codebooks, the biases and
   the code tables to one file (explorer.sqzfile); its size on disk is the
   `bytes_compressed` column, and `explorer evaluate` measures the top-1 of
   the parameters `read` decodes from it, so size and accuracy are of the
   same bytes.

bits = 0 keeps the kept weights as float32 (pruning and coding only); sparsity
= 0 keeps every weight and stores no positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from explorer import architecture as arch
from explorer import pruning, sqzfile
from explorer.recipe import Compression, Recipe
from explorer.sqzfile import flat, unflat


# ---------------------------------------------------------------- the tree's layers
def kernels(params) -> dict[str, np.ndarray]:
    """Every convolution kernel of a parameter tree, by its path ('fire2/squeeze/kernel')."""
    return {p: a for p, a in flat(params).items() if p.endswith("/kernel")}


# ---------------------------------------------------------------- 1. prune
def masked(masks) -> Callable:
    """An optimiser wrapper whose updates are zero where the mask prunes (optax)."""
    import jax
    import jax.numpy as jnp
    import optax

    def wrap(tx):
        keep = jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), masks)
        return optax.chain(tx, optax.stateless(lambda u, _p: jax.tree.map(jnp.multiply, u, keep)))

    return wrap


# ---------------------------------------------------------------- 2. share
@dataclasses.dataclass
class Shared:
    """Shared weights: per kernel a codebook and each weight's index (-1: pruned)."""

    codebooks: dict[str, np.ndarray]  # path -> float32 (k,)
    indices: dict[str, np.ndarray]  # path -> int16, the kernel's shape; -1 where pruned
    biases: dict[str, np.ndarray]  # path -> float32

    def params(self, codebooks=None, biases=None) -> dict:
        """The parameter tree these stand for (NumPy; codebooks/biases: others of theirs)."""
        codebooks = self.codebooks if codebooks is None else codebooks
        biases = self.biases if biases is None else biases
        leaves = {
            p: _gather(np.asarray(codebooks[p], np.float32), i) for p, i in self.indices.items()
        }
        leaves.update({p: np.asarray(b, np.float32) for p, b in biases.items()})
        return unflat(leaves)

    @classmethod
    def dense(cls, params) -> Shared:
        """Pruned float32 weights as a 'codebook' of their kept values, in order (bits 0)."""
        codebooks, indices, biases = {}, {}, {}
        for p, a in flat(params).items():
            a = np.asarray(a, np.float32)
            if not p.endswith("/kernel"):
                biases[p] = a
                continue
            idx = np.full(a.shape, -1, np.int64)
            nz = a != 0
            idx[nz] = np.arange(int(nz.sum()))
            codebooks[p], indices[p] = a[nz], idx
        return cls(codebooks, indices, biases)


def _gather(codebook: np.ndarray, idx: np.ndarray) -> np.ndarray:
    ext = np.append(codebook, np.float32(0.0))  # index -1 reads the 0 at the end
    return ext[idx]


def share(params, masks, bits: int) -> Shared:
    """k-means per kernel over its kept weights: 2^bits centroids, linear initialisation."""
    from sklearn.cluster import KMeans

    leaves, keep = flat(params), flat(masks)
    codebooks, indices, biases = {}, {}, {}
    for path, a in leaves.items():
        if not path.endswith("/kernel"):
            biases[path] = np.asarray(a, np.float32)
            continue
        kept = np.asarray(a, np.float32)[keep[path]]
        idx = np.full(a.shape, -1, np.int16)
        k = min(2**bits, len(np.unique(kept))) if len(kept) else 1
        if len(kept) == 0:
            centroids = np.zeros(1, np.float32)
        elif k == len(np.unique(kept)):  # as many centroids as values: each its own
            centroids = np.unique(kept).astype(np.float32)
            idx[keep[path]] = np.searchsorted(centroids, kept)
        else:
            init = np.linspace(kept.min(), kept.max(), k).reshape(-1, 1)
            km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=100, random_state=0)
            labels = km.fit_predict(kept.reshape(-1, 1).astype(np.float64))
            centroids = km.cluster_centers_.ravel().astype(np.float32)
            idx[keep[path]] = labels
        codebooks[path], indices[path] = centroids, idx
    return Shared(codebooks, indices, biases)


def shared_trainable(shared: Shared):
    """A Trainable of the codebooks and biases: the network's kernels gathered from them."""
    import jax.numpy as jnp

    from explorer.train import Trainable

    idx = {p: np.where(i < 0, len(shared.codebooks[p]), i).astype(np.int32)
           for p, i in shared.indices.items()}  # fmt: skip

    def to_params(t):
        leaves = {p: jnp.append(t["codebooks"][p], 0.0)[idx[p]] for p in idx}
        leaves.update(t["biases"])
        return unflat(leaves)

    return Trainable(
        {"codebooks": dict(shared.codebooks), "biases": dict(shared.biases)}, to_params
    )


# ---------------------------------------------------------------- the whole pipeline
@dataclasses.dataclass
class Result:
    """What `compress` measured: accuracy after each stage, and the file."""

    path: Path
    bytes_compressed: int
    bytes_f32: int
    accuracy_before: float
    accuracy_pruned: float  # after the (first round's) pruning, before its retraining
    accuracy_retrained: float
    accuracy_shared: float  # after k-means, before fine-tuning the centroids
    compressed_accuracy: float  # of the parameters decoded from the file
    sparsity: float  # measured over every kernel
    layer_sparsity: dict[str, float]  # the rate each kernel was pruned to
    layout: sqzfile.Layout
    wall_s: float

    @property
    def ratio(self) -> float:
        return self.bytes_f32 / self.bytes_compressed

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"], d["ratio"] = str(self.path), self.ratio
        return d


def compress(
    spec: arch.ArchSpec,
    recipe: Recipe,
    data,
    params,
    how: Compression,
    out: str | Path,
    meta: dict,
    seed: int = 0,
    settings=None,
    on_stage: Callable[[str, float], None] | None = None,
    scanned: dict | None = None,
) -> Result:
    """Prune, retrain, share, fine-tune and code a trained network; write `out`.

    recipe: the one it trained with (its optimiser, at `how.learning_rate_scale`
    of its rate, without warm-up); data: the data set it trained on. Reports
    each stage's test top-1 to on_stage(stage, accuracy). scanned: a sensitivity
    scan of these params (explorer.pruning.scan) for `how.per_layer`; measured
    here when None.
    """
    import time

    from explorer import complexity
    from explorer.train import Trainable

    t0 = time.perf_counter()
    plan = arch.plan(spec)
    note = on_stage or (lambda stage, acc: None)
    params = _to_numpy(params)
    top1 = evaluator(spec, recipe, data, settings)
    before = top1(params)
    note("trained", before)
    rates = layer_rates(spec, recipe, data, params, how, scanned, settings)
    tuned = _tuning(recipe, how)
    pruned, masks = params, pruning.prune_masks(params, {})
    acc_pruned = acc_retrained = before
    steps = pruning.rounds(rates, how.rounds) if how.sparsity else []
    for j, step in enumerate(steps, 1):
        tag = f" {j}/{len(steps)}" if len(steps) > 1 else ""
        masks = pruning.prune_masks(pruned, step)  # what an earlier round pruned is 0: pruned again
        pruned = pruning.apply_masks(pruned, masks)
        acc_retrained = top1(pruned)
        acc_pruned = acc_pruned if j > 1 else acc_retrained
        note("pruned" + tag, acc_retrained)
        if how.retrain_epochs:
            retrain = tuned(how.retrain_epochs, recipe.weight_decay)
            got, acc_retrained = _trained(
                plan, retrain, data, seed, settings, Trainable(pruned, wrap=masked(masks))
            )
            pruned = pruning.apply_masks(got, masks)
            note("retrained" + tag, acc_retrained)
    shared, acc_shared = None, acc_retrained
    if how.bits:
        shared = share(pruned, masks, how.bits)
        acc_shared = top1(shared.params())
        note("shared", acc_shared)
        if how.finetune_epochs:
            finetune = tuned(how.finetune_epochs, 0.0)
            tuned_tree, _ = _trained(plan, finetune, data, seed, settings, shared_trainable(shared))
            shared = Shared(
                {p: np.asarray(v, np.float32) for p, v in tuned_tree["codebooks"].items()},
                shared.indices,
                {p: np.asarray(v, np.float32) for p, v in tuned_tree["biases"].items()},
            )
    meta = {**meta, "compression": how.model_dump()}
    stored = shared or Shared.dense(pruned)
    layout = sqzfile.write(
        out, stored.codebooks, stored.indices, stored.biases,
        bits=how.bits, sparse=how.sparsity > 0, meta=meta,
    )  # fmt: skip
    decoded = sqzfile.read(out, spec)
    acc = top1(decoded.params)
    note("compressed", acc)
    k = kernels(decoded.params)
    zeros = sum(int((a == 0).sum()) for a in k.values()) / sum(a.size for a in k.values())
    return Result(
        Path(out),
        layout.total,
        complexity.bytes_f32(plan),
        before,
        acc_pruned,
        acc_retrained,
        acc_shared,
        acc,
        zeros,
        rates,
        layout,
        time.perf_counter() - t0,
    )


def layer_rates(spec, recipe, data, params, how: Compression, scanned=None, settings=None):
    """Each kernel's final sparsity: how.sparsity everywhere, or allocated from a scan."""
    if not how.per_layer or not how.sparsity:
        return pruning.uniform(params, how.sparsity)
    if scanned is None:
        scanned = sensitivity(spec, recipe, data, params, settings)
    return pruning.allocate(scanned, how.sparsity)


def sensitivity(spec, recipe, data, params, settings=None, on_layer=None, **grid) -> dict:
    """pruning.scan of a network on its held-back training images (grid: grid=, images=)."""
    images = grid.pop("images", pruning.SCAN_IMAGES)
    top1 = evaluator(spec, recipe, pruning.held_back(data, images), settings)
    return pruning.scan(params, top1, on_layer=on_layer, images=images, **grid)


def _trained(plan, recipe: Recipe, data, seed: int, settings, trainable):
    """(parameters, test top-1) after training `trainable` for the recipe's epochs."""
    from explorer import train

    run = train.train_and_evaluate(plan, recipe, data, (seed,), settings, trainable)
    if run.status[0] != "ok":
        raise train.TrainingFailed(run.error[0])
    return _to_numpy(run.params()[0]), float(run.final()["accuracy"][0])


def _tuning(recipe: Recipe, how: Compression) -> Callable[[int, float], Recipe]:
    def tuned(epochs: int, weight_decay: float) -> Recipe:
        return Recipe(
            **{
                **recipe.model_dump(),
                "epochs": epochs,
                "learning_rate": recipe.learning_rate * how.learning_rate_scale,
                "warmup_epochs": 0.0,
                "weight_decay": weight_decay,
            }
        )

    return tuned


def _to_numpy(tree):
    import jax

    return jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(tree))


def evaluate(
    spec: arch.ArchSpec, recipe: Recipe, data, params, settings=None, mean=None, std=None
) -> float:
    """Test top-1 of a parameter tree (one device, the recipe's eval batch).

    mean, std: the normalisation it trained with (default the data set's own).
    """
    return evaluator(spec, recipe, data, settings, mean, std)(params)


def evaluator(
    spec: arch.ArchSpec, recipe: Recipe, data, settings=None, mean=None, std=None
) -> Callable[[dict], float]:
    """`evaluate` of many parameter trees of one network, compiled once."""
    import jax
    import jax.numpy as jnp

    from explorer import models
    from explorer.train import make_eval_step, normalise

    model = models.build(spec, settings=settings)
    step = make_eval_step(model)
    b = min(recipe.eval_batch_size, len(data.x_test))
    mean = jnp.asarray(data.mean if mean is None else mean, jnp.float32)
    std = jnp.asarray(data.std if std is None else std, jnp.float32)

    @jax.jit
    def run(p, x, y):
        return step(p, {"image": normalise(x, mean, std), "label": y})[1]

    batches = []
    for i in range(0, len(data.x_test), b):
        x, y = data.x_test[i : i + b], np.asarray(data.y_test[i : i + b], np.int32)
        if len(x) < b:  # pad the last batch; padding labels are -1 (not counted)
            pad = b - len(x)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.full(pad, -1, np.int32)])
        batches.append((x, y))

    def top1(params) -> float:
        p = jax.tree.map(jnp.asarray, params)
        return sum(float(run(p, x, y)) for x, y in batches) / len(data.x_test)

    return top1
