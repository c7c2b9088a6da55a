"""Issue 12 for the functional core: no silent zero rows, no meaningless numbers accepted, and
errors that name the argument before torch broadcasting or attribute lookups fail."""

from __future__ import annotations

import math

import pytest
import torch

from soft_infonce import functional as SF

BASELINES = (SF.weighted_infonce_loss, SF.bce_soft_label_loss, SF.kl_regularized_infonce_loss)


# --- false-negative cancellation: no row loses every negative ------------------------------


def test_threshold_keeps_every_negative_when_the_positive_scores_zero():
    # BM25 query-code: row 0 shares no word with its own code (positive 0); two negatives
    # share a word with the query. Before: threshold 0 cancelled all three negatives.
    sim = torch.tensor(
        [[0.0, 0.0, 2.0, 1.0], [0.5, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 4.0]]
    )
    w = SF.cancellation_weights(sim, "threshold", ratio=0.9)
    assert w[0].tolist() == [1, 1, 1, 1]  # positive not recognised: InfoNCE on that row
    assert w[2].tolist() == [1, 1, 1, 1]  # everything 0: nothing to say
    assert w[1].tolist() == [1, 1, 1, 1]  # no negative near 0.9 * 3
    assert w[3].tolist() == [1, 1, 1, 1]
    assert SF.unrecognised_positives(sim).tolist() == [True, False, True, False]


def test_threshold_keeps_the_least_similar_negative_when_all_are_close_to_the_positive():
    sim = torch.tensor([[10.0, 9.5, 9.2, 9.8], [1.0, 5.0, 6.0, 7.0]])
    w = SF.cancellation_weights(sim, "threshold", ratio=0.9)
    # row 0: every negative reaches 9.0; the least similar one (9.2) stays
    assert w[0].tolist() == [1, 0, 1, 0]
    # row 1: the positive (5.0) is below every negative but one (1.0): the estimator still
    # recognises it (5 > 1), so the two negatives above 4.5 go and the lowest stays
    assert w[1].tolist() == [1, 1, 0, 0]
    scores = torch.randn(2, 4, requires_grad=True)
    loss = SF.soft_infonce_loss(scores, w, reduction="none")
    assert (loss > 0).all()
    loss.sum().backward()
    assert (scores.grad.abs().sum(dim=1) > 0).all()  # every row still trains


def test_threshold_row_with_positive_below_every_negative_cancels_nothing():
    sim = torch.tensor([[0.1, 0.5, 0.7], [0.2, 0.9, 0.3], [0.4, 0.2, 0.8]])
    w = SF.cancellation_weights(sim, "threshold", ratio=0.5)
    assert w[0].tolist() == [1, 1, 1]
    assert SF.unrecognised_positives(sim)[0]


def test_threshold_on_a_real_bm25_batch_never_zeroes_a_row():
    from soft_infonce.estimators import BM25Estimator

    queries = ["sort a list", "open a file", "parse json text", "zzz qqq", "read lines"]
    codes = ["def f(x): return sorted(x)", "open(path)", "json.loads(s)", "x = 1", "f.readlines()"]
    sim = BM25Estimator(side="query-code")(queries, codes)
    w = SF.cancellation_weights(sim, "threshold")
    negatives_kept = (w * (1 - torch.eye(5))).sum(dim=1)
    assert (negatives_kept >= 1).all()


def test_top_k_must_keep_a_negative_and_k_must_be_an_int():
    sim = torch.randn(3, 3)
    assert SF.cancellation_weights(sim, "top_k", k=1).sum(dim=1).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 1\]"):
        SF.cancellation_weights(sim, "top_k", k=2)  # would cancel every negative
    with pytest.raises(TypeError, match="k must be an int"):
        SF.cancellation_weights(sim, "top_k", k=1.9)
    with pytest.raises(TypeError, match="k must be an int"):
        SF.cancellation_weights(sim, "top_k", k=True)
    with pytest.raises(ValueError, match="ratio"):
        SF.cancellation_weights(sim, "threshold", ratio=float("nan"))


def test_weights_cancelling_a_whole_row_are_refused():
    scores = torch.randn(2, 3)
    w = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"every negative of rows \[0\]"):
        SF.soft_infonce_loss(scores, w)


# --- numbers that make the loss meaningless ------------------------------------------------


@pytest.mark.parametrize("name", ["infonce_weight", "kl_weight"])
@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), -float("inf")])
def test_kl_term_weights_must_be_finite_and_non_negative(name, value):
    with pytest.raises(ValueError, match=name):
        SF.kl_regularized_infonce_loss(torch.randn(3, 3), torch.randn(3, 3), **{name: value})


def test_kl_term_weights_of_the_wrong_type_are_a_type_error():
    with pytest.raises(TypeError, match="kl_weight"):
        SF.kl_regularized_infonce_loss(torch.randn(3, 3), torch.randn(3, 3), kl_weight="1.3")
    zero = SF.kl_regularized_infonce_loss(torch.randn(3, 3), torch.randn(3, 3), kl_weight=0)
    assert torch.isfinite(zero)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"alpha": float("inf")}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"beta": float("inf")}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"min_weight": float("nan")}, "min_weight"),
    ],
)
def test_non_finite_weight_settings_are_named(kwargs, name):
    args = {"similarity": torch.randn(3, 3), "alpha": 1.3, "beta": 0.7, "temperature": 1.0}
    with pytest.raises(ValueError, match=f"^{name} must be a finite number"):
        SF.negative_weights(**(args | kwargs))


@pytest.mark.parametrize("name", ["alpha", "beta", "temperature", "min_weight"])
def test_bool_or_string_settings_are_a_type_error(name):
    args = {"similarity": torch.randn(3, 3), "alpha": 1.3, "beta": 0.7, "temperature": 1.0}
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError, match=name):
            SF.negative_weights(**(args | {name: bad}))


# --- shapes and types named before torch sees them -----------------------------------------


@pytest.mark.parametrize("loss", BASELINES)
def test_baselines_name_a_similarity_of_another_shape(loss):
    for shape in [(3, 4), (4, 3), (3,), (1, 3)]:
        with pytest.raises(ValueError, match=r"similarity must have the shape of scores \(3, 3\)"):
            loss(torch.randn(3, 3), torch.randn(*shape))


@pytest.mark.parametrize("loss", BASELINES)
def test_baselines_name_lists_given_for_tensors(loss):
    with pytest.raises(TypeError, match="similarity must be a torch.Tensor, got list"):
        loss(torch.randn(2, 2), [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TypeError, match="scores must be a torch.Tensor, got list"):
        loss([[0.0, 1.0], [1.0, 0.0]], torch.randn(2, 2))


def test_soft_infonce_names_lists_and_shapes():
    with pytest.raises(TypeError, match="weights must be a torch.Tensor, got list"):
        SF.soft_infonce_loss(torch.randn(2, 2), [[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"weights must have the shape of scores \(2, 2\)"):
        SF.soft_infonce_loss(torch.randn(2, 2), torch.ones(1, 2))
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        SF.soft_infonce_loss([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(TypeError, match="similarity must be a torch.Tensor"):
        SF.negative_weights([[1.0, 0.0]], 1.3, 0.7, 1.0)
    with pytest.raises(TypeError, match="labels"):
        SF.soft_infonce_loss(torch.randn(2, 2), labels="01")
    with pytest.raises(ValueError, match="reduction"):
        SF.soft_infonce_loss(torch.randn(2, 2), reduction=["mean"])


def test_list_labels_still_work():
    scores = torch.randn(2, 3)
    got = SF.soft_infonce_loss(scores, labels=[2, 0])
    want = -(torch.log_softmax(scores, 1)[0, 2] + torch.log_softmax(scores, 1)[1, 0]) / 2
    assert math.isclose(got.item(), want.item(), rel_tol=1e-6)


def test_bce_log_one_minus_p_is_exact_for_a_dominant_negative():
    # Row 0's negative scores 40 above the rest: p ~ 1 - 2e-17 rounds to 1 in float32, and
    # log(1 - p) taken as log(-expm1(log p)) was log(1e-38) = -87.5 instead of log 2 - 40.
    scores = torch.tensor([[0.0, 40.0, 0.0], [0.0, 1.0, 0.5], [0.3, 0.0, 2.0]])
    sim = torch.zeros(3, 3)
    got = SF.bce_soft_label_loss(scores, sim, reduction="none")
    s = scores.double()
    lse = torch.logsumexp(s, 1)
    want = []
    for i in range(3):
        total = 0.0
        for j in range(3):
            log_p = s[i, j] - lse[i]
            log_not_p = torch.logsumexp(s[i, [k for k in range(3) if k != j]], 0) - lse[i]
            y = 1.0 if j == i else 0.5  # uniform similarity: q = 1/2 on each negative
            total += y * max(log_p.item(), -100) + (1 - y) * max(log_not_p.item(), -100)
        want.append(-total / 3)
    assert torch.allclose(got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-5)
    assert math.isclose(got[0].item(), want[0], rel_tol=1e-6)


def test_cancellation_loss_counts_and_warns_about_unrecognised_positives(caplog):
    import logging

    from soft_infonce import FalseNegativeCancellationLoss

    # the same BM25-like rows as above: rows 0 and 2 have a positive scored like a stray negative
    sim = torch.tensor(
        [[0.0, 0.0, 2.0, 1.0], [0.5, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 4.0]]
    )
    loss_fn = FalseNegativeCancellationLoss(mode="threshold", ratio=0.9)
    q, c = torch.randn(4, 8), torch.randn(4, 8)
    loss = loss_fn(q, c, similarity=sim)
    # every weight is 1 here, so the loss is InfoNCE on these rows
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(q @ c.T, torch.arange(4)))
    with caplog.at_level(logging.WARNING):
        stats = loss_fn.statistics()
    assert stats["q2c/unrecognised_positives"] == 0.5
    assert stats["q2c/rows_without_negatives"] == 0
    assert "50.0% of rows" in caplog.text
    top_k = FalseNegativeCancellationLoss(mode="top_k", k=1)
    top_k(q, c, similarity=sim)
    assert "q2c/unrecognised_positives" not in top_k.statistics()
