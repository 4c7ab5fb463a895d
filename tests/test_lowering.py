"""Every lowering computes the textbook network: outputs and gradients, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from explorer import architecture as arch
from explorer import lowering, models
from explorer.lowering import max_pool_ceil, reference_pool
from explorer.settings import SettingError, Settings


@pytest.mark.parametrize("size", [28, 14, 7, 6, 3])
def test_separable_pool_equals_reduce_window_with_ceil_rounding(size):
    x = jax.random.normal(jax.random.key(size), (2, size, size, 5))
    out = arch.pool_out(size)
    got = max_pool_ceil(x)
    assert got.shape == (2, out, out, 5)
    np.testing.assert_array_equal(got, reference_pool(x))


@pytest.mark.parametrize("size", [28, 14, 7, 6, 3])
def test_pool_gradient_is_reduce_windows(size):
    # The hand-written backward against autodiff through reduce_window's
    # select-and-scatter, in float64 (summation order aside, exact).
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(size), (2, size, size, 5), jnp.float64)
        g = jax.random.normal(jax.random.key(1), reference_pool(x).shape, jnp.float64)
        got = jax.grad(lambda x: jnp.sum(max_pool_ceil(x) * g))(x)
        want = jax.grad(lambda x: jnp.sum(reference_pool(x) * g))(x)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        assert np.count_nonzero(got) > 0
        # A flat region (all inputs tie): each window's gradient goes whole to
        # one input, the window's first, as with select-and-scatter.
        flat = jnp.zeros_like(x)
        got = jax.grad(lambda x: jnp.sum(max_pool_ceil(x) * g))(flat)
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
        return lowering.matmul_conv(x, w, stride, pad)

    np.testing.assert_allclose(mm(x, w), xla(x, w), rtol=1e-5, atol=1e-4)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
    grads = jax.grad(loss(mm), (0, 1))(x, w), jax.grad(loss(xla), (0, 1))(x, w)
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_auto_picks_per_backend_and_program_and_a_setting_overrides():
    assert lowering.choose(Settings(), backend="cpu").name == "mixed"
    assert lowering.choose(Settings(), many_seeds=True, backend="cpu").name == "matmul"
    assert lowering.choose(Settings(), backend="gpu").name == "xla"
    assert lowering.choose(Settings(conv="xla"), many_seeds=True, backend="cpu").name == "xla"
    assert models.build(arch.ArchSpec(), "matmul").lowering is lowering.LOWERINGS["matmul"]


def test_unknown_conv_lowering_is_a_clear_error():
    with pytest.raises(SettingError, match="EXPLORER_CONV.*matmul, xla.*winograd"):
        Settings(conv="winograd")


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


@pytest.mark.parametrize("name", list(lowering.LOWERINGS))
@pytest.mark.parametrize(
    "spec",
    [
        arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1),
        # identity and 1x1-conv shortcuts, pools after the sum; four Fire modules
        arch.preset("squeezenet1_0", num_classes=5, image_size=32).replace(
            bypass="complex", num_fire=4, pool_after=("conv1", "fire4")
        ),
    ],
    ids=["1.1", "1.0-complex-4"],
)
def test_every_lowering_is_the_classic_network(spec, name):
    # Outputs and every parameter's gradient equal the textbook network's, written
    # out above with XLA's own ops (pools in the branches and after the bypass
    # sum, im2col, the hand-written pool gradient: all exact). In float64, so
    # that rounding in these unnormalised nets (logits in the hundreds with
    # complex bypass) cannot hide or fake a difference.
    model = models.build(spec, name)
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
