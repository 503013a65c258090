"""Conditioning (pipeline stage 2): regularization, symmetric pruning, PD repair → LinearSystem."""

from qnewton.conditioning.condition import ConditioningConfig, condition
from qnewton.conditioning.pruning import prune_symmetric, prune_target, row_sparsity, symmetrized
from qnewton.conditioning.regularization import REG_SCHEMES, regularization_lambda
from qnewton.conditioning.repair import is_pd_above, repair_positive_definite

__all__ = [
    "REG_SCHEMES", "ConditioningConfig", "condition", "is_pd_above", "prune_symmetric",
    "prune_target", "regularization_lambda", "repair_positive_definite", "row_sparsity",
    "symmetrized",
]
