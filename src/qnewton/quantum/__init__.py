# TEMPORARY shim until the quantum branch is merged (replaced by that branch's __init__).
from qnewton.costs import (  # noqa: F401
    ATTOSECOND,
    HARDWARE_PROFILES,
    QLSA_MODELS,
    READOUT_MODES,
    HardwareProfile,
    QuantumCost,
    block_encoding_alpha,
    get_profile,
    profile_from_dict,
    quantum_cost,
)
