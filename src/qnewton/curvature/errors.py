"""What a closure can get wrong that the curvature code reports (re-exported by
:mod:`qnewton.curvature.kind`, where the kinds raise it)."""

from __future__ import annotations


class ClosureError(ValueError):
    """The closure broke the contract :meth:`QNewton.step` relies on (or returned what the
    curvature kind cannot model faithfully)."""


#: The GGN's outputs are not what the losses are computed from (a new view or a copy of them).
OUTPUTS_NOT_USED = ("the losses do not depend on the outputs returned for the GGN; return the "
                    "very tensor the losses are computed from (e.g. `r = residual(); return "
                    "r.square(), r`), not a new view or copy of it such as r.unsqueeze(1) or "
                    "out.detach()")
