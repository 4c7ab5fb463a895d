"""Faults around a sweep: the folder, the data, signals, the cluster, the report.

Each case asserts the exit status, the one line a user reads, and that no
finished row was lost or trained twice. The cheap cases stop before Ray
starts; one end-to-end case covers SIGTERM, a corrupt row, a stale lock and
--retry-failed in two runs of a real local sweep.
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from explorer import cli, results, rows, sweep_folder
from explorer import space as spaces

from .conftest import ROOT


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("explorer: error: ")
    return err[0]


def test_a_second_sweep_in_a_locked_folder_is_refused(tiny_space, tmp_path, capsys):
    space, out = tiny_space("locked"), tmp_path / "sweep"
    out.mkdir()
    with sweep_folder.locked(out):
        assert cli.main(["sweep", str(space), "--output", str(out)]) == 2
        line = one_error_line(capsys)
    assert "another sweep is running in this folder" in line
    assert f"pid {__import__('os').getpid()}" in line and socket.gethostname() in line
    assert not (out / "rows").exists()


def test_rows_of_another_space_never_count_as_done(tiny_space, tmp_path, capsys):
    out = tmp_path / "sweep"
    old = spaces.load(tiny_space("mixed", base_e="{values: [8, 16]}"))
    new_path = tiny_space("mixed", base_e="{values: [8, 24]}")
    point = spaces.points(old)[0]
    results.write_row(out, {**rows.base_row(old, point, 0), "status": "ok", "accuracy": 0.5})
    # space.yaml is gone: only the row's digest can tell whose row it is
    assert cli.main(["sweep", str(new_path), "--output", str(out)]) == 2
    line = one_error_line(capsys)
    assert "a row of another space" in line and old.digest in line
    assert len(list((out / "rows").glob("*.parquet"))) == 1  # nothing removed


def test_a_row_whose_point_is_now_another_network_is_set_aside(tiny_space, tmp_path, capsys):
    space = spaces.load(tiny_space("redrawn", search="{method: random, num_samples: 2}"))
    out = tmp_path / "sweep"
    pts = spaces.points(space)
    for p in pts:
        results.write_row(out, {**rows.base_row(space, p, 0), "status": "ok", "accuracy": 0.5})
        results.write_curve(out, rows.trial_id(space.name, p.index, 0), [{"seed": 0, "epoch": 1}])
    # an earlier version drew point 1 as another network: its row, curve, checkpoint
    old = rows.trial_id(space.name, 1, 0)
    row = pd.read_parquet(out / "rows" / f"{old}.parquet").assign(base_e=99)
    row.to_parquet(out / "rows" / f"{old}.parquet")
    (tmp_path / "ckpt").mkdir()
    sweep_folder.note_checkpoint(out, old, tmp_path / "ckpt")
    assert len(sweep_folder.done_rows(out, space)) == 2  # without the points: both done
    done = sweep_folder.done_rows(out, space, points=pts)
    assert done == {rows.trial_id(space.name, 0, 0)}  # point 1 trains again
    assert (out / "rows" / "replaced" / f"{old}.parquet").is_file()  # kept, aside
    assert (out / "curves" / "replaced" / f"{old}.parquet").is_file()
    assert not (out / "curves" / f"{old}.parquet").exists()
    assert sweep_folder.checkpoint_index(out) == {}  # never resumed from another network
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "point 1 is now drawn as another network" in err


@pytest.mark.parametrize("fault", ["missing", "truncated"])
def test_a_broken_data_set_stops_the_sweep_before_any_trial(
    tiny_space, tmp_path, capsys, monkeypatch, fault
):
    data = tmp_path / "fmnist"
    data.mkdir()
    if fault == "truncated":
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            (data / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 99)[:20])
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))
    out = tmp_path / "sweep"
    t0 = time.monotonic()
    assert cli.main(["sweep", str(tiny_space("nodata")), "--output", str(out)]) == 2
    line = one_error_line(capsys)
    expected = "is missing" if fault == "missing" else "train-images-idx3-ubyte.gz: not a readable"
    assert expected in line
    assert not list(out.glob("rows/*.parquet")) and time.monotonic() - t0 < 30


def test_unusable_output_folders_are_one_line(tiny_space, tmp_path, capsys):
    space = str(tiny_space("out"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, "/proc/explorer-sweep"):
        assert cli.main(["sweep", space, "--output", str(out)]) == 2
        line = one_error_line(capsys)
        assert f"{out}: cannot use as the sweep folder" in line


def test_an_address_where_nothing_listens_fails_fast(tiny_space, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the socket closes: nothing listens there
    t0 = time.monotonic()
    argv = ["sweep", str(tiny_space("nowhere")), "--output", str(tmp_path / "o")]
    assert cli.main([*argv, "--address", f"127.0.0.1:{port}"]) == 2
    line = one_error_line(capsys)
    assert f"--address 127.0.0.1:{port}: no Ray head answers there" in line
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file or folder"),
        ("", "not a readable CSV table"),
        ("trial_id,status,accuracy,params\na,ok,high,10\n", "column 'accuracy': expected float64"),
    ],
)
def test_report_input_errors_are_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "table.csv"
    if content is not None:
        path.write_text(content)
    assert cli.main(["report", str(path)]) == 2
    assert expected in one_error_line(capsys)


@pytest.mark.slow
def test_sigterm_keeps_rows_then_resume_mends_a_corrupt_row_and_retries_failed(
    tiny_space, tmp_path
):
    space = tiny_space("mend", base_e=8, search="{method: grid, seeds: 4, vmap_seeds: false}")
    out = tmp_path / "sweep"
    row_dir = out / "rows"
    cmd = [sys.executable, "-m", "explorer.cli", "sweep", str(space), "--output", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--max-concurrent", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(row_dir.glob("*.parquet")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    kept = sorted(row_dir.glob("*.parquet"))
    assert proc.returncode == 130, err
    assert f"interrupted: {len(kept)} of 4 rows; run again with --resume" in err
    assert 1 <= len(kept) < 4

    # What a crash and a careless user leave: a corrupt row, a dead sweep's lock
    # note, and a failed row whose cause has been fixed.
    (row_dir / "mend-p0000-s3.parquet").write_bytes(b"half a row")
    (out / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 999999}))
    s = spaces.load(space)
    failed = {**rows.base_row(s, spaces.points(s)[0], 2), "status": "failed", "error": "OOM"}
    results.write_row(out, failed)
    untouched = {f.name: f.read_bytes() for f in kept if f.stem not in ("mend-p0000-s2",)}
    untouched.pop("mend-p0000-s3.parquet", None)

    again = subprocess.run(
        [*cmd, "--retry-failed"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert "mend-p0000-s3.parquet: unreadable row" in again.stderr
    table = results.load(out).set_index("trial_id")
    assert sorted(table.index) == [f"mend-p0000-s{s}" for s in range(4)]
    assert (table["status"] == "ok").all() and (table["attempts"] == 1).all()
    assert (row_dir / "corrupt" / "mend-p0000-s3.parquet").exists()
    assert (row_dir / "replaced" / "mend-p0000-s2.parquet").exists()
    for name, data in untouched.items():  # finished rows: not trained again
        assert (row_dir / name).read_bytes() == data
    final = pd.read_parquet(out / "results.parquet")
    assert len(final) == 4 and not list(out.glob("**/*.tmp"))
    shutil.rmtree(out / "tune", ignore_errors=True)
