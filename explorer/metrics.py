"""Which way each numeric outcome of a trial is better, and what a space may optimise.

Defined once; `explorer.results` re-exports them beside SCHEMA's columns, and
the space loader, the trial and the analysis read them from here.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["min", "max"]

# Which way is better, for every numeric outcome of a trial (the columns worth
# averaging over seeds and putting on a Pareto plot).
DIRECTIONS: dict[str, Direction] = {
    "accuracy": "max",
    "top5": "max",
    "int8_accuracy": "max",
    "test_loss": "min",
    "train_accuracy": "max",
    "train_loss": "min",
    "params": "min",
    "bytes_f32": "min",
    "bytes_int8": "min",
    "flops": "min",
    "bytes_compressed": "min",
    "compressed_accuracy": "max",
    "latency_b1_ms": "min",
    "latency_b128_ms": "min",
    "latency_ort_b1_ms": "min",
    "bytes_int8_onnx": "min",
    "int8_onnx_accuracy": "max",
    "latency_ort_int8_b1_ms": "min",
    "compile_s": "min",
    "images_per_s": "max",
    "wall_s": "min",
}
MAXIMISED = frozenset(k for k, d in DIRECTIONS.items() if d == "max")
# What a space may name as an objective (a searcher's metric).
OBJECTIVES = (
    "accuracy",
    "top5",
    "int8_accuracy",
    "test_loss",
    "params",
    "bytes_f32",
    "bytes_int8",
    "flops",
    "bytes_compressed",
    "compressed_accuracy",
    "latency_b1_ms",
    "latency_b128_ms",
    "latency_ort_b1_ms",
    "bytes_int8_onnx",
    "int8_onnx_accuracy",
    "latency_ort_int8_b1_ms",
    "wall_s",
)
