"""Estimation (pipeline stage 3): condition number κ and norm figures of a linear system.

* :mod:`~qnewton.estimation.kappa` — :class:`KappaEstimate` (a value and its guarantee);
* :mod:`~qnewton.estimation.dense` — exact κ, the norm–determinant bounds, Gershgorin;
* :mod:`~qnewton.estimation.krylov` — Lanczos, a probabilistic ‖A‖₂ bound, CG Ritz values;
* :mod:`~qnewton.estimation.methods` — the :data:`KAPPA_METHODS` registry and ``"auto"``.
"""

from qnewton.estimation.dense import (
    bound_looseness,
    check_square_matrix,
    check_symmetric,
    gershgorin_upper,
    kappa_exact,
    kappa_gej_bound,
    kappa_merikoski_bound,
)
from qnewton.estimation.kappa import KAPPA_KINDS, KappaEstimate
from qnewton.estimation.krylov import (
    kappa_from_cg,
    kappa_lanczos,
    kappa_regularization_bound,
    kw_relative_error,
    lanczos,
    ritz_values,
    spectral_norm_upper,
    spectrum_bounds,
)
from qnewton.estimation.methods import KAPPA_METHODS, KappaPolicy, analyse_kappa, estimate_kappa

__all__ = [
    "KAPPA_KINDS", "KAPPA_METHODS", "KappaEstimate", "KappaPolicy", "analyse_kappa",
    "bound_looseness", "check_square_matrix", "check_symmetric", "estimate_kappa",
    "gershgorin_upper", "kappa_exact", "kappa_from_cg", "kappa_gej_bound", "kappa_lanczos",
    "kappa_merikoski_bound", "kappa_regularization_bound", "kw_relative_error", "lanczos",
    "ritz_values", "spectral_norm_upper", "spectrum_bounds",
]
