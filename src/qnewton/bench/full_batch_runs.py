"""The methods of the ``full-batch`` case and one timed run of a method on a problem
(docs/method.md §4.13).

Methods (:data:`METHODS`; each starts from the problem's seeded initial weights):

* ``qnewton``: :func:`qnewton_at_defaults` — ``QNewton(model.named_parameters())``, the
  constructor's defaults, as a new user gets it. Its closure returns ``(losses, outputs)`` (every
  problem here has outputs; the default curvature decides whether it uses them);
* ``qnewton-ggn``: the same with ``curvature="ggn"``;
* ``adam``: ``torch.optim.Adam`` on the objective, one learning rate per run (the case picks the
  best of a grid);
* ``lbfgs``: ``torch.optim.LBFGS`` with the strong-Wolfe line search, history 50, one iteration
  per step, tolerances 0 (it stops only when a step leaves the parameters unchanged);
* ``scipy``: ``scipy.optimize.least_squares`` on the residual vector with the Jacobian from
  ``torch.func`` (MINPACK's ``lm`` when there are at least as many residuals as parameters, else
  ``trf``), tolerances 1e-15; sums of squares only;
* ``sklearn``: ``LogisticRegression`` (lbfgs) at tolerance :data:`SKLEARN_TOL`, timed whole (it
  has no per-iteration hook); ``logistic`` only;
* ``lm``: the whole-model Levenberg–Marquardt reference
  (:class:`~qnewton.bench.levenberg_marquardt.LevenbergMarquardt`).

A run is timed on the wall clock with everything that is not the method excluded (the
:class:`Recorder` stops the clock while it copies the iterate and evaluates the metric): it
stops once its training time reaches the budget. The metric is evaluated on the iterate at most
every ``budget / evals`` training seconds, so a time to target has that resolution; the accuracy
at the budget is the metric of the last iterate finished within the budget (exact).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from qnewton.bench.full_batch_problem import (
    FullBatchProblem,
    flat_parameters,
    load_flat,
    unflatten,
)
from qnewton.bench.full_batch_problems import sklearn_logistic
from qnewton.bench.levenberg_marquardt import LevenbergMarquardt, output_jacobian
from qnewton.optimizer import QNewton
from qnewton.solvers import MachineRates

METHODS = ("qnewton", "qnewton-ggn", "adam", "lbfgs", "scipy", "sklearn", "lm")
#: The QNewton methods (not peers: the target "best-peer" and the headline leave them out).
QNEWTON_METHODS = ("qnewton", "qnewton-ggn")
LBFGS_HISTORY = 50
#: Strong-Wolfe evaluations per L-BFGS iteration (torch's default 1.25·max_iter would leave
#: the line search one evaluation at max_iter = 1).
LBFGS_MAX_EVAL = 25
SCIPY_TOL = 1e-15
SKLEARN_TOL = 1e-10


def qnewton_at_defaults(model: nn.Module, rates: MachineRates | None,
                        curvature: str | None = None) -> QNewton:
    """The one place the case builds QNewton: ``QNewton(model.named_parameters())`` at the
    constructor's defaults (so a change of a default shows here at once), with ``curvature`` when
    given, and the suite's calibrated machine ``rates`` (a measurement of this machine, not a
    setting of the method; ``None`` calibrates at the first step)."""
    extra = {} if curvature is None else {"curvature": curvature}
    return QNewton(model.named_parameters(), rates=rates, **extra)


def applies(method: str, problem: FullBatchProblem) -> bool:
    """Whether ``method`` runs on ``problem`` (scipy: sums of squares; sklearn: logistic)."""
    if method == "scipy":
        return problem.least_squares
    if method == "sklearn":
        return problem.sklearn is not None
    return True


class OutOfTime(Exception):
    """Raised inside scipy's callbacks once the run's training time reaches its budget."""


class Recorder:
    """The clock and the accuracy curve of one run (module docstring)."""

    def __init__(self, problem: FullBatchProblem, budget: float, evals: int) -> None:
        self.problem = problem
        self.budget = budget
        self.resolution = budget / evals
        self.eval_model = problem.make_model()
        self.train = 0.0
        self.steps = 0
        self.curve: list[list[float]] = [[0.0, problem.metric(self.eval_model)]]
        self.last_ok: tuple[float, int, torch.Tensor] = (0.0, 0, flat_parameters(self.eval_model))
        self._next_eval = self.resolution
        self._start = time.perf_counter()

    @property
    def over(self) -> bool:
        """Whether the training time (clock running) has reached the budget."""
        return self.train + time.perf_counter() - self._start >= self.budget

    def stop(self) -> None:
        """Stop the clock for good (a run that ended by an exception)."""
        self.train += time.perf_counter() - self._start
        self._start = time.perf_counter()

    def record(self, theta: torch.Tensor) -> float | None:
        """Book one finished step ending at ``theta`` ``(N,)``; the clock stops meanwhile.
        Returns the metric when it was evaluated now, else ``None``."""
        self.train += time.perf_counter() - self._start
        self.steps += 1
        value = None
        if self.train <= self.budget:
            self.last_ok = (self.train, self.steps, theta.detach().clone())
        if self.budget >= self.train >= self._next_eval:
            value = self._evaluate(theta)
            self.curve.append([self.train, value])
            self._next_eval = self.train + self.resolution
        self._start = time.perf_counter()
        return value

    def _evaluate(self, theta: torch.Tensor) -> float:
        load_flat(self.eval_model, theta)
        return self.problem.metric(self.eval_model)

    def finish(self, status: str, **extra: Any) -> dict[str, Any]:
        """The run's record: the curve (with the last iterate within the budget), the accuracy
        at the budget, steps and status."""
        seconds, steps, theta = self.last_ok
        accuracy = self._evaluate(theta)
        if not any(t == seconds for t, _ in self.curve):
            self.curve.append([seconds, accuracy])
            self.curve.sort()
        return {"status": status, "accuracy": accuracy, "steps_in_budget": steps,
                "steps": self.steps, "train_seconds": self.train, "curve": self.curve, **extra}


def _loop(step: Callable[[], bool], theta: Callable[[], torch.Tensor], rec: Recorder,
          max_steps: int | None) -> str:
    """Run ``step`` until the budget, ``max_steps``, convergence (``step`` returns False) or a
    non-finite metric; returns the status."""
    while not rec.over and (max_steps is None or rec.steps < max_steps):
        going = step()
        value = rec.record(theta())
        if value is not None and not math.isfinite(value):
            return "non-finite"
        if not going:
            return "converged"
    return "budget" if max_steps is None or rec.steps < max_steps else "step cap"


def _first_order(method: str, problem: FullBatchProblem, model: nn.Module, lr: float | None
                 ) -> Callable[[], bool]:
    if method == "adam":
        adam = torch.optim.Adam(model.parameters(), lr=lr)

        def adam_step() -> bool:
            adam.zero_grad(set_to_none=True)
            problem.mean_loss(model).backward()
            adam.step()
            return True

        return adam_step
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=1, max_eval=LBFGS_MAX_EVAL,
                              tolerance_grad=0.0, tolerance_change=0.0,
                              history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        lbfgs.zero_grad(set_to_none=True)
        loss = problem.mean_loss(model)
        loss.backward()
        return loss

    def lbfgs_step() -> bool:
        before = flat_parameters(model)
        lbfgs.step(closure)
        return not torch.equal(before, flat_parameters(model))

    return lbfgs_step


def _scipy(problem: FullBatchProblem, model: nn.Module, rec: Recorder, max_steps: int | None
           ) -> dict[str, Any]:
    from scipy.optimize import least_squares

    fn = problem.functional(model)

    def fun(x: np.ndarray) -> np.ndarray:
        if rec.over:
            raise OutOfTime
        theta = torch.from_numpy(x)
        with torch.no_grad():
            z = fn(unflatten(model, theta), problem.inputs)
        return (z - problem.targets).reshape(-1).numpy()

    calls = [0]

    def jac(x: np.ndarray) -> np.ndarray:
        theta = torch.from_numpy(x).clone()
        calls[0] += 1
        if calls[0] > 1:  # scipy takes a Jacobian at x0, then at each accepted iterate: a step
            rec.record(theta)
        if rec.over or (max_steps is not None and rec.steps >= max_steps):
            raise OutOfTime
        jacobian, _ = output_jacobian(problem, model, theta)
        return jacobian.reshape(-1, theta.numel()).numpy()

    x0 = flat_parameters(model).numpy()
    rows = problem.targets.numel()
    method = "lm" if rows >= x0.size else "trf"
    try:
        result = least_squares(fun, x0, jac=jac, method=method, ftol=SCIPY_TOL,
                               xtol=SCIPY_TOL, gtol=SCIPY_TOL, max_nfev=10**6)
    except OutOfTime:
        return {"status": "budget", "scipy_method": method}
    rec.record(torch.from_numpy(result.x))
    return {"status": f"converged ({result.message})", "scipy_method": method}


def _sklearn(problem: FullBatchProblem, model: nn.Module, rec: Recorder) -> dict[str, Any]:
    fitted = sklearn_logistic(problem, tol=SKLEARN_TOL)
    theta = torch.cat([torch.tensor(fitted.coef_, dtype=torch.float64).reshape(-1),
                       torch.tensor(fitted.intercept_, dtype=torch.float64)])
    rec.record(theta)
    done = rec.train <= rec.budget
    return {"status": "converged" if done else "finished after the budget",
            "sklearn_iterations": int(np.max(fitted.n_iter_))}


def run_method(problem: FullBatchProblem, method: str, budget: float, evals: int,
               rates: MachineRates | None, lr: float | None = None,
               max_steps: int | None = None) -> dict[str, Any]:
    """One timed run of ``method`` on ``problem`` within ``budget`` training seconds (module
    docstring); ``lr`` for ``adam``; ``max_steps`` caps the steps (warm-up runs). A method that
    raises ends the run with status ``error: ...`` and the accuracy of its last iterate."""
    if not applies(method, problem):
        raise ValueError(f"method {method!r} does not apply to problem {problem.name!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = _run(problem, method, budget, evals, rates, lr, max_steps)
    # what the method warned about, once per message (QNewton's fallbacks, scipy's notes)
    record["warnings"] = sorted({str(w.message)[:300] for w in caught})
    return record


def _run(problem: FullBatchProblem, method: str, budget: float, evals: int,
         rates: MachineRates | None, lr: float | None, max_steps: int | None) -> dict[str, Any]:
    model = problem.make_model()
    rec = Recorder(problem, budget, evals)
    extra: dict[str, Any] = {"method": method, "lr": lr}
    try:
        if method in QNEWTON_METHODS:
            opt = qnewton_at_defaults(model, rates, "ggn" if method == "qnewton-ggn" else None)
            closure = problem.closure(model, with_outputs=True)

            def qnewton_step() -> bool:
                opt.step(closure)  # a non-finite loss is skipped, and raises after a few
                return True

            status = _loop(qnewton_step, lambda: flat_parameters(model), rec, max_steps)
        elif method in ("adam", "lbfgs"):
            status = _loop(_first_order(method, problem, model, lr),
                           lambda: flat_parameters(model), rec, max_steps)
        elif method == "lm":
            lm = LevenbergMarquardt(problem, model)
            status = _loop(lm.step, lambda: lm.theta, rec, max_steps)
            extra |= {"lm_accepted": lm.accepted, "lm_rejected": lm.rejected, "lm_mu": lm.mu}
        elif method == "scipy":
            extra |= _scipy(problem, model, rec, max_steps)
            status = extra.pop("status")
        elif method == "sklearn":
            extra |= _sklearn(problem, model, rec)
            status = extra.pop("status")
        else:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    except Exception as exc:  # noqa: BLE001 - a failing method is a result of the benchmark
        rec.stop()
        status = f"error: {type(exc).__name__}: {exc}"
    return rec.finish(status, **extra)


def time_to(curve: list[list[float]], target: float, budget: float) -> float:
    """The first training time on ``curve`` (``[[seconds, metric], ...]``), within ``budget``,
    with metric ≤ ``target``; ``inf`` if none."""
    return next((t for t, m in curve if t <= budget and m <= target), math.inf)
