"""Explicit inverse then multiply (≈2N³ + 2N² flops): the Q-Newton code release's approach,
kept as the release-compatible baseline; never the best choice (docs/method.md §6)."""

from __future__ import annotations

import torch

from qnewton.solvers.base import DenseFactorizationSolver, SolveError


class InverseSolver(DenseFactorizationSolver):
    name = "inverse"

    def flops(self, n: int) -> float:
        return 2.0 * n**3 + 2.0 * n**2

    def solve_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        inverse, info = torch.linalg.inv_ex(a)
        if int(info) != 0:
            raise SolveError(
                "explicit inverse failed: the matrix is singular (increase the regularization)"
            )
        return inverse @ b
