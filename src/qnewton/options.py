"""The one declaration of :class:`~qnewton.QNewton`'s settings.

Every setting of the method is one :class:`Option` in :data:`OPTIONS`: its keyword, default,
help text and check. The optimizer's keywords (and its signature and docstring), the fields of
:class:`~qnewton.training.TrainConfig` and the flags of ``qnewton train`` are all derived from it,
so they cannot drift apart (``tests/test_options.py`` checks the derivations).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from qnewton.conditioning import REG_SCHEMES, ConditioningConfig
from qnewton.curvature import CURVATURES, CurvatureConfig
from qnewton.curvature.config import BATCH_NORM_ROWS, GGN_MAX_OUTPUTS
from qnewton.curvature.params import AUTO_WHOLE_MODEL_MAX, PARTITION_GROUPINGS
from qnewton.estimation import KAPPA_METHODS
from qnewton.quantum import (
    DEFAULT_HARDWARE,
    HARDWARE_PROFILES,
    QLSA_MODELS,
    READOUT_MODES,
    HardwareProfile,
)
from qnewton.quantum.backends import QLSA_BACKENDS
from qnewton.registry import Registry
from qnewton.scheduling import DEFAULT_SOLVERS, POLICIES, SchedulerConfig
from qnewton.solvers import SOLVERS
from qnewton.stepping import DAMPING_MAX, DAMPING_MIN, ON_NONFINITE, STEP_RULES
from qnewton.validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_open_unit,
    check_optional,
    check_positive,
    check_real,
)

#: ``curvature_dtype`` by name (``qnewton train --curvature-dtype``) → the optimizer's value:
#: the model's dtype (``None``) or float64 (the storage of runs written before the option).
CURVATURE_DTYPES: dict[str, torch.dtype | None] = {"model": None, "float64": torch.float64}


#: ``Option.run_default`` when a training run's default is the optimizer's.
SAME: Any = object()


@dataclass(frozen=True)
class Option:
    """One setting of the method.

    Attributes:
        name: the optimizer keyword and the :class:`TrainConfig` field.
        default: the default of both.
        help: one sentence for ``--help`` and the optimizer's docstring.
        check: validates a value (raises ``ValueError`` naming the setting); ``None``: any.
        parse: the flag's value from its text (``None``: API only, no flag).
        to_optimizer: the optimizer's value from a run's stored value (identity: ``None``).
        run_name: the :class:`TrainConfig` field and flag when they differ from ``name``.
        run_default: a training run's default when it differs from ``default`` (``None`` for
            a setting whose run default is the optimizer's own preset, :class:`OptimizerSpec`).
    """

    name: str
    default: Any
    help: str
    check: Callable[[Any], Any] | None = None
    parse: Callable[[str], Any] | None = str
    to_optimizer: Callable[[Any], Any] | None = None
    run_name: str | None = None
    run_default: Any = SAME

    @property
    def field(self) -> str:
        """The :class:`TrainConfig` field (and flag) name."""
        return self.run_name or self.name

    @property
    def flag(self) -> str | None:
        """``--field-with-dashes``, or ``None`` for an API-only setting."""
        return None if self.parse is None else "--" + self.field.replace("_", "-")

    @property
    def train_default(self) -> Any:
        """A training run's default."""
        return self.default if self.run_default is SAME else self.run_default


def _choice(registry: Registry[Any]) -> Callable[[Any], Any]:
    return registry.check


def _optional(check: Callable[..., Any], name: str, *args: Any,
              **kwargs: Any) -> Callable[[Any], Any]:
    return lambda value: check_optional(check, name, value, *args, **kwargs)


def _hardware(value: Any) -> Any:
    return value if isinstance(value, HardwareProfile) else HARDWARE_PROFILES.check(value)


def _solvers_check(what: str, value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names:
        raise ValueError(f"{what} must name at least one of {', '.join(SOLVERS)}")
    for name in names:
        check_choice(what, name, SOLVERS)
    return names


def _parse_solvers(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise ValueError(f"--solvers needs a comma-separated list among {', '.join(SOLVERS)}")
    return names


def _parse_clip(text: str) -> float | None:
    value = float(text)
    return None if check_nonnegative("clip", value) == 0 else value


def _parse_optional_int(text: str) -> int | None:
    value = int(text)
    return None if value == 0 else value


def _curvature_dtype(value: Any) -> Any:
    if isinstance(value, str):
        return check_choice("curvature_dtype", value, CURVATURE_DTYPES)
    if value is not None and not isinstance(value, torch.dtype):
        raise ValueError(f"curvature_dtype must be a torch.dtype, None (the model's) or one of "
                         f"{', '.join(CURVATURE_DTYPES)}; got {value!r}")
    return value


def _names(registry: Mapping[str, Any]) -> str:
    return ", ".join(registry)


OPTIONS: tuple[Option, ...] = (
    Option("step_rule", "adaptive",
           f"one of {_names(STEP_RULES)}: adaptive = Levenberg-Marquardt damping and a step size "
           "from the whole model's quadratic model (docs/method.md §4.12); fixed = the paper's "
           "θ ← θ + lr·Δ with fixed reg and clip", _choice(STEP_RULES)),
    Option("damping", 1.0,
           "adaptive rule: initial (and smallest) Levenberg-Marquardt damping λ, added to reg "
           f"in its scheme (in [{DAMPING_MIN:g}, {DAMPING_MAX:g}])",
           lambda v: check_real("damping", v, low=DAMPING_MIN, high=DAMPING_MAX), float),
    Option("curvature", "auto",
           f"curvature kind, one of auto, {_names(CURVATURES)} (ggn/ggn-mc: the closure "
           "returns (losses, outputs); auto: the GGN — exact Gauss–Newton for least squares — "
           "when the closure returns outputs, else the empirical Fisher; qnewton train: fisher)",
           lambda v: check_choice("curvature", v, ("auto", *CURVATURES)), run_default="fisher"),
    Option("grouping", "auto",
           f"parameter blocks, one of {', '.join(PARTITION_GROUPINGS)} (tensor: one per "
           "parameter tensor, the paper's; module: weight and bias of a layer together; model: "
           f"one block; auto: the whole model up to {AUTO_WHOLE_MODEL_MAX} parameters, else "
           "tensor blocks)", lambda v: check_choice("grouping", v, PARTITION_GROUPINGS)),
    Option("reg_scheme", "max-entry", f"regularization scheme, one of {_names(REG_SCHEMES)}",
           _choice(REG_SCHEMES)),
    Option("reg", None, "regularization strength, >= 0 (max-entry: λ = reg·max|Hij|; default: "
           "the step rule's: adaptive 0, its damping does the work; fixed 5e-3, the paper "
           "mode's preset)", _optional(check_nonnegative, "reg"), float),
    Option("prune_ratio", None,
           "symmetric pruning: keep this fraction of each row, in (0, 1] (not with prune_count)",
           _optional(check_real, "prune_ratio", low=0.0, high=1.0, low_open=True), float),
    Option("prune_count", None,
           "symmetric pruning: keep this many entries per row (>= 1; not with prune_ratio)",
           _optional(check_int, "prune_count", 1), int),
    Option("momentum", 0.0, "momentum on Newton steps, in [0, 1)",
           lambda v: check_real("momentum", v, low=0.0, high=1.0, high_open=True), float),
    Option("clip", None, "element-wise clip of Newton steps (> 0; on the CLI 0 disables; "
           "default: none)", _optional(check_positive, "clip"), _parse_clip),
    Option("policy", "cost", f"routing policy, one of {_names(POLICIES)} (qnewton train: "
           "default the optimizer's)", _optional(check_choice, "policy", POLICIES),
           run_default=None),
    Option("qlsa", "jennings", f"QLSA query model, one of {_names(QLSA_MODELS)}",
           _choice(QLSA_MODELS)),
    Option("qlsa_backend", "emulated",
           f"how quantum answers are produced, one of {_names(QLSA_BACKENDS)}",
           _choice(QLSA_BACKENDS)),
    Option("hardware", DEFAULT_HARDWARE,
           f"hardware profile of the modeled quantum times, one of {_names(HARDWARE_PROFILES)} "
           "(or a HardwareProfile)", _hardware,
           to_optimizer=lambda v: HARDWARE_PROFILES[v] if isinstance(v, str) else v),
    Option("readout", None, f"QLSA readout, one of {', '.join(READOUT_MODES)} (default: the "
           "profile's)", _optional(check_choice, "readout", READOUT_MODES)),
    Option("eps", 1e-2, "QLSA relative error, in (0, 1)", lambda v: check_open_unit("eps", v),
           float),
    Option("kappa_threshold", 1e4, "κ above which the threshold policy routes classically "
           "(>= 1)", lambda v: check_real("kappa_threshold", v, low=1.0), float),
    Option("kappa_method", "auto", f"κ estimator for the decisions, one of "
           f"{_names(KAPPA_METHODS)}", _choice(KAPPA_METHODS)),
    Option("alpha", None, "block-encoding normalization α, > 0 (default: estimated per block)",
           _optional(check_positive, "alpha"), float),
    Option("shots", None, "read QLSA answers out with this many shots, >= 1 (default: exact "
           "amplitudes)", _optional(check_int, "shots", 1), int),
    Option("classical_solvers", DEFAULT_SOLVERS,
           f"classical solvers the scheduler may choose, comma-separated among {_names(SOLVERS)}",
           _optional(_solvers_check, "classical_solvers"), _parse_solvers,
           run_name="solvers", run_default=None),
    Option("max_block_bytes", 1024**3,
           "memory budget of one curvature block (dense N×N or factor) in bytes (>= 1); a block "
           "over it is solved matrix-free (curvature-vector products and CG) where its kind has "
           "a matrix-free form, else it takes a reported gradient step",
           lambda v: check_int("max_block_bytes", v, 1), int),
    Option("matrix_free", True, "solve blocks over max_block_bytes matrix-free (False: a "
           "reported gradient step instead)", None, None),
    Option("chunk_size", None, "rows per batched backward when building curvature",
           _optional(check_int, "chunk_size", 1), None),
    Option("curvature_batch", None,
           "build the curvature from a seeded random subset of this many samples of each "
           "batch (>= 1; the gradient uses all; default: all samples)",
           _optional(check_int, "curvature_batch", 1), int),
    Option("curvature_every", 1,
           "one curvature build serves at most this many steps, each with its own fresh "
           "gradient (>= 1; 1: every step builds; adaptive rule: a rejected step or a full "
           "batch builds earlier; docs/method.md §4.7)",
           lambda v: check_int("curvature_every", v, 1), int),
    Option("kfac_every", 20,
           "curvature kfac: refactorize the Kronecker factors every this many steps; between "
           "refreshes the last factorization solves (>= 1; 20: Martens & Grosse 2015's T3; "
           "docs/method.md §4.7)",
           lambda v: check_int("kfac_every", v, 1), int),
    Option("kfac_decay", 0.95,
           "curvature kfac: largest weight of the old running average of the factors, "
           "min(1 - 1/k, this) at the k-th update (in [0, 1); 0: each step's own factors)",
           lambda v: check_real("kfac_decay", v, low=0.0, high=1.0, high_open=True), float),
    Option("curvature_dtype", "float64",
           "store curvature factors in float64 or in the model's dtype ('model', or None in "
           "the API: half the memory for a float32 model, every product casts them back; "
           "systems are solved in float64 either way)", _curvature_dtype, str,
           lambda v: CURVATURE_DTYPES[v] if isinstance(v, str) else v),
    Option("batch_norm", "held",
           f"per-sample rows of the layers before a BatchNorm in training mode, one of "
           f"{', '.join(BATCH_NORM_ROWS)} (held: batch statistics held constant, one backward "
           "pass, as K-FAC libraries do; exact: one backward pass per sample)",
           lambda v: check_choice("batch_norm", v, BATCH_NORM_ROWS)),
    Option("ggn_max_outputs", GGN_MAX_OUTPUTS,
           "curvature ggn with more outputs per sample than this builds the Monte-Carlo GGN "
           "(one sampled row per sample, recorded per step; None or 0 on the CLI: always the "
           "exact GGN)", _optional(check_int, "ggn_max_outputs", 1), _parse_optional_int),
    Option("max_retries", 3, "retries with damping_growth× more regularization on a failed "
           "solve", lambda v: check_int("max_retries", v, 0), None),
    Option("damping_growth", 10.0, "regularization factor per retry (> 1)",
           lambda v: check_real("damping_growth", v, low=1.0, low_open=True), None),
    Option("exact_kappa_max_n", 0,
           "opt-in diagnostics: record the exact κ (eigvalsh) of systems up to this N, timed "
           "apart from training (>= 0; 0: never)",
           lambda v: check_int("exact_kappa_max_n", v, 0), int),
    Option("on_nonfinite", "skip", f"a non-finite loss or gradient: one of "
           f"{', '.join(ON_NONFINITE)} (skip: up to max_nonfinite steps in a row)",
           lambda v: check_choice("on_nonfinite", v, ON_NONFINITE), None),
    Option("max_nonfinite", 3, "non-finite steps in a row before an error (>= 1)",
           lambda v: check_int("max_nonfinite", v, 1), None),
)

#: :data:`OPTIONS` by name.
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

#: The settings that are per parameter group (``torch.optim`` defaults); the rest are global.
GROUP_OPTIONS = ("reg_scheme", "reg", "prune_ratio", "prune_count", "momentum", "clip")


def scheduler_config(opts: Mapping[str, Any]) -> SchedulerConfig:
    """The scheduler's settings among resolved options (:func:`resolve_options`)."""
    return SchedulerConfig(
        hardware=opts["hardware"], policy=opts["policy"], qlsa=opts["qlsa"],
        qlsa_backend=opts["qlsa_backend"], readout=opts["readout"], eps=opts["eps"],
        kappa_threshold=opts["kappa_threshold"], kappa_method=opts["kappa_method"],
        alpha=opts["alpha"], classical_solvers=tuple(opts["classical_solvers"]),
        shots=opts["shots"], max_dense_bytes=opts["max_block_bytes"],
        budget_name="max_block_bytes")


def conditioning_config(group: Mapping[str, Any], reg: float, shift: float = 0.0,
                        min_eig_fraction: float | None = None) -> ConditioningConfig:
    """A param group's conditioning (its :data:`GROUP_OPTIONS`) with regularization ``reg``, an
    absolute ``shift`` and, when given, the positive-definiteness target ``min_eig_fraction``."""
    extra = {} if min_eig_fraction is None else {"min_eig_fraction": min_eig_fraction}
    return ConditioningConfig(reg_scheme=group["reg_scheme"], reg=reg,
                              prune_ratio=group["prune_ratio"], prune_count=group["prune_count"],
                              shift=shift, **extra)


def curvature_kind(opts: Mapping[str, Any], outputs_given: bool) -> str:
    """The curvature kind of resolved options, ``"auto"`` resolved by whether the closure
    returns outputs (the GGN, which is free then) or not (the empirical Fisher)."""
    if opts["curvature"] != "auto":
        return opts["curvature"]
    return "ggn" if outputs_given else "fisher"


def curvature_config(opts: Mapping[str, Any], outputs_given: bool) -> CurvatureConfig:
    """The curvature's settings among resolved options."""
    return CurvatureConfig(kind=curvature_kind(opts, outputs_given),
                           max_block_bytes=opts["max_block_bytes"], chunk_size=opts["chunk_size"],
                           dtype=opts["curvature_dtype"], batch_norm=opts["batch_norm"],
                           ggn_max_outputs=opts["ggn_max_outputs"])


def resolve_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value: ``given`` checked (unknown names refused, listing the known
    ones), the rest at their defaults; values as the optimizer takes them."""
    unknown = sorted(set(given) - set(BY_NAME))
    if unknown:
        raise TypeError(f"unknown QNewton argument(s) {unknown}; the settings are "
                        f"{', '.join(BY_NAME)} (plus lr, rates, ledger, seed, process_group)")
    values = {}
    for option in OPTIONS:
        value = given.get(option.name, option.default)
        if option.check is not None:
            checked = option.check(value)
            value = checked if isinstance(checked, tuple) else value
        values[option.name] = option.to_optimizer(value) if option.to_optimizer else value
    return values


def with_options(cls: type) -> type:
    """``cls`` (whose ``__init__`` takes ``**options``) with an ``__init__`` signature that
    lists every option as a keyword with its default, and the options in its docstring, for
    ``help()``, ``inspect.signature`` and editors."""
    init = cls.__init__
    signature = inspect.signature(init)
    fixed = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    init.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        *fixed, *(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
                  for o in OPTIONS)])
    cls.__doc__ = (cls.__doc__ or "") + "\n" + options_doc() + "\n"
    return cls


def options_doc() -> str:
    """The options as a docstring section."""
    return "\n".join(f"        {o.name} (default {o.default!r}): {o.help}." for o in OPTIONS)
