"""The CPU lowering (im2col matmuls, separable pools) against XLA's own ops."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explorer import architecture as arch
from explorer import models


def reference_pool(x: jax.Array) -> jax.Array:
    """3x3/2 max-pool with ceil rounding through Flax's `reduce_window` pool."""
    extra = max((arch.pool_out(x.shape[1]) - 1) * 2 + 3 - x.shape[1], 0)
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((0, extra), (0, extra)))


@pytest.mark.parametrize("size", [28, 14, 7, 6, 3])
def test_separable_pool_equals_reduce_window_with_ceil_rounding(size):
    x = jax.random.normal(jax.random.key(size), (2, size, size, 5))
    out = arch.pool_out(size)
    got = models.max_pool_ceil(x)
    assert got.shape == (2, out, out, 5)
    np.testing.assert_array_equal(got, reference_pool(x))


@pytest.mark.parametrize("size", [28, 14, 7, 6, 3])
def test_pool_gradient_is_reduce_windows(size):
    # The hand-written backward against autodiff through reduce_window's
    # select-and-scatter, in float64 (summation order aside, exact).
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(size), (2, size, size, 5), jnp.float64)
        g = jax.random.normal(jax.random.key(1), reference_pool(x).shape, jnp.float64)
        got = jax.grad(lambda x: jnp.sum(models.max_pool_ceil(x) * g))(x)
        want = jax.grad(lambda x: jnp.sum(reference_pool(x) * g))(x)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        assert np.count_nonzero(got) > 0
        # A flat region (all inputs tie): each window's gradient goes whole to
        # one input, the window's first, as with select-and-scatter.
        flat = jnp.zeros_like(x)
        got = jax.grad(lambda x: jnp.sum(models.max_pool_ceil(x) * g))(flat)
        want = jax.grad(lambda x: jnp.sum(reference_pool(x) * g))(flat)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


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


def test_cpu_lowering_defaults_and_the_override(monkeypatch):
    monkeypatch.delenv(models.CONV_ENV, raising=False)
    assert models.conv_impl() == "mixed"  # the tests run on the CPU
    assert models.conv_impl(many_seeds=True) == "matmul"
    monkeypatch.setenv(models.CONV_ENV, "xla")
    assert models.conv_impl(many_seeds=True) == "xla"


def test_unknown_conv_lowering_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(models.CONV_ENV, "winograd")
    with pytest.raises(ValueError, match="EXPLORER_CONV.*matmul, xla.*winograd"):
        models.conv_impl()


def classic_forward(spec: arch.ArchSpec, params, x: jax.Array) -> jax.Array:
    """SqueezeNet in torchvision's order, with XLA's own ops: conv + bias, ReLU, pool."""
    p = arch.plan(spec)

    def conv(x, prm, stride=1, pad=0):
        dims = ("NHWC", "HWIO", "NHWC")
        window = ((pad, pad), (pad, pad))
        y = jax.lax.conv_general_dilated(
            x, prm["kernel"], (stride,) * 2, window, dimension_numbers=dims
        )
        return y + prm["bias"]

    x = jax.nn.relu(conv(x, params["conv1"], spec.conv1_stride, spec.conv1_padding))
    if p.stem_pool:
        x = reference_pool(x)
    for f in p.fires:
        q = params[f.name]
        s = jax.nn.relu(conv(x, q["squeeze"]))
        parts = [conv(s, q["expand1x1"])] if f.e1x1 else []
        parts += [conv(s, q["expand3x3"], pad=1)] if f.e3x3 else []
        y = jax.nn.relu(jnp.concatenate(parts, axis=-1))
        if f.shortcut == "identity":
            y = y + x
        elif f.shortcut == "conv":
            y = y + conv(x, q["bypass"])
        x = reference_pool(y) if f.pool else y
    x = conv(x, params["conv10"])
    return (jax.nn.relu(x) if spec.head_relu else x).mean(axis=(1, 2))


@pytest.mark.parametrize(
    "spec",
    [
        arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1),
        arch.preset("squeezenet1_1", num_classes=10, image_size=28).replace(bypass="simple"),
        arch.preset("squeezenet1_0", num_classes=5, image_size=32).replace(bypass="complex"),
    ],
)
def test_pool_before_bias_and_relu_is_the_classic_network(spec):
    # The model pools pre-activations (max commutes with + bias and ReLU); the
    # outputs and every parameter's gradient equal the textbook order's. In
    # float64, so that rounding in these unnormalised nets (logits in the
    # hundreds with complex bypass) cannot hide or fake a difference.
    model = models.build(spec)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(2), models.input_shape(spec, 3), jnp.float64)
        params = model.init(jax.random.key(0), x)["params"]
        # Non-zero biases, so that moving the bias past the pool is really tested.
        params = jax.tree.map(
            lambda a: a.astype(jnp.float64) + 0.05 * jnp.cos(jnp.arange(a.size).reshape(a.shape)),
            params,
        )
        ours = lambda prm: model.apply({"params": prm}, x)  # noqa: E731
        ref = lambda prm: classic_forward(spec, prm, x)  # noqa: E731
        r = jax.random.normal(jax.random.key(3), (3, spec.num_classes), jnp.float64)

        @jax.jit  # one program for both networks: a single compile
        def outputs_and_grads(prm):
            grad = lambda f: jax.grad(lambda p: jnp.sum(f(p) * r))(prm)  # noqa: E731
            return ours(prm), ref(prm), grad(ours), grad(ref)

        out, want_out, got, want = outputs_and_grads(params)
    np.testing.assert_allclose(out, want_out, rtol=1e-10, atol=1e-10)
    want = dict(jax.tree_util.tree_leaves_with_path(want))
    for path, g in jax.tree_util.tree_leaves_with_path(got):
        assert g.dtype == jnp.float64
        np.testing.assert_allclose(
            g, want[path], rtol=1e-9, atol=1e-9, err_msg=jax.tree_util.keystr(path)
        )
