"""Flax (Linen) Fire module and SqueezeNet, built from a plan.

Linen keeps `init`/`apply` pure functions of explicit parameters, so the train
step is a pure function and vmapping it over seeds is a one-liner (train.py).
Layout is NHWC, the layout XLA's CPU and GPU convolutions prefer.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from explorer.architecture import ArchSpec, FireSpec, Plan, plan, pool_out

# Hidden convolutions: He (Kaiming) uniform, as torchvision's SqueezeNet
# (kaiming_uniform_, gain sqrt(2)). Flax's default (LeCun, gain 1) halves the
# signal's variance at every ReLU layer, and the 18-conv-deep net then barely
# moves from loss 2.30 in its first epochs without batch norm.
he_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


def conv(features: int, kernel: int, name: str, stride: int = 1, pad: int = 0) -> nn.Conv:
    """A hidden convolution (He-uniform weights, zero bias)."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_init=he_uniform,
        name=name,
    )


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """3x3/2 max-pool with torchvision's ceil_mode=True rounding."""
    size = x.shape[1]
    out = pool_out(size)
    extra = (out - 1) * 2 + 3 - size  # pad right/bottom so the last window fits
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((0, max(extra, 0)), (0, max(extra, 0))))


class Fire(nn.Module):
    """Squeeze 1x1 -> ReLU -> [expand 1x1 | expand 3x3] -> ReLU, concatenated."""

    fire: FireSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f = self.fire
        s = nn.relu(conv(f.s1x1, 1, "squeeze")(x))
        branches = []
        if f.e1x1:
            branches.append(conv(f.e1x1, 1, "expand1x1")(s))
        if f.e3x3:
            branches.append(conv(f.e3x3, 3, "expand3x3", pad=1)(s))
        y = nn.relu(jnp.concatenate(branches, axis=-1) if len(branches) > 1 else branches[0])
        # Paper Section 6: the shortcut adds the module's input to its output.
        if f.shortcut == "identity":
            y = y + x
        elif f.shortcut == "conv":
            y = y + conv(f.out_ch, 1, "bypass")(x)
        return y


class SqueezeNet(nn.Module):
    """conv1 -> Fire modules (with pools) -> dropout -> conv10 -> global average."""

    plan: Plan

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        p, s = self.plan, self.plan.spec
        k, pad = s.conv1_kernel, s.conv1_padding
        x = conv(s.conv1_filters, k, "conv1", s.conv1_stride, pad)(x)
        x = nn.relu(x)
        if p.stem_pool:
            x = max_pool_ceil(x)
        for f in p.fires:
            x = Fire(f, name=f.name)(x)
            if f.pool:
                x = max_pool_ceil(x)
        x = nn.Dropout(s.dropout, deterministic=not train)(x)
        init = (
            nn.initializers.normal(0.01)
            if s.head_init == "normal_0.01"
            else nn.initializers.lecun_normal()
        )
        x = nn.Conv(s.num_classes, (1, 1), kernel_init=init, name="conv10")(x)
        if s.head_relu:
            x = nn.relu(x)
        return jnp.mean(x, axis=(1, 2))


def build(p: Plan | ArchSpec) -> SqueezeNet:
    """The Flax model of a plan (or of a spec, planned first)."""
    return SqueezeNet(p if isinstance(p, Plan) else plan(p))


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
