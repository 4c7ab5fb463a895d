"""Deep Compression of a trained network (Han et al., ICLR 2016), and its file.

Three stages, each starting from the last one's parameters:

1. **prune**: in every convolution, the `sparsity` fraction of its kernel with
   the smallest magnitudes is set to zero, and the network retrained under that
   mask: the optimiser's updates are masked, so a pruned weight stays exactly 0.
2. **share**: each layer's kept weights are clustered by k-means
   (scikit-learn) into 2^bits centroids, initialised linearly over the
   weights' range as the paper found best; a weight becomes the index of its
   centroid. The centroids (and the biases) are then fine-tuned by their
   gradients, the sum of the gradients of the weights that share them.
3. **code**: each layer's indices and the positions of the kept weights (the
   gaps between them, the paper's relative indices) are Huffman-coded, with
   canonical codes (bitarray), and written with the codebooks, the biases and
   the code tables to one file (`write`/`read`); its size on disk is the
   `bytes_compressed` column, and `explorer evaluate` measures the top-1 of
   the parameters `read` decodes from it, so size and accuracy are of the
   same bytes.

bits = 0 keeps the kept weights as float32 (pruning and coding only); sparsity
= 0 keeps every weight and stores no positions.

The file (`.sqz`), little-endian:

    magic "SQZC", format (u8), header length (u32), header (zlib'd JSON:
    the network's spec, data set, normalisation, settings, and per layer its
    path, shape, kept weights, codebook size and stream lengths),
    then per layer: codebook (float32 x 2^bits), index code table, index
    stream; the position code table and stream; the biases (float32);
    and a CRC-32 of everything before it.

A code table is canonical: the count of codes of each length (u16 each, after
a u8 of how many lengths) and the symbols in canonical order (u8 for indices,
u32 for gaps, after a u32 of how many).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from explorer import architecture as arch
from explorer.recipe import Compression, Recipe

MAGIC = b"SQZC"
FORMAT = 1
SUFFIX = ".sqz"
MAX_HEADER = 1 << 20  # a header is a few kilobytes; a larger length is damage
MAX_CODE_LENGTHS = 64


class CompressionError(Exception):
    """A compressed file that is missing, damaged or not this program's; one line."""


# ---------------------------------------------------------------- the tree's layers
def kernels(params) -> dict[str, np.ndarray]:
    """Every convolution kernel of a parameter tree, by its path ('fire2/squeeze/kernel')."""
    return {p: a for p, a in _flat(params).items() if p.endswith("/kernel")}


def _flat(tree, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k in sorted(tree):
        v = tree[k]
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, path + "/"))
        else:
            out[path] = np.asarray(v)
    return out


def _unflat(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for path, a in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = a
    return tree


# ---------------------------------------------------------------- 1. prune
def prune_masks(params, sparsity: float) -> dict:
    """Per kernel, a mask keeping all but the round(sparsity * size) smallest magnitudes.

    Exactly that many are pruned (ties broken by position), so every layer has
    the asked sparsity to the weight; biases are never pruned (a tree of the
    params' structure, True where a weight is kept; biases all True).
    """
    flat = _flat(params)
    masks = {}
    for path, a in flat.items():
        keep = np.ones(a.shape, bool)
        if path.endswith("/kernel") and sparsity > 0:
            n = a.size
            drop = int(round(sparsity * n))
            order = np.argsort(np.abs(a).ravel(), kind="stable")
            keep.ravel()[order[:drop]] = False
        masks[path] = keep
    return _unflat(masks)


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
        flat = {
            p: _gather(np.asarray(codebooks[p], np.float32), i) for p, i in self.indices.items()
        }
        flat.update({p: np.asarray(b, np.float32) for p, b in biases.items()})
        return _unflat(flat)


def _gather(codebook: np.ndarray, idx: np.ndarray) -> np.ndarray:
    ext = np.append(codebook, np.float32(0.0))  # index -1 reads the 0 at the end
    return ext[idx]


def share(params, masks, bits: int) -> Shared:
    """k-means per kernel over its kept weights: 2^bits centroids, linear initialisation."""
    from sklearn.cluster import KMeans

    flat, keep = _flat(params), _flat(masks)
    codebooks, indices, biases = {}, {}, {}
    for path, a in flat.items():
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
        flat = {p: jnp.append(t["codebooks"][p], 0.0)[idx[p]] for p in idx}
        flat.update(t["biases"])
        return _unflat(flat)

    return Trainable(
        {"codebooks": dict(shared.codebooks), "biases": dict(shared.biases)}, to_params
    )


# ---------------------------------------------------------------- 3. code
def huffman(symbols: np.ndarray) -> tuple[dict, list[int], list[int]]:
    """Canonical Huffman code of a stream: (code per symbol, count per length, symbols)."""
    from bitarray.util import canonical_huffman

    values, counts = np.unique(symbols, return_counts=True)
    if len(values) == 0:
        return {}, [], []
    code, count, order = canonical_huffman(
        {int(v): int(c) for v, c in zip(values, counts, strict=True)}
    )
    return code, list(count), list(order)


def coded_bits(symbols: np.ndarray) -> int:
    """Length in bits of a stream's Huffman coding (frequency x code length)."""
    code, _, _ = huffman(symbols)
    values, counts = np.unique(symbols, return_counts=True)
    return int(sum(int(c) * len(code[int(v)]) for v, c in zip(values, counts, strict=True)))


def _encode(symbols: np.ndarray, code: dict) -> tuple[bytes, int]:
    from bitarray import bitarray

    bits = bitarray(endian="big")
    if len(symbols):
        bits.encode(code, symbols.tolist())
    return bits.tobytes(), len(bits)


def positions(idx: np.ndarray) -> np.ndarray:
    """The gaps between kept weights in the flattened kernel (the first from -1)."""
    where = np.flatnonzero(idx.ravel() >= 0)
    return np.diff(where, prepend=-1).astype(np.int64)


# ---------------------------------------------------------------- the file
@dataclasses.dataclass
class Layout:
    """A compressed file's parts, with the sizes `write` gave them (bytes)."""

    header: int
    codebooks: int
    tables: int
    payload: int  # the Huffman-coded streams: indices and positions
    biases: int
    total: int


def write(
    path: str | Path,
    shared: Shared | None,
    dense: dict | None,
    meta: dict,
) -> Layout:
    """Write a compressed network; `shared` (bits > 0) or `dense` (pruned float32 params).

    meta: JSON-able; at least `spec`, `dataset`, `mean`, `std` (as a checkpoint's).
    The file appears whole or not at all (written aside, then renamed).
    """
    if shared is None:  # float32 values: the kept weights themselves are the "codebook"
        flat = _flat(dense)
        codebooks, indices, biases = {}, {}, {}
        for p, a in flat.items():
            if p.endswith("/kernel"):
                a = np.asarray(a, np.float32)
                idx = np.full(a.shape, -1, np.int64)
                nz = a != 0
                idx[nz] = np.arange(int(nz.sum()))
                codebooks[p], indices[p] = a[nz], idx
            else:
                biases[p] = np.asarray(a, np.float32)
        bits = 0
    else:
        codebooks, indices, biases = shared.codebooks, shared.indices, shared.biases
        bits = int(meta.get("compression", {}).get("bits", 8))
    body = bytearray()
    sizes = {"codebooks": 0, "tables": 0, "payload": 0, "biases": 0}
    layers, all_gaps = [], []
    for p, idx in indices.items():
        cb = np.asarray(codebooks[p], "<f4")
        kept = idx.ravel()[idx.ravel() >= 0]
        entry = {"path": p, "shape": list(idx.shape), "kept": int(len(kept)), "k": int(len(cb))}
        body += cb.tobytes()
        sizes["codebooks"] += cb.nbytes
        if bits:  # indices into the codebook, Huffman-coded
            entry["index_bits"] = _coded(kept, "<u1", body, sizes)
        all_gaps.append(positions(idx))
        layers.append(entry)
    sparse = bool(meta.get("compression", {}).get("sparsity", 0) > 0)
    gap_bits = 0
    if sparse:
        gaps = np.concatenate(all_gaps) if all_gaps else np.zeros(0, np.int64)
        gap_bits = _coded(gaps, "<u4", body, sizes)
    bias_paths = list(biases)
    for p in bias_paths:
        b = np.asarray(biases[p], "<f4")
        body += b.tobytes()
        sizes["biases"] += b.nbytes
    header = {
        **meta,
        "bits": bits,
        "sparse": sparse,
        "layers": layers,
        "gap_bits": gap_bits,
        "biases": [[p, int(np.asarray(biases[p]).size)] for p in bias_paths],
    }
    head = zlib.compress(json.dumps(header, separators=(",", ":"), default=_jsonable).encode(), 9)
    blob = MAGIC + struct.pack("<BI", FORMAT, len(head)) + head + bytes(body)
    blob += struct.pack("<I", zlib.crc32(blob))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
    return Layout(len(head) + 9, total=len(blob), **sizes)


def _coded(symbols: np.ndarray, dtype: str, body: bytearray, sizes: dict) -> int:
    """Append a stream's code table and Huffman-coded bits to body; returns its bit length."""
    code, count, order = huffman(symbols)
    table = _table(count, order, dtype)
    stream, nbits = _encode(symbols, code)
    body += table + stream
    sizes["tables"] += len(table)
    sizes["payload"] += len(stream)
    return nbits


def _table(count: list[int], order: list[int], dtype: str) -> bytes:
    if len(count) > MAX_CODE_LENGTHS:
        raise CompressionError(f"a Huffman code longer than {MAX_CODE_LENGTHS} bits")
    return (
        struct.pack("<B", len(count))
        + np.asarray(count, "<u2").tobytes()
        + struct.pack("<I", len(order))
        + np.asarray(order, dtype).tobytes()
    )


@dataclasses.dataclass
class Decoded:
    """What `read` gives back: the parameter tree, the header, and the file's layout."""

    params: dict
    meta: dict
    size: int
    payload: int


def read(path: str | Path, spec: arch.ArchSpec | None = None) -> Decoded:
    """Decode a compressed file back to float32 parameters; CompressionError if damaged.

    The layers must be those of the network its header names (or `spec`'s).
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise CompressionError(f"{path}: cannot be read ({e.strerror or e})") from None
    r = _Reader(blob, path)
    if blob[:4] != MAGIC:
        raise CompressionError(f"{path}: not a compressed network (expected it to start with SQZC)")
    if len(blob) < 13:
        raise CompressionError(f"{path}: truncated ({len(blob)} bytes)")
    (crc,) = struct.unpack("<I", blob[-4:])
    if zlib.crc32(blob[:-4]) != crc:
        raise CompressionError(f"{path}: corrupt or truncated (its checksum does not match)")
    r.pos = 4
    fmt, head_len = struct.unpack("<BI", r.take(5))
    if fmt != FORMAT:
        raise CompressionError(f"{path}: format {fmt}; this program reads format {FORMAT}")
    if head_len > MAX_HEADER:
        raise CompressionError(f"{path}: header of {head_len:,} bytes; corrupt")
    try:
        meta = json.loads(zlib.decompress(r.take(head_len), bufsize=MAX_HEADER))
        bits, sparse = int(meta["bits"]), bool(meta["sparse"])
        layers = [(str(x["path"]), tuple(int(d) for d in x["shape"]), int(x["kept"]), int(x["k"]),
                   int(x.get("index_bits", 0))) for x in meta["layers"]]  # fmt: skip
        bias_list = [(str(p), int(n)) for p, n in meta["biases"]]
        gap_bits = int(meta["gap_bits"])
        spec = spec or spec_of(meta)
    except CompressionError:
        raise
    except Exception as e:
        raise CompressionError(f"{path}: its header is not a compressed network's ({e})") from None
    expected = _shapes(spec)
    names = [p for p, *_ in layers] + [p for p, _ in bias_list]
    if sorted(names) != sorted(expected):
        raise CompressionError(f"{path}: its layers are not those of the network it names")
    flat, payload, layer_idx = {}, 0, {}
    for p, shape, kept, k, index_bits in layers:
        if shape != expected[p] or not 0 <= kept <= math.prod(shape) or not 0 < k <= 2**24:
            raise CompressionError(f"{path}: layer {p} does not fit its network")
        cb = np.frombuffer(r.take(4 * k), "<f4")
        if bits:
            count, order = r.table("<u1")
            stream = r.take((index_bits + 7) // 8)
            payload += len(stream)
            idx = _decode(stream, index_bits, count, order, kept, path, p)
            if len(idx) and idx.max() >= k:
                raise CompressionError(f"{path}: layer {p} indexes past its codebook")
        else:
            if k != kept:
                raise CompressionError(f"{path}: layer {p} does not fit its network")
            idx = np.arange(kept)
        layer_idx[p] = (shape, kept, cb, idx)
    gaps = None
    if sparse:
        count, order = r.table("<u4")
        stream = r.take((gap_bits + 7) // 8)
        payload += len(stream)
        total_kept = sum(v[1] for v in layer_idx.values())
        gaps = _decode(stream, gap_bits, count, order, total_kept, path, "positions")
    at = 0
    for p, (shape, kept, cb, idx) in layer_idx.items():
        w = np.zeros(math.prod(shape), np.float32)
        if sparse:
            g = gaps[at : at + kept]
            at += kept
            where = np.cumsum(g) - 1
            if kept and (g.min() < 1 or where[-1] >= w.size):
                raise CompressionError(f"{path}: layer {p}'s positions fall outside it")
        elif kept != w.size:
            raise CompressionError(f"{path}: layer {p} does not fit its network")
        else:
            where = np.arange(kept)
        w[where] = cb[idx]
        flat[p] = w.reshape(shape)
    for p, n in bias_list:
        if (n,) != expected[p]:
            raise CompressionError(f"{path}: layer {p} does not fit its network")
        flat[p] = np.frombuffer(r.take(4 * n), "<f4").astype(np.float32)
    if r.pos != len(blob) - 4:
        raise CompressionError(f"{path}: {len(blob) - 4 - r.pos} bytes more than its header says")
    return Decoded(_unflat(flat), meta, len(blob), payload)


def _decode(stream: bytes, nbits: int, count, order, n: int, path, what: str) -> np.ndarray:
    from bitarray import bitarray
    from bitarray.util import canonical_decode

    bits = bitarray(endian="big")
    bits.frombytes(stream)
    del bits[nbits:]
    if n == 0:
        return np.zeros(0, np.int64)
    try:
        return np.fromiter(canonical_decode(bits, count, order), np.int64, count=n)
    except Exception as e:  # bitarray: an incomplete code, or a stream cut short
        raise CompressionError(f"{path}: {what}: its code does not decode ({e})") from None


class _Reader:
    def __init__(self, blob: bytes, path: Path):
        self.blob, self.path, self.pos = blob, path, 0

    def take(self, n: int) -> bytes:
        end = len(self.blob) - 4  # the checksum
        if n < 0 or self.pos + n > end:
            raise CompressionError(f"{self.path}: truncated (a part runs past the end)")
        out = self.blob[self.pos : self.pos + n]
        self.pos += n
        return out

    def table(self, dtype: str) -> tuple[list[int], list[int]]:
        (lengths,) = struct.unpack("<B", self.take(1))
        if lengths > MAX_CODE_LENGTHS:
            raise CompressionError(f"{self.path}: a code table with {lengths} lengths; corrupt")
        count = np.frombuffer(self.take(2 * lengths), "<u2").tolist()
        (n,) = struct.unpack("<I", self.take(4))
        if n != sum(count):
            raise CompressionError(f"{self.path}: a code table that does not add up; corrupt")
        size = np.dtype(dtype).itemsize
        return count, np.frombuffer(self.take(size * n), dtype).astype(np.int64).tolist()


def spec_of(meta: dict) -> arch.ArchSpec:
    d = dict(meta["spec"])
    d["pool_after"] = tuple(d["pool_after"])
    spec = arch.ArchSpec(**d)
    arch.check(spec)
    return spec


def _shapes(spec: arch.ArchSpec) -> dict[str, tuple]:
    """Every parameter's shape in the network `spec` describes (no arrays made)."""
    import jax
    import jax.numpy as jnp

    from explorer import models

    model = models.build(spec)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(models.input_shape(spec, 1)))["params"]
    )
    return {p: tuple(a.shape) for p, a in _flat_shapes(shapes).items()}


def _flat_shapes(tree, prefix: str = "") -> dict:
    out = {}
    for k in sorted(tree):
        v = tree[k]
        if isinstance(v, dict):
            out.update(_flat_shapes(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-able")


# ---------------------------------------------------------------- the whole pipeline
@dataclasses.dataclass
class Result:
    """What `compress` measured: accuracy after each stage, and the file."""

    path: Path
    bytes_compressed: int
    bytes_f32: int
    accuracy_before: float
    accuracy_pruned: float  # after pruning, before retraining
    accuracy_retrained: float
    accuracy_shared: float  # after k-means, before fine-tuning the centroids
    compressed_accuracy: float  # of the parameters decoded from the file
    sparsity: float  # measured over every kernel
    layout: Layout
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
) -> Result:
    """Prune, retrain, share, fine-tune and code a trained network; write `out`.

    recipe: the one it trained with (its optimiser, at `how.learning_rate_scale`
    of its rate, without warm-up); data: the data set it trained on. Reports
    each stage's test top-1 to on_stage(stage, accuracy).
    """
    import time

    from explorer import complexity
    from explorer.train import Trainable, train_and_evaluate

    t0 = time.perf_counter()
    note = on_stage or (lambda stage, acc: None)
    params = _to_numpy(params)
    before = evaluate(spec, recipe, data, params, settings)
    note("trained", before)
    masks = prune_masks(params, how.sparsity)
    pruned = _apply(params, masks)
    acc_pruned = evaluate(spec, recipe, data, pruned, settings) if how.sparsity else before
    if how.sparsity:
        note("pruned", acc_pruned)
    tuned = _tuning(recipe, how)
    acc_retrained = acc_pruned
    if how.sparsity and how.retrain_epochs:
        got: list = []
        rec = train_and_evaluate(
            spec,
            tuned(how.retrain_epochs, recipe.weight_decay),
            data,
            (seed,),
            measure_costs=False,
            settings=settings,
            on_end=got.extend,
            trainable=Trainable(pruned, wrap=masked(masks)),
        )
        pruned, acc_retrained = _apply(_to_numpy(got[0]), masks), rec[0]["accuracy"]
        note("retrained", acc_retrained)
    shared, acc_shared = None, acc_retrained
    if how.bits:
        shared = share(pruned, masks, how.bits)
        acc_shared = evaluate(spec, recipe, data, shared.params(), settings)
        note("shared", acc_shared)
        if how.finetune_epochs:
            got = []
            train_and_evaluate(
                spec,
                tuned(how.finetune_epochs, 0.0),
                data,
                (seed,),
                measure_costs=False,
                settings=settings,
                on_end=got.extend,
                trainable=shared_trainable(shared),
            )
            tuned_tree = _to_numpy(got[0])
            shared = Shared(
                {p: np.asarray(v, np.float32) for p, v in tuned_tree["codebooks"].items()},
                shared.indices,
                {p: np.asarray(v, np.float32) for p, v in tuned_tree["biases"].items()},
            )
    meta = {**meta, "compression": how.model_dump()}
    layout = write(out, shared, None if shared else pruned, meta)
    decoded = read(out, spec)
    acc = evaluate(spec, recipe, data, decoded.params, settings)
    note("compressed", acc)
    k = kernels(decoded.params)
    zeros = sum(int((a == 0).sum()) for a in k.values()) / sum(a.size for a in k.values())
    return Result(
        Path(out),
        layout.total,
        complexity.bytes_f32(arch.plan(spec)),
        before,
        acc_pruned,
        acc_retrained,
        acc_shared,
        acc,
        zeros,
        layout,
        time.perf_counter() - t0,
    )


def _tuning(recipe: Recipe, how: Compression) -> Callable[[int, float], Recipe]:
    def tuned(epochs: int, weight_decay: float) -> Recipe:
        return Recipe(
            **{
                **recipe.model_dump(),
                "epochs": epochs,
                "learning_rate": recipe.learning_rate * how.learning_rate_scale,
                "warmup_epochs": 0.0,
                "weight_decay": weight_decay,
                "inject_fault": "none",
            }
        )

    return tuned


def _apply(params, masks):
    flat, keep = _flat(params), _flat(masks)
    return _unflat(
        {p: np.where(keep[p], a, np.float32(0)).astype(np.float32) for p, a in flat.items()}
    )


def _to_numpy(tree):
    import jax

    return jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(tree))


def evaluate(
    spec: arch.ArchSpec, recipe: Recipe, data, params, settings=None, mean=None, std=None
) -> float:
    """Test top-1 of a parameter tree (one device, the recipe's eval batch).

    mean, std: the normalisation it trained with (default the data set's own).
    """
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

    p = jax.tree.map(jnp.asarray, params)
    hits = 0.0
    for i in range(0, len(data.x_test), b):
        x, y = data.x_test[i : i + b], np.asarray(data.y_test[i : i + b], np.int32)
        if len(x) < b:  # pad the last batch; padding labels are -1 (not counted)
            pad = b - len(x)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.full(pad, -1, np.int32)])
        hits += float(run(p, x, y))
    return hits / len(data.x_test)
