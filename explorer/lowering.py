"""How the model's convolutions and pools become XLA operations.

The model (`explorer.models`) is the paper's network and asks its lowering for
each layer. `REFERENCE` computes it as written, with XLA's own convolution and
`reduce_window` pool, in the textbook order conv + bias, ReLU, pool. The others
compute the same function faster on a CPU; each rewrite is exact, and
tests/test_lowering.py checks outputs and gradients against `REFERENCE` in
float64. docs/performance.md has the measurements behind each choice.

- im2col (`matmul_conv`): a k x k convolution as one matrix product.
- pool first: max-pool(ReLU(conv + b)) == ReLU(max-pool(conv) + b), since a
  max commutes with adding a per-channel constant and with the monotone ReLU;
  the bias and the ReLU then touch a quarter of the elements.
- `max_pool_ceil`: a separable 3x3/2 pool with a hand-written gradient, where
  autodiff and `reduce_window`'s select-and-scatter were slow on CPU.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from explorer.architecture import pool_out
from explorer.settings import Settings

CONVS = ("xla", "matmul", "mixed")


@dataclasses.dataclass(frozen=True)
class Lowering:
    """One way to compute the layers; chosen once, when the model is built."""

    name: str
    conv_kind: str = "xla"  # xla | matmul (im2col) | mixed (1x1 as matmul, k x k as xla)
    fast_pool: bool = True  # separable pool with its hand-written gradient
    pool_first: bool = True  # pool before the bias and the ReLU

    def conv(self, x: jax.Array, w: jax.Array, stride: int = 1, pad: int = 0) -> jax.Array:
        """NHWC x HWIO convolution, symmetric zero padding, no bias."""
        k = w.shape[0]
        kind = self.conv_kind
        if kind == "mixed":
            kind = "matmul" if k == 1 and stride == 1 else "xla"
        if kind == "matmul":
            return matmul_conv(x, w, stride, pad)
        return jax.lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def pool(self, x: jax.Array) -> jax.Array:
        """3x3/2 max-pool with torchvision's ceil_mode=True rounding."""
        return max_pool_ceil(x) if self.fast_pool else reference_pool(x)

    def layer(
        self,
        x: jax.Array,
        w: jax.Array,
        b: jax.Array,
        stride: int = 1,
        pad: int = 0,
        relu: bool = False,
        pool: bool = False,
    ) -> jax.Array:
        """pool(relu(conv(x) + b)), each step optional, in this lowering's order."""
        y = self.conv(x, w, stride, pad)
        if pool and self.pool_first:
            y = self.pool(y)
        y = y + b
        if relu:
            y = nn.relu(y)
        if pool and not self.pool_first:
            y = self.pool(y)
        return y


REFERENCE = Lowering("reference", "xla", fast_pool=False, pool_first=False)
LOWERINGS = {
    "reference": REFERENCE,
    "xla": Lowering("xla", "xla"),
    "matmul": Lowering("matmul", "matmul"),
    "mixed": Lowering("mixed", "mixed"),
}


def choose(
    settings: Settings | None = None, many_seeds: bool = False, backend: str | None = None
) -> Lowering:
    """The lowering for a model: the setting's, or by backend and program.

    auto: on accelerators XLA's own convolution (their libraries are fast at
    both passes); on CPU `mixed`, except for a program of several seeds, which
    takes `matmul`: vmapped, XLA:CPU turns k x k convolutions into slow grouped
    ones, and inside a loop over seeds it runs them on a slow path.
    """
    name = (settings or Settings()).conv
    if name == "auto":
        backend = backend or jax.default_backend()
        name = "xla" if backend != "cpu" else "matmul" if many_seeds else "mixed"
    return LOWERINGS[name]


def matmul_conv(x: jax.Array, w: jax.Array, stride: int, pad: int) -> jax.Array:
    """NHWC x HWIO convolution as im2col and one 2-D matrix product.

    A 1x1 stride-1 convolution is a plain (N*H*W, C) @ (C, F) product. A k x k
    one concatenates the k*k shifted (strided) views of the padded input along
    channels, in the kernel's (kh, kw, c) order, and multiplies by the kernel
    reshaped to (k*k*C, F). Both passes are then dense GEMMs.
    """
    k, _, c, f = w.shape
    if pad:
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if k > 1:
        # Materialise the padded input once: otherwise XLA fuses its producer
        # (bias, ReLU, padding) into each of the k*k slices and copies them again.
        x = jax.lax.optimization_barrier(x)
    n, h, wd, _ = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    if k > 1 or stride > 1:
        span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
        views = [
            x[:, i : i + span_h : stride, j : j + span_w : stride, :]
            for i in range(k)
            for j in range(k)
        ]
        x = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
    y = x.reshape(n * oh * ow, k * k * c) @ w.reshape(k * k * c, f)
    return y.reshape(n, oh, ow, f)


def reference_pool(x: jax.Array) -> jax.Array:
    """3x3/2 max-pool with ceil rounding through Flax's `reduce_window` pool."""
    extra = max((pool_out(x.shape[1]) - 1) * 2 + 3 - x.shape[1], 0)
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((0, extra), (0, extra)))


def _taps(x: jax.Array, axis: int, out: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The three stride-2 taps of a 3-wide pooling window along one axis."""
    span = 2 * (out - 1) + 1
    return tuple(jax.lax.slice_in_dim(x, a, a + span, 2, axis) for a in range(3))


def _max3(x: jax.Array, axis: int, out: int) -> jax.Array:
    a, b, c = _taps(x, axis, out)
    return jnp.maximum(jnp.maximum(a, b), c)


def _max3_grad(x: jax.Array, y: jax.Array, g: jax.Array, axis: int, out: int) -> jax.Array:
    """Gradient of y = _max3(x) for output gradient g; the first of tied taps takes it.

    Gathered per input position, not scattered per tap: even positions 2p take
    the first tap of window p and the last of window p - 1, odd ones the middle
    tap of window p; the two halves are interleaved with one reshape.
    """
    a, b, _ = _taps(x, axis, out)
    first = a == y
    second = (b == y) & ~first
    g0 = jnp.where(first, g, 0.0)
    g1 = jnp.where(second, g, 0.0)
    g2 = g - g0 - g1
    zero = jnp.zeros_like(jax.lax.slice_in_dim(g, 0, 1, 1, axis))
    even = jnp.concatenate([g0, zero], axis) + jnp.concatenate([zero, g2], axis)
    odd = jnp.concatenate([g1, zero], axis)
    shape = list(even.shape)
    shape[axis] *= 2
    both = jnp.stack([even, odd], axis + 1).reshape(shape)
    return jax.lax.slice_in_dim(both, 0, x.shape[axis], 1, axis)


def _pool_pad(x: jax.Array) -> tuple[jax.Array, int]:
    """x padded with -inf at the bottom/right so the last ceil-mode window fits."""
    size = x.shape[1]
    out = pool_out(size)
    extra = max((out - 1) * 2 + 3 - size, 0)
    if extra:
        x = jnp.pad(x, ((0, 0), (0, extra), (0, extra), (0, 0)), constant_values=-jnp.inf)
    return x, out


@jax.custom_vjp
def max_pool_ceil(x: jax.Array) -> jax.Array:
    """3x3/2 max-pool with ceil rounding: separable, with a hand-written gradient.

    A 3-tap strided max down the rows, then along the columns; the -inf padding
    (right/bottom, so the last window fits) never wins. The gradient gathers
    each input position's share (`_max3_grad`); a tie sends it whole to the
    first input along the columns, then the rows, as `reduce_window`'s
    select-and-scatter does in a flat region (tested).
    """
    return _pool_fwd(x)[0]


def _pool_fwd(x):
    xp, out = _pool_pad(x)
    rows = _max3(xp, 1, out)
    y = _max3(rows, 2, out)
    return y, (x, rows, y)


def _pool_bwd(res, g):
    x, rows, y = res
    xp, out = _pool_pad(x)
    g_rows = _max3_grad(rows, y, g, 2, out)
    gx = _max3_grad(xp, rows, g_rows, 1, out)
    return (gx[:, : x.shape[1], : x.shape[2]],)


max_pool_ceil.defvjp(_pool_fwd, _pool_bwd)
