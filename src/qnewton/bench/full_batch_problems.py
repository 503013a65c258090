"""The problems of the ``full-batch`` case (:data:`PROBLEMS`), each a
:class:`~qnewton.bench.full_batch_problem.FullBatchProblem` in float64 (docs/method.md §4.13).

* ``least-squares``: a tanh MLP [1, 16, 16, 1] (321 parameters) fit to 256 points of
  ``y = sin(3x)·exp(−x²/2)`` on [−2, 2] (MSE); more parameters than points, so the fit can
  interpolate and the MSE reach round-off. Metric: the MSE; target: the Levenberg–Marquardt
  reference's accuracy at the time budget.
* ``poisson-1d`` and ``poisson-2d``: physics-informed networks for ``−Δu = f`` on [0, 1]^d with
  ``u = 0`` on the boundary (Müller & Zeinhofer, ICML 2023, §4.1), exact solutions
  ``sin(2πx)`` (1-D) and ``sin(πx)·sin(πy)`` (2-D). MLP [d, 32, 1] tanh. Objective
  ``(1/2N_Ω)·Σ(Δu + f)² + (1/2N_∂)·Σ u²`` over an equispaced interior grid and the boundary.
  Metric: relative L2 error against the exact solution on a finer test grid. Targets: the LM
  reference's accuracy (1-D), relative L2 ≤ 1e-5 (2-D, the issue's target; the paper reports
  ~1e-6 after ~50 energy-natural-gradient iterations).
* ``logistic``: multinomial logistic regression on sklearn's digits (1797 images, features
  x/16, 650 parameters) with ``½·λ‖W‖²`` on the weights, not the intercepts, λ = 1e-3: sklearn's
  objective ``C·Σ CE + ½‖W‖²`` with ``C = 1/(λ·n)`` is ``C·n`` times ours, same minimizer.
  Metric: the objective gap to the optimum (sklearn at tight tolerance, polished by Newton steps
  with the exact Hessian); target 1e-10.
* ``autoencoder``: a deep sigmoid autoencoder on digits images (x/16 as Bernoulli pixel
  probabilities), the shape of Hinton & Salakhutdinov (2006) and Martens (2010) scaled to 8×8:
  64-16-8-4-8-16-64, logistic units except a linear code layer, logistic outputs. Objective: the
  per-image KL divergence of the reconstruction (binary cross-entropy minus the pixels' entropy).
  Metric: the objective; target: the best accuracy any peer (not QNewton) reaches at the budget.

``tiny=True`` shrinks every problem (fewer points, narrower nets) for the tests and the smoke mode.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from qnewton.bench.full_batch_problem import (
    FullBatchProblem,
    flat_parameters,
    hessian_root,
    load_flat,
    unflatten,
)
from qnewton.registry import Registry

DTYPE = torch.float64
#: Target of ``logistic`` (objective gap) and ``poisson-2d`` (relative L2 error), from issue 17.
LOGISTIC_GAP_TARGET = 1e-10
POISSON_2D_TARGET = 1e-5
LOGISTIC_L2 = 1e-3


def _seeded(seed: int, factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory().to(DTYPE)

    return make


def mlp(sizes: tuple[int, ...], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _plain_functional(model: nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor],
                                                     torch.Tensor]:
    return lambda params, rows: functional_call(model, params, (rows,))


# ------------------------------------------------------------------------------ least squares


def least_squares_mlp(seed: int = 0, tiny: bool = False) -> FullBatchProblem:
    """``least-squares``: tanh MLP fit of 256 points (64 and [1, 8, 8, 1] when ``tiny``)."""
    n, width = (64, 8) if tiny else (256, 16)
    x = torch.linspace(-2.0, 2.0, n, dtype=DTYPE).unsqueeze(1)
    y = torch.sin(3 * x) * torch.exp(-x ** 2 / 2)
    make = _seeded(seed, lambda: mlp((1, width, width, 1)))
    params = sum(p.numel() for p in make().parameters())

    def mse(model: nn.Module) -> float:
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    return FullBatchProblem(
        name="least-squares",
        description=f"tanh MLP [1, {width}, {width}, 1] ({params} parameters) fit to {n} points "
        "of sin(3x)exp(-x^2/2), MSE",
        make_model=make, forward=lambda model: model(x), functional=_plain_functional, inputs=x,
        loss_kind="squares", targets=y, metric=mse, metric_name="MSE", target="lm",
    )


# ------------------------------------------------------------------------------------- Poisson


def _poisson_points(dim: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equispaced interior points ``(n^dim, dim)`` (cell centres of an n-grid) and boundary
    points: ``{0, 1}`` in 1-D, ``n`` per side in 2-D (``(4n, 2)``)."""
    centres = (torch.arange(n, dtype=DTYPE) + 0.5) / n
    if dim == 1:
        return centres.unsqueeze(1), torch.tensor([[0.0], [1.0]], dtype=DTYPE)
    gx, gy = torch.meshgrid(centres, centres, indexing="ij")
    interior = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    zero, one = torch.zeros(n, dtype=DTYPE), torch.ones(n, dtype=DTYPE)
    boundary = torch.cat([torch.stack(p, dim=1) for p in
                          ((centres, zero), (centres, one), (zero, centres), (one, centres))])
    return interior, boundary


def poisson_exact(dim: int, x: torch.Tensor) -> torch.Tensor:
    """The exact solution at ``x`` ``(P, dim)``: ``sin(2πx)`` (1-D), ``sin(πx)sin(πy)`` (2-D);
    shape ``(P,)``."""
    if dim == 1:
        return torch.sin(2 * math.pi * x[:, 0])
    return torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])


def poisson_source(dim: int, x: torch.Tensor) -> torch.Tensor:
    """``f = −Δu*`` at ``x`` ``(P, dim)``, shape ``(P,)``."""
    return (4 * math.pi ** 2 if dim == 1 else 2 * math.pi ** 2) * poisson_exact(dim, x)


def laplacian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, Δu)`` of ``model`` at ``x`` ``(P, d)``, each ``(P,)``, by autograd with
    ``create_graph=True`` (so both stay differentiable in the parameters)."""
    x = x.detach().requires_grad_(True)
    u = model(x).squeeze(1)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    lap = torch.zeros_like(u)
    for d in range(x.shape[1]):
        (d2,) = torch.autograd.grad(du[:, d].sum(), x, create_graph=True)
        lap = lap + d2[:, d]
    return u, lap


def poisson(dim: int, seed: int = 0, tiny: bool = False) -> FullBatchProblem:
    """``poisson-1d`` / ``poisson-2d`` (module docstring). Residual outputs ``z`` ``(S, 1)``,
    interior rows first, scaled so that the objective is ``(1/S)·Σ z²``."""
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2; got {dim!r}")
    n = {1: (16, 64), 2: (8, 30)}[dim][0 if tiny else 1]
    width = 8 if tiny else 32
    interior, boundary = _poisson_points(dim, n)
    n_int, n_bd = interior.shape[0], boundary.shape[0]
    s = n_int + n_bd
    w_int, w_bd = math.sqrt(s / (2 * n_int)), math.sqrt(s / (2 * n_bd))
    source = poisson_source(dim, interior)
    test_n = 1000 if dim == 1 else 100
    test = _poisson_points(dim, test_n)[0]
    exact = poisson_exact(dim, test)
    make = _seeded(seed, lambda: mlp((dim, width, 1)))
    params = sum(p.numel() for p in make().parameters())

    def forward(model: nn.Module) -> torch.Tensor:
        _, lap = laplacian(model, interior)
        u_bd = model(boundary).squeeze(1)
        return torch.cat([w_int * (lap + source), w_bd * u_bd]).unsqueeze(1)

    # functional rows: [point (dim), 1 for interior / 0 for boundary, f at the point]
    inputs = torch.cat([
        torch.cat([interior, torch.ones(n_int, 1, dtype=DTYPE), source.unsqueeze(1)], dim=1),
        torch.cat([boundary, torch.zeros(n_bd, 2, dtype=DTYPE)], dim=1)])

    def functional(model: nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor],
                                                 torch.Tensor]:
        def u_at(params: dict[str, torch.Tensor], point: torch.Tensor) -> torch.Tensor:
            return functional_call(model, params, (point.unsqueeze(0),)).squeeze()

        def residual(params: dict[str, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
            point, inside, f = row[:dim], row[dim], row[dim + 1]
            lap = torch.func.hessian(u_at, argnums=1)(params, point).diagonal().sum()
            # both forms are evaluated; the flag keeps one (vmap cannot branch on data)
            return inside * w_int * (lap + f) + (1 - inside) * w_bd * u_at(params, point)

        batched = vmap(residual, in_dims=(None, 0))
        return lambda params, rows: batched(params, rows).unsqueeze(1)

    def relative_l2(model: nn.Module) -> float:
        with torch.no_grad():
            u = model(test).squeeze(1)
            return float(torch.linalg.vector_norm(u - exact) / torch.linalg.vector_norm(exact))

    grid = f"{n}" if dim == 1 else f"{n}x{n}"
    return FullBatchProblem(
        name=f"poisson-{dim}d",
        description=f"PINN -Lap u = f on [0,1]^{dim}, MLP [{dim}, {width}, 1] tanh ({params} "
        f"parameters), {n_int} interior ({grid} grid) + {n_bd} boundary points, "
        f"test grid {test.shape[0]}",
        make_model=make, forward=forward, functional=functional, inputs=inputs,
        loss_kind="squares",
        targets=torch.zeros(s, 1, dtype=DTYPE), metric=relative_l2,
        metric_name="relative L2 error", target="lm" if dim == 1 else POISSON_2D_TARGET,
    )


# ------------------------------------------------------------------------------------ logistic


def _digits(tiny: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(np.asarray(data.data) / 16.0, dtype=DTYPE)
    y = torch.tensor(np.asarray(data.target), dtype=torch.int64)
    if tiny:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:200]
        x, y = x[keep], y[keep]
    return x, y


@functools.lru_cache(maxsize=4)
def logistic_optimum(seed: int, tiny: bool) -> tuple[torch.Tensor, float]:
    """The minimizer ``θ*`` (flat, ``(650,)``: weight then bias) and minimum of ``logistic``:
    sklearn's ``LogisticRegression`` at tolerance 1e-12, then Newton steps with the exact
    Hessian until the gradient's largest entry is below 1e-13.

    The Hessian of a linear softmax model is its Gauss–Newton matrix: with ``x̃ = [x, 1]``,
    ``(1/n)·Σ_s (R_s ⊗ x̃_sᵀ)ᵀ(R_s ⊗ x̃_sᵀ) + l2`` on the weights (``R_s`` the root of
    ``diag(p) − ppᵀ``). It is singular along a common shift of the intercepts (the objective
    is flat there), so the Newton steps are least-squares solves."""
    problem = logistic_digits(seed, tiny, with_optimum=False)
    model = problem.make_model()
    lr = sklearn_logistic(problem, tol=1e-12)
    load_flat(model, torch.cat([torch.tensor(lr.coef_, dtype=DTYPE).reshape(-1),
                                torch.tensor(lr.intercept_, dtype=DTYPE)]))
    fn = problem.functional(model)
    x = problem.inputs
    n, d = x.shape
    penalty = torch.cat([torch.full((model.weight.numel(),), problem.l2, dtype=DTYPE),
                         torch.zeros(model.bias.numel(), dtype=DTYPE)])

    def objective(theta: torch.Tensor) -> torch.Tensor:
        return problem.objective_of(fn, unflatten(model, theta))

    theta = flat_parameters(model)
    for _ in range(20):
        grad = torch.func.grad(objective)(theta)
        if float(grad.abs().max()) < 1e-13:
            break
        root = hessian_root("softmax-ce", fn(unflatten(model, theta), x).detach())  # (n, C, C)
        rows = torch.cat([torch.einsum("sic,sd->sicd", root, x).reshape(n, -1, root.shape[1] * d),
                          root], dim=2).reshape(-1, theta.numel())
        hess = rows.T @ rows / n + torch.diag(penalty)
        theta = theta - torch.linalg.lstsq(hess, grad.unsqueeze(1)).solution.squeeze(1)
    return theta, float(objective(theta))


def sklearn_logistic(problem: FullBatchProblem, tol: float, max_iter: int = 100000):
    """sklearn's ``LogisticRegression`` (lbfgs, multinomial) fitted to ``problem`` (which must
    carry its ``sklearn`` data) at tolerance ``tol``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    spec = problem.sklearn
    if spec is None:
        raise ValueError(f"problem {problem.name!r} has no sklearn counterpart")
    lr = LogisticRegression(C=spec["C"], tol=tol, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return lr.fit(spec["x"], spec["y"])


def logistic_digits(seed: int = 0, tiny: bool = False, with_optimum: bool = True
                    ) -> FullBatchProblem:
    """``logistic`` (module docstring); ``tiny``: 200 of the images."""
    x, y = _digits(tiny, seed)
    n, classes = x.shape[0], 10
    make = _seeded(seed, lambda: nn.Linear(x.shape[1], classes))
    best = logistic_optimum(seed, tiny)[1] if with_optimum else 0.0

    def gap(model: nn.Module) -> float:
        return problem_ref.objective(model) - best

    problem_ref = FullBatchProblem(
        name="logistic",
        description=f"multinomial logistic regression, digits ({n} images x 64 features / 16, "
        f"{classes} classes, {x.shape[1] * classes + classes} parameters), L2 {LOGISTIC_L2:g} "
        "on the weights",
        make_model=make, forward=lambda model: model(x), functional=_plain_functional, inputs=x,
        loss_kind="softmax-ce", targets=y, metric=gap, metric_name="objective gap",
        target=LOGISTIC_GAP_TARGET, l2=LOGISTIC_L2, penalized=("weight",),
        sklearn={"x": x.numpy(), "y": y.numpy(), "C": 1.0 / (LOGISTIC_L2 * n)},
    )
    return problem_ref


# --------------------------------------------------------------------------------- autoencoder


def digits_autoencoder(seed: int = 0, tiny: bool = False) -> FullBatchProblem:
    """``autoencoder`` (module docstring): 32 images (16 and 64-8-4-8-64 when ``tiny``)."""
    x, _ = _digits(False, seed)
    count = 16 if tiny else 32
    keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    x = x[keep]
    sizes = (64, 8, 4, 8, 64) if tiny else (64, 16, 8, 4, 8, 16, 64)
    code = len(sizes) // 2  # the code layer is linear

    def factory() -> nn.Module:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i + 1 not in (code, len(sizes) - 1):
                layers.append(nn.Sigmoid())
        return nn.Sequential(*layers)

    make = _seeded(seed, factory)
    params = sum(p.numel() for p in make().parameters())

    def kl(model: nn.Module) -> float:
        return problem_ref.objective(model)

    problem_ref = FullBatchProblem(
        name="autoencoder",
        description=f"deep sigmoid autoencoder {'-'.join(map(str, sizes))} (linear code, "
        f"{params} parameters) on {count} digits images, per-image KL of the reconstruction",
        make_model=make, forward=lambda model: model(x), functional=_plain_functional, inputs=x,
        loss_kind="sigmoid-kl", targets=x, metric=kl, metric_name="objective (KL per image)",
        target="best-peer",
    )
    return problem_ref


#: Problem name → ``builder(seed, tiny) -> FullBatchProblem``, in the order the case runs them.
PROBLEMS: Registry[Callable[[int, bool], FullBatchProblem]] = Registry("full-batch problem")
PROBLEMS.register("least-squares", least_squares_mlp)
PROBLEMS.register("poisson-1d", functools.partial(poisson, 1))
PROBLEMS.register("poisson-2d", functools.partial(poisson, 2))
PROBLEMS.register("logistic", logistic_digits)
PROBLEMS.register("autoencoder", digits_autoencoder)
