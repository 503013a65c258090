import pytest
import torch

from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import FactorBlock
from qnewton.quantum import get_profile
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates, relative_error

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def fisher_system(n=40, m=10, reg=1e-1, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(m, n, generator=g, dtype=torch.float64)
    block = FactorBlock("fc.weight", "fisher", f, scale=1.0 / m)
    return condition(block, ConditioningConfig(reg_scheme="max-entry", reg=reg))


def scheduler(policy="cost", hardware="paper", **kw):
    return Scheduler(SchedulerConfig(hardware=get_profile(hardware, **kw.pop("profile", {})),
                                     policy=policy, **kw), rates=RATES)


def solve(sched, system, step=0):
    b = torch.randn(system.n, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    analysis = sched.analyse(system)
    decision = sched.decide(system, analysis)
    result = sched.run(system, b, decision)
    record = sched.record(step=step, block="fc.weight", system=system, analysis=analysis,
                          decision=decision, result=result)
    return b, decision, result, record


def test_analysis_gives_a_guaranteed_upper_bound_for_regularized_fisher():
    system = fisher_system(n=200)
    analysis = scheduler(gram_below=0, share_gram=False).analyse(system)  # the Lanczos path
    exact = float(torch.linalg.cond(system.to_dense()))
    assert analysis.kappa.kind == "upper"
    assert analysis.kappa.value >= exact * (1 - 1e-9)
    assert analysis.norm >= float(torch.linalg.matrix_norm(system.to_dense(), 2)) * (1 - 1e-9)
    assert analysis.alpha >= 1


def test_small_systems_get_the_exact_kappa():
    system = fisher_system(n=40)
    analysis = scheduler().analyse(system)
    assert analysis.kappa.kind == "exact"
    assert analysis.kappa.value == pytest.approx(float(torch.linalg.cond(system.to_dense())),
                                                 rel=1e-9)
    lanczos_only = scheduler(exact_below=0, gram_below=0, share_gram=False).analyse(system)
    assert lanczos_only.kappa.kind == "upper"


def test_low_rank_fisher_gets_the_exact_kappa_from_its_gram_matrix():
    system = fisher_system(n=300, m=12)
    analysis = scheduler().analyse(system)
    dense = system.to_dense()
    assert (analysis.kappa.kind, analysis.kappa.method) == ("exact", "gram-eigvalsh")
    assert analysis.kappa.value == pytest.approx(float(torch.linalg.cond(dense)), rel=1e-8)
    assert analysis.norm == pytest.approx(float(torch.linalg.matrix_norm(dense, 2)), rel=1e-10)
    gram = system.gram()
    b, decision, result, _ = solve(scheduler(policy="classical"), system)
    assert decision.classical_solver == "woodbury"
    assert system.gram() is gram  # the solve reused the Gram matrix of the analysis
    assert relative_error(result.x, torch.linalg.solve(dense, b)) < 1e-8
    wide = fisher_system(n=40, m=12)  # M > N/4: the Gram path does not pay off
    assert scheduler(exact_below=0).analyse(wide).kappa.method != "gram-eigvalsh"


def test_a_gram_the_woodbury_solve_forms_anyway_gives_kappa_at_any_rank():
    # M = 40 > gram_below = 8 and M ≤ N/4: Woodbury is the predicted solver, so the analysis
    # takes κ from the Gram the solve reuses instead of Lanczos on N-vectors.
    system = fisher_system(n=400, m=40, reg=1e-2)
    sched = scheduler(policy="classical", gram_below=8, exact_below=0)
    assert sched._woodbury_expected(system)
    analysis = sched.analyse(system)
    dense = system.to_dense()
    assert (analysis.kappa.kind, analysis.kappa.method) == ("exact", "gram-eigvalsh")
    assert analysis.kappa.value == pytest.approx(float(torch.linalg.cond(dense)), rel=1e-8)
    gram = system.gram()
    decision = sched.decide(system, analysis)
    assert decision.classical_solver == "woodbury"
    sched.run(system, torch.ones(system.n, dtype=torch.float64), decision)
    assert system.gram() is gram
    # Not shared (option off, or Woodbury not allowed): Lanczos on N-vectors, no Gram formed.
    for other in (scheduler(policy="classical", gram_below=8, exact_below=0, share_gram=False),
                  scheduler(policy="classical", gram_below=8, exact_below=0,
                            classical_solvers=("cholesky", "cg"))):
        fresh = fisher_system(n=400, m=40, reg=1e-2)
        assert other.analyse(fresh).kappa.method != "gram-eigvalsh"
        assert not fresh.has_gram


def test_a_large_shared_gram_gives_a_lanczos_upper_bound_on_kappa():
    system = fisher_system(n=400, m=60, reg=1e-2)
    sched = scheduler(policy="classical", gram_below=8, exact_below=0, gram_eig_below=16)
    analysis = sched.analyse(system)
    exact = float(torch.linalg.cond(system.to_dense()))
    assert (analysis.kappa.kind, analysis.kappa.method) == ("upper", "gram-lanczos")
    assert exact * (1 - 1e-9) <= analysis.kappa.value <= 2 * exact
    assert analysis.norm >= float(torch.linalg.matrix_norm(system.to_dense(), 2)) * (1 - 1e-9)


def test_cost_policy_picks_the_cheaper_prediction():
    system = fisher_system()
    fast = scheduler(profile={"gate_time_s": 1e-18})  # attosecond gates: quantum is cheap
    _, decision, result, record = solve(fast, system)
    assert decision.quantum.total_seconds < decision.predicted_classical_seconds
    assert decision.choice == "quantum" and result.solver == "qlsa-emulated"
    assert record.modeled_quantum_seconds == decision.quantum.total_seconds
    assert record.measured_classical_seconds is None
    assert record.emulation_seconds == result.seconds

    realistic = scheduler(hardware="surface-code")
    _, decision, result, record = solve(realistic, system)
    assert decision.quantum.total_seconds > decision.predicted_classical_seconds
    assert decision.choice == "classical" and result.solver == decision.classical_solver
    assert record.modeled_quantum_seconds is None
    assert record.measured_classical_seconds == result.seconds
    assert record.emulation_seconds == 0.0


def test_threshold_policy_follows_the_kappa_rule():
    system = fisher_system(reg=1e-1)
    kappa = scheduler().analyse(system).kappa.value
    below = scheduler(policy="threshold", kappa_threshold=kappa * 10)
    above = scheduler(policy="threshold", kappa_threshold=max(1.0, kappa / 10))
    assert solve(below, system)[1].choice == "quantum"
    assert solve(above, system)[1].choice == "classical"


@pytest.mark.parametrize("policy", ["classical", "quantum"])
def test_forced_policies_and_solution_accuracy(policy):
    system = fisher_system()
    b, decision, result, record = solve(scheduler(policy=policy), system)
    assert decision.choice == policy
    reference = torch.linalg.solve(system.to_dense(), b)
    tolerance = 1e-8 if policy == "classical" else 1e-2 * (1 + 1e-9)
    assert relative_error(result.x, reference) <= tolerance
    assert record.choice == policy and record.policy == policy
    assert record.n == system.n and record.d == system.d


def test_woodbury_is_predicted_and_chosen_for_low_rank_fisher():
    system = fisher_system(n=400, m=8)
    _, decision, result, _ = solve(scheduler(policy="classical"), system)
    assert "woodbury" in decision.predicted_classical
    assert decision.classical_solver == "woodbury"
    assert decision.predicted_classical["woodbury"] < decision.predicted_classical["cholesky"]


def test_invalid_configuration_is_rejected():
    profile = get_profile("paper")
    with pytest.raises(ValueError, match="policy must be one of"):
        SchedulerConfig(hardware=profile, policy="fastest")
    with pytest.raises(ValueError, match="eps must be a finite number > 0 and < 1"):
        SchedulerConfig(hardware=profile, eps=0)
    with pytest.raises(ValueError, match="classical_solvers must be one of .*; got 'magic'"):
        SchedulerConfig(hardware=profile, classical_solvers=("magic",))
    with pytest.raises(ValueError, match="classical_solvers must name at least one"):
        SchedulerConfig(hardware=profile, classical_solvers=())


def test_rates_are_calibrated_lazily_at_the_first_decision(monkeypatch):
    calls = []

    def fake_calibrate():
        calls.append(1)
        return RATES

    monkeypatch.setattr("qnewton.calibration.calibrate", fake_calibrate)
    sched = Scheduler(SchedulerConfig(hardware=get_profile("paper")))
    system = fisher_system()
    analysis = sched.analyse(system)
    assert calls == []  # neither construction nor analysis needs the machine's rates
    sched.decide(system, analysis)
    sched.decide(system, analysis)
    assert calls == [1] and sched.rates is RATES


def hessian_system(n=150, kappa=1e3, seed=0):
    from qnewton.curvature import DenseBlock

    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    h = (q * torch.logspace(0, 3, n, dtype=torch.float64)) @ q.T
    h = 0.5 * (h + h.T)
    return condition(DenseBlock("h", "hessian", h), ConditioningConfig(reg=1e-3))


def test_a_kappa_lower_bound_may_reject_quantum_but_never_choose_it():
    system = hessian_system()  # exact Hessian, N > exact_below: auto gives a Lanczos lower bound
    exact = float(torch.linalg.cond(system.to_dense()))
    lower = scheduler(exact_below=0, lanczos_steps=3).analyse(system).kappa
    assert lower.kind == "lower" and lower.value < exact / 2
    # The paper's rule with a threshold the lower bound passes but the true κ does not:
    sched = scheduler(policy="threshold", kappa_threshold=exact / 2, exact_below=0,
                      lanczos_steps=3)
    analysis = sched.analyse(system)
    decision = sched.decide(system, analysis)
    assert decision.choice == "classical"
    assert (analysis.kappa.kind, analysis.kappa.method) == ("upper", "norm/min-eig-bound")
    assert analysis.kappa.value >= exact * (1 - 1e-9)  # a true upper bound
    # Once the upper bound itself is below the threshold, quantum may be chosen.
    loose = scheduler(policy="threshold", kappa_threshold=analysis.kappa.value * 2,
                      exact_below=0, lanczos_steps=3)
    assert loose.decide(system, loose.analyse(system)).choice == "quantum"
    # A forced policy is not second-guessed.
    forced = scheduler(policy="quantum", exact_below=0, lanczos_steps=3)
    forced_analysis = forced.analyse(system)
    assert forced.decide(system, forced_analysis).choice == "quantum"
    assert forced_analysis.kappa.kind == "lower"


def test_conditioning_records_a_true_lower_bound_on_the_smallest_eigenvalue():
    for system in (hessian_system(), fisher_system()):
        smallest = float(torch.linalg.eigvalsh(system.to_dense())[0])
        assert 0 < system.min_eig_lower <= smallest * (1 + 1e-9)


def test_drop_gram_forgets_the_gram_kept_with_the_block():
    # Benchmarks time a Woodbury solve that must form its Gram; the block keeps one once formed.
    system = fisher_system(n=400, m=40, reg=1e-2)
    gram = system.gram(cache=False).clone()
    assert system.has_gram and system.block.has_gram  # kept with the block
    system.drop_gram()
    assert not system.has_gram and not system.block.has_gram
    torch.testing.assert_close(system.gram(), gram)


def test_no_solver_errors_say_whether_the_kind_or_the_budget_is_the_reason():
    from qnewton.scheduling.scheduler import NoSolverError
    from qnewton.system import SystemShape

    factor_shape = SystemShape(n=300, nnz=300 * 300, d=300, kappa=10.0, factor_rows=8)
    only_kfac = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy="classical",
                                          classical_solvers=("kronecker",)), rates=RATES)
    with pytest.raises(NoSolverError, match=r"kronecker do not apply to it") as caught:
        only_kfac.decide_shape(factor_shape, 1.0)
    assert "bytes" not in str(caught.value) and "'woodbury'" in str(caught.value)
    tight = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"), policy="classical",
                                      classical_solvers=("cholesky",), max_dense_bytes=1000),
                      rates=RATES)
    with pytest.raises(NoSolverError, match=r"cholesky would need 720000 bytes, over "
                                            r"max_dense_bytes=1000.*raise the budget"):
        tight.decide_shape(factor_shape, 1.0)
