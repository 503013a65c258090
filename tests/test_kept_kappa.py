"""κ kept between a block's steps (qnewton.scheduling.kept_kappa, docs/method.md §4.8): the carry
rule against exact eigenvalues, when it is re-estimated, that it never chooses the QLSA, and that
a resumed run carries the same κ."""

import copy

import pytest
import torch
from test_kappa_skipping import RATES, count_kappa_calls
from torch import nn

from qnewton import QNewton
from qnewton.conditioning import ConditioningConfig, condition
from qnewton.curvature import FactorBlock
from qnewton.quantum import get_profile
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.scheduling.kept_kappa import KAPPA_EVERY

F64 = torch.float64


def system(scale=1.0, reg=1e-2, m=6, n=20):
    factor = torch.randn(m, n, generator=torch.Generator().manual_seed(0), dtype=F64)
    return condition(FactorBlock("w", "fisher", factor * scale ** 0.5, scale=1.0 / m),
                     ConditioningConfig(reg=reg))


def exact_kappa(sys_):
    eig = torch.linalg.eigvalsh(sys_.to_dense())
    return float(eig[-1] / eig[0])


def threshold_scheduler(threshold):
    return Scheduler(SchedulerConfig(hardware=get_profile("paper"), policy="threshold",
                                     kappa_threshold=threshold), rates=RATES)


def test_a_kept_kappa_follows_a_rescaled_curvature_and_a_new_shift_exactly():
    """M < N: λ_min(C) = 0, so carrying κ to C' = 1.7·C with another shift is exact."""
    sched = threshold_scheduler(1.0)  # κ always needed, choice always classical
    first = sched.analyse_if_needed(system(), "w")
    assert not first.kept and first.kappa.value == pytest.approx(exact_kappa(system()), rel=1e-9)
    later = system(scale=1.7, reg=4e-2)
    carried = sched.analyse_if_needed(later, "w")
    assert carried.kept and carried.kappa.kind == "estimate" and "kept 1" in carried.kappa.method
    assert carried.kappa.value == pytest.approx(exact_kappa(later), rel=1e-9)
    assert carried.norm == pytest.approx(float(torch.linalg.eigvalsh(later.to_dense())[-1]),
                                         rel=1e-9)
    assert sched.decide(later, carried).choice == "classical"


def test_kappa_is_estimated_afresh_every_kappa_every_systems_and_when_the_scale_jumps(
        monkeypatch):
    calls = count_kappa_calls(monkeypatch)
    sched = threshold_scheduler(1.0)
    kept = [sched.analyse_if_needed(system(), "w").kept for _ in range(KAPPA_EVERY + 1)]
    assert kept == [False] + [True] * (KAPPA_EVERY - 1) + [False]
    assert len(calls) == 2
    assert not sched.analyse_if_needed(system(scale=2.5), "w").kept  # trace ×2.5: afresh
    assert sched.analyse_if_needed(system(scale=2.5), "other").kept is False  # per block
    assert len(calls) == 4


def test_a_kept_kappa_never_chooses_the_qlsa():
    sched = threshold_scheduler(1e300)  # the threshold rule routes every κ to the QLSA
    sys_ = system()
    sched.analyse_if_needed(sys_, "w")
    analysis = sched.analyse_if_needed(sys_, "w")
    assert analysis.kept
    assert sched.decide(sys_, analysis).choice == "quantum"
    assert not analysis.kept and analysis.kappa.kind in ("exact", "upper")  # estimated afresh


def test_a_resumed_run_carries_the_same_kappa_and_steps_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 20, generator=g, dtype=F64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 10), nn.Tanh(), nn.Linear(10, 3)).double()
    kw = dict(rates=RATES, grouping="tensor", policy="threshold", kappa_threshold=1.0)

    def closure(m):
        return lambda: nn.functional.cross_entropy(m(x), y, reduction="none")

    def kappa_methods(opt, first_step):
        return [(r.step, r.block, r.kappa_method) for r in opt.ledger.records
                if r.step >= first_step]

    straight_model = copy.deepcopy(model)
    straight = QNewton(straight_model.named_parameters(), **kw)
    for _ in range(6):
        straight.step(closure(straight_model))
    first = QNewton(model.named_parameters(), **kw)
    for _ in range(2):
        first.step(closure(model))
    state = copy.deepcopy(first.state_dict())
    resumed_model = copy.deepcopy(model)
    resumed = QNewton(resumed_model.named_parameters(), **kw)
    resumed.load_state_dict(state)
    for _ in range(4):
        resumed.step(closure(resumed_model))
    assert any("kept 2" in m for *_, m in kappa_methods(straight, 2))  # carried over the cut
    assert kappa_methods(resumed, 2) == kappa_methods(straight, 2)
    for p, q in zip(resumed_model.parameters(), straight_model.parameters(), strict=True):
        assert torch.equal(p, q)
