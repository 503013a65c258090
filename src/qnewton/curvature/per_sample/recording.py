"""What the closure did, recorded while it ran: the module calls the functional per-sample path
re-runs, and the attention kernel every curvature computation can differentiate twice.

The curvature is built from the closure's autograd graph alone (no model object). Two things the
graph cannot give are collected while the closure runs inside :func:`curvature_closure`:

* **Module calls.** A global forward hook (``torch.nn.modules.module.
  register_module_forward_hook``, no model needed) records every call of a module that holds
  parameters: the module, its arguments and its output. A parameter no one-pass handler
  understands can then get its per-sample gradients by re-running *that module alone* per sample
  with ``torch.func.functional_call`` under ``vmap`` (:mod:`~qnewton.curvature.per_sample.
  functional`), seeded with the gradient that reached the call's output in one backward pass.
* **The math attention kernel.** ``F.scaled_dot_product_attention`` picks a fused kernel on CPU
  (flash attention) whose backward has no derivative: the double backward of a Jacobian-vector
  product, a Hessian product or the adaptive rule's quadratic fails on it, and ``vmap`` cannot
  batch it. Inside :func:`curvature_closure` the closure runs with
  ``sdpa_kernel(SDPBackend.MATH)``: the same function composed of differentiable matrix products
  (docs/method.md §4.7, "Any model").

Only the most recent recording is kept (superseded by the next closure, dropped by
:func:`release_recording` once the curvature is built); a consumer uses the records whose outputs
belong to the graph it is given, so a stale recording can never be used for another graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten


@dataclass(eq=False)
class ModuleCall:
    """One call of a module holding parameters: ``module(*args, **kwargs) -> output``."""

    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    def output_tensors(self) -> list[torch.Tensor]:
        """The output's tensors that carry a gradient (a tuple output: each of them)."""
        leaves, _ = tree_flatten(self.output)
        return [t for t in leaves if isinstance(t, torch.Tensor) and t.grad_fn is not None]


@dataclass(eq=False)
class Recording:
    """The module calls of one closure evaluation, in call order."""

    calls: list[ModuleCall] = field(default_factory=list)


_latest: Recording | None = None
_depth = 0


def latest_recording() -> Recording | None:
    """The recording of the most recent closure run inside :func:`curvature_closure`."""
    return _latest


def release_recording() -> None:
    """Drop the latest recording (its module inputs and outputs, and through them the graph of
    that closure): :func:`~qnewton.curvature.compute.compute_curvature` calls it once the rows
    are built, so a step's graph is not kept alive until the next closure."""
    global _latest
    if _depth == 0:
        _latest = None


def _holds_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


@contextlib.contextmanager
def curvature_closure(record: bool = True) -> Iterator[Recording]:
    """Run a closure so that every curvature computation on its graph works and is fast.

    Inside: scaled-dot-product attention uses the math kernel (differentiable twice, batchable),
    and, with ``record``, every call of a module holding parameters is recorded for the
    functional per-sample path. Nested uses record into the outermost recording.
    """
    global _latest, _depth
    from torch.nn.attention import SDPBackend, sdpa_kernel

    outer = _depth > 0
    recording = _latest if outer and _latest is not None else Recording()
    handle = None
    if record and not outer:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any) -> None:
            if torch.is_grad_enabled() and _holds_parameters(module):
                recording.calls.append(ModuleCall(module, args, dict(kwargs), output))

        handle = nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)
        _latest = recording
    _depth += 1
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield recording
    finally:
        _depth -= 1
        if handle is not None:
            handle.remove()
