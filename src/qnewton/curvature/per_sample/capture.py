"""One seeded backward pass that records δ, the gradient flowing into chosen autograd nodes."""

from __future__ import annotations

from collections.abc import Callable

import torch


def one_sample_seed(root: torch.Tensor, s: int, sample: int) -> torch.Tensor:
    """A seed shaped like ``root`` that is 1 on ``sample``'s part (row ``sample`` of its ``(S, W)``
    view) and 0 elsewhere: a backward pass with it follows that sample's loss alone."""
    seed = torch.zeros_like(root).reshape(s, -1)
    seed[sample] = 1
    return seed.reshape(root.shape)


def capture(root: torch.Tensor, seed: torch.Tensor, nodes: dict[int, object],
            params: list[torch.Tensor]
            ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """One backward pass of ``root`` seeded with ``seed``: δ (first output gradient) per node,
    and the gradient of ``⟨seed, root⟩`` per parameter (by id)."""
    deltas: dict[int, torch.Tensor] = {}

    def make_hook(key: int) -> Callable[[tuple[torch.Tensor | None, ...]], None]:
        def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                deltas[key] = grad_outputs[0].detach()

        return hook

    handles = []
    try:
        for key, node in nodes.items():
            handles.append(node.register_prehook(make_hook(key)))
        grads = torch.autograd.grad(root, params, grad_outputs=seed, retain_graph=True,
                                    allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return deltas, {id(p): torch.zeros_like(p) if g is None else g.detach()
                    for p, g in zip(params, grads, strict=True)}
