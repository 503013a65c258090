"""Second-order peers of ``time-to-target``: K-FAC (curvlinops) and a matrix-free GGN Newton-CG.

* **K-FAC** (Martens & Grosse 2015): each step builds curvlinops' ``KFACLinearOperator`` on the
  mini-batch (Monte-Carlo Fisher by default) and applies its damped inverse
  (``KFACInverseLinearOperator``) to the mean-loss gradient: ``Δ = −(K + damping)⁻¹ g``.
  curvlinops comes with the optional ``bench`` extra (``pip install -e '.[bench]'``); without it
  the peer is reported as skipped (:data:`KFAC_SKIPPED`), not as an error.
* **GGN Newton-CG** (Martens 2010, "Hessian-free"): the *whole-network* generalized Gauss-Newton
  ``G = (1/B)·Σ Jₙᵀ Hₙ Jₙ`` (``Hₙ = diag(p) − ppᵀ`` of the softmax cross-entropy), never formed:
  ``G v`` is one forward-mode and one reverse-mode product (``torch.func.jvp`` / ``vjp``), and
  ``(G + λI) Δ = −g`` is solved by a fixed number of conjugate-gradient iterations. Needs nothing
  beyond torch.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp, vjp

#: How a peer that needs curvlinops is reported when the ``bench`` extra is not installed.
KFAC_SKIPPED = "skipped: install the bench extra (pip install -e '.[bench]')"


def curvlinops_available() -> bool:
    """Whether curvlinops (the ``bench`` extra) is importable."""
    return importlib.util.find_spec("curvlinops") is not None


def mean_loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                       ) -> tuple[list[torch.Tensor], float]:
    """``∇θ mean CE(model(x), y)``, one tensor per parameter (detached), and the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    return [g.detach() for g in torch.autograd.grad(loss, params)], float(loss.detach())


def kfac_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float,
                   fisher_type: str = "mc", heuristic_damping: bool = True,
                   seed: int = 2147483647) -> tuple[list[torch.Tensor], float]:
    """``(K + damping)⁻¹ g`` on the batch ``(x, y)`` with curvlinops' K-FAC (the negative of
    the step), per parameter, and the batch loss. ``heuristic_damping``: Martens & Grosse's
    π-split of the damping between the two Kronecker factors; ``False``: exact damping
    ``(A ⊗ B + damping·I)⁻¹``."""
    from curvlinops import KFACInverseLinearOperator, KFACLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    kfac = KFACLinearOperator(
        model, nn.CrossEntropyLoss(), params, [(x, y)], fisher_type=fisher_type,
        check_deterministic=False, num_data=x.shape[0], num_per_example_loss_terms=1, seed=seed,
    )
    inverse = KFACInverseLinearOperator(
        kfac, damping=damping, use_heuristic_damping=heuristic_damping,
        use_exact_damping=not heuristic_damping,
    )
    grad, loss = mean_loss_gradient(model, x, y)
    return list(inverse @ grad), loss


def ggn_product(model: nn.Module, x: torch.Tensor, v: list[torch.Tensor]) -> list[torch.Tensor]:
    """``G v`` for the softmax cross-entropy GGN of the whole network on ``x`` (mean over the
    batch), with ``v`` one tensor per parameter."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    values = tuple(p.detach() for n, p in model.named_parameters() if p.requires_grad)

    def outputs(*theta: torch.Tensor) -> torch.Tensor:
        return functional_call(model, dict(zip(names, theta, strict=True)), (x,))

    z, jv = jvp(outputs, values, tuple(v))
    p = z.detach().softmax(dim=1)
    hjv = (p * jv - p * (p * jv).sum(dim=1, keepdim=True)) / x.shape[0]
    _, pullback = vjp(outputs, *values)
    return list(pullback(hjv))


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((u * w).sum() for u, w in zip(a, b, strict=True))


def ggn_cg_direction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float,
                     iterations: int) -> tuple[list[torch.Tensor], float]:
    """``≈ (G + damping·I)⁻¹ g`` by ``iterations`` conjugate-gradient steps from 0 (the negative
    of the step), per parameter, and the batch loss."""
    g, loss = mean_loss_gradient(model, x, y)
    sol = [torch.zeros_like(t) for t in g]
    r = [t.clone() for t in g]
    d = [t.clone() for t in g]
    rr = _dot(r, r)
    for _ in range(iterations):
        if not float(rr) > 0:
            break
        gd = ggn_product(model, x, d)
        ad = [a + damping * b for a, b in zip(gd, d, strict=True)]
        alpha = rr / _dot(d, ad)
        sol = [s + alpha * u for s, u in zip(sol, d, strict=True)]
        r = [s - alpha * u for s, u in zip(r, ad, strict=True)]
        rr_new = _dot(r, r)
        d = [s + (rr_new / rr) * u for s, u in zip(r, d, strict=True)]
        rr = rr_new
    return sol, loss


def apply_step(model: nn.Module, direction: list[torch.Tensor], lr: float) -> None:
    """``θ ← θ − lr·direction`` (``direction`` from :func:`kfac_direction` or
    :func:`ggn_cg_direction`)."""
    with torch.no_grad():
        params = [p for p in model.parameters() if p.requires_grad]
        for p, d in zip(params, direction, strict=True):
            p.sub_(lr * d.to(p.dtype))
