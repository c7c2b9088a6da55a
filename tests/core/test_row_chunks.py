"""Scoring a batch a few query rows at a time: the same loss, gradients and statistics."""

from __future__ import annotations

import pytest
import torch

from soft_infonce import InfoNCELoss, SoftInfoNCELoss
from soft_infonce.estimators import BM25Estimator, SelfGuidedEstimator

QUERIES = ["read a json file", "sort a list", "open a path", "sum the numbers", "split text",
           "parse an int", "get a value"]  # fmt: skip
CODES = [f"def f{i}(x): return {q.replace(' ', '_')}(x)" for i, q in enumerate(QUERIES)]
CODES += ["def g(x): return json.load(x)", "def h(x): return sorted(x)", "def k(): pass"]


def _run(loss, rows: int | None, similarity=None):
    torch.manual_seed(0)
    q = torch.randn(7, 16, dtype=torch.float64, requires_grad=True)
    c = torch.randn(10, 16, dtype=torch.float64, requires_grad=True)
    texts = {"queries": QUERIES, "codes": CODES}
    value = loss.compute_loss_from_embeddings(
        q * 1.0, c * 1.0, texts, similarity, rows_per_chunk=rows
    )
    if rows is None:
        value.backward()
    return value.detach(), q.grad, c.grad, dict(loss.last_statistics)


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 50])
@pytest.mark.parametrize(
    "make",
    [
        lambda: SoftInfoNCELoss(estimator=BM25Estimator(side="query-code"), alpha=0.5, beta=1.0),
        lambda: SoftInfoNCELoss(estimator=SelfGuidedEstimator(), alpha=0.5, beta=1.0),
        lambda: InfoNCELoss(scale=3.0),
    ],
    ids=["bm25", "self-guided", "infonce"],
)
def test_chunks_give_the_loss_gradients_and_statistics_of_the_whole_batch(make, rows) -> None:
    whole, chunked = _run(make(), None), _run(make(), rows)
    assert chunked[0].grad_fn is None  # already back-propagated
    for a, b in zip(whole[:3], chunked[:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert whole[3].keys() == chunked[3].keys()
    for key in whole[3]:
        torch.testing.assert_close(whole[3][key].double(), chunked[3][key].double())


def test_a_given_similarity_is_split_by_rows() -> None:
    similarity = torch.rand(7, 10, dtype=torch.float64)
    whole = _run(SoftInfoNCELoss(alpha=0.5, beta=1.0), None, similarity)
    chunked = _run(SoftInfoNCELoss(alpha=0.5, beta=1.0), 3, similarity)
    for a, b in zip(whole[:3], chunked[:3]):
        torch.testing.assert_close(a, b)


def test_bad_chunk_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rows_per_chunk"):
        _run(InfoNCELoss(), 0)
    with pytest.raises(ValueError, match="symmetric"):
        _run(InfoNCELoss(symmetric=True), 2)
