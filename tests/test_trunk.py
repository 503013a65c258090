"""The step trunk (issue 16): a pure per-block solve, step rules and curvature kinds as objects
added from outside the package, and one declaration of the settings."""

import argparse
import dataclasses
import inspect

import pytest
import torch
from torch import nn

from qnewton import QNewton
from qnewton.accounting import Ledger
from qnewton.conditioning import ConditioningConfig
from qnewton.curvature import CURVATURES, CurvatureBlock, CurvatureKind
from qnewton.curvature.per_sample import factor_rows
from qnewton.options import OPTIONS
from qnewton.quantum import HARDWARE_PROFILES
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates
from qnewton.stepping import STEP_RULES, BlockJob, SolvePipeline, StepRule, solve_block
from qnewton.training import TrainConfig
from qnewton.training.config import RUN_FIELDS, RUN_OPTIONS

RATES = MachineRates.user(dense_flops_per_s=5e10, gemm_flops_per_s=1e11,
                          bandwidth_bytes_per_s=1e10)


class DiagonalBlock(CurvatureBlock):
    """A toy representation: a diagonal matrix stored as its diagonal."""

    representation = "diagonal"

    def __init__(self, name, kind, diag):
        self.name, self.kind, self.psd, self.diag = name, kind, True, diag

    @property
    def n(self):
        return self.diag.numel()

    @property
    def dtype(self):
        return torch.float64

    @property
    def device(self):
        return self.diag.device

    def matvec(self, v):
        return self.diag * v if v.ndim == 1 else self.diag[:, None] * v

    def diagonal(self):
        return self.diag.clone()

    def max_abs_entry(self, shift=0.0):
        return float((self.diag + shift).abs().max())

    def to_dense(self):
        return torch.diag(self.diag)

    @property
    def owns_dense(self):
        return True

    def all_finite(self):
        return bool(torch.isfinite(self.diag.sum()))


class DiagonalFisher(CurvatureKind):
    """A toy kind: the diagonal of the empirical Fisher, in the toy representation."""

    name = "diag-fisher"
    psd = True

    def stored_elements(self, n, num_samples, num_outputs):
        return n

    def storage(self, n, num_samples, num_outputs, dtype_name):
        return f"as {n} diagonal entries"

    def budget_advice(self, num_samples, num_outputs):
        return "use a larger budget"

    def build(self, inputs):
        todo = [b for b, ok in zip(inputs.blocks, inputs.built, strict=True) if ok]
        rows = factor_rows(inputs.losses, [torch.ones_like(inputs.losses)],
                           inputs.num_samples, todo, inputs.config)
        return [DiagonalBlock(b.name, self.name,
                              rows[id(b)].to(torch.float64).square().mean(dim=0)) if ok else None
                for b, ok in zip(inputs.blocks, inputs.built, strict=True)]


class HalfStep(StepRule):
    """A toy step rule: θ ← θ + lr·Δ/2."""

    name = "half"

    def apply(self, ctx, moves):
        with torch.no_grad():
            for move in moves:
                start = 0
                for p in move.block.params:
                    piece = move.direction[start:start + p.numel()].view(p.shape)
                    p.add_(piece, alpha=move.lr / 2)
                    start += p.numel()
        return {"step": ctx.step, "rule": self.name}


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    return model, lambda: nn.functional.cross_entropy(model(x), y, reduction="none")


def test_a_kind_and_a_representation_added_from_a_test_file_train(monkeypatch):
    monkeypatch.setitem(CURVATURES._entries, "diag-fisher", DiagonalFisher())
    model, closure = _problem()
    reference = [p.detach().clone() for p in model.parameters()]
    opt = QNewton(model.named_parameters(), curvature="diag-fisher", step_rule="fixed",
                  policy="classical", reg=0.1, grouping="tensor", rates=RATES)
    losses = closure()
    grads = torch.autograd.grad(losses.mean(), list(model.parameters()), retain_graph=True)
    per_sample = [torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        losses[s], p, retain_graph=True)]) for s in range(40)]) for p in model.parameters()]
    opt.step(closure)
    for p, p0, g, rows in zip(model.parameters(), reference, grads, per_sample, strict=True):
        diag = rows.square().mean(dim=0)
        a = diag + 0.1 * diag.max()  # max-entry regularization of the diagonal block
        expected = p0 - (g.reshape(-1) / a).view(p.shape)  # lr 1, dense truth of D⁻¹g
        torch.testing.assert_close(p.detach(), expected, rtol=1e-9, atol=1e-12)
    assert {r.representation for r in opt.ledger.records} == {"dense"}  # as solved: D + λI


def test_a_step_rule_added_from_a_test_file(monkeypatch):
    monkeypatch.setitem(STEP_RULES._entries, "half", lambda damping: HalfStep())
    model, closure = _problem()
    twin, twin_closure = _problem()
    opt = QNewton(model.named_parameters(), step_rule="half", policy="classical", reg=0.1,
                  rates=RATES)
    fixed = QNewton(twin.named_parameters(), step_rule="fixed", lr=0.5, policy="classical",
                    reg=0.1, rates=RATES)
    opt.step(closure)
    fixed.step(twin_closure)
    assert opt.last_step_info == {"step": 0, "rule": "half"}
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_solve_block_is_pure_and_matches_a_dense_solve():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(6, 8, generator=g, dtype=torch.float64)
    grad = torch.randn(8, generator=g, dtype=torch.float64)
    from qnewton.curvature import FactorBlock

    block = FactorBlock("w", "fisher", f, scale=1 / 6)
    scheduler = Scheduler(SchedulerConfig(hardware=HARDWARE_PROFILES["paper"],
                                          policy="classical"), rates=RATES)
    ledger = Ledger()
    outcome = solve_block(BlockJob(3, 0, "w", ConditioningConfig(reg=0.2)), block, grad,
                          SolvePipeline(scheduler))
    a = f.T @ f / 6
    a += 0.2 * a.abs().max() * torch.eye(8, dtype=torch.float64)
    torch.testing.assert_close(outcome.direction, -torch.linalg.solve(a, grad))
    assert outcome.how == "newton" and outcome.reason is None
    assert [r.step for r in outcome.records] == [3] and outcome.records[0].block == "w"
    assert outcome.clock.seconds["solve"] > 0 and not outcome.events
    assert ledger.records == [] and not ledger.measured  # nothing booked by the solve itself


def test_a_non_finite_curvature_is_an_event_of_the_outcome():
    from qnewton.curvature import DenseBlock

    block = DenseBlock("w", "hessian", torch.full((2, 2), float("nan"), dtype=torch.float64))
    scheduler = Scheduler(SchedulerConfig(hardware=HARDWARE_PROFILES["paper"]), rates=RATES)
    outcome = solve_block(BlockJob(0, 0, "w", ConditioningConfig()), block,
                          torch.ones(2, dtype=torch.float64), SolvePipeline(scheduler))
    assert outcome.how == "fallback" and outcome.reason == "non-finite-curvature"
    assert [e["kind"] for e in outcome.events] == ["non-finite-curvature"]
    torch.testing.assert_close(outcome.direction, -torch.ones(2, dtype=torch.float64))


def test_every_option_is_an_optimizer_keyword_a_run_field_and_a_flag():
    params = inspect.signature(QNewton.__init__).parameters
    for option in OPTIONS:
        assert params[option.name].default == option.default
        assert option.name in QNewton.__doc__
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(fields) == {name for name, _, _ in RUN_FIELDS} | {o.field for o in RUN_OPTIONS}
    for option in RUN_OPTIONS:
        assert fields[option.field] == option.train_default
    from qnewton.cli.runs import add_training_arguments

    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    flags = {a.dest: a for a in parser._actions}
    for option in RUN_OPTIONS:
        if option.field != "hardware":  # each command declares --hardware itself
            assert flags[option.field].help.startswith(option.help)
            assert flags[option.field].default == option.train_default


def test_unknown_optimizer_keywords_are_refused_with_the_known_ones():
    model, _ = _problem()
    with pytest.raises(TypeError, match="unknown QNewton argument.*'rge'.*reg_scheme"):
        QNewton(model.parameters(), rge=0.1)


def test_a_run_passes_its_settings_to_the_optimizer_unchanged():
    config = TrainConfig(task="digits", tiny=True, reg=0.02, curvature="ggn", damping=0.5,
                         curvature_dtype="model", solvers=("cholesky",), policy="classical")
    options = config.newton_options()
    assert options["reg"] == 0.02 and options["curvature"] == "ggn"
    assert options["curvature_dtype"] is None and options["classical_solvers"] == ("cholesky",)
