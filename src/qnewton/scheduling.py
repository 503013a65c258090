"""Scheduling: per block and per step, predict quantum and classical time, choose, solve, record.

Stage 6 of the pipeline (DESIGN §3). The quantum prediction is *modeled* (QLSA query count ×
hardware profile, :mod:`qnewton.costs`); the classical prediction comes from the cost model with
this machine's calibrated rates. Whatever runs, the record says which times were measured and
which were modeled.

Policies:
    ``cost``       choose the cheaper predicted time (default).
    ``threshold``  the paper's rule: κ > ``kappa_threshold`` → classical, else quantum.
    ``classical``  always the best classical solver.
    ``quantum``    always the (emulated) QLSA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from qnewton.accounting import SolveRecord
from qnewton.conditioning import LinearSystem
from qnewton.costs import (
    HardwareProfile,
    MachineRates,
    QuantumCost,
    block_encoding_alpha,
    classical_costs,
    quantum_cost,
)
from qnewton.curvature import dense_block_bytes
from qnewton.estimation import (
    KappaEstimate,
    estimate_kappa,
    gershgorin_upper,
    kappa_regularization_bound,
    regularization_bound_applies,
    spectral_norm_upper,
)
from qnewton.solvers import (
    CLASSICAL_SOLVERS,
    SolveError,
    SolveResult,
    applicable_solvers,
    emulate_qlsa,
    solve_classical,
)

POLICIES = ("cost", "threshold", "classical", "quantum")
DENSE_SOLVERS = ("cholesky", "lu", "inverse")


class NoSolverError(SolveError):
    """No allowed classical solver fits this system (memory budget or applicability)."""


def _exact_from_eigenvalues(eigenvalues: torch.Tensor) -> KappaEstimate:
    lo, hi = float(eigenvalues[0]), float(eigenvalues[-1])
    log10 = math.log10(hi) - math.log10(lo) if lo > 0 else math.inf
    return KappaEstimate(value=hi / lo if lo > 0 else math.inf, log10=log10, kind="exact",
                         method="eigvalsh")


def _exact_from_gram(system: LinearSystem) -> tuple[KappaEstimate, float]:
    """Exact κ of ``s·FᵀF + λI`` with ``F`` of M < N rows from the M×M Gram ``F Fᵀ``: the block's
    eigenvalues are ``s·eig(F Fᵀ)`` and N − M zeros, so κ = (s·μ_max + λ)/λ."""
    top = system.block.scale * max(0.0, float(torch.linalg.eigvalsh(system.gram())[-1]))
    value = (top + system.shift) / system.shift
    estimate = KappaEstimate(value=value, log10=math.log10(value), kind="exact",
                             method="gram-eigvalsh")
    return estimate, top + system.shift


def _draw_seed(seed: int, key: tuple[int, ...]) -> int:
    value = seed
    for part in key:
        value = (value * 1_000_003 + part + 1) % (2**63 - 1)
    return value


@dataclass(frozen=True)
class SchedulerConfig:
    """How linear systems are routed and solved.

    Attributes:
        policy: one of :data:`POLICIES`.
        qlsa: QLSA query model name (see :data:`qnewton.costs.QLSA_MODELS`).
        hardware: the hardware profile that turns queries into modeled seconds.
        readout: ``"state"`` or ``"vector"``; ``None`` uses the profile's default.
        eps: QLSA relative ℓ₂ error ε, in (0, 1).
        kappa_threshold: κ above which the ``threshold`` policy routes classically.
        kappa_method: κ estimator used for the decision (see :func:`estimate_kappa`).
        alpha: block-encoding normalization α; ``None`` estimates d·max|Aᵢⱼ|/‖A‖₂ per block.
        classical_solvers: classical solvers the scheduler may pick (those applicable).
        shots: readout shot budget for the emulated QLSA (``None``: no sampling noise).
        lanczos_steps: Lanczos steps for the norm / κ estimates.
        cg_rtol: relative residual at which classical CG stops (and which its cost model uses).
        max_dense_bytes: a factor-form system whose N×N matrix would exceed this is never
            handed to a dense solver (Cholesky, LU, inverse); CG or Woodbury only.
        exact_below: with ``kappa_method="auto"``, systems with N ≤ this get the exact κ
            (eigvalsh), which is cheaper than Lanczos's Python-level iterations at that size.
        gram_below: with ``kappa_method="auto"``, a regularized factor-form system with
            M ≤ gram_below rows and M ≤ N/4 gets the exact κ from its M×M Gram matrix
            (which a Woodbury solve then reuses) instead of a Lanczos bound.
    """

    hardware: HardwareProfile
    policy: str = "cost"
    qlsa: str = "jennings"
    readout: str | None = None
    eps: float = 1e-2
    kappa_threshold: float = 1e4
    kappa_method: str = "auto"
    alpha: float | None = None
    classical_solvers: tuple[str, ...] = ("cholesky", "cg", "woodbury")
    shots: int | None = None
    lanczos_steps: int = 20
    cg_rtol: float = 1e-6
    exact_below: int = 128
    gram_below: int = 128
    max_dense_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if not self.kappa_threshold >= 1:
            raise ValueError(f"kappa_threshold must be >= 1, got {self.kappa_threshold}")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"alpha must be > 0 or None, got {self.alpha}")
        unknown = set(self.classical_solvers) - set(CLASSICAL_SOLVERS)
        if unknown or not self.classical_solvers:
            raise ValueError(
                f"classical_solvers must be a non-empty subset of {CLASSICAL_SOLVERS}, "
                f"got {self.classical_solvers!r}"
            )
        if self.shots is not None and self.shots < 1:
            raise ValueError(f"shots must be a positive integer or None, got {self.shots}")
        if not 0 < self.cg_rtol < 1:
            raise ValueError(f"cg_rtol must be in (0, 1), got {self.cg_rtol}")
        if self.gram_below < 0:
            raise ValueError(f"gram_below must be >= 0, got {self.gram_below}")
        if self.exact_below < 0:
            raise ValueError(f"exact_below must be >= 0, got {self.exact_below}")
        if self.lanczos_steps < 2:
            raise ValueError(f"lanczos_steps must be >= 2, got {self.lanczos_steps}")


@dataclass
class Analysis:
    """What the scheduler knows about a system before solving it."""

    kappa: KappaEstimate
    alpha: float
    norm: float


@dataclass
class Decision:
    """Predicted times and the choice for one system."""

    choice: str
    classical_solver: str
    predicted_classical: dict[str, float]
    quantum: QuantumCost

    @property
    def predicted_classical_seconds(self) -> float:
        return self.predicted_classical.get(self.classical_solver, math.inf)


@dataclass
class Scheduler:
    """Routes each :class:`LinearSystem` to a classical solver or the emulated QLSA."""

    config: SchedulerConfig
    rates: MachineRates
    seed: int = 0

    def analyse(self, system: LinearSystem) -> Analysis:
        """κ estimate (with its guarantee), an ‖A‖₂ figure and the block-encoding α.

        With the default ``kappa_method="auto"``, cheapest first: N ≤ ``exact_below`` → exact κ
        by eigvalsh; a regularized factor block with few rows (``gram_below``) → exact κ from its
        M×M Gram matrix (reused by Woodbury); another regularized PSD curvature → one Lanczos run
        on H gives ‖H‖₂ (a probabilistic upper bound) and the guaranteed ``κ ≤ 1 + ‖H‖₂/λ``.
        Otherwise κ comes from :func:`estimate_kappa` and the norm from Gershgorin (dense) or
        Lanczos (factor form). α = max(1, d·max|Aᵢⱼ|/‖A‖₂) (DESIGN §4.1).
        """
        start = time.perf_counter()
        cfg = self.config
        steps = min(cfg.lanczos_steps, system.n)
        lanczos_kw = {"steps": steps, "seed": self.seed, "psd": True, "dtype": system.block.dtype}
        if cfg.kappa_method == "auto" and system.n <= cfg.exact_below:
            eigenvalues = torch.linalg.eigvalsh(system.to_dense())
            kappa = _exact_from_eigenvalues(eigenvalues)
            norm = float(eigenvalues.abs().max())
        elif cfg.kappa_method == "auto" and self._use_gram(system):
            kappa, norm = _exact_from_gram(system)
        elif cfg.kappa_method == "auto" and regularization_bound_applies(system):
            norm_h = spectral_norm_upper(system.block.matvec, system.n, **lanczos_kw)
            kappa = kappa_regularization_bound(norm_h, system.shift)
            norm = norm_h + system.shift
        else:
            kappa = estimate_kappa(system, cfg.kappa_method, steps=steps, seed=self.seed)
            if system.dense is not None or system.block.dense is not None:
                norm = gershgorin_upper(system.to_dense())
            else:
                norm = spectral_norm_upper(system.matvec, system.n, **lanczos_kw)
        if cfg.alpha is not None:
            alpha = cfg.alpha
        elif math.isfinite(norm) and norm > 0:
            alpha = block_encoding_alpha(max(1, system.d), system.max_abs_entry(), norm)
        else:
            alpha = float(max(1, system.d))  # no usable norm: the worst case α ≤ d
        return Analysis(replace(kappa, seconds=time.perf_counter() - start), alpha, norm)

    def classical_candidates(self, system: LinearSystem) -> list[str]:
        """Allowed classical solvers that apply to ``system`` and fit the dense-memory budget."""
        names = [s for s in applicable_solvers(system) if s in self.config.classical_solvers]
        too_big = dense_block_bytes(system.n) > self.config.max_dense_bytes
        if system.dense is None and too_big:
            names = [s for s in names if s not in DENSE_SOLVERS]
        return names

    def _use_gram(self, system: LinearSystem) -> bool:
        # M ≤ gram_below keeps eigvalsh(M×M) cheap; M ≤ N/4 makes the Gram product much cheaper
        # than Lanczos on N-vectors, and Woodbury needs that product anyway.
        m = system.block.rank_bound
        return (regularization_bound_applies(system) and system.factor_form and m is not None
                and m <= self.config.gram_below and 4 * m <= system.n)

    def decide(self, system: LinearSystem, analysis: Analysis) -> Decision:
        """Predict both times and choose according to the policy."""
        cfg = self.config
        kappa = max(1.0, min(analysis.kappa.value, 1e300))
        allowed = self.classical_candidates(system)
        if not allowed and cfg.policy != "quantum":
            raise NoSolverError(
                f"no classical solver among {cfg.classical_solvers} can solve this N={system.n} "
                f"system within max_dense_bytes={cfg.max_dense_bytes} (dense solvers need "
                f"{dense_block_bytes(system.n)} bytes); allow 'cg' or 'woodbury' or raise the "
                "budget"
            )
        predicted = classical_costs(
            system.n,
            nnz=system.nnz,
            kappa=kappa,
            eps=cfg.cg_rtol,
            # A factor-form system: dense solvers pay for forming A, Woodbury is predicted.
            rank=system.block.rank_bound if system.factor_form else None,
            rates=self.rates,
        )
        if "woodbury" not in applicable_solvers(system):
            predicted.pop("woodbury", None)  # e.g. no positive shift
        if "woodbury" in predicted and system.has_gram:
            # The analysis already formed F Fᵀ, which the Woodbury solve reuses.
            m = system.block.rank_bound or 0
            predicted["woodbury"] -= 2.0 * system.n * m * m / self.rates.gemm_flops_per_s
        best = min(allowed, key=lambda s: predicted[s]) if allowed else "none"
        quantum = quantum_cost(
            system.n,
            max(1, system.d),
            kappa,
            cfg.eps,
            nnz=min(system.nnz, system.n * max(1, system.d)) or None,
            alpha=analysis.alpha,
            qlsa=cfg.qlsa,
            profile=cfg.hardware,
            readout=cfg.readout,
        )
        if cfg.policy == "cost":
            choice = "quantum" if quantum.total_seconds < predicted[best] else "classical"
        elif cfg.policy == "threshold":
            choice = "classical" if analysis.kappa.value > cfg.kappa_threshold else "quantum"
        else:
            choice = cfg.policy
        return Decision(choice, best, predicted, quantum)

    def run(
        self, system: LinearSystem, b: torch.Tensor, decision: Decision, key: tuple[int, ...] = ()
    ) -> SolveResult:
        """Execute the decision: classical solve (measured) or emulated QLSA (emulation time).

        ``key`` (e.g. step, block index, attempt) seeds the QLSA's error draw together with
        ``seed``, so a resumed run draws exactly what an uninterrupted one would.
        """
        if decision.choice == "classical":
            return solve_classical(decision.classical_solver, system, b, rtol=self.config.cg_rtol)
        return emulate_qlsa(
            system, b, eps=self.config.eps, shots=self.config.shots, seed=_draw_seed(self.seed, key)
        )

    def record(
        self,
        *,
        step: int,
        block: str,
        system: LinearSystem,
        analysis: Analysis,
        decision: Decision,
        result: SolveResult | None,
    ) -> SolveRecord:
        """The decision record; measured and modeled seconds go in separate fields."""
        quantum = decision.choice == "quantum" and result is not None
        classical = decision.choice == "classical" and result is not None
        return SolveRecord(
            step=step,
            block=block,
            n=system.n,
            d=system.d,
            nnz=system.nnz,
            kappa=analysis.kappa.value,
            kappa_log10=analysis.kappa.log10,
            kappa_kind=analysis.kappa.kind,
            kappa_method=analysis.kappa.method,
            alpha=analysis.alpha,
            reg=system.reg,
            shift=system.shift,
            predicted_quantum_seconds=decision.quantum.total_seconds,
            predicted_classical_seconds=decision.predicted_classical_seconds,
            predicted_classical=dict(decision.predicted_classical),
            classical_solver=decision.classical_solver,
            policy=self.config.policy,
            choice=decision.choice,
            solver=result.solver if result is not None else "none",
            hardware=self.config.hardware.name,
            qlsa=self.config.qlsa,
            readout=decision.quantum.readout,
            queries=decision.quantum.queries,
            measured_classical_seconds=result.seconds if classical else None,
            modeled_quantum_seconds=decision.quantum.total_seconds if quantum else None,
            emulation_seconds=result.seconds if quantum else 0.0,
            residual=result.residual if result is not None else None,
            kappa_ritz=result.kappa.value if result is not None and result.kappa else None,
        )
