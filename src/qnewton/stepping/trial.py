"""Trial evaluations of the closure that leave no trace in the model.

A step rule measures the loss at a trial point (ρ, backtracking) by calling the closure again.
That call must not disturb the model: a BatchNorm in training mode updates its running
statistics on every forward pass (a trial pass would count twice, at parameters that may be
rejected), and a closure that differentiates the network itself — a physics-informed loss with
``torch.autograd.grad(u, x, create_graph=True)`` — cannot run under ``torch.no_grad()``
(docs/method.md §4.12).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from qnewton.stepping.closure import unpack_closure_output


@contextmanager
def buffers_restored() -> Iterator[None]:
    """Every buffer of every module that runs inside the ``with`` body (running means and
    variances, batch counters, …) is put back as it was when the module was first called."""
    saved: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def snapshot(module: nn.Module, args: Any) -> None:
        if id(module) not in saved:
            saved[id(module)] = [(b, b.detach().clone()) for b in module.buffers(recurse=False)]

    handle = nn.modules.module.register_module_forward_pre_hook(snapshot)
    try:
        yield
    finally:
        handle.remove()
        with torch.no_grad():
            for pairs in saved.values():
                for buffer, value in pairs:
                    buffer.copy_(value)


class TrialEvaluator:
    """The mean loss of a closure at the current parameters, without side effects on buffers.

    It runs the closure under ``torch.no_grad()`` (no graph to build) unless the closure needs
    autograd: the first trial that fails under ``no_grad`` with a ``RuntimeError`` is run again
    with autograd enabled, and every later trial is run that way (:attr:`needs_grad`).
    """

    def __init__(self) -> None:
        self.needs_grad = False

    def __call__(self, closure: Callable[[], Any]) -> float:
        if not self.needs_grad:
            try:
                with buffers_restored(), torch.no_grad():
                    return self._mean(closure)
            except RuntimeError:
                self.needs_grad = True  # e.g. autograd.grad inside the closure (a PINN)
        with buffers_restored(), torch.enable_grad():
            return self._mean(closure)

    @staticmethod
    def _mean(closure: Callable[[], Any]) -> float:
        return float(unpack_closure_output(closure())[0].detach().mean())
