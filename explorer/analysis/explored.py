"""Where a proposing search went: how much of the space it trained, and in what order.

A method that chooses among enumerated candidates (ehvi) knows every candidate's
size before training. The figure draws the trained networks at their size and
accuracy, coloured by the order they were trained in, the front as found, and
every candidate never trained as a tick at its size along the bottom: a reader
sees whether the search covered the sizes where the front lies.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import explorer.analysis.plots as plots  # noqa: E402
from explorer import rows, search  # noqa: E402
from explorer import space as spaces  # noqa: E402
from explorer.analysis.pareto import pareto_mask  # noqa: E402


def candidates_table(space: spaces.Space) -> pd.DataFrame | None:
    """The points a proposing method chose from, with their known sizes, or None for a
    method that trains the points it enumerates."""
    if not search.METHODS[space.search.method].enumerated:
        return None
    return pd.DataFrame([{"point": p.index, **known} for p, known in rows.candidates(space)])


def explored(
    df: pd.DataFrame, candidates: pd.DataFrame, objectives: dict[str, str]
) -> tuple[str, Figure]:
    """(a sentence, a figure) for a sweep's rows and its candidates (one row per point
    of the space the method chose from: `point` and the known size columns)."""
    learned, size = list(objectives)[:2]
    trained = set(df["point"])
    ok = (
        df[df["status"] == "ok"]
        .groupby("point", as_index=False)
        .agg({learned: "mean", size: "first", "finished_at": "min"})
    )
    ok = ok.sort_values("finished_at").reset_index(drop=True)
    n, m = len(candidates), len(trained & set(candidates["point"]))
    sentence = (
        f"trained {m:,} of the {n:,} candidate points ({m / max(n, 1):.1%}); "
        f"{n - m:,} never trained"
    )
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    never = candidates[~candidates["point"].isin(trained)]
    low = ok[learned].min() if len(ok) else 0.0
    ax.plot(never[size], [low] * len(never), "|", color="0.6", ms=12, alpha=0.4,
            label=f"never trained ({len(never):,})")  # fmt: skip
    sc = ax.scatter(ok[size], ok[learned], c=ok.index, cmap="viridis", s=22, zorder=3)
    front = ok[pareto_mask(ok, {learned: objectives[learned], size: objectives[size]})]
    front = front.sort_values(size)
    ax.step(front[size], front[learned], where="post", color="crimson", lw=1.2,
            label=f"front as found ({len(front)})", zorder=4)  # fmt: skip
    plots.format_axis(ax, "x", size, candidates[size])
    plots.format_axis(ax, "y", learned)
    fig.colorbar(sc, ax=ax, label="order trained")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Where the search went: {sentence}", fontsize=9)
    fig.tight_layout()
    return sentence, fig
