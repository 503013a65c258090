"""Distributed steps on gloo (CPU), two processes spawned here: the same parameters as one
process on the global batch, LPT ownership, and a dead rank that stops the other (no hang)."""

from __future__ import annotations

import itertools
import multiprocessing
import socket
import time

import distributed_workers as workers
import pytest
import torch

from qnewton.curvature.representation import FactorBlock
from qnewton.distributed import CommRates, lpt_assignment, makespan, plan_split, shard_slice
from qnewton.distributed.combine import GlobalBatch
from qnewton.distributed.ownership import split_costs, split_total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(target, out, world: int = 2, timeout: float = 90.0) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=target, args=(r, world, port, str(out))) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    codes = []
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
            codes.append(None)
        else:
            codes.append(p.exitcode)
    return codes


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """One pair of gloo ranks for the whole module (starting processes is the slow part): the
    equality runs, then a training run whose rank 0 is killed after step 3."""
    out = tmp_path_factory.mktemp("dist")
    codes = _spawn(workers.equality_worker, out, timeout=150.0)
    return out, codes


@pytest.fixture(scope="module")
def two_ranks(spawned):
    out, _ = spawned
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.mark.parametrize("case", workers.CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_two_ranks_equal_one_process_on_the_global_batch(two_ranks, case):
    single, _ = workers.train(*case)
    tol = TOLERANCE[case[1]]
    for rank in range(2):
        got = two_ranks[rank][case]["params"]
        for a, b in zip(got, single, strict=True):
            err = float((a.double() - b.double()).abs().max() / b.double().abs().max())
            assert err <= tol, f"rank {rank}: relative max error {err:.2e} > {tol:g}"
    # every block solved once per step, by one rank, and both ranks wrote the same records
    assert two_ranks[0][case]["records"] == two_ranks[1][case]["records"]
    owners = {r for _, r in two_ranks[0][case]["records"]}
    assert owners == {0, 1}
    assert len(two_ranks[0][case]["rank_seconds"]) == 2
    assert two_ranks[0][case]["critical"] == pytest.approx(
        two_ranks[1][case]["critical"])


@pytest.mark.parametrize("case", workers.CASES[:3], ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_a_step_issues_four_collectives_besides_the_step_rules(two_ranks, case):
    """Counted by wrapping torch.distributed: after the first step (machine rates, probe) a
    step of factor blocks is one all-gather (loss, shard sizes), one all-reduce (gradients,
    traces and the ranks' integers: the gradients are in the curvature's dtype, float64 here,
    also for the float32 model), one all-to-all of the factor shards to their owners and one of
    the directions and outcomes — plus the step rule's all-reduces of ΔᵀCΔ (or of the blocks'
    coupling, whose sum it is) and of each trial loss. The step path books each of them under
    its label. A step that reuses the curvature built at an earlier one (``curvature_every``)
    gathers nothing: the owners keep the blocks they gathered then."""
    kinds = set()
    for rank in range(2):
        for step in two_ranks[rank][case]["per_step"][1:]:
            rule = 2 + step["backtracks"]
            gathers = 0 if step["curvature"] == "reused" else 1
            kinds.add(step["curvature"])
            assert step["torch"] == {"all_gather": 1, "all_reduce": 1 + rule,
                                     "all_to_all_single": 1 + gathers}, step
            labels = step["labels"]
            # the step's curvature: ΔᵀCΔ, or the blocks' coupling it is the sum of (K² numbers)
            assert (labels.get("all-reduce of ΔᵀCΔ", 0)
                    + labels.get("all-reduce of the blocks' coupling Δ_bᵀCΔ_c", 0)) == 1
            assert labels["all-reduce of trial loss"] == 1 + step["backtracks"]
            assert sum(labels.values()) == sum(step["torch"].values())
    assert "reused" in kinds  # (the steps of both kinds were counted)


def test_outcomes_over_the_capacity_take_a_second_all_to_all(two_ranks):
    """With 16 bytes reserved for each rank's pickled outcomes, every step's outcomes overflow:
    they go whole in a second all-to-all, and the run still equals one process."""
    single, _ = workers.train("fisher", torch.float64, "tensor")
    for rank in range(2):
        got = two_ranks[rank]["overflow"]
        for a, b in zip(got["params"], single, strict=True):
            assert float((a - b).abs().max() / b.abs().max()) <= 1e-10
        for step in got["per_step"]:
            assert step["labels"]["all-to-all of the solve outcomes over the capacity"] == 1
            gathers = 0 if step["curvature"] == "reused" else 1
            assert step["torch"]["all_to_all_single"] == 2 + gathers


def test_matrix_free_blocks_are_solved_by_all_ranks_together(two_ranks):
    single, opt = workers.train("fisher", torch.float64, "tensor", matrix_free_bytes=200)
    got = two_ranks[0]["matrix-free"]
    for a, b in zip(got["params"], single, strict=True):
        assert float((a - b).abs().max() / b.abs().max()) <= 1e-10
    collective = [r for r in got["records"] if r[2] == "matrix-free"]
    assert collective and all(rank == -1 for _, rank, _ in collective)
    assert len(got["records"]) == len(opt.ledger.records)


@pytest.mark.parametrize("case", workers.SPLIT_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_blocks_split_across_the_ranks_equal_one_process(two_ranks, case):
    """Every factor block dealt out by columns (the same Woodbury, its sums reassociated)."""
    single, opt = workers.train(*case)
    tol = TOLERANCE[case[1]]
    for rank in range(2):
        run = two_ranks[rank][("split",) + case]
        for a, b in zip(run["params"], single, strict=True):
            err = float((a.double() - b.double()).abs().max() / b.double().abs().max())
            assert err <= tol, f"rank {rank}: relative max error {err:.2e} > {tol:g}"
        assert run["split"] == list(range(len(opt.last_outcomes)))
        assert run["records"] == two_ranks[0][("split",) + case]["records"]
    assert all(rank == -1 for _, rank in two_ranks[0][("split",) + case]["records"])
    assert len(two_ranks[0][("split",) + case]["records"]) == len(opt.ledger.records)


def test_a_column_split_block_gives_the_global_factors_products(two_ranks):
    factor, rows = workers.shard_factor()
    whole = FactorBlock("w", "fisher", factor, scale=1.0 / 7)
    gen = torch.Generator().manual_seed(6)
    v, u = torch.randn(11, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen,
                                                                             dtype=torch.float64)
    expected = {"gram": factor @ factor.T, "fv": factor @ v, "ftu": factor.T @ u,
                "diagonal": whole.diagonal(), "matvec": whole.matvec(v),
                "dense": whole.to_dense()}
    for rank in range(2):
        got = two_ranks[rank]["column-shard"]
        for name, want in expected.items():
            assert torch.allclose(got[name], want, rtol=1e-12, atol=1e-12), name
        assert got["max_entry"] == pytest.approx(float(whole.diagonal().max()), rel=1e-12)
        assert (got["n"], got["rows"]) == (11, 7)
        assert got["reduce_bytes"] == 80  # ring all-reduce: 2·(R−1)/R of 80 bytes
        latency, bandwidth = got["comm"]
        assert latency > 0 and bandwidth > 0
    # columns 0–5 on rank 0, 6–10 on rank 1: rank 0 sends 4 rows × 5 columns, rank 1 3 × 6
    assert [two_ranks[r]["column-shard"]["all_to_all_bytes"] for r in range(2)] == [160, 144]
    assert two_ranks[0]["column-shard"]["comm"] == two_ranks[1]["column-shard"]["comm"]


def test_kronecker_blocks_are_gathered_as_their_factors(two_ranks):
    """Fisher on linear layers: every block is Kronecker rows, in one process and at its owner
    (the parameters equal one process: the test above), and the owners receive the factors
    a (S_r×I) and g (S_r×O) — per block a header of 11 int64 and S_r·(I + O) float64."""
    case = ("fisher", torch.float64, "tensor")
    _, opt = workers.train(*case)
    run = two_ranks[0][case]
    assert run["representations"] == [r.representation for r in opt.ledger.records]
    assert set(run["representations"]) == {"kronecker-rows"}
    model, _, _ = workers.problem(torch.float64)
    widths = [(p.shape[1], p.shape[0]) if p.ndim == 2 else (1, p.shape[0])
              for p in model.parameters()]
    samples = [workers.BATCH - workers.BATCH // 2, workers.BATCH // 2]  # 7 and 6
    label = "all-to-all of factor shards to their owners"
    for rank in range(2):
        for step in two_ranks[rank][case]["per_step"]:
            # each rank sends the other exactly its shards of the blocks the other owns
            want = sum(8 * 11 + 8 * samples[rank] * (i + o)
                       for (i, o), owner in zip(widths, step["owner"], strict=True)
                       if owner != rank)
            if step["curvature"] == "reused":  # the owners keep what they gathered
                want = 0
            assert step["bytes"].get(label, 0) == want


def test_ranks_that_disagree_on_kronecker_rows_fall_back_to_explicit_rows(two_ranks):
    """Kronecker rows on one rank and explicit rows on the other, or Kronecker rows of
    different layouts: the owner forms the explicit rows; only agreeing shards stay factors.
    Each combined block is the sample-weighted mean Σ_r (S_r/S)·H_r of the ranks' blocks."""
    got = two_ranks[0]["mixed"]
    assert got["types"] == ["FactorBlock", "FactorBlock", "StructuredFactorBlock"]
    local = [workers.mixed_blocks(r) for r in range(2)]
    sizes = workers.MIXED_SAMPLES
    for i, dense in enumerate(got["dense"]):
        truth = sum(s / sum(sizes) * blocks[i].to_dense()
                    for s, blocks in zip(sizes, local, strict=True))
        assert torch.allclose(dense, truth, rtol=1e-12, atol=1e-13), i
    # Gram widths agreed on: -1 (N) unless both ranks hold one layout (then O + ⌈I/P²⌉ each)
    assert got["gram_columns"] == [-1, -1, (3 + 2) + (3 + 1)]
    assert two_ranks[1]["mixed"]["gram_columns"] == got["gram_columns"]
    # rank 1 sends its shards (explicit rows of block 0 among them), unpadded, and nothing
    # comes back (the owner's own shards are not sent)
    assert two_ranks[1]["mixed"]["gather_bytes"] == sum(got["shard_bytes"][1])
    assert got["gather_bytes"] == 0
    assert got["shard_bytes"][1][0] == 8 * 4 + 8 * 3 * 2 * 18


def _split_inputs(big: float, network: float):
    """One large factor block and three small ones: seconds, split and gather costs."""
    seconds = [big, 0.01, 0.01, 0.02]
    return seconds, [0, 1, 2, 3], [0, 1, 2, 3], [network, 0.05, 0.05, 0.05], [
        2 * network, 0.001, 0.001, 0.001]


def test_split_plan_splits_a_large_block_when_that_is_predicted_faster():
    seconds, owned, candidates, split_cost, gather_cost = _split_inputs(1.0, 0.1)
    plan = plan_split(seconds, owned, candidates, split_cost, gather_cost, 2)
    assert plan == {0}
    # by hand: 1.0/2 + 0.1 split, then LPT of 0.02 | 0.01 + 0.01 → 0.02, plus 3 gathers
    assert split_total(plan, seconds, owned, split_cost, gather_cost, 2) == pytest.approx(
        0.5 + 0.1 + 0.02 + 0.003)
    # the best of every subset (brute force) is no better than the plan here
    best = min(split_total(set(c), seconds, owned, split_cost, gather_cost, 2)
               for k in range(5) for c in itertools.combinations(candidates, k))
    assert split_total(plan, seconds, owned, split_cost, gather_cost, 2) == pytest.approx(best)
    # a slow network: moving the block's columns costs more than half its work saves
    seconds, owned, candidates, split_cost, gather_cost = _split_inputs(1.0, 0.2)
    split_cost[0] = 1.0  # 0.5 + 1.0 + 0.023 split against 1.0 + 0.4 + 0.003 whole
    assert plan_split(seconds, owned, candidates, split_cost, gather_cost, 2) == set()
    assert plan_split(seconds, owned, candidates, split_cost, gather_cost, 2, "always") == {
        0, 1, 2, 3}
    assert plan_split(seconds, owned, candidates, split_cost, gather_cost, 2, "never") == set()
    assert plan_split(seconds, owned, candidates, split_cost, gather_cost, 1) == set()
    with pytest.raises(ValueError, match="split policy"):
        plan_split(seconds, owned, candidates, split_cost, gather_cost, 2, "sometimes")


def _first_layer(samples: int):
    """A 784→64 linear layer's Fisher block on ``samples`` samples, as Kronecker rows."""
    from qnewton.curvature.structured import (
        KroneckerRows,
        StructuredFactor,
        StructuredFactorBlock,
    )

    rows = KroneckerRows(torch.zeros(samples, 784, dtype=torch.float64),
                         torch.zeros(samples, 1, 64, dtype=torch.float64))
    return StructuredFactorBlock("0", "fisher", StructuredFactor([rows]), scale=1 / samples)


def test_a_kronecker_block_is_priced_from_its_factors_and_left_whole():
    """The MLP's first layer (N = 50,176, M = 256 on two ranks): as explicit rows its Gram is
    2·N·M² flops and the split is predicted faster (last round's plan); as Kronecker rows the
    Gram takes 2·(64 + 784)·M², the gather moves the factors, and splitting (which deals out
    explicit columns) is not predicted faster."""
    from qnewton.distributed.factor_shard import gram_columns, shard_bytes
    from qnewton.distributed.ownership import LPTAssignment, predicted_seconds
    from qnewton.quantum import get_profile
    from qnewton.scheduling import Scheduler, SchedulerConfig

    rates = workers.RATES
    scheduler = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"),
                                          policy="classical"), rates=rates)
    comm = CommRates(latency_s=4e-4, bytes_per_s=3.65e8, world=2)  # last round's probe
    local = [_first_layer(128), _first_layer(128)]
    width = gram_columns(local[0])
    assert width == 64 + 784

    def batch(kronecker: bool) -> GlobalBatch:
        return GlobalBatch([128, 128], 10, [[128], [128]], ["owned"],
                           [[shard_bytes(b)] for b in local], [width if kronecker else -1])

    explicit, kron = batch(False), batch(True)
    owner, predicted = LPTAssignment(scheduler, 2, comm).assign(local[:1], explicit)
    assert explicit.modes == ["split"] and owner == [-1]
    owner, predicted = LPTAssignment(scheduler, 2, comm).assign(local[:1], kron)
    assert kron.modes == ["owned"] and owner == [0]
    assert predicted == [predicted_seconds(scheduler, 50176, 256, width)]
    gram_saved = 2.0 * (50176 - width) * 256**2 / rates.gemm_flops_per_s
    # at least the Gram's saving (its passes are priced from the factors' flops too)
    assert predicted[0] <= predicted_seconds(scheduler, 50176, 256) - gram_saved


def test_blocks_are_balanced_on_their_measured_seconds_when_the_shape_is_unchanged():
    from qnewton.distributed.ownership import LPTAssignment, block_key, predicted_seconds
    from qnewton.quantum import get_profile
    from qnewton.scheduling import Scheduler, SchedulerConfig

    scheduler = Scheduler(SchedulerConfig(hardware=get_profile("surface-code"),
                                          policy="classical"), rates=workers.RATES)
    blocks = [FactorBlock(str(i), "fisher", torch.ones(5, 40), scale=0.1) for i in range(3)]
    batch = GlobalBatch([5, 5], 1, [[5] * 3, [5] * 3], ["owned"] * 3)
    keys = [block_key(b, batch, i) for i, b in enumerate(blocks)]
    assert keys[0] == (40, 10, -1)
    measured = {0: (keys[0], 0.5), 1: (keys[1], 0.3), 2: ((40, 12, -1), 9.0)}  # 2: other rows
    owner, seconds = LPTAssignment(scheduler, 2, None, "never", measured).assign(blocks, batch)
    modeled = predicted_seconds(scheduler, 40, 10)
    assert seconds == [0.5, 0.3, modeled]
    assert owner == lpt_assignment(seconds, 2) == [0, 1, 1]


def test_every_rank_balances_on_the_same_measured_seconds(two_ranks):
    case = ("fisher", torch.float64, "tensor")
    runs = [two_ranks[r][case] for r in range(2)]
    assert runs[0]["block_seconds"] == runs[1]["block_seconds"]
    owned = [i for i, o in enumerate(runs[0]["owner"]) if o >= 0]
    assert sorted(runs[0]["block_seconds"]) == owned
    assert all(seconds > 0 for _, seconds in runs[0]["block_seconds"].values())


def test_split_costs_follow_the_alpha_beta_model():
    comm = CommRates(latency_s=1e-3, bytes_per_s=1e8, world=2)
    split, gather = split_costs(1000, [60, 40], 8, comm)
    # split: rank 0 sends 60 rows × 500 columns; Gram all-reduce of 100² float64 (ring: 1×);
    # six N-sized collectives of 500 float64 each
    assert split == pytest.approx(1e-3 + 60 * 500 * 8 / 1e8 + 1e-3 + 100 * 100 * 8 / 1e8
                                  + 6e-3 + 500 * 8 / 1e8)
    assert gather == pytest.approx(1e-3 + 8 * 1000 * 100 / 2 / 1e8)


def test_first_order_training_averages_gradients_over_the_global_batch(two_ranks):
    single = workers.first_order()
    for rank in range(2):
        for a, b in zip(two_ranks[rank]["sgd"], single, strict=True):
            assert float((a - b).abs().max() / b.abs().max()) <= 1e-12


def test_ownership_follows_lpt_on_predicted_seconds(two_ranks):
    run = two_ranks[0][("fisher", torch.float64, "tensor")]
    owned = [i for i, o in enumerate(run["owner"]) if o >= 0]
    seconds = [run["predicted"][i] for i in owned]
    assert [run["owner"][i] for i in owned] == lpt_assignment(seconds, 2)


def _optimal_makespan(seconds, ranks):
    return min(makespan(seconds, list(owner), ranks)
               for owner in itertools.product(range(ranks), repeat=len(seconds)))


@pytest.mark.parametrize("seed", range(12))
def test_lpt_is_within_grahams_bound_of_the_optimum(seed):
    gen = torch.Generator().manual_seed(seed)
    ranks = 2 + seed % 3
    seconds = (torch.rand(7, generator=gen) ** 3 * 10).tolist()
    owner = lpt_assignment(seconds, ranks)
    best = _optimal_makespan(seconds, ranks)
    assert makespan(seconds, owner, ranks) <= (4 / 3 - 1 / (3 * ranks)) * best + 1e-12
    assert sorted(set(owner)) == list(range(ranks))  # 7 jobs on ≤ 4 ranks: all busy


def test_lpt_is_deterministic_and_rejects_bad_rank_counts():
    assert lpt_assignment([3.0, 3.0, 2.0, 2.0, 2.0], 2) == [0, 1, 0, 1, 0]
    assert lpt_assignment([], 3) == []
    assert lpt_assignment([float("nan"), 1.0], 2) == [1, 0]
    with pytest.raises(ValueError, match="ranks must be an integer >= 1"):
        lpt_assignment([1.0], 0)


def test_shards_are_contiguous_and_cover_the_batch():
    for total, world in [(13, 2), (10, 3), (4, 4), (128, 5)]:
        parts = [shard_slice(total, r, world) for r in range(world)]
        assert parts[0].start == 0 and parts[-1].stop == total
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
        sizes = [p.stop - p.start for p in parts]
        assert max(sizes) - min(sizes) <= 1


def test_global_batch_weights_and_rows():
    batch = GlobalBatch([7, 6], 3, [[21, -1], [18, -1]], ["owned", "owned"])
    assert batch.total == 13 and batch.weight(0) == pytest.approx(7 / 13)
    assert batch.global_rows(0) == 39 and batch.global_rows(1) is None


def test_a_killed_rank_stops_the_other_and_the_run_resumes_on_one_rank(spawned):
    """Rank 0 of a two-rank ``train()`` is killed after step 3: rank 1 stops with a clear
    error within seconds (no hang), and the run resumes from the step-3 checkpoint on a single
    process to the single-process result."""
    from qnewton.files import read_jsonl
    from qnewton.training import TrainConfig, train

    tmp_path, codes = spawned
    assert codes == [3, 0]
    outcomes = [(tmp_path / f"outcome{r}.txt").read_text(encoding="utf-8").split("\n", 1)
                for r in range(2)]
    assert outcomes[0][1] == "killed"
    message = outcomes[1][1]
    assert message.startswith("distributed-error: rank 1 of 2"), message
    assert "another rank has stopped" in message and "--resume" in message
    assert float(outcomes[1][0]) - float(outcomes[0][0]) < 20.0
    run = tmp_path / "run"
    assert not list(tmp_path.glob("**/*.tmp"))
    # the rank count may change on --resume: finish on one process
    config = TrainConfig(**workers.RUN_CONFIG)
    train(config, run, resume=True, progress=False)
    train(config, tmp_path / "single", progress=False, rates=workers.RATES)
    resumed = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    single = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=False)["model"]
    for name, ref in single.items():
        err = float((resumed[name].double() - ref.double()).abs().max() / ref.abs().max())
        assert err <= 1e-5, f"{name}: {err:.2e}"
    solves = read_jsonl(run / "solves.jsonl")
    assert {r["rank"] for r in solves if r["step"] < 3} == {0, 1}
    assert {r["rank"] for r in solves if r["step"] >= 3} == {None}
    assert [r["step"] for r in read_jsonl(run / "steps.jsonl")] == list(range(6))


def _failures(*entries):
    """``{rank: ProcessFailure}`` in the order given (the order the launcher saw them)."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    return {rank: ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=code, error_file="")
            for rank, code in entries}


@pytest.mark.parametrize(("entries", "first"), [
    # rank 1 killed; rank 0 lost its peer (exit 75) or was stopped by the launcher (SIGTERM)
    (((0, 75), (1, -9)), 1),
    (((0, -15), (1, -9)), 1),
    # rank 1 raised an error of its own; rank 0 stopped because of it
    (((0, 75), (1, 1)), 1),
    # both terminated: the one the launcher saw first
    (((1, -15), (0, -15)), 1),
])
def test_the_launcher_names_the_rank_that_stopped_first(monkeypatch, capsys, entries, first):
    import torch.distributed.launcher.api as launcher_api
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from qnewton.distributed.launch import first_failed_rank, launch

    failures = _failures(*entries)
    assert first_failed_rank(failures) == first

    def elastic_launch(config, entrypoint):
        def run(*args):
            raise ChildFailedError("qnewton", failures)
        return run

    monkeypatch.setattr(launcher_api, "elastic_launch", elastic_launch)
    code = launch(2, ["train"])
    err = capsys.readouterr().err
    assert f"rank {first} of 2" in err and "2 rank(s) stopped" in err
    expected = failures[first].exitcode
    assert code == (expected if 0 < expected < 256 else 1)


def test_a_rank_that_lost_its_peer_exits_with_the_peer_stopped_status(monkeypatch, capsys):
    import qnewton.training
    from qnewton.cli import main
    from qnewton.distributed import DistributedError
    from qnewton.distributed.context import PEER_STOPPED_EXIT

    def train(*args, **kwargs):
        raise DistributedError("rank 0 of 2: all-reduce failed; another rank has stopped")

    monkeypatch.setattr(qnewton.training, "train", train)
    code = main(["train", "--task", "digits", "--tiny", "--no-progress", "--out", "unused"])
    assert code == PEER_STOPPED_EXIT
    assert "another rank has stopped" in capsys.readouterr().err


@pytest.mark.parametrize(("policy", "reusing", "planned"), [
    ("auto", False, "auto"), ("auto", True, "never"), ("always", True, "always"),
    ("never", False, "never")])
def test_kept_curvature_on_mini_batches_splits_no_block_under_auto(policy, reusing, planned):
    """With curvature reuse a kept whole block costs its owner only the solve at reusing steps
    while a split one communicates at every step, so "auto" plans no split then; an explicit
    policy is kept."""
    from types import SimpleNamespace

    from qnewton.distributed.step import StepPath

    path = StepPath(split=policy)
    path._ctx, path._detected = SimpleNamespace(world=2), True
    path.reusing = reusing
    assert path.assignment(scheduler=None).policy == planned
