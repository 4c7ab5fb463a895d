"""Train-step throughput of the JAX trainer: images/s, compile time, K seeds at once.

    python benchmarks/train_throughput.py [--steps 30] [--repeats 5] [--k 8]

SqueezeNet 1.1 (small-input stem) at batch 128, on 28x28x1 and 32x32x3
images held on the device, with the trainer's own jitted, donated step. The
speed-up of K seeds in one program (vmapped on accelerators, one after
another on CPU) is their images/s over one seed's images/s, i.e. over K runs
one after another; on CPU the K seeds are also timed vmapped
($EXPLORER_SEEDS=vmap). Ends with one line of key=value figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
from common import SETTINGS, Stepper, machine, median, spec, synthetic, timed  # noqa: E402

from explorer import devices, execution  # noqa: E402
from explorer.recipe import Recipe  # noqa: E402


def images_per_s(model, shape, recipe, k, steps, repeats, how=SETTINGS) -> tuple[float, float]:
    stepper = Stepper(spec(model, shape), recipe, synthetic(shape), k, how)
    stepper.run(steps)  # warm-up
    t = median(timed(lambda: stepper.run(steps), repeats))
    return steps * recipe.batch_size * k / t, stepper.runner.compile_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    devices.compilation_cache(None)  # cold compile times
    recipe = Recipe(batch_size=args.batch, optimizer="sgd", learning_rate=0.01)
    print(f"device: {jax.devices()[0].device_kind} ({machine()}), jax {jax.__version__}")
    figures = {}
    for shape in ("28x28x1", "32x32x3"):
        ips, comp = images_per_s("squeezenet1_1", shape, recipe, 1, args.steps, args.repeats)
        tag = shape.replace("x", "_", 2)
        figures[f"img_s_{tag}"] = ips
        figures[f"compile_s_{tag}"] = comp
        print(
            f"squeezenet1_1 {shape} batch {args.batch}: {ips:7.1f} images/s, compile {comp:.1f} s"
        )
    k = args.k
    default = "vmap" if execution.seeds_vmapped(SETTINGS) else "loop"
    for how in (default, *(["vmap"] if default == "loop" else [])):  # on CPU both ways
        ips_k, comp_k = images_per_s(
            "squeezenet1_1",
            "28x28x1",
            recipe,
            k,
            args.steps // 2 or 1,
            args.repeats,
            SETTINGS.replace(seeds=how),
        )
        speedup = ips_k / figures["img_s_28_28_1"]
        print(
            f"K={k} seeds in one program ({how}{', the default' if how == default else ''}), "
            f"28x28x1: {ips_k:7.1f} images/s (all seeds), compile {comp_k:.1f} s; "
            f"{speedup:.2f}x {k} sequential runs"
        )
        tag = f"k{k}" if how == default else f"k{k}_{how}"
        figures.update(
            {f"img_s_{tag}_28_28_1": ips_k, f"speedup_{tag}": speedup, f"compile_s_{tag}": comp_k}
        )
    print(" ".join(f"{key}={val:.2f}" for key, val in figures.items()))


if __name__ == "__main__":
    main()
