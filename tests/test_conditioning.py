"""Tests for qnewton.conditioning against dense ground truth (eigvalsh, brute force)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnewton.conditioning import (
    REG_SCHEMES,
    ConditioningConfig,
    condition,
    prune_symmetric,
    prune_target,
    regularization_lambda,
    repair_positive_definite,
    row_sparsity,
)
from qnewton.curvature import CurvatureBlock, DenseBlock, FactorBlock

F64 = torch.float64
SETTINGS = settings(max_examples=80, deadline=None)


def random_symmetric(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(n, n, generator=gen, dtype=F64)
    return 0.5 * (b + b.T)


def random_factor(m: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(m, n, generator=gen, dtype=F64)


def fisher_block(m: int = 6, n: int = 20, seed: int = 0) -> CurvatureBlock:
    return FactorBlock("w", "fisher", random_factor(m, n, seed), scale=1.0 / m)


def hessian_block(n: int = 20, seed: int = 0) -> CurvatureBlock:
    return DenseBlock("w", "hessian", random_symmetric(n, seed))


def lambda_min(a: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(a)[0])


def is_cholesky_pd(a: torch.Tensor) -> bool:
    return int(torch.linalg.cholesky_ex(a).info) == 0


# ----------------------------------------------------------------------------- regularization


def test_unknown_reg_scheme_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="max-entry, absolute, spectral, none; got 'relative'"):
        regularization_lambda(hessian_block(), "relative", 1e-3)
    assert "spectral" in REG_SCHEMES and "relative" not in REG_SCHEMES


@pytest.mark.parametrize("block", [fisher_block(), hessian_block()], ids=["factor", "dense"])
def test_regularization_lambda_schemes_match_dense_ground_truth(block: CurvatureBlock) -> None:
    h = block.to_dense()
    max_entry = float(h.abs().max())
    norm = float(torch.linalg.matrix_norm(h, 2))
    assert regularization_lambda(block, "max-entry", 1e-2) == pytest.approx(1e-2 * max_entry)
    assert regularization_lambda(block, "absolute", 0.3) == 0.3
    assert regularization_lambda(block, "none", 5.0) == 0.0
    assert regularization_lambda(block, "spectral", 0.5, spectral_norm=2.0) == 1.0
    estimated = regularization_lambda(block, "spectral", 0.1)
    # an upper bound on 0.1·‖H‖₂, not far above it
    assert 0.1 * norm <= estimated <= 0.1 * 1.5 * norm
    assert regularization_lambda(block, "max-entry", 0.0) == 0.0


def test_regularization_max_entry_of_factor_form_is_the_largest_diagonal() -> None:
    block = fisher_block(m=3, n=15, seed=2)
    dense = block.to_dense()
    assert float(dense.abs().max()) == pytest.approx(float(dense.diagonal().max()))
    assert regularization_lambda(block, "max-entry", 1.0) == pytest.approx(float(dense.abs().max()))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"scheme": "relative"}, "reg_scheme"),
        ({"strength": -1.0}, "strength"),
        ({"strength": math.nan}, "strength"),
        ({"strength": math.inf}, "strength"),
        ({"strength": "1e-3"}, "strength"),
        ({"scheme": "spectral", "spectral_norm": -2.0}, "spectral_norm"),
        ({"scheme": "spectral", "spectral_norm": math.inf}, "spectral_norm"),
    ],
)
def test_regularization_lambda_rejects_bad_input(kwargs: dict, name: str) -> None:
    args = {"scheme": "max-entry", "strength": 1e-3} | kwargs
    with pytest.raises(ValueError, match=f"^{name} must"):
        regularization_lambda(hessian_block(), **args)


# ----------------------------------------------------------------------------- pruning


def brute_force_prune(a: torch.Tensor, k: int) -> torch.Tensor:
    """The documented rule, entry by entry: keep (i, j) iff each row nominates the other."""
    n = a.shape[0]
    nominated = [set() for _ in range(n)]
    for i in range(n):
        off = sorted((j for j in range(n) if j != i), key=lambda j: -abs(float(a[i, j])))
        nominated[i] = {i, *off[: k - 1]}
    out = torch.zeros_like(a)
    for i in range(n):
        for j in range(n):
            if i == j or (j in nominated[i] and i in nominated[j]):
                out[i, j] = a[i, j]
    return out


@SETTINGS
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 2**31 - 1),
    ratio=st.floats(0.01, 1.0),
    use_count=st.booleans(),
)
def test_prune_symmetric_properties(n: int, seed: int, ratio: float, use_count: bool) -> None:
    a = random_symmetric(n, seed)
    if use_count:
        k = max(1, min(n, math.ceil(ratio * n)))
        pruned = prune_symmetric(a, count=k)
    else:
        k = max(1, math.floor(ratio * n))
        pruned = prune_symmetric(a, ratio=ratio)
    assert torch.equal(pruned, pruned.T)  # exactly symmetric
    assert torch.equal(pruned.diagonal(), a.diagonal())  # diagonal always kept
    d, nnz = row_sparsity(pruned)
    assert d <= k
    kept = pruned != 0
    assert torch.equal(pruned[kept], a[kept])  # kept entries unchanged
    assert nnz == int(kept.sum())
    # and it is exactly the documented intersection rule
    torch.testing.assert_close(pruned, brute_force_prune(a, k), rtol=0, atol=0)


def test_prune_symmetric_full_count_keeps_everything_and_count_one_keeps_diagonal() -> None:
    a = random_symmetric(12, 3)
    assert torch.equal(prune_symmetric(a, count=12), a)
    assert torch.equal(prune_symmetric(a, ratio=1.0), a)
    assert torch.equal(prune_symmetric(a, count=1), torch.diag(a.diagonal()))
    assert torch.equal(prune_symmetric(a, ratio=0.01), torch.diag(a.diagonal()))


def test_prune_symmetric_differs_from_row_wise_topk_by_being_symmetric() -> None:
    # Row 0 is dominated by (0,1), but row 1's largest off-diagonal entry is (1,2):
    a = torch.tensor(
        [[1.0, 5.0, 0.1], [5.0, 1.0, 9.0], [0.1, 9.0, 1.0]],
        dtype=F64,
    )
    pruned = prune_symmetric(a, count=2)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 9.0], [0.0, 9.0, 1.0]], dtype=F64)
    assert torch.equal(pruned, expected)
    assert row_sparsity(pruned) == (2, 5)


def test_prune_symmetric_symmetrizes_rounding_asymmetry() -> None:
    f = random_factor(5, 30, 0)
    a = f.T @ f  # symmetric only up to rounding in general
    pruned = prune_symmetric(a, ratio=0.2)
    assert torch.equal(pruned, pruned.T)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({}, "exactly one of ratio"),
        ({"ratio": 0.5, "count": 2}, "exactly one of ratio"),
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": math.nan}, "ratio"),
        ({"count": 0}, "count"),
        ({"count": 5}, "count"),
        ({"count": 2.0}, "count"),
    ],
)
def test_prune_symmetric_rejects_bad_targets(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        prune_symmetric(random_symmetric(4, 0), **kwargs)


def test_prune_symmetric_rejects_bad_matrices() -> None:
    with pytest.raises(ValueError, match="^a must be symmetric"):
        prune_symmetric(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=F64), count=1)
    with pytest.raises(ValueError, match="^a must"):
        prune_symmetric(torch.ones(2, 3, dtype=F64), count=1)
    with pytest.raises(ValueError, match="^a must"):
        prune_symmetric(torch.full((2, 2), math.inf, dtype=F64), count=1)


def test_prune_target() -> None:
    assert prune_target(10, ratio=0.25) == 2
    assert prune_target(10, ratio=0.05) == 1
    assert prune_target(10, count=10) == 10


def test_row_sparsity_brute_force() -> None:
    a = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 4.0, 5.0]], dtype=F64)
    assert row_sparsity(a) == (3, 5)
    assert row_sparsity(torch.zeros(3, 3)) == (0, 0)
    with pytest.raises(ValueError, match="^a must"):
        row_sparsity(torch.zeros(3))


# ----------------------------------------------------------------------------- repair


@SETTINGS
@given(
    n=st.integers(2, 30),
    seed=st.integers(0, 2**31 - 1),
    log_target=st.floats(-10.0, 0.0),
)
def test_repair_positive_definite_properties(n: int, seed: int, log_target: float) -> None:
    a = random_symmetric(n, seed)
    target = 10.0**log_target
    repaired, shift = repair_positive_definite(a, target)
    true_min = lambda_min(a)
    minimal = max(0.0, target - true_min)
    assert is_cholesky_pd(repaired)
    assert lambda_min(repaired) >= target
    assert shift >= minimal
    # minimal up to a rounding-level margin
    assert shift - minimal <= 1e-10 * max(1.0, float(a.abs().max()))
    expected = a.clone()
    expected.diagonal().add_(shift)
    torch.testing.assert_close(repaired, expected, rtol=0, atol=0)


def test_repair_is_a_no_op_when_already_positive_definite() -> None:
    f = random_factor(30, 10, 1)
    a = f.T @ f / 30 + 0.5 * torch.eye(10, dtype=F64)
    a = 0.5 * (a + a.T)
    repaired, shift = repair_positive_definite(a, 0.1)
    assert shift == 0.0
    assert torch.equal(repaired, a)


def test_repair_exact_shift_on_a_diagonal_matrix() -> None:
    a = torch.diag(torch.tensor([3.0, -2.0, 1.0], dtype=F64))
    repaired, shift = repair_positive_definite(a, 0.5)
    assert shift == pytest.approx(2.5, rel=1e-12)
    assert lambda_min(repaired) >= 0.5


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "x"])
def test_repair_rejects_bad_min_eig(bad: object) -> None:
    with pytest.raises(ValueError, match="^min_eig must"):
        repair_positive_definite(torch.eye(3, dtype=F64), bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"reg_scheme": "relative"}, "reg_scheme"),
        ({"reg": -1.0}, "reg"),
        ({"reg": math.nan}, "reg"),
        ({"prune_ratio": 0.0}, "prune_ratio"),
        ({"prune_ratio": 2.0}, "prune_ratio"),
        ({"prune_count": 0}, "prune_count"),
        ({"prune_count": 1.5}, "prune_count"),
        ({"prune_ratio": 0.5, "prune_count": 3}, "give at most one of prune_ratio"),
        ({"min_eig_fraction": 0.0}, "min_eig_fraction"),
        ({"min_eig_fraction": 1.0}, "min_eig_fraction"),
        ({"min_eig_fraction": math.nan}, "min_eig_fraction"),
    ],
)
def test_conditioning_config_validation(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        ConditioningConfig(**kwargs)


def test_default_conditioning_is_the_papers_relative_regularization_without_pruning() -> None:
    config = ConditioningConfig()
    block = fisher_block()
    system = condition(block, config)
    h = block.to_dense()
    assert system.reg == pytest.approx(1e-3 * float(h.abs().max()), rel=1e-12)
    assert system.factor_form and not system.pruned and (system.d, system.nnz) == (20, 400)
    with pytest.raises(AttributeError):
        config.reg = 1.0  # type: ignore[misc]


# ----------------------------------------------------------------------------- condition


def test_condition_keeps_factor_form_without_pruning() -> None:
    block = fisher_block(m=6, n=20, seed=4)
    system = condition(block, ConditioningConfig(reg_scheme="max-entry", reg=1e-2))
    lam = 1e-2 * float(block.to_dense().abs().max())
    assert system.dense is None and system.factor_form
    assert system.reg == pytest.approx(lam) and system.shift == pytest.approx(lam)
    assert system.repair_shift == 0.0 and not system.pruned
    assert (system.d, system.nnz) == (20, 400)
    a = block.to_dense() + lam * torch.eye(20, dtype=F64)
    v = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(system.matvec(v), a @ v)
    torch.testing.assert_close(system.to_dense(), a)


def test_condition_low_rank_factor_without_regularization_gets_minimal_repair() -> None:
    block = fisher_block(m=4, n=20, seed=1)  # rank 4 < 20: singular
    config = ConditioningConfig(reg_scheme="none", min_eig_fraction=1e-6)
    system = condition(block, config)
    target = 1e-6 * float(block.to_dense().abs().max())
    assert system.dense is None
    assert system.repair_shift == pytest.approx(target)
    assert lambda_min(system.to_dense()) >= target * (1 - 1e-6)


def test_condition_dense_fisher_block() -> None:
    f = random_factor(50, 12, 2)
    h = f.T @ f / 50
    block = DenseBlock("w", "ggn", 0.5 * (h + h.T), psd=True)
    system = condition(block, ConditioningConfig(reg_scheme="absolute", reg=0.1))
    torch.testing.assert_close(system.dense, block.matrix + 0.1 * torch.eye(12, dtype=F64))
    assert system.shift == 0.1 and system.repair_shift == 0.0
    assert (system.d, system.nnz) == row_sparsity(system.dense) == (12, 144)


def test_condition_sparse_dense_block_reports_true_counts() -> None:
    h = torch.diag(torch.arange(1.0, 7.0, dtype=F64))
    h[0, 1] = h[1, 0] = 0.5
    block = DenseBlock("w", "hessian", h)
    system = condition(block, ConditioningConfig(reg_scheme="absolute", reg=0.01))
    assert (system.d, system.nnz) == (2, 8)
    assert system.repair_shift == 0.0


def test_condition_repairs_indefinite_hessian_without_pruning() -> None:
    block = hessian_block(n=25, seed=5)
    h = block.to_dense()
    config = ConditioningConfig(reg_scheme="max-entry", reg=1e-3, min_eig_fraction=1e-4)
    system = condition(block, config)
    lam = 1e-3 * float(h.abs().max())
    assert lambda_min(h) + lam < 0  # indefinite even after regularization
    assert system.repair_shift > 0
    assert system.shift == pytest.approx(lam + system.repair_shift)
    a = system.dense
    assert a is not None and is_cholesky_pd(a)
    # the target is λ itself (as for a PSD block plus λI), unless the relative floor is larger
    target = max(lam, 1e-4 * float((h + lam * torch.eye(25, dtype=F64)).abs().max()))
    assert lambda_min(a) >= target * (1 - 1e-12)
    # the repair is minimal up to rounding
    assert system.repair_shift == pytest.approx(target - lambda_min(h) - lam, rel=1e-9)
    torch.testing.assert_close(a, h + system.shift * torch.eye(25, dtype=F64))


def test_condition_leaves_positive_definite_hessian_alone() -> None:
    f = random_factor(40, 10, 3)
    h = f.T @ f / 40 + torch.eye(10, dtype=F64)
    block = DenseBlock("w", "hessian", 0.5 * (h + h.T))
    system = condition(block, ConditioningConfig())
    assert system.repair_shift == 0.0


@pytest.mark.parametrize("kind", ["factor", "hessian"])
@pytest.mark.parametrize(("ratio", "count"), [(0.2, None), (None, 3), (None, 1)])
def test_condition_with_pruning(kind: str, ratio: float | None, count: int | None) -> None:
    n = 30
    block = fisher_block(m=8, n=n, seed=6) if kind == "factor" else hessian_block(n=n, seed=6)
    config = ConditioningConfig(prune_ratio=ratio, prune_count=count)
    system = condition(block, config)
    k = count if count is not None else math.floor(ratio * n)
    a = system.dense
    assert system.pruned and a is not None
    assert torch.equal(a, a.T)
    assert system.d <= k
    assert (system.d, system.nnz) == row_sparsity(a)
    assert is_cholesky_pd(a)
    regularized = block.to_dense() + system.reg * torch.eye(n, dtype=F64)
    target = config.min_eig_fraction * float(prune_symmetric(regularized, count=k).abs().max())
    assert lambda_min(a) >= target
    # off-diagonal kept entries are the regularized block's entries
    off = ~torch.eye(n, dtype=torch.bool) & (a != 0)
    torch.testing.assert_close(a[off], regularized[off], rtol=0, atol=1e-15)
    # the system matvec is the pruned matrix
    v = torch.ones(n, dtype=F64)
    torch.testing.assert_close(system.matvec(v), a @ v)


def test_condition_prune_count_larger_than_block() -> None:
    with pytest.raises(ValueError, match="^prune_count must be <= N=20"):
        condition(hessian_block(n=20), ConditioningConfig(prune_count=21))


def test_condition_rejects_wrong_argument_types() -> None:
    with pytest.raises(ValueError, match="^block must"):
        condition(torch.eye(3), ConditioningConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^config must"):
        condition(hessian_block(), {"reg": 1e-3})  # type: ignore[arg-type]
