"""The generator: presets against torchvision, the plan's formulas, bad specs."""

import jax
import jax.numpy as jnp
import pytest

from explorer import architecture as arch
from explorer import complexity, models


@pytest.mark.parametrize(
    "name, params", [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)]
)
def test_presets_match_torchvision_parameter_counts(name, params):
    plan = arch.plan(arch.preset(name))
    assert complexity.params(plan) == params
    assert models.count_params(models.param_shapes(models.build(plan))) == params


# Spatial size entering each Fire module and conv10 in torchvision (ceil-mode pools).
TORCHVISION_SIZES = {
    "squeezenet1_0": (109, [54, 54, 54, 27, 27, 27, 27, 13], 13),
    "squeezenet1_1": (111, [55, 55, 27, 27, 13, 13, 13, 13], 13),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_SIZES))
def test_spatial_sizes_follow_torchvision_layer_by_layer(name):
    plan = arch.plan(arch.preset(name))
    conv1, fires, head = TORCHVISION_SIZES[name]
    assert plan.conv1_size == conv1
    assert [f.size_in for f in plan.fires] == fires
    assert plan.head_size == head


def test_squeezenet1_0_fire_widths_are_the_papers():
    plan = arch.plan(arch.preset("squeezenet1_0"))
    widths = [(f.s1x1, f.e1x1, f.e3x3) for f in plan.fires]
    assert widths == [
        (16, 64, 64),
        (16, 64, 64),
        (32, 128, 128),
        (32, 128, 128),
        (48, 192, 192),
        (48, 192, 192),
        (64, 256, 256),
        (64, 256, 256),
    ]


def test_model_output_shape_and_intermediate_shapes():
    spec = arch.preset("squeezenet1_1")
    model = models.build(spec)
    x = jnp.zeros(models.input_shape(spec, 2))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    assert out.shape == (2, 1000)
    # fire9's output map is 13x13x512, as in torchvision.
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, capture_intermediates=True), variables, x
    )
    assert state["intermediates"]["fire9"]["__call__"][0].shape == (2, 13, 13, 512)


def test_small_input_stem_default_keeps_a_useful_map():
    spec = arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1)
    plan = arch.plan(spec)
    assert (spec.conv1_kernel, spec.conv1_stride, spec.conv1_padding) == (3, 1, 1)
    assert [plan.conv1_size, plan.stem_out, plan.head_size] == [28, 14, 3]
    assert complexity.params(plan) == 726_474
    cifar = arch.plan(arch.preset("squeezenet1_0", num_classes=10, image_size=32))
    assert cifar.head_size == 4


def test_widths_follow_the_papers_formula():
    spec = arch.ArchSpec(base_e=64, incr_e=32, freq=3, pct3x3=0.25, squeeze_ratio=0.5)
    for i, f in enumerate(arch.plan(spec).fires):
        e = 64 + 32 * (i // 3)
        assert f.e3x3 == arch.round_half_up(0.25 * e)
        assert f.e1x1 + f.e3x3 == e
        assert f.s1x1 == arch.round_half_up(0.5 * e)


def test_bypass_shortcuts_sit_where_the_paper_puts_them():
    simple = arch.plan(arch.preset("squeezenet1_0").replace(bypass="simple"))
    assert [f.name for f in simple.fires if f.shortcut == "identity"] == [
        "fire3",
        "fire5",
        "fire7",
        "fire9",
    ]
    complex_ = arch.plan(arch.preset("squeezenet1_0").replace(bypass="complex"))
    assert [f.name for f in complex_.fires if f.shortcut == "conv"] == [
        "fire2",
        "fire4",
        "fire6",
        "fire8",
    ]
    extra = complexity.params(complex_) - complexity.params(simple)
    assert extra == sum(
        f.in_ch * f.out_ch + f.out_ch for f in complex_.fires if f.shortcut == "conv"
    )


def test_pure_1x1_and_pure_3x3_expands_build_and_run():
    for pct in (0.0, 1.0):
        spec = arch.preset("squeezenet1_1", num_classes=10, image_size=28, in_channels=1)
        spec = spec.replace(pct3x3=pct)
        model = models.build(spec)
        x = jnp.ones(models.input_shape(spec, 1))
        variables = model.init(jax.random.key(0), x)
        assert model.apply(variables, x).shape == (1, 10)
        assert models.count_params(variables["params"]) == complexity.params(arch.plan(spec))


@pytest.mark.parametrize(
    "changes, key",
    [
        (dict(pool_after=("conv1", "fire12")), "pool_after"),
        (dict(pool_after=("conv1", "conv1")), "pool_after"),
        (dict(squeeze_ratio=0.0), "squeeze_ratio"),
        (dict(pct3x3=1.5), "pct3x3"),
        (dict(bypass="dense"), "bypass"),
        (dict(freq=0), "freq"),
        (dict(image_size=28, conv1_kernel=7, conv1_stride=2), "pool_after"),
        (dict(image_size=5, conv1_kernel=7), "conv1_kernel"),
    ],
)
def test_impossible_specs_are_rejected_before_building(changes, key):
    with pytest.raises(arch.ArchError) as e:
        arch.plan(arch.ArchSpec().replace(**changes))
    assert e.value.key == key


def test_spec_is_hashable_and_frozen():
    a, b = arch.preset("squeezenet1_1"), arch.preset("squeezenet1_1")
    assert hash(a) == hash(b) and a == b
    with pytest.raises(AttributeError):
        a.base_e = 3
