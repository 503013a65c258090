"""``prepare(model)``: the one call that puts every layer of a model on a one-pass path.

Most layers need nothing: linear, convolution, embedding, normalization and attention
projections have one-pass handlers, and any other module is re-run alone per sample under
``torch.func.vmap`` (docs/method.md §4.7, "Any model"). Fused recurrent kernels (``nn.GRU``,
``nn.LSTM``) also work on that functional path, but their unrolled twins
(:func:`~qnewton.curvature.recurrent.unfuse_recurrent`) are cheaper still (one backward pass per
seed plus per-step outer products), so :func:`prepare` switches them.
"""

from __future__ import annotations

from torch import nn

from qnewton.curvature.recurrent import unfuse_recurrent


def prepare(model: nn.Module) -> nn.Module:
    """Get ``model`` ready for :class:`qnewton.QNewton`, in place, and return it.

    Switches every ``nn.GRU``/``nn.LSTM`` to its unrolled twin (same parameter objects,
    ``state_dict`` and outputs up to rounding; :func:`~qnewton.curvature.recurrent.
    unfuse_recurrent`). Idempotent; a model without recurrent layers is returned unchanged.
    Raises ``TypeError`` for a non-module and ``ValueError`` naming an unsupported recurrent
    setting (LSTM ``proj_size``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare(model): model must be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    return unfuse_recurrent(model)
