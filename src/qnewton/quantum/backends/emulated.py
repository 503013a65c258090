"""The emulated QLSA: the exact solution with the relative error ε the algorithm allows, in a
seeded random direction, optionally read out with a finite shot budget (docs/method.md §4.4)."""

from __future__ import annotations

import time

import torch

from qnewton.quantum.backends.base import QLSABackend
from qnewton.solvers import reference_solver, solve_classical
from qnewton.solvers.base import SolveError, SolveResult, check_rhs, finish
from qnewton.system import LinearSystem
from qnewton.validation import check_int, check_open_unit


def unit_vector(n: int, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A uniformly random unit vector of length ``n`` (Gaussian draw, normalized)."""
    u = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype)
    return u / torch.linalg.vector_norm(u)


def sampled_readout(x: torch.Tensor, shots: int, generator: torch.Generator) -> torch.Tensor:
    """Estimate the normalized state x/‖x‖ from ``shots`` computational-basis measurements.

    Magnitudes come from the sampled frequencies √(count_i/shots); signs are taken as known
    (real amplitudes, recovered e.g. by interference with a reference state). Unsampled
    components read as zero.
    """
    probs = (x / torch.linalg.vector_norm(x)).double().square()
    counts = torch.bincount(
        torch.multinomial(probs, shots, replacement=True, generator=generator),
        minlength=x.numel(),
    )
    return (torch.sign(x).double() * torch.sqrt(counts.double() / shots)).to(x.dtype)


def recover_norm(system: LinearSystem, direction: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scale a unit direction x̂ to c·x̂ minimizing ‖A c x̂ − b‖: c = (x̂ᵀAb)/(x̂ᵀA²x̂) (A sym.)."""
    ax = system.matvec(direction)
    denom = float(ax @ ax)
    if not denom > 0:
        raise SolveError("QLSA readout returned a direction in the null space of A")
    return direction * (float(ax @ b) / denom)


class EmulatedQLSA(QLSABackend):
    """x̃ with ‖x̃ − x‖₂ = ε·‖x‖₂ exactly, x = A⁻¹b computed classically (Woodbury when it
    applies with fewer factor rows than N, else Cholesky). With ``shots``, the state is read out
    by sampling and its norm recovered classically, so the result carries finite-shot noise."""

    name = "emulated"

    def __init__(self, exact_solver: str | None = None) -> None:
        self.exact_solver = exact_solver

    def solve(self, system: LinearSystem, b: torch.Tensor, *, eps: float,
              shots: int | None = None, seed: int = 0) -> SolveResult:
        check_rhs(system, b)
        check_open_unit("eps", eps)
        if shots is not None:
            check_int("shots", shots, 1)
        name = self.exact_solver or reference_solver(system)
        generator = torch.Generator().manual_seed(int(seed))
        start = time.perf_counter()
        exact = solve_classical(name, system, b).x
        noisy = exact + eps * torch.linalg.vector_norm(exact) * unit_vector(
            system.n, generator, exact.dtype
        )
        if shots is not None:
            noisy = recover_norm(system, sampled_readout(noisy, shots, generator), b)
        seconds = time.perf_counter() - start
        return finish(system, b, noisy, "qlsa-emulated", seconds)
