"""Shared set-up of the benchmarks: models, synthetic device-resident data, timing."""

from __future__ import annotations

from explorer import devices

devices.keep_freed_memory()  # before imports that start threads (pandas), as the CLI does

import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from explorer import architecture as arch  # noqa: E402
from explorer import execution, models, settings, train  # noqa: E402
from explorer.data import DataInfo, Dataset  # noqa: E402

# An entry point, as the CLI: the settings read once, and one XLA CPU device per
# core (or $EXPLORER_CPU_DEVICES) before JAX starts, so the benchmarks time the
# step that training runs.
SETTINGS = settings.from_env()
devices.split_cpu(SETTINGS.cpu_devices)

SHAPES = {"28x28x1": (28, 1), "32x32x3": (32, 3)}


def spec(model: str, shape: str, num_classes: int = 10) -> arch.ArchSpec:
    size, channels = SHAPES[shape]
    return arch.preset(model, num_classes=num_classes, image_size=size, in_channels=channels)


def synthetic(shape: str, n_train: int = 128 * 16, n_test: int = 256) -> Dataset:
    """Random uint8 images: throughput does not depend on pixel values."""
    size, c = SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, size, size, c), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_test).astype(np.int32)
    info = DataInfo(f"synthetic_{shape}", size, c, 10)
    mean = x.reshape(-1, c).mean(0).astype(np.float32)
    std = x.reshape(-1, c).std(0).astype(np.float32)
    return Dataset(info, x[:n_train], y[:n_train], x[n_train:], y[n_train:], mean, std)


class Stepper:
    """The trainer's compiled step on device-resident data, K seeds, ready to time."""

    def __init__(self, sp: arch.ArchSpec, recipe, data: Dataset, k: int = 1, how=SETTINGS):
        model = models.build(arch.plan(sp), settings=how, many_seeds=k > 1)
        self.runner = train.make_runner(model, recipe, data, num_seeds=k, settings=how)
        init_key, self.key = execution.split_keys(execution.seed_keys(range(k)), 2)
        self.state = self.runner.init(init_key)
        self.dev = execution.device_data(data, self.runner)
        self.perm = self.runner.shuffle(self.key)
        self.done = 0

    def run(self, n: int) -> None:
        """n more steps, waiting for the last."""
        self.state = execution.run_steps(
            self.runner, self.state, self.dev, self.perm, self.key, self.done, n
        )
        self.done += n
        self.state["sums"].block_until_ready()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs) -> float:
    return statistics.median(xs)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{devices.cpu_count()} XLA CPU devices"
    )
