"""`explorer export` of a compressed file (`.sqz`) and of a sweep's whole front: the ONNX
file of a decoded network predicts as the decoded network does in JAX, its int8 file
lands near it, `--front` writes one file per front row and a table; bad inputs are one
line and exit 2. The network is tests/test_export.py's SMALL, trained on real
Fashion-MNIST images (the `trained` fixture)."""

import csv
import re
import shutil
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest

from explorer import (
    checkpoints,
    cli,
    compression,
    deploy,
    export,
    models,
    pruning,
    results,
    sqzfile,
)
from explorer import data as datasets
from tests.test_export import SMALL

FLOAT = re.compile(
    r"top-1 (\d+\.\d+)% on 512 fashion_mnist test images \(ONNX Runtime\); "
    r"the decoded network in JAX \(float32\): (\d+\.\d+)%"
)
INT8 = re.compile(
    r"int8 \(QLinearConv\): top-1 (\d+\.\d+)% on 512 fashion_mnist test images \(ONNX Runtime\); "
    r"the decoded network in JAX \(float32\): (\d+\.\d+)%"
)


def _write_sqz(path, params, meta, sparsity: float, bits: int, pad_to: int | None = None):
    """The network's weights pruned and shared as `explorer compress` stores them (without
    its retraining); pad_to: codebooks padded to this many entries (a file of more bits)."""
    masks = pruning.prune_masks(params, sparsity)
    shared = compression.share(pruning.apply_masks(params, masks), masks, bits)
    codebooks = shared.codebooks
    if pad_to:
        codebooks = {p: np.pad(np.asarray(c), (0, pad_to - len(c))) for p, c in codebooks.items()}
    keep = ("spec", "dataset", "mean", "std", "seed", "epoch", "recipe", "train_size", "test_size")
    info = {k: meta[k] for k in keep if meta.get(k) is not None}
    info["compression"] = {"sparsity": sparsity, "bits": bits}
    sqzfile.write(path, codebooks, shared.indices, shared.biases, bits=pad_to.bit_length() - 1
                  if pad_to else bits, sparse=sparsity > 0, meta=info)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def sqz(trained, tmp_path_factory):
    """SMALL's trained weights, 33% pruned, 6-bit codebooks (a file of a few KB)."""
    params, _, meta = checkpoints.restore(trained["folder"])
    return _write_sqz(tmp_path_factory.mktemp("sqz") / "small.sqz", params, meta, 0.33, 6)


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_sqz_to_onnx_predicts_as_the_decoded_network(sqz, tmp_path, capsys):
    out = tmp_path / "small.onnx"
    capsys.readouterr()
    assert cli.main(["export", str(sqz), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"from {sqz} (" in text and "sparsity 0.33, 6 bits" in text
    diff = float(re.search(r"max \|ONNX Runtime - JAX\| on 256 test images: (\S+)", text)[1])
    assert diff <= export.TOLERANCE
    ort, jax_top1 = map(float, FLOAT.search(text).groups())
    assert ort > 30 and abs(ort - jax_top1) <= 0.2  # 1 of 512 images at most, ties aside
    # what `evaluate` says of the .sqz (JAX) and of the ONNX file (ONNX Runtime)
    assert cli.main(["evaluate", str(sqz)]) == 0
    assert float(re.search(r"top-1 (\d+\.\d+)%", capsys.readouterr().out)[1]) == jax_top1
    assert cli.main(["evaluate", str(out), "--test-size", "512"]) == 0
    assert float(re.search(r"top-1 (\d+\.\d+)%", capsys.readouterr().out)[1]) == ort
    # the same predictions as the decoded network in JAX on the checked images
    decoded = sqzfile.read(sqz)
    data = datasets.load("fashion_mnist", train_size=1, test_size=deploy.CHECKED_IMAGES)
    x = (jnp.asarray(data.x_test, jnp.float32) - np.float32(decoded.meta["mean"])) / np.float32(
        decoded.meta["std"]
    )
    want = np.asarray(models.build(SMALL).apply({"params": decoded.params}, x))
    got = export.predict(out, data.x_test)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    meta = export.metadata(out)
    assert meta["compression"] == {"sparsity": 0.33, "bits": 6}
    assert meta["compressed_file"] == {"name": "small.sqz", "bytes": decoded.size}


def test_sqz_to_int8_onnx_lands_near_the_decoded_network(sqz, tmp_path, capsys):
    out = tmp_path / "small-int8.onnx"
    capsys.readouterr()
    assert cli.main(["export", str(sqz), "--int8", "--out", str(out)]) == 0
    int8, jax_top1 = map(float, INT8.search(capsys.readouterr().out).groups())
    # weights and activations in int8: a few of the 512 images (1 here; docs/deploy.md)
    assert abs(int8 - jax_top1) <= 1.5
    assert sum(n.op_type == "QLinearConv" for n in _nodes(out)) == 26
    assert export.metadata(out)["int8"]["calibration_images"] == deploy.CALIBRATION


def _nodes(path):
    import onnx

    return list(onnx.load(str(path)).graph.node)


def _damaged(sqz, tmp_path, how: str):
    blob = sqz.read_bytes()
    if how == "truncated":
        blob = blob[: len(blob) // 2]
    else:  # another format version, its checksum right
        body = blob[:4] + bytes([sqzfile.FORMAT + 1]) + blob[5:-4]
        blob = body + struct.pack("<I", zlib.crc32(body))
    path = tmp_path / f"{how}.sqz"
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("command", ["export", "evaluate"])
@pytest.mark.parametrize(
    "how,message",
    [("truncated", "corrupt or truncated"), ("version", "format 2; this program reads format 1")],
)
def test_a_damaged_or_foreign_sqz_is_one_line(sqz, tmp_path, capsys, command, how, message):
    path = _damaged(sqz, tmp_path, how)
    out = ["--out", str(tmp_path / "x.onnx")] if command == "export" else []
    argv = [command, str(path), *out]
    capsys.readouterr()
    assert cli.main(argv) == 2
    line = _one_error(capsys)
    assert line.startswith(f"explorer: error: {path}:") and message in line, line
    assert not (tmp_path / "x.onnx").exists()


def test_int8_of_a_codebook_wider_than_int8_is_one_line(trained, tmp_path, capsys):
    params, _, meta = checkpoints.restore(trained["folder"])
    path = _write_sqz(tmp_path / "wide.sqz", params, meta, 0.5, 4, pad_to=512)  # 9 bits
    assert sqzfile.read(path).meta["bits"] == 9
    capsys.readouterr()
    assert cli.main(["export", str(path), "--int8", "--out", str(tmp_path / "w.onnx")]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"explorer: error: {path}:"), line
    assert "at most 8 bits" in line and "has 9 bits" in line
    assert not (tmp_path / "w.onnx").exists()


# ---------------------------------------------------------------- --front
# (trial, base_e, params, accuracy, kept weights, status): a and b are on the params/accuracy
# front (a as the mean of its two seeds, a-s1 without weights), c is dominated, d failed.
SWEEP = [
    ("t-a-s0", 16, 100, 0.50, True, "ok"),
    ("t-a-s1", 16, 100, 0.52, False, "ok"),
    ("t-b-s0", 32, 200, 0.60, True, "ok"),
    ("t-c-s0", 24, 300, 0.40, True, "ok"),
    ("t-d-s0", 48, None, None, False, "failed"),
]


@pytest.fixture
def sweep(trained, tmp_path):
    """A sweep folder whose kept rows' checkpoints are copies of the trained network."""
    folder = tmp_path / "sweep"
    for trial, base_e, params, acc, kept, status in SWEEP:
        ckpt = ""
        if kept:
            ckpt = f"checkpoints/{trial}"
            shutil.copytree(trained["folder"], folder / ckpt)
        row = {"trial_id": trial, "status": status, "base_e": base_e, "params": params,
               "accuracy": acc, "int8_accuracy": None if acc is None else acc - 0.01,
               "dataset": "fashion_mnist", "seed": int(trial[-1]), "checkpoint": ckpt}  # fmt: skip
        results.write_row(folder, row)
    return folder


def test_front_writes_a_file_per_front_row_and_a_table(sweep, tmp_path, capsys):
    out = tmp_path / "front"
    capsys.readouterr()
    assert cli.main(["export", str(sweep), "--front", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.onnx")) == ["t-a-s0.onnx", "t-b-s0.onnx"]
    with (out / "front.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["trial_id"] for r in table] == ["t-a-s0", "t-a-s1", "t-b-s0"]  # fewest params first
    a0, a1, b0 = table
    assert a1["file"] == "" and a1["error"] == "no kept weights (search.keep_weights)"
    for r, acc in ((a0, 0.50), (b0, 0.60)):
        assert int(r["bytes"]) == (out / f"{r['trial_id']}.onnx").stat().st_size
        assert float(r["accuracy"]) == acc and float(r["latency_b1_ms"]) > 0
        assert 0.3 < float(r["top1_ort"]) <= 1  # the trained network: about 50%
    assert float(a0["top1_ort"]) == float(b0["top1_ort"])  # the same weights in both
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("t-")}
    assert "no kept weights" in lines["t-a-s1"] and "t-c-s0" not in lines
    assert "t-a-s0.onnx" in lines["t-a-s0"] and "50.00%" in lines["t-a-s0"]
    assert export.metadata(out / "t-b-s0.onnx")["trial_id"] == "t-b-s0"


def test_front_int8_writes_int8_files_beside_the_rows_int8_accuracy(sweep, tmp_path, capsys):
    # the front of this sweep's own objectives (its space.yaml): int8 accuracy and params
    (sweep / "space.yaml").write_text(
        "name: t\nbase: squeezenet1_1\nobjectives: {int8_accuracy: max, params: min}\n"
    )
    out = tmp_path / "front8"
    capsys.readouterr()
    assert cli.main(["export", str(sweep / "rows"), "--front", "--int8", "--out", str(out)]) == 2
    assert "expects a sweep folder" in _one_error(capsys)  # rows/ is not the sweep
    shutil.rmtree(sweep / "checkpoints" / "t-a-s0")  # one file is enough here
    results.write_row(sweep, {**results.load(sweep).iloc[0].to_dict(), "checkpoint": ""})
    assert cli.main(["export", str(sweep), "--front", "--int8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert [p.name for p in out.glob("*.onnx")] == ["t-b-s0.onnx"]
    assert any(n.op_type == "QLinearConv" for n in _nodes(out / "t-b-s0.onnx"))
    with (out / "front.csv").open() as f:
        table = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert sorted(table) == ["t-a-s0", "t-a-s1", "t-b-s0"]
    assert float(table["t-b-s0"]["int8_accuracy"]) == pytest.approx(0.59)
    assert "row's int8_accuracy" in text


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--trial", "t-a-s0"], "--trial: --front exports every row on the front"),
        (["--best", "accuracy"], "--best: --front exports every row on the front"),
    ],
)
def test_front_with_a_pick_is_one_line(sweep, capsys, extra, message):
    capsys.readouterr()
    assert cli.main(["export", str(sweep), "--front", *extra]) == 2
    assert message in _one_error(capsys)


def test_front_of_a_checkpoint_or_a_sweep_without_kept_front_is_one_line(
    trained, sweep, tmp_path, capsys
):
    capsys.readouterr()
    assert cli.main(["export", str(trained["folder"]), "--front"]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"explorer: error: {trained['folder']}:") and "expects a sweep" in line
    for trial in ("t-a-s0", "t-b-s0"):
        row = results.load(sweep).set_index("trial_id").loc[trial]
        results.write_row(sweep, {**row.to_dict(), "trial_id": trial, "checkpoint": ""})
    assert cli.main(["export", str(sweep), "--front", "--out", str(tmp_path / "f")]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"explorer: error: {sweep}:") and "none of the 3 rows" in line


def test_an_sqz_with_a_row_pick_is_one_line(sqz, capsys):
    capsys.readouterr()
    assert cli.main(["export", str(sqz), "--trial", "x"]) == 2
    assert "--trial: picks a row of a sweep folder" in _one_error(capsys)


INT8_SPACE = """
name: int8
base: squeezenet1_1
dataset: {name: fashion_mnist, train_size: 2048, test_size: 512}
space: {conv1_filters: 16, base_e: {values: [16, 32]}, incr_e: 16, dropout: 0.0}
train: {epochs: 1, batch_size: 16, optimizer: adam, learning_rate: 0.002, weight_decay: 0,
        schedule: constant, warmup_epochs: 0}
search: {method: grid, seeds: 1, onnx_int8: true, keep_weights: all}
objectives: {accuracy: max, params: min}
resources: {cpus_per_trial: 1}
"""


def test_a_sweeps_int8_onnx_columns_are_the_front_files_figures(write_space, tmp_path, capsys):
    """With search.onnx_int8 each row measures its int8 ONNX file (bytes on disk, top-1 and
    latency in ONNX Runtime); `export --front --int8` writes the same files again."""
    folder = tmp_path / "sweep"
    assert cli.main(["sweep", str(write_space(INT8_SPACE)), "--output", str(folder)]) == 0
    table = results.load(folder)
    assert table["status"].eq("ok").all() and len(table) == 2
    for _, row in table.iterrows():
        assert row["accuracy"] > 0.4, row["trial_id"]  # it learned (chance is 0.1)
        # one number per file: its int8 ONNX top-1 near the int8-weight top-1 of JAX
        # (activations quantised too; 512 test images, so a point is 5 images)
        assert abs(row["int8_onnx_accuracy"] - row["int8_accuracy"]) <= 0.015, row["trial_id"]
        # the graph's own bytes beyond bytes_int8: a scale and a zero point per channel
        assert 0 < row["bytes_int8_onnx"] - row["bytes_int8"] < 6_000
        assert row["latency_ort_int8_b1_ms"] > 0 and row["latency_ort_b1_ms"] > 0
    out = tmp_path / "front8"
    capsys.readouterr()
    assert cli.main(["export", str(folder), "--front", "--int8", "--out", str(out)]) == 0
    with (out / "front.csv").open() as f:
        front = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert front, "an empty front"
    rows = table.set_index("trial_id")
    for trial, r in front.items():
        # the same graph; the exported file's metadata also names its trial and data set
        assert 0 <= int(r["bytes"]) - rows.loc[trial, "bytes_int8_onnx"] < 300
        assert float(r["top1_ort"]) == pytest.approx(rows.loc[trial, "int8_onnx_accuracy"])
        assert int(float(r["bytes_int8"])) == rows.loc[trial, "bytes_int8"]
    assert "x bytes_int8" in capsys.readouterr().out
