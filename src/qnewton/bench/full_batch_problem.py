"""One problem of the ``full-batch`` case (:mod:`~qnewton.bench.full_batch`): a seeded model on a
fixed data set, its objective, its accuracy metric and its target (docs/method.md §4.13).

Every problem has the same shape, so every method sees the same objective:

* outputs ``z = outputs(θ)``, shape ``(S, C)`` — model outputs (a fit, logits) or residuals (a
  PINN), one row per sample;
* a per-sample loss ``ℓ_s(z_s)`` of one of the kinds in :data:`LOSS_KINDS` (``squares``:
  ``Σ_c (z_sc − t_sc)²``; ``softmax-ce``: cross-entropy of the logits ``z_s`` against class
  ``t_s``; ``sigmoid-kl``: ``Σ_c KL(t_sc ‖ σ(z_sc))`` of Bernoulli pixels, the binary
  cross-entropy minus the targets' own entropy, so the objective is ≥ 0 and 0 only at a perfect
  reconstruction);
* an optional L2 term ``½·l2·Σ_{p ∈ penalized} ‖θ_p‖²`` on named parameters;
* objective ``L(θ) = (1/S)·Σ_s ℓ_s(z_s(θ)) + ½·l2·Σ ‖θ_p‖²``.

Methods use it in two forms: ``forward(model)`` builds ``z`` under autograd (the closure of
QNewton, Adam and L-BFGS; a PINN differentiates the network with respect to its inputs with
``torch.autograd.grad(..., create_graph=True)``), and ``functional(model)`` is a map
``(params, rows) → z[rows]`` from ``{name: tensor}`` and rows of the per-sample ``inputs``
``(S, d)`` that ``torch.func`` transforms compose with. Samples are independent (row ``s`` of
``z`` depends only on row ``s`` of ``inputs``), so the Jacobian of all ``S·C`` outputs is one
vmapped per-sample ``jacrev`` (the Levenberg–Marquardt reference and scipy). The loss kinds
give, besides ``ℓ``, the loss gradient ``∂ℓ_s/∂z_s`` and a square root ``R_s`` of the loss
Hessian (``R_sᵀR_s = ∂²ℓ_s/∂z_s²``), so that the generalized Gauss–Newton matrix is
``(1/S)·Σ_s (R_s J_s)ᵀ(R_s J_s)`` plus the L2 term's ``l2·I`` on its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: The per-sample loss kinds (see the module docstring).
LOSS_KINDS = ("squares", "softmax-ce", "sigmoid-kl")


def per_sample_loss(kind: str, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``ℓ_s(z_s)``, shape ``(S,)``, for outputs ``z`` ``(S, C)`` and targets ``t`` (``(S, C)``
    for ``squares`` and ``sigmoid-kl``, class indices ``(S,)`` for ``softmax-ce``)."""
    if kind == "squares":
        return ((z - t) ** 2).sum(dim=1)
    if kind == "softmax-ce":
        return F.cross_entropy(z, t, reduction="none")
    if kind == "sigmoid-kl":
        bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        return (bce - _bernoulli_entropy(t)).sum(dim=1)
    raise ValueError(f"loss kind must be one of {', '.join(LOSS_KINDS)}; got {kind!r}")


def _bernoulli_entropy(t: torch.Tensor) -> torch.Tensor:
    # 0·log 0 = 0 at pixels that are exactly 0 or 1
    return -(torch.xlogy(t, t) + torch.xlogy(1 - t, 1 - t))


def loss_gradient(kind: str, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``∂ℓ_s/∂z_s``, shape ``(S, C)`` (closed forms; the tests compare them with autograd)."""
    if kind == "squares":
        return 2 * (z - t)
    if kind == "softmax-ce":
        return z.softmax(dim=1) - F.one_hot(t, z.shape[1]).to(z.dtype)
    if kind == "sigmoid-kl":
        return torch.sigmoid(z) - t
    raise ValueError(f"loss kind must be one of {', '.join(LOSS_KINDS)}; got {kind!r}")


def hessian_root(kind: str, z: torch.Tensor) -> torch.Tensor:
    """``R_s`` with ``R_sᵀR_s = ∂²ℓ_s/∂z_s²``, shape ``(S, C, C)``.

    ``squares``: ``√2·I``; ``softmax-ce``: ``diag(√p) − √p pᵀ`` (``Σp = 1`` makes its Gram
    ``diag(p) − ppᵀ``); ``sigmoid-kl``: ``diag(√(σ(1 − σ)))``."""
    s, c = z.shape
    if kind == "squares":
        return (2.0 ** 0.5) * torch.eye(c, dtype=z.dtype).expand(s, c, c)
    if kind == "softmax-ce":
        p = z.softmax(dim=1)
        root = p.sqrt()
        return torch.diag_embed(root) - root.unsqueeze(2) * p.unsqueeze(1)
    if kind == "sigmoid-kl":
        q = torch.sigmoid(z)
        return torch.diag_embed((q * (1 - q)).sqrt())
    raise ValueError(f"loss kind must be one of {', '.join(LOSS_KINDS)}; got {kind!r}")


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """The trainable parameters of ``model`` as one detached vector ``(N,)``, in
    ``named_parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def unflatten(model: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """``theta`` ``(N,)`` as ``{name: tensor}`` shaped like the trainable parameters."""
    out, start = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = theta[start:start + p.numel()].reshape(p.shape)
            start += p.numel()
    return out


def load_flat(model: nn.Module, theta: torch.Tensor) -> None:
    """Copy ``theta`` ``(N,)`` into the trainable parameters of ``model``."""
    with torch.no_grad():
        for name, value in unflatten(model, theta).items():
            model.get_parameter(name).copy_(value)


@dataclass(frozen=True)
class FullBatchProblem:
    """A full-batch problem (module docstring).

    Attributes:
        name, description: registry name and one line for the table.
        make_model: a fresh float64 model with the problem's seeded initial weights.
        forward: ``model → z`` ``(S, C)`` under autograd.
        functional: ``model → ((params, rows) → z_rows)`` for ``torch.func``: ``params``
            ``{name: tensor}``, ``rows`` any ``(B, d)`` rows of ``inputs``, ``z_rows`` ``(B, C)``.
        inputs: the per-sample inputs ``(S, d)`` of ``functional``.
        loss_kind, targets: the per-sample loss and its targets (:func:`per_sample_loss`).
        metric: ``model → float``, the accuracy figure (lower is better), named ``metric_name``.
        target: the metric to reach: a number, or the name of the method whose median accuracy at
            the time budget sets it (the anchor), or ``"best-peer"`` (the best median accuracy
            at the budget of any method that is not QNewton).
        l2, penalized: the L2 term's weight and the parameter names it applies to.
        sklearn: for multinomial logistic regression, what sklearn's ``LogisticRegression``
            needs (``x``, ``y``, ``C``) to solve the same problem; ``None`` otherwise.
    """

    name: str
    description: str
    make_model: Callable[[], nn.Module]
    forward: Callable[[nn.Module], torch.Tensor]
    functional: Callable[[nn.Module], Callable[[dict[str, torch.Tensor], torch.Tensor],
                                                torch.Tensor]]
    inputs: torch.Tensor
    loss_kind: str
    targets: torch.Tensor
    metric: Callable[[nn.Module], float]
    metric_name: str
    target: float | str
    l2: float = 0.0
    penalized: tuple[str, ...] = ()
    sklearn: dict[str, Any] | None = field(default=None)

    @property
    def least_squares(self) -> bool:
        """Whether the objective is a sum of squares (scipy ``least_squares`` applies)."""
        return self.loss_kind == "squares" and self.l2 == 0.0

    def penalty(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``½·l2·Σ_{p ∈ penalized} ‖θ_p‖²`` (0-dim tensor) of ``{name: tensor}``."""
        total = torch.zeros((), dtype=torch.float64)
        for name in self.penalized:
            total = total + (params[name] ** 2).sum()
        return 0.5 * self.l2 * total

    def _penalty_of(self, model: nn.Module) -> torch.Tensor:
        return self.penalty({n: model.get_parameter(n) for n in self.penalized})

    def losses(self, model: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ``(S,)`` whose mean is the objective: ``ℓ_s`` plus the L2 term
        (each sample carries the whole term, so the mean counts it once)."""
        losses = per_sample_loss(self.loss_kind, z, self.targets)
        return losses + self._penalty_of(model) if self.penalized else losses

    def closure(self, model: nn.Module, with_outputs: bool) -> Callable[[], Any]:
        """QNewton's closure: the per-sample losses, with the outputs ``z`` when
        ``with_outputs`` (the GGN kinds)."""

        def closure() -> Any:
            z = self.forward(model)
            losses = self.losses(model, z)
            return (losses, z) if with_outputs else losses

        return closure

    def mean_loss(self, model: nn.Module) -> torch.Tensor:
        """The objective as a 0-dim tensor under autograd (first-order methods, L-BFGS)."""
        return self.losses(model, self.forward(model)).mean()

    def objective(self, model: nn.Module) -> float:
        """The objective's value (autograd stays on: a PINN's residual needs it)."""
        with torch.enable_grad():
            return float(self.mean_loss(model).detach())

    def objective_of(self, fn: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
                     params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective from the functional form ``fn`` at ``params`` (0-dim tensor)."""
        z = fn(params, self.inputs)
        return per_sample_loss(self.loss_kind, z, self.targets).mean() + self.penalty(params)
