"""Tests of the benchmark suite: helpers, a smoke run of every case, and the curvature fast path
the suite relies on (per-sample gradients of linear layers). No timed assertions."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from qnewton import bench
from qnewton import curvature as C


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("QNEWTON_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------- helpers


def test_summarize():
    s = bench.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}
    assert bench.summarize([5])["median"] == 5.0
    with pytest.raises(ValueError):
        bench.summarize([])


def test_time_repeats_counts_calls():
    calls = []
    times, last = bench.time_repeats(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert len(calls) == 5 and last == 5
    with pytest.raises(ValueError):
        bench.time_repeats(lambda: None, repeats=0)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5])
def test_fit_exponent_recovers_power_law(p):
    xs = [100, 200, 500, 1000, 5000]
    ys = [2.5e-7 * x**p for x in xs]
    got, c = bench.fit_exponent(xs, ys)
    assert got == pytest.approx(p, abs=1e-10)
    assert c == pytest.approx(2.5e-7, rel=1e-8)


def test_fit_exponent_with_noise_is_close():
    gen = torch.Generator().manual_seed(0)
    xs = [2.0**k for k in range(4, 14)]
    ys = [x**3 * math.exp(0.05 * float(torch.randn(1, generator=gen))) for x in xs]
    assert bench.fit_exponent(xs, ys)[0] == pytest.approx(3.0, abs=0.05)


def test_fit_exponent_rejects_bad_input():
    with pytest.raises(ValueError):
        bench.fit_exponent([1.0], [1.0])
    with pytest.raises(ValueError):
        bench.fit_exponent([2.0, 2.0], [1.0, 3.0])


def test_regret_hand_made_example():
    # Three solves. Oracle: 1 + 2 + 1 = 4. Policy picks right, wrong (3 instead of 2), right.
    measured = [{"cholesky": 1.0, "woodbury": 1.5}, {"cholesky": 3.0, "woodbury": 2.0},
                {"cholesky": 5.0}]
    choices = [("classical", "cholesky", 9.0), ("classical", "cholesky", 4.0),
               ("quantum", "cholesky", 1.0)]
    pol, orc = [], []
    for m, (choice, solver, q) in zip(measured, choices, strict=True):
        a, b = bench.policy_and_oracle(choice, solver, m, q)
        pol.append(a)
        orc.append(b)
    assert pol == [1.0, 3.0, 1.0]
    assert orc == [1.0, 2.0, 1.0]
    assert bench.regret(pol, orc) == pytest.approx(5.0 / 4.0 - 1.0)
    assert bench.regret(orc, orc) == 0.0
    with pytest.raises(ValueError):
        bench.regret([1.0], [0.0])
    with pytest.raises(ValueError):
        bench.regret([], [])


def test_policy_choosing_quantum_when_classical_is_cheaper_pays_quantum():
    chosen, oracle = bench.policy_and_oracle("quantum", "cholesky", {"cholesky": 0.5}, 2.0)
    assert (chosen, oracle) == (2.0, 0.5)


def test_release_direction_matches_dense_solve():
    gen = torch.Generator().manual_seed(1)
    j = torch.randn(40, 25, generator=gen, dtype=torch.float64)
    d, phases = bench.release_block_direction(j, 1e-3)
    f = j.T @ j / 40
    f.diagonal().add_(1e-3 * float(f.abs().max()))
    ref = torch.linalg.solve(f, j.mean(0))
    assert torch.allclose(d, ref, rtol=1e-9, atol=1e-12)
    assert set(phases) == {"form", "inverse", "multiply"}


# ------------------------------------------------------------------------------------- smoke


def test_smoke_suite_schema(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = bench.main(["--smoke", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data) >= {"machine", "quick", "cases"}
    assert data["machine"]["threads"] >= 1 and "calibrated_rates" in data["machine"]
    names = [c["name"] for c in data["cases"]]
    expected = list(bench.CASES)
    expected.insert(expected.index("scheduler-quality") + 1, "scheduler-overhead")
    assert names == expected
    for case in data["cases"]:
        for key in bench.REQUIRED_KEYS:
            assert key in case, (case["name"], key)
        assert isinstance(case["met"], bool)
        assert isinstance(case["measured"], int | float) and math.isfinite(case["measured"])
        assert isinstance(case["timings"], dict) and case["timings"]
        assert "error" not in case
    md = (tmp_path / "b.md").read_text()
    assert "| name | measured | unit | baseline | target | met |" in md
    assert "newton-step-vs-release" in capsys.readouterr().out


def test_smoke_case_selection(tmp_path):
    out = tmp_path / "c.json"
    md = tmp_path / "table.md"
    rc = bench.main(["--smoke", "--cases", "dense-solve-efficiency", "--out", str(out),
                     "--markdown", str(md)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["cases"]] == ["dense-solve-efficiency"]
    assert md.exists()


def test_unknown_case_is_an_error(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--cases", "nope", "--out", str(tmp_path / "x.json")])


def test_newton_step_directions_agree_in_smoke():
    case = bench.case_newton_step(bench.SETTINGS["smoke"], bench.calibrate(), 0)
    assert case["max_relative_difference"] <= 1e-6
    assert {b["our_solver"] for b in case["blocks"]} <= {"woodbury", "cholesky", "cg"}


# ------------------------------------------------------------- curvature fast path (per-sample)


class _Net(nn.Module):
    """Linear layers, a tied weight, an ``x @ W`` parameter and an optional BatchNorm."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.head = nn.Parameter(torch.randn(6, 3))
        self.nobias = nn.Linear(6, 6, bias=False)
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x, use_bn=False):
        h = torch.tanh(self.lin(x))
        h = torch.tanh(self.lin(h))  # tied: the same weight used twice
        h = torch.tanh(self.nobias(h))
        if use_bn:
            h = self.bn(h)  # couples the samples
        return h @ self.head


def _factors(model, x, y, use_bn, fast):
    blocks = C.blocks_from_module(model)
    losses = nn.functional.cross_entropy(model(x, use_bn), y, reduction="none")
    orig = C._linear_per_sample_rows
    try:
        if not fast:
            C._linear_per_sample_rows = lambda *a, **k: set()
        res = C.compute_curvature(losses, blocks, C.CurvatureConfig(kind="fisher"))
    finally:
        C._linear_per_sample_rows = orig
    return {b.name: b.factor for b in res.blocks}


@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_per_sample_rows_equal_generic(use_bn, dtype):
    torch.manual_seed(0)
    model = _Net().to(dtype)
    x = torch.randn(24, 6, dtype=dtype)
    y = torch.randint(0, 3, (24,))
    fast = _factors(model, x, y, use_bn, fast=True)
    slow = _factors(model, x, y, use_bn, fast=False)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for name in slow:
        ref = slow[name]
        scale = float(ref.abs().max()) or 1.0
        assert float((fast[name] - ref).abs().max()) <= tol * scale, name


def test_fast_path_taken_for_linear_and_refused_with_coupling():
    torch.manual_seed(0)
    model = _Net().double()
    x = torch.randn(16, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    blocks = C.blocks_from_module(model)
    # With BatchNorm the layers before it are coupled across samples and refused; the head after
    # it still has exact per-sample gradients δ_s x_sᵀ (row s of its output feeds loss s only).
    for use_bn, expect in ((False, {"lin.weight", "lin.bias", "nobias.weight", "head"}),
                           (True, {"head"})):
        losses = nn.functional.cross_entropy(model(x, use_bn), y, reduction="none")
        factors = {id(b): torch.empty(16, b.numel, dtype=torch.float64) for b in blocks}
        done = C._linear_per_sample_rows(losses, blocks, factors, C.CurvatureConfig())
        assert {b.name for b in blocks if id(b) in done} == expect
