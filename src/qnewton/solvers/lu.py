"""Dense LU solve with partial pivoting (2N³/3 + 2N² flops)."""

from __future__ import annotations

import torch

from qnewton.solvers.base import DenseFactorizationSolver, SolveError


class LUSolver(DenseFactorizationSolver):
    name = "lu"

    def flops(self, n: int) -> float:
        return 2.0 * n**3 / 3.0 + 2.0 * n**2

    def solve_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        lu, pivots, info = torch.linalg.lu_factor_ex(a)
        if int(info) != 0:
            raise SolveError(
                f"LU factorization failed: U[{int(info) - 1}] is exactly zero (singular matrix; "
                "increase the regularization)"
            )
        return torch.linalg.lu_solve(lu, pivots, b.unsqueeze(1)).squeeze(1)
