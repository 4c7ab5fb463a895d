"""Flax (Linen) Fire module and SqueezeNet, built from a plan.

Linen keeps `init`/`apply` pure functions of explicit parameters, so the train
step is a pure function and vmapping it over seeds is a one-liner (train.py).
Layout is NHWC. On CPU, 1x1 convolutions run as matrix products and k x k ones
as XLA's own convolution, whose CPU kernels were the fastest of the lowerings
measured for them on one core (README, Performance); max-pools run as separable
strided slices with a hand-written gradient, where `reduce_window`'s
select-and-scatter was slow. Parameters are the same either way (`kernel`
HWIO, `bias`), and so are the outputs, to float tolerance. A pool runs before
its layer's bias and ReLU, which gives the same network at a quarter of the
element-wise work (`Conv`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from explorer.architecture import ArchSpec, FireSpec, Plan, plan, pool_out
from explorer.devices import SettingError

# Hidden convolutions: He (Kaiming) uniform, as torchvision's SqueezeNet
# (kaiming_uniform_, gain sqrt(2)). Flax's default (LeCun, gain 1) halves the
# signal's variance at every ReLU layer, and the 18-conv-deep net then barely
# moves from loss 2.30 in its first epochs without batch norm.
he_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


CONV_ENV = "EXPLORER_CONV"
CONV_IMPLS = ("auto", "mixed", "matmul", "xla")


def conv_impl(impl: str = "auto", many_seeds: bool = False) -> str:
    """The convolution lowering: "mixed", "matmul" (im2col + a matrix product) or "xla".

    "mixed" runs 1x1 convolutions as matrix products and k x k ones as XLA's
    convolution. "auto" reads $EXPLORER_CONV, else picks mixed on CPU and XLA's
    own convolution elsewhere (GPU/TPU libraries are fast at both passes). A
    program of many seeds on CPU (`train._per_seed`) takes matmul: vmapped,
    XLA:CPU's k x k convolutions become grouped ones (K=8: 293 images/s against
    641), and inside a loop over seeds XLA:CPU runs convolutions on a slow
    path (K=2, in a loop: 103 images/s; the loop unrolled: 748).
    Measured on a 2-core CPU, one device per core (`explorer.devices`), SqueezeNet
    1.1 at 28x28x1: mixed 656-682 images/s, matmul 596 (README, Performance).
    """
    if impl == "auto":
        impl = os.environ.get(CONV_ENV, "auto") or "auto"
    if impl not in CONV_IMPLS:
        raise SettingError(f"${CONV_ENV}: expected one of {', '.join(CONV_IMPLS)}, got {impl!r}")
    if impl == "auto":
        if jax.default_backend() != "cpu":
            impl = "xla"
        else:
            impl = "matmul" if many_seeds else "mixed"
    return impl


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
        # Materialise the (padded) input once. Without the barrier XLA fuses its
        # producer (bias, ReLU, padding) into each of the k*k slices, runs them
        # as k*k kernels and copies them again into the concatenation; with it
        # the trainer's step went from 533 to 603-642 images/s (SqueezeNet 1.1,
        # 28x28x1, 2-core CPU; README, Performance).
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


class Conv(nn.Module):
    """k x k convolution with symmetric zero padding; parameters as `nn.Conv`'s.

    `pool` and `relu` finish the layer as max-pool(ReLU(conv + bias)), computed
    as ReLU(max-pool(conv) + bias): a max commutes with adding a per-channel
    constant and with the monotone ReLU, so the result is the same, but the
    bias, the ReLU and their gradients touch a quarter of the elements.
    """

    features: int
    kernel: int
    stride: int = 1
    pad: int = 0
    kernel_init: Callable = he_uniform
    impl: str = "auto"
    pool: bool = False
    relu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel
        w = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        impl = conv_impl(self.impl)
        if impl == "mixed":
            impl = "matmul" if k == 1 and self.stride == 1 else "xla"
        if impl == "matmul":
            y = matmul_conv(x, w, self.stride, self.pad)
        else:
            y = jax.lax.conv_general_dilated(
                x,
                w,
                (self.stride, self.stride),
                ((self.pad, self.pad), (self.pad, self.pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if self.pool:
            y = max_pool_ceil(y)
        y = y + b
        return nn.relu(y) if self.relu else y


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
    """3x3/2 max-pool with torchvision's ceil_mode=True rounding.

    Separable: a 3-tap strided max down the rows, then along the columns; the
    padding (right/bottom, so that the last window fits) is -inf, so it never
    wins. The gradient is written by hand (`_max3_grad`, one pass per axis,
    gathering each input position's share where autodiff scattered each tap's
    into a padded copy). Tied inputs do not share it: it goes whole to the
    first along the columns, then the rows (`reduce_window`'s select-and-scatter
    also picks one; in a flat region both pick the window's first, tested;
    autodiff of the separable max split it). The train step, 2 CPU devices,
    alternating with autodiff's pool: SqueezeNet 1.1 970-1035 against 938-948
    images/s at 28x28x1, 648-660 against 585-615 at 32x32x3; SqueezeNet 1.0
    406-421 against 382 at 28x28x1. `reduce_window`'s select-and-scatter was
    slower still (192 against 50 ms forward and backward at 1.1's stem, one core).
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


class Fire(nn.Module):
    """Squeeze 1x1 -> ReLU -> [expand 1x1 | expand 3x3] -> ReLU, concatenated.

    A pool that follows the module is taken inside each expand branch, before
    its bias and ReLU (see `Conv`), unless a shortcut is added before it.
    """

    fire: FireSpec
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f, impl = self.fire, self.impl
        s = Conv(f.s1x1, 1, impl=impl, relu=True, name="squeeze")(x)
        inner = f.pool and f.shortcut == "none"
        branches = []
        if f.e1x1:
            branches.append(Conv(f.e1x1, 1, impl=impl, pool=inner, relu=True, name="expand1x1")(s))
        if f.e3x3:
            branches.append(
                Conv(f.e3x3, 3, pad=1, impl=impl, pool=inner, relu=True, name="expand3x3")(s)
            )
        y = jnp.concatenate(branches, axis=-1) if len(branches) > 1 else branches[0]
        # Paper Section 6: the shortcut adds the module's input to its output.
        if f.shortcut == "identity":
            y = y + x
        elif f.shortcut == "conv":
            y = y + Conv(f.out_ch, 1, impl=impl, name="bypass")(x)
        return max_pool_ceil(y) if f.pool and not inner else y


class SqueezeNet(nn.Module):
    """conv1 -> Fire modules (with pools) -> dropout -> conv10 -> global average."""

    plan: Plan
    impl: str = "auto"  # convolution lowering, see conv_impl

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        p, s = self.plan, self.plan.spec
        x = Conv(
            s.conv1_filters,
            s.conv1_kernel,
            s.conv1_stride,
            s.conv1_padding,
            impl=self.impl,
            pool=p.stem_pool,
            relu=True,
            name="conv1",
        )(x)
        for f in p.fires:
            x = Fire(f, self.impl, name=f.name)(x)  # pools inside when f.pool
        x = nn.Dropout(s.dropout, deterministic=not train)(x)
        init = (
            nn.initializers.normal(0.01)
            if s.head_init == "normal_0.01"
            else nn.initializers.lecun_normal()
        )
        x = Conv(s.num_classes, 1, kernel_init=init, impl=self.impl, name="conv10")(x)
        if s.head_relu:
            x = nn.relu(x)
        return jnp.mean(x, axis=(1, 2))


def build(p: Plan | ArchSpec, impl: str = "auto", many_seeds: bool = False) -> SqueezeNet:
    """The Flax model of a plan (or of a spec, planned first); see conv_impl."""
    return SqueezeNet(p if isinstance(p, Plan) else plan(p), conv_impl(impl, many_seeds))


def input_shape(spec: ArchSpec, batch: int = 1) -> tuple[int, int, int, int]:
    """NHWC shape of a batch for this spec."""
    return (batch, spec.image_size, spec.image_size, spec.in_channels)


def param_shapes(model: SqueezeNet):
    """Parameter shapes without allocating them (jax.eval_shape)."""
    x = jax.ShapeDtypeStruct(input_shape(model.plan.spec), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def count_params(tree) -> int:
    """Number of scalars in a parameter tree (arrays or shape structs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
