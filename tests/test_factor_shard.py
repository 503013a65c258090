"""Factor shards (qnewton.distributed.factor_shard): what a rank sends to a block's owner and the
block the owner builds, checked against explicit rows formed here with torch.kron (no
processes; tests/test_distributed.py runs the same on two gloo ranks)."""

from __future__ import annotations

import pytest
import torch

from qnewton.curvature.representation import FactorBlock
from qnewton.curvature.structured import KroneckerRows, StructuredFactor, StructuredFactorBlock
from qnewton.distributed import CommRates
from qnewton.distributed.factor_shard import (
    gram_columns,
    join,
    layout_code,
    pack,
    shard_bytes,
    unpack,
)
from qnewton.distributed.ownership import predicted_seconds, split_costs
from qnewton.quantum import get_profile
from qnewton.scheduling import Scheduler, SchedulerConfig
from qnewton.solvers import MachineRates, predict_classical
from qnewton.system import SystemShape

#: a weight (I = 5 inputs, O = 3 outputs) and its bias, P = 2 rows per sample (a 2-output GGN)
WIDTHS = ((5, 3), (1, 3))
P = 2
N = 5 * 3 + 3


def _factors(samples: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    pieces = []
    for i, o in WIDTHS:
        a = (torch.ones(samples, 1, dtype=dtype) if i == 1
             else torch.randn(samples, i, generator=gen, dtype=dtype))
        pieces.append((a, torch.randn(samples, P, o, generator=gen, dtype=dtype)))
    return pieces


def _block(pieces, extra=None, scale=1.0):
    factor = StructuredFactor([KroneckerRows(a, g) for a, g in pieces], extra)
    return StructuredFactorBlock("w", "ggn", factor, scale=scale)


def _rows(pieces, extra=None):
    """The explicit rows, sample-major, each row kron(g[s, j], a[s]) (brute force)."""
    samples = pieces[0][0].shape[0]
    rows = [torch.cat([torch.kron(g[s, j], a[s]) for a, g in pieces])
            for s in range(samples) for j in range(P)]
    out = torch.stack(rows)
    return out if extra is None else torch.cat([out, extra])


def _check(block, truth_rows, scale):
    truth = scale * truth_rows.T @ truth_rows
    v = torch.randn(N, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    assert torch.allclose(block.to_dense(), truth, rtol=1e-12, atol=1e-12)
    assert torch.allclose(block.matvec(v), truth @ v, rtol=1e-12, atol=1e-12)
    assert torch.allclose(block.diagonal(), truth.diagonal(), rtol=1e-12, atol=1e-12)
    # the Gram's eigenvalues are FᵀF's nonzero ones (the rows may come in another order)
    gram = torch.linalg.eigvalsh(block.gram() * scale)
    exact = torch.linalg.eigvalsh(scale * truth_rows @ truth_rows.T)
    assert torch.allclose(gram, exact, rtol=1e-10, atol=1e-12)


def test_kronecker_shards_travel_as_factors_and_join_into_one_structured_block():
    first, second = _factors(4, 0), _factors(3, 1)
    gen = torch.Generator().manual_seed(2)
    extra = [torch.randn(1, N, generator=gen, dtype=torch.float64) for _ in range(2)]
    shards = [_block(first, extra[0], scale=0.25), _block(second, extra[1], scale=1 / 3)]
    # rank 1's rows stored with scale 1/3 and a row factor of 2: its rows count 4× in the sum
    packed = [pack(shards[0], 1.0), pack(shards[1], 2.0)]
    for block, buf in zip(shards, packed, strict=True):
        # header: 7 words + 4 per piece; then a (S×I) and g (S×P×O) per piece, the extra row
        samples = block.structured.pieces[0].a.shape[0]
        numbers = sum(samples * (i + P * o) for i, o in WIDTHS) + N
        assert buf.numel() == shard_bytes(block) == 8 * (7 + 8) + 8 * numbers
        assert buf.dtype == torch.uint8
    # padding after a shard (the gather pads to the longest rank) is ignored
    padded = torch.cat([packed[1], torch.zeros(13, dtype=torch.uint8)])
    joined = join("w", "ggn", [unpack(packed[0]), unpack(padded)], scale=1 / 7)
    assert isinstance(joined, StructuredFactorBlock)
    assert joined.factor_rows == 7 * P + 2
    truth = torch.cat([_rows(first, extra[0]), 2.0 * _rows(second, extra[1])])
    _check(joined, truth, 1 / 7)


def test_explicit_rows_on_one_rank_make_the_owner_form_every_ranks_rows():
    first, second = _factors(4, 0), _factors(3, 1)
    explicit = FactorBlock("w", "ggn", _rows(second), scale=1 / 3)
    assert shard_bytes(explicit) == 8 * 4 + 8 * 3 * P * N
    joined = join("w", "ggn", [unpack(pack(_block(first), 1.0)), unpack(pack(explicit, 1.0))],
                  scale=1 / 7)
    assert type(joined) is FactorBlock
    # what the explicit path builds: rank 0's rows then rank 1's, exactly
    assert torch.allclose(joined.factor, torch.cat([_rows(first), _rows(second)]),
                          rtol=0, atol=1e-15)
    _check(joined, joined.factor, 1 / 7)


def test_shards_of_different_layouts_fall_back_to_explicit_rows():
    first, second = _factors(4, 0), _factors(3, 1)
    # rank 1 holds one piece of I = 6 inputs (a 6th input of ones), O = 3: N = 18 agrees with
    # rank 0's two pieces, the layout does not
    a = torch.cat([second[0][0], torch.ones(3, 1, dtype=torch.float64)], dim=1)
    other = _block([(a, second[0][1])])
    assert other.n == N
    joined = join("w", "ggn", [unpack(pack(_block(first), 1.0)), unpack(pack(other, 1.0))],
                  scale=1 / 7)
    assert type(joined) is FactorBlock
    truth = torch.cat([_rows(first), torch.stack([
        torch.kron(second[0][1][s, j], a[s]) for s in range(3) for j in range(P)])])
    _check(joined, truth, 1 / 7)


def test_float32_shards_keep_their_dtype():
    first, second = _factors(2, 3, torch.float32), _factors(2, 4, torch.float32)
    joined = join("w", "ggn", [unpack(pack(_block(p), 1.0)) for p in (first, second)], 0.25)
    assert isinstance(joined, StructuredFactorBlock)
    assert joined.storage_dtype == torch.float32
    assert torch.equal(joined.structured.pieces[0].g, torch.cat([first[0][1], second[0][1]]))


def test_gram_columns_price_the_kronecker_gram():
    block = _block(_factors(4, 0))
    # per piece O + ⌈I/P²⌉: (3 + 2) + (3 + 1)
    assert gram_columns(block) == 9
    assert gram_columns(FactorBlock("w", "fisher", torch.ones(3, N))) == N
    rates = MachineRates.user(2e10, 4e10, 1e10)
    wide = SystemShape(n=N, nnz=N * N, d=N, kappa=1.0, factor_rows=8)
    # the owner's prediction: the Gram at width 9, the products as explicit rows
    narrow = predicted_seconds(Scheduler(SchedulerConfig(hardware=get_profile("surface-code"),
                                                         classical_solvers=("woodbury",)),
                                         rates=rates), N, 8, gram_columns=9)
    full = predict_classical(wide, rates, 1e-8)["woodbury"]
    assert narrow == pytest.approx(full - 2.0 * (N - 9) * 8 * 8 / rates.gemm_flops_per_s
                                   - 16.0 * N * 8 / rates.bandwidth_bytes_per_s
                                   + 2.0 * 2.0 * 8 * N / rates.gemm_flops_per_s)


def test_the_gather_is_priced_at_the_shards_bytes():
    comm = CommRates(latency_s=1e-3, bytes_per_s=1e8, world=2)
    _, explicit = split_costs(1000, [60, 40], 8, comm)
    _, factors = split_costs(1000, [60, 40], 8, comm, shard_bytes=4000.0)
    assert explicit == pytest.approx(1e-3 + 8 * 1000 * 100 / 2 / 1e8)
    assert factors == pytest.approx(1e-3 + 4000 / 2 / 1e8)


def test_layout_codes_agree_exactly_when_the_shards_can_be_joined_unformed():
    first, second = _block(_factors(4, 0)), _block(_factors(3, 1))
    assert layout_code(first) == layout_code(second) > 0  # samples differ, layout does not
    a = torch.ones(3, 6, dtype=torch.float64)
    other = _block([(a, torch.ones(3, P, 3, dtype=torch.float64))])
    assert other.n == first.n and layout_code(other) != layout_code(first)
    assert layout_code(FactorBlock("w", "ggn", first.factor, scale=1.0)) == 0
    assert layout_code(_block(_factors(4, 0, torch.float32))) != layout_code(first)
