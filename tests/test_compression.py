"""Deep Compression (explorer.compression): pruning that holds through retraining, weight
sharing that decodes exactly, Huffman streams whose size is the file's payload, damaged
files as one-line errors, and `explorer compress` then `evaluate` on a network trained on
real Fashion-MNIST images."""

import dataclasses
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explorer import architecture as arch
from explorer import cli, compression, models, pruning, rows, sqzfile, train
from explorer import data as datasets
from explorer import space as spaces
from explorer.recipe import Compression, Recipe
from tests.test_export import SMALL


@pytest.fixture(scope="module")
def fmnist():
    return datasets.load("fashion_mnist", train_size=1024, test_size=512)


@pytest.fixture(scope="module")
def params():
    """SMALL's initial parameters (NumPy): real shapes and a spread of magnitudes."""
    model = models.build(SMALL)
    p = model.init(jax.random.key(3), jnp.zeros(models.input_shape(SMALL, 1)))["params"]
    return jax.tree.map(np.asarray, p)


def _write(path, shared: compression.Shared, sparsity: float, bits: int) -> sqzfile.Layout:
    """The file of SMALL's shared (or pruned) weights, as explorer.compression writes it."""
    meta = {"spec": SMALL.as_dict(), "dataset": "fashion_mnist", "mean": [72.9], "std": [90.0]}
    meta["compression"] = {"sparsity": sparsity, "bits": bits}
    return sqzfile.write(
        path, shared.codebooks, shared.indices, shared.biases,
        bits=bits, sparse=sparsity > 0, meta=meta,
    )  # fmt: skip


@pytest.mark.parametrize("sparsity", [0.33, 0.7])
def test_each_layer_has_the_asked_sparsity_smallest_magnitudes_first(params, sparsity):
    masks = pruning.prune_masks(params, sparsity)
    flat, keep = sqzfile.flat(params), sqzfile.flat(masks)
    for path, a in flat.items():
        if not path.endswith("/kernel"):
            assert keep[path].all(), f"{path}: a bias was pruned"
            continue
        dropped = int((~keep[path]).sum())
        assert dropped == round(sparsity * a.size), path
        # every pruned weight is no larger than every kept one
        assert np.abs(a[~keep[path]]).max() <= np.abs(a[keep[path]]).min(), path


def test_pruned_weights_stay_zero_through_retraining(trained, fmnist):
    from explorer import checkpoints

    params, _, meta = checkpoints.restore(trained["folder"])
    recipe = Recipe.model_validate_json(meta["recipe"])
    masks = pruning.prune_masks(params, 0.6)
    pruned = pruning.apply_masks(params, masks)
    acc_pruned = compression.evaluate(SMALL, recipe, fmnist, pruned)
    run = train.train_and_evaluate(
        arch.plan(SMALL),
        recipe,
        fmnist,
        (0,),
        trainable=train.Trainable(pruned, wrap=compression.masked(masks)),
    )
    # retraining under the mask wins back some of what pruning lost
    acc = float(run.final()["accuracy"][0])
    assert run.status == ["ok"] and acc > acc_pruned + 0.02, (acc, acc_pruned)
    after, keep = sqzfile.flat(jax.device_get(run.params()[0])), sqzfile.flat(masks)
    for path, a in compression.kernels(after).items():
        assert (np.asarray(a)[~keep[path]] == 0).all(), f"{path}: a pruned weight moved"
        assert (np.asarray(a)[keep[path]] != sqzfile.flat(pruned)[path][keep[path]]).any()


@pytest.mark.parametrize("sparsity,bits", [(0.5, 4), (0.0, 3), (0.33, 0), (0.0, 0)])
def test_the_file_decodes_to_exactly_the_shared_weights(params, tmp_path, sparsity, bits):
    masks = pruning.prune_masks(params, sparsity)
    pruned = pruning.apply_masks(params, masks)
    shared = compression.share(pruned, masks, bits) if bits else None
    path = tmp_path / "net.sqz"
    layout = _write(path, shared or compression.Shared.dense(pruned), sparsity, bits)
    decoded = sqzfile.read(path)
    want = sqzfile.flat(shared.params() if shared else pruned)
    got = sqzfile.flat(decoded.params)
    assert sorted(got) == sorted(want)
    for p in want:
        assert got[p].dtype == np.float32 and np.array_equal(got[p], want[p]), p
    if bits:  # at most 2^bits distinct values per kernel, besides the pruned zeros
        for p, a in compression.kernels(decoded.params).items():
            assert len(np.unique(a[sqzfile.flat(masks)[p]])) <= 2**bits, p
    assert path.stat().st_size == layout.total == decoded.size


@pytest.mark.parametrize("bits", [0, 4])
def test_a_wholly_pruned_layer_decodes_to_zeros(params, tmp_path, bits):
    paths = [p for p in sqzfile.flat(params) if p.endswith("/kernel")]
    masks = pruning.prune_masks(params, {paths[1]: 1.0, paths[2]: 0.5})
    pruned = pruning.apply_masks(params, masks)
    shared = compression.share(pruned, masks, bits) if bits else compression.Shared.dense(pruned)
    _write(tmp_path / "net.sqz", shared, 0.5, bits)
    got = sqzfile.flat(sqzfile.read(tmp_path / "net.sqz").params)
    assert not got[paths[1]].any()
    assert np.array_equal(got[paths[2]] != 0, sqzfile.flat(masks)[paths[2]])


def test_huffman_coded_size_is_the_files_payload(params, tmp_path):
    masks = pruning.prune_masks(params, 0.6)
    shared = compression.share(pruning.apply_masks(params, masks), masks, 5)
    layout = _write(tmp_path / "net.sqz", shared, 0.6, 5)
    # each stream's length, counted independently: frequency x code length, whole bytes
    streams = [i[i >= 0] for i in shared.indices.values()]
    gaps = np.concatenate([sqzfile.positions(i) for i in shared.indices.values()])
    expected = sum(math.ceil(sqzfile.coded_bits(s) / 8) for s in [*streams, gaps])
    assert layout.payload == expected == sqzfile.read(tmp_path / "net.sqz").payload
    # Huffman's length lies within a bit per symbol of the stream's entropy
    for s in [*streams, gaps]:
        _, counts = np.unique(s, return_counts=True)
        prob = counts / counts.sum()
        entropy = float(-(counts * np.log2(prob)).sum())
        assert entropy - 1e-6 <= sqzfile.coded_bits(s) <= entropy + len(s)


def test_the_estimate_before_training_is_near_the_file(params, tmp_path):
    from explorer import architecture as arch
    from explorer import complexity

    masks = pruning.prune_masks(params, 0.5)
    shared = compression.share(pruning.apply_masks(params, masks), masks, 4)
    size = _write(tmp_path / "net.sqz", shared, 0.5, 4).total
    estimate = complexity.bytes_compressed_estimate(arch.plan(SMALL), 0.5, 4)
    assert 0.8 * size <= estimate <= 1.3 * size, (estimate, size)
    # what the Pareto-aware scheduler takes as known before training: never larger
    point = spaces.make_point(spaces.from_dict({"compress": {"sparsity": 0.5, "bits": 4}}), 0, {})
    point = dataclasses.replace(point, arch=SMALL)
    assert rows.bytes_compressed_known(point) <= size


@pytest.fixture(scope="module")
def a_file(params, tmp_path_factory):
    """The bytes of a compressed file (SMALL's initial weights, 50% pruned, 4 bits)."""
    masks = pruning.prune_masks(params, 0.5)
    shared = compression.share(pruning.apply_masks(params, masks), masks, 4)
    path = tmp_path_factory.mktemp("file") / "net.sqz"
    _write(path, shared, 0.5, 4)
    return path.read_bytes()


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: b[: len(b) // 2], "corrupt or truncated"),
        (lambda b: b[:-1], "corrupt or truncated"),
        (lambda b: b[:100] + bytes([b[100] ^ 0x10]) + b[101:], "corrupt or truncated"),
        (lambda b: b"PK\x03\x04" + b[4:], "not a compressed network"),
        (lambda b: b"", "not a compressed network"),
    ],
)
def test_a_damaged_file_is_one_line(a_file, tmp_path, capsys, damage, message):
    path = tmp_path / "net.sqz"
    path.write_bytes(damage(a_file))
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"explorer: error: {path}:"), err
    assert message in err[0]


def test_a_consistent_file_with_a_lying_header_is_refused(a_file, tmp_path):
    """The checksum holds, but the streams say more weights than the layer has."""
    import struct
    import zlib

    path, blob = tmp_path / "net.sqz", a_file
    (n,) = struct.unpack("<I", blob[5:9])
    head = json.loads(zlib.decompress(blob[9 : 9 + n]))
    head["layers"][0]["kept"] = 10**6
    new = zlib.compress(json.dumps(head).encode())
    body = b"SQZC" + struct.pack("<BI", 1, len(new)) + new + blob[9 + n : -4]
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(sqzfile.CompressionError, match="does not fit its network"):
        sqzfile.read(path)


def test_a_header_that_unpacks_to_gigabytes_is_refused_unpacked(a_file, tmp_path):
    """A small header that zlib would inflate a thousandfold stops at sqzfile.MAX_HEADER."""
    import struct
    import zlib

    path, blob = tmp_path / "bomb.sqz", a_file
    (n,) = struct.unpack("<I", blob[5:9])
    bomb = zlib.compress(b" " * (50 * sqzfile.MAX_HEADER), 9)
    assert len(bomb) < sqzfile.MAX_HEADER  # passes the packed length check
    body = b"SQZC" + struct.pack("<BI", 1, len(bomb)) + bomb + blob[9 + n : -4]
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(sqzfile.CompressionError, match="header over 1,048,576 bytes unpacked"):
        sqzfile.read(path)


def test_compress_then_evaluate_through_the_cli(trained, tmp_path, capsys):
    out, record = tmp_path / "small.sqz", tmp_path / "c.json"
    argv = ["compress", str(trained["folder"]), "--sparsity", "0.5", "--bits", "4"]
    argv += ["--out", str(out), "--json", str(record)]
    assert cli.main(argv) == 0
    done = json.loads(record.read_text())
    assert out.stat().st_size == done["bytes_compressed"]
    # 4 bits and a position for half the weights; biases and codebooks weigh on a small net
    assert done["ratio"] > 4
    assert abs(done["sparsity"] - 0.5) < 0.01
    # the network still classifies (it trained to about 50%; chance is 10%)
    assert done["compressed_accuracy"] > 0.3
    capsys.readouterr()
    assert cli.main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    top1 = float(re.search(r"top-1 (\d+\.\d+)% on 512 fashion_mnist", text)[1])
    assert top1 == round(100 * done["compressed_accuracy"], 2)


@pytest.mark.parametrize(
    "flag,value,expected",
    [("--sparsity", "1.5", "less than 1"), ("--bits", "12", "less than or equal to 8")],
)
def test_a_bad_compression_setting_is_one_line(tmp_path, capsys, flag, value, expected):
    assert cli.main(["compress", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"explorer: error: {flag}:") and expected in err[0]


def test_compression_settings_are_checked():
    with pytest.raises(ValueError):
        Compression(sparsity=1.0)
    assert Compression(sparsity=0, bits=6).bits == 6


@pytest.mark.slow
def test_a_sweep_varies_compression_and_keeps_the_files(tiny_space, tmp_path, capsys):
    """Compression settings as metaparameters: each row's file is in the sweep folder, its
    size is bytes_compressed, and decoding it gives compressed_accuracy. The pruned point
    prunes each layer at its own rate, allocated from a scan of the trained network."""
    from explorer import results

    space = tiny_space(
        "squeezed",
        base_e="16",
        extra="compress: {sparsity: {values: [0.0, 0.6]}, per_layer: true, bits: 4}",
        search="{method: grid, seeds: 1, onnx_latency: false}",
    )
    space.write_text(
        space.read_text().replace(
            "objectives: {accuracy: max, params: min}",
            "objectives: {compressed_accuracy: max, bytes_compressed: min}",
        )
    )
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(space), "--output", str(out)]) == 0
    table = results.load(out).set_index("sparsity")
    assert list(table.index) == [0.0, 0.6] and (table["status"] == "ok").all(), table["error"]
    assert (table["bits"] == 4).all() and table["per_layer"].all() and (table["rounds"] == 1).all()
    for sparsity, row in table.iterrows():
        path = out / row["compressed_file"]
        assert path.stat().st_size == row["bytes_compressed"]
        decoded = sqzfile.read(path)
        assert decoded.meta["compression"]["sparsity"] == sparsity
        kernels = [np.asarray(k) for k in jax.tree.leaves(decoded.params) if k.ndim == 4]
        zeros = [float((k == 0).mean()) for k in kernels]
        if sparsity:  # each layer its own rate; all of them together the asked sparsity
            assert max(zeros) - min(zeros) > 0.1, zeros  # uniform pruning: all within 0.03
            pruned = sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels)
            assert pruned == pytest.approx(sparsity, abs=0.02)
        capsys.readouterr()
        assert cli.main(["evaluate", str(path)]) == 0
        top1 = float(re.search(r"top-1 (\d+\.\d+)%", capsys.readouterr().out)[1])
        assert top1 == round(100 * row["compressed_accuracy"], 2)
    # (on a net this small the codebooks, biases and code tables are most of the file)
    assert table.loc[0.6, "bytes_compressed"] < table.loc[0.0, "bytes_compressed"]
    # the report draws the front against compressed bytes
    assert cli.main(["report", str(out)]) == 0
    assert "bytes_compressed" in (out / "report" / "report.md").read_text()
