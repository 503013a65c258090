"""How linear systems are routed and solved: the scheduler's settings, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from qnewton.estimation.methods import KAPPA_METHODS, KappaPolicy
from qnewton.quantum import QLSA_MODELS, READOUT_MODES, HardwareProfile
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.quantum.qdk_estimator import require_qdk
from qnewton.scheduling.policies import POLICIES
from qnewton.solvers import SOLVERS
from qnewton.validation import check_choice, check_int, check_open_unit, check_real

#: Classical solvers the scheduler may pick by default (LU and the explicit inverse never win
#: against Cholesky under the cost models; the inverse stays available as the release baseline).
DEFAULT_SOLVERS = ("cholesky", "cg", "woodbury", "kronecker")


@dataclass(frozen=True)
class SchedulerConfig:
    """How linear systems are routed and solved.

    Attributes:
        hardware: the hardware profile that turns QLSA queries into modeled seconds.
        policy: a name in :data:`~qnewton.scheduling.policies.POLICIES`.
        qlsa: a QLSA query model in :data:`qnewton.quantum.QLSA_MODELS`.
        qlsa_backend: how a quantum solve's answer is produced (``QLSA_BACKENDS``).
        readout: ``"state"`` or ``"vector"``; ``None`` uses the profile's default.
        eps: relative ℓ₂ error ε of the answer a quantum solve hands the step, in (0, 1).
        match_accuracy: compare like with like: with ``"vector"`` readout, ``eps`` is the
            error of the vector the step receives, split between the QLSA (ε_QLSA) and the
            tomography (δ) at the cheapest split (:func:`~qnewton.quantum.error_budget.
            matched_split`), rather than ε_QLSA = eps plus the profile's δ on top
            (``readout_error``, 0.1 by default: an 11% vector compared with a 1e-6 CG solve).
        kappa_threshold: κ above which the ``threshold`` policy routes classically.
        kappa_method: κ estimator used for the decision (``KAPPA_METHODS``; ``"auto"`` is
            :func:`qnewton.estimation.analyse_kappa`).
        alpha: block-encoding normalization α; ``None`` estimates d·max|Aᵢⱼ|/‖A‖₂ per block.
        classical_solvers: classical solvers the scheduler may pick (those applicable).
        shots: readout shot budget for the QLSA backend (``None``: no sampling noise).
        lanczos_steps: Lanczos steps for the norm / κ estimates.
        cg_rtol: relative residual at which classical CG stops (and which its cost model uses).
        max_dense_bytes: a factor-form system whose N×N matrix would exceed this is never
            handed to a solver that forms the matrix (Cholesky, LU, inverse).
        budget_name: the name the caller gave ``max_dense_bytes`` (``QNewton``:
            ``"max_block_bytes"``), used in every message about the budget.
        exact_below, gram_below, gram_eig_below: thresholds of the ``"auto"`` κ method
            (:class:`KappaPolicy`).
        share_gram: let the ``"auto"`` κ method use a factor block's M×M Gram matrix at any M
            when Woodbury is the predicted classical solver (the solve forms that Gram anyway,
            so κ costs one small eigen-solve instead of Lanczos on N-vectors).
    """

    hardware: HardwareProfile
    policy: str = "cost"
    qlsa: str = "jennings"
    qlsa_backend: str = "emulated"
    readout: str | None = None
    eps: float = 1e-2
    match_accuracy: bool = True
    kappa_threshold: float = 1e4
    kappa_method: str = "auto"
    alpha: float | None = None
    classical_solvers: tuple[str, ...] = DEFAULT_SOLVERS
    shots: int | None = None
    lanczos_steps: int = 20
    cg_rtol: float = 1e-6
    exact_below: int = 128
    gram_below: int = 128
    gram_eig_below: int = 256
    share_gram: bool = True
    max_dense_bytes: int = 2 * 1024**3
    budget_name: str = field(default="max_dense_bytes", compare=False, repr=False)
    kappa_policy: KappaPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.hardware, HardwareProfile):
            raise ValueError(f"hardware must be a HardwareProfile, got {self.hardware!r}")
        if self.hardware.kind == "qdk-estimator":  # fail at set-up, not at the first solve
            require_qdk(self.hardware.name)
        POLICIES.check(self.policy)
        QLSA_MODELS.check(self.qlsa)
        QLSA_BACKENDS.check(self.qlsa_backend)
        if self.readout is not None:
            check_choice("readout", self.readout, READOUT_MODES)
        check_open_unit("eps", self.eps)
        if not isinstance(self.match_accuracy, bool):
            raise ValueError(f"match_accuracy must be True or False, got {self.match_accuracy!r}")
        check_real("kappa_threshold", self.kappa_threshold, low=1.0)
        KAPPA_METHODS.check(self.kappa_method)
        if self.alpha is not None:
            check_real("alpha", self.alpha, low=0.0, low_open=True)
        solvers = (self.classical_solvers,) if isinstance(self.classical_solvers, str) else tuple(
            self.classical_solvers)
        if not solvers:
            raise ValueError(f"classical_solvers must name at least one of {', '.join(SOLVERS)}")
        for name in solvers:
            check_choice("classical_solvers", name, SOLVERS)
        object.__setattr__(self, "classical_solvers", solvers)
        if self.shots is not None:
            check_int("shots", self.shots, 1)
        check_open_unit("cg_rtol", self.cg_rtol)
        check_int(self.budget_name, self.max_dense_bytes, 1)
        object.__setattr__(self, "kappa_policy", KappaPolicy(
            method=self.kappa_method, steps=self.lanczos_steps, exact_below=self.exact_below,
            gram_below=self.gram_below, gram_eig_below=self.gram_eig_below))
