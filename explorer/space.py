"""Search-space YAML -> validated Space -> points (grid or seeded random).

Every problem with a space file raises `SpaceError` with one line naming the
file, the key path and what was expected; the CLI prints it and exits with 2.
A space file is untrusted input: `spacefile` reads it with every size bounded,
messages show a value through `excerpt` (its type and a few dozen characters),
and the number of points is checked, as a product, before any point is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pydantic

from explorer import architecture as arch
from explorer import search as searches
from explorer import spacefile
from explorer.data import DatasetError, info
from explorer.domains import (  # noqa: F401  (re-exported: the keys a space may set)
    ARCH_TYPES,
    COMPRESS_KEYS,
    DATA_KEYS,
    MAX_POINTS,
    MAX_SEEDS,
    RECIPE_KEYS,
    SPACE_KEYS,
    Domain,
    check_finite,
    check_size,
    check_value,
    domain,
    kind,
    label,
    pydantic_error,
    read_objectives,
    section,
)
from explorer.recipe import (
    Compression,
    Constraints,
    DatasetConfig,
    Recipe,
    Resources,
    SearchConfig,
)
from explorer.spacefile import SpaceError, excerpt

# A tensorflow-datasets name, optionally with a config and a version.
DATASET_NAME = re.compile(r"[A-Za-z0-9_]{1,64}(/[A-Za-z0-9_.\-]{1,64})?(:[0-9.*]{1,20})?")

TOP_KEYS = {
    "name",
    "description",
    "base",
    "dataset",
    "space",
    "train",
    "search",
    "objectives",
    "constraints",
    "resources",
    "compress",
}


@dataclasses.dataclass(frozen=True)
class Space:
    """A validated space file."""

    path: str
    name: str
    description: str
    base: str
    base_spec: arch.ArchSpec  # the base preset, adapted to the data set
    dataset: DatasetConfig
    domains: dict[str, Domain]
    recipe: Recipe
    search: SearchConfig
    objectives: dict[str, str]
    constraints: Constraints
    resources: Resources
    # What the space says, hashed (not its comments or layout): a sweep's rows carry it,
    # so rows of another space never count as done.
    digest: str = ""
    # Deep Compression after training (its fixed settings); None: none
    compress: Compression | None = None

    @property
    def varied(self) -> list[str]:
        """Keys that take more than one value."""
        return [k for k, d in self.domains.items() if not (d.kind == "fixed")]


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a space: a network and the recipe that trains it."""

    index: int
    arch: arch.ArchSpec
    recipe: Recipe
    values: dict  # the space's keys and their values at this point
    compress: Compression | None = None  # Deep Compression after training


# ---------------------------------------------------------------- loading
def load(path: str | Path) -> Space:
    """Read and validate a space file; raise SpaceError naming file and key."""
    path = Path(path)
    doc = spacefile.read(path)  # size, text, aliases, depth and duplicate keys bounded
    if not isinstance(doc, dict):
        raise SpaceError(path, "", f"expected a mapping of keys, got {kind(doc)}")
    return from_dict(doc, path)


def from_dict(doc: dict, path: str | Path = "<space>") -> Space:
    """Validate a parsed space document."""
    unknown = sorted(label(k) for k in doc if str(k) not in TOP_KEYS)
    if unknown:
        raise SpaceError(
            path, unknown[0], f"unknown key; expected one of {', '.join(sorted(TOP_KEYS))}"
        )
    name = doc.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        raise SpaceError(path, "name", f"expected a non-empty string, got {excerpt(name)}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpaceError(path, "description", f"expected a string, got {kind(description)}")
    base = doc.get("base", "squeezenet1_1")
    if not isinstance(base, str) or base not in arch.PRESETS:
        raise SpaceError(
            path, "base", f"expected one of {', '.join(arch.PRESETS)}, got {excerpt(base)}"
        )
    dataset = section(DatasetConfig, doc, "dataset", path)
    if not DATASET_NAME.fullmatch(dataset.name):
        raise SpaceError(
            path,
            "dataset.name",
            f"expected a tensorflow-datasets name like fashion_mnist, got {excerpt(dataset.name)}",
        )
    try:
        data = info(dataset.name, dataset.data_dir)
    except DatasetError as e:
        raise SpaceError(path, "dataset.name", str(e)) from None
    base_spec = arch.preset(
        base,
        num_classes=data.num_classes,
        image_size=data.image_size,
        in_channels=data.in_channels,
    )
    recipe = section(Recipe, doc, "train", path)
    search = section(SearchConfig, doc, "search", path)
    constraints = section(Constraints, doc, "constraints", path)
    resources = section(Resources, doc, "resources", path)
    objectives = read_objectives(doc.get("objectives", {"accuracy": "max", "params": "min"}), path)
    raw_space = doc.get("space", {}) or {}
    if not isinstance(raw_space, dict):
        raise SpaceError(
            path, "space", f"expected a mapping of metaparameters, got {kind(raw_space)}"
        )
    domains = {str(k): domain(str(k), v, path) for k, v in raw_space.items()}
    compress = _compress(doc, domains, path)
    check_size(path, search)
    space = Space(
        str(path),
        name,
        description,
        base,
        base_spec,
        dataset,
        domains,
        recipe,
        search,
        objectives,
        constraints,
        resources,
        content_digest(doc),
        compress,
    )
    _check_points(space)
    return space


def _compress(doc: dict, domains: dict, path) -> Compression | None:
    """The `compress:` section: fixed settings, and the varied ones added to `domains`.

    None when neither it nor `space:` names a compression setting.
    """
    raw = doc.get("compress")
    if raw is None and not COMPRESS_KEYS & set(domains):
        return None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SpaceError(path, "compress", f"expected a mapping, got {kind(raw)}")
    fixed = {}
    for k, v in raw.items():
        if str(k) not in COMPRESS_KEYS:
            raise SpaceError(
                path,
                f"compress.{label(k)}",
                f"unknown key; expected one of {', '.join(sorted(COMPRESS_KEYS))}",
            )
        if str(k) in domains:
            raise SpaceError(path, f"compress.{k}", "is also in space:; set it in one place")
        d = domain(str(k), v, path, "compress")
        if d.kind == "fixed":
            fixed[str(k)] = d.values[0]
        else:
            domains[str(k)] = d
    return Compression(**fixed)


def content_digest(doc: dict) -> str:
    """A short hash of a parsed space document (keys sorted; layout and comments ignored)."""
    text = json.dumps(doc, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- points
def make_point(space: Space, index: int, values: dict) -> Point:
    """The point of a space with these values for its keys (others keep the base's)."""
    arch_changes = {k: v for k, v in values.items() if k in ARCH_TYPES}
    recipe_changes = {k: v for k, v in values.items() if k in RECIPE_KEYS}
    spec = space.base_spec
    if "base" in values:
        spec = arch.preset(
            values["base"],
            num_classes=spec.num_classes,
            image_size=spec.image_size,
            in_channels=spec.in_channels,
        )
    spec = spec.replace(**arch_changes)
    recipe = space.recipe.model_copy(update=recipe_changes)
    compress = space.compress
    if compress is not None:
        compress = compress.model_copy(
            update={k: v for k, v in values.items() if k in COMPRESS_KEYS}
        )
    return Point(index, spec, recipe, dict(values), compress)


def grid(space: Space) -> list[Point]:
    """Every combination of the discrete domains, in file order."""
    for key, d in space.domains.items():
        if not d.is_discrete:
            raise SpaceError(
                space.path,
                f"space.{key}",
                f"grid search needs fixed values or {{values: [...]}}, got {d.kind}",
            )
    size = math.prod(len(d.values) for d in space.domains.values())
    if size > MAX_POINTS:  # counted before a point is made
        raise SpaceError(
            space.path,
            "space",
            f"the grid has {size:,} points, more than {MAX_POINTS:,}; list fewer values "
            "or draw a sample (search: {method: random, num_samples: N})",
        )
    keys = list(space.domains)
    combos = itertools.product(*(space.domains[k].values for k in keys))
    return [make_point(space, i, dict(zip(keys, c, strict=True))) for i, c in enumerate(combos)]


def sample(space: Space, n: int | None = None, seed: int | None = None) -> list[Point]:
    """n points drawn at random, no two alike while the space has points left; the
    same seed gives the same points.

    A draw that repeats an earlier point (a wasted trial) is drawn again, from a
    stream of its own and unlike every first draw, so the points drawn unlike the
    ones before them keep their values whatever the repeats become."""
    n = space.search.num_samples if n is None else n
    seed = space.search.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    draws = [{k: d.sample(rng) for k, d in space.domains.items()} for _ in range(n)]
    taken = {repr(v) for v in draws}
    left = math.prod(_count(d) for d in space.domains.values()) - len(taken)
    again = np.random.default_rng([seed, 1])
    seen: set[str] = set()  # the points kept so far (all of them in `taken`)
    for i, values in enumerate(draws):
        key = repr(values)
        for _ in range(10_000 if key in seen and left > 0 else 0):
            other = {k: d.sample(again) for k, d in space.domains.items()}
            if repr(other) not in taken:
                values, key = other, repr(other)
                taken.add(key)
                left -= 1
                break
        seen.add(key)
        draws[i] = values
    return [make_point(space, i, values) for i, values in enumerate(draws)]


def _count(d: Domain) -> float:
    """How many values a domain holds (a continuous range: without end)."""
    if d.is_discrete:
        return len(d.values)
    return int(d.high) - int(d.low) + 1 if d.kind == "int" else math.inf


def points(space: Space) -> list[Point]:
    """The space's points: the grid, or the seeded random sample of a sampled method."""
    return sample(space) if searches.METHODS[space.search.method].sampled else grid(space)


def candidates(space: Space) -> list[Point]:
    """The points a proposer chooses from: the grid of a discrete space within the grid
    limit, else MAX_POINTS drawn at random (numbered as drawn)."""
    if all(d.is_discrete for d in space.domains.values()):
        if math.prod(len(d.values) for d in space.domains.values()) <= MAX_POINTS:
            return grid(space)
    return sample(space, n=MAX_POINTS)


def _check_points(space: Space) -> None:
    """Plan every grid point (or a sample) so impossible networks fail at load."""
    if not searches.METHODS[space.search.method].sampled:
        pts = grid(space)
        if not pts:
            raise SpaceError(space.path, "space", "the grid is empty")
    else:
        pts = sample(space, n=max(space.search.num_samples, 64))
    for p in pts:
        try:
            arch.plan(p.arch)
        except arch.ArchError as e:
            key = f"space.{e.key}" if e.key in space.domains else f"base {space.base}: {e.key}"
            at = ", ".join(f"{k}={v}" for k, v in p.values.items() if k in space.varied)
            raise SpaceError(space.path, key, e.message + (f" (at {at})" if at else "")) from None
        try:  # a recipe that is valid key by key can still be inconsistent
            Recipe(**p.recipe.model_dump())
        except pydantic.ValidationError as e:
            raise pydantic_error(e, space.path, "train") from None


def point_from_config(space: Space, config: dict) -> tuple[Point, list[int]]:
    """A trial's point and seeds from its Tune config.

    The driver enumerates grid and random points (`{"index", "values", "seeds"}`);
    a searcher proposes the space's keys directly, and its point is numbered
    later (index -1), with every seed.
    """
    config = config.get("cfg", config)
    if "index" in config:
        point = make_point(space, config["index"], config["values"])
        return point, list(config.get("seeds", space.search.training_seeds))
    values = {k: config[k] for k in space.domains}
    return make_point(space, -1, values), space.search.training_seeds
