"""The plots of a run report: one module per plot, one :data:`RUN_PLOTS` entry per plot.

A plot is a function ``draw(run, plots) -> html`` that saves its PNG through ``plots`` and returns
the <figure> (plus any notes), or returns only a note saying why it was skipped. The run report
draws every registered plot, in registration order, under its section's heading. To add a plot:
write its module here and register it below (and test that it appears in a report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qnewton.registry import Registry
from qnewton.reports.figures import Plots
from qnewton.reports.reading import RunData
from qnewton.reports.run_plots.kappa import plot_kappa
from qnewton.reports.run_plots.loss import plot_loss
from qnewton.reports.run_plots.metric_time import plot_metric_time
from qnewton.reports.run_plots.routing import plot_routing
from qnewton.reports.run_plots.sparsity import plot_sparsity
from qnewton.reports.run_plots.time_breakdown import plot_time_breakdown


@dataclass(frozen=True)
class RunSection:
    """A heading of the run report that plots are drawn under."""

    heading: str
    #: Plots that read solves.jsonl: without solves the section shows one note instead of them.
    needs_solves: bool = False


TRAINING_CURVES = RunSection("Training curves")
HESSIAN_BLOCKS = RunSection("Hessian blocks", needs_solves=True)
TIME_BREAKDOWN = RunSection("Time breakdown")
#: The sections in page order.
RUN_SECTIONS = (TRAINING_CURVES, HESSIAN_BLOCKS, TIME_BREAKDOWN)


@dataclass(frozen=True)
class RunPlot:
    """A registered run plot: where it goes, what to call it in notes, and how to draw it."""

    section: RunSection
    title: str
    draw: Callable[[RunData, Plots], str]


RUN_PLOTS: Registry[RunPlot] = Registry("run plot")
RUN_PLOTS.register("loss", RunPlot(TRAINING_CURVES, "loss", plot_loss))
RUN_PLOTS.register("metric_time", RunPlot(TRAINING_CURVES, "metric vs time", plot_metric_time))
RUN_PLOTS.register("kappa", RunPlot(HESSIAN_BLOCKS, "κ", plot_kappa))
RUN_PLOTS.register("sparsity", RunPlot(HESSIAN_BLOCKS, "sparsity", plot_sparsity))
RUN_PLOTS.register("routing", RunPlot(HESSIAN_BLOCKS, "routing", plot_routing))
RUN_PLOTS.register("time_breakdown", RunPlot(TIME_BREAKDOWN, "time breakdown",
                                             plot_time_breakdown))

__all__ = ["RUN_PLOTS", "RUN_SECTIONS", "RunPlot", "RunSection", "TRAINING_CURVES",
           "HESSIAN_BLOCKS", "TIME_BREAKDOWN"]
