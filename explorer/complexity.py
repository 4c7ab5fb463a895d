"""Parameters, model bytes and FLOPs of a plan, analytically, without building it.

As pycls's `complexity()`, this lets a sweep filter points by size or compute
before anything is compiled. tests/test_complexity.py checks these numbers against
torchvision's published figures and against XLA's cost analysis of the built model.

FLOPs convention: 2 x multiply-accumulates of the convolutions, counting only
taps that land on the image (zero padding is not arithmetic). This is what XLA's
cost analysis counts for a convolution. torchvision's published "GFLOPS" for
SqueezeNet (0.82 and 0.35) are multiply-accumulates with padding taps included:
`macs(plan, count_padding=True)` reproduces them.
"""

from __future__ import annotations

import math

from explorer.architecture import Plan, conv_out

BYTES_F32 = 4


def _conv_params(cin: int, cout: int, k: int) -> int:
    return k * k * cin * cout + cout


def layer_params(p: Plan) -> dict[str, int]:
    """Parameters per layer (weights and biases), in network order."""
    s = p.spec
    out = {"conv1": _conv_params(s.in_channels, s.conv1_filters, s.conv1_kernel)}
    for f in p.fires:
        n = _conv_params(f.in_ch, f.s1x1, 1)
        n += _conv_params(f.s1x1, f.e1x1, 1) if f.e1x1 else 0
        n += _conv_params(f.s1x1, f.e3x3, 3) if f.e3x3 else 0
        n += _conv_params(f.in_ch, f.out_ch, 1) if f.shortcut == "conv" else 0
        out[f.name] = n
    out["conv10"] = _conv_params(p.head_in, s.num_classes, 1)
    return out


def params(p: Plan) -> int:
    """Total trainable parameters."""
    return sum(layer_params(p).values())


def _convs(p: Plan):
    """(cin, cout, kernel, stride, padding, input size) of every convolution."""
    s = p.spec
    yield (
        s.in_channels,
        s.conv1_filters,
        s.conv1_kernel,
        s.conv1_stride,
        s.conv1_padding,
        s.image_size,
    )
    for f in p.fires:
        yield f.in_ch, f.s1x1, 1, 1, 0, f.size_in
        if f.e1x1:
            yield f.s1x1, f.e1x1, 1, 1, 0, f.size_in
        if f.e3x3:
            yield f.s1x1, f.e3x3, 3, 1, 1, f.size_in
        if f.shortcut == "conv":
            yield f.in_ch, f.out_ch, 1, 1, 0, f.size_in
    yield p.head_in, s.num_classes, 1, 1, 0, p.head_size


def _taps_1d(size: int, k: int, stride: int, pad: int, count_padding: bool) -> int:
    """Kernel taps over all output positions of one spatial dimension."""
    n_out = conv_out(size, k, stride, pad)
    if count_padding:
        return n_out * k
    return sum(sum(1 for t in range(k) if 0 <= o * stride - pad + t < size) for o in range(n_out))


def macs(p: Plan, count_padding: bool = False) -> int:
    """Multiply-accumulates of all convolutions for one image."""
    total = 0
    for cin, cout, k, stride, pad, size in _convs(p):
        total += _taps_1d(size, k, stride, pad, count_padding) ** 2 * cin * cout
    return total


def flops(p: Plan) -> int:
    """FLOPs per image, forward: 2 x MACs over non-padding taps (XLA's convention)."""
    return 2 * macs(p)


def bytes_f32(p: Plan) -> int:
    """Model size with float32 weights and biases."""
    return BYTES_F32 * params(p)


def bytes_int8(p: Plan) -> int:
    """Model size with int8 per-output-channel weights, float32 scales and biases."""
    n_weights, n_channels = 0, 0
    for cin, cout, k, *_ in _convs(p):
        n_weights += k * k * cin * cout
        n_channels += cout
    # One float32 bias and one float32 scale per output channel.
    return n_weights + 2 * BYTES_F32 * n_channels


def summary(p: Plan) -> dict:
    """params, bytes_f32, bytes_int8, flops of a plan."""
    return {
        "params": params(p),
        "bytes_f32": bytes_f32(p),
        "bytes_int8": bytes_int8(p),
        "flops": flops(p),
    }


def bytes_compressed_estimate(p: Plan, sparsity: float, bits: int, index_gain: float = 1.0) -> int:
    """Deep Compression's file size, estimated before training (explorer.compression).

    Kept weights cost `bits` each (float32 when bits is 0) times index_gain
    (Huffman coding of the indices gains what the trained weights allow, known
    only after training); positions cost the entropy of the gaps between kept
    weights if they fall at random (geometric), which their Huffman code comes
    close to; codebooks and biases are float32.
    """
    q = 1.0 - sparsity
    gap_bits = 0.0
    if sparsity > 0:
        gap_bits = (-sparsity * math.log2(sparsity) - q * math.log2(q)) / q
    total = 0.0
    for cin, cout, k, *_ in _convs(p):
        kept = k * k * cin * cout - round(sparsity * k * k * cin * cout)
        index = bits * index_gain if bits else 32
        total += kept * (index + gap_bits) / 8 + BYTES_F32 * ((2**bits if bits else 0) + cout)
    return int(math.ceil(total))
