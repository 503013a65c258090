"""Training/test loss and the test metric against the optimizer step."""

from __future__ import annotations

from qnewton.reports.figures import Plots, new_figure, spans_decades
from qnewton.reports.html import note
from qnewton.reports.reading import RunData, finite


def plot_loss(run: RunData, plots: Plots) -> str:
    train = [(r["step"], finite(r.get("loss"))) for r in run.steps
             if finite(r.get("loss")) is not None and not r.get("initial")]
    test_loss = [(r["step"], finite(r.get("test_loss"))) for r in run.steps
                 if finite(r.get("test_loss")) is not None]
    evals = run.evaluations()
    if not train and not test_loss and not evals:
        return note("Loss/metric plot skipped: steps.jsonl has no loss and no evaluation rows.")
    fig, (ax1, ax2) = new_figure(2, width=10)
    if train:
        ax1.plot(*zip(*train, strict=True), color="#555", lw=1, label="training loss (batch)")
    if test_loss:
        ax1.plot(*zip(*test_loss, strict=True), "o-", color="#d62728", ms=4, label="test loss")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("loss")
    ax1.set_title("loss vs step")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    missing = ""
    if evals and run.metric:
        key = f"test_{run.metric}"
        ax2.plot([r["step"] for r in evals], [finite(r[key]) for r in evals], "o-",
                 color="#2ca02c", ms=4)
        ax2.set_ylabel(f"test {run.metric}")
        if run.metric == "perplexity" and spans_decades([finite(r[key]) for r in evals], 1):
            ax2.set_yscale("log")
        ax2.set_title(f"test {run.metric} vs step")
        ax2.grid(alpha=0.3)
    else:
        ax2.text(0.5, 0.5, "no test evaluation recorded", ha="center", va="center",
                 transform=ax2.transAxes)
        ax2.set_axis_off()
        missing = note("No test evaluation rows in steps.jsonl: the metric panel is empty.")
    ax2.set_xlabel("optimizer step")
    return plots.save(fig, "loss.png", "training/test loss and test metric vs optimizer step "
                      "(step 0 = evaluation before training).") + missing
