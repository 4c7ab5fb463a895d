"""How much of each layer to prune: a measured sensitivity scan, and the rates it implies.

Deep Compression prunes each layer by its own sensitivity (Han et al., NIPS
2015, Fig. 6): a layer whose accuracy holds when most of it is pruned gives up
more of its weights. Here that is three steps:

1. `scan`: each convolution alone is pruned at a grid of rates (the smallest
   magnitudes first, the rest of the network untouched, no retraining) and the
   network's top-1 measured on held-back *training* images, so the test set
   never chooses a rate.
2. `allocate`: starting from nothing pruned, the step that removes the most
   weights per point of scanned accuracy lost is taken, one layer one grid
   step at a time, until the network's overall sparsity reaches the target.
   Large layers that barely notice pruning go furthest; a small sensitive one
   (conv1, the classifier) stays nearly whole.
3. `rounds`: the rates are reached in steps, pruning and retraining in turn
   (iterative pruning, Han et al. 2015 Sec. 3.3), on the gradual schedule of
   Zhu & Gupta (2017): round j of n prunes to rate * (1 - (1 - j/n)^3).

experiments/deep_compression/README.md shows a scan and the rates chosen from it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from explorer.sqzfile import flat, unflat

GRID = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
SCAN_IMAGES = 2000  # held-back training images the scan measures on


def held_back(data, images: int = SCAN_IMAGES):
    """The data set with its last `images` training images as the images measured on."""
    return dataclasses.replace(data, x_test=data.x_train[-images:], y_test=data.y_train[-images:])


def scan(params, top1, grid=GRID, images: int = SCAN_IMAGES, on_layer=None) -> dict:
    """{'base': top-1 unpruned, 'images': n, 'grid': rates, 'layers': {path: layer}}.

    A layer is {'size': its weights, 'top1': {str(rate): top-1 with it pruned so}}
    (string keys, as JSON has them). top1(params): accuracy on the `images`
    held-back training images (`held_back`; the test set stays unseen).
    on_layer(path, {rate: top-1}) is called after each layer.
    """
    base = top1(params)
    layers = {}
    for path, kernel in flat(params).items():
        if not path.endswith("/kernel"):
            continue
        accs = {}
        for rate in grid:
            masks = prune_masks(params, {path: rate})
            accs[str(float(rate))] = top1(apply_masks(params, masks))
        layers[path] = {"size": int(kernel.size), "top1": accs}
        if on_layer:
            on_layer(path, accs)
    return {"base": base, "images": images, "grid": [float(r) for r in grid], "layers": layers}


def prune_masks(params, sparsity: float | dict[str, float]) -> dict:
    """Per kernel, a mask keeping all but the round(rate * size) smallest magnitudes.

    sparsity: one rate for every kernel, or a rate per kernel path (those not
    named keep every weight; explorer.pruning chooses them). Exactly that many
    are pruned (ties broken by position), so a layer has its rate to the
    weight; biases are never pruned (a tree of the params' structure, True
    where a weight is kept; biases all True).
    """
    rate = sparsity.get if isinstance(sparsity, dict) else (lambda _p, _d: sparsity)
    masks = {}
    for path, a in flat(params).items():
        keep = np.ones(a.shape, bool)
        r = rate(path, 0.0) if path.endswith("/kernel") else 0.0
        if r > 0:
            drop = int(round(r * a.size))
            order = np.argsort(np.abs(a).ravel(), kind="stable")
            keep.ravel()[order[:drop]] = False
        masks[path] = keep
    return unflat(masks)


def apply_masks(params, masks):
    """The parameters with their pruned weights (mask False) set to zero, as float32."""
    leaves, keep = flat(params), flat(masks)
    return unflat(
        {p: np.where(keep[p], a, np.float32(0)).astype(np.float32) for p, a in leaves.items()}
    )


def allocate(scanned: dict, target: float, slack: float = 0.001) -> dict[str, float]:
    """Per-layer rates from a scan whose weighted mean is at least `target`.

    Greedy: each step raises one layer to its next grid rate, the one with the
    most weights pruned per point of top-1 lost (slack keeps a free step from
    dividing by zero and prefers the larger of two free steps). A layer's loss
    at a rate is the largest measured at that rate or below, so it only grows.
    """
    base = scanned["base"]
    grid = [0.0, *scanned["grid"]]
    sizes = {p: v["size"] for p, v in scanned["layers"].items()}
    loss = {}
    for p, v in scanned["layers"].items():
        accs = [base] + [v["top1"][str(r)] for r in grid[1:]]
        loss[p] = np.maximum.accumulate(np.maximum(base - np.asarray(accs), 0.0))
    total = sum(sizes.values())
    step = {p: 0 for p in sizes}
    while sum(grid[step[p]] * sizes[p] for p in sizes) < target * total:
        options = [
            (sizes[p] * (grid[s + 1] - grid[s]) / (loss[p][s + 1] - loss[p][s] + slack), p)
            for p, s in step.items()
            if s + 1 < len(grid)
        ]
        if not options:
            raise ValueError(f"no layer can be pruned further to reach sparsity {target}")
        step[max(options)[1]] += 1
    return {p: grid[s] for p, s in step.items()}


def uniform(params, rate: float) -> dict[str, float]:
    """The same rate for every convolution."""
    return {p: rate for p in flat(params) if p.endswith("/kernel")}


def rounds(rates: dict[str, float], n: int) -> list[dict[str, float]]:
    """The rates of each of n prune-retrain rounds: gradual (cubic), the last exactly `rates`."""
    return [{p: r * (1 - (1 - j / n) ** 3) for p, r in rates.items()} for j in range(1, n + 1)]


def overall(rates: dict[str, float], params) -> float:
    """The fraction of all kernel weights these rates prune."""
    sizes = {p: a.size for p, a in flat(params).items() if p.endswith("/kernel")}
    return sum(rates.get(p, 0.0) * n for p, n in sizes.items()) / sum(sizes.values())
