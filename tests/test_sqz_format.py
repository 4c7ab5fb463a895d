"""docs/sqz-format.md is enough to decode a `.sqz` file.

`decode` below is written from that description alone, with NumPy and the
standard library only; the tests check it against explorer.sqzfile.read on
committed files, bit for bit.
"""

from __future__ import annotations

import json
import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

FILES = Path(__file__).resolve().parents[1] / "experiments" / "deep_compression"
SQUEEZENET = FILES / "files" / "squeezenet1_1-sp50-b4-r6.sqz"
FRONT = FILES / "front" / "broad_fire-p0003-s0-sp70-b4.sqz"
LARGEST = FILES / "files" / "squeezenet1_1-sp33-b8.sqz"  # the most coded bits
PER_LAYER = FILES / "files" / "squeezenet1_1-sp85-b4-3x2-pl.sqz"  # 25.6x, layers 0-95% pruned
SMALLEST = FILES / "files" / "squeezenet1_1-sp90-b4-3x3-pl.sqz"  # 32.9x, 90% pruned


# ---------------------------------------------------------------- the decoder
class FormatError(Exception):
    """A file that does not follow docs/sqz-format.md."""


def canonical_codes(counts, symbols) -> list[tuple[int, int, int]]:
    """(symbol, length, code) per symbol, in table order."""
    if counts and counts[0] != 0:
        raise FormatError("a code of length 0")
    out, code = [], 0
    for length in range(1, len(counts)):
        for _ in range(counts[length]):
            out.append((symbols[len(out)], length, code))
            code += 1
        code <<= 1
    return out


def decode_stream(data: bytes, nbits: int, counts, symbols, n: int) -> np.ndarray:
    """The n symbols that the first nbits bits of data code, most significant bit first."""
    if n == 0:
        if nbits:
            raise FormatError("bits in an empty stream")
        return np.zeros(0, np.int64)
    codes = canonical_codes(counts, symbols)
    if not codes or len(counts) > 64:
        raise FormatError("a code table with no code, or codes over 63 bits")
    width = len(counts) - 1  # the longest code
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[:nbits]
    bits = np.concatenate([bits, np.zeros(width, np.uint8)]).astype(np.uint64)
    window = np.zeros(nbits, np.uint64)  # at each bit, the `width` bits from it on
    for j in range(width):
        window = (window << np.uint64(1)) | bits[j : j + nbits]
    # Left-aligned to `width` bits, canonical codes increase in table order.
    first = np.array([c << (width - length) for _, length, c in codes], np.uint64)
    which = np.searchsorted(first, window, side="right") - 1  # the code a bit would start
    lengths = np.array([length for _, length, _ in codes])
    step = lengths[which].tolist()
    starts, pos = [], 0
    for _ in range(n):
        if pos >= nbits:
            raise FormatError("a stream with fewer symbols than its layers keep")
        starts.append(pos)
        pos += step[pos]
    if pos != nbits:
        raise FormatError("a stream whose codes do not end at its bit length")
    got = which[starts]
    code = np.array([c for _, _, c in codes], np.uint64)[got]
    if np.any(window[starts] >> (width - lengths[got]).astype(np.uint64) != code):
        raise FormatError("bits that are no code")
    return np.array([s for s, _, _ in codes], np.int64)[got]


def decode(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and every parameter of a .sqz file, by path."""
    if blob[:4] != b"SQZC" or len(blob) < 13:
        raise FormatError("not a .sqz file")
    if zlib.crc32(blob[:-4]) != struct.unpack("<I", blob[-4:])[0]:
        raise FormatError("the checksum does not match")
    fmt, head_len = struct.unpack_from("<BI", blob, 4)
    if fmt != 1:
        raise FormatError(f"format {fmt}")
    header = json.loads(zlib.decompress(blob[9 : 9 + head_len]))
    pos = 9 + head_len

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(blob) - 4:
            raise FormatError("a section runs past the checksum")
        pos += n
        return blob[pos - n : pos]

    def stream(symbol: str, nbits: int, n: int) -> np.ndarray:
        (m,) = take(1)
        counts = struct.unpack(f"<{m}H", take(2 * m))
        (count,) = struct.unpack("<I", take(4))
        symbols = struct.unpack(f"<{count}{symbol}", take(count * struct.calcsize(symbol)))
        if count != sum(counts):
            raise FormatError("a code table that does not add up")
        return decode_stream(take((nbits + 7) // 8), nbits, counts, symbols, n)

    layers = []
    for layer in header["layers"]:
        codebook = np.frombuffer(take(4 * layer["k"]), "<f4")
        if header["bits"]:
            index = stream("B", layer["index_bits"], layer["kept"])
        else:
            index = np.arange(layer["kept"])
        layers.append((layer, codebook, index))
    if header["sparse"]:
        gaps = stream("I", header["gap_bits"], sum(x["kept"] for x in header["layers"]))
    params, used = {}, 0
    for layer, codebook, index in layers:
        size, kept = math.prod(layer["shape"]), layer["kept"]
        if header["sparse"]:
            where = np.cumsum(gaps[used : used + kept]) - 1  # the kept weights' flat indices
            used += kept
        else:
            where = np.arange(size)
        weights = np.zeros(size, np.float32)
        weights[where] = codebook[index]
        params[layer["path"]] = weights.reshape(layer["shape"])
    for path, n in header["biases"]:
        params[path] = np.frombuffer(take(4 * n), "<f4").astype(np.float32)
    if pos != len(blob) - 4:
        raise FormatError("bytes left over before the checksum")
    return header, params


# ---------------------------------------------------------------- the tests
def _same(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for p, a in theirs.items():
        assert ours[p].dtype == np.float32 and ours[p].shape == a.shape, p
        assert np.array_equal(ours[p].view(np.uint32), np.asarray(a, np.float32).view(np.uint32))


@pytest.mark.parametrize("path", [FRONT, SQUEEZENET, PER_LAYER, SMALLEST], ids=lambda p: p.stem)
def test_decodes_a_committed_file_as_sqzfile_does(path):
    from explorer import sqzfile

    header, params = decode(path.read_bytes())
    _same(params, sqzfile.flat(sqzfile.read(path).params))
    assert header["bits"] == 4 and header["sparse"]
    kernels = [a for p, a in params.items() if p.endswith("/kernel")]
    zeros = sum(int((a == 0).sum()) for a in kernels) / sum(a.size for a in kernels)
    assert zeros == pytest.approx(header["compression"]["sparsity"], abs=0.01)


def test_decodes_the_largest_committed_file_quickly():
    blob = LARGEST.read_bytes()
    t0 = time.perf_counter()
    header, params = decode(blob)
    assert time.perf_counter() - t0 < 3.0
    assert header["bits"] == 8
    assert sum(int((a != 0).sum()) for p, a in params.items() if p.endswith("/kernel")) == sum(
        x["kept"] for x in header["layers"]
    )


@pytest.mark.parametrize("bits,sparse", [(0, True), (0, False), (8, False)])
def test_decodes_the_variants_no_committed_file_has(tmp_path, bits, sparse):
    """bits 0 (float32 values, no index streams) and no positions (every weight kept)."""
    from explorer import sqzfile

    _, params = decode(FRONT.read_bytes())
    codebooks, indices, biases = {}, {}, {}
    for p, a in params.items():
        if not p.endswith("/kernel"):
            biases[p] = a
        elif bits:  # every weight an index into the kernel's distinct values
            codebooks[p], index = np.unique(a, return_inverse=True)
            indices[p] = index.reshape(a.shape)
        else:  # the kept (or all) values in order
            keep = a != 0 if sparse else np.ones(a.shape, bool)
            codebooks[p] = a[keep]
            indices[p] = np.where(keep, np.cumsum(keep).reshape(a.shape) - 1, -1)
    path = tmp_path / "net.sqz"
    sqzfile.write(path, codebooks, indices, biases, bits=bits, sparse=sparse, meta={})
    header, ours = decode(path.read_bytes())
    assert (header["bits"], header["sparse"]) == (bits, sparse)
    _same(ours, params)


def test_a_changed_byte_fails_the_checksum(tmp_path):
    from explorer import sqzfile

    blob = bytearray(FRONT.read_bytes())
    blob[len(blob) // 2] ^= 0x10  # one bit, in a layer's section
    path = tmp_path / FRONT.name
    path.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match="checksum"):
        decode(bytes(blob))
    with pytest.raises(sqzfile.CompressionError, match="checksum"):
        sqzfile.read(path)
