"""Analysis of results tables: seed aggregation, Pareto fronts, EDFs, figures, reports.

Pure functions of an `explorer.results` table; `plots` turns their output into
matplotlib Figures, `interactive` and `interactive_curves` into Plotly ones (of
the seed-averaged `architectures`, which also chooses one to export), and
`report.write_report` writes them all to Markdown and HTML; `stats` compares levels
(bootstrap, KS) and `replay` replays early-stopping schedulers over recorded curves.
"""

import explorer.analysis.architectures as architectures
import explorer.analysis.interactive as interactive
import explorer.analysis.interactive_curves as interactive_curves
import explorer.analysis.plots as plots
import explorer.analysis.replay as replay
import explorer.analysis.stats as stats
from explorer.analysis.edf import complexity_weights, edf, sensitivity
from explorer.analysis.pareto import (
    aggregate_seeds,
    busy_seconds,
    hypervolume,
    hypervolume_2d,
    ok_rows,
    pareto_front,
    pareto_mask,
    preset_names,
    program_share,
    trial_seconds,
    varied_metaparameters,
)
from explorer.analysis.report import write_report

__all__ = [
    "aggregate_seeds",
    "architectures",
    "busy_seconds",
    "complexity_weights",
    "edf",
    "hypervolume",
    "hypervolume_2d",
    "interactive",
    "interactive_curves",
    "ok_rows",
    "pareto_front",
    "pareto_mask",
    "plots",
    "preset_names",
    "program_share",
    "replay",
    "sensitivity",
    "stats",
    "trial_seconds",
    "varied_metaparameters",
    "write_report",
]
