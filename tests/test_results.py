"""The results table: its schema covers every field a row gets, files and their errors."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from explorer import architecture as arch
from explorer import models, results, rows, train
from explorer import space as spaces
from explorer.recipe import Compression, Recipe

from .conftest import SPACES

# Filled in by the sweep's trainable and row writer (explorer.trial, explorer.sweep_rows).
ADDED_BY_THE_SWEEP = {
    "host",
    "finished_at",
    "versions",
    "attempts",
    "checkpoint",
    "latency_ort_b1_ms",  # ONNX Runtime's figures, when the space asks for them
    "bytes_int8_onnx",
    "int8_onnx_accuracy",
    "latency_ort_int8_b1_ms",
    "bytes_compressed",  # Deep Compression's outcome, and its file
    "compressed_accuracy",
    "compressed_file",
}


def test_schema_covers_every_field_a_row_gets(fmnist_small):
    space = spaces.load(SPACES / "quickstart.yaml")
    point = spaces.points(space)[0]
    point = dataclasses.replace(point, compress=Compression(sparsity=0.5, bits=4))
    base = rows.base_row(space, point, 0)
    recipe = Recipe(epochs=1, batch_size=64, warmup_epochs=0.0)
    tiny = point.arch.replace(conv1_filters=8, base_e=8, incr_e=8)
    run = train.train_and_evaluate(arch.plan(tiny), recipe, fmnist_small, [0])
    [record] = rows.trained(run, fmnist_small)
    produced = set(base) | set(record) | ADDED_BY_THE_SWEEP
    assert produced == set(results.SCHEMA), (
        f"not in SCHEMA: {produced - set(results.SCHEMA)}; "
        f"never produced: {set(results.SCHEMA) - produced}"
    )
    assert set(results.DIRECTIONS) <= set(results.SCHEMA)
    assert set(results.OBJECTIVES) <= set(results.DIRECTIONS)


def test_rows_round_trip_through_parquet_and_csv(tmp_path):
    row = {"trial_id": "s-p0000-s0", "status": "ok", "accuracy": 0.5, "params": 10, "seed": 0}
    results.write_row(tmp_path, row)
    results.write_row(tmp_path, {**row, "trial_id": "s-p0001-s0", "accuracy": 0.75, "params": 20})
    assert not list((tmp_path / "rows").glob("*.tmp"))  # written atomically
    table = results.load(tmp_path)
    assert list(table.columns) == results.COLUMNS
    assert table["accuracy"].tolist() == [0.5, 0.75] and str(table["params"].dtype) == "Int64"
    table.to_csv(tmp_path / "t.csv", index=False)
    back = results.load(tmp_path / "t.csv")
    pd.testing.assert_series_equal(back["accuracy"], table["accuracy"])
    assert back["trial_id"].tolist() == table["trial_id"].tolist()


def test_unknown_columns_and_non_tables_are_errors(tmp_path):
    with pytest.raises(results.ResultsError, match=r"not in results.SCHEMA: \['colour'\]"):
        results.conform(pd.DataFrame({"trial_id": ["a"], "colour": ["red"]}))
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(results.ResultsError, match="not a results table"):
        results.load(tmp_path / "x.csv")
    (tmp_path / "x.txt").write_text("a table?")
    with pytest.raises(results.ResultsError, match="expected a sweep folder"):
        results.load(tmp_path / "x.txt")
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(results.ResultsError, match="bad.parquet: not a readable Parquet"):
        results.load(tmp_path)


def _one_update(recipe: Recipe, params, grads):
    tx = train.optimizer(recipe, steps_per_epoch=10)
    updates, _ = tx.update(grads, tx.init(params), params)
    return np.asarray(optax.apply_updates(params, updates))


@pytest.mark.parametrize(
    "optimizer, momentum, nesterov, wd",
    [
        ("sgd", 0.0, False, 0.0),
        ("sgd", 0.9, False, 0.1),
        ("sgd", 0.9, True, 0.1),
        ("adam", 0.9, False, 0.0),
        ("adam", 0.9, False, 0.1),
        ("adamw", 0.9, False, 0.1),
    ],
)
def test_each_optimiser_branch_takes_the_textbook_first_step(optimizer, momentum, nesterov, wd):
    lr = 0.1
    recipe = Recipe(
        optimizer=optimizer,
        learning_rate=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=wd,
        schedule="constant",
        warmup_epochs=0.0,
    )
    w = jnp.array([1.0, -2.0, 3.0])
    g = jnp.array([0.5, 0.5, -1.0])
    got = _one_update(recipe, w, g)
    if optimizer == "sgd":  # L2 added to the gradient (as PyTorch); nesterov looks ahead
        d = g + wd * w
        step = d * (1 + momentum) if nesterov else d
        want = w - lr * step
    elif optimizer == "adam":  # first Adam step: lr * sign of the (L2-added) gradient
        want = w - lr * jnp.sign(g + wd * w)
    else:  # adamw: decoupled decay, lr * wd * w, beside the sign step
        want = w - lr * jnp.sign(g) - lr * wd * w
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def fmnist_small():
    from explorer import data as datasets

    return datasets.load("fashion_mnist", train_size=128, test_size=64)


def test_a_base_row_knows_the_complexity_before_training():
    space = spaces.load(SPACES / "quickstart.yaml")
    for p in spaces.points(space):
        r = rows.base_row(space, p, 1)
        assert r["trial_id"] == rows.trial_id(space.name, p.index, 1)
        assert rows.point_id(r["trial_id"]) == f"{space.name}-p{p.index:04d}"
        built = models.param_shapes(models.build(arch.plan(p.arch)))
        assert r["params"] == models.count_params(built) > 0


def test_the_time_of_every_attempt_in_a_curve_adds_up():
    # three attempts: epochs 1-2, then 3-4 resumed from a checkpoint, then 5 (its
    # clock restarts each time; the file is sorted by epoch, not by attempt)
    points = [
        {"epoch": 4, "wall_s": 9.0},
        {"epoch": 1, "wall_s": 5.0},
        {"epoch": 2, "wall_s": 8.0},
        {"epoch": 3, "wall_s": 6.0},
        {"epoch": 5, "wall_s": 2.5},
    ]
    assert results.attempt_seconds(points) == 8.0 + 9.0 + 2.5
    assert results.attempt_seconds(points[1:3]) == 8.0  # one attempt
    assert results.attempt_seconds([]) == 0.0
    assert results.attempt_seconds([{"epoch": 1, "wall_s": float("nan")}]) == 0.0


def test_the_driver_finishes_a_row_in_rows_alone():
    space = spaces.load(SPACES / "quickstart.yaml")
    proposed = rows.base_row(space, spaces.points(space)[0], 1) | {"point": -1, "status": "ok"}
    r = rows.finished(proposed, space.name, 7, attempts=0, wall_s=3.0, checkpoint="ckpt/seed1")
    assert (r["point"], r["trial_id"]) == (7, rows.trial_id(space.name, 7, 1))
    assert (r["attempts"], r["wall_s"], r["checkpoint"]) == (1, 3.0, "ckpt/seed1")
    assert {"finished_at", "versions"} <= set(r) and proposed["point"] == -1  # a copy
    # a retried trial counts every attempt's time, those under earlier drivers too
    again = rows.finished(r | {"wall_s": 1.0}, space.name, 9, 2, 5.0, earlier_s=4.0)
    assert (again["point"], again["attempts"], again["wall_s"]) == (7, 2, 9.0)
    failed = rows.finished(r | {"status": "failed"}, space.name, 7, 1, 2.0, checkpoint="c")
    assert failed["checkpoint"] == "ckpt/seed1"  # a failed row keeps no new checkpoint
    assert "compressed_file" not in failed
    kept = rows.finished(r, space.name, 7, 1, 2.0, compressed_file="f.sqz")
    assert (kept["compressed_file"], kept["wall_s"]) == ("f.sqz", 3.0)
    (said,) = rows.ended([r], "stopped", "paused at epoch 1")
    assert (said["status"], said["error"]) == ("stopped", "paused at epoch 1") and "error" not in r
