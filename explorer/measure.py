"""Measured costs of a built model: XLA's FLOP count, latency, int8 weights."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from explorer import models
from explorer.architecture import Plan


def xla_flops(plan: Plan) -> int:
    """FLOPs of one image's forward pass as XLA's cost analysis counts them."""
    # XLA's own convolutions: its count skips the zero-padding taps, as the
    # analytic count does; an im2col product would count them.
    model = models.build(plan, "xla")
    x = jax.ShapeDtypeStruct(models.input_shape(plan.spec, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    compiled = jax.jit(model.apply).lower(variables, x).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jaxlibs return one dict per device
        analysis = analysis[0]
    return int(analysis["flops"])


def quantize_int8(params, batch_dims: int = 0):
    """Weights rounded to int8 per output channel (symmetric), returned dequantised.

    Kernels (ndim >= 2 beyond `batch_dims` leading seed axes) get one float32
    scale per output channel, max|w| / 127; biases stay float32. Evaluating the
    dequantised weights measures the accuracy an int8-weight model would have.
    """

    def quantize(w):
        if w.ndim - batch_dims < 2:
            return w
        axes = tuple(range(batch_dims, w.ndim - 1))
        scale = jnp.max(jnp.abs(w), axis=axes, keepdims=True) / 127.0
        scale = jnp.where(scale == 0, 1.0, scale)
        return jnp.clip(jnp.round(w / scale), -127, 127) * scale

    return jax.tree.map(quantize, params)


def latency(
    model: models.SqueezeNet, params, image_shape: tuple, batches=(1, 128), repeats: int = 20
) -> dict:
    """Median forward latency in ms at each batch size (after a warm-up call), on one device.

    image_shape: one image's (height, width, channels).
    """
    params = jax.device_put(params, jax.local_devices()[0])  # not copies on every core
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    out = {}
    for b in batches:
        x = jnp.zeros((b, *image_shape), jnp.float32)
        apply(params, x).block_until_ready()  # compile and warm up
        n = repeats if b == 1 else max(3, repeats // 4)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            apply(params, x).block_until_ready()
            times.append(time.perf_counter() - t0)
        out[f"b{b}_ms"] = float(np.median(times) * 1e3)
    return out
