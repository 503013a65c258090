"""The scheduler skips κ estimation and quantum costing exactly where they cannot change the
decision (docs/method.md §4.8), and its decisions and solutions are those it makes with them."""

import copy
import json

import pytest
import torch
from torch import nn

from qnewton import QNewton
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import DenseBlock, FactorBlock
from qnewton.quantum import QLSA_MODELS, get_profile, quantum_cost
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates
from qnewton.system import SystemShape

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)
ATTOSECOND = 1e-18


def problem(seed=0, n=64):
    """Batch 64: the 200-weight block takes the Lanczos κ bound (4M > N); batch 32: the Gram
    matrix (4M ≤ N), which the estimating run's Woodbury solve reuses."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 10), nn.Tanh(), nn.Linear(10, 3)).double()
    return model, x, y


def closure_for(model, x, y):
    return lambda: nn.functional.cross_entropy(model(x), y, reduction="none")


def count_kappa_calls(monkeypatch):
    import qnewton.scheduling.scheduler as module

    calls = []
    real = module.analyse_kappa
    monkeypatch.setattr(module, "analyse_kappa", lambda system, policy, **kw: (
        calls.append(system.n) or real(system, policy, **kw)))
    return calls


def run_pair(monkeypatch, steps=3, batch=64, **kw):
    """The same training twice: as shipped, and with every κ estimated (the old behaviour)."""
    model, x, y = problem(n=batch)
    other = copy.deepcopy(model)
    calls = count_kappa_calls(monkeypatch)
    skipping = QNewton(model.named_parameters(), lr=0.5, rates=RATES, **kw, grouping="tensor")
    for _ in range(steps):
        skipping.step(closure_for(model, x, y))
    skipped_calls = list(calls)
    estimating = QNewton(other.named_parameters(), lr=0.5, rates=RATES, **kw, grouping="tensor")
    monkeypatch.setattr(estimating.scheduler, "analyse_if_needed",
                        lambda system, key=None: estimating.scheduler.analyse(system))
    for _ in range(steps):
        estimating.step(closure_for(other, x, y))
    return (skipping, model), (estimating, other), skipped_calls, calls[len(skipped_calls):]


def assert_same_decisions_and_updates(a, b):
    (opt_a, model_a), (opt_b, model_b) = a, b
    key = [(r.step, r.block, r.choice, r.classical_solver, r.solver, r.fallback)
           for r in opt_a.ledger.records]
    assert key == [(r.step, r.block, r.choice, r.classical_solver, r.solver, r.fallback)
                   for r in opt_b.ledger.records]
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)  # bit for bit


@pytest.mark.parametrize("batch", [32, 64])
def test_classical_policy_estimates_no_kappa_and_decides_and_solves_the_same(monkeypatch, batch):
    skipping, estimating, calls, calls_before = run_pair(monkeypatch, batch=batch,
                                                         policy="classical")
    assert calls == [] and len(calls_before) == 3 * 4  # the old behaviour: one per block solve
    assert_same_decisions_and_updates(skipping, estimating)
    records = skipping[0].ledger.records
    assert {r.classical_solver for r in records} >= {"cholesky", "woodbury"}
    for r in records:
        assert (r.kappa, r.kappa_log10, r.alpha, r.kappa_kind) == (None, None, None,
                                                                   "not-estimated")
        assert r.kappa_method == r.quantum_rejection == "policy-classical"
        assert r.predicted_quantum_seconds is None and r.queries is None
        assert "cg" not in r.predicted_classical  # κ-dependent: not predicted without κ
        json.dumps(r.to_dict(), allow_nan=False)  # valid JSON, nulls for what was not estimated
    assert skipping[0].ledger.measured["estimation"] < estimating[0].ledger.measured["estimation"]


def test_guaranteed_rejection_on_the_surface_code_profile(monkeypatch):
    skipping, estimating, calls, _ = run_pair(monkeypatch, hardware="surface-code")
    assert calls == []
    assert_same_decisions_and_updates(skipping, estimating)
    for r in skipping[0].ledger.records:
        assert r.choice == "classical" and r.quantum_rejection == "guaranteed-rejection"
        assert r.kappa_kind == "not-estimated" and r.kappa is None
        # the QLSA's cheapest case (κ = 1, α = 1) already loses
        assert r.predicted_quantum_seconds > r.predicted_classical_seconds
    for r in estimating[0].ledger.records:  # with κ estimated, quantum is dearer still
        assert r.predicted_quantum_seconds >= min(
            s.predicted_quantum_seconds for s in skipping[0].ledger.records
            if s.step == r.step and s.block == r.block)


def test_guaranteed_rejection_never_fires_on_the_paper_profile_with_attosecond_gates(
        monkeypatch):
    calls = count_kappa_calls(monkeypatch)
    model, x, y = problem()
    opt = QNewton(model.named_parameters(), hardware=get_profile("paper", gate_time_s=ATTOSECOND),
                  rates=RATES, grouping="tensor")
    for _ in range(2):
        opt.step(closure_for(model, x, y))
    assert len(calls) == 2 * 4
    assert all(r.quantum_rejection is None and r.kappa is not None for r in opt.ledger.records)
    sched = Scheduler(SchedulerConfig(hardware=get_profile("paper", gate_time_s=ATTOSECOND)),
                      rates=RATES)
    g = torch.Generator().manual_seed(0)
    for n, m in [(10, 4), (200, 32), (3000, 64)]:
        f = FactorBlock("f", "fisher", torch.randn(m, n, generator=g, dtype=torch.float64), 1 / m)
        assert sched.skip_reason(condition(f, ConditioningConfig())) == (None, None)
    h = torch.randn(300, 300, generator=g, dtype=torch.float64)
    dense = condition(DenseBlock("h", "hessian", h + h.T), ConditioningConfig())
    assert sched.skip_reason(dense) == (None, None)


def test_kappa_is_estimated_when_cg_could_win_the_classical_choice():
    slow_dense = MachineRates.user(dense_flops_per_s=1e3, gemm_flops_per_s=1e3,
                                   bandwidth_bytes_per_s=1e12)
    block = DenseBlock("h", "hessian", torch.eye(50, dtype=torch.float64) * 2.0)
    system = condition(block, ConditioningConfig())
    sched = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy="classical"),
                      rates=slow_dense)
    assert sched.skip_reason(system) == (None, None)
    analysis = sched.analyse_if_needed(system)
    assert analysis.kappa is not None and analysis.skipped is None
    assert sched.decide(system, analysis).classical_solver == "cg"


@pytest.mark.parametrize("policy", ["threshold", "quantum"])
def test_policies_that_need_kappa_always_get_it(policy):
    system = condition(DenseBlock("h", "hessian", torch.eye(20, dtype=torch.float64)),
                       ConditioningConfig())
    sched = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy=policy),
                      rates=RATES)
    assert sched.analyse_if_needed(system).kappa is not None


@pytest.mark.parametrize("profile", ["paper", "surface-code", "surface-code-optimistic",
                                     "trapped-ion"])
def test_the_quantum_floor_is_a_lower_bound_on_every_cost(profile):
    sched = Scheduler(SchedulerConfig(hardware=get_profile(profile)), rates=RATES)
    for n, d in [(16, 16), (500, 40), (4000, 4000)]:
        shape = SystemShape(n=n, nnz=n * d, d=d, kappa=1.0)
        for qlsa in QLSA_MODELS:
            floor = Scheduler(SchedulerConfig(hardware=get_profile(profile), qlsa=qlsa),
                              rates=RATES).quantum_floor(shape).total_seconds
            for kappa in (1.0, 3.0, 12.0, 1e3, 1e8):
                for alpha in (1.0, 2.5, 1e3):
                    cost = quantum_cost(n, d, kappa, sched.config.eps, nnz=n * d, alpha=alpha,
                                        qlsa=qlsa, profile=get_profile(profile))
                    # what the scheduler charges (matched accuracy on vector-readout profiles)
                    charged = Scheduler(SchedulerConfig(hardware=get_profile(profile), qlsa=qlsa),
                                        rates=RATES).quantum_cost(
                        SystemShape(n=n, nnz=n * d, d=d, kappa=kappa), kappa, alpha)
                    assert charged.total_seconds >= floor * (1 - 1e-12)
                    if profile == "paper":  # no tomography to match: the plain cost
                        assert cost.total_seconds >= floor * (1 - 1e-12)


def test_kappa_is_estimated_only_when_cg_could_save_more_than_the_estimate_costs():
    """CG beats Cholesky at κ = 1 on this system by Δ seconds (modeled): κ is estimated when
    the estimate is modeled to cost less than Δ and skipped when it would cost more."""
    from qnewton.solvers import predict_classical, shape_of
    from qnewton.solvers.cg import cg_iterations

    g = torch.Generator().manual_seed(0)
    factor = torch.randn(8, 1500, generator=g, dtype=torch.float64)
    system = condition(FactorBlock("b", "fisher", factor, scale=1 / 8),
                       ConditioningConfig(reg=1e-2))
    scheduler = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"),
                                          policy="classical",
                                          classical_solvers=("cholesky", "cg")), rates=RATES)
    shape = shape_of(system, 1.0)
    predicted = predict_classical(shape, RATES, scheduler.config.cg_rtol)
    saving = predicted["cholesky"] - predicted["cg"]
    assert saving > 0
    # the policy's 20 Lanczos steps, each priced as one CG iteration
    cost = scheduler.kappa_seconds(shape)
    iterations = cg_iterations(1.0, scheduler.config.cg_rtol)
    assert cost == pytest.approx(20 * (predicted["cg"] - RATES.call_overhead_s) / iterations)
    expected = None if saving > cost else "policy-classical"
    assert scheduler.skip_reason(system)[0] == expected
    cheap = Scheduler(scheduler.config, rates=RATES)
    cheap.kappa_seconds = lambda shape: 0.0
    assert cheap.skip_reason(system)[0] is None
    dear = Scheduler(scheduler.config, rates=RATES)
    dear.kappa_seconds = lambda shape: 2 * saving
    assert dear.skip_reason(system)[0] == "policy-classical"


def test_training_decisions_under_the_classical_policy_price_no_qlsa():
    """Where κ is estimated under ``policy="classical"`` the decision is classical whatever the
    QLSA would cost, so training does not cost it (the record says why); ``qnewton estimate``
    (``decide_shape``) still prices it."""
    g = torch.Generator().manual_seed(1)
    factor = torch.randn(8, 1500, generator=g, dtype=torch.float64)
    system = condition(FactorBlock("b", "fisher", factor, scale=1 / 8),
                       ConditioningConfig(reg=1e-2))
    config = SchedulerConfig(hardware=get_profile("surface-code"), policy="classical",
                             classical_solvers=("cholesky", "cg"))
    scheduler = Scheduler(config, rates=RATES)
    scheduler.kappa_seconds = lambda shape: 0.0  # κ is estimated: CG may win
    analysis = scheduler.analyse_if_needed(system)
    assert analysis.skipped is None
    decision = scheduler.decide(system, analysis)
    assert decision.choice == "classical" and decision.quantum is None
    assert decision.quantum_rejection == "policy-classical"
    priced = scheduler.decide_shape(SystemShape(n=300, nnz=300 * 300, d=300, kappa=2.0), 1.0)
    assert priced.quantum is not None and priced.quantum.total_seconds > 0
    assert priced.classical_solver == min(priced.predicted_classical,
                                          key=priced.predicted_classical.get)


def test_trace_bound_on_kappa_dominates_the_exact_kappa():
    from qnewton.scheduling.scheduler import trace_kappa_bound

    g = torch.Generator().manual_seed(1)
    factor = torch.randn(12, 40, generator=g, dtype=torch.float64)
    for reg in (1e-3, 1e-1, 10.0):
        system = condition(FactorBlock("b", "fisher", factor, scale=1 / 12),
                           ConditioningConfig(reg=reg))
        eig = torch.linalg.eigvalsh(system.to_dense())
        assert trace_kappa_bound(system) >= float(eig[-1] / eig[0]) * (1 - 1e-12)
    # an explicit (pruned) matrix is not H + shift·I: no bound
    pruned = condition(FactorBlock("b", "fisher", factor, scale=1 / 12),
                       ConditioningConfig(reg=1e-1, prune_ratio=0.5))
    assert trace_kappa_bound(pruned) is None


@pytest.mark.parametrize("policy", ["classical", "cost"])
def test_a_kappa_bound_that_settles_the_decision_spares_the_estimate(policy):
    """CG wins at κ ≤ 1 + tr(H)/shift (slow dense rates, a large shift): the decision is CG
    without a Lanczos run, as it is with the estimated κ; the QLSA on the surface code
    costs more at κ = 1 than CG at the bound."""
    slow_dense = MachineRates.user(dense_flops_per_s=1e6, gemm_flops_per_s=1e6,
                                   bandwidth_bytes_per_s=1e12)
    g = torch.Generator().manual_seed(0)
    factor = torch.randn(300, 400, generator=g, dtype=torch.float64)
    system = condition(FactorBlock("b", "fisher", factor, scale=1 / 300),
                       ConditioningConfig(reg=1.0))
    sched = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy=policy),
                      rates=slow_dense)
    reason, floor = sched.skip_reason(system)
    assert reason == "kappa-bounded" and (floor is None) == (policy == "classical")
    decision = sched.decide(system, sched.analyse_if_needed(system))
    estimated = sched.decide(system, sched.analyse(system))
    assert decision.choice == estimated.choice == "classical"
    assert decision.classical_solver == estimated.classical_solver == "cg"
    # with fast dense rates a direct solver is ahead at the bound: the bound settles nothing
    fast = Scheduler(sched.config, rates=RATES)
    assert fast.skip_reason(system)[0] != "kappa-bounded"
    assert fast.decide(system, fast.analyse_if_needed(system)).classical_solver != "cg"


def test_an_estimated_kappa_is_not_priced_when_the_quantum_floor_already_loses(monkeypatch):
    """CG could win (κ is estimated), and the QLSA's floor on the surface code loses to the best
    classical solver: the decision is made without pricing the QLSA at κ, records the floor
    (a lower bound) as a guaranteed rejection, and chooses what the priced decision chooses."""
    slow_dense = MachineRates.user(dense_flops_per_s=1e3, gemm_flops_per_s=1e3,
                                   bandwidth_bytes_per_s=1e12)
    system = condition(DenseBlock("h", "hessian", torch.eye(50, dtype=torch.float64) * 2.0),
                       ConditioningConfig())
    sched = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy="cost"),
                      rates=slow_dense)
    analysis = sched.analyse_if_needed(system)
    assert analysis.kappa is not None  # estimated: CG could win
    priced = sched.decide_shape(
        SystemShape(n=50, nnz=2500, d=50, kappa=max(1.0, analysis.kappa.value)),
        analysis.alpha, price_quantum=True)
    monkeypatch.setattr(sched, "cheapest_quantum_cost", lambda *a, **k: pytest.fail("priced"))
    decision = sched.decide(system, analysis)
    assert (decision.choice, decision.classical_solver) == (priced.choice,
                                                            priced.classical_solver)
    assert decision.choice == "classical" and decision.quantum_rejection == "guaranteed-rejection"
    assert decision.quantum.total_seconds <= priced.quantum.total_seconds
    assert decision.quantum.total_seconds > decision.predicted_classical_seconds
