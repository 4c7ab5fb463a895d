"""Space files: the shipped ones, reproducible points, and malformed files."""

import subprocess
import sys

import numpy as np
import pytest

from explorer import architecture as arch
from explorer import cli, complexity
from explorer import space as spaces

from .conftest import SPACES


@pytest.mark.parametrize("name", ["squeeze_ratio", "pct3x3", "bypass", "quickstart"])
def test_shipped_spaces_load_and_plan(name):
    space = spaces.load(SPACES / f"{name}.yaml")
    pts = spaces.points(space)
    varied = [d for d in space.domains.values() if d.kind != "fixed"]
    assert len(pts) == np.prod([len(d.values) for d in varied])  # the whole grid
    assert len({p.arch for p in pts}) == len(pts)  # each point a different network
    for p in pts:
        plan = arch.plan(p.arch)
        assert len(plan.fires) == p.arch.num_fire and plan.fires[-1].out_ch > 0
    assert space.base_spec.image_size == 28 and space.base_spec.num_classes == 10


def test_grid_is_every_combination_in_file_order(write_space):
    path = write_space("""
space:
  squeeze_ratio: {values: [0.25, 0.5]}
  bypass: {values: [none, simple, complex]}
  pct3x3: 0.25
""")
    pts = spaces.points(spaces.load(path))
    assert [(p.arch.squeeze_ratio, p.arch.bypass) for p in pts] == [
        (sr, b) for sr in (0.25, 0.5) for b in ("none", "simple", "complex")
    ]
    assert all(p.arch.pct3x3 == 0.25 for p in pts)
    assert [p.index for p in pts] == list(range(6))


def test_random_sampling_is_reproducible_and_seeded(write_space):
    text = """
space:
  squeeze_ratio: {uniform: [0.1, 1.0]}
  learning_rate: {loguniform: [0.001, 0.1]}
  base_e: {int: [32, 160]}
  bypass: {values: [none, simple]}
search: {method: random, num_samples: 12, seed: SEED}
"""
    a = spaces.points(spaces.load(write_space(text.replace("SEED", "3"), "a.yaml")))
    b = spaces.points(spaces.load(write_space(text.replace("SEED", "3"), "b.yaml")))
    c = spaces.points(spaces.load(write_space(text.replace("SEED", "4"), "c.yaml")))
    assert [p.values for p in a] == [p.values for p in b]
    assert [p.values for p in a] != [p.values for p in c]
    assert len(a) == 12
    for p in a:
        assert 0.1 <= p.arch.squeeze_ratio <= 1.0
        assert 0.001 <= p.recipe.learning_rate <= 0.1
        assert 32 <= p.arch.base_e <= 160 and isinstance(p.arch.base_e, int)


def test_a_random_sample_never_repeats_a_point_while_the_space_has_points_left(write_space):
    text = """
space:
  base_e: {values: [16, 32, 64]}
  bypass: {values: [none, simple, complex]}
search: {method: random, num_samples: N, seed: 5}
"""
    space = spaces.load(write_space(text.replace("N", "7"), "seven.yaml"))
    pts = spaces.points(space)
    assert len({repr(p.values) for p in pts}) == 7  # of the 9 there are
    # the first draws, made independently: the ones unlike those before them stay
    rng = np.random.default_rng(5)
    first = [{k: d.sample(rng) for k, d in space.domains.items()} for _ in range(7)]
    repeats = [i for i, v in enumerate(first) if v in first[:i]]
    assert repeats, "this seed draws a point twice"
    for i, (p, v) in enumerate(zip(pts, first, strict=True)):
        assert (p.values == v) == (i not in repeats)
    # more points asked than the space holds: every one of them, then repeats
    many = spaces.points(spaces.load(write_space(text.replace("N", "12"), "twelve.yaml")))
    assert len({repr(p.values) for p in many}) == 9 and len(many) == 12


def test_recipe_keys_in_the_space_reach_the_recipe(write_space):
    path = write_space("space: {learning_rate: {values: [0.01, 0.1]}}\ntrain: {epochs: 3}")
    pts = spaces.points(spaces.load(path))
    assert [p.recipe.learning_rate for p in pts] == [0.01, 0.1]
    assert all(p.recipe.epochs == 3 for p in pts)


def test_parameters_grow_with_squeeze_ratio_in_the_shipped_space():
    pts = spaces.points(spaces.load(SPACES / "squeeze_ratio.yaml"))
    params = [complexity.params(arch.plan(p.arch)) for p in pts]
    assert params == sorted(params) and len(set(params)) == len(params)


# (file text, text the error must contain). Each is a different mistake.
MALFORMED = [
    ("space: {squeez_ratio: 0.5}", "space.squeez_ratio: unknown metaparameter"),
    ("space: {squeeze_ratio: -0.5}", "space.squeeze_ratio: expected a ratio in (0, 4]"),
    ("space: {squeeze_ratio: {values: [0.5, 0]}}", "space.squeeze_ratio.values[1]"),
    ("space: {pct3x3: 1.5}", "space.pct3x3: expected a fraction in [0, 1]"),
    ("space: {pct3x3: abc}", "space.pct3x3"),
    ("space: {base_e: 12.5}", "space.base_e"),
    ("space: {bypass: dense}", "space.bypass"),
    ("space: {pool_after: {values: [[conv1, fire12]]}}", "space.pool_after: no layer 'fire12'"),
    (
        "space: {squeeze_ratio: {values: []}}",
        "space.squeeze_ratio.values: expected a non-empty list",
    ),
    ("space: {squeeze_ratio: {uniform: [0.9, 0.1]}}", "space.squeeze_ratio.uniform"),
    ("space: {learning_rate: {loguniform: [0, 0.1]}}", "space.learning_rate.loguniform"),
    (
        "space: {squeeze_ratio: {values: [0.5], uniform: [0.1, 1]}}",
        "space.squeeze_ratio: expected a value or exactly one of",
    ),
    ("space: {image_size: 64}", "space.image_size: is set by the data set"),
    ("space: {squeeze_ratio: {uniform: [0.1, 0.9]}}", "space.squeeze_ratio: grid search needs"),
    ("space: [squeeze_ratio]", "space: expected a mapping"),
    ("train: {epochs: 0}", "train.epochs"),
    ("train: {optimizer: rmsprop}", "train.optimizer"),
    ("train: {learnig_rate: 0.1}", "train.learnig_rate: unknown key"),
    (
        "train: {epochs: 2, warmup_epochs: 3}",
        "train: Value error, warmup_epochs (3.0) must be less than epochs",
    ),
    ("search: {method: bayes}", "search.method"),
    ("search: {seeds: 0}", "search.seeds"),
    ("objectives: {acuracy: max}", "objectives.acuracy: unknown metric"),
    ("objectives: {accuracy: up}", "objectives.accuracy: expected min or max"),
    ("constraints: {max_params: -5}", "constraints.max_params"),
    ("resources: {cpus_per_trial: 0}", "resources.cpus_per_trial"),
    ("dataset: {name: no_such_dataset_xyz}", "dataset.name: unknown data set"),
    ("base: squeezenet2_0", "base: expected one of squeezenet1_0, squeezenet1_1"),
    ("basis: squeezenet1_1", "basis: unknown key"),
    ("space: {conv1_stride: 4, conv1_kernel: 7}", "base squeezenet1_1: pool_after"),
    ("space: {squeeze_ratio: 0.5\n  pct3x3: 0.5", "line 2, column"),
    ("- just\n- a list", "expected a mapping of keys, got list"),
    ("", "expected a mapping of keys, got nothing"),
    # Untrusted input (tests/test_faults.py runs the costly ones in their own process).
    ("? " + "x" * 100_000 + "\n: 1", "x" * 40 + "…: unknown key"),
    ("space: {num_fire: 100000000}", "space.num_fire: expected at most 100, got int 100000000"),
    ("space: {base_e: " + "9" * 4000 + "}", "space.base_e: expected at most 2,147,483,647"),
    ("space: {base_e: {values: [" + "8, " * 20_000 + "]}}", "expected at most 10,000 values"),
    ("train: {learning_rate: .inf}", "train.learning_rate: expected a finite number"),
    ("space: {learning_rate: {uniform: [0.1, .inf]}}", "expected a finite number, got float inf"),
    ("search: {method: random, num_samples: 20000}", "search.num_samples: expected at most"),
    ("search: {method: random, seed: -1}", "search.seed: expected an integer >= 0"),
    ("search: {seeds: 5000}", "search.seeds: expected at most 1,000"),
    ("name: !!binary aGk=", "name: line 1: unsupported tag tag:yaml.org,2002:binary"),
    ("name: a\n---\nname: b", "line 2: a second YAML document"),
    ("train: &t {epochs: 3}\nsearch: {<<: *t}", "search.<<: unknown key"),
    ("space: {pool_after: [conv1, *nowhere]}", "space.pool_after[1]: line 1: alias *nowhere"),
    ("name: x\x01", "line 1, column 8: control character U+0001"),
    ("dataset: {name: '../../etc'}", "dataset.name: expected a tensorflow-datasets name"),
    ("objectives: {accuracy: [max]}", "objectives.accuracy: expected min or max, got a list"),
]


@pytest.mark.parametrize("text, expected", MALFORMED)
def test_malformed_space_files_exit_2_naming_the_key(write_space, capsys, text, expected):
    path = write_space(text)
    assert cli.main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"explorer: error: {path}: ")
    assert expected in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read the file" in capsys.readouterr().err


def test_the_console_script_exits_2_without_a_traceback(write_space):
    path = write_space("space: {squeeze_ratio: {values: [0.5, -1]}}")
    proc = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "space.squeeze_ratio.values[1]" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "search, resources, groups",
    [
        ("{seeds: 3}", "{cpus_per_trial: 1}", [[0], [1], [2]]),  # CPU: one trial a seed
        ("{seeds: 3}", "{gpus_per_trial: 0.25}", [[0, 1, 2]]),  # GPU: vmapped
        ("{seeds: 3, vmap_seeds: true}", "{cpus_per_trial: 1}", [[0, 1, 2]]),
        ("{seeds: 2, vmap_seeds: false}", "{gpus_per_trial: 1}", [[0], [1]]),
        ("{seeds: 2, first_seed: 1}", "{cpus_per_trial: 1}", [[1], [2]]),  # more seeds later
        ("{seeds: 2, first_seed: 3, vmap_seeds: true}", "{cpus_per_trial: 1}", [[3, 4]]),
    ],
)
def test_seeds_per_trial_follow_the_device_unless_set(write_space, search, resources, groups):
    from explorer.sweep import seed_groups

    text = f"name: s\nspace: {{squeeze_ratio: 0.5}}\nsearch: {search}\nresources: {resources}\n"
    assert seed_groups(spaces.load(write_space(text, "s.yaml"))) == groups
