"""The sweep's Ray Tune callback: rows written by the driver, and live progress.

Rows are written here, on the driver, from each trial's last result, so a
cluster needs no shared file system and a crash of a worker never half-writes
a row. Kept apart from explorer.sweep so that commands which never run a sweep
do not import Ray.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

from ray import tune

from explorer import results, rows, sweep_folder
from explorer import space as spaces


class RowWriter(tune.Callback):
    """Writes each finished trial's rows (on the driver) and prints progress."""

    def __init__(
        self,
        out: Path,
        space: spaces.Space,
        total: int,
        done_before: int,
        first_index: int = 0,
        reasons: dict[str, str] | None = None,
    ):
        self.out, self.space, self.total = out, space, total
        # Tune's trial id -> why the scheduler paused or stopped it (a scheduler's own dict)
        self.reasons = {} if reasons is None else reasons
        # a searcher's points are numbered here, in the order their trials start
        self.indices: dict[str, int] = {}
        self.next_index = first_index
        self.done_before = done_before
        self.t0 = time.perf_counter()
        self.finished = self.failed = 0
        self.metric, self.direction = next(iter(space.objectives.items()))
        self.best: tuple[float, str] | None = None
        self.first_start: dict[str, float] = {}  # a retried trial keeps its first start
        self.write_error = ""  # the first row that could not be written (full disk...)
        self.curves: dict[tuple[str, int], list[dict]] = {}  # (Tune's trial id, seed) -> epochs
        # (Tune's trial id, seed) -> seconds its attempts under earlier drivers took
        self.earlier_s: dict[tuple[str, int], float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.first_start.setdefault(trial.trial_id, time.time())
        if trial.trial_id not in self.indices:
            self.indices[trial.trial_id] = self.next_index
            self.next_index += 1

    def _write(self, ended: list[dict], trial, errored: bool = False, kept=None) -> None:
        """Each seed's row to rows/<trial_id>.parquet; kept: seed -> its compressed file."""
        # A worker that died counts as a failure; its retry is another attempt.
        attempts = trial.num_failures + (0 if errored else 1)
        elapsed = time.time() - self.first_start.get(trial.trial_id, time.time())
        for before in ended:
            seed = before["seed"]
            ckpt = trial.checkpoint
            r = rows.finished(
                before,
                self.space.name,
                self.indices.get(trial.trial_id, self.next_index),
                attempts,
                elapsed,
                self.earlier_s.get((trial.trial_id, seed), 0.0),
                None if ckpt is None else _within(self.out, Path(ckpt.path) / f"seed{seed}"),
                (kept or {}).get(seed),
            )
            try:
                results.write_row(self.out, r)
            except OSError as e:
                self.write_error = self.write_error or f"{r['trial_id']}: {e.strerror or e}"
                continue
            self.finished += 1
            if r["status"] == "failed":
                self.failed += 1
            value = r.get(self.metric)
            if r["status"] == "ok" and value is not None and not math.isnan(value):
                better = self.best is None or (
                    value > self.best[0] if self.direction == "max" else value < self.best[0]
                )
                if better:
                    self.best = (value, r["trial_id"])

    def _keep_files(self, ended: list[dict], trial, files: dict) -> dict:
        """Each seed's compressed network into compressed/<trial_id>.sqz; seed -> its path."""
        kept = {}
        for r in ended:
            blob = files.get(str(r["seed"]))
            if blob is None:
                continue
            index = r["point"] if r["point"] >= 0 else self.indices.get(trial.trial_id, -1)
            tid = rows.trial_id(self.space.name, index, r["seed"])
            path = self.out / "compressed" / f"{tid}.sqz"
            try:
                path.parent.mkdir(exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(blob)
                tmp.replace(path)
            except OSError as e:
                self.write_error = self.write_error or f"{path}: {e.strerror or e}"
                continue
            kept[r["seed"]] = _within(self.out, path)
        return kept

    def on_trial_result(self, iteration, trials, trial, result, **info):
        """Each epoch's metrics, per seed, to curves/<trial_id>.parquet as they come."""
        for point in result.get("curve") or []:
            seed = int(point["seed"])
            key = (trial.trial_id, seed)
            row = next((r for r in result.get("rows", []) if r["seed"] == seed), None)
            if row is None:
                self.curves.setdefault(key, []).append(point)
                continue
            index = row["point"] if row["point"] >= 0 else self.indices.get(trial.trial_id, -1)
            tid = rows.trial_id(self.space.name, index, seed)
            if key not in self.curves:  # a resumed trial: keep the epochs of its earlier attempts
                self.curves[key] = results.read_curve(self.out, tid)
                self.earlier_s[key] = results.attempt_seconds(self.curves[key])
            self.curves[key].append(point)
            try:
                results.write_curve(self.out, tid, self.curves[key])
            except OSError as e:
                self.write_error = self.write_error or f"curves: {e.strerror or e}"

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        """Note where each seed's latest checkpoint is: a resumed sweep starts there."""
        point, seeds = spaces.point_from_config(self.space, trial.config)
        index = point.index if point.index >= 0 else self.indices.get(trial.trial_id, -1)
        for seed in seeds:
            tid = rows.trial_id(self.space.name, index, seed)
            try:
                sweep_folder.note_checkpoint(self.out, tid, Path(checkpoint.path) / f"seed{seed}")
            except OSError as e:
                self.write_error = self.write_error or f"checkpoints.json: {e.strerror or e}"

    def on_trial_complete(self, iteration, trials, trial, **info):
        ended = (trial.last_result or {}).get("rows")
        if ended and ended[0]["status"] == "stopped" and trial.trial_id in self.reasons:
            ended = rows.ended(ended, "stopped", self.reasons[trial.trial_id])
        if not ended:
            ended = self._rows_for(trial, "failed", "trial ended without reporting a result")
        kept = self._keep_files(ended, trial, (trial.last_result or {}).get("files") or {})
        self._write(ended, trial, kept=kept)
        self._progress(trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(self._rows_for(trial, "failed", _error_text(trial)), trial, errored=True)
        self._progress(trials, trial)

    def _rows_for(self, trial, status: str, error: str) -> list[dict]:
        last = (trial.last_result or {}).get("rows")
        if last:  # it got some epochs done before dying
            return rows.ended(last, status, error)
        point, seeds = spaces.point_from_config(self.space, trial.config)
        return rows.ended_rows(self.space, point, seeds, status, error)

    def _progress(self, trials, ended) -> None:
        running = sum(t.status == "RUNNING" and t is not ended for t in trials)
        done = self.done_before + self.finished
        elapsed = time.perf_counter() - self.t0
        left = ""
        if self.finished:
            eta = elapsed / self.finished * max(self.total - done, 0)
            left = f", ~{_duration(eta)} left"
        best = f", best {self.metric} {self.best[0]:.4g} ({self.best[1]})" if self.best else ""
        print(
            f"[{_duration(elapsed)}] {done}/{self.total} rows done, {running} running, "
            f"{self.failed} failed{best}{left}",
            file=sys.stderr,  # looked up each time: Tune pickles its callbacks
            flush=True,
        )


def _error_text(trial) -> str:
    """The last line of a failed trial's error (the exception), without colour codes."""
    text = ""
    try:
        if trial.error_file and Path(trial.error_file).exists():
            text = Path(trial.error_file).read_text()
        else:
            text = str(trial.get_error() or "")
    except Exception:  # the error file may be on a node that is gone
        pass
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Failure #")]
    return lines[-1][:500] if lines else "trial errored (no error text)"


def _within(out: Path, folder: Path) -> str:
    """A checkpoint folder relative to the sweep folder when inside it (the folder can move)."""
    try:
        return str(folder.relative_to(out))
    except ValueError:
        return str(folder)


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
