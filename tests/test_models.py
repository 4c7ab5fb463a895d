"""The CPU lowering (im2col matmuls, separable pools) against XLA's own ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explorer import architecture as arch
from explorer import models


@pytest.mark.parametrize("size", [28, 14, 7, 6, 3])
def test_separable_pool_equals_reduce_window_with_ceil_rounding(size):
    x = jax.random.normal(jax.random.key(size), (2, size, size, 5))
    out = arch.pool_out(size)
    extra = max((out - 1) * 2 + 3 - size, 0)
    ref = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((0, extra), (0, extra)))
    got = models.max_pool_ceil(x)
    assert got.shape == (2, out, out, 5)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(
    "kernel, stride, pad, size", [(1, 1, 0, 9), (3, 1, 1, 9), (3, 2, 0, 17), (7, 2, 0, 23)]
)
def test_matmul_conv_equals_xla_conv_values_and_gradients(kernel, stride, pad, size):
    kx, kw = jax.random.split(jax.random.key(kernel * 10 + stride))
    x = jax.random.normal(kx, (3, size, size, 4))
    w = jax.random.normal(kw, (kernel, kernel, 4, 6))

    def xla(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def mm(x, w):
        return models.matmul_conv(x, w, stride, pad)

    np.testing.assert_allclose(mm(x, w), xla(x, w), rtol=1e-5, atol=1e-4)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    grads = jax.grad(loss(mm), (0, 1))(x, w), jax.grad(loss(xla), (0, 1))(x, w)
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "spec",
    [
        arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1),
        arch.preset("squeezenet1_0", num_classes=10, image_size=64).replace(bypass="complex"),
    ],
)
def test_both_lowerings_build_the_same_model(spec):
    x = jax.random.uniform(jax.random.key(1), models.input_shape(spec, 2))
    fast, ref = models.build(spec, impl="matmul"), models.build(spec, impl="xla")
    variables = ref.init(jax.random.key(0), x)
    assert jax.tree.structure(fast.init(jax.random.key(0), x)) == jax.tree.structure(variables)
    np.testing.assert_allclose(
        fast.apply(variables, x), ref.apply(variables, x), rtol=1e-4, atol=1e-5
    )


def test_unknown_conv_lowering_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(models.CONV_ENV, "winograd")
    with pytest.raises(ValueError, match="EXPLORER_CONV.*matmul, xla.*winograd"):
        models.conv_impl()
