"""Recurrent layers whose per-sample gradients take the one-pass path (docs/method.md §4.7).

:func:`unfuse_recurrent` turns every ``nn.GRU``/``nn.LSTM`` of a model into its unrolled twin
(:class:`PerSampleGRU`, :class:`PerSampleLSTM`): same parameter objects, same ``state_dict``, same
outputs up to rounding, but every use of a weight is a per-step ``F.linear`` the linear handler
understands, so the Fisher/GGN rows of a recurrent model cost one backward pass per seed instead
of one per sample.
"""

from __future__ import annotations

from torch import nn

from qnewton.curvature.recurrent.gru import PerSampleGRU, gru_cell
from qnewton.curvature.recurrent.lstm import PerSampleLSTM, lstm_cell
from qnewton.curvature.recurrent.unroll import check_supported

#: Fused module class → its unrolled twin (a subclass, so ``isinstance`` still holds).
TWINS: dict[type[nn.Module], type[nn.Module]] = {nn.GRU: PerSampleGRU, nn.LSTM: PerSampleLSTM}


def unfuse_recurrent(model: nn.Module) -> nn.Module:
    """Switch every ``nn.GRU``/``nn.LSTM`` in ``model`` (itself included) to its unrolled twin,
    in place, and return ``model``. Only the forward changes (the module's class is swapped:
    parameters, buffers, hooks and optimizer references stay the same objects). Subclasses of
    the fused modules with their own forward are left alone; unsupported settings (LSTM
    ``proj_size``) raise ``ValueError`` naming them."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        twin = TWINS.get(type(module))
        if twin is not None:
            check_supported(module)
            module.__class__ = twin
    return model


__all__ = ["TWINS", "PerSampleGRU", "PerSampleLSTM", "gru_cell", "lstm_cell",
           "unfuse_recurrent"]
