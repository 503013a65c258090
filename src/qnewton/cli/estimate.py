"""``qnewton estimate``: modeled quantum vs predicted classical time for one linear system.

It asks the scheduler itself (:meth:`qnewton.scheduling.Scheduler.decide_shape`), with the same
settings a training run would use, so the CLI and training never disagree on a system.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from qnewton.cli.errors import CLIError
from qnewton.experiments.estimators import estimator_table, format_estimator_table
from qnewton.quantum import (
    ATTOSECOND,
    DEFAULT_HARDWARE,
    HARDWARE_PROFILES,
    QLSA_MODELS,
    get_profile,
)
from qnewton.quantum.logical_counts import QLSALogicalCounts
from qnewton.scheduling import (
    DEFAULT_SOLVERS,
    POLICIES,
    NoSolverError,
    Scheduler,
    SchedulerConfig,
)
from qnewton.solvers import SOLVERS, MachineRates
from qnewton.system import SystemShape
from qnewton.validation import check_positive, check_real

#: The largest N, d or rank ``estimate`` takes: the classical flop counts (N³) overflow a float
#: beyond about 5e102.
MAX_COUNT = 1e100


def add_arguments(est: argparse.ArgumentParser) -> None:
    est.add_argument("--n", type=float, required=True,
                     help=f"system size N (a positive integer, at most {MAX_COUNT:g})")
    est.add_argument("--d", type=float, required=True, help="nonzeros per row, 1 <= d <= N")
    est.add_argument("--kappa", type=float, required=True, help="condition number, >= 1")
    est.add_argument("--rank", type=float, default=None,
                     help="the system is held as scale·FᵀF + λI with F of RANK rows (empirical "
                     "Fisher/GGN; a positive integer): Woodbury applies and dense solvers pay for "
                     "forming A")
    est.add_argument("--eps", type=float, default=1e-2, help="QLSA relative error, in (0, 1)")
    est.add_argument("--alpha", type=float, default=1.0,
                     help="block-encoding normalization alpha (> 0)")
    est.add_argument("--alpha-factor", type=float, default=None,
                     help="with --rank: the factor-form block encoding's normalization "
                     "(c·‖F‖_F² + λ)/‖A‖₂ (>= 1); the cheaper of it and the sparse-access "
                     "encoding at --alpha is priced")
    est.add_argument("--qlsa", default="jennings", help=f"one of {', '.join(QLSA_MODELS)}")
    est.add_argument("--hardware", default=DEFAULT_HARDWARE,
                     help=f"one of {', '.join(HARDWARE_PROFILES)} (default: {DEFAULT_HARDWARE}; "
                     "'paper' is the paper's hypothesis)")
    est.add_argument("--gate-time", type=float, default=None,
                     help="override the profile's gate time, in seconds (> 0; the paper's "
                     f"attosecond hypothesis: {ATTOSECOND:g})")
    est.add_argument("--readout", default=None,
                     help="state (free, as in the paper) or vector (tomography of x); "
                     "default: the profile's")
    est.add_argument("--policy", default="cost", help=f"one of {', '.join(POLICIES)}")
    est.add_argument("--solvers", default=",".join(DEFAULT_SOLVERS),
                     help=f"comma-separated classical solvers to choose from, among "
                     f"{', '.join(SOLVERS)}")
    est.add_argument("--json", action="store_true", help="print one JSON object")
    est.add_argument("--export", default=None, metavar="FILE",
                     help="also write the logical counts of one QLSA run for this system to FILE "
                     "in the qdk estimator's LogicalCounts JSON (numQubits, cczCount, "
                     "rotationCount, ...): qdk.estimator.LogicalCounts(json.load(f)).estimate()")
    est.add_argument("--compare-estimator", action="store_true",
                     help="print the qdk-vs-ours table for this system instead: one QLSA run "
                     "on each fault-tolerant profile, by our model and by the qdk resource "
                     "estimator (needs the quantum extra: pip install 'qnewton[quantum]')")


def _positive_int(name: str, value: float) -> int:
    """A count given as a float flag (so that ``--n 1e6`` works)."""
    if not (math.isfinite(value) and value.is_integer() and 1 <= value <= MAX_COUNT):
        raise CLIError(f"--{name} must be a positive integer (at most {MAX_COUNT:g}), "
                       f"got {value:g}")
    return int(value)


def _no_solver_message(solvers: tuple[str, ...], rank: int | None) -> str:
    if rank is None:
        why = "woodbury needs --rank (a system held as a factor)"
    else:
        dense = ", ".join(name for name, s in SOLVERS.items() if s.forms_matrix)
        why = (f"with --rank, the solvers that form the N×N matrix ({dense}) are over the "
               "dense-memory budget at this N")
    return (f"--solvers {','.join(solvers)} leaves no classical solver for this system: {why}; "
            "allow cg, or use --policy quantum")


def estimate_report(args: argparse.Namespace, rates: MachineRates | None = None
                    ) -> dict[str, Any]:
    """The ``estimate`` command's result as a dict. Every argument is validated before the
    machine's rates are measured (by the same validators the library uses, which name the
    argument). ``rates`` default to this machine's calibrated rates (cached), as in training.
    """
    n = _positive_int("n", args.n)
    d = _positive_int("d", args.d)
    if d > n:
        raise CLIError(f"--d must be <= --n (a row has at most N nonzeros); got d={d}, n={n}")
    rank = None if args.rank is None else _positive_int("rank", args.rank)
    kappa = check_real("kappa", args.kappa, low=1.0)
    alpha = check_positive("alpha", args.alpha)
    alpha_factor = None
    if args.alpha_factor is not None:
        if rank is None:
            raise CLIError("--alpha-factor needs --rank (the factor-form encoding exists for a "
                           "system held as c·FᵀF + λI)")
        alpha_factor = check_real("alpha_factor", args.alpha_factor, low=1.0)
    overrides: dict[str, Any] = {}
    if args.gate_time is not None:
        overrides["gate_time_s"] = check_positive("gate_time", args.gate_time)
    solvers = tuple(s.strip() for s in args.solvers.split(",") if s.strip())
    profile = get_profile(HARDWARE_PROFILES.check(args.hardware), **overrides)
    config = SchedulerConfig(hardware=profile, policy=args.policy, qlsa=args.qlsa,
                             readout=args.readout, eps=args.eps, classical_solvers=solvers)
    scheduler = Scheduler(config, rates=rates)
    shape = SystemShape(n=n, nnz=n * d, d=d, kappa=kappa, factor_rows=rank)
    try:
        decision = scheduler.decide_shape(shape, alpha, alpha_factor=alpha_factor)
    except NoSolverError:
        raise CLIError(_no_solver_message(solvers, rank)) from None
    except (ValueError, OverflowError) as exc:  # every argument is valid: the models overflow
        raise CLIError(f"this system (--n {n}, --d {d}, --kappa {kappa:g}, --eps {config.eps:g}) "
                       f"is beyond the range of the cost models ({exc}); give smaller values"
                       ) from None
    rates = scheduler.machine_rates()
    quantum = decision.quantum
    return {
        "n": n,
        "d": d,
        "kappa": kappa,
        "rank": rank,
        "eps": config.eps,
        "alpha": alpha,
        "alpha_factor": alpha_factor,
        "block_encoding": quantum.block_encoding,
        "qlsa": config.qlsa,
        "hardware": profile.name,
        "hardware_label": profile.label(),
        "gate_time_s": profile.gate_time_s,
        "policy": config.policy,
        "readout": quantum.readout,
        "queries": quantum.queries,
        "quantum_seconds": quantum.total_seconds,
        "quantum_seconds_kind": f"modeled ({profile.label()} profile)",
        "match_accuracy": config.match_accuracy,
        "error_budget": quantum.error_budget,
        "logical_counts": quantum.logical_counts,
        "quantum": quantum.to_dict(),
        "classical_seconds": decision.predicted_classical,
        "classical_seconds_kind": f"predicted (cost model, rates {rates.source} on {rates.host}; "
                                  f"CG to rtol {config.cg_rtol:g})",
        "allowed_solvers": list(scheduler.classical_candidates(shape)),
        "best_classical": decision.classical_solver,
        "choice": decision.choice,
        "speedup_quantum_over_classical": decision.predicted_classical_seconds
        / quantum.total_seconds if quantum.total_seconds > 0 else float("inf"),
    }


def _print(report: dict[str, Any]) -> None:
    q = report["quantum"]
    rank = f", held as a rank-{report['rank']} factor" if report["rank"] else ""
    print(f"Linear system: N={report['n']}, d={report['d']}, kappa={report['kappa']:g}, "
          f"eps={report['eps']:g}, alpha={report['alpha']:g}{rank}")
    print(f"QLSA {report['qlsa']}: {report['queries']:.4g} queries "
          f"(block encoding: {report['block_encoding']})")
    print(f"Quantum, {report['quantum_seconds_kind']}, readout={report['readout']}: "
          f"{report['quantum_seconds']:.4g} s")
    budget = report["error_budget"]
    print(f"  error budget: ε_QLSA {budget['eps_qlsa']:.3g} + δ_readout "
          f"{budget['delta_readout']:.3g} + ε_logical {budget['eps_logical']:.3g} = "
          f"{budget['total']:.3g}")
    lc = report["logical_counts"]
    print(f"  logical counts of one run: {lc['num_qubits']:,} qubits, {lc['ccz_count']:.4g} CCZ, "
          f"{lc['rotation_count']:.4g} rotations × {lc['t_per_rotation']} T, "
          f"T-count {lc['t_count']:.4g}")
    detail = {k: q[k] for k in ("seconds_per_query", "runs", "loading_seconds") if k in q}
    print("  " + ", ".join(f"{k}={v:.4g}" for k, v in detail.items()))
    if q.get("code_distance") is not None:
        print(f"  surface code ({q['estimator']}): code distance {q['code_distance']}, "
              f"{q['logical_qubits']:,} logical qubits, {q['physical_qubits']:,} physical "
              f"qubits incl. {q['factories']} magic-state factories")
    print(f"Classical, {report['classical_seconds_kind']}:")
    allowed = set(report["allowed_solvers"])
    for name, seconds in sorted(report["classical_seconds"].items(), key=lambda kv: kv[1]):
        note = "" if name in allowed else "  (not allowed: --solvers)"
        print(f"  {name:<9} {seconds:.4g} s{note}")
    print(f"Choice ({report['policy']} policy): {report['choice']} (best allowed classical: "
          f"{report['best_classical']}; classical/quantum time ratio "
          f"{report['speedup_quantum_over_classical']:.3g})")


def compare_report(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``estimate --compare-estimator``: the qdk-vs-ours rows for the system of ``args``."""
    n = _positive_int("n", args.n)
    d = _positive_int("d", args.d)
    if d > n:
        raise CLIError(f"--d must be <= --n (a row has at most N nonzeros); got d={d}, n={n}")
    return estimator_table(n, d, args.kappa, args.eps, alpha=args.alpha, qlsa=args.qlsa)


def run(args: argparse.Namespace) -> int:
    if args.export is not None and not Path(args.export).resolve().parent.is_dir():
        raise CLIError(f"--export: the folder of {args.export!r} does not exist")
    if args.compare_estimator:
        rows = compare_report(args)
        if args.json:
            print(json.dumps(rows))
        else:
            print(f"One QLSA run ({args.qlsa}), N={args.n:g}, d={args.d:g}, "
                  f"kappa={args.kappa:g}, eps={args.eps:g}: modeled runtimes")
            print(format_estimator_table(rows))
        return 0
    report = estimate_report(args)
    if args.export is not None:
        export_logical_counts(report, args.export)
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
        if args.export is not None:
            print(f"Logical counts of one QLSA run written to {args.export} (qdk LogicalCounts "
                  "JSON)")
    return 0


def export_logical_counts(report: dict[str, Any], path: str) -> None:
    """Write the logical counts of one QLSA run in ``report`` to ``path`` under the ``qdk``
    estimator's ``LogicalCounts`` key names (only those keys, so the estimator reads the file as
    is; the report's ``logical_counts`` hold the rest). CLIError when the file cannot be
    written."""
    counts = QLSALogicalCounts(**report["logical_counts"]).qdk_logical_counts()
    try:
        Path(path).write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"--export: cannot write {path!r} ({exc.strerror or exc})") from None
