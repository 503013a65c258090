"""Experiments built from training runs: comparisons, ablation sweeps and the paper's claims.

Each writes its runs under ``DIR/runs/<label>/`` (ordinary run directories, see
:mod:`qnewton.training`) and one JSON file that :mod:`qnewton.reports` turns into plots:
``comparison.json``, ``sweep.json`` or ``claims.json``.
"""

from qnewton.experiments.claims import claims_markdown, reproduce
from qnewton.experiments.compare import compare
from qnewton.experiments.crossover import find_crossovers
from qnewton.experiments.runs import format_table, run_row, time_to_target
from qnewton.experiments.sweep import SWEEP_PARAMS, sweep

__all__ = ["SWEEP_PARAMS", "claims_markdown", "compare", "find_crossovers", "format_table",
           "reproduce", "run_row", "sweep", "time_to_target"]
