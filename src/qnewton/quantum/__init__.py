"""The quantum half of the cost model: QLSA query counts and the hardware that runs them.

Modules, each importing only those before it (and :mod:`qnewton.registry`,
:mod:`qnewton.validation`):

* :mod:`~qnewton.quantum.qlsa` — QLSA query-count models and their registry (docs/method.md §4.3);
* :mod:`~qnewton.quantum.readout` — full runs needed to read the answer out (§4.4);
* :mod:`~qnewton.quantum.profiles` — hardware profiles and their registry (§4.4);
* :mod:`~qnewton.quantum.magic_states` — 15-to-1 magic-state factories (§4.4);
* :mod:`~qnewton.quantum.fault_tolerant` — surface-code time per query, physical qubits (§4.4);
* :mod:`~qnewton.quantum.qdk_estimator` — the same logical counts sent to Microsoft's ``qdk``
  resource estimator, optional extra ``qnewton[quantum]`` (§4.4);
* :mod:`~qnewton.quantum.cost` — queries × seconds per query × runs + loading (§4.1, §4.3–§4.4).

No quantum computer is ever run: every time these functions produce is **modeled** on a named
profile, never measured.
"""

from qnewton.quantum.cost import QuantumCost, block_encoding_alpha, quantum_cost
from qnewton.quantum.fault_tolerant import (
    FaultTolerantEstimate,
    code_distance,
    fault_tolerant_estimate,
    logical_qubits,
    toffolis_per_query,
)
from qnewton.quantum.profiles import (
    ATTOSECOND,
    DEFAULT_HARDWARE,
    HARDWARE_PROFILES,
    HardwareProfile,
    get_profile,
    profile_from_dict,
)
from qnewton.quantum.qlsa import (
    QLSA_MODELS,
    QLSAModel,
    costa_queries,
    dalzell_queries,
    hhl_queries,
    jennings_queries,
    jennings_release_queries,
    qlsa_queries,
    qsvt_queries,
)
from qnewton.quantum.readout import READOUT_MODES, readout_runs

__all__ = [
    "ATTOSECOND",
    "DEFAULT_HARDWARE",
    "HARDWARE_PROFILES",
    "QLSA_MODELS",
    "READOUT_MODES",
    "FaultTolerantEstimate",
    "HardwareProfile",
    "QLSAModel",
    "QuantumCost",
    "block_encoding_alpha",
    "code_distance",
    "costa_queries",
    "dalzell_queries",
    "fault_tolerant_estimate",
    "get_profile",
    "hhl_queries",
    "jennings_queries",
    "jennings_release_queries",
    "logical_qubits",
    "profile_from_dict",
    "qlsa_queries",
    "qsvt_queries",
    "quantum_cost",
    "readout_runs",
    "toffolis_per_query",
]
