"""Readout: how many full QLSA runs it takes to get the answer out (docs/method.md §4.4)."""

from __future__ import annotations

import math

from qnewton.validation import check_choice, check_int, check_open_unit

#: ``"state"``: the state |x⟩ itself is the output; ``"vector"``: all N amplitudes are read out.
READOUT_MODES = ("state", "vector")


def readout_runs(n: int, readout: str, readout_error: float) -> int:
    """Full QLSA runs needed to read out the answer.

    * ``"state"``: the paper's assumption (arXiv 2405.00252) — the state |x⟩ itself is the
      output: 1 run; ``readout_error`` is not used.
    * ``"vector"``: ℓ₂ tomography of all N amplitudes to error δ = ``readout_error`` from copies of
      |x⟩: ``⌈N·ln N / δ²⌉`` runs (at least 1). This is the O(N·log N/δ²) sample count of
      Kerenidis & Prakash's vector-state tomography (arXiv 1808.09266) with its constant set to 1;
      their algorithm takes 36·N·ln N/δ² samples, so the count here is optimistic by that factor
      (a documented choice). With amplitude estimation on the state-preparation unitary this drops
      to ≈ N·ln N/δ (van Apeldoorn, Cornelissen, Gilyén, Nannicini, arXiv 2207.08800); we use the
      sample-based count, which is the one a QLSA output state directly supports. The norm of x
      is recovered classically and is not charged.
    """
    n = check_int("n", n, minimum=1)
    check_choice("readout", readout, READOUT_MODES)
    if readout == "state":
        return 1
    delta = check_open_unit("readout_error", readout_error)
    return max(1, math.ceil(n * math.log(n) / delta**2))
