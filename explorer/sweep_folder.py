"""The sweep folder: the source of truth of a sweep, and safe against its faults.

    OUT/space.yaml        the space file as the sweep started
    OUT/.lock             held (flock) by the running sweep; names its host and pid
    OUT/rows/*.parquet    one file per finished trial-seed, written atomically by
                          the driver; each row carries its space's digest
    OUT/rows/corrupt/     row files that could not be read, moved aside (re-run)
    OUT/rows/replaced/    failed rows a --retry-failed sweep trains again, and rows
                          of a point now drawn as another network (with their
                          curves, in OUT/curves/replaced/)
    OUT/checkpoints.json  each trial's latest checkpoint, so a sweep resumed after
                          its driver died continues a trial where it was
    OUT/results.parquet   all rows, gathered when the sweep ends
    OUT/tune/             Ray Tune's own experiment folder

A row counts as done only when it is readable and its `space_digest` is the
space's, so rows of another space in the same folder are never taken for this
one's. The lock is an OS file lock: it goes with the process that holds it, so
a sweep killed with SIGKILL leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

import pandas as pd

from explorer import results
from explorer import rows as rowmod
from explorer import space as spaces


class SweepError(Exception):
    """A sweep that cannot start or resume; printed as one line, exit status 2."""


@contextlib.contextmanager
def locked(out: Path):
    """Hold the sweep folder's lock for the duration; refuse if another sweep holds it."""
    lock = out / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SweepError(f"{out}: cannot write in the sweep folder ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(lock)
            raise SweepError(
                f"{out}: another sweep is running in this folder ({holder}); wait for it "
                "to end, or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        os.write(fd, json.dumps(me).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(lock: Path) -> str:
    try:
        who = json.loads(lock.read_text() or "{}")
        return f"host {who.get('host', '?')}, pid {who.get('pid', '?')}"
    except (OSError, ValueError):
        return "holder unknown"


def prepare(space_path: Path, space: spaces.Space, out: Path, resume: bool) -> None:
    """Create or reopen the sweep folder for this space; refuse what would mix sweeps."""
    saved = out / "space.yaml"
    if saved.exists():
        if not resume:
            raise SweepError(
                f"{out}: a sweep already lives here; add --resume to continue it, "
                "or choose another --output"
            )
        try:
            before = spaces.load(saved).digest
        except spaces.SpaceError:
            before = None
        if before != space.digest:
            raise SweepError(
                f"{space_path}: differs from the space this sweep started with ({saved}); "
                "resume with that file, or start a new sweep in another --output"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not out.is_dir():
            raise NotADirectoryError(f"{out} is not a folder")
        if not saved.exists():
            saved.write_bytes(space_path.read_bytes())
    except OSError as e:
        raise SweepError(f"{out}: cannot use as the sweep folder ({e.strerror or e})") from None


def done_rows(
    out: Path, space: spaces.Space, retry_failed: bool = False, stream=None, points=()
) -> set[str]:
    """Trial ids that already have a row of this space; clean up what a crash left.

    A row file that cannot be read is moved to rows/corrupt/ (its trial runs
    again) with a warning. Rows of another space refuse the sweep. With
    retry_failed, failed rows move to rows/replaced/ and their trials run again.
    Given the space's enumerated `points`, a row whose network is no longer its
    point's (a random sample drawn by an earlier version, which could repeat a
    point) moves to rows/replaced/ with its curve, its checkpoint is forgotten,
    and its trial runs again.
    """
    stream = stream or sys.stderr
    rows = out / "rows"
    if not rows.is_dir():
        return set()
    for f in rows.glob("*.tmp"):  # a write a crash interrupted: never a row
        f.unlink(missing_ok=True)
    networks = {
        rowmod.trial_id(space.name, p.index, seed): p
        for p in points
        for seed in space.search.training_seeds
    }
    done = set()
    for f in sorted(rows.glob("*.parquet")):
        try:
            row = pd.read_parquet(f, columns=None)
            digest = str(row["space_digest"].iloc[0]) if "space_digest" in row else ""
            status = str(row["status"].iloc[0])
        except Exception as e:
            aside = _move(f, rows / "corrupt")
            print(
                f"explorer: warning: {f}: unreadable row ({type(e).__name__}); moved to "
                f"{aside} and its trial runs again",
                file=stream,
            )
            continue
        if digest and digest != space.digest:  # (rows of older versions carry none)
            raise SweepError(
                f"{f}: a row of another space (digest {digest or 'none'}, this space's "
                f"{space.digest}); start this sweep in another --output"
            )
        point = networks.get(f.stem)
        if point is not None and _drawn_otherwise(row.iloc[0], point):
            _set_aside_redrawn(out, f, point, stream)
            continue
        if retry_failed and status == "failed":
            _move(f, rows / "replaced")
            continue
        done.add(f.stem)
    return done


def _drawn_otherwise(row: pd.Series, point: spaces.Point) -> bool:
    """Whether a row's metaparameters are not its point's."""
    want = rowmod.spec_fields(point.arch)
    return any(k in row and str(row[k]) != str(v) for k, v in want.items())


def _set_aside_redrawn(out: Path, f: Path, point: spaces.Point, stream) -> None:
    """A row (and its curve) of a point now drawn as another network, moved aside,
    its checkpoint forgotten: its trial runs again, never from another network."""
    aside = _move(f, out / "rows" / "replaced")
    curve = out / "curves" / f.name
    if curve.is_file():
        _move(curve, out / "curves" / "replaced")
    index = checkpoint_index(out)
    if index.pop(f.stem, None) is not None:
        _save_index(out, index)
    print(
        f"explorer: warning: {f}: point {point.index} is now drawn as another network; "
        f"its row moved to {aside} and its trial runs again",
        file=stream,
    )


def _move(f: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / f.name
    os.replace(f, target)
    return target


def note_checkpoint(out: Path, trial_id: str, folder: Path) -> None:
    """Record a trial's latest checkpoint in OUT/checkpoints.json (atomically)."""
    index = checkpoint_index(out)
    index[trial_id] = str(folder)
    _save_index(out, index)


def _save_index(out: Path, index: dict[str, str]) -> None:
    tmp = out / ".checkpoints.json.tmp"
    tmp.write_text(json.dumps(index, indent=0, sort_keys=True))
    os.replace(tmp, out / "checkpoints.json")


def checkpoint_index(out: Path) -> dict[str, str]:
    """trial id -> its latest checkpoint folder (those that still exist)."""
    try:
        index = json.loads((out / "checkpoints.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in index.items() if isinstance(v, str) and Path(v).is_dir()}


def prior_results(space: spaces.Space, out: Path) -> list[tuple[dict, list | float]]:
    """Finished points of a searcher and their objectives (mean over seeds), to warm-start it."""
    try:
        table = results.load(out)
    except results.ResultsError:
        return []
    keys, objectives = list(space.domains), list(space.objectives)
    if not set(keys) <= set(table.columns):
        return []  # a recipe key with no column of its own: start the searcher afresh
    ok = table[table["status"] == "ok"]
    prior = []
    for _, group in ok.groupby("point"):
        values = {k: _plain(group[k].iloc[0]) for k in keys}
        scores = [float(group[m].mean()) for m in objectives]
        prior.append((values, scores if len(scores) > 1 else scores[0]))
    return prior


def _plain(x):
    """numpy/pandas scalars -> Python, so a searcher sees the same values it proposed."""
    return x.item() if hasattr(x, "item") else x
