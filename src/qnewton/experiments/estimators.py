"""Our surface-code model next to Microsoft's ``qdk`` resource estimator on the same logical
counts: the qdk-vs-ours table (docs/method.md §4.4).

For one linear system (N, d, κ, ε, α, QLSA model) and each fault-tolerant profile with a ``qdk-``
twin, one QLSA run (a single run, as the estimator sees it: no readout repetitions, no data
loading) is costed by our model (:func:`~qnewton.quantum.fault_tolerant.fault_tolerant_estimate`)
and by the estimator (:func:`~qnewton.quantum.qdk_estimator.qdk_estimate`). Every runtime is
**modeled**, never measured.
"""

from __future__ import annotations

from typing import Any

from qnewton.quantum import get_profile, qlsa_queries
from qnewton.quantum.fault_tolerant import fault_tolerant_estimate
from qnewton.quantum.logical_counts import qlsa_logical_counts
from qnewton.quantum.qdk_estimator import qdk_estimate
from qnewton.quantum.qlsa import check_qlsa_args
from qnewton.validation import check_int

#: Our fault-tolerant profiles and their qdk twins (same assumptions; the twin's preset in
#: :data:`~qnewton.quantum.profiles.QDK_QUBIT_PRESETS`).
TWIN_PROFILES = (
    ("surface-code", "qdk-surface-code"),
    ("surface-code-optimistic", "qdk-surface-code-optimistic"),
    ("trapped-ion", "qdk-trapped-ion"),
)
#: Columns of :func:`estimator_table`'s rows, in print order.
TABLE_COLUMNS = ("profile", "estimator", "runtime_s", "code_distance", "logical_qubits",
                 "physical_qubits", "factories", "factory_qubits")


def estimator_table(n: int, d: int, kappa: float, eps: float, *, alpha: float = 1.0,
                    qlsa: str = "jennings") -> list[dict[str, Any]]:
    """Rows of the qdk-vs-ours table: for each pair in :data:`TWIN_PROFILES`, our row then the
    estimator's, each with the keys :data:`TABLE_COLUMNS` plus ``queries`` and (on the
    estimator's row) ``runtime_ratio`` = ours / qdk. ``runtime_s`` is the **modeled** runtime of
    one QLSA run. Raises :class:`~qnewton.quantum.qdk_estimator.QdkUnavailableError` without
    ``qdk``.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1, maximum=n)
    k, e, a = check_qlsa_args(kappa, eps, alpha)
    q = qlsa_queries(qlsa, k, e, a)
    rows: list[dict[str, Any]] = []
    for ours_name, theirs_name in TWIN_PROFILES:
        profile = get_profile(ours_name)
        counts = qlsa_logical_counts(n, d, q, profile)  # the rotations the qdk row is sent too
        ours = fault_tolerant_estimate(n, d, q, profile, rotations=counts.rotation_count,
                                       t_per_rotation=counts.t_per_rotation)
        theirs = qdk_estimate(n, d, q, get_profile(theirs_name))
        mine = ours.seconds_per_query * q
        rows.append({
            "profile": ours_name, "estimator": "qnewton", "queries": q, "runtime_s": mine,
            "code_distance": ours.code_distance, "logical_qubits": ours.logical_qubits,
            "physical_qubits": ours.physical_qubits, "factories": ours.factories,
            "factory_qubits": ours.factory_physical_qubits})
        rows.append({
            "profile": theirs_name, "estimator": theirs.estimator, "queries": q,
            "runtime_s": theirs.runtime_seconds, "code_distance": theirs.code_distance,
            "logical_qubits": theirs.logical_qubits, "physical_qubits": theirs.physical_qubits,
            "factories": theirs.factories, "factory_qubits": theirs.factory_physical_qubits,
            "runtime_ratio": mine / theirs.runtime_seconds})
    return rows


def format_estimator_table(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown, runtimes labelled modeled."""
    head = ("| profile | estimator | runtime, one run (modeled) | code distance | logical qubits "
            "| physical qubits | factories | factory qubits | ours/qdk runtime |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        ratio = f"{r['runtime_ratio']:.4f}" if "runtime_ratio" in r else ""
        lines.append(
            f"| {r['profile']} | {r['estimator']} | {r['runtime_s']:.4g} s | {r['code_distance']} "
            f"| {r['logical_qubits']:,} | {r['physical_qubits']:,} | {r['factories']} "
            f"| {r['factory_qubits']:,} | {ratio} |")
    return "\n".join(lines)
