"""Does the ranking of the broad Fire networks settle within the sweep's budget?

    python experiments/pareto_search/settle.py [SWEEP]

For each epoch, the Spearman rank correlation (scipy) between the trials'
accuracy at that epoch and at the last, over the trials trained to the full
budget; and how many of the final front's trials (accuracy against int8 bytes)
are already on the front of that epoch's accuracies. A budget is long enough
when the last few epochs no longer reorder the networks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from explorer import results
from explorer.analysis import pareto_mask, replay

SWEEP = Path(__file__).resolve().parent / "broad_fire"


def main(argv: list[str]) -> int:
    sweep = Path(argv[0]) if argv else SWEEP
    data = replay.full_curves(results.load(sweep), results.load_curves(sweep), "bytes_int8")
    trials = data.trials
    acc = np.array([data.accuracy[t] for t in trials])  # trials x epochs
    size = [data.size[t] for t in trials]

    def front(e: int) -> set[str]:
        df = pd.DataFrame({"accuracy": acc[:, e], "size": size})
        return {t for t, on in zip(trials, pareto_mask(df, {"accuracy": "max", "size": "min"}),
                                   strict=True) if on}  # fmt: skip

    final = front(data.budget - 1)
    print(f"{len(trials)} trials x {data.budget} epochs ({sweep.name}); final front {len(final)}\n")
    print("| epoch | Spearman rho with the last epoch | final front's trials on this epoch's |")
    print("|---|---|---|")
    for e in range(data.budget):
        rho = spearmanr(acc[:, e], acc[:, -1]).statistic
        print(f"| {e + 1} | {rho:.3f} | {len(front(e) & final)} of {len(final)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
