"""Checkpoints (orbax) and ONNX export (jax2onnx, ONNX Runtime) of a narrow net trained on
real Fashion-MNIST images: `explorer train --save`, then `export`, then `evaluate`."""

import dataclasses
import os
import re
import shutil
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explorer import architecture as arch
from explorer import (
    checkpoints,
    cli,
    complexity,
    deploy,
    export,
    export_int8,
    measure,
    models,
    train,
)
from explorer import data as datasets
from explorer.recipe import Recipe

# SqueezeNet 1.1's layout at an eighth of its widths (as tests/test_train.py's SMALL), without
# dropout: one epoch on 2,048 images then reaches about 50% (chance: 10%).
SMALL = arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1).replace(
    conv1_filters=16, base_e=16, incr_e=16, dropout=0.0
)
TRAIN = [
    "train",
    *("--set", "conv1_filters=16", "--set", "base_e=16", "--set", "incr_e=16"),
    *("--set", "dropout=0", "--set", "optimizer=adam", "--set", "learning_rate=0.002"),
    *("--set", "weight_decay=0", "--set", "schedule=constant", "--set", "warmup_epochs=0"),
    *("--set", "batch_size=16", "--epochs", "1"),
    *("--train-size", "2048", "--test-size", "512"),
]
TOP1 = re.compile(r"top-1 (\d+\.\d+)% on 512 fashion_mnist test images \(ONNX Runtime\)")


@pytest.fixture(scope="module")
def fmnist():
    return datasets.load("fashion_mnist", train_size=2048, test_size=512)


def _jax_logits(params, data: datasets.Dataset) -> np.ndarray:
    """The trainer's model (default lowering) on the normalised test images."""
    model = models.build(SMALL)
    x = train.normalise(jnp.asarray(data.x_test), data.mean, data.std)
    return np.asarray(jax.jit(model.apply)({"params": params}, x))


def test_checkpoint_round_trip_is_exact(trained, fmnist, tmp_path):
    params, opt_state, meta = checkpoints.restore(trained["folder"])
    assert opt_state is None and meta["epoch"] == 1 and meta["seed"] == 0
    assert checkpoints.spec_of(meta) == SMALL
    assert meta["dataset"] == "fashion_mnist" and meta["test_size"] == 512
    np.testing.assert_array_equal(np.float32(meta["mean"]), fmnist.mean)
    np.testing.assert_array_equal(np.float32(meta["std"]), fmnist.std)
    assert meta["accuracy"] == trained["record"]["accuracy"]

    # With an optimiser state in the optimiser's own tree (named tuples), at two epochs.
    recipe = Recipe.model_validate_json(meta["recipe"])
    assert recipe.optimizer == "adam" and recipe.batch_size == 16
    tx = train.optimizer(recipe, 128)
    _, opt = jax.jit(tx.update)(params, tx.init(params), params)
    folder = tmp_path / "run"
    for epoch in (2, 3):
        out = checkpoints.save(folder, params, opt, epoch=epoch, meta=meta)
        assert out == folder / f"epoch_{epoch}" and out.is_dir()
    assert checkpoints.latest(folder) == 3 and checkpoints.epochs(folder) == [2, 3]
    p2, o2, m2 = checkpoints.restore(folder)
    assert m2["epoch"] == 3 and m2["recipe"] == meta["recipe"]
    for want, got in ((params, p2), (opt, o2)):
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
            assert isinstance(b, np.ndarray) and b.dtype == np.asarray(a).dtype
            np.testing.assert_array_equal(b, np.asarray(a))
    assert checkpoints.restore(folder, epoch=2)[2]["epoch"] == 2
    with pytest.raises(checkpoints.CheckpointError, match="already holds a checkpoint of epoch 3"):
        checkpoints.save(folder, params, epoch=3, meta=meta)


def test_damaged_checkpoints_are_one_line_errors(trained, tmp_path, capsys):
    def damaged(name):
        copy = tmp_path / name
        shutil.copytree(trained["folder"], copy)
        return copy

    copy = damaged("truncated")
    files = [os.path.join(d, f) for d, _, fs in os.walk(copy) for f in fs]
    biggest = max(files, key=os.path.getsize)
    os.truncate(biggest, os.path.getsize(biggest) // 2)
    with pytest.raises(checkpoints.CheckpointError) as e:
        checkpoints.restore(copy)
    assert str(copy) in str(e.value) and "\n" not in str(e.value)

    copy = damaged("meta")
    (copy / "epoch_1" / "meta" / "metadata").write_text('{"spec": ')
    with pytest.raises(checkpoints.CheckpointError, match="cannot be read"):
        checkpoints.restore(copy)
    with pytest.raises(checkpoints.CheckpointError, match="no such checkpoint folder"):
        checkpoints.restore(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoints.CheckpointError, match="holds no complete checkpoint"):
        checkpoints.restore(tmp_path / "empty")

    capsys.readouterr()
    assert cli.main(["export", str(tmp_path / "truncated"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"explorer: error: {tmp_path / 'truncated'}")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_onnx_logits_equal_jax(trained, fmnist, tmp_path, dtype):
    params, _, meta = checkpoints.restore(trained["folder"])
    path = export.to_onnx(SMALL, params, meta["mean"], meta["std"], tmp_path / "m.onnx", dtype)
    images = fmnist.x_test[:256]
    assert export.verify(path, SMALL, params, meta["mean"], meta["std"], images) <= 1e-4

    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [inp], [out] = s.get_inputs(), s.get_outputs()
    assert inp.name == "images" and inp.shape[1:] == [28, 28, 1] and isinstance(inp.shape[0], str)
    assert inp.type == {"uint8": "tensor(uint8)", "float32": "tensor(float)"}[dtype]
    assert out.name == "logits" and out.type == "tensor(float)" and out.shape[1] == 10
    # The batch is free: 1 image, and 7, give the same logits as the batch of 256.
    want = export.predict(path, images)
    np.testing.assert_allclose(export.predict(path, images[:1]), want[:1], atol=1e-5)
    np.testing.assert_allclose(export.predict(path, images[:7], batch=7), want[:7], atol=1e-5)
    np.testing.assert_allclose(want, _jax_logits(params, fmnist)[:256], atol=1e-4)
    assert export.metadata(path)["mean"] == meta["mean"]


def test_onnx_top1_equals_jax_top1(trained, fmnist, tmp_path):
    params, _, meta = checkpoints.restore(trained["folder"])
    path = export.to_onnx(SMALL, params, meta["mean"], meta["std"], tmp_path / "m.onnx")
    ort_top1 = export.ort_top1(path, fmnist)
    jax_top1 = float(np.mean(_jax_logits(params, fmnist).argmax(-1) == fmnist.y_test))
    assert ort_top1 > 0.25  # it learned something: chance is 0.10
    assert abs(ort_top1 - jax_top1) <= 0.002
    assert abs(ort_top1 - trained["record"]["accuracy"]) <= 0.002  # the trainer's own figure
    assert export.ort_latency_b1_ms(path, repeats=5) > 0


def test_train_save_export_evaluate_through_the_cli(trained, tmp_path, capsys):
    out = tmp_path / "small.onnx"
    capsys.readouterr()
    # The --save folder of `train`: its one checkpoint folder (seed-0) is found.
    argv = ["export", str(trained["folder"].parent), "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    diff = float(re.search(r"max \|ONNX Runtime - JAX\| on 256 test images: (\S+)", text)[1])
    assert diff <= 1e-4 and out.is_file()
    exported = float(TOP1.search(text)[1])
    assert abs(exported - 100 * trained["record"]["accuracy"]) <= 0.2

    assert cli.main(["evaluate", str(out), "--test-size", "512"]) == 0
    text = capsys.readouterr().out
    assert float(TOP1.search(text)[1]) == exported
    assert re.search(r"batch-1 latency \d+\.\d+ ms", text)

    # A second run into the same --save folder is refused before it trains.
    assert cli.main([*TRAIN, "--save", str(trained["folder"].parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a checkpoint" in err[0]


INT8 = re.compile(r"int8 \(QLinearConv\): top-1 (\d+\.\d+)% on 512 fashion_mnist test images")


def test_int8_export_is_the_rows_int8_network_with_integer_convolutions(trained, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "small_int8.onnx"
    capsys.readouterr()
    assert cli.main(["export", str(trained["folder"]), "--int8", "--out", str(out)]) == 0
    int8_top1 = float(INT8.search(capsys.readouterr().out)[1])
    ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    # every convolution an integer one; the pools one uint8 MaxPool each (not jax2onnx's
    # slices); the fires concatenate uint8 as it is: one QuantizeLinear (the input) and one
    # DequantizeLinear (before the average) in all
    assert ops["QLinearConv"] == 26 and "Conv" not in ops
    assert ops["MaxPool"] == 5 and not {"Slice", "Pad", "Max"} & set(ops)
    assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 1
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node]
    assert fused.count("QLinearConv") == 26  # ONNX Runtime runs them as they are
    # its weights are the row's int8 weights: per output channel, symmetric, max|w| / 127
    # (the first convolution's stored as uint8 about zero point 128: docs/deploy.md)
    file_weights = _int8_weights(out)
    assert [w.dtype for w, _ in file_weights] == [np.uint8] + [np.int8] * 25
    params, _, _ = checkpoints.restore(trained["folder"])
    kernels = [w for w in jax.tree.leaves(measure.quantize_int8(params)) if w.ndim == 4]
    assert len(kernels) == 26
    for w in kernels:
        oihw = np.transpose(np.asarray(w), (3, 2, 0, 1))
        assert any(f.shape == oihw.shape and np.allclose(f, oihw, rtol=1e-6, atol=1e-7)
                   for _, f in file_weights)  # fmt: skip
    # activations are quantised too (uint8, calibrated): the row's int8 accuracy (weights
    # only) give or take a few of the 512 images (3 here; 0.04 points on all 10,000 test
    # images: docs/deploy.md); the first convolution as int8 lost 2.3 points (12 images)
    assert abs(int8_top1 - 100 * trained["record"]["int8_accuracy"]) <= 1.5
    # the graph's own bytes beyond bytes_int8 (weights, a scale and a bias per channel)
    plan = arch.plan(SMALL)
    assert 0 < out.stat().st_size - complexity.bytes_int8(plan) < 6_000
    # what ONNX Runtime runs is what `evaluate` measures; its metadata says how it was made
    assert cli.main(["evaluate", str(out), "--test-size", "512"]) == 0
    assert float(TOP1.search(capsys.readouterr().out)[1]) == int8_top1
    meta = export.metadata(out)
    assert meta["int8"]["calibration_images"] == deploy.CALIBRATION
    assert meta["spec"] == SMALL.as_dict() and "recipe" not in meta
    # a graph with nothing to quantise is one line and exit 2
    bare = tmp_path / "bare.onnx"
    x = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, ["N", 28, 28, 1])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 28, 28, 1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Cast", ["images"], ["logits"], to=1)],
                                   "bare", [x], [y])  # fmt: skip
    onnx.save(onnx.helper.make_model(graph), str(bare))
    with pytest.raises(export.ExportError, match="nothing in the graph could be quantised"):
        export_int8.quantize_int8(bare, tmp_path / "bare8.onnx", np.zeros((4, 28, 28, 1), np.uint8))


def _int8_weights(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """An int8 file's convolution kernels (OIHW) as stored, and dequantised as ONNX Runtime
    does: (w - zero point) x scale, per output channel."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    out = []
    for n in g.node:
        if n.op_type == "QLinearConv":
            w, scale, zero = (init[x] for x in n.input[3:6])
            channel = (-1, 1, 1, 1)
            f = (w.astype(np.float32) - zero.reshape(channel)) * scale.reshape(channel)
            out.append((w, f))
    return out


def test_int8_cuts_change_nothing_it_computes(trained, fmnist, tmp_path, monkeypatch):
    """The file without what `_slim` cuts (shared zero points, default attributes,
    duplicated initializers, long names) computes the same logits to the bit."""
    params, _, meta = checkpoints.restore(trained["folder"])
    src = export.to_onnx(SMALL, params, meta["mean"], meta["std"], tmp_path / "m.onnx")
    calibration = fmnist.x_train[:512]
    slim = export_int8.quantize_int8(src, tmp_path / "slim.onnx", calibration)
    monkeypatch.setattr(export_int8, "_slim", lambda proto: None)
    full = export_int8.quantize_int8(src, tmp_path / "full.onnx", calibration)
    assert slim.stat().st_size < full.stat().st_size - 1_000
    images = fmnist.x_test[:256]
    np.testing.assert_array_equal(export.predict(slim, images), export.predict(full, images))


@pytest.fixture(scope="module")
def float_onnx(trained, tmp_path_factory):
    """The float32 file a sweep's trial writes for its latency (export.to_onnx)."""
    params, _, meta = checkpoints.restore(trained["folder"])
    path = tmp_path_factory.mktemp("trial") / "model.onnx"
    return export.to_onnx(arch.plan(SMALL), params, meta["mean"], meta["std"], path)


def test_int8_figures_of_a_trials_float_file(trained, fmnist, float_onnx):
    figures = deploy.int8_figures(float_onnx, arch.plan(SMALL), fmnist)
    out = float_onnx.with_name("model.int8.onnx")  # beside the float file
    assert set(figures) == {"bytes_int8_onnx", "int8_onnx_accuracy", "latency_ort_int8_b1_ms"}
    assert figures["bytes_int8_onnx"] == out.stat().st_size
    assert figures["int8_onnx_accuracy"] == export.ort_top1(out, fmnist)
    assert abs(figures["int8_onnx_accuracy"] - trained["record"]["int8_accuracy"]) <= 0.015
    assert figures["latency_ort_int8_b1_ms"] > 0
    assert export.metadata(out)["int8"]["calibration_images"] == deploy.CALIBRATION


def test_int8_figures_failures_are_export_errors(fmnist, float_onnx, tmp_path):
    with pytest.raises(export.ExportError, match="not this plan's network"):
        deploy.int8_figures(float_onnx, SMALL.replace(base_e=32), fmnist)
    no_images = dataclasses.replace(fmnist, x_train=fmnist.x_train[:0])
    with pytest.raises(export.ExportError, match="no training images"):
        deploy.int8_figures(float_onnx, SMALL, no_images)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(export.ExportError, match="not an ONNX model"):
        deploy.int8_figures(bad, SMALL, fmnist)
    wrong = dataclasses.replace(fmnist, x_test=fmnist.x_test[:, :14])  # images of another size
    with pytest.raises(export.ExportError, match="takes images of shape"):
        deploy.int8_figures(float_onnx, SMALL, wrong, tmp_path / "w.onnx")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("content", [b"not an onnx file \x00\xff" * 100, b"", None])
def test_a_file_that_is_not_onnx_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"explorer: error: {path}:"), err
    with pytest.raises(export.ExportError, match=re.escape(str(path))):
        export.ort_latency_b1_ms(path)
