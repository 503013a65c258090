"""Unrolling a recurrent module over time with one ``F.linear`` per gate projection and step.

PyTorch's fused GRU/LSTM kernels hide the per-step products from autograd (one opaque node on
float32 CPU with oneDNN, a time-major input projection elsewhere), so neither ``torch.func.vmap``
nor the per-sample handlers can see one sample's gradient. Unrolled here, every use of
``weight_ih``/``weight_hh`` (and their biases) is an ``addmm`` (``mm`` without bias) on a
``(B, ·)`` step input whose rows are the samples, which the linear handler turns into per-sample
gradients ``Σ_t δ_t x_tᵀ`` in one backward pass (docs/method.md §4.7, "Recurrent layers").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

#: A cell: (step input (B, in), state, w_ih, w_hh, b_ih, b_hh) → new state; the state is h, or
#: (h, c) for the LSTM, each (B, H).
Cell = Callable[..., Any]


def check_supported(module: nn.RNNBase) -> None:
    """Refuse, naming the setting, what the unrolled twin does not reproduce."""
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"proj_size must be 0 for a per-sample recurrent twin, got {module.proj_size} "
            "(LSTM projections are not supported)"
        )


def _state_parts(state: Any) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _hold(live: torch.Tensor, new: Any, old: Any) -> Any:
    """The new state where ``live`` (B, 1), else the old one (a finished packed sequence)."""
    if isinstance(new, tuple):
        return tuple(torch.where(live, n, o) for n, o in zip(new, old, strict=True))
    return torch.where(live, new, old)


def _repack(output: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """The (T, B, ·) padded ``output`` in the caller's batch order as a PackedSequence laid out
    like ``like`` (its batch sizes and sort order), as PyTorch's modules return it."""
    order = like.sorted_indices
    sizes = like.batch_sizes.tolist()
    data = torch.cat([output[t, :n] if order is None else output[t, order[:n]]
                      for t, n in enumerate(sizes)])
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def unroll(module: nn.RNNBase, input: torch.Tensor, hx: Any, cell: Cell,
           num_states: int) -> tuple[torch.Tensor, Any]:
    """``module(input, hx)`` computed step by step with ``cell``; same outputs as PyTorch's
    ``nn.GRU``/``nn.LSTM`` (``num_states`` = 1 or 2): ``(output, h_n)`` or
    ``(output, (h_n, c_n))``, batched or unbatched, ``batch_first``, bidirectional, and on a
    ``PackedSequence`` (output packed alike; ``hx`` and ``h_n`` in the caller's batch order)."""
    check_supported(module)
    packed = input if isinstance(input, PackedSequence) else None
    if packed is not None:  # time-major (T, B, F) in the caller's batch order, and the lengths
        input, lengths = pad_packed_sequence(packed)
    if input.ndim not in (2, 3):
        raise ValueError(f"input must be 2-D (unbatched) or 3-D, got shape {tuple(input.shape)}")
    if module.dropout and module.training and module.num_layers > 1:
        raise ValueError(
            f"dropout must be 0 in training mode for the per-sample recurrent twin, got "
            f"{module.dropout} (call .eval() or build the module with dropout=0)"
        )
    batched = input.ndim == 3
    x = input if batched else input.unsqueeze(1)
    if batched and module.batch_first and packed is None:
        x = x.transpose(0, 1)
    steps, batch = x.shape[0], x.shape[1]
    # a packed sequence's sample s is live for t < length_s: past it the state is held (so h_n
    # is the state at its last step, and the reverse direction starts at that step, as PyTorch's
    # packed kernels do); None: every step is live
    live = (None if packed is None else
            [(t < lengths).to(x.device).unsqueeze(1) for t in range(steps)])
    dirs = 2 if module.bidirectional else 1
    layers = module.num_layers * dirs
    if hx is None:
        zero = x.new_zeros((layers, batch, module.hidden_size))
        init = (zero,) * num_states
    else:
        init = tuple(h if batched else h.unsqueeze(1) for h in _state_parts(hx))
    xs = list(x.unbind(0))
    finals: list[tuple[torch.Tensor, ...]] = []
    for layer in range(module.num_layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = [getattr(module, f"weight_{k}{sfx}") for k in ("ih", "hh")]
            b = ([getattr(module, f"bias_{k}{sfx}") for k in ("ih", "hh")] if module.bias
                 else [None, None])
            idx = layer * dirs + d
            state = init[0][idx] if num_states == 1 else tuple(h[idx] for h in init)
            out: list[torch.Tensor] = [x.new_empty(0)] * steps
            for t in (range(steps) if d == 0 else reversed(range(steps))):
                new = cell(xs[t], state, w[0], w[1], b[0], b[1])
                if live is not None:
                    new = _hold(live[t], new, state)
                state = new
                out[t] = _state_parts(state)[0]
            outs.append(out)
            finals.append(_state_parts(state))
        xs = [torch.cat([o[t] for o in outs], dim=1) if dirs == 2 else outs[0][t]
              for t in range(steps)]
    output = torch.stack(xs)
    last = tuple(torch.stack([f[i] for f in finals]) for i in range(num_states))
    if packed is not None:
        return _repack(output, packed), (last[0] if num_states == 1 else last)
    if batched and module.batch_first:
        output = output.transpose(0, 1)
    if not batched:
        output = output.squeeze(1)
        last = tuple(h.squeeze(1) for h in last)
    return output, (last[0] if num_states == 1 else last)
