"""qnewton: Newton's-method training for PyTorch with hybrid quantum-classical scheduling.

Every Hessian block's linear system is routed to a classical solver (measured on this machine) or
an emulated quantum linear-system algorithm (time *modeled* on a named hardware profile), whichever
is predicted to be faster. The method, its formulas and their sources: docs/method.md.
"""

from qnewton.accounting import Ledger, SolveRecord
from qnewton.curvature.prepare import prepare
from qnewton.optimizer import QNewton
from qnewton.stepping import ClosureError, NonFiniteError

__all__ = ["ClosureError", "Ledger", "NonFiniteError", "QNewton", "SolveRecord", "__version__",
           "prepare"]
__version__ = "0.1.0"
