"""How to fill a small CPU with small models: threads, processes or seeds in one program.

    python benchmarks/fill_machine.py [--seconds 20] [--k 2,4,8]

Total train images/s of SqueezeNet 1.1 (28x28x1, batch 128, the trainer's own
step) when the machine runs:

  one      one run, all cores (one XLA CPU device per core, each taking
           its share of the batch);
  pinned   one run per core at once, each pinned to its core (one thread
           each), like sweep trials of one CPU each with CPU affinity;
  shared   one run per core at once, unpinned, one device each (what Ray
           does with one-CPU trials: it reserves CPUs but does not pin threads);
  vmap K   one run training K seeds as one program, all cores.

Each configuration runs in fresh processes, one after another. Ends with one
line of key=value figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(k: int, seconds: float, cpu: int | None) -> None:
    """Train for about `seconds` after warm-up; print images/s as JSON."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before JAX sizes its thread pool
    sys.path.insert(0, str(HERE))
    from common import Stepper, spec, synthetic

    from explorer.recipe import Recipe

    recipe = Recipe(batch_size=128, optimizer="sgd", learning_rate=0.01)
    data = synthetic("28x28x1")
    stepper = Stepper(spec("squeezenet1_1", "28x28x1"), recipe, data, k)
    stepper.run(1)  # compiled and warm
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        stepper.run(4)
        steps += 4
    elapsed = time.perf_counter() - t0
    print(json.dumps({"images_per_s": steps * 128 * k / elapsed}))


def launch(k: int, seconds: float, cpus: list[int | None], devices: int | None = None) -> float:
    """Run one worker per entry of `cpus` at once; their summed images/s.

    devices: XLA CPU devices per worker (default: one per core it may use).
    """
    env = {**os.environ, "EXPLORER_CPU_DEVICES": str(devices)} if devices else None
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(k), str(seconds), str(cpu)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for cpu in cpus
    ]
    total = 0.0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            sys.exit(f"worker failed with status {p.returncode}")
        total += json.loads(out.strip().splitlines()[-1])["images_per_s"]
    return total


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        k, seconds, cpu = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
        return worker(k, seconds, None if cpu == "None" else int(cpu))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--k", default="2,4,8")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    print(f"{len(cores)} cores; SqueezeNet 1.1, 28x28x1, batch 128, SGD; total images/s")
    figures = {"one": launch(1, args.seconds, [None])}
    figures["pinned"] = launch(1, args.seconds, list(cores))
    # As a sweep's one-CPU trials: one device each (explorer.sweep.trainable).
    figures["shared"] = launch(1, args.seconds, [None] * len(cores), devices=1)
    for k in (int(x) for x in args.k.split(",")):
        figures[f"vmap{k}"] = launch(k, args.seconds, [None])
    base = figures["one"]
    for name, ips in figures.items():
        print(f"{name:7s} {ips:8.1f} images/s  {ips / base:5.2f}x one run")
    print(" ".join(f"{name}_img_s={ips:.1f}" for name, ips in figures.items()))


if __name__ == "__main__":
    main()
