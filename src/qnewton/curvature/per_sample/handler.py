"""The interface of a per-sample gradient handler: one autograd node type, one file.

A handler knows how one kind of autograd node uses its parameters, and how to turn
``δ = ∂(seeded root)/∂(node output)`` — captured once, during ONE backward pass — and the
tensors the node saved for its own backward into the gradient of every sample separately
(docs/method.md §4.7). The shared machinery (:mod:`~qnewton.curvature.per_sample.engine`) finds
the nodes, captures δ, calls the handler chunk by chunk, and checks a few rows against the
generic path. To add a layer type: write a :class:`NodeHandler` subclass in its own file and
register it in :mod:`~qnewton.curvature.per_sample.handlers`.

Samples and rows. The root (losses ``(S,)`` or outputs ``(S, C)``) has S samples. A node sees
``rows`` = S·T leading rows (its batch dimension, flattened with any sequence dimensions), sample-
major: rows ``s·T … s·T + T − 1`` belong to sample s (:func:`positions`), and the gradient of
sample s is the sum over its T positions. Layouts this assumption gets wrong are caught by the
engine's check, never silently used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


class Unsupported(ValueError):
    """A node, its saved tensors or its δ are not in a form the handler understands: the
    parameters it uses take the generic path."""


#: Errors a handler may raise on a graph it does not expect; they refuse the fast path.
REFUSALS = (Unsupported, ValueError, TypeError, AttributeError, RuntimeError, IndexError)


def saved(node: object, name: str) -> object:
    """``node._saved_<name>``, or :class:`Unsupported` when the node does not expose it (another
    torch version, or freed by an earlier backward without ``retain_graph``)."""
    try:
        return getattr(node, f"_saved_{name}")
    except (AttributeError, RuntimeError) as exc:
        raise Unsupported(f"{type(node).__name__} has no saved {name!r}") from exc


def saved_tensor(node: object, name: str) -> torch.Tensor:
    value = saved(node, name)
    if not isinstance(value, torch.Tensor):
        raise Unsupported(f"{type(node).__name__}: saved {name!r} is not a tensor")
    return value.detach()


def positions(rows: int, num_samples: int) -> int:
    """T, the positions per sample of a node with ``rows`` leading rows (``rows = S·T``)."""
    if rows < num_samples or rows % num_samples:
        raise Unsupported(f"{rows} rows do not split into {num_samples} samples")
    return rows // num_samples


@dataclass(frozen=True)
class SampleRows:
    """A node's saved input ``x`` whose rows do not split into the S samples sample-major: the
    model was called on parts of the batch and the results joined (a physics-informed closure's
    interior and boundary points). ``sample[r]`` is the sample row r belongs to (−1: no sample
    depends on it), found by the engine's probe (:func:`~qnewton.curvature.per_sample.
    sample_map.map_sample_rows`); ``None`` until then. What a :attr:`NodeHandler.mappable` handler's
    :meth:`~NodeHandler.prepare` returns for such a node."""

    x: torch.Tensor
    sample: torch.Tensor | None = None


class NodeHandler(ABC):
    """How one kind of autograd node uses its parameters, and their per-sample gradients.

    Attributes:
        node_types: the autograd node class names handled (``type(node).__name__``, e.g.
            ``"ConvolutionBackward0"``).
    """

    node_types: tuple[str, ...]

    @abstractmethod
    def role(self, node: object, position: int, transposed: bool) -> str | None:
        """The role (handler-defined, e.g. ``"weight"``/``"bias"``) of the parameter that reaches
        ``node.next_functions[position]`` — directly, or through one transpose node when
        ``transposed`` — or ``None`` if that use is not understood (the parameter then takes
        the generic path)."""

    @abstractmethod
    def prepare(self, node: object, num_samples: int) -> object:
        """What :meth:`per_sample` needs from the node's saved tensors and attributes (called
        once, before the backward pass). Raise :class:`Unsupported` to refuse the node."""

    @abstractmethod
    def per_sample(self, ctx: object, role: str, delta: torch.Tensor, r0: int, r1: int,
                   num_samples: int, dtype: torch.dtype) -> torch.Tensor:
        """Gradients of samples ``r0 … r1 − 1`` with respect to the parameter in ``role``, as
        ``(r1 − r0, numel)`` rows in ``dtype``, in the parameter's own ``reshape(-1)`` order.

        ``ctx`` is what :meth:`prepare` returned; ``delta`` is the gradient flowing into the
        node's (first) output during the backward pass. Raise :class:`Unsupported` if ``delta``
        or ``ctx`` have shapes the rule does not fit.
        """

    #: Whether :meth:`reorder` is implemented: the node's rows may come in another order
    #: than sample-major (time-major, from a sequence-first layout), found by the engine's
    #: layout probe.
    reorderable: bool = False

    def row_count(self, ctx: object) -> int | None:
        """The number of rows δ will have (S·T), when ``ctx`` tells it before the backward
        pass; ``None`` otherwise. With exactly S rows there is no layout to probe."""
        return None

    def delta_rows(self, ctx: object, delta: torch.Tensor) -> torch.Tensor:
        """δ as ``(R, ·)`` rows, R = S·T, in the node's row order (for the layout probe)."""
        return delta.reshape(delta.shape[0], -1)

    def reorder(self, ctx: object, perm: torch.Tensor) -> object:
        """``ctx`` for rows in order ``perm`` (sample-major row i is the node's row
        ``perm[i]``); only for handlers with :attr:`reorderable`."""
        raise Unsupported(f"{type(self).__name__} cannot reorder its rows")

    #: Whether :meth:`prepare` may return a context whose rows the engine must map to samples
    #: (rows of parts of the batch), completed by :meth:`with_samples`.
    mappable: bool = False

    def with_samples(self, ctx: object, sample: torch.Tensor) -> object:
        """``ctx`` with ``sample[r]``, the sample of the node's row r (−1: none), found by the
        engine's mapping probe; only for handlers with :attr:`mappable`."""
        raise Unsupported(f"{type(self).__name__} cannot map its rows to samples")

    def kronecker(self, ctx: object, role: str, delta: torch.Tensor, num_samples: int,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(g, a)``, ``(S, O)`` and ``(S, I)`` in ``dtype``, when every sample's gradient of
        the parameter in ``role`` is the Kronecker product ``g_s ⊗ a_s`` in its ``reshape(-1)``
        order (:mod:`qnewton.curvature.structured`); ``None`` (the default) when it is not, or
        not known to be."""
        return None

    def workspace(self, ctx: object, role: str, num_samples: int) -> int:
        """Elements of temporary storage :meth:`per_sample` needs per sample, beyond its result
        (e.g. the im2col patches of a convolution); used to size the row chunks."""
        return 0
