"""Text the CLI prints: sizes, tables, per-epoch progress, the best rows of a sweep."""

from __future__ import annotations

import math
import sys
import time

import numpy as np


def human_bytes(n: float, _pos=None) -> str:
    """1234567 -> '1.23 MB' (decimal units, as model sizes are quoted; 3 significant
    digits). `_pos` lets matplotlib use it as an axis formatter."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g} B"


def first_line(e: Exception, limit: int = 300) -> str:
    """An exception's first line (its type's name when it has no text), for a one-line error."""
    text = str(e).strip().splitlines()
    return text[0][:limit] if text else type(e).__name__


def format_table(rows: list[dict]) -> str:
    """Plain aligned text table."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def mean(a) -> float:
    """Mean of the finite values (NaN when none)."""
    a = np.asarray(a, float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


def pct(a) -> str:
    """A fraction (or the mean of several) as a percentage."""
    return f"{100 * mean(a):5.2f}%"


class Progress:
    """Per-epoch progress: a bar redrawn in place on a terminal, one line per epoch."""

    def __init__(self, epochs: int, stream=None):
        self.epochs, self.epoch = epochs, 1
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, done: int, total: int) -> None:
        if not self.tty:
            return
        width = 30
        fill = round(width * done / total)
        rate = ""
        elapsed = time.perf_counter() - self.t0
        if done and elapsed > 0:
            left = elapsed / done * (total - done)
            rate = f" {done}/{total} steps, {left:4.0f} s left"
        bar = "#" * fill + "." * (width - fill)
        self.stream.write(f"\repoch {self.epoch:>2}/{self.epochs} [{bar}]{rate}")
        self.stream.flush()

    def end_epoch(self, ep: int, m: dict) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        seeds = len(m["accuracy"])
        line = (
            f"epoch {ep:>2}/{self.epochs}  train loss {mean(m['train_loss']):.4f}"
            f"  train acc {pct(m['train_accuracy'])}  test acc {pct(m['accuracy'])}"
            f"  top-5 {pct(m['top5'])}  {m['epoch_s']:.1f} s"
        )
        if seeds > 1:
            line += f"  (mean of {seeds} seeds)"
        print(line, file=self.stream, flush=True)
        self.epoch, self.t0 = ep + 1, time.perf_counter()


def record_rows(records: list[dict]) -> list[dict]:
    """One printable line per trained seed (`explorer train`)."""
    return [
        {
            "seed": r["seed"],
            "status": r["status"],
            "top-1": pct([r["accuracy"]]),
            "top-5": pct([r["top5"]]),
            "int8 top-1": pct([r["int8_accuracy"]]),
            "float32": human_bytes(r["bytes_f32"]),
            "int8": human_bytes(r["bytes_int8"]),
            "lat b1": f"{r['latency_b1_ms']:.2f} ms",
            "lat b128": f"{r['latency_b128_ms']:.1f} ms",
            "img/s": f"{r['images_per_s']:.0f}",
            "compile": f"{r['compile_s']:.1f} s",
            "wall": f"{r['wall_s']:.0f} s",
        }
        for r in records
    ]


def best_rows(table, objectives: dict[str, str], n: int = 8) -> list[dict]:
    """The table's best ok rows by the first objective, formatted for printing."""
    metric, direction = next(iter(objectives.items()))
    ok = table[table["status"] == "ok"].sort_values(metric, ascending=direction == "min")
    return [
        {
            "trial": r["trial_id"],
            "top-1": f"{100 * r['accuracy']:.2f}%",
            "top-5": f"{100 * r['top5']:.2f}%",
            "int8 top-1": f"{100 * r['int8_accuracy']:.2f}%",
            "params": f"{int(r['params']):,}",
            "float32": human_bytes(r["bytes_f32"]),
            "MFLOPs": f"{r['flops'] / 1e6:.1f}",
            "lat b1": f"{r['latency_b1_ms']:.2f} ms",
            "wall": f"{r['wall_s']:.0f} s",
        }
        for _, r in ok.head(n).iterrows()
    ]


def json_default(x):
    """numpy scalars as plain JSON numbers."""
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot write {type(x).__name__} as JSON")
