"""Finite checks from one scalar per tensor (qnewton.curvature.finite): they flag exactly the
tensors with a NaN or ±∞ entry (and those whose sum overflows), and the optimizer still sends
non-finite curvature to the gradient fallback and skips non-finite gradients."""

from __future__ import annotations

import math

import pytest
import torch
from brute_force import closure_for
from test_optimizer import RATES, make_problem

import qnewton.curvature.schedule as schedule_module
from qnewton import QNewton
from qnewton.curvature import DenseBlock, FactorBlock, finite_each, finite_sum
from qnewton.system import LinearSystem

BAD = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", BAD)
def test_one_bad_entry_anywhere_is_flagged(bad, dtype):
    t = torch.randn(7, 5, dtype=dtype)
    assert finite_sum(t)
    for idx in [(0, 0), (3, 2), (6, 4)]:
        u = t.clone()
        u[idx] = bad
        assert not finite_sum(u)
        assert finite_each([t, u, t]) == [True, False, True]


def test_opposite_infinities_and_overflow_are_flagged():
    t = torch.zeros(4, dtype=torch.float64)
    t[0], t[1] = math.inf, -math.inf  # +∞ + −∞ = NaN
    assert not finite_sum(t)
    big = torch.full((3,), 3e38, dtype=torch.float32)  # finite entries, the sum overflows
    assert not finite_sum(big)
    assert finite_each([]) == []


@pytest.mark.parametrize("bad", BAD)
def test_blocks_and_systems_report_non_finite_entries(bad):
    f = torch.randn(6, 4, dtype=torch.float64)
    assert FactorBlock("w", "fisher", f, 1 / 6).all_finite()
    f[2, 1] = bad
    block = FactorBlock("w", "fisher", f, 1 / 6)
    assert not block.all_finite()
    assert not LinearSystem(block, shift=0.1, reg=0.1).all_finite()
    dense = LinearSystem(block, shift=0.0, reg=0.0, dense=torch.eye(4, dtype=torch.float64))
    assert dense.all_finite()
    dense.dense[0, 3] = bad
    assert not dense.all_finite()
    h = torch.eye(4, dtype=torch.float64)
    assert DenseBlock("w", "hessian", h).all_finite()
    h[1, 3] = bad
    assert not DenseBlock("w", "hessian", h).all_finite()
    huge = torch.full((3, 2), 1e160, dtype=torch.float64)  # the squares overflow float64
    assert not FactorBlock("w", "fisher", huge).all_finite()
    # a float32 factor's diagonal is summed in float64: large float32 entries do not overflow
    assert FactorBlock("w", "fisher", torch.full((3, 2), 1e20, dtype=torch.float32)).all_finite()


def test_factor_check_primes_the_cached_diagonal():
    block = FactorBlock("w", "fisher", torch.randn(5, 3, dtype=torch.float64), 0.2)
    assert block._diagonal is None
    assert block.all_finite()
    assert block._diagonal is not None
    torch.testing.assert_close(block.diagonal(), block.to_dense().diagonal())


def _spoil(monkeypatch, what):
    real = schedule_module.compute_curvature

    def spoiled(*args, **kwargs):
        res = real(*args, **kwargs)
        if what == "curvature":
            block = res.blocks[0]
            if block.representation == "kronecker-rows":  # a number the rows are made from
                block.structured.pieces[0].g[1, 0, 0] = math.nan
            else:
                block.factor[1, 0] = math.nan
        else:
            res.grads[1][0] = math.inf
        return res

    monkeypatch.setattr(schedule_module, "compute_curvature", spoiled)


def test_non_finite_curvature_takes_the_gradient_fallback(monkeypatch):
    model, x, y = make_problem()
    opt = QNewton(model.named_parameters(), rates=RATES, clip=None, lr=0.5, grouping="tensor")
    _spoil(monkeypatch, "curvature")
    w0 = model[0].weight.detach().clone()
    closure = closure_for(model, x, y)
    losses = closure()
    (g,) = torch.autograd.grad(losses.mean(), [model[0].weight])
    opt.step(closure)
    events = [e for e in opt.ledger.events if e["kind"] != "settings"]
    assert [e["kind"] for e in events] == ["non-finite-curvature"]
    assert events[0]["block"] == "0.weight"
    # the plain gradient step Δ = −g (no system to scale it), applied with lr
    torch.testing.assert_close(model[0].weight.detach(), w0 - 0.5 * g, rtol=1e-6, atol=1e-7)
    assert opt.ledger.updates["0.weight"]["fallback"] == 1
    assert opt.ledger.fallback_reasons["non-finite-curvature"] == 1


def test_non_finite_gradient_skips_the_update(monkeypatch):
    model, x, y = make_problem()
    before = [p.detach().clone() for p in model.parameters()]
    opt = QNewton(model.named_parameters(), rates=RATES, grouping="tensor")
    _spoil(monkeypatch, "gradient")
    opt.step(closure_for(model, x, y))
    (event,) = [e for e in opt.ledger.events if e["kind"] != "settings"]
    assert event["kind"] == "non-finite-gradient" and event["blocks"] == ["0.bias"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
