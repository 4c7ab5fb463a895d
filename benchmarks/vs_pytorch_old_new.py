"""The JAX/PyTorch train-step ratio of an older revision and of this tree, alternating.

    python benchmarks/vs_pytorch_old_new.py REV [--pairs 3] [--rounds 3] [--steps 20]

Checks REV out into a temporary git worktree, then runs benchmarks/vs_pytorch.py
of REV and of this tree in turn, `--pairs` times each (old, new, old, new, ...),
each with its own package on the path, so both see the same machine. Prints
each run's ratios, then the median ratio of each tree per model and input, and
new/old. Ends with one key=value line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env_of(tree: Path) -> dict[str, str]:
    """The environment that imports the tree's own package (checked once)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    probe = [sys.executable, "-c", "import explorer; print(explorer.__file__)"]
    where = subprocess.run(probe, env=env, cwd=tree, capture_output=True, text=True, check=True)
    if not Path(where.stdout.strip()).is_relative_to(tree):  # the installed package won
        sys.exit(f"vs_pytorch_old_new: {tree} imports explorer from {where.stdout.strip()}")
    return env


def run(tree: Path, env: dict[str, str], args) -> dict[str, float]:
    """One vs_pytorch.py run of a tree; its key=value figures."""
    cmd = [sys.executable, str(tree / "benchmarks" / "vs_pytorch.py"), "--rounds",
           str(args.rounds), "--steps", str(args.steps), "--models", args.models]  # fmt: skip
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True)
    last = out.stdout.strip().splitlines()[-1]
    return {k: float(v) for k, v in (item.split("=") for item in last.split())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="the older revision (a commit or tag)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--models", default="squeezenet1_1,squeezenet1_0")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old),
                        args.rev], check=True)  # fmt: skip
        try:
            got: dict[str, list[dict]] = {"old": [], "new": []}
            trees = {"old": (old, env_of(old)), "new": (ROOT, env_of(ROOT))}
            for i in range(args.pairs):
                for name, (tree, env) in trees.items():
                    figures = run(tree, env, args)
                    got[name].append(figures)
                    ratios = " ".join(
                        f"{k}={v:.3f}" for k, v in figures.items() if k.startswith("ratio_")
                    )
                    print(f"pair {i + 1} {name}: {ratios}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=False)  # fmt: skip
    keys = [k for k in got["new"][0] if k.startswith("ratio_")]
    summary = {}
    for k in keys:
        o = statistics.median(f[k] for f in got["old"])
        n = statistics.median(f[k] for f in got["new"])
        every = [f[k] for f in got["old"] + got["new"]]
        spread = max(every) - min(every)
        print(f"{k}: old {o:.3f}, new {n:.3f}, new/old {n / o:.3f} (all runs span {spread:.3f})")
        summary.update({f"old_{k}": o, f"new_{k}": n, f"new_over_old_{k}": n / o})
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
