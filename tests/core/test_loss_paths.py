"""The shared seam of the loss modules: host syncs, statistics per direction, hard-negative
columns, dtypes and the messages of bad inputs."""

from __future__ import annotations

import logging

import pytest
import torch

from soft_infonce import (
    FalseNegativeCancellationLoss,
    InfoNCELoss,
    SoftInfoNCELoss,
    WeightEstimator,
)
from soft_infonce import functional as SF


def embeddings(n=6, m=None, dim=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, dim, generator=g, dtype=dtype, requires_grad=True)
    c = torch.randn(m or n, dim, generator=g, dtype=dtype, requires_grad=True)
    return q, c


class SyncCounter:
    """Counts Python-level conversions of tensor values to host values."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero", "numpy")

    def __init__(self, monkeypatch) -> None:
        self.calls: list[str] = []
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(*args, _name=name, _original=original, **kwargs):
                self.calls.append(_name)
                return _original(*args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("extra", [0, 5])
def test_a_training_step_makes_no_host_sync(monkeypatch, symmetric, extra):
    q, c = embeddings(n=6, m=6 + extra)
    sim = torch.rand(6, 6 + extra)
    losses = [
        SoftInfoNCELoss.from_preset("bm25", symmetric=symmetric, scale=5.0),
        InfoNCELoss(symmetric=symmetric),
    ]
    counter = SyncCounter(monkeypatch)
    for loss_fn in losses:
        loss_fn(q, c, sim).backward()
    assert counter.calls == []
    bool(torch.ones(()))  # the counter does count
    assert counter.calls == ["__bool__"]
    monkeypatch.undo()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_validation_catches_nan_also_in_training_without_a_host_sync():
    bad = torch.full((3, 4), float("nan"))
    with pytest.raises(ValueError, match="query_embeddings contains NaN"):
        InfoNCELoss()(bad, torch.randn(3, 4))
    q = bad.clone().requires_grad_()
    with pytest.raises(ValueError, match="query_embeddings contains NaN"):  # device-side assert
        InfoNCELoss()(q, torch.randn(3, 4))
    assert torch.isnan(InfoNCELoss(validate=False)(q, torch.randn(3, 4)))  # opted out
    with pytest.raises(ValueError, match="candidate_embeddings contains NaN"):
        InfoNCELoss(validate=True)(torch.randn(3, 4, requires_grad=True), bad)
    with pytest.raises(ValueError, match="similarity contains NaN"):
        SoftInfoNCELoss()(torch.randn(3, 4, requires_grad=True), torch.randn(3, 4), bad[:, :3])


def test_symmetric_statistics_are_kept_per_direction():
    q, c = embeddings(n=5)
    sim = torch.randn(5, 5) * 3
    loss_fn = SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=1.0, symmetric=True)
    loss_fn(q, c, sim)
    stats = loss_fn.statistics()
    off = ~torch.eye(5, dtype=torch.bool)
    for direction, s in (("q2c", sim), ("c2q", sim.T)):
        w = SF.negative_weights(s, 1.3, 0.7, 1.0)[off]
        assert stats[f"{direction}/weight_mean"] == pytest.approx(w.mean().item(), abs=1e-6)
        assert stats[f"{direction}/weight_min"] == pytest.approx(w.min().item(), abs=1e-6)
        assert stats[f"{direction}/weight_max"] == pytest.approx(w.max().item(), abs=1e-6)
        clamped = (w <= 0.1 + 1e-7).float().mean().item()
        assert stats[f"{direction}/weight_clamped"] == pytest.approx(clamped, abs=1e-6)
    assert stats["q2c/weight_max"] != pytest.approx(stats["c2q/weight_max"])


def test_candidate_columns_equal_one_candidate_matrix():
    q, c = embeddings(n=4, m=12)
    sim = torch.rand(4, 12)
    loss_fn = SoftInfoNCELoss.from_preset("bm25")
    as_matrix = loss_fn.compute_loss_from_embeddings(q, c, similarity=sim)
    columns = loss_fn.compute_loss_from_embeddings(q, list(c.split(4)), similarity=sim)
    assert torch.equal(as_matrix, columns)
    ref = SF.soft_infonce_loss(q @ c.T, SF.negative_weights(sim, 1.5, 0.5, 1.0))
    assert as_matrix.item() == pytest.approx(ref.item(), abs=1e-6)


class PairedQueryEstimator(WeightEstimator):
    """Relevance 1 when the candidate's paired query shares the query's first word."""

    requires_candidate_queries = True

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def similarity(self, queries, codes, candidate_queries=None):
        self.calls.append((list(queries), list(codes), list(candidate_queries)))
        return torch.tensor(
            [[float(a.split()[0] == b.split()[0]) for b in candidate_queries] for a in queries]
        )


def test_hard_negatives_reach_the_estimator_with_their_paired_queries():
    queries = ["sort a list", "read a file", "parse json"]
    negative_queries = ["sort by key", "write a file", "read json"]
    codes = ["p0", "p1", "p2", "n0", "n1", "n2"]
    est = PairedQueryEstimator()
    loss_fn = SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=1.0, estimator=est)
    q, c = embeddings(n=3, m=6)
    texts = {"queries": queries, "codes": codes, "candidate_queries": queries + negative_queries}
    loss = loss_fn.compute_loss_from_embeddings(q, c, texts)
    assert est.calls == [(queries, codes, queries + negative_queries)]
    sim = est(queries, codes, queries + negative_queries)
    assert sim[0, 3] == 1 and sim[2, 5] == 0  # "sort" ~ "sort by key"; "parse" !~ "read json"
    ref = SF.soft_infonce_loss(q @ c.T, SF.negative_weights(sim, 1.3, 0.7, 1.0))
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)


@pytest.mark.parametrize(
    "texts,error,match",
    [
        (
            {"queries": ["a", "b"], "codes": ["x", "y", "z"]},
            ValueError,
            r"queries must hold one text per row of the query_embeddings \(3\), got 2",
        ),
        (
            {"queries": ["a", "b", "c"], "codes": ["x"]},
            ValueError,
            r"codes must hold one text per row of the candidate embeddings \(3\), got 1",
        ),
        ({"queries": "abc", "codes": ["x", "y", "z"]}, TypeError, "queries must be a list of str"),
        (
            {"queries": ["a", "b", "c"], "codes": ["x", "y", "z"], "candidate_queries": ["a"]},
            ValueError,
            "candidate_queries must hold one text per row",
        ),
    ],
)
def test_text_counts_name_the_argument(texts, error, match):
    loss_fn = SoftInfoNCELoss(estimator=PairedQueryEstimator())
    q, c = embeddings(n=3)
    with pytest.raises(error, match=match):
        loss_fn.compute_loss_from_embeddings(q, c, texts)


def test_lists_where_tensors_are_expected_raise_type_errors():
    q, c = embeddings(n=3)
    with pytest.raises(TypeError, match="query_embeddings must be a torch.Tensor"):
        InfoNCELoss()(q.tolist(), c)
    with pytest.raises(TypeError, match="code_embeddings must be a"):  # forward's own name
        InfoNCELoss()(q, c.tolist()[0][0])
    with pytest.raises(TypeError, match="candidate_embeddings must be a"):  # the seam's
        InfoNCELoss().compute_loss_from_embeddings(q, c.tolist()[0][0])
    with pytest.raises(TypeError, match="similarity must be a torch.Tensor"):
        SoftInfoNCELoss()(q, c, [[0.0] * 3] * 3)


def test_float64_stays_float64_end_to_end():
    q, c = embeddings(n=5, m=7, dtype=torch.float64)
    sim = torch.rand(5, 7, dtype=torch.float64)
    loss = SoftInfoNCELoss(temperature=0.5, scale=3.0)(q, c, sim)
    assert loss.dtype == torch.float64
    ref = SF.soft_infonce_loss(3.0 * q @ c.T, SF.negative_weights(sim, 1.3, 0.7, 0.5))
    assert ref.dtype == torch.float64
    assert abs(loss.item() - ref.item()) < 1e-6  # the weights are float32 in the reference
    (gq,) = torch.autograd.grad(loss, q)
    assert gq.dtype == torch.float64


def test_cancellation_counts_rows_left_without_negatives(caplog):
    q, c = embeddings(n=4)
    sim = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [1.0, 5.0, 1.0, 1.0], [2.0, 2.0, 9.0, 1.0], [1.0, 1.0, 1.0, 8.0]]
    )
    loss_fn = FalseNegativeCancellationLoss(mode="threshold", ratio=0.9)
    loss_fn(q, c, sim)
    weights = SF.cancellation_weights(sim, "threshold", ratio=0.9)
    empty = int((weights.sum(dim=1) == 1).sum())  # rows whose only weight is the positive's
    with caplog.at_level(logging.WARNING, logger="soft_infonce.losses"):
        stats = loss_fn.statistics()
        loss_fn.statistics()
    assert stats["q2c/rows_without_negatives"] == empty
    negatives = 4 * 3
    assert stats["q2c/cancelled"] == pytest.approx(float((weights == 0).sum()) / negatives)
    warned = [r for r in caplog.records if "cancelled every negative" in r.message]
    assert len(warned) == (1 if empty else 0)


def test_a_self_guided_estimator_gets_the_losss_own_scores(monkeypatch):
    from soft_infonce.estimators import SelfGuidedEstimator

    q, c = embeddings(n=5, m=8)
    loss_fn = SoftInfoNCELoss(estimator=SelfGuidedEstimator(), scale=4.0, symmetric=True)
    assert loss_fn.temperature == 5.0  # its preset: the trained model's own scale
    counter = SyncCounter(monkeypatch)
    loss = loss_fn(q, c)  # no texts needed
    loss.backward()
    assert counter.calls == []
    monkeypatch.undo()
    scores = 4.0 * q.detach() @ c.detach().T
    forward = SF.soft_infonce_loss(scores, SF.negative_weights(scores, 1.3, 0.7, 5.0))
    codes_side = scores[:, :5].T
    backward = SF.soft_infonce_loss(codes_side, SF.negative_weights(codes_side, 1.3, 0.7, 5.0))
    assert loss.item() == pytest.approx(0.5 * (forward + backward).item(), abs=1e-6)
