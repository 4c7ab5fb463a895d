"""What a command works on: a space file's points, or one preset with overrides.

`explorer inspect` and `explorer train` take either a space file or `--model`
(with `--dataset` or explicit input sizes), plus `--set key=value` overrides
checked like a space file's values.
"""

from __future__ import annotations

import dataclasses

import yaml

from explorer import architecture as arch
from explorer import space as spaces
from explorer.data import info


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit status 2."""


def parse_sets(pairs: list[str]) -> dict:
    """`--set key=value` pairs, values parsed as YAML and checked like a space file."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {pair}: expected key=value, e.g. squeeze_ratio=0.25")
        if key in spaces.DATA_KEYS:
            raise UsageError(f"--set {key}: set by the data set; use --dataset or --image-size")
        if key not in spaces.SPACE_KEYS:
            raise UsageError(
                f"--set {key}: unknown metaparameter; expected one of "
                + ", ".join(sorted(spaces.SPACE_KEYS))
            )
        try:
            value = spaces.spacefile.loads(raw, "--set", key)  # YAML 1.2, bounded
        except yaml.YAMLError:
            value = raw
        out[key] = spaces.check_value(key, value, "--set", key)
    return out


@dataclasses.dataclass(frozen=True)
class Selection:
    """The points a command works on, and the space they come from (None for a preset)."""

    name: str
    points: list[spaces.Point]
    space: spaces.Space | None


def select(
    space_path: str | None,
    model: str = "squeezenet1_1",
    dataset: str | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    sets: list[str] | None = None,
    point: int | None = None,
) -> Selection:
    """A space file's points (all, or one), or one preset, with --set overrides applied."""
    changes = parse_sets(sets or [])
    if space_path:
        space = spaces.load(space_path)
        pts = spaces.points(space)
        if changes:
            pts = [spaces.make_point(space, p.index, {**p.values, **changes}) for p in pts]
        if point is not None:
            if not 0 <= point < len(pts):
                raise UsageError(f"--point {point}: the space has points 0..{len(pts) - 1}")
            pts = [pts[point]]
        return Selection(space.name, pts, space)
    data = info(dataset) if dataset else None
    spec = arch.preset(
        model,
        num_classes=num_classes or (data.num_classes if data else 1000),
        image_size=image_size or (data.image_size if data else 224),
        in_channels=in_channels or (data.in_channels if data else 3),
    )
    space = spaces.from_dict(
        {"name": model, "base": model, "dataset": {"name": dataset or "fashion_mnist"}}, "--model"
    )
    arch_sets = {k: v for k, v in changes.items() if k in spaces.ARCH_TYPES}
    recipe = space.recipe.model_copy(
        update={k: v for k, v in changes.items() if k not in arch_sets}
    )
    return Selection(model, [spaces.Point(0, spec.replace(**arch_sets), recipe, changes)], None)
