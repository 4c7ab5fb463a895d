"""Per-layer pruning (explorer.pruning): each layer pruned to its own rate, rates allocated
from a sensitivity scan (the insensitive large layers go furthest), reached in gradual
rounds, and `explorer compress --per-layer --rounds` on a network trained on real
Fashion-MNIST images, its scan written once and read again."""

import dataclasses
import json

import numpy as np
import pytest

from explorer import cli, compression, pruning, sqzfile


def test_each_layer_is_pruned_to_its_own_rate(scanned):
    params = scanned[1][3]
    paths = [p for p in sqzfile.flat(params) if p.endswith("/kernel")]
    rates = {p: r for p, r in zip(paths, np.linspace(0.1, 0.9, len(paths)), strict=True)}
    rates.pop(paths[0])  # a kernel not named keeps every weight
    keep = sqzfile.flat(pruning.prune_masks(params, rates))
    for path, a in sqzfile.flat(params).items():
        dropped = int((~keep[path]).sum())
        assert dropped == round(rates.get(path, 0.0) * a.size), path
    assert pruning.overall(rates, params) == pytest.approx(
        sum(r * sqzfile.flat(params)[p].size for p, r in rates.items())
        / sum(sqzfile.flat(params)[p].size for p in paths)
    )


def _scan(base: float, layers: dict[str, tuple[int, float]]) -> dict:
    """A scan whose layer p of n weights loses `slope` points of top-1 per unit of rate."""
    grid = list(pruning.GRID)
    return {
        "base": base,
        "grid": grid,
        "layers": {
            p: {"size": n, "top1": {str(r): base - slope * r for r in grid}}
            for p, (n, slope) in layers.items()
        },
    }


def test_the_insensitive_large_layer_is_pruned_furthest():
    scanned = _scan(
        0.9,
        {
            "conv1/kernel": (500, 0.5),  # small and sensitive
            "fire2/expand/kernel": (50_000, 0.002),  # large, barely notices
            "classifier/kernel": (5_000, 0.2),
        },
    )
    rates = pruning.allocate(scanned, 0.8)
    sizes = {p: v["size"] for p, v in scanned["layers"].items()}
    total = sum(sizes.values())
    assert sum(rates[p] * n for p, n in sizes.items()) >= 0.8 * total
    assert rates["fire2/expand/kernel"] > rates["classifier/kernel"] >= rates["conv1/kernel"]
    assert rates["conv1/kernel"] == 0.0
    # each rate is one of the scanned ones
    assert set(rates.values()) <= {0.0, *pruning.GRID}


def test_a_target_no_rate_can_reach_is_an_error():
    scanned = _scan(0.9, {"a/kernel": (100, 0.1)})
    with pytest.raises(ValueError, match="sparsity 0.99"):
        pruning.allocate(scanned, 0.99)


def test_rounds_rise_gradually_to_the_rates():
    rates = {"a/kernel": 0.8, "b/kernel": 0.5}
    steps = pruning.rounds(rates, 3)
    assert steps[-1] == pytest.approx(rates)
    for p in rates:
        seq = [s[p] for s in steps]
        assert all(x < y for x, y in zip(seq, seq[1:], strict=False))
        # the cubic schedule prunes most in the first round
        assert seq[0] > rates[p] / 2
    assert pruning.rounds(rates, 1) == [rates]


@pytest.fixture(scope="module")
def scanned(trained):
    """A two-rate scan of the trained network, as `explorer compress --per-layer` writes it."""
    from explorer import checkpoints
    from explorer import data as datasets
    from explorer.recipe import Recipe

    net, _, meta = checkpoints.restore(trained["folder"])
    data = datasets.load(meta["dataset"], train_size=meta["train_size"], test_size=256)
    recipe = Recipe.model_validate_json(meta["recipe"])
    spec = checkpoints.spec_of(meta)
    got = compression.sensitivity(spec, recipe, data, net, grid=(0.5, 0.95), images=512)
    return {**got, "source": str(trained["folder"])}, (spec, recipe, data, net)


def test_the_scan_prunes_one_layer_at_a_time_on_training_images(scanned):
    got, (spec, recipe, data, net) = scanned
    held = dataclasses.replace(data, x_test=data.x_train[-512:], y_test=data.y_train[-512:])
    assert got["base"] == compression.evaluate(spec, recipe, held, net)
    layer = max(got["layers"], key=lambda p: got["layers"][p]["size"])
    alone = pruning.apply_masks(net, pruning.prune_masks(net, {layer: 0.95}))
    assert got["layers"][layer]["top1"]["0.95"] == compression.evaluate(spec, recipe, held, alone)
    assert set(got["layers"]) == {p for p in sqzfile.flat(net) if p.endswith("/kernel")}


def test_per_layer_rounds_through_the_cli(trained, scanned, tmp_path, capsys):
    out, record, scan = tmp_path / "small.sqz", tmp_path / "c.json", tmp_path / "scan.json"
    scan.write_text(json.dumps(scanned[0]))
    argv = ["compress", str(trained["folder"]), "--sparsity", "0.6", "--bits", "4"]
    argv += ["--per-layer", "--rounds", "2", "--retrain-epochs", "1", "--scan", str(scan)]
    assert cli.main([*argv, "--out", str(out), "--json", str(record)]) == 0
    done = json.loads(record.read_text())
    # the rates are the scan's allocation (read, not measured again), the file has them
    assert done["layer_sparsity"] == pruning.allocate(scanned[0], 0.6)
    decoded = sqzfile.read(out)
    for path, a in sqzfile.flat(decoded.params).items():
        if path.endswith("/kernel"):
            assert int((a == 0).sum()) >= round(done["layer_sparsity"][path] * a.size), path
    assert done["sparsity"] >= 0.6
    assert len(set(done["layer_sparsity"].values())) > 1  # not one rate for all
    err = capsys.readouterr().err
    assert "pruned 1/2" in err and "retrained 2/2" in err and "scan " not in err
