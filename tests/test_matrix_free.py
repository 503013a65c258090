"""Matrix-free blocks: curvature-vector products against brute-force curvature, and Newton steps
on blocks over the memory budget against the dense solve (H + λI)⁻¹ g."""

import dataclasses

import pytest
import torch
from brute_force import brute_force_curvature, closure_for, mean_loss_gradient
from torch import nn

from qnewton import QNewton
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import (
    CURVATURES,
    CurvatureBudgetError,
    CurvatureConfig,
    MatrixFreeBlock,
    MatrixFreeError,
    blocks_from_module,
    compute_curvature,
)
from qnewton.estimation import estimate_kappa, spectrum_bounds
from qnewton.quantum import get_profile
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates, applicable_solvers
from qnewton.system import LinearSystem

DT = torch.float64
RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def tiny_problem(seed=1, n=10):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(n, 3, dtype=DT)
    y = torch.randint(0, 2, (n,))
    return model, x, y


def matrix_free_blocks(kind, model, x, y, grouping="tensor"):
    out = model(x)
    losses = nn.functional.cross_entropy(out, y, reduction="none")
    blocks = blocks_from_module(model, grouping)
    res = compute_curvature(losses, blocks, CurvatureConfig(kind=kind, max_block_bytes=1),
                            outputs=out, over_budget="matrix-free")
    return blocks, res


@pytest.mark.parametrize("kind", ["hessian", "fisher", "ggn"])
def test_products_equal_brute_force_curvature_products(kind):
    model, x, y = tiny_problem()
    blocks, res = matrix_free_blocks(kind, model, x, y)
    assert set(res.matrix_free) == {b.name for b in blocks} and not res.skipped
    gen = torch.Generator().manual_seed(0)
    for block, mf in zip(blocks, res.blocks, strict=True):
        assert isinstance(mf, MatrixFreeBlock) and mf.matrix_free and mf.kind == kind
        h = brute_force_curvature(kind, model, x, y, list(block.params))
        v = torch.randn(block.numel, 3, generator=gen, dtype=DT)
        torch.testing.assert_close(mf.matvec(v), h @ v, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mf.matvec(v[:, 0]), h @ v[:, 0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mf.columns(0, block.numel), h, rtol=1e-10, atol=1e-12)
        with pytest.raises(MatrixFreeError, match="matrix-free"):
            mf.to_dense()
        if kind == "hessian":
            assert not mf.psd and mf.rank_bound is None and mf.max_entry_kind is None
            with pytest.raises(MatrixFreeError, match="not available"):
                mf.diagonal()
            with pytest.raises(MatrixFreeError, match="upper bound"):
                mf.max_abs_entry()
        else:
            assert mf.psd and mf.max_entry_kind == "exact"
            assert mf.rank_bound == x.shape[0] * (2 if kind == "ggn" else 1)
            torch.testing.assert_close(mf.diagonal(), h.diagonal(), rtol=1e-10, atol=1e-14)
            assert mf.max_abs_entry() == pytest.approx(float(h.abs().max()), rel=1e-12)
            assert mf.max_abs_entry(0.5) == pytest.approx(float(h.abs().max()) + 0.5, rel=1e-12)


def test_hessian_max_entry_is_a_stated_upper_bound_after_conditioning():
    model, x, y = tiny_problem()
    blocks, res = matrix_free_blocks("hessian", model, x, y)
    for block, mf in zip(blocks, res.blocks, strict=True):
        h = brute_force_curvature("hessian", model, x, y, list(block.params))
        system = condition(mf, ConditioningConfig(reg=1e-2))
        assert mf.max_entry_kind == "upper"
        lower, upper = mf.spectral_bounds
        evals = torch.linalg.eigvalsh(h)
        assert upper >= float(evals.abs().max()) * (1 - 1e-12) >= float(h.abs().max()) * (1 - 1e-9)
        assert lower <= float(evals[0]) + 1e-12
        assert mf.max_abs_entry() == upper
        # λ_min(A) ≥ max(λ, t): the same guarantee as a repaired dense Hessian
        a = h + system.shift * torch.eye(block.numel, dtype=DT)
        assert float(torch.linalg.eigvalsh(a)[0]) >= system.min_eig_bound * (1 - 1e-9)
        assert system.min_eig_bound >= system.reg


def test_spectrum_bounds_hold_for_an_indefinite_matrix_of_many_eigenvalues():
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(300, 300, generator=gen, dtype=DT))
    evals = torch.linspace(-2.0, 5.0, 300, dtype=DT)
    a = (q * evals) @ q.T
    lower, upper = spectrum_bounds(lambda v: a @ v, 300)
    assert -2.0 >= lower >= -5.0  # valid, and better than −‖A‖₂
    assert 5.0 <= upper <= 1.5 * 5.0  # valid, and better than the A² bound alone (≈ 11.7 here)


@pytest.mark.parametrize("kind", ["hessian", "ggn", "fisher"])
def test_a_block_over_budget_is_newton_solved_by_matrix_free_cg(kind):
    model, x, y = tiny_problem()
    blocks = {"0": [model[0].weight, model[0].bias], "2": [model[2].weight, model[2].bias]}
    sizes = {name: sum(p.numel() for p in ps) for name, ps in blocks.items()}
    # just below the smaller block's storage: both blocks are over budget
    budget = CURVATURES[kind].block_bytes(min(sizes.values()), x.shape[0], 2) - 1
    lr, reg = 0.7, 0.3
    opt = QNewton(model.named_parameters(), step_rule="fixed", lr=lr, curvature=kind, reg=reg,
                  grouping="module", max_block_bytes=budget, exact_kappa_max_n=100, rates=RATES)
    opt.scheduler.config = dataclasses.replace(opt.scheduler.config, cg_rtol=1e-13)
    expected = {}
    for name, params in blocks.items():
        h = brute_force_curvature(kind, model, x, y, params)
        g = mean_loss_gradient(model, x, y, params)
        expected[name] = (h, g, torch.cat([p.detach().reshape(-1) for p in params]))
    opt.step(closure_for(model, x, y, with_outputs=kind == "ggn"))
    records = {r.block: r for r in opt.ledger.records}
    free = {e["block"] for e in opt.ledger.events if e["kind"] == "block-matrix-free"}
    assert free == set(blocks)
    for name, params in blocks.items():
        h, g, theta = expected[name]
        record = records[name]
        assert (record.representation, record.solver, record.fallback) == (
            "matrix-free", "cg", None)
        if kind != "hessian":  # the paper's λ = reg·max|H_ij|, exactly as on the dense path
            assert record.reg == pytest.approx(reg * float(h.abs().max()), rel=1e-10)
            assert record.shift == record.reg
        a = h + record.shift * torch.eye(h.shape[0], dtype=DT)
        evals = torch.linalg.eigvalsh(a)
        assert record.kappa_exact == pytest.approx(float(evals[-1] / evals[0]), rel=1e-6)
        reference = theta - lr * torch.linalg.solve(a, g)
        got = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(got, reference, rtol=1e-9, atol=1e-11)
    moved = opt.ledger.summary()["parameter_updates"]
    assert moved["newton"] == moved["newton_matrix_free"] == sum(sizes.values())
    assert moved["fallback"] == 0


@pytest.mark.parametrize("kind", ["fisher", "ggn"])
def test_matrix_free_steps_match_the_dense_path_for_psd_kinds(kind):
    model, x, y = tiny_problem(seed=2, n=12)
    dense_model = type(model)(*[m for m in model]).double()
    dense_model.load_state_dict(model.state_dict())
    kw = {"lr": 0.5, "curvature": kind, "reg": 1e-2, "rates": RATES}
    free = QNewton(model.named_parameters(), max_block_bytes=8, **kw, grouping="tensor")
    free.scheduler.config = dataclasses.replace(free.scheduler.config, cg_rtol=1e-13)
    dense = QNewton(dense_model.named_parameters(), policy="classical", **kw, grouping="tensor")
    for _ in range(3):
        free.step(closure_for(model, x, y, with_outputs=kind == "ggn"))
        dense.step(closure_for(dense_model, x, y, with_outputs=kind == "ggn"))
    for p, q in zip(model.parameters(), dense_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10)
    assert {r.representation for r in free.ledger.records} == {"matrix-free"}


def test_over_budget_modes_of_compute_curvature():
    model, x, y = tiny_problem()
    blocks = blocks_from_module(model)
    losses = nn.functional.cross_entropy(model(x), y, reduction="none")
    config = CurvatureConfig(kind="fisher", max_block_bytes=500)  # 10×12, 10×8 factors: over
    with pytest.raises(CurvatureBudgetError, match="0.weight"):
        compute_curvature(losses, blocks, config)
    with pytest.raises(CurvatureBudgetError):
        compute_curvature(losses, blocks, config, over_budget="raise", skip_over_budget=True)
    skipped = compute_curvature(losses, blocks, config, skip_over_budget=True)
    assert set(skipped.skipped) == {"0.weight", "2.weight"} and not skipped.matrix_free
    free = compute_curvature(losses, blocks, config, over_budget="matrix-free")
    assert set(free.matrix_free) == {"0.weight", "2.weight"} and not free.skipped
    assert [b.representation for b in free.blocks] == [  # (biases: Kronecker rows)
        "matrix-free", "kronecker-rows", "matrix-free", "kronecker-rows"]
    with pytest.raises(ValueError, match="over_budget must be one of"):
        compute_curvature(losses, blocks, config, over_budget="gradient")


def test_pruning_is_refused_for_matrix_free_blocks():
    model, x, y = tiny_problem()
    _, res = matrix_free_blocks("fisher", model, x, y)
    with pytest.raises(ValueError, match="pruning needs the entries"):
        condition(res.blocks[0], ConditioningConfig(prune_ratio=0.5))
    opt = QNewton(model.named_parameters(), prune_ratio=0.5, max_block_bytes=8, rates=RATES,
                  grouping="tensor")
    with pytest.raises(ValueError, match="matrix-free"):
        opt.step(closure_for(model, x, y))


def test_matrix_free_systems_are_solved_by_cg_only_and_never_sent_to_the_qlsa():
    model, x, y = tiny_problem()
    _, res = matrix_free_blocks("fisher", model, x, y)
    system = condition(res.blocks[0], ConditioningConfig(reg=1e-2))
    assert isinstance(system, LinearSystem) and system.matrix_free and not system.factor_form
    assert applicable_solvers(system) == ("cg",)
    with pytest.raises(MatrixFreeError):
        system.to_dense()
    with pytest.raises(MatrixFreeError):
        estimate_kappa(system, "exact")
    lanczos = estimate_kappa(system, "regularization")  # κ from products still works
    assert lanczos.kind == "upper"
    for policy in ("cost", "threshold", "quantum", "classical"):
        sched = Scheduler(SchedulerConfig(hardware=get_profile("paper", gate_time_s=1e-18),
                                          policy=policy), rates=RATES)
        analysis = sched.analyse_if_needed(system)
        assert analysis.kappa is None and analysis.skipped == "matrix-free"
        decision = sched.decide(system, analysis)
        assert (decision.choice, decision.classical_solver) == ("classical", "cg")
        assert decision.quantum is None and decision.quantum_rejection == "matrix-free"
        g = torch.randn(system.n, dtype=DT)
        record = sched.record(step=0, block="b", system=system, analysis=analysis,
                              decision=decision, result=sched.run(system, g, decision))
        assert record.kappa is None and record.kappa_kind == "not-estimated"
        assert record.predicted_classical_seconds is None and record.queries is None
        assert record.kappa_ritz is not None  # CG's own κ estimate, free


def test_a_matrix_free_block_without_cg_takes_a_reported_fallback():
    model, x, y = tiny_problem()
    opt = QNewton(model.named_parameters(), max_block_bytes=8, classical_solvers=("cholesky",),
                  rates=RATES, grouping="tensor")
    opt.step(closure_for(model, x, y))
    events = [e for e in opt.ledger.events if e["kind"] == "no-solver"]
    assert len(events) == 4 and "'cg'" in events[0]["message"]
    assert opt.ledger.summary()["fallback_reasons"] == {"no-solver": 4}
