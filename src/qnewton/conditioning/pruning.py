"""Symmetric magnitude pruning to a target row sparsity d (docs/method.md §4.6, §6)."""

from __future__ import annotations

import math

import torch

from qnewton.estimation.dense import check_square_matrix


def symmetrized(a: torch.Tensor, name: str = "a") -> torch.Tensor:
    """``(a + aᵀ)/2`` — exactly symmetric — after checking ``a`` is symmetric up to rounding."""
    tol = 1e3 * torch.finfo(a.dtype).eps * float(a.abs().max())
    if float((a - a.T).abs().max()) > tol:
        raise ValueError(f"{name} must be symmetric (max |a - a.T| exceeds {tol:.3g})")
    return 0.5 * (a + a.T)

def prune_target(n: int, *, ratio: float | None = None, count: int | None = None) -> int:
    """Target row sparsity k: ``max(1, floor(ratio·N))`` or ``count``.

    Raises:
        ValueError: not exactly one of ``ratio``/``count``; ``ratio`` outside ``(0, 1]``;
            ``count`` not an integer in ``[1, N]``.
    """
    if (ratio is None) == (count is None):
        raise ValueError("exactly one of ratio= and count= must be given")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
        return max(1, math.floor(ratio * n))
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n:
        raise ValueError(f"count must be an integer in [1, N={n}], got {count!r}")
    return count


def prune_symmetric(
    a: torch.Tensor, *, ratio: float | None = None, count: int | None = None
) -> torch.Tensor:
    """Magnitude pruning of a symmetric matrix to row sparsity ``d ≤ k`` with a symmetric mask.

    Rule (intersection of row-wise top-k sets): every row ``i`` nominates its diagonal entry plus
    the ``k − 1`` off-diagonal entries of largest ``|a_ij|`` (ties broken by ``torch.topk``). Entry
    ``(i, j)`` is kept iff row ``i`` nominated ``j`` AND row ``j`` nominated ``i``; the diagonal
    is always kept. Consequences, all guaranteed:

      * the mask is symmetric, and the result is *exactly* symmetric (``a`` is first replaced by
        ``(a + aᵀ)/2``, which is bit-for-bit symmetric);
      * every row keeps at most k entries (its kept set ⊆ its nominated set), so the achieved
        ``d ≤ k`` — measure it with :func:`row_sparsity` (it may be well below k: an entry large
        for row i but not for row j is dropped);
      * the diagonal is never pruned.

    (The release's row-wise top-k is not symmetric, docs/method.md §6. The union rule would be
    symmetric too, but could exceed k.) Pruning can destroy positive definiteness: follow with
    :func:`repair_positive_definite`.

    Args:
        a: symmetric ``(N, N)`` matrix (symmetric up to rounding).
        ratio: target fraction of kept entries per row, in ``(0, 1]``: ``k = max(1, ⌊ratio·N⌋)``.
        count: target entries per row, integer in ``[1, N]``. Exactly one of ``ratio``/``count``.

    Returns:
        A new ``(N, N)`` tensor, same dtype/device, with pruned entries set to 0.
    """
    a = symmetrized(check_square_matrix(a))
    n = a.shape[0]
    k = prune_target(n, ratio=ratio, count=count)
    nominated = torch.zeros((n, n), dtype=torch.bool, device=a.device)
    if k > 1:
        mag = a.abs()
        mag.fill_diagonal_(-math.inf)  # the diagonal takes one of the k slots separately
        idx = torch.topk(mag, k - 1, dim=1).indices
        nominated.scatter_(1, idx, True)
    keep = nominated & nominated.T
    keep.fill_diagonal_(True)
    return torch.where(keep, a, torch.zeros((), dtype=a.dtype, device=a.device))


def row_sparsity(a: torch.Tensor) -> tuple[int, int]:
    """``(d, nnz)`` of a 2-D tensor: the maximum number of nonzeros in a row, and the total."""
    if not isinstance(a, torch.Tensor) or a.ndim != 2:
        raise ValueError(f"a must be a 2-D tensor, got {getattr(a, 'shape', type(a).__name__)}")
    per_row = (a != 0).sum(dim=1)
    if per_row.numel() == 0:
        return 0, 0
    return int(per_row.max()), int(per_row.sum())


