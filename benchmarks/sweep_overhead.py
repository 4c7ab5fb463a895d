"""Overhead of the sweep machinery (Ray Tune) against the training it schedules.

    python benchmarks/sweep_overhead.py [--trials 20]

1. A trivial trainable (one report, no work) run as N Tune trials on the local
   machine: wall time per trial is the pure scheduling overhead.
2. A small real sweep (explorer.sweep on a 4-point Fashion-MNIST space): its
   wall time against the sum of its trials' own wall times (which include data
   loading, compiling and training).
Ends with one line of key=value figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from explorer import settings  # noqa: E402

settings.local_ray_env()  # loopback only, before Ray is imported

SPACE = """
name: overhead
dataset: {name: fashion_mnist, train_size: 2048, test_size: 1000}
space:
  conv1_filters: 16
  base_e: {values: [16, 24, 32, 40]}
  incr_e: 16
train: {epochs: 1, batch_size: 128, warmup_epochs: 0}
search: {method: grid, seeds: 2}
"""


def trivial(config):
    from ray import tune

    tune.report({"x": config["i"]})


def tune_overhead(n: int, folder: str) -> float:
    import ray
    from ray import tune

    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            trivial,
            param_space={"i": tune.grid_search(list(range(n)))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(storage_path=folder, name="trivial", verbose=0),
        )
        t0 = time.perf_counter()
        tuner.fit()
        return time.perf_counter() - t0
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    from explorer import sweep
    from explorer.analysis import program_share, trial_seconds

    with tempfile.TemporaryDirectory() as tmp:
        wall = tune_overhead(args.trials, tmp)
        per_trial = wall / args.trials
        print(
            f"trivial trainable: {args.trials} trials in {wall:.1f} s, {per_trial:.3f} s per trial"
        )
        space = Path(tmp) / "overhead.yaml"
        space.write_text(SPACE)
        t0 = time.perf_counter()
        table = sweep.run(space, Path(tmp) / "sweep")
        sweep_wall = time.perf_counter() - t0
    # A trial is one seed, or K vmapped seeds sharing one program (GPU default).
    trials = round(float(program_share(table).sum()))
    busy = float(trial_seconds(table).sum())
    print(
        f"real sweep: {trials} trials ({len(table)} rows), wall {sweep_wall:.1f} s, "
        f"sum of trial times {busy:.1f} s, {busy / sweep_wall:.2f} trials busy on average"
    )
    print(
        f"tune_s_per_trial={per_trial:.3f} sweep_wall_s={sweep_wall:.1f} "
        f"trial_sum_s={busy:.1f} concurrency={busy / sweep_wall:.2f}"
    )


if __name__ == "__main__":
    main()
