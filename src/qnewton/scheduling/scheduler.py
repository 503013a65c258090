"""Scheduling (pipeline stage 6): per block and per step, predict, choose, solve, record.

The quantum prediction is *modeled* (QLSA query count × hardware profile, :mod:`qnewton.quantum`);
the classical prediction comes from each solver's time model with this machine's calibrated rates
(:mod:`qnewton.calibration`, measured lazily at the first decision that needs them). Whatever
runs, the record says which times were measured and which were modeled. ``qnewton estimate``
calls :meth:`Scheduler.decide_shape`, so the CLI and training decide the same way.

Work that cannot change the decision is skipped (:meth:`Scheduler.analyse_if_needed`,
docs/method.md §4.8): no κ estimate and no quantum costing under a policy that cannot route to
the QLSA, no κ estimate when the QLSA's cheapest possible time already loses (a *guaranteed*
rejection), and neither for a matrix-free system, which only CG can solve. κ is still estimated
whenever a κ-dependent solver (CG) could win the classical choice.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from qnewton import calibration
from qnewton.accounting import SolveRecord
from qnewton.curvature.representation import dense_block_bytes
from qnewton.estimation.kappa import KappaEstimate, kappa_from_log
from qnewton.estimation.methods import KappaPolicy, analyse_kappa
from qnewton.quantum import QuantumCost, block_encoding_alpha, quantum_cost
from qnewton.quantum.backends import QLSA_BACKENDS, QLSABackendFallbackWarning, size_fallback
from qnewton.quantum.block_encodings import BLOCK_ENCODINGS, factor_form_alpha
from qnewton.quantum.error_budget import QLSA_SHARES, matched_split
from qnewton.scheduling.config import SchedulerConfig
from qnewton.scheduling.kept_kappa import KeptKappa
from qnewton.scheduling.policies import POLICIES, Policy, PolicyInputs
from qnewton.solvers import SOLVERS, MachineRates, predict_classical, shape_of, solve_classical
from qnewton.solvers.base import SolveError, SolveResult
from qnewton.system import LinearSystem, SystemShape

#: κ is clamped to [1, 1e300] before it enters a cost model (an infinite κ has no finite time).
KAPPA_CLAMP = 1e300

#: Why an analysis left κ unestimated (the record's ``kappa_method``; its ``kappa_kind`` is
#: ``"not-estimated"``):
#: * ``"policy-classical"``: the policy cannot route to the QLSA and no κ-dependent solver could
#:   win the classical choice — κ cannot change the decision; no quantum costing either;
#: * ``"guaranteed-rejection"``: the QLSA's modeled time at κ = 1, α = 1 (its cheapest case) is
#:   above the best κ-independent classical prediction — quantum loses whatever κ is;
#: * ``"matrix-free"``: only CG applies, and the QLSA is not offered (its block encoding reads
#:   the entries of A, which a matrix-free system never forms).
SKIP_REASONS = ("policy-classical", "guaranteed-rejection", "matrix-free", "kappa-bounded")
NOT_ESTIMATED = "not-estimated"


class NoSolverError(SolveError):
    """No allowed classical solver fits this system (memory budget or applicability)."""


def _draw_seed(seed: int, key: tuple[int, ...]) -> int:
    value = seed
    for part in key:
        value = (value * 1_000_003 + part + 1) % (2**63 - 1)
    return value


def trace_kappa_bound(system: LinearSystem) -> float | None:
    """``κ(A) ≤ 1 + tr(H)/shift`` for ``A = H + shift·I`` with ``H`` PSD (``‖H‖₂ ≤ tr H``, and
    ``λ_min(A) ≥ shift``), from the block's cached diagonal: no product with ``A``. ``None``
    unless the system is an unpruned PSD block plus a positive shift, held implicitly."""
    if system.dense is not None or not system.psd_plus_shift:
        return None
    trace = float(system.block.diagonal().double().sum())
    if not (math.isfinite(trace) and trace >= 0.0):
        return None
    return 1.0 + trace / system.shift


@dataclass
class Analysis:
    """What the scheduler knows about a system before solving it: κ (with its guarantee), an
    ‖A‖₂ figure and the block-encoding normalization α (docs/method.md §4.1).

    When κ could not change the decision it is not estimated: ``kappa``, ``alpha`` and ``norm``
    are ``None`` and ``skipped`` names the reason (:data:`SKIP_REASONS`); for a guaranteed
    rejection ``quantum_floor`` is the QLSA's modeled cost at κ = 1, α = 1 that lost. For
    ``"kappa-bounded"`` the free bound :func:`trace_kappa_bound` settled the decision.
    """

    kappa: KappaEstimate | None
    alpha: float | None
    norm: float | None
    skipped: str | None = None
    quantum_floor: QuantumCost | None = None
    #: α of the factor-form block encoding (c‖F‖_F² + λ)/‖A‖₂ for a factor-form system
    #: (:mod:`qnewton.quantum.block_encodings`); ``None`` otherwise
    alpha_factor: float | None = None
    #: κ and the norm were carried from the block's earlier estimate (:mod:`~qnewton.
    #: scheduling.kept_kappa`), not estimated for this system
    kept: bool = False


@dataclass
class Decision:
    """Predicted times and the choice for one system (classical: predicted seconds on this
    machine; quantum: modeled seconds on the profile).

    ``quantum`` is ``None`` when the QLSA was not costed (``quantum_rejection`` says why: a
    policy that cannot route to it, or a matrix-free system); for a ``"guaranteed-rejection"`` it
    is the cost at κ = 1, α = 1, a lower bound on the QLSA's time. ``predicted_classical`` then
    lists only the κ-independent solvers (none for a matrix-free system, where CG has no time
    model and is the only candidate).
    """

    choice: str
    classical_solver: str
    predicted_classical: dict[str, float]
    quantum: QuantumCost | None
    quantum_rejection: str | None = None

    @property
    def predicted_classical_seconds(self) -> float:
        return self.predicted_classical.get(self.classical_solver, math.inf)


@dataclass
class Scheduler:
    """Routes each :class:`~qnewton.system.LinearSystem` to a classical solver or the QLSA.

    ``rates=None`` calibrates this machine (cached) at the first decision that needs it.
    """

    config: SchedulerConfig
    rates: MachineRates | None = None
    seed: int = 0
    _kappa_policy: KappaPolicy = field(init=False, repr=False)
    #: the QLSA's cost floor by shape: the same blocks recur every step, and a fault-tolerant
    #: profile's cost model (distance search, error-budget splits) is not free
    _floors: dict[SystemShape, QuantumCost] = field(init=False, repr=False, default_factory=dict)
    _warned_size_fallback: bool = field(default=False, init=False, repr=False)
    #: κ estimates carried between a block's steps (:mod:`~qnewton.scheduling.kept_kappa`)
    kept_kappa: KeptKappa = field(init=False, repr=False, default_factory=KeptKappa)

    def __post_init__(self) -> None:
        self._kappa_policy = dataclasses.replace(self.config.kappa_policy, seed=self.seed)

    def machine_rates(self) -> MachineRates:
        """The classical rates: given, or measured once by :func:`qnewton.calibration.calibrate`."""
        if self.rates is None:
            self.rates = calibration.calibrate()
        return self.rates

    def analyse(self, system: LinearSystem) -> Analysis:
        """κ by the configured method (:func:`qnewton.estimation.analyse_kappa`), the ‖A‖₂ figure
        it came with, and α = max(1, d·max|Aᵢⱼ|/‖A‖₂) unless α is configured."""
        # a Gram that exists already (Scheduler.prepare, or kept with a reused block) is free
        shared = system.has_gram or self._woodbury_expected(system)
        kappa, norm = analyse_kappa(system, self._kappa_policy, gram_shared=shared)
        return self._analysis(system, kappa, norm)

    def _analysis(self, system: LinearSystem, kappa: KappaEstimate, norm: float,
                  kept: bool = False) -> Analysis:
        """The :class:`Analysis` of ``system`` with this κ and ‖A‖₂ figure (α from them)."""
        if self.config.alpha is not None:
            alpha = self.config.alpha
        elif math.isfinite(norm) and norm > 0:
            alpha = block_encoding_alpha(max(1, system.d), system.max_abs_entry(), norm)
        else:
            alpha = float(max(1, system.d))  # no usable norm: the worst case α ≤ d
        return Analysis(kappa, alpha, norm, alpha_factor=self._factor_alpha(system, norm),
                        kept=kept)

    def _factor_alpha(self, system: LinearSystem, norm: float) -> float | None:
        """α of the factor-form block encoding, ``(c‖F‖_F² + λ)/‖A‖₂`` (one pass over F), or
        the configured α; ``None`` for a system not held as c·FᵀF + λI or without a norm."""
        if not system.factor_form:
            return None
        if self.config.alpha is not None:
            return self.config.alpha
        if not (math.isfinite(norm) and norm > 0):
            return None
        # c‖F‖_F² = trace(c·FᵀF): the block's (cached) diagonal, whatever holds F
        frobenius_sq = float(system.block.diagonal().double().sum())
        return factor_form_alpha(frobenius_sq, system.shift, norm)

    def _woodbury_expected(self, system: LinearSystem) -> bool:
        """Whether Woodbury is the best κ-independent classical prediction for a factor-form
        system, so that its solve will form the M×M Gram the κ analysis can share."""
        cfg, m = self.config, system.factor_rows
        if not (cfg.share_gram and cfg.kappa_method == "auto" and system.psd_plus_shift
                and m is not None and cfg.gram_below < m <= system.n // 4
                and system.n > cfg.exact_below):
            return False  # the "auto" κ would not take the shared-Gram path: no rates needed
        shape = shape_of(system, 1.0)
        allowed = [name for name in self.classical_candidates(shape)
                   if not SOLVERS[name].kappa_dependent]
        if not any(SOLVERS[name].forms_gram for name in allowed):
            return False
        predicted = predict_classical(shape, self.machine_rates(), cfg.cg_rtol)
        return SOLVERS[min(allowed, key=lambda name: predicted[name])].forms_gram

    def prepare(self, system: LinearSystem) -> None:
        """Do the part of the solve the analysis can share before analysing: form the M×M Gram
        matrix when Woodbury is the expected solver (the caller books this as solve time)."""
        if self._woodbury_expected(system):
            system.gram()

    def analyse_if_needed(self, system: LinearSystem, key: str | None = None) -> Analysis:
        """:meth:`analyse`, unless κ cannot change the decision (:meth:`skip_reason`): then an
        :class:`Analysis` without κ, α or norm, saying why. This is what training calls. With
        ``key`` (the block's name), κ is carried from the block's kept estimate when one may be
        used (:mod:`~qnewton.scheduling.kept_kappa`), and a fresh estimate is kept."""
        reason, floor = self.skip_reason(system)
        if reason is not None:
            return Analysis(None, None, None, skipped=reason, quantum_floor=floor)
        carried = None if key is None else self.kept_kappa.take(key, system)
        if carried is not None:
            return self._analysis(system, *carried, kept=True)
        analysis = self.analyse(system)
        if key is not None:
            self.kept_kappa.keep(key, system, analysis.kappa, analysis.norm)
        return analysis

    def skip_reason(self, system: LinearSystem) -> tuple[str | None, QuantumCost | None]:
        """Why κ need not be estimated for ``system`` (one of :data:`SKIP_REASONS`), with the
        QLSA's cost at κ = 1, α = 1 for a guaranteed rejection; ``(None, None)`` when κ could
        change the decision.

        κ enters a decision in three places only: the QLSA's modeled time, the ``threshold``
        rule, and CG's predicted time (every other solver's time is κ-independent). So κ is
        skipped when CG cannot save more over the best κ-independent solver, even at κ = 1 (its
        cheapest case), than estimating κ costs (:meth:`kappa_seconds`; a saving ≤ 0 when CG
        cannot win at all) and
        either the policy never routes to the QLSA, or it decides by time and the QLSA's cost
        at κ = 1, α = 1 (both ≥ 1; the cost is non-decreasing in each, docs/method.md §4.3–4.4)
        with the configured readout is above the best κ-independent classical prediction,
        which bounds the best classical prediction at any κ from above.
        """
        if system.matrix_free:
            return "matrix-free", None
        cfg = self.config
        policy = POLICIES[cfg.policy]
        if policy.can_route_quantum and not (policy.decides_by_time
                                             and policy.can_route_classical):
            return None, None
        shape = shape_of(system, 1.0)
        allowed = self.classical_candidates(shape)
        fixed = [name for name in allowed if not SOLVERS[name].kappa_dependent]
        if not fixed:
            return None, None
        predicted = predict_classical(shape, self.machine_rates(), cfg.cg_rtol)
        best_fixed = min(predicted[name] for name in fixed)
        dependent = [predicted[name] for name in allowed if SOLVERS[name].kappa_dependent]
        # CG might win the classical choice; κ is worth estimating only if what CG can save
        # (at κ = 1, its best case) exceeds what estimating κ costs — and the free bound
        # κ ≤ 1 + tr(H)/shift does not settle the decision already
        if dependent and best_fixed - min(dependent) > self.kappa_seconds(shape):
            return self._bounded(system, allowed, policy)
        if not policy.can_route_quantum:
            return "policy-classical", None
        floor = self.quantum_floor(shape)
        if floor.total_seconds > best_fixed:
            return "guaranteed-rejection", floor
        return None, None

    def _bounded(self, system: LinearSystem, allowed: list[str], policy: Policy
                 ) -> tuple[str | None, QuantumCost | None]:
        """``("kappa-bounded", floor or None)`` when :func:`trace_kappa_bound` decides without
        estimating κ: the best classical solver at the bound is κ-dependent (CG), so it is the
        best at every smaller κ too, and the policy never routes to the QLSA or the QLSA's
        floor (κ = 1, α = 1) costs more than that solver at the bound; else ``(None, None)``."""
        bound = trace_kappa_bound(system)
        if bound is None:
            return None, None
        predicted = predict_classical(shape_of(system, bound), self.machine_rates(),
                                      self.config.cg_rtol)
        best = min(allowed, key=lambda name: predicted[name])
        if not SOLVERS[best].kappa_dependent:
            return None, None
        if not policy.can_route_quantum:
            return "kappa-bounded", None
        floor = self.quantum_floor(shape_of(system, 1.0))
        if floor.total_seconds > predicted[best]:
            return "kappa-bounded", floor
        return None, None

    def kappa_seconds(self, shape: SystemShape) -> float:
        """The modeled cost of estimating κ for ``shape``: the Lanczos run of the κ policy,
        ``steps`` curvature products priced as CG iterations (docs/method.md §4.6)."""
        steps = min(self._kappa_policy.steps, shape.n)
        return steps * SOLVERS["cg"].iteration_seconds(shape, self.machine_rates())

    def quantum_floor(self, shape: SystemShape) -> QuantumCost:
        """The QLSA's modeled cost for ``shape`` at κ = 1 and the smallest α (1, or the
        configured α), with the configured readout: a lower bound on its cost at any κ, α."""
        if shape in self._floors:
            return self._floors[shape]
        cfg = self.config
        alpha = cfg.alpha if cfg.alpha is not None else 1.0
        # every encoding, and with matched accuracy every split of eps the decision could pick:
        # a cost is non-decreasing in κ and α at a fixed split, so the minimum bounds them all
        splits = ([(share * cfg.eps, (1.0 - share) * cfg.eps) for share in QLSA_SHARES]
                  if self._matches_accuracy() else [None])
        floor = min((self.quantum_cost(shape, 1.0, alpha, name, split=split)
                     for name in self.encodings(shape) for split in splits),
                    key=lambda cost: cost.total_seconds)
        if len(self._floors) < 4096:  # the blocks of a run: a handful of shapes
            self._floors[shape] = floor
        return floor

    def _matches_accuracy(self) -> bool:
        cfg = self.config
        return cfg.match_accuracy and (cfg.readout or cfg.hardware.default_readout) == "vector"

    @staticmethod
    def encodings(shape: SystemShape) -> list[str]:
        """The block encodings that exist for ``shape`` (:data:`BLOCK_ENCODINGS`)."""
        return [name for name, encoding in BLOCK_ENCODINGS.items()
                if encoding.applies(shape.factor_rows)]

    def cheapest_quantum_cost(self, shape: SystemShape, alpha: float,
                              alpha_factor: float | None) -> QuantumCost:
        """The cheapest valid block encoding's cost: sparse access at ``alpha``, and for a
        factor-form shape with a known ``alpha_factor`` the factor-form encoding at it."""
        costs = [self.quantum_cost(shape, shape.kappa, alpha)]
        if shape.factor_rows is not None and alpha_factor is not None:
            costs.append(self.quantum_cost(shape, shape.kappa, alpha_factor, "factor"))
        return min(costs, key=lambda cost: cost.total_seconds)

    def quantum_cost(self, shape: SystemShape, kappa: float, alpha: float,
                     block_encoding: str = "sparse-access",
                     split: tuple[float, float] | None = None) -> QuantumCost:
        """The QLSA's modeled cost for ``shape`` at ``kappa``, ``alpha`` with ``block_encoding``:
        the configured model, profile and readout; with ``match_accuracy`` and vector readout
        the accuracy target ``eps`` is split between the QLSA and the tomography
        (:func:`matched_split`, or the given ``split`` = (ε_QLSA, δ))."""
        cfg = self.config
        d = max(1, shape.d)
        eps, delta = cfg.eps, None
        if self._matches_accuracy():
            eps, delta = split or matched_split(cfg.eps, shape.n, cfg.qlsa, kappa, alpha)
        return quantum_cost(shape.n, d, kappa, eps, nnz=min(shape.nnz, shape.n * d) or None,
                            alpha=alpha, qlsa=cfg.qlsa, profile=cfg.hardware,
                            readout=cfg.readout, readout_error=delta,
                            block_encoding=block_encoding, factor_rows=shape.factor_rows)

    def classical_candidates(self, shape: SystemShape) -> list[str]:
        """Allowed classical solvers that apply to ``shape`` and fit the dense-memory budget."""
        names = [name for name, solver in SOLVERS.items()
                 if name in self.config.classical_solvers and solver.applicable(shape)]
        too_big = dense_block_bytes(shape.n) > self.config.max_dense_bytes
        if (shape.factor_rows is not None or shape.kronecker is not None) and too_big:
            names = [name for name in names if not SOLVERS[name].forms_matrix]
        return names

    def no_solver(self, shape: SystemShape) -> NoSolverError:
        """The error for a system no allowed classical solver can take, saying why: solvers
        that do not apply to this kind of system, or dense solvers over the memory budget."""
        cfg = self.config
        applicable = [name for name, solver in SOLVERS.items() if solver.applicable(shape)]
        reasons = []
        wrong_kind = [name for name in cfg.classical_solvers if name not in applicable]
        if wrong_kind:
            reasons.append(f"{', '.join(wrong_kind)} do not apply to it (only {applicable} "
                           f"do)")
        too_big = dense_block_bytes(shape.n) > cfg.max_dense_bytes
        dense = [name for name in cfg.classical_solvers
                 if name in applicable and SOLVERS[name].forms_matrix]
        if too_big and dense:
            reasons.append(f"{', '.join(dense)} would need {dense_block_bytes(shape.n)} bytes, "
                           f"over {cfg.budget_name}={cfg.max_dense_bytes}")
        usable = [name for name in applicable
                  if not (too_big and SOLVERS[name].forms_matrix)]
        return NoSolverError(
            f"no classical solver among {cfg.classical_solvers} can solve this N={shape.n} "
            f"system: {'; '.join(reasons)}; allow one of {usable}"
            + (" or raise the budget" if too_big and dense else ""))

    def decide(self, system: LinearSystem, analysis: Analysis) -> Decision:
        """Predict both times for ``system`` and choose according to the policy.

        A κ lower bound (or plain estimate) suffices to *reject* the QLSA, whose time grows with
        κ, but not to *choose* it (docs/method.md §4.2). When a policy that could also route
        classically picks quantum on such a figure, the choice is made again with a guaranteed
        upper bound, ‖A‖₂ upper bound / λ_min lower bound (:meth:`upper_kappa`), and
        ``analysis.kappa`` becomes that bound, so the record shows the figure the choice rests on.

        An analysis without κ (``analysis.skipped``) is decided by :meth:`_decide_without_kappa`:
        classical, with the best κ-independent solver (CG for a matrix-free system).
        """
        if analysis.skipped is not None:
            return self._decide_without_kappa(system, analysis)
        decision = self._decide_for(system, analysis)
        if decision.choice == "quantum" and analysis.kept:
            # a carried κ has no guarantee: it may keep a classical choice, never make this one
            fresh = self.analyse(system)
            analysis.kappa, analysis.alpha, analysis.norm = fresh.kappa, fresh.alpha, fresh.norm
            analysis.alpha_factor, analysis.kept = fresh.alpha_factor, False
            decision = self._decide_for(system, analysis)
        if (decision.choice == "quantum" and analysis.kappa.kind not in ("exact", "upper")
                and POLICIES[self.config.policy].can_route_classical):
            analysis.kappa = self.upper_kappa(system, analysis)
            decision = self._decide_for(system, analysis)
        return decision

    def _decide_without_kappa(self, system: LinearSystem, analysis: Analysis) -> Decision:
        cfg = self.config
        shape = shape_of(system, 1.0)
        allowed = self.classical_candidates(shape)
        if not allowed:
            raise self.no_solver(shape)
        if system.matrix_free:
            return Decision("classical", "cg", {}, None, "matrix-free")
        if analysis.skipped == "kappa-bounded":  # every solver priced at the bound
            bounded = shape_of(system, trace_kappa_bound(system))
            predicted = predict_classical(bounded, self.machine_rates(), cfg.cg_rtol)
            best = min(allowed, key=lambda n: predicted[n])
            return Decision("classical", best, predicted, analysis.quantum_floor,
                            analysis.skipped)
        predicted = {name: seconds for name, seconds in
                     predict_classical(shape, self.machine_rates(), cfg.cg_rtol).items()
                     if not SOLVERS[name].kappa_dependent}
        best = min((name for name in allowed if name in predicted), key=lambda n: predicted[n])
        return Decision("classical", best, predicted, analysis.quantum_floor, analysis.skipped)

    def _decide_for(self, system: LinearSystem, analysis: Analysis) -> Decision:
        kappa = max(1.0, min(analysis.kappa.value, KAPPA_CLAMP))
        return self.decide_shape(shape_of(system, kappa), analysis.alpha,
                                 kappa_value=analysis.kappa.value,
                                 alpha_factor=analysis.alpha_factor, price_quantum=False)

    @staticmethod
    def upper_kappa(system: LinearSystem, analysis: Analysis) -> KappaEstimate:
        """κ ≤ ‖A‖₂/λ_min(A) from the analysis' norm figure (Gershgorin for an explicit matrix,
        the probabilistic Lanczos bound for factor form: an upper bound either way) and the
        λ_min lower bound that conditioning established; ``inf`` when none is known."""
        start = time.perf_counter()
        lower = system.min_eig_lower
        if not (lower > 0 and math.isfinite(analysis.norm) and analysis.norm > 0):
            log_kappa = math.inf
        else:
            log_kappa = math.log(analysis.norm) - math.log(lower)
        return kappa_from_log(log_kappa, "upper", "norm/min-eig-bound",
                              time.perf_counter() - start)

    def decide_shape(self, shape: SystemShape, alpha: float,
                     kappa_value: float | None = None,
                     alpha_factor: float | None = None,
                     price_quantum: bool = True) -> Decision:
        """Predict both times for a system of ``shape`` (κ already clamped to ≥ 1) and choose.

        ``kappa_value`` is the unclamped κ the ``threshold`` policy compares (default
        ``shape.kappa``); ``alpha_factor`` the factor-form encoding's α, when that encoding is
        priced too (the cheaper one is kept, :meth:`cheapest_quantum_cost`). This is the whole
        decision; :meth:`decide` and ``qnewton estimate`` both call it. ``price_quantum=False``
        (training's :meth:`decide`): a policy that never routes to the QLSA gets no quantum cost
        (the fault-tolerant profiles' factory planning takes milliseconds per block), and the
        decision says ``quantum_rejection="policy-classical"``.
        """
        cfg = self.config
        policy = POLICIES[cfg.policy]
        allowed = self.classical_candidates(shape)
        if not allowed and policy.can_route_classical:
            raise self.no_solver(shape)
        predicted = predict_classical(shape, self.machine_rates(), cfg.cg_rtol)
        best = min(allowed, key=lambda s: predicted[s]) if allowed else "none"
        if not price_quantum and policy.decides_by_time and allowed:
            # the QLSA's cost at κ = 1, α = 1 (kept per shape) bounds its cost at this κ, α
            # from below: when even that loses, pricing it at κ (the fault-tolerant profiles'
            # factory planning, ~10 ms a block) cannot change the choice
            floor = self.quantum_floor(dataclasses.replace(shape, kappa=1.0))
            if floor.total_seconds > predicted[best]:
                return Decision("classical", best, predicted, floor, "guaranteed-rejection")
        quantum = (self.cheapest_quantum_cost(shape, alpha, alpha_factor)
                   if price_quantum or policy.can_route_quantum else None)
        choice = policy.choose(PolicyInputs(
            quantum_seconds=math.inf if quantum is None else quantum.total_seconds,
            classical_seconds=predicted.get(best, math.inf),
            kappa=shape.kappa if kappa_value is None else kappa_value,
            kappa_threshold=cfg.kappa_threshold,
        ))
        return Decision(choice, best, predicted, quantum,
                        None if quantum is not None else "policy-classical")

    def run(self, system: LinearSystem, b: torch.Tensor, decision: Decision,
            key: tuple[int, ...] = ()) -> SolveResult:
        """Execute the decision: classical solve (measured) or the QLSA backend (emulation time).

        ``key`` (e.g. step, block index, attempt) seeds the QLSA's randomness together with
        ``seed``, so a resumed run draws exactly what an uninterrupted one would.
        """
        cfg = self.config
        if decision.choice == "classical":
            return solve_classical(decision.classical_solver, system, b, rtol=cfg.cg_rtol)
        backend = QLSA_BACKENDS[cfg.qlsa_backend]
        substitute = size_fallback(backend, system.n)
        if substitute is not None:
            if not self._warned_size_fallback:
                self._warned_size_fallback = True
                warnings.warn(
                    f"the {backend.name} QLSA backend simulates blocks up to N = "
                    f"{backend.max_n}; larger blocks (first: N = {system.n}) take the "
                    f"'{substitute}' backend, which computes the same ideal output; each solve "
                    "record names the backend that ran", QLSABackendFallbackWarning, stacklevel=2)
            backend = QLSA_BACKENDS[substitute]
        result = backend.solve(system, b, eps=cfg.eps, shots=cfg.shots,
                               seed=_draw_seed(self.seed, key))
        if substitute is not None and result.qlsa is not None:
            result.qlsa["backend_fallback"] = substitute
        return result

    def record(self, *, step: int, block: str, system: LinearSystem, analysis: Analysis,
               decision: Decision, result: SolveResult | None) -> SolveRecord:
        """The decision record; measured and modeled seconds go in separate fields."""
        quantum = decision.choice == "quantum" and result is not None
        classical = decision.choice == "classical" and result is not None
        kappa, cost = analysis.kappa, decision.quantum
        cfg = self.config
        out = (result.qlsa if quantum else None) or {}
        return SolveRecord(
            step=step,
            block=block,
            n=system.n,
            d=system.d,
            nnz=system.nnz,
            kappa=kappa.value if kappa is not None else None,
            kappa_log10=kappa.log10 if kappa is not None else None,
            kappa_kind=kappa.kind if kappa is not None else NOT_ESTIMATED,
            kappa_method=kappa.method if kappa is not None else str(analysis.skipped),
            alpha=analysis.alpha,
            reg=system.reg,
            shift=system.shift,
            predicted_quantum_seconds=cost.total_seconds if cost is not None else None,
            predicted_classical_seconds=decision.predicted_classical.get(
                decision.classical_solver),
            predicted_classical=dict(decision.predicted_classical),
            classical_solver=decision.classical_solver,
            policy=cfg.policy,
            choice=decision.choice,
            solver=result.solver if result is not None else "none",
            hardware=cfg.hardware.name,
            qlsa=cfg.qlsa,
            readout=cost.readout if cost is not None else (
                cfg.readout or cfg.hardware.default_readout),
            queries=cost.queries if cost is not None else None,
            measured_classical_seconds=result.seconds if classical else None,
            modeled_quantum_seconds=cost.total_seconds if quantum and cost is not None else None,
            emulation_seconds=result.seconds if quantum else 0.0,
            residual=result.residual if result is not None else None,
            kappa_ritz=result.kappa.value if result is not None and result.kappa else None,
            quantum_rejection=decision.quantum_rejection,
            representation="dense" if system.dense is not None else system.block.representation,
            qlsa_backend=(out.get("backend_fallback") or cfg.qlsa_backend) if quantum else None,
            kappa_eff=out.get("kappa_eff"),
            qlsa_degree=out.get("degree"),
            qlsa_degree_formula=out.get("qsvt_formula"),
            qlsa_amplification=out.get("amplification"),
            qlsa_queries=out.get("queries"),
            success_probability=out.get("success_probability"),
            norm_error=out.get("norm_error"),
            qlsa_error=out.get("error"),
            reference_seconds=float(out.get("reference_seconds") or 0.0),
            qlsa_backend_fallback=out.get("backend_fallback"),
            kappa_check=out.get("kappa_check"),
            kappa_eff_given=out.get("kappa_eff_given"),
            block_encoding=cost.block_encoding if cost is not None else None,
            alpha_factor=analysis.alpha_factor,
        )
