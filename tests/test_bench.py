"""Tests of the benchmark suite: helpers against hand-computed values, the case registry and
``--cases``, one smoke run of every case, and the curvature fast path the suite relies on
(per-sample gradients of linear layers). No timed assertions."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from qnewton import bench
from qnewton import curvature as C
from qnewton.bench import suite
from qnewton.bench.release import release_block_direction
from qnewton.curvature import fisher as fisher_kind
from qnewton.curvature.per_sample import per_sample_rows
from qnewton.registry import Registry

# ------------------------------------------------------------------------------------- helpers


def test_summarize():
    s = bench.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}
    assert bench.summarize([7, -1, 4]) == {"min": -1.0, "median": 4.0, "max": 7.0, "n": 3}
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


def test_fit_exponent_two_points_by_hand():
    # y = 3 at x = 2 and y = 48 at x = 8: p = ln(16)/ln(4) = 2, c = 3/2² = 0.75.
    p, c = bench.fit_exponent([2.0, 8.0], [3.0, 48.0])
    assert p == pytest.approx(2.0, abs=1e-12)
    assert c == pytest.approx(0.75, rel=1e-12)


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
    d, phases = release_block_direction(j, 1e-3)
    f = j.T @ j / 40
    f.diagonal().add_(1e-3 * float(f.abs().max()))
    ref = torch.linalg.solve(f, j.mean(0))
    assert torch.allclose(d, ref, rtol=1e-9, atol=1e-12)
    assert set(phases) == {"form", "inverse", "multiply"}


def test_to_jsonable_gives_standard_json():
    value = {"a": math.inf, 1: (float("nan"), torch.tensor([1.5, 2.0])), "p": Path("x/y"),
             "ok": [True, None, 3, "s"]}
    got = bench.to_jsonable(value)
    assert got == {"a": "inf", "1": ["nan", [1.5, 2.0]], "p": "x/y", "ok": [True, None, 3, "s"]}
    json.dumps(got, allow_nan=False)  # raises on any non-standard float


def test_markdown_table_by_hand():
    result = {
        "mode": "smoke",
        "machine": {"host": "h", "torch": "t", "threads": 2, "date": "d"},
        "cases": [
            {"name": "a", "measured": 0.123456, "unit": "x", "baseline": "b|c", "target": 1,
             "met": True},
            {"name": "b", "measured": None, "unit": "", "baseline": "", "target": "",
             "met": False, "error": "ValueError: boom"},
        ],
    }
    assert bench.markdown_table(result) == (
        "# qnewton bench (smoke)\n\n"
        "h, torch t, 2 threads, d. All numbers measured on this machine unless labelled modeled."
        "\n\n| name | measured | unit | baseline | target | met |\n|---|---|---|---|---|---|\n"
        "| a | 0.123 | x | b/c | 1 | yes |\n"
        "| b | error |  |  |  | **no** |\n"
        "\nNotes:\n\n- **b**: ValueError: boom\n"
    )


# --------------------------------------------------------------------------- registry, --cases


def test_every_registered_case_is_accepted_by_cases_alone_and_together():
    parser = bench.build_parser()
    for name in bench.BENCH_CASES:
        assert parser.parse_args(["--cases", name]).cases == [name]
    everything = " , ".join(bench.BENCH_CASES)
    assert parser.parse_args(["--cases", everything]).cases == list(bench.BENCH_CASES)
    assert list(bench.CASES) == list(bench.BENCH_CASES)


def test_qnewton_cli_hands_bench_to_the_suite(capsys):
    from qnewton.cli import main as qnewton_main

    with pytest.raises(SystemExit) as exc:
        qnewton_main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qnewton bench") and "scheduler-overhead" in out


def test_unknown_case_is_an_error_naming_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--cases", "dense-solve-efficiency,nope",
                    "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert "got 'nope'" in err and "scheduler-overhead" in err
    assert not (tmp_path / "x.json").exists()


@pytest.fixture
def fake_cases(monkeypatch):
    """A registry where ``a`` and ``b`` share one function (like scheduler-quality/overhead),
    ``c`` has its own, and ``x``/``y`` share one that fails."""
    calls = []

    def entry(name):
        return {"name": name, "measured": 1.0, "unit": "u", "baseline": "", "target": "",
                "met": True, "timings": {"t": [0.0]}}

    def pair(s, rates, seed):
        calls.append("pair")
        return [entry("a"), entry("b")]

    def single(s, rates, seed):
        calls.append("single")
        return entry("c")

    def broken(s, rates, seed):
        calls.append("broken")
        raise RuntimeError("boom")

    registry = Registry("case")
    for name, fn in (("a", pair), ("b", pair), ("c", single), ("x", broken), ("y", broken)):
        registry.register(name, fn)
    monkeypatch.setattr(suite, "BENCH_CASES", registry)
    monkeypatch.setattr(suite, "CASES", registry.names())
    return calls


def test_a_name_sharing_its_function_runs_alone(fake_cases):
    out = suite.run_suite("smoke", ["b"])
    assert [c["name"] for c in out["cases"]] == ["b"]
    assert fake_cases == ["pair"]


def test_shared_function_runs_once_for_all_its_names(fake_cases):
    out = suite.run_suite("smoke", ["c", "b", "a"])
    assert [c["name"] for c in out["cases"]] == ["c", "a", "b"]
    assert fake_cases == ["single", "pair"]


def test_a_failing_case_reports_every_name_it_serves_and_the_rest_still_runs(fake_cases):
    out = suite.run_suite("smoke", None)
    assert [c["name"] for c in out["cases"]] == ["a", "b", "c", "x", "y"]
    assert fake_cases == ["pair", "single", "broken"]
    errors = {c["name"]: c.get("error") for c in out["cases"]}
    assert errors == {"a": None, "b": None, "c": None, "x": "RuntimeError: boom",
                      "y": "RuntimeError: boom"}
    assert all(c["measured"] is None for c in out["cases"] if c["name"] in ("x", "y"))


def test_run_suite_rejects_unknown_mode_and_case():
    with pytest.raises(ValueError, match="mode must be one of"):
        bench.run_suite("huge")
    with pytest.raises(ValueError, match="got 'nope'"):
        bench.run_suite("smoke", ["nope"])


# ------------------------------------------------------------------------------------ structure

#: Modules of qnewton.bench from the bottom up; a module may import only earlier layers.
LAYERS = (
    ("stats", "settings"),
    ("release", "fixtures"),
    ("newton_step", "dense_solve", "kappa", "scheduler", "scaling"),
    ("cases",),
    ("suite",),
    ("cli",),
    ("__init__", "__main__"),
)
#: What sits above or beside the suite (``qnewton bench`` is dispatched from the CLI).
NOT_BELOW = ("qnewton.cli", "qnewton.experiments", "qnewton.reports")


def _qnewton_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module)
    return {n for n in names if n == "qnewton" or n.startswith("qnewton.")}


def test_bench_imports_point_down():
    package = Path(bench.__file__).parent
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    assert {p.stem for p in package.glob("*.py")} == set(rank)
    for path in package.glob("*.py"):
        for name in _qnewton_imports(path):
            assert not name.startswith(NOT_BELOW) and name != "qnewton", (path.stem, name)
            if name.startswith("qnewton.bench"):
                inner = name.removeprefix("qnewton.bench").lstrip(".") or "__init__"
                assert rank[inner] < rank[path.stem], (path.stem, name)
    assert _qnewton_imports(package / "stats.py") == set()  # pure helpers


# ------------------------------------------------------------------------------------- smoke


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of the whole suite through the CLI, shared by the tests below."""
    out = tmp_path_factory.mktemp("bench") / "b.json"
    rc = bench.main(["--smoke", "--out", str(out)])
    return rc, out


def test_smoke_suite_schema(smoke_run):
    rc, out = smoke_run
    assert rc == 0
    text = out.read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert set(data) >= {"machine", "mode", "quick", "cases", "suite_seconds"}
    assert data["mode"] == "smoke" and data["quick"] is True
    assert data["machine"]["threads"] >= 1 and "calibrated_rates" in data["machine"]
    # Every registered case, once each, in registry order (scheduler-overhead included).
    assert [c["name"] for c in data["cases"]] == list(bench.BENCH_CASES)
    for case in data["cases"]:
        for key in bench.REQUIRED_KEYS:
            assert key in case, (case["name"], key)
        assert isinstance(case["met"], bool)
        assert isinstance(case["measured"], int | float) and math.isfinite(case["measured"])
        assert isinstance(case["timings"], dict) and case["timings"]
        assert "error" not in case
    md = out.with_suffix(".md").read_text()
    assert md == bench.markdown_table(data)


def test_smoke_measurements_are_consistent(smoke_run):
    cases = {c["name"]: c for c in json.loads(smoke_run[1].read_text())["cases"]}
    step = cases["newton-step-vs-release"]
    # Our directions equal the release's (float64) and the ratio is of the medians reported.
    assert step["max_relative_difference"] <= 1e-6
    assert {b["our_solver"] for b in step["blocks"]} <= {"woodbury", "cholesky", "cg"}
    assert step["measured"] == pytest.approx(step["release"]["median"] / step["ours"]["median"])
    dense = cases["dense-solve-efficiency"]
    assert [r["n"] for r in dense["sizes"]] == list(bench.SETTINGS["smoke"].dense_sizes)
    assert dense["measured"] == min(r["fraction_of_gemm"] for r in dense["sizes"])
    quality = cases["scheduler-quality"]
    for p in quality["profiles"].values():
        assert p["regret"] == pytest.approx(p["policy_seconds"] / p["oracle_seconds"] - 1)
        assert p["regret"] >= -1e-12  # the oracle is never beaten
    over = cases["scheduler-overhead"]
    assert 0.0 <= over["measured"] <= 100.0
    scaling = cases["scaling"]
    assert [p["hidden"] for p in scaling["points"]] == list(bench.SETTINGS["smoke"].scaling_hidden)


def test_smoke_case_selection(tmp_path):
    out = tmp_path / "c.json"
    md = tmp_path / "table.md"
    rc = bench.main(["--smoke", "--cases", "dense-solve-efficiency", "--out", str(out),
                     "--markdown", str(md)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["cases"]] == ["dense-solve-efficiency"]
    assert md.exists() and not out.with_suffix(".md").exists()


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


def _factors(model, x, y, use_bn, fast, monkeypatch):
    blocks = C.blocks_from_module(model)
    losses = nn.functional.cross_entropy(model(x, use_bn), y, reduction="none")
    refused = []
    with monkeypatch.context() as m:
        if not fast:  # the Fisher kind then takes the generic path for every block
            m.setattr(fisher_kind, "per_sample_rows",
                      lambda *a, **k: refused.append(1) or set())
        res = C.compute_curvature(losses, blocks, C.CurvatureConfig(kind="fisher"))
    assert len(refused) == (0 if fast else 1)
    assert all(isinstance(b, C.FactorBlock) for b in res.blocks)
    return {b.name: b.factor for b in res.blocks}


@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_per_sample_rows_equal_generic(use_bn, dtype, monkeypatch):
    torch.manual_seed(0)
    model = _Net().to(dtype)
    x = torch.randn(24, 6, dtype=dtype)
    y = torch.randint(0, 3, (24,))
    fast = _factors(model, x, y, use_bn, fast=True, monkeypatch=monkeypatch)
    slow = _factors(model, x, y, use_bn, fast=False, monkeypatch=monkeypatch)
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
        done = per_sample_rows(losses, [torch.ones_like(losses)], 16, blocks, factors,
                               C.CurvatureConfig())
        assert {b.name for b in blocks if id(b) in done} == expect
