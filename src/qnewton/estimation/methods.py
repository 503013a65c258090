"""κ of a :class:`~qnewton.system.LinearSystem` by a named method, and the one ``"auto"`` policy.

The scheduler needs an upper bound to *choose* a quantum solve, and a lower bound suffices to
*reject* one (the quantum/classical time ratio grows with κ; docs/method.md §4.2). Every method
returns a :class:`~qnewton.estimation.kappa.KappaEstimate` that says which guarantee it gives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from qnewton.estimation.dense import (
    gershgorin_upper,
    kappa_exact,
    kappa_gej_bound,
    kappa_merikoski_bound,
)
from qnewton.estimation.kappa import KappaEstimate
from qnewton.estimation.krylov import (
    kappa_lanczos,
    kappa_regularization_bound,
    spectral_norm_upper,
)
from qnewton.registry import Registry
from qnewton.system import LinearSystem
from qnewton.validation import check_int


@dataclass(frozen=True)
class KappaPolicy:
    """How κ is estimated for a decision.

    Attributes:
        method: a name in :data:`KAPPA_METHODS` (default ``"auto"``, see :func:`analyse_kappa`).
        steps: Lanczos steps for norm and κ figures (capped at N).
        seed: seed of the Lanczos start vector.
        exact_below: ``"auto"`` gives systems with N ≤ this the exact κ (eigvalsh), cheaper than
            Lanczos's Python-level iterations at that size.
        gram_below: ``"auto"`` gives a regularized factor-form system with M ≤ gram_below rows
            and M ≤ N/4 the exact κ from its M×M Gram matrix (which a Woodbury solve reuses),
            and so does any M when the caller says the solve will form the Gram anyway
            (``gram_shared``).
        gram_eig_below: a Gram of order M ≤ this gets its top eigenvalue by eigvalsh (exact κ);
            a larger one by Lanczos on the M×M Gram (a probabilistic upper bound, ``steps``
            products of M² flops instead of eigvalsh's ~9M³).
    """

    method: str = "auto"
    steps: int = 20
    seed: int = 0
    exact_below: int = 128
    gram_below: int = 128
    gram_eig_below: int = 256

    def __post_init__(self) -> None:
        KAPPA_METHODS.check(self.method)
        check_int("lanczos_steps", self.steps, 2)
        check_int("exact_below", self.exact_below, 0)
        check_int("gram_below", self.gram_below, 0)
        check_int("gram_eig_below", self.gram_eig_below, 0)
        check_int("seed", self.seed)


def _regularization(system: LinearSystem, steps: int, seed: int) -> KappaEstimate:
    """``1 + ‖H‖₂_upper/λ_total`` on the *unshifted* block (matvecs only); an upper bound with
    probability ≥ 1 − 1e-6 over the seeded start, valid when ``system.psd_plus_shift``."""
    if not system.psd_plus_shift:
        raise ValueError(
            "method='regularization' needs an unpruned system with shift > 0 whose block is "
            "PSD (Fisher/GGN); use 'lanczos' or 'exact' instead"
        )
    norm = spectral_norm_upper(system.block.matvec, system.n, steps, seed, psd=True,
                               dtype=system.dtype, device=system.device)
    return kappa_regularization_bound(norm, system.shift)


KappaMethod = Callable[[LinearSystem, int, int], KappaEstimate]

#: κ estimators by name: ``exact`` (eigvalsh), ``gej``/``merikoski`` (the paper's norm–determinant
#: upper bounds, O(N³)), ``lanczos`` (lower bound), ``regularization`` (upper bound), ``auto``.
KAPPA_METHODS: Registry[KappaMethod] = Registry("kappa_method")
KAPPA_METHODS.register("exact", lambda system, steps, seed: kappa_exact(system.to_dense()))
KAPPA_METHODS.register("gej", lambda system, steps, seed: kappa_gej_bound(system.to_dense()))
KAPPA_METHODS.register(
    "merikoski", lambda system, steps, seed: kappa_merikoski_bound(system.to_dense()))
KAPPA_METHODS.register(
    "lanczos", lambda system, steps, seed: kappa_lanczos(
        system.matvec, system.n, steps, seed, dtype=system.dtype, device=system.device))
KAPPA_METHODS.register("regularization", _regularization)
KAPPA_METHODS.register(
    "auto", lambda system, steps, seed: analyse_kappa(
        system, KappaPolicy(steps=max(2, steps), seed=seed))[0])


def _exact_from_eigenvalues(eigenvalues: torch.Tensor) -> KappaEstimate:
    lo, hi = float(eigenvalues[0]), float(eigenvalues[-1])
    log10 = math.log10(hi) - math.log10(lo) if lo > 0 else math.inf
    return KappaEstimate(value=hi / lo if lo > 0 else math.inf, log10=log10, kind="exact",
                         method="eigvalsh")


def _kappa_from_kronecker(system: LinearSystem) -> tuple[KappaEstimate, float]:
    """Exact κ of ``G ⊗ A + s·I`` (PSD factors): its eigenvalues are ``μ_G·μ_A + s``, so κ =
    (μ_G,max·μ_A,max + s) / (μ_G,min·μ_A,min + s) from the factors' eigendecompositions, which
    the Kronecker solve reuses."""
    lo, hi = system.block.eigenvalue_range()
    lo, hi = lo + system.shift, hi + system.shift
    log10 = math.log10(hi) - math.log10(lo) if lo > 0 else math.inf
    return KappaEstimate(value=hi / lo if lo > 0 else math.inf, log10=log10, kind="exact",
                         method="kronecker-eig"), hi


def _kappa_from_gram(system: LinearSystem, policy: KappaPolicy) -> tuple[KappaEstimate, float]:
    """κ of ``s·FᵀF + λI`` with ``F`` of M < N rows from the M×M Gram ``F Fᵀ``: the block's
    eigenvalues are ``s·eig(F Fᵀ)`` and N − M zeros, so κ = (s·μ_max + λ)/λ, and only μ_max is
    needed. Exact (eigvalsh) for M ≤ ``gram_eig_below``; above, Lanczos on the Gram gives μ_max's
    probabilistic upper bound (:func:`spectral_norm_upper`), so κ is an upper bound."""
    gram = system.gram()
    m = gram.shape[0]
    if m <= policy.gram_eig_below:
        mu = max(0.0, float(torch.linalg.eigvalsh(gram)[-1]))
        kind, method = "exact", "gram-eigvalsh"
    else:
        mu = spectral_norm_upper(lambda v: gram @ v, m, min(policy.steps, m), policy.seed,
                                 psd=True, dtype=gram.dtype, device=gram.device)
        kind, method = "upper", "gram-lanczos"
    top = system.block.scale * mu
    value = (top + system.shift) / system.shift
    estimate = KappaEstimate(value=value, log10=math.log10(value), kind=kind, method=method)
    return estimate, top + system.shift


def _use_gram(system: LinearSystem, gram_below: int, gram_shared: bool) -> bool:
    # M ≤ gram_below keeps the Gram product cheap next to Lanczos on N-vectors; a Gram the
    # solve forms anyway (Woodbury) costs nothing extra whatever M. M ≤ N/4 keeps the Gram
    # product far below forming the N×N matrix.
    m = system.factor_rows
    return (system.psd_plus_shift and m is not None and 4 * m <= system.n
            and (m <= gram_below or gram_shared))


def analyse_kappa(system: LinearSystem, policy: KappaPolicy,
                  gram_shared: bool = False) -> tuple[KappaEstimate, float]:
    """κ (with its guarantee) and an ‖A‖₂ figure for the block-encoding α.

    ``"auto"``, cheapest first: N ≤ ``exact_below`` → exact κ by eigvalsh; a regularized factor
    block with few rows (``gram_below``), or whose Gram the solve forms anyway (``gram_shared``:
    Woodbury is the predicted classical choice) → κ from its M×M Gram matrix (reused by Woodbury;
    exact up to ``gram_eig_below`` rows, a Lanczos upper bound on the Gram above);
    another regularized PSD curvature → one Lanczos run on H gives ‖H‖₂ (a probabilistic upper
    bound) and the guaranteed ``κ ≤ 1 + ‖H‖₂/λ``; otherwise (exact Hessians, pruned systems) the
    Lanczos lower bound. Any other method is run as named, with the norm from Gershgorin (an
    explicit matrix) or Lanczos (factor form, matrix-free). A matrix-free system never takes the
    exact paths (its matrix is not formed); the methods that need the matrix refuse it.
    ``seconds`` is the time of the whole analysis.
    """
    start = time.perf_counter()
    steps = min(policy.steps, system.n)
    norm_kw = {"steps": steps, "seed": policy.seed, "psd": True, "dtype": system.dtype}
    auto = policy.method == "auto"
    if auto and system.kronecker is not None:  # exact, from the two small factors
        kappa, norm = _kappa_from_kronecker(system)
    elif auto and system.n <= policy.exact_below and not system.matrix_free:
        eigenvalues = torch.linalg.eigvalsh(system.to_dense())
        kappa = _exact_from_eigenvalues(eigenvalues)
        norm = float(eigenvalues.abs().max())
    elif auto and _use_gram(system, policy.gram_below, gram_shared):
        kappa, norm = _kappa_from_gram(system, policy)
    elif auto and system.psd_plus_shift:
        # the same block at another step (reused curvature): the same seeded run's figure
        key = tuple(norm_kw.items())
        kept = system.block.norm_upper
        if kept is not None and kept[0] == key:
            norm_h = kept[1]
        else:
            norm_h = spectral_norm_upper(system.block.matvec, system.n, **norm_kw)
            system.block.norm_upper = (key, norm_h)
        kappa = kappa_regularization_bound(norm_h, system.shift)
        norm = norm_h + system.shift
    else:
        kappa = KAPPA_METHODS["lanczos" if auto else policy.method](system, steps, policy.seed)
        if system.matrix_free:
            norm = spectral_norm_upper(system.matvec, system.n,
                                       **{**norm_kw, "psd": system.block.psd})
        elif not system.factor_form:
            norm = gershgorin_upper(system.to_dense())
        else:
            norm = spectral_norm_upper(system.matvec, system.n, **norm_kw)
    return replace(kappa, seconds=time.perf_counter() - start), norm


def estimate_kappa(system: LinearSystem, method: str = "auto", *, steps: int = 20,
                   seed: int = 0) -> KappaEstimate:
    """κ of the system matrix ``A`` by the named method (see :data:`KAPPA_METHODS`); check
    ``result.kind`` for the guarantee. ``seconds`` includes forming ``A`` where needed.

    Raises:
        ValueError: unknown ``method``, or ``"regularization"`` on a system it does not apply to.
    """
    estimator = KAPPA_METHODS[method]
    start = time.perf_counter()
    estimate = estimator(system, steps, seed)
    return replace(estimate, seconds=time.perf_counter() - start)
