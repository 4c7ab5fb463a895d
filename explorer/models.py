"""Flax (Linen) Fire module and SqueezeNet, built from a plan, as the paper draws them.

Linen keeps `init`/`apply` pure functions of explicit parameters, so the train
step is a pure function and vmapping it over seeds is a one-liner. Layout is
NHWC. Every convolution layer and pool is computed by the model's `Lowering`
(explorer.lowering), chosen once at build time: the textbook one, or a CPU
rewrite that computes the same function faster. Parameters are the same
either way (`kernel` HWIO, `bias`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from explorer import lowering as lowerings
from explorer.architecture import ArchSpec, FireSpec, Plan, plan
from explorer.lowering import REFERENCE, Lowering
from explorer.settings import Settings

# Hidden convolutions: He (Kaiming) uniform, as torchvision's SqueezeNet
# (kaiming_uniform_, gain sqrt(2)). Flax's default (LeCun, gain 1) halves the
# signal's variance at every ReLU layer, and the 18-conv-deep net then barely
# moves from loss 2.30 in its first epochs without batch norm.
he_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


class Conv(nn.Module):
    """A k x k convolution layer with bias, optionally followed by ReLU and a 3x3/2 max-pool."""

    features: int
    kernel: int
    stride: int = 1
    pad: int = 0
    relu: bool = False
    pool: bool = False
    kernel_init: Callable = he_uniform
    lowering: Lowering = REFERENCE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel
        w = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return self.lowering.layer(x, w, b, self.stride, self.pad, self.relu, self.pool)


class Fire(nn.Module):
    """Squeeze 1x1 -> ReLU -> [expand 1x1 | expand 3x3] -> ReLU, concatenated (Section 3.2).

    With a bypass (Section 6) the module's input, or a 1x1 convolution of it,
    is added to the output. A max-pool after the module acts on each channel
    alone, so without a bypass it is taken in each expand branch, as part of
    that layer; with one, after the sum.
    """

    fire: FireSpec
    lowering: Lowering = REFERENCE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f, low = self.fire, self.lowering
        s = Conv(f.s1x1, 1, relu=True, lowering=low, name="squeeze")(x)
        in_branch = f.pool and f.shortcut == "none"
        branches = []
        if f.e1x1:
            branches.append(
                Conv(f.e1x1, 1, relu=True, pool=in_branch, lowering=low, name="expand1x1")(s)
            )
        if f.e3x3:
            branches.append(
                Conv(f.e3x3, 3, pad=1, relu=True, pool=in_branch, lowering=low, name="expand3x3")(s)
            )
        y = jnp.concatenate(branches, axis=-1) if len(branches) > 1 else branches[0]
        if f.shortcut == "identity":
            y = y + x
        elif f.shortcut == "conv":
            y = y + Conv(f.out_ch, 1, lowering=low, name="bypass")(x)
        return low.pool(y) if f.pool and not in_branch else y


class SqueezeNet(nn.Module):
    """conv1 -> ReLU -> [pool] -> Fire modules (and pools) -> dropout -> conv10 -> average."""

    plan: Plan
    lowering: Lowering = REFERENCE

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        p, s, low = self.plan, self.plan.spec, self.lowering
        x = Conv(
            s.conv1_filters,
            s.conv1_kernel,
            s.conv1_stride,
            s.conv1_padding,
            relu=True,
            pool=p.stem_pool,
            lowering=low,
            name="conv1",
        )(x)
        for f in p.fires:
            x = Fire(f, low, name=f.name)(x)
        x = nn.Dropout(s.dropout, deterministic=not train)(x)
        init = (
            nn.initializers.normal(0.01)
            if s.head_init == "normal_0.01"
            else nn.initializers.lecun_normal()
        )
        x = Conv(s.num_classes, 1, kernel_init=init, lowering=low, name="conv10")(x)
        if s.head_relu:
            x = nn.relu(x)
        return jnp.mean(x, axis=(1, 2))


def build(
    p: Plan | ArchSpec,
    lowering: Lowering | str | None = None,
    settings: Settings | None = None,
    many_seeds: bool = False,
) -> SqueezeNet:
    """The Flax model of a plan (or of a spec, planned first).

    lowering: a `Lowering` or its name; default: `lowering.choose(settings, many_seeds)`.
    """
    if isinstance(lowering, str):
        lowering = lowerings.LOWERINGS[lowering]
    if lowering is None:
        lowering = lowerings.choose(settings, many_seeds)
    return SqueezeNet(p if isinstance(p, Plan) else plan(p), lowering)


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
