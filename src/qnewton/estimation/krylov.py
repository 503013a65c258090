"""Krylov figures from matrix-vector products only: Lanczos, Ritz values, a probabilistic upper
bound on ‖A‖₂, the regularization bound on κ, and κ from a CG run (docs/method.md §4.2)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from qnewton.estimation.kappa import KappaEstimate, kappa_from_log
from qnewton.validation import check_int

MatVec = Callable[[torch.Tensor], torch.Tensor]


#: From this many entries per vector on, the reorthogonalization runs as torch ops (on the same
#: memory): they use torch's thread setting (``torch.set_num_threads``), where NumPy's BLAS
#: would start its own threads — on a busy machine those made a 50,176-entry Lanczos run 8×
#: slower (0.34 s against 0.04 s per step, mnist-mlp b512 GGN, load ≈ 3 on 2 cores). Below it
#: the ~1 µs NumPy calls win over ~5–10 µs torch calls.
TORCH_ORTHOGONALIZE_MIN = 4096


def _orthogonalized(basis: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """``(α, β)``: α = ⟨q_j, w⟩ for the last row q_j of ``basis`` (k, n), then ``w`` made
    orthogonal to every row in place — twice ("twice is enough", Parlett/Kahan) — and β = ‖w‖."""
    if w.shape[0] >= TORCH_ORTHOGONALIZE_MIN:
        q, v = torch.from_numpy(basis), torch.from_numpy(w)
        alpha = float(q[-1] @ v)
        v -= (q @ v) @ q
        v -= (q @ v) @ q
        return alpha, float(torch.linalg.vector_norm(v))
    alpha = float(basis[-1] @ w)
    w -= (basis @ w) @ basis
    w -= (basis @ w) @ basis
    return alpha, float(np.linalg.norm(w))


def _lanczos_basis(
    matvec: MatVec,
    n: int,
    steps: int,
    dtype: torch.dtype,
    seed: int,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, bool, float]:
    """Lanczos with full reorthogonalization.

    Returns ``(alphas (k,), betas (k-1,), Q (n, k), β_k, invariant, scale)``: ``β_k`` is the norm
    of the residual after the last step (``A Q_k = Q_k T_k + β_k q_{k+1} e_kᵀ``), ``invariant``
    says the run stopped early (k < steps) because the Krylov space became invariant (β ≈ 0),
    and ``scale`` is the largest |α|, β seen (for rounding tolerances).
    """
    if not callable(matvec):
        raise ValueError("matvec must be callable: v (N,) -> A v (N,)")
    n = check_int("n", n, 1)
    steps = check_int("steps", steps, 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    k_max = min(steps, n)
    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(n, generator=gen, dtype=dtype)
    # The loop runs in NumPy on the host: its many small vector operations cost ~1 µs there
    # against ~5–10 µs as torch ops, which made Lanczos the largest part of the scheduler's
    # overhead. The matvec runs in torch (on ``device``), and so does the reorthogonalization of
    # long vectors (:data:`TORCH_ORTHOGONALIZE_MIN`); both sides share memory on CPU.
    q = (start / torch.linalg.vector_norm(start)).numpy()
    basis = np.empty((k_max, n), dtype=q.dtype)  # one row per vector: contiguous slices
    alphas: list[float] = []
    betas: list[float] = []
    eps = float(np.finfo(q.dtype).eps)
    scale = 0.0
    beta = 0.0
    invariant = False
    for j in range(k_max):
        basis[j] = q
        out = matvec(torch.from_numpy(q).to(device))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"matvec must return a tensor of shape ({n},), got {got}")
        w = out.detach().to(device="cpu", dtype=dtype).numpy().copy()
        alpha, beta = _orthogonalized(basis[: j + 1], w)
        alphas.append(alpha)
        scale = max(scale, abs(alpha), beta)
        if beta <= n * eps * scale:
            invariant = True
            break
        if j == k_max - 1:
            break
        betas.append(beta)
        q = w / beta
    k = len(alphas)
    return (
        torch.tensor(alphas, dtype=torch.float64),
        torch.tensor(betas, dtype=torch.float64),
        torch.from_numpy(basis[:k].T.copy()).to(device),
        beta,
        invariant,
        scale,
    )


def lanczos(
    matvec: MatVec,
    n: int,
    steps: int,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric Lanczos with full reorthogonalization from a seeded Gaussian start vector.

    Args:
        matvec: ``v ↦ A v`` for a symmetric ``A``, ``v`` of shape ``(N,)``.
        n: N. steps: maximum number of Lanczos steps k (capped at N; stops early if the Krylov
            space becomes invariant). dtype/device: of the vectors fed to ``matvec``.
        seed: seed of the start vector (reproducible).

    Returns:
        ``(alphas, betas)``: float64 diagonal ``(k,)`` and off-diagonal ``(k-1,)`` of the
        tridiagonal ``T_k = Q_kᵀ A Q_k``. Cost: k matvecs plus O(N·k²) for reorthogonalization.
    """
    alphas, betas, *_ = _lanczos_basis(matvec, n, steps, dtype, seed, device)
    return alphas, betas


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    alphas = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    betas = torch.as_tensor(betas, dtype=torch.float64).reshape(-1)
    if alphas.numel() == 0:
        raise ValueError("alphas must be non-empty")
    if betas.numel() != alphas.numel() - 1:
        raise ValueError(
            f"betas must have len(alphas) - 1 = {alphas.numel() - 1} entries, got {betas.numel()}"
        )
    if not bool(torch.isfinite(alphas).all()) or not bool(torch.isfinite(betas).all()):
        raise ValueError("alphas and betas must be finite")
    return torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)


def ritz_values(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, float64, shape ``(k,)``) of the symmetric tridiagonal matrix with
    diagonal ``alphas (k,)`` and off-diagonal ``betas (k-1,)`` — the Ritz values. For Lanczos on
    symmetric ``A`` they interlace with and lie inside ``[λ_min(A), λ_max(A)]``."""
    return torch.linalg.eigvalsh(_tridiagonal(alphas, betas))


def kappa_lanczos(
    matvec: MatVec,
    n: int,
    steps: int = 20,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> KappaEstimate:
    """κ from the extreme Ritz values after ``steps`` Lanczos steps, kind ``"lower"``.

    Guarantee: Ritz values lie in ``[λ_min, λ_max]``, so ``θ_max/θ_min ≤ λ_max/λ_min = κ`` for SPD
    ``A`` (a *lower* bound: enough to reject a quantum solve, not to choose one). If
    ``θ_min ≤ 0`` then ``λ_min ≤ 0`` — ``A`` is not positive definite — and the value is ``inf``
    (the module convention). Cost: ``steps`` matvecs; works on factor-form systems.
    """
    start = time.perf_counter()
    theta = ritz_values(*lanczos(matvec, n, steps, dtype=dtype, seed=seed, device=device))
    lo, hi = float(theta[0]), float(theta[-1])
    log_kappa = math.log(hi) - math.log(lo) if lo > 0.0 else math.inf
    return kappa_from_log(log_kappa, "lower", "lanczos", time.perf_counter() - start)


# Kuczyński & Woźniakowski (1992), "Estimating the largest eigenvalue by the power and Lanczos
# algorithms with a random start": for PSD A and a start vector uniform on the unit sphere, the
# largest Ritz value θ of k Lanczos steps satisfies P(θ < (1 − ε)·λ_max) ≤ 1.648·√N·e^{−(2k−1)√ε}.
_KW_CONSTANT = 1.648


def kw_relative_error(n: int, steps: int, failure_probability: float) -> float:
    """Smallest ε with ``1.648·√N·exp(−(2k−1)·√ε) ≤ δ`` (Kuczyński–Woźniakowski, Lanczos).

    With probability ≥ ``1 − δ`` over the random start, ``k`` Lanczos steps on a PSD ``N×N``
    matrix give ``θ_max ≥ (1 − ε)·λ_max``. Returns a value in ``[0, ∞)``; ``ε ≥ 1`` means the
    bound carries no information (too few steps for that δ).
    """
    n = check_int("n", n, 1)
    steps = check_int("steps", steps, 1)
    delta = failure_probability
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0.0 < delta < 1.0:
        raise ValueError(f"failure_probability must be a number in (0, 1), got {delta!r}")
    root = math.log(_KW_CONSTANT * math.sqrt(n) / delta) / (2 * steps - 1)
    return max(0.0, root) ** 2


def spectral_norm_upper(
    matvec: MatVec,
    n: int,
    steps: int = 20,
    seed: int = 0,
    *,
    psd: bool = False,
    failure_probability: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> float:
    """Probabilistic upper bound on ``‖A‖₂`` of a symmetric ``A`` from ``steps`` matvecs.

    Ritz values alone only give *lower* bounds on ``‖A‖₂``, and the residual bound ``θ + ‖r‖``
    only brackets *some* eigenvalue (it misses the top one whenever Lanczos has not found it yet),
    so neither is an upper bound. No method using k < N matvecs can give a deterministic upper
    bound. What this function returns, with ``k`` the Lanczos steps actually taken:

      * ``psd=True`` (caller asserts ``A`` PSD): ``θ_max / (1 − ε)`` with
        ``ε = kw_relative_error(N, k, δ)``.
      * ``psd=False`` (any symmetric ``A``): ``σ / √(1 − ε)``, where
        ``σ = max_{y ∈ K_k} ‖A y‖/‖y‖ = σ_max([T_k; β_k e_kᵀ]) ≤ ‖A‖₂`` (free from the Lanczos
        relation) and ε is the KW error for ``A²`` with ``⌊(k+1)/2⌋`` steps (``K_m(A², b) ⊆
        K_{2m−1}(A, b)``). Needs about twice the steps of the PSD variant for the same ε.
      * If Lanczos became invariant early or ``k = N``: the extreme Ritz values are eigenvalues
        (for a random start), and ``max|θ|`` is returned.
      * ``inf`` if ``ε ≥ 1`` (too few steps for the requested δ).

    Guarantee: ``result ≥ ‖A‖₂`` with probability ``≥ 1 − failure_probability`` over the random
    start vector (a seeded Gaussian, i.e. uniform on the sphere), for *every* symmetric ``A``
    (PSD for ``psd=True``); a rounding pad of ``10·N·eps·scale`` is added. Typical inflation over
    the true norm at k = 20, δ = 1e-6: ≈1.3× (PSD, N = 1e4). For an explicit matrix
    :func:`gershgorin_upper` is a deterministic alternative (combine with ``min``).
    """
    return _spectrum_bounds(matvec, n, steps, seed, psd, failure_probability, dtype, device,
                            both=False)[1]


def spectrum_bounds(
    matvec: MatVec,
    n: int,
    steps: int = 20,
    seed: int = 0,
    *,
    failure_probability: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """``(lower bound on λ_min(A), upper bound on ‖A‖₂)`` of a symmetric, possibly indefinite
    ``A`` from one Lanczos run of ``steps`` matvecs.

    Start from :func:`spectral_norm_upper`'s bound c (``psd=False``), so ``l = −c ≤ λ_min`` and
    ``u = c ≥ λ_max``. Lanczos on A builds the Krylov space of every shifted ``A − σI`` too, so the
    Kuczyński–Woźniakowski bound (ε = ``kw_relative_error(N, k, δ)``) applies to the two PSD
    matrices ``A − λ_min·I`` and ``λ_max·I − A``; on their failure-free events (probability
    ``≥ 1 − δ`` each) ``λ_max ≤ l + (θ_max − l)/(1 − ε)`` for every ``l ≤ λ_min`` and
    ``λ_min ≥ u − (u − θ_min)/(1 − ε)`` for every ``u ≥ λ_max``. The two are applied in turn
    until they stop improving. Returned: ``l`` and ``min(c, max(u, −l))``, valid together with
    probability ``≥ 1 − 3·failure_probability``, with a rounding pad of ``10·N·eps·scale``. If
    Lanczos became invariant or ``k = N``, the extreme Ritz values are returned (padded);
    ``(−inf, inf)`` if ε ≥ 1.
    """
    return _spectrum_bounds(matvec, n, steps, seed, False, failure_probability, dtype, device,
                            both=True)


def _spectrum_bounds(matvec: MatVec, n: int, steps: int, seed: int, psd: bool,
                     failure_probability: float, dtype: torch.dtype,
                     device: torch.device | str | None, both: bool) -> tuple[float, float]:
    alphas, betas, _, beta_last, invariant, scale = _lanczos_basis(
        matvec, n, steps, dtype, seed, device
    )
    k = alphas.numel()
    pad = 10.0 * n * torch.finfo(dtype).eps * scale
    theta = ritz_values(alphas, betas)
    lo, hi = float(theta[0]), float(theta[-1])
    if invariant or k >= n:
        return lo - pad, max(abs(lo), abs(hi)) + pad
    if psd:
        eps_kw = kw_relative_error(n, k, failure_probability)
        if eps_kw >= 1.0:
            return 0.0, math.inf
        return 0.0, max(0.0, hi) / (1.0 - eps_kw) + pad
    stacked = torch.zeros((k + 1, k), dtype=torch.float64)
    stacked[:k] = _tridiagonal(alphas, betas)
    stacked[k, k - 1] = beta_last
    sigma = float(torch.linalg.matrix_norm(stacked, 2))
    eps_kw = kw_relative_error(n, (k + 1) // 2, failure_probability)
    if eps_kw >= 1.0:
        return -math.inf, math.inf
    norm = sigma / math.sqrt(1.0 - eps_kw) + pad
    if not both:  # spectral_norm_upper: this bound alone, valid with probability ≥ 1 − δ
        return -norm, norm
    eps_one = kw_relative_error(n, k, failure_probability)
    lower, upper = -norm, norm
    if eps_one < 1.0:
        r = 1.0 / (1.0 - eps_one)
        for _ in range(100):
            new_upper = min(upper, lower + (hi - lower) * r)
            new_lower = max(lower, new_upper - (new_upper - lo) * r)
            done = new_upper >= upper - 1e-12 * norm and new_lower <= lower + 1e-12 * norm
            lower, upper = new_lower, new_upper
            if done:
                break
    return lower - pad, min(norm, max(upper, -lower) + pad)


def kappa_regularization_bound(norm_upper: float, lam: float) -> KappaEstimate:
    """``κ ≤ 1 + ‖H‖₂/λ`` for ``A = H + λI`` with ``H`` PSD, kind ``"upper"``.

    Since ``λ_min(A) ≥ λ`` and ``λ_max(A) ≤ ‖H‖₂ + λ``. Valid whenever ``norm_upper ≥ ‖H‖₂`` and
    ``H`` is PSD. Cost O(1) given the norm.

    An infinite ``norm_upper`` (no information) gives an infinite bound.

    Raises:
        ValueError: ``norm_upper`` negative or NaN, or ``lam`` not positive and finite.
    """
    start = time.perf_counter()
    if (
        isinstance(norm_upper, bool)
        or not isinstance(norm_upper, int | float)
        or math.isnan(norm_upper)
        or norm_upper < 0.0
    ):
        raise ValueError(f"norm_upper must be >= 0 (inf allowed), got {norm_upper!r}")
    if (
        isinstance(lam, bool)
        or not isinstance(lam, int | float)
        or not math.isfinite(lam)
        or lam <= 0
    ):
        raise ValueError(f"lam must be finite and > 0, got {lam!r}")
    log_kappa = math.log1p(norm_upper / lam)
    return kappa_from_log(log_kappa, "upper", "regularization", time.perf_counter() - start)


def kappa_from_cg(
    alphas_cg: Sequence[float] | torch.Tensor, betas_cg: Sequence[float] | torch.Tensor
) -> KappaEstimate:
    """κ estimate from the Lanczos tridiagonal hidden in conjugate gradients, kind ``"estimate"``.

    With CG step lengths ``α_j`` (j = 0..k-1, all > 0) and direction-update ratios
    ``β_j = ‖r_{j+1}‖²/‖r_j‖²`` (≥ 0), the Lanczos matrix of the CG run is

        T_jj = 1/α_j + β_{j-1}/α_{j-1}   (β_{-1}/α_{-1} := 0),    T_{j,j+1} = √β_j / α_j,

    and κ ≈ θ_max/θ_min of its eigenvalues. In exact arithmetic this is a lower bound on κ (Ritz
    values); in floating point CG loses orthogonality, so it is reported as an estimate. Free once
    CG has run. ``betas_cg`` may have ``k-1`` or ``k`` entries (a trailing β is ignored).

    Raises:
        ValueError: empty ``alphas_cg``, non-positive α, negative β, or wrong length.
    """
    start = time.perf_counter()
    a = torch.as_tensor(alphas_cg, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(betas_cg, dtype=torch.float64).reshape(-1)
    k = a.numel()
    if k == 0:
        raise ValueError("alphas_cg must be non-empty")
    if b.numel() not in (k - 1, k):
        raise ValueError(
            f"betas_cg must have {k - 1} or {k} entries for {k} alphas, got {b.numel()}"
        )
    if not bool(torch.isfinite(a).all()) or bool((a <= 0).any()):
        raise ValueError("alphas_cg must be finite and > 0 (CG step lengths on an SPD matrix)")
    b = b[: k - 1]
    if not bool(torch.isfinite(b).all()) or bool((b < 0).any()):
        raise ValueError("betas_cg must be finite and >= 0")
    diag = 1.0 / a
    diag[1:] += b / a[:-1]
    off = torch.sqrt(b) / a[:-1]
    theta = ritz_values(diag, off)
    lo, hi = float(theta[0]), float(theta[-1])
    log_kappa = math.log(hi) - math.log(lo) if lo > 0.0 else math.inf
    return kappa_from_log(log_kappa, "estimate", "cg", time.perf_counter() - start)


