"""Numbers the core refuses: scores computed from finite embeddings that overflow (the losses
and the ranking), rankings of no query, non-finite BM25 settings."""

from __future__ import annotations

import pytest
import torch

from soft_infonce import InfoNCELoss, SoftInfoNCELoss
from soft_infonce.estimators import BM25Estimator
from soft_infonce.metrics import mean_reciprocal_rank, retrieval_metrics, target_ranks

QUERIES = ["read a file", "sort a list", "open a path", "sum numbers", "split text", "parse"]


def _huge(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)  # finite float32 (norms ~1e20) whose products overflow
    return torch.randn(n, 8) * 1e20, torch.randn(m, 8) * 1e20


@pytest.mark.parametrize("validate", [None, True])
@pytest.mark.parametrize(
    "make",
    [lambda v: InfoNCELoss(validate=v),
     lambda v: InfoNCELoss(symmetric=True, validate=v),
     lambda v: SoftInfoNCELoss(estimator=BM25Estimator(side="query-code"), validate=v)],
    ids=["infonce", "symmetric", "soft"],
)  # fmt: skip
def test_overflowing_scores_are_refused(make, validate) -> None:
    q, c = _huge(6, 6)
    assert torch.isfinite(q).all() and torch.isfinite(c).all()
    with pytest.raises(ValueError, match=r"scores .* NaN or infinite"):
        make(validate)(q, c, queries=QUERIES, codes=QUERIES)


def test_the_unchecked_path_still_returns_a_value() -> None:
    q, c = _huge(6, 6)
    assert torch.isnan(InfoNCELoss(validate=False)(q, c))  # asked for: no check at all


def test_finite_large_scores_pass() -> None:
    q, c = _huge(6, 6)
    loss = InfoNCELoss(validate=True)(q / 1e18, c / 1e18)  # scores ~1e4: finite
    assert torch.isfinite(loss)


@pytest.mark.parametrize("factor", [1.0, 10.0])  # inf scores, then inf - inf = NaN ones
def test_target_ranks_refuses_non_finite_scores(factor: float) -> None:
    q, c = _huge(4, 5)
    with pytest.raises(ValueError, match="NaN or infinite scores"):
        target_ranks(q * factor / 10, c, [0, 1, 2, 3])


def test_rankings_need_queries() -> None:
    with pytest.raises(ValueError, match="no queries to rank"):
        target_ranks(torch.empty(0, 8), torch.randn(3, 8), [])
    with pytest.raises(ValueError, match="no queries to rank"):
        mean_reciprocal_rank(torch.empty(0, 3), [])
    with pytest.raises(ValueError, match="no codes to rank"):
        target_ranks(torch.randn(2, 8), torch.empty(0, 8), [0, 0])
    with pytest.raises(ValueError, match="non-empty"):
        retrieval_metrics([])


@pytest.mark.parametrize(
    ("name", "value"),
    [("k1", float("inf")), ("k1", float("nan")), ("epsilon", float("inf")), ("b", float("nan"))],
)
def test_bm25_refuses_non_finite_settings_by_name(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must"):
        BM25Estimator(**{name: value})


@pytest.mark.parametrize(
    ("alpha", "beta", "fewest"),
    [
        (1.5, 0.5, 5),
        (1.3, 0.7, 3),
        (3.0, 1.0, 5),
        (2.0, 1.0, 4),
        (0.0, 0.7, 2),
        (1e6, 1.0, 10**6 + 2),
    ],
)
def test_min_candidates_is_the_bound_of_eq_4(alpha: float, beta: float, fewest: int) -> None:
    loss = SoftInfoNCELoss(alpha=alpha, beta=beta)
    assert loss.min_candidates == fewest  # beta - alpha / (M - 1) > 0, by hand
    if fewest > 10:
        return
    torch.manual_seed(0)
    q, similarity = torch.randn(2, 4), torch.rand(2, fewest)
    assert torch.isfinite(loss(q, torch.randn(fewest, 4), similarity))
    if fewest > 2:
        with pytest.raises(ValueError, match=r"beta - alpha / \(M - 1\) must be > 0"):
            loss(q, torch.randn(fewest - 1, 4), similarity[:, :-1])
