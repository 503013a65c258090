"""Non-finite losses and gradients: skip the step and report it, or stop with a clear error."""

from __future__ import annotations

from qnewton.accounting import Ledger
from qnewton.stepping.closure import NonFiniteError


class NonFiniteGuard:
    """Skips steps whose loss or gradient is not finite (parameters untouched, an event booked),
    up to ``max_nonfinite`` in a row, then raises :class:`NonFiniteError`; with
    ``on_nonfinite="raise"`` it raises at once. ``in_a_row`` is part of the optimizer's state."""

    def __init__(self, on_nonfinite: str = "skip", max_nonfinite: int = 3) -> None:
        self.on_nonfinite, self.max_nonfinite = on_nonfinite, max_nonfinite
        self.in_a_row = 0

    def skip(self, ledger: Ledger, step: int, kind: str, message: str,
             blocks: list[str]) -> None:
        """Report a skipped step; raise once too many were skipped in a row."""
        self.in_a_row += 1
        ledger.add_event(step, kind, f"{message}; update skipped", blocks=blocks)
        if self.on_nonfinite == "raise" or self.in_a_row >= self.max_nonfinite:
            where = f" in blocks {blocks}" if blocks else ""
            raise NonFiniteError(
                f"step {step}: {message}{where} ({self.in_a_row} non-finite step(s) in a row; "
                f"on_nonfinite={self.on_nonfinite!r}, max_nonfinite={self.max_nonfinite}): "
                "lower lr, raise reg, or check the data and the loss")
