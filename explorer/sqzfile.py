"""The compressed network's file (`.sqz`): written and read back, every part checked.

Little-endian:

    magic "SQZC", format (u8), header length (u32), header (zlib'd JSON:
    the network's spec, data set, normalisation, settings, and per layer its
    path, shape, kept weights, codebook size and stream lengths),
    then per layer: codebook (float32 x k, k <= 2^bits; with bits 0 the kept
    values themselves, k = kept), index code table, index
    stream; the position code table and stream; the biases (float32);
    and a CRC-32 of everything before it.

A code table is canonical: the count of codes of each length (u16 each, after
a u8 of how many lengths) and the symbols in canonical order (u8 for indices,
u32 for gaps, after a u32 of how many).

`read` checks the magic, the checksum, every length against the bytes that
are left, the layers against the network the header names, every index
against its codebook and every position against its layer; any failure is a
one-line CompressionError naming the file. explorer.compression makes what is
written here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from explorer import architecture as arch
from explorer import checkpoints

MAGIC = b"SQZC"
FORMAT = 1
SUFFIX = ".sqz"
MAX_HEADER = 1 << 20  # a header is a few kilobytes; a larger length is damage
MAX_CODE_LENGTHS = 64


class CompressionError(Exception):
    """A compressed file that is missing, damaged or not this program's; one line."""


# ---------------------------------------------------------------- the tree's layers
def flat(tree, leaf=np.asarray, prefix: str = "") -> dict:
    """A nested dict of arrays as {"fire2/squeeze/kernel": leaf(array)}, paths sorted."""
    out = {}
    for k in sorted(tree):
        v = tree[k]
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, leaf, path + "/"))
        else:
            out[path] = leaf(v)
    return out


def unflat(paths: dict[str, np.ndarray]) -> dict:
    """The nested dict `flat` came from."""
    tree: dict = {}
    for path, a in paths.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = a
    return tree


# ---------------------------------------------------------------- codes and the file
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
    codebooks: dict[str, np.ndarray],
    indices: dict[str, np.ndarray],
    biases: dict[str, np.ndarray],
    *,
    bits: int,
    sparse: bool,
    meta: dict,
) -> Layout:
    """Write a compressed network; returns the sizes of its parts.

    Per kernel path: its codebook (float32) and each weight's index into it (-1:
    pruned; with bits = 0 the codebook is the kept values themselves, in order);
    biases by path. sparse: store the kept weights' positions. meta: JSON-able; at
    least `spec`, `dataset`, `mean`, `std` (as a checkpoint's). The file appears
    whole or not at all (written aside, then renamed).
    """
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
    head = zlib.compress(
        json.dumps(header, separators=(",", ":"), default=checkpoints.jsonable).encode(), 9
    )
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
    unzip = zlib.decompressobj()
    try:
        text = unzip.decompress(r.take(head_len), MAX_HEADER)  # at most: zlib bombs
    except zlib.error as e:
        raise CompressionError(f"{path}: its header is not a compressed network's ({e})") from None
    if unzip.unconsumed_tail:
        raise CompressionError(f"{path}: header over {MAX_HEADER:,} bytes unpacked; corrupt")
    try:
        meta = json.loads(text)
        bits, sparse = int(meta["bits"]), bool(meta["sparse"])
        layers = [(str(x["path"]), tuple(int(d) for d in x["shape"]), int(x["kept"]), int(x["k"]),
                   int(x.get("index_bits", 0))) for x in meta["layers"]]  # fmt: skip
        bias_list = [(str(p), int(n)) for p, n in meta["biases"]]
        gap_bits = int(meta["gap_bits"])
        spec = spec or checkpoints.spec_of(meta)
    except CompressionError:
        raise
    except Exception as e:
        raise CompressionError(f"{path}: its header is not a compressed network's ({e})") from None
    expected = _shapes(spec)
    names = [p for p, *_ in layers] + [p for p, _ in bias_list]
    if sorted(names) != sorted(expected):
        raise CompressionError(f"{path}: its layers are not those of the network it names")
    leaves, payload, layer_idx = {}, 0, {}
    for p, shape, kept, k, index_bits in layers:
        empty = k == 0 and kept == 0 and not bits  # a wholly pruned layer stores no values
        fits = shape == expected[p] and 0 <= kept <= math.prod(shape)
        if not fits or not (0 < k <= 2**24 or empty):
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
        leaves[p] = w.reshape(shape)
    for p, n in bias_list:
        if (n,) != expected[p]:
            raise CompressionError(f"{path}: layer {p} does not fit its network")
        leaves[p] = np.frombuffer(r.take(4 * n), "<f4").astype(np.float32)
    if r.pos != len(blob) - 4:
        raise CompressionError(f"{path}: {len(blob) - 4 - r.pos} bytes more than its header says")
    return Decoded(unflat(leaves), meta, len(blob), payload)


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


def _shapes(spec: arch.ArchSpec) -> dict[str, tuple]:
    """Every parameter's shape in the network `spec` describes (no arrays made)."""
    import jax
    import jax.numpy as jnp

    from explorer import models

    model = models.build(spec)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(models.input_shape(spec, 1)))["params"]
    )
    return {p: tuple(a.shape) for p, a in flat(shapes, lambda a: a).items()}
