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
    model = models.build(plan)
    x = jax.ShapeDtypeStruct(models.input_shape(plan.spec, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    compiled = jax.jit(model.apply).lower(variables, x).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jaxlibs return one dict per device
        analysis = analysis[0]
    return int(analysis["flops"])
