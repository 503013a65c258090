"""Curvature kept across steps as plain data, for checkpoints.

A run that reuses its curvature (``curvature_every``, :mod:`qnewton.curvature.schedule`) holds the
blocks of the step that built them. For a resumed run to continue bit for bit, the checkpoint must
hold them too — as tensors, numbers and strings only, so that ``torch.load(weights_only=True)``
reads it. Per representation the block's defining tensors are kept (a factor's rows, a structured
factor's ``(a, g)`` pieces and dense rows, a Kronecker block's two factors, a dense matrix);
everything derived from them (a kept Gram matrix, the diagonal, eigendecompositions) is
recomputed from the same tensors by the same code, with the same result. A matrix-free block
holds nothing but the graph of its step and is rebuilt every step anyway, so it is kept as
``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from qnewton.curvature.compute import CurvatureResult
from qnewton.curvature.kronecker import KroneckerBlock
from qnewton.curvature.representation import CurvatureBlock, DenseBlock, FactorBlock
from qnewton.curvature.structured import KroneckerRows, StructuredFactor, StructuredFactorBlock

#: :class:`CurvatureResult` fields that describe the build (kept; a reusing step's gradients
#: and loss are its own).
_RESULT_FIELDS = tuple(f.name for f in fields(CurvatureResult)
                       if f.name not in ("blocks", "grads", "loss"))


def _dense(block: DenseBlock) -> dict[str, Any]:
    return {"matrix": block.matrix, "psd": block.psd}


def _factor(block: FactorBlock) -> dict[str, Any]:
    return {"factor": block.factor, "scale": block.scale}


def _structured(block: StructuredFactorBlock) -> dict[str, Any]:
    s = block.structured
    return {"a": [p.a for p in s.pieces], "g": [p.g for p in s.pieces], "extra": s.extra,
            "scale": block.scale}


def _kronecker(block: KroneckerBlock) -> dict[str, Any]:
    return {"a": block.a, "g": block.g, "has_weight": block.has_weight,
            "has_bias": block.has_bias, "weight_first": block.weight_first,
            "damping": list(block.damping)}


#: representation → (its state, the block from a state with ``name`` and ``kind``)
_CODECS: dict[str, tuple[Callable[[Any], dict[str, Any]],
                         Callable[[str, str, dict[str, Any]], CurvatureBlock]]] = {
    "dense": (_dense, lambda name, kind, s: DenseBlock(name, kind, s["matrix"], psd=s["psd"])),
    "factor": (_factor, lambda name, kind, s: FactorBlock(name, kind, s["factor"], s["scale"])),
    "kronecker-rows": (_structured, lambda name, kind, s: StructuredFactorBlock(
        name, kind, StructuredFactor([KroneckerRows(a, g) for a, g in zip(s["a"], s["g"],
                                                                          strict=True)],
                                     s["extra"]), s["scale"])),
    "kronecker": (_kronecker, lambda name, kind, s: KroneckerBlock(
        name, kind, s["a"], s["g"], has_weight=s["has_weight"], has_bias=s["has_bias"],
        weight_first=s["weight_first"], damping=tuple(s["damping"]))),
}


def block_state(block: CurvatureBlock | None) -> dict[str, Any] | None:
    """``block`` as plain data (``None`` for no block, a matrix-free block, or a representation
    without a codec: the resumed run builds it afresh)."""
    if block is None or block.representation not in _CODECS:
        return None
    encode = _CODECS[block.representation][0]
    return {"representation": block.representation, "name": block.name, "kind": block.kind,
            **encode(block)}


def block_from_state(state: dict[str, Any] | None) -> CurvatureBlock | None:
    """The block :func:`block_state` described (``None`` stays ``None``)."""
    if state is None:
        return None
    decode = _CODECS[state["representation"]][1]
    return decode(state["name"], state["kind"], state)


def result_state(result: CurvatureResult) -> dict[str, Any]:
    """A built :class:`CurvatureResult` as plain data: its blocks and how they were built."""
    state = {name: getattr(result, name) for name in _RESULT_FIELDS}
    state["blocks"] = [block_state(b) for b in result.blocks]
    return state


def result_from_state(state: dict[str, Any], grads: list[Any], loss: Any) -> CurvatureResult:
    """The :class:`CurvatureResult` of :func:`result_state`, with the given gradients and loss.
    ``None`` if a block could not be kept (a matrix-free one is rebuilt by the schedule)."""
    blocks = [block_from_state(s) for s in state["blocks"]]
    return CurvatureResult(blocks=blocks, grads=grads, loss=loss,
                           **{name: state[name] for name in _RESULT_FIELDS})
