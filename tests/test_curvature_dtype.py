"""The optimizer's curvature dtype: float64 storage by default (a float32 model's steps as
before), the model's dtype on request, with the systems solved in float64 either way."""

from __future__ import annotations

import copy

import torch
from brute_force import closure_for
from test_optimizer import RATES, make_problem

from qnewton import QNewton


def test_default_stores_float64_and_model_dtype_stays_close_to_it():
    model, x, y = make_problem()  # a float32 model
    twin = copy.deepcopy(model)
    ref = QNewton(model.parameters(), lr=0.5, rates=RATES, curvature="fisher")
    narrow = QNewton(twin.parameters(), lr=0.5, rates=RATES, curvature="fisher",
                     curvature_dtype=None)
    assert ref.curvature_config.dtype == torch.float64
    assert narrow.curvature_config.dtype is None
    seen = []
    real = narrow.scheduler.run

    def spy(system, b, decision, **kw):
        seen.append((system.block.factor.dtype, system.dtype, b.dtype))
        return real(system, b, decision, **kw)

    narrow.scheduler.run = spy
    for _ in range(3):
        ref.step(closure_for(model, x, y))
        narrow.step(closure_for(twin, x, y))
    assert seen and set(seen) == {(torch.float32, torch.float64, torch.float64)}
    assert narrow.ledger.fallbacks == 0
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)  # float32 rounding of rows
