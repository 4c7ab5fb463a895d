"""Does the replay's MOASHA decide exactly as Syne Tune's own?

    pip install syne-tune      # not a dependency of the project: brings xgboost and more
    python benchmarks/moasha_check.py [--cases 12]

Feeds Syne Tune's MOASHA (metrics [-accuracy, size], do_minimize) and
explorer.analysis.asha.Moasha the same results: hand-made rungs, then random
interleavings of 14 trials (budget 27, eta 3, three training at once, tied
values), a trial leaving when Syne Tune stops it. Prints each disagreement and
ends with `decisions=N differ=M` (the last epoch left out: there Syne Tune says
STOP and the replay finishes the trial). The second hand-made rung shows Syne
Tune's ranking quirk: a fourth trial, the best in both objectives, is stopped.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.analysis.asha import Moasha  # noqa: E402

HAND = [  # sizes, then (trial, epoch, accuracy): one result each at rung 1 (budget 9)
    ({0: 10, 1: 20}, [(0, 1, 0.8), (1, 1, 0.7)]),
    ({0: 20, 1: 30, 2: 40, 3: 10}, [(0, 1, 0.8), (1, 1, 0.7), (2, 1, 0.6), (3, 1, 0.9)]),
    ({0: 20, 1: 10, 2: 30, 3: 40}, [(0, 1, 0.8), (1, 1, 0.9), (2, 1, 0.7), (3, 1, 0.6)]),
    ({0: 10, 1: 30, 2: 20}, [(0, 1, 0.6), (1, 1, 0.9), (2, 1, 0.75)]),
    ({0: 1000, 1: 4000, 2: 2000, 3: 9000}, [(0, 1, 0.6), (1, 1, 0.8), (2, 1, 0.7), (3, 1, 0.95)]),
]


def their_moasha(budget: int, eta: int, sizes: dict):
    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    sched = MOASHA(
        config_space={}, metrics=["neg_accuracy", "size"], do_minimize=True, time_attr="epoch",
        max_t=budget, grace_period=1, reduction_factor=eta,
    )  # fmt: skip
    trials = {}

    def decide(tid, t, acc) -> bool:
        if tid not in trials:
            trials[tid] = Trial(trial_id=tid, config={}, creation_time=datetime.now())
            sched.on_trial_add(trials[tid])
        result = {"epoch": t, "neg_accuracy": -acc, "size": sizes[tid]}
        return sched.on_trial_result(trials[tid], result) == "STOP"

    return decide


def interleaving(seed: int, budget: int = 27, n: int = 14):
    r = random.Random(seed)
    sizes = {i: r.choice([1e3, 5e3, 2e4, 1e5, 4e5]) * r.choice([1, 1, 3]) for i in range(n)}
    base = {i: r.choice([0.3, 0.5, 0.6, 0.7, 0.8, 0.9]) for i in range(n)}
    acc = {
        i: [round(min(1, base[i] + 0.1 * r.random() * t / budget), 2) for t in range(1, budget + 1)]
        for i in range(n)
    }
    return sizes, acc, random.Random(seed + 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12)
    args = ap.parse_args()
    try:
        import syne_tune  # noqa: F401
    except ImportError:
        print("moasha_check: needs syne-tune (pip install syne-tune)", file=sys.stderr)
        return 2
    decisions = differ = 0
    for k, (sizes, events) in enumerate(HAND):
        theirs, ours = their_moasha(9, 3, sizes), Moasha(9, 3, sizes)
        for tid, t, acc in events:
            a, b = theirs(tid, t, acc), ours.decide(tid, t, acc)
            if k == 1 and tid == 3:
                print(f"sizes {sizes}, accuracy 0.8, 0.7, 0.6, then 0.9: syne-tune stops it: {a}")
            decisions, differ = decisions + 1, differ + (a != b)
            if a != b:
                print(f"hand {sizes}: trial {tid} at {acc}: syne-tune stop={a}, ours stop={b}")
    for seed in range(args.cases):
        budget = 27
        sizes, acc, r = interleaving(seed, budget)
        theirs, ours = their_moasha(budget, 3, sizes), Moasha(budget, 3, sizes)
        waiting, running = list(acc), {}
        while waiting or running:
            while waiting and len(running) < 3:
                running[waiting.pop(0)] = 0
            tid = r.choice(sorted(running))
            t = running[tid] + 1
            a = theirs(tid, t, acc[tid][t - 1])
            if t < budget:
                b = ours.decide(tid, t, acc[tid][t - 1])
                decisions, differ = decisions + 1, differ + (a != b)
                if a != b:
                    print(f"case {seed}: trial {tid} epoch {t}: syne-tune stop={a}, ours={b}")
            if a or t == budget:
                del running[tid]
            else:
                running[tid] = t
    print(f"decisions={decisions} differ={differ}")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
