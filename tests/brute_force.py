"""Ground-truth curvature for tests: the obvious, slow way (per-sample Jacobians, full Hessians
of the mean loss), with no code of qnewton involved."""

from __future__ import annotations

import torch
from torch import nn


def brute_force_curvature(kind, model, x, y, params):
    """The curvature of the mean cross-entropy w.r.t. the flattened ``params`` (float64)."""
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    sizes = [p.numel() for p in params]
    names = {id(p): n for n, p in model.named_parameters()}

    def outputs_at(theta, xs):
        pieces = dict(zip([names[id(p)] for p in params],
                          [t.view(p.shape) for t, p in zip(theta.split(sizes), params,
                                                           strict=True)], strict=True))
        return torch.func.functional_call(model, pieces, (xs,))

    if kind == "hessian":
        return torch.autograd.functional.hessian(
            lambda t: nn.functional.cross_entropy(outputs_at(t, x), y), flat)
    total = torch.zeros(flat.numel(), flat.numel(), dtype=torch.float64)
    for i in range(x.shape[0]):
        xi, yi = x[i : i + 1], y[i : i + 1]
        if kind == "fisher":
            g = torch.autograd.functional.jacobian(
                lambda t, xi=xi, yi=yi: nn.functional.cross_entropy(outputs_at(t, xi), yi), flat)
            total += torch.outer(g, g)
        else:  # ggn: J_sᵀ H_s J_s (cross-entropy is convex in the outputs: H_s is PSD)
            jac = torch.autograd.functional.jacobian(lambda t, xi=xi: outputs_at(t, xi)[0], flat)
            out = outputs_at(flat, xi)[0].detach()
            h_out = torch.autograd.functional.hessian(
                lambda o, yi=yi: nn.functional.cross_entropy(o[None], yi), out)
            total += jac.T @ h_out @ jac
    return total / x.shape[0]


def mean_loss_gradient(model, x, y, params):
    """∇ of the mean cross-entropy w.r.t. the flattened ``params``."""
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    return torch.cat([g.reshape(-1) for g in grads])


def closure_for(model, x, y, with_outputs=False):
    """The optimizer's closure for a cross-entropy classifier: per-sample losses (and outputs)."""
    def closure():
        out = model(x)
        losses = nn.functional.cross_entropy(out, y, reduction="none")
        return (losses, out) if with_outputs else losses

    return closure
