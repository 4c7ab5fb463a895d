"""One metaparameter of a space: the keys a space may set, their domains and value checks;
the checks of the file's sections (`train:`, `search:`, `objectives:`, ...).

A value is checked against the metaparameter's type (`architecture.ArchSpec`'s
field, or the recipe's), then against the architecture's own range checks, so
an impossible value is an error naming the file and the key, before any point
is planned. Messages show a value through `spacefile.excerpt`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any

import numpy as np
import pydantic

from explorer import architecture as arch
from explorer import spacefile
from explorer.metrics import OBJECTIVES
from explorer.recipe import Compression, Recipe, SearchConfig
from explorer.spacefile import SpaceError, excerpt

ARCH_TYPES = typing.get_type_hints(arch.ArchSpec)
RECIPE_KEYS = set(Recipe.model_fields)
# Deep Compression's settings (a space's `compress:` section, or varied in `space:`).
COMPRESS_KEYS = set(Compression.model_fields)
# Set by the data set, never by the space.
DATA_KEYS = {"num_classes", "image_size", "in_channels"}
# "base" in a space's domains switches preset per point (e.g. SqueezeNet 1.0 vs 1.1);
# the point's other values then apply on top of that preset.
SPACE_KEYS = (set(ARCH_TYPES) - DATA_KEYS) | RECIPE_KEYS | COMPRESS_KEYS | {"base"}
DOMAIN_KINDS = ("values", "uniform", "loguniform", "int")
# A space's points: the grid's size (a product, checked before any point is
# made) or a sampled search's num_samples. Every point is planned at load and
# trained by a sweep; `inspect` takes about 4 s for the largest grid.
MAX_POINTS = 10_000
MAX_SEEDS = 1_000
# Integer metaparameters stay machine-sized; the plan's cost grows with num_fire.
ARCH_INT_MAX = {"num_fire": 100}
ARCH_INT_LIMIT = 2**31 - 1
# A tensorflow-datasets name, optionally with a config and a version.


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where one metaparameter ranges: fixed, a set of values, or a range."""

    kind: str  # fixed | values | uniform | loguniform | int
    values: tuple = ()  # fixed (one value) and values
    low: float = 0.0
    high: float = 0.0

    @property
    def is_discrete(self) -> bool:
        return self.kind in ("fixed", "values")

    def sample(self, rng: np.random.Generator):
        """One value drawn from the domain."""
        if self.is_discrete:
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return int(rng.integers(int(self.low), int(self.high) + 1))


def domain(key: str, raw, path, section: str = "space") -> Domain:
    """A space key's domain from its YAML value: fixed, values, or a range."""
    where = f"{section}.{label(key)}"
    if key in DATA_KEYS:
        raise SpaceError(path, where, "is set by the data set, not by the space")
    if key not in SPACE_KEYS:
        raise SpaceError(
            path, where, "unknown metaparameter; expected one of " + ", ".join(sorted(SPACE_KEYS))
        )
    if isinstance(raw, dict):
        kinds = [k for k in raw if k in DOMAIN_KINDS]
        extra = [k for k in raw if k not in DOMAIN_KINDS]
        if extra or len(kinds) != 1:
            raise SpaceError(
                path,
                where,
                "expected a value or exactly one of "
                + ", ".join(f"{{{k}: ...}}" for k in DOMAIN_KINDS)
                + f", got keys {excerpt(list(raw), typed=False)}",
            )
        kind = kinds[0]
        arg = raw[kind]
        if kind == "values":
            if not isinstance(arg, list) or not arg:
                raise SpaceError(path, f"{where}.values", "expected a non-empty list")
            if len(arg) > MAX_POINTS:
                raise SpaceError(
                    path,
                    f"{where}.values",
                    f"expected at most {MAX_POINTS:,} values, got {len(arg):,}",
                )
            vals = tuple(
                check_value(key, v, path, f"{where}.values[{i}]") for i, v in enumerate(arg)
            )
            return Domain("values", vals)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise SpaceError(path, f"{where}.{kind}", "expected [low, high]")
        lo, hi = (check_value(key, v, path, f"{where}.{kind}") for v in arg)
        if kind == "int" and not all(isinstance(v, int) and abs(v) < 2**62 for v in (lo, hi)):
            raise SpaceError(path, f"{where}.int", "expected integer bounds (below 2**62)")
        if isinstance(lo, bool) or not isinstance(lo, int | float) or not lo < hi:
            raise SpaceError(
                path, f"{where}.{kind}", f"expected numbers with low < high, got {excerpt(arg)}"
            )
        if kind == "loguniform" and lo <= 0:
            raise SpaceError(path, f"{where}.loguniform", f"expected low > 0, got {excerpt(lo)}")
        return Domain(kind, (), lo, hi)
    return Domain("fixed", (check_value(key, raw, path, where),))


def check_value(key: str, raw, path, where: str):
    """One value of a space key, checked against the metaparameter's type."""
    if key in RECIPE_KEYS:
        try:
            Recipe(**{key: raw, **({"epochs": 10**6} if key == "warmup_epochs" else {})})
        except pydantic.ValidationError as e:
            err = e.errors()[0]
            raise SpaceError(path, where, f"{err['msg']}, got {excerpt(raw)}") from None
        check_finite(raw, path, where)
        return raw
    if key in COMPRESS_KEYS:
        try:
            Compression(**{key: raw})
        except pydantic.ValidationError as e:
            err = e.errors()[0]
            raise SpaceError(path, where, f"{err['msg']}, got {excerpt(raw)}") from None
        check_finite(raw, path, where)
        return raw
    if key == "base":
        if not isinstance(raw, str) or raw not in arch.PRESETS:
            raise SpaceError(
                path, where, f"expected one of {', '.join(arch.PRESETS)}, got {excerpt(raw)}"
            )
        return raw
    typ = ARCH_TYPES[key]
    if key == "pool_after":
        if not (
            isinstance(raw, list)
            and len(raw) <= 64  # a network has a few layers, named like fire12
            and all(isinstance(x, str) and len(x) <= 64 for x in raw)
        ):
            raise SpaceError(
                path,
                where,
                f"expected a list of layer names like [conv1, fire3], got {excerpt(raw)}",
            )
        return tuple(raw)
    try:
        value = _adapter(typ).validate_python(raw, strict=True)
    except pydantic.ValidationError as e:
        raise SpaceError(path, where, f"{e.errors()[0]['msg']}, got {excerpt(raw)}") from None
    check_finite(value, path, where)
    limit = ARCH_INT_MAX.get(key, ARCH_INT_LIMIT)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        size = " in size" if value < 0 else ""
        raise SpaceError(path, where, f"expected at most {limit:,}{size}, got {excerpt(value)}")
    try:  # range checks live in one place: architecture.check
        arch.check(arch.ArchSpec().replace(**{key: value}))
    except arch.ArchError as e:
        if e.key == key:
            raise SpaceError(path, where, e.message) from None
    return value


@functools.cache
def _adapter(typ) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(typ)


def check_finite(value, path, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SpaceError(path, where, f"expected a finite number, got {excerpt(value)}")


def label(key) -> str:
    """A key from the file as it appears in a key path: clipped, on one line."""
    return spacefile.label(key)


def check_size(path, search: SearchConfig) -> None:
    """Refuse a search too big to enumerate (`grid` checks the grid's size)."""
    if search.num_samples > MAX_POINTS:
        raise SpaceError(
            path,
            "search.num_samples",
            f"expected at most {MAX_POINTS:,}, got {excerpt(search.num_samples)}",
        )
    if search.seeds > MAX_SEEDS:
        raise SpaceError(
            path, "search.seeds", f"expected at most {MAX_SEEDS:,}, got {excerpt(search.seeds)}"
        )
    if search.seed < 0:
        raise SpaceError(
            path, "search.seed", f"expected an integer >= 0, got {excerpt(search.seed)}"
        )


def section(model, doc: dict, key: str, path) -> Any:
    """A section of the file (`train:`, `search:`, ...) as its model, its values checked."""
    raw = doc.get(key, {}) or {}
    if not isinstance(raw, dict):
        raise SpaceError(path, key, f"expected a mapping, got {kind(raw)}")
    try:
        section = model(**{str(k): v for k, v in raw.items()})
    except pydantic.ValidationError as e:
        raise pydantic_error(e, path, key) from None
    for field, value in section.model_dump().items():
        check_finite(value, path, f"{key}.{field}")
    return section


def pydantic_error(e: pydantic.ValidationError, path, prefix: str) -> SpaceError:
    """A model's first validation error as a SpaceError naming the key."""
    err = e.errors(include_url=False)[0]
    loc = ".".join(label(x) for x in (prefix, *err["loc"]) if x != "")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and err["type"] != "missing":
        msg = f"{msg}, got {excerpt(err['input'])}"
    return SpaceError(path, loc, msg)


def read_objectives(raw, path) -> dict[str, str]:
    """The `objectives:` mapping, each a known metric and min or max."""
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(path, "objectives", "expected a mapping like {accuracy: max, params: min}")
    out = {}
    for metric, direction in raw.items():
        if metric not in OBJECTIVES:
            raise SpaceError(
                path,
                f"objectives.{label(metric)}",
                f"unknown metric; expected one of {', '.join(OBJECTIVES)}",
            )
        if not isinstance(direction, str) or direction not in ("min", "max"):
            raise SpaceError(
                path, f"objectives.{metric}", f"expected min or max, got {excerpt(direction)}"
            )
        out[str(metric)] = direction
    return out


def kind(x) -> str:
    """A value's type as a message names it."""
    return "nothing" if x is None else type(x).__name__
