"""The engine's check runs once per graph structure and again every RECHECK_EVERY uses
(:mod:`qnewton.curvature.per_sample.check_memo`); the rows it lets through stay exact."""

from __future__ import annotations

import torch
from brute_force import brute_force_curvature, closure_for
from torch import nn

from qnewton import QNewton
from qnewton.curvature.per_sample import check_memo, engine
from qnewton.solvers import MachineRates

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


def counted_checks(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = engine._checked

    def counting(root, seeds, s, done, *args, **kwargs):
        calls.append(s)
        return real(root, seeds, s, done, *args, **kwargs)

    monkeypatch.setattr(engine, "_checked", counting)
    return calls


def test_the_check_runs_once_per_structure_and_again_when_it_changes(monkeypatch):
    calls = counted_checks(monkeypatch)
    monkeypatch.setattr(check_memo, "RECHECK_EVERY", 3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    opt = QNewton(model.named_parameters(), rates=RATES, grouping="tensor", damping=1e-3)
    for _ in range(4):  # checked at step 1, remembered for 3 uses, checked again at step 5
        opt.step(closure_for(model, x, y))
    assert calls == [12]
    opt.step(closure_for(model, x, y))
    assert calls == [12, 12]
    opt.step(closure_for(model, x[:8], y[:8]))  # another batch size: another structure
    assert calls == [12, 12, 8]
    # the rows behind a remembered verdict are still the exact Fisher
    from qnewton.curvature import CurvatureConfig, blocks_from_module, compute_curvature

    blocks = blocks_from_module(model, "tensor")
    for _ in range(2):
        res = compute_curvature(nn.functional.cross_entropy(model(x), y, reduction="none"),
                                blocks, CurvatureConfig(kind="fisher"))
    for block, cb in zip(blocks, res.blocks, strict=True):
        torch.testing.assert_close(cb.to_dense(),
                                   brute_force_curvature("fisher", model, x, y, block.params),
                                   rtol=1e-10, atol=1e-12)
