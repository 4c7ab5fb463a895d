"""SqueezeNet metaparameters, the two presets, and the per-layer plan.

`ArchSpec` is one point of the design space of the SqueezeNet paper (Iandola et
al. 2016, Section 5): a frozen, hashable record of metaparameters. `plan(spec)`
is a pure function that turns it into a layer table (widths, pools, shortcuts,
spatial sizes), the way pycls's `generate_regnet` turns (w_a, w_0, w_m, d) into
stages. Everything downstream (complexity, model, training) reads the plan.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

Bypass = Literal["none", "simple", "complex"]
BYPASS_CHOICES = ("none", "simple", "complex")
HEAD_INITS = ("lecun_normal", "normal_0.01")


class ArchError(ValueError):
    """A metaparameter value, or a combination of them, that makes no network."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """Metaparameters of one SqueezeNet-like network (defaults: SqueezeNet 1.1)."""

    # Data the network is built for.
    num_classes: int = 1000
    image_size: int = 224  # square inputs, H = W
    in_channels: int = 3
    # Stem (conv1). Its kernel and stride decide how much spatial map is left for
    # the Fire modules, so small inputs need a different one (see `stem_for`).
    conv1_filters: int = 64
    conv1_kernel: int = 3
    conv1_stride: int = 2
    conv1_padding: int = 0  # torchvision pads conv1 with 0 pixels
    # Fire-module widths, paper Section 5: e_i = base_e + incr_e * floor(i / freq).
    num_fire: int = 8  # fire2..fire9 in the paper
    base_e: int = 128
    incr_e: int = 128
    freq: int = 2
    pct3x3: float = 0.5  # fraction of expand filters that are 3x3
    squeeze_ratio: float = 0.125  # SR: squeeze width = SR * expand width
    # 3x3/2 max-pools (ceil mode, as torchvision), after the named layers.
    pool_after: tuple[str, ...] = ("conv1", "fire3", "fire5")
    # Paper Section 6: identity shortcuts where widths match ("simple"), plus
    # 1x1-conv shortcuts around the other modules ("complex").
    bypass: Bypass = "none"
    dropout: float = 0.5  # before conv10, as in the paper
    # The head. torchvision ends with ReLU after conv10 and inits conv10 with
    # N(0, 0.01); from scratch that head barely trains with SGD (measured:
    # 41% after 2 epochs on Fashion-MNIST against 82% without the ReLU), so the
    # default is a linear head with LeCun init. Neither changes the parameters.
    head_relu: bool = False
    head_init: str = "lecun_normal"

    def replace(self, **changes) -> ArchSpec:
        """A copy with some metaparameters changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """Plain dict of the metaparameters (pool_after as a list)."""
        d = dataclasses.asdict(self)
        d["pool_after"] = list(self.pool_after)
        return d


FIELDS = {f.name: f for f in dataclasses.fields(ArchSpec)}


# ---------------------------------------------------------------- presets
# torchvision.models.squeezenet1_0 / squeezenet1_1 at 224x224x3, 1000 classes.
PRESETS: dict[str, ArchSpec] = {
    "squeezenet1_0": ArchSpec(
        conv1_filters=96,
        conv1_kernel=7,
        conv1_stride=2,
        pool_after=("conv1", "fire4", "fire8"),
    ),
    "squeezenet1_1": ArchSpec(),
}

# Inputs at most this wide get the small-input stem (see `stem_for`).
SMALL_INPUT = 64


def stem_for(spec: ArchSpec) -> ArchSpec:
    """Adapt a preset's stem to its input size (documented default for small inputs).

    A 224-pixel stem (stride 2, then three stride-2 pools) leaves a 28x28 image
    with a 1x1 map before fire9. For inputs up to 64 pixels conv1 becomes 3x3,
    stride 1, padding 1, keeping its filters and the preset's pool positions:
    28x28 -> 28 -> 14 -> 7 -> 3 and 32x32 -> 32 -> 16 -> 8 -> 4.
    """
    if spec.image_size > SMALL_INPUT:
        return spec
    return spec.replace(conv1_kernel=3, conv1_stride=1, conv1_padding=1)


def preset(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    in_channels: int = 3,
) -> ArchSpec:
    """A named preset for the given data, with the small-input stem where needed."""
    if name not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise ArchError("base", f"unknown preset {name!r}; known presets: {known}")
    spec = PRESETS[name].replace(
        num_classes=num_classes, image_size=image_size, in_channels=in_channels
    )
    return stem_for(spec)


# ---------------------------------------------------------------- plan
@dataclasses.dataclass(frozen=True)
class FireSpec:
    """One Fire module of the plan, with its input and output sizes."""

    name: str  # fire2 ... fire{num_fire+1}
    in_ch: int
    s1x1: int
    e1x1: int
    e3x3: int
    shortcut: Literal["none", "identity", "conv"]
    size_in: int  # spatial size (H = W) of its input
    pool: bool  # a 3x3/2 max-pool follows it
    size_out: int  # spatial size after the pool, if any

    @property
    def out_ch(self) -> int:
        return self.e1x1 + self.e3x3


@dataclasses.dataclass(frozen=True)
class Plan:
    """Layer table of one network: stem, Fire modules, head."""

    spec: ArchSpec
    conv1_size: int  # spatial size after conv1 (before its pool)
    stem_pool: bool
    stem_out: int  # spatial size entering fire2
    fires: tuple[FireSpec, ...]

    @property
    def head_in(self) -> int:
        return self.fires[-1].out_ch if self.fires else self.spec.conv1_filters

    @property
    def head_size(self) -> int:
        return self.fires[-1].size_out if self.fires else self.stem_out


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() goes to even)."""
    return int(math.floor(x + 0.5))


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output size of a convolution (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int, kernel: int = 3, stride: int = 2) -> int:
    """Output size of torchvision's MaxPool2d(kernel, stride, ceil_mode=True)."""
    out = -(-(size - kernel) // stride) + 1
    # torchvision drops a last window that would start outside the input.
    if (out - 1) * stride >= size:
        out -= 1
    return out


def fire_widths(spec: ArchSpec, i: int) -> tuple[int, int, int]:
    """(s1x1, e1x1, e3x3) of Fire module i = 0..num_fire-1 (paper Section 5)."""
    e = spec.base_e + spec.incr_e * (i // spec.freq)
    e3 = round_half_up(spec.pct3x3 * e)
    e1 = e - e3
    s = max(1, round_half_up(spec.squeeze_ratio * e))
    return s, e1, e3


def layer_names(spec: ArchSpec) -> tuple[str, ...]:
    """Names of the layers a pool may follow: conv1, fire2, ..."""
    return ("conv1",) + tuple(f"fire{i + 2}" for i in range(spec.num_fire))


def check(spec: ArchSpec) -> None:
    """Raise ArchError naming the metaparameter if the spec makes no network."""
    positive = (
        "num_classes",
        "image_size",
        "in_channels",
        "conv1_filters",
        "conv1_kernel",
        "conv1_stride",
        "num_fire",
        "base_e",
        "freq",
    )
    for key in positive:
        if getattr(spec, key) < 1:
            raise ArchError(key, f"expected an integer >= 1, got {getattr(spec, key)}")
    if spec.incr_e < 0:
        raise ArchError("incr_e", f"expected an integer >= 0, got {spec.incr_e}")
    if spec.conv1_padding < 0:
        raise ArchError("conv1_padding", f"expected >= 0, got {spec.conv1_padding}")
    if not 0.0 <= spec.pct3x3 <= 1.0:
        raise ArchError("pct3x3", f"expected a fraction in [0, 1], got {spec.pct3x3}")
    if not 0.0 < spec.squeeze_ratio <= 4.0:
        raise ArchError("squeeze_ratio", f"expected a ratio in (0, 4], got {spec.squeeze_ratio}")
    if not 0.0 <= spec.dropout < 1.0:
        raise ArchError("dropout", f"expected a rate in [0, 1), got {spec.dropout}")
    if spec.bypass not in BYPASS_CHOICES:
        raise ArchError(
            "bypass", f"expected one of {', '.join(BYPASS_CHOICES)}, got {spec.bypass!r}"
        )
    if spec.head_init not in HEAD_INITS:
        raise ArchError(
            "head_init", f"expected one of {', '.join(HEAD_INITS)}, got {spec.head_init!r}"
        )
    names = layer_names(spec)
    for p in spec.pool_after:
        if p not in names:
            raise ArchError(
                "pool_after",
                f"no layer {p!r} to pool after; this network has {names[0]}..{names[-1]}",
            )
    if len(set(spec.pool_after)) != len(spec.pool_after):
        raise ArchError("pool_after", f"a layer is listed twice: {list(spec.pool_after)}")


def plan(spec: ArchSpec) -> Plan:
    """Per-layer widths and spatial sizes from the metaparameters (paper Section 5)."""
    check(spec)
    size = conv_out(spec.image_size, spec.conv1_kernel, spec.conv1_stride, spec.conv1_padding)
    if size < 1:
        raise ArchError(
            "conv1_kernel",
            f"a {spec.conv1_kernel}x{spec.conv1_kernel} conv1 with stride "
            f"{spec.conv1_stride} leaves no output on a {spec.image_size}-pixel input",
        )
    conv1_size = size
    stem_pool = "conv1" in spec.pool_after
    size = _pooled(size, "conv1") if stem_pool else size
    stem_out, in_ch = size, spec.conv1_filters
    fires = []
    for i in range(spec.num_fire):
        name = f"fire{i + 2}"
        s, e1, e3 = fire_widths(spec, i)
        out_ch = e1 + e3
        if spec.bypass == "none":
            shortcut = "none"
        elif in_ch == out_ch:
            shortcut = "identity"
        else:
            shortcut = "conv" if spec.bypass == "complex" else "none"
        pool = name in spec.pool_after
        size_out = _pooled(size, name) if pool else size
        fires.append(FireSpec(name, in_ch, s, e1, e3, shortcut, size, pool, size_out))
        size, in_ch = size_out, out_ch
    return Plan(spec, conv1_size, stem_pool, stem_out, tuple(fires))


def _pooled(size: int, after: str) -> int:
    if size < 3:
        raise ArchError(
            "pool_after",
            f"the map is {size}x{size} after {after}, too small for a 3x3 pool; "
            "pool later or less, or use a smaller conv1 stride",
        )
    return pool_out(size)


def layer_table(p: Plan) -> list[dict]:
    """Rows of the layer table, for printing (`explorer inspect --layers`)."""
    s = p.spec
    rows = [
        dict(
            layer="conv1",
            in_ch=s.in_channels,
            out_ch=s.conv1_filters,
            s1x1="",
            e1x1="",
            e3x3="",
            shortcut="",
            size=f"{s.image_size}->{p.conv1_size}",
            pool="yes" if p.stem_pool else "",
        )
    ]
    for f in p.fires:
        rows.append(
            dict(
                layer=f.name,
                in_ch=f.in_ch,
                out_ch=f.out_ch,
                s1x1=f.s1x1,
                e1x1=f.e1x1,
                e3x3=f.e3x3,
                shortcut=f.shortcut if f.shortcut != "none" else "",
                size=f"{f.size_in}",
                pool="yes" if f.pool else "",
            )
        )
    rows.append(
        dict(
            layer="conv10",
            in_ch=p.head_in,
            out_ch=s.num_classes,
            s1x1="",
            e1x1="",
            e3x3="",
            shortcut="",
            size=f"{p.head_size}",
            pool="avg",
        )
    )
    return rows
