"""A whole-model Levenberg–Marquardt reference for the ``full-batch`` case (docs/method.md §4.13).

On a :class:`~qnewton.bench.full_batch_problem.FullBatchProblem` with outputs ``z(θ)`` ``(S, C)``,
per-sample losses ``ℓ_s`` and an optional L2 term with diagonal Hessian ``P`` (``l2`` on the
penalized entries, 0 elsewhere), one linearization at ``θ`` computes, all from
``torch.func.jacrev`` of the whole output vector (``M = S·C`` rows, ``N`` parameters, no block
partition; computed per sample and vmapped, since row ``s`` depends only on sample ``s``):

* ``J`` ``(M, N)``, the gradient ``g = (1/S)·Jᵀ ∂ℓ/∂z + Pθ``;
* the scaled rows ``J̃ = R J / √S`` with ``R_s`` the loss Hessian's square root, so that
  ``G = J̃ᵀJ̃ + P`` is the Gauss–Newton matrix of a sum of squares (``R = √2·I``) and the
  generalized Gauss–Newton matrix (Schraudolph 2002) otherwise.

Each iteration solves ``(G + μI) δ = −g`` — in parameter space by Cholesky when ``N ≤ M``, else
in sample space by the Woodbury identity with ``D = P + μI``:
``(J̃ᵀJ̃ + D)⁻¹g = D⁻¹g − D⁻¹J̃ᵀ(I + J̃D⁻¹J̃ᵀ)⁻¹J̃D⁻¹g`` — and measures the gain ratio
``ρ = (L(θ) − L(θ + δ)) / (L(θ) − m(δ))`` with the model's predicted decrease
``L(θ) − m(δ) = ½·δᵀ(μδ − g)`` (Madsen, Nielsen & Tingleff 2004, eq. 3.14). Damping follows
Nielsen (1999): start at ``μ₀ = τ·max diag(G)`` (τ = 1e-3); on ``ρ > 0`` accept, set
``μ ← μ·max(1/3, 1 − (2ρ − 1)³)`` and ``ν ← 2``; otherwise reject and set ``μ ← μ·ν``,
``ν ← 2ν``. A failed factorization or a non-finite trial loss counts as a rejection. It stops
(``converged``) when the gradient is exactly 0, or the step is below round-off
(``‖δ‖ ≤ 1e-15·(‖θ‖ + 1e-15)``), or ``ν`` passes 1e30 (no decrease is representable).
Scaled variants (Moré 1978: ``μ·diag(JᵀJ)`` instead of ``μI``) change only the damping matrix;
this reference keeps Nielsen's ``μI``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.func import jacrev, vmap

from qnewton.bench.full_batch_problem import (
    FullBatchProblem,
    flat_parameters,
    hessian_root,
    load_flat,
    loss_gradient,
    unflatten,
)

#: Nielsen's initial damping scale μ₀ = TAU·max diag(G) (Madsen, Nielsen & Tingleff 2004 §3.2:
#: 1e-6 for a good starting point, 1e-3 or 1 otherwise).
TAU = 1e-3
#: ν past this: every representable step has been rejected, the iterate is final.
NU_MAX = 1e30


def output_jacobian(problem: FullBatchProblem, model: nn.Module, theta: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J, z)`` of ``problem``'s outputs at the flat parameters ``theta`` ``(N,)`` (``model``
    gives the structure): ``J`` ``(S, C, N)`` by a per-sample ``jacrev`` vmapped over the
    problem's inputs (the samples are independent), ``z`` ``(S, C)``, both detached. The
    Jacobian is taken with respect to the parameter dict and concatenated after (slicing a flat
    θ inside ``jacrev`` was ~10x slower on ``logistic``)."""
    fn = problem.functional(model)

    def row_outputs(params: dict[str, torch.Tensor], row: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = fn(params, row.unsqueeze(0)).squeeze(0)
        return z, z

    per_sample = vmap(jacrev(row_outputs, has_aux=True), in_dims=(None, 0))
    jac, z = per_sample(unflatten(model, theta), problem.inputs)
    flat = torch.cat([j.reshape(*z.shape, -1) for j in jac.values()], dim=2)
    return flat.detach(), z.detach()


class LevenbergMarquardt:
    """Whole-model Levenberg–Marquardt with Nielsen's damping update (module docstring).

    ``model`` supplies the structure and the starting point (its parameters are not changed
    until :meth:`write_to`); ``step()`` runs one iteration (one trial step, accepted or not) and
    returns ``False`` once converged.
    """

    def __init__(self, problem: FullBatchProblem, model: nn.Module, tau: float = TAU) -> None:
        self.problem = problem
        self.model = model
        self.fn = problem.functional(model)
        self.theta = flat_parameters(model).clone()
        self.penalty_diag = torch.zeros_like(self.theta)
        start = 0
        for name, p in model.named_parameters():
            if p.requires_grad:
                if name in problem.penalized:
                    self.penalty_diag[start:start + p.numel()] = problem.l2
                start += p.numel()
        self.tau = tau
        self.mu: float | None = None
        self.nu = 2.0
        self.loss = float(self._objective(self.theta))
        self.converged = False
        self.accepted = self.rejected = 0
        self._linear: dict[str, Any] | None = None

    def _objective(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.problem.objective_of(self.fn, unflatten(self.model, theta))

    def jacobian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(J, z)`` at the current θ (:func:`output_jacobian`)."""
        return output_jacobian(self.problem, self.model, self.theta)

    def linearize(self) -> dict[str, Any]:
        """``J̃`` ``(M, N)``, ``g`` ``(N,)`` and (when ``N ≤ M``) ``J̃ᵀJ̃`` at the current θ."""
        jac, z = self.jacobian()
        s = z.shape[0]
        kind, t = self.problem.loss_kind, self.problem.targets
        grad = torch.einsum("sc,scn->n", loss_gradient(kind, z, t), jac) / s
        grad = grad + self.penalty_diag * self.theta
        rows = torch.einsum("sij,sjn->sin", hessian_root(kind, z), jac)
        rows = rows.reshape(-1, self.theta.numel()) / math.sqrt(s)
        out = {"rows": rows, "grad": grad}
        if rows.shape[1] <= rows.shape[0]:
            out["gram"] = rows.T @ rows
            diag = out["gram"].diagonal()
        else:
            diag = (rows * rows).sum(dim=0)
        if self.mu is None:
            top = float((diag + self.penalty_diag).max())
            self.mu = self.tau * (top if top > 0 else 1.0)
        return out

    def solve(self, lin: dict[str, Any], mu: float) -> torch.Tensor | None:
        """``δ = −(G + μI)⁻¹g``, or ``None`` when the factorization fails."""
        rows, grad = lin["rows"], lin["grad"]
        d = self.penalty_diag + mu
        if "gram" in lin:
            a = lin["gram"] + torch.diag(d)
            chol, info = torch.linalg.cholesky_ex(a)
            if int(info) != 0:
                return None
            return -torch.cholesky_solve(grad.unsqueeze(1), chol).squeeze(1)
        scaled = rows / d  # J̃ D⁻¹, (M, N)
        b = torch.eye(rows.shape[0], dtype=rows.dtype) + scaled @ rows.T
        chol, info = torch.linalg.cholesky_ex(b)
        if int(info) != 0:
            return None
        inner = torch.cholesky_solve((scaled @ grad).unsqueeze(1), chol).squeeze(1)
        return -(grad / d - (rows.T @ inner) / d)

    def step(self) -> bool:
        """One iteration (module docstring); ``False`` once converged."""
        if self.converged:
            return False
        if self._linear is None:
            self._linear = self.linearize()
            if not bool((self._linear["grad"] != 0).any()):
                self.converged = True
                return False
        mu = float(self.mu)  # type: ignore[arg-type]
        delta = self.solve(self._linear, mu)
        rho = -math.inf
        if delta is not None and bool(torch.isfinite(delta).all()):
            if float(delta.norm()) <= 1e-15 * (float(self.theta.norm()) + 1e-15):
                self.converged = True
                return False
            new_loss = float(self._objective(self.theta + delta))
            predicted = 0.5 * float(delta @ (mu * delta - self._linear["grad"]))
            if math.isfinite(new_loss) and predicted > 0:
                rho = (self.loss - new_loss) / predicted
        if rho > 0:
            self.theta = self.theta + delta
            self.loss = new_loss
            self.mu = mu * max(1 / 3, 1 - (2 * rho - 1) ** 3)
            self.nu = 2.0
            self.accepted += 1
            self._linear = None
        else:
            self.mu = mu * self.nu
            self.nu *= 2
            self.rejected += 1
            if self.nu > NU_MAX:
                self.converged = True
                return False
        return True

    def write_to(self, model: nn.Module) -> None:
        """Copy the current iterate into ``model``'s parameters."""
        load_flat(model, self.theta)
