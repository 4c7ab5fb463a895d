"""Hostile space files through the real CLI: one line, exit status 2, quick and small.

A space file is untrusted input. Each case below is one a hostile (or careless)
user could hand to `explorer inspect`: a few hundred bytes of YAML aliases that
stand for millions of values, nesting thousands of levels deep, a binary file, a
key given twice, a grid of millions of points. Each runs `python -m explorer.cli`
in its own process, which must end with exit status 2 and one line on stderr
naming the file and the key, within seconds and with its peak memory (read with
`os.wait4`) near that of a valid file. The processes run two at a time so the
module stays short; a `ulimit -v` makes a regression fail rather than fill the
machine.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from explorer import cli, spacefile
from explorer import space as spaces

from .conftest import ROOT

TIMEOUT_S = 60  # a hang fails the test instead of blocking the run
MAX_WALL_S = 20  # or twice a valid file's time, on a machine busy with other work
MAX_EXTRA_MB = 150  # over the peak memory of `inspect` on a valid file
GUARD_KB = 4 * 1024 * 1024  # ulimit -v of each run (a valid run maps about 0.6 GB)


@dataclasses.dataclass
class Run:
    returncode: int
    stderr: str
    wall_s: float
    peak_mb: float


def run_cli(*args: str) -> Run:
    """`python -m explorer.cli ARGS` in a fresh process: status, stderr, time and peak memory."""
    cmd = [sys.executable, "-m", "explorer.cli", *args]
    if os.path.exists("/bin/sh"):  # exec keeps the pid, so wait4 still measures Python
        cmd = ["/bin/sh", "-c", f'ulimit -v {GUARD_KB} 2>/dev/null; exec "$0" "$@"', *cmd]
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        timer = threading.Timer(TIMEOUT_S, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return Run(proc.returncode, stderr, wall, usage.ru_maxrss * scale / 2**20)


def bomb(levels: int = 7, width: int = 9) -> str:
    """A YAML value of a few hundred bytes that stands for width**levels strings."""
    parts = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def values(n: int, start: int = 1) -> str:
    return "{values: [" + ", ".join(str(i) for i in range(start, start + n)) + "]}"


# name -> (file content, key the line names (what follows "FILE: "), text it contains)
HOSTILE = {
    "alias bomb in name": (f"name: {bomb()}\n", "name", "more than 100,000 values"),
    "alias bomb in dataset.name": (
        f"dataset: {{name: {bomb()}}}\n",
        "dataset.name",
        "more than 100,000 values",
    ),
    "alias bomb in objectives": (
        f"objectives: {{accuracy: {bomb()}}}\n",
        "objectives.accuracy",
        "more than 100,000 values",
    ),
    "alias bomb in train": (
        f"train: {{learning_rate: {bomb()}}}\n",
        "train.learning_rate",
        "more than 100,000 values",
    ),
    "alias bomb in a space value": (
        f"space: {{squeeze_ratio: {{values: {bomb()}}}}}\n",
        "space.squeeze_ratio.values",
        "more than 100,000 values",
    ),
    "alias bomb in pool_after": (
        f"space: {{pool_after: {bomb()}}}\n",
        "space.pool_after",
        "more than 100,000 values",
    ),
    "deep flow nesting": (
        "space: {squeeze_ratio: " + "[" * 50_000 + "]" * 50_000 + "}\n",
        "space.squeeze_ratio",
        "nest",  # the parser's own limit or ours, whichever comes first
    ),
    "deep block nesting": (
        "space:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(400)),
        "space.k0.k1",
        "nested more than 20 levels deep",
    ),
    "list as base": ("base: [squeezenet1_1]\n", "base", "got a list of 1 item"),
    "not UTF-8": ("name: café\n".encode("latin-1"), "line 1, column 10", "not UTF-8"),
    "duplicate key, nested": (
        "name: d\nspace:\n  squeeze_ratio: 0.5\n  pct3x3: 0.5\n  squeeze_ratio: 0.25\n",
        "space.squeeze_ratio",
        "duplicate key 'squeeze_ratio' (lines 3 and 5)",
    ),
    "5-million-point grid": (
        f"space:\n  base_e: {values(100, 8)}\n  incr_e: {values(100, 0)}\n"
        f"  conv1_filters: {values(500)}\n",
        "space",
        "the grid has 5,000,000 points",
    ),
    "2 MB file": ("description: '" + "x" * 2_000_000 + "'\n", "", "larger than 1,000,000 bytes"),
}

# Faults that cost nothing to refuse, through the CLI's main in this process.
CHEAP = {
    "mapping as name": ("name: {first: a}\n", "name", "got a mapping of 1 item"),
    "list as a key": ("space:\n  ? [squeeze_ratio]\n  : 0.5\n", "space", "a key must be"),
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 3, column 1", "NUL byte"),
    "100 kB key": ("? " + "x" * 100_000 + "\n: 1\n", "x" * 40 + "…", "unknown key"),
    "huge num_fire": ("space: {num_fire: 100000000}\n", "space.num_fire", "at most 100"),
    "integer of 4,000 digits": ("space: {base_e: " + "9" * 4000 + "}\n", "space.base_e", "digits"),
    "newline in a key": ('"a\\nb": 1\n', "a\\nb", "unknown key"),
}

VALID = "name: ok\ntrain: {learning_rate: 1e-3, weight_decay: 5E-4}\n"
VALID += "space: {learning_rate: {values: [1e-3, 3e-3]}}\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Run]]:
    """Every case's run (and one of a valid file), two processes at a time."""
    folder = tmp_path_factory.mktemp("faults")
    files = {}
    for i, (name, (content, _, _)) in enumerate({"valid": (VALID, "", ""), **HOSTILE}.items()):
        path = folder / f"case{i}.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        files[name] = path
    jobs = {name: ("inspect", str(path)) for name, path in files.items()}
    jobs["--set"] = ("inspect", "--set", "learning_rate=1e-3")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run_cli, *args) for name, args in jobs.items()}
        return {name: (files.get(name), f.result()) for name, f in futures.items()}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_space_file_fails_in_one_line_quickly_and_small(runs, case):
    _, key, text = HOSTILE[case]
    path, run = runs[case]
    baseline = runs["valid"][1]
    assert run.wall_s < TIMEOUT_S, f"{case}: still running after {TIMEOUT_S} s"
    assert run.returncode == 2, (case, run)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and run.stderr.endswith("\n"), run.stderr[:2000]
    line = lines[0]
    assert line.startswith(f"explorer: error: {path}: {key}"), line
    assert text in line, line
    assert len(line) < 500, line
    assert run.wall_s < max(MAX_WALL_S, 2 * baseline.wall_s), (case, run.wall_s, baseline.wall_s)
    assert run.peak_mb < baseline.peak_mb + MAX_EXTRA_MB, (case, run.peak_mb, baseline.peak_mb)


@pytest.mark.parametrize("case", list(CHEAP))
def test_wrong_types_and_bytes_fail_in_one_line(tmp_path, capsys, case):
    content, key, text = CHEAP[case]
    path = tmp_path / "space.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert cli.main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"explorer: error: {path}: {key}"), err
    assert text in err and len(err) < 500, err


def test_exponent_floats_work_in_a_file_and_in_set(runs):
    """YAML 1.1 reads `1e-3` as a string; space files follow YAML 1.2, where it is 0.001."""
    for name in ("valid", "--set"):
        run = runs[name][1]
        assert run.returncode == 0 and run.stderr == "", (name, run)
    space = spaces.load(runs["valid"][0])
    assert space.recipe.learning_rate == 0.001 and space.recipe.weight_decay == 0.0005
    assert space.domains["learning_rate"].values == (0.001, 0.003)


# ---------------------------------------------------------------- the reader itself
def test_scalars_follow_yaml_1_2():
    text = "[1e-3, 1e6, -2E+3, .5, 1., 10, -7, 010, 0x1f, 0o17, .inf, -.Inf, 1_000, '1e-3',"
    text += " true, False, yes, no, on, off, null, ~, 2024-01-01, !!str 5, !!float 3]"
    got = spacefile.loads(text)
    assert got == [
        0.001, 1e6, -2000.0, 0.5, 1.0, 10, -7, 10, 31, 15, float("inf"), float("-inf"),
        "1_000", "1e-3", True, False, "yes", "no", "on", "off", None, None, "2024-01-01",
        "5", 3.0,
    ]  # fmt: skip
    assert [type(v) for v in got[5:10]] == [int] * 5


def test_duplicate_keys_are_refused_with_both_lines():
    text = "space:\n  pool_after:\n    values: []\n    x: 1\n    values: [conv1]\n"
    with pytest.raises(spaces.SpaceError) as e:
        spacefile.loads(text, "f.yaml")
    assert e.value.key == "space.pool_after.values"
    assert "duplicate key 'values' (lines 3 and 5)" in e.value.message


def test_aliases_are_counted_expanded_before_anything_is_built():
    shared = "sr: &sr {values: [0.25, 0.5]}\nagain: *sr\n"
    assert spacefile.loads(shared) == {
        "sr": {"values": [0.25, 0.5]},
        "again": {"values": [0.25, 0.5]},
    }
    start = time.monotonic()
    with pytest.raises(spaces.SpaceError) as e:
        spacefile.loads("top:\n  x: " + bomb(levels=12), "f.yaml")  # 9**12 values
    assert time.monotonic() - start < 1
    assert e.value.key.startswith("top.x[") and e.value.message.startswith("line 2: this alias")
    for text, message in [
        ("a: &a [1, *a]", "alias *a inside the value it names"),
        ("a: *nowhere", "alias *nowhere with no anchor before it"),
    ]:
        with pytest.raises(spaces.SpaceError, match=re.escape(message)):
            spacefile.loads(text)


def test_excerpt_walks_only_what_it_shows():
    huge = ["x" * 10**6]
    for _ in range(30):  # 2**30 strings of a megabyte, as shared references
        huge = [huge, huge]
    start = time.monotonic()
    text = spacefile.excerpt(huge)
    assert time.monotonic() - start < 0.1
    assert text.startswith("a list of 2 items [[[[") and text.endswith("…") and len(text) < 100
    assert spacefile.excerpt("a\nb") == "str 'a\\nb'"
    assert spacefile.excerpt(None) == "nothing"
    assert spacefile.excerpt(10**5000) == "int <an integer of about 5000 digits>"


def test_a_set_value_is_read_like_a_file_value():
    assert spacefile.loads("1e-3", "--set", "learning_rate") == 0.001
    assert spacefile.loads("[conv1, fire3]", "--set", "pool_after") == ["conv1", "fire3"]
    with pytest.raises(spaces.SpaceError) as e:
        spacefile.loads(bomb(), "--set", "pool_after")
    assert str(e.value).startswith("--set: pool_after[")
