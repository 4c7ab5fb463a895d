"""Analytic complexity against published figures and XLA's own count."""

import pytest

from explorer import architecture as arch
from explorer import complexity
from explorer.measure import xla_flops


@pytest.mark.parametrize("name, gmacs", [("squeezenet1_0", 0.82), ("squeezenet1_1", 0.35)])
def test_padded_macs_match_torchvisions_published_gflops(name, gmacs):
    # torchvision's model card lists multiply-accumulates, padding taps included.
    macs = complexity.macs(arch.plan(arch.preset(name)), count_padding=True)
    assert round(macs / 1e9, 2) == gmacs


@pytest.mark.parametrize(
    "spec",
    [
        arch.preset("squeezenet1_1"),
        arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1),
        arch.preset("squeezenet1_0", num_classes=10, image_size=32).replace(
            bypass="complex", pct3x3=0.25, squeeze_ratio=0.5
        ),
    ],
)
def test_analytic_flops_agree_with_xla_cost_analysis(spec):
    plan = arch.plan(spec)
    analytic, xla = complexity.flops(plan), xla_flops(plan)
    # XLA also counts the ReLUs, bias adds and pools (a few percent); the
    # convolutions, counted the same way, are the rest.
    assert analytic <= xla
    assert xla / analytic - 1 < 0.03


def test_int8_model_is_about_a_quarter_of_float32():
    plan = arch.plan(arch.preset("squeezenet1_1"))
    ratio = complexity.bytes_int8(plan) / complexity.bytes_f32(plan)
    assert 0.25 <= ratio < 0.27
    assert complexity.bytes_f32(plan) == 4 * complexity.params(plan)


def test_flops_grow_with_squeeze_ratio():
    base = arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1)
    flops = [
        complexity.flops(arch.plan(base.replace(squeeze_ratio=sr)))
        for sr in (0.125, 0.25, 0.5, 1.0)
    ]
    assert flops == sorted(flops) and len(set(flops)) == 4
