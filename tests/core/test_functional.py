"""The loss core against direct transcriptions of the paper's equations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from soft_infonce import functional as SF


def loop_weights(sim, alpha, beta, t, min_weight, positives):
    """Eq. 4 written out element by element, in float64."""
    n, m = len(sim), len(sim[0])
    w = [[1.0] * m for _ in range(n)]
    for i in range(n):
        negs = [j for j in range(m) if j != positives[i]]
        z = sum(math.exp(sim[i][k] / t) for k in negs)
        p = {j: math.exp(sim[i][j] / t) / z for j in negs}
        denom = beta - alpha / (m - 1) * sum(p.values())
        for j in negs:
            w[i][j] = max((beta - alpha * p[j]) / denom, min_weight)
    return w


def loop_loss(scores, w, positives):
    """Eq. 3 written out element by element, in float64."""
    n, m = len(scores), len(scores[0])
    total = 0.0
    for i in range(n):
        pos = math.exp(scores[i][positives[i]])
        neg = sum(w[i][j] * math.exp(scores[i][j]) for j in range(m) if j != positives[i])
        total += -math.log(pos / (pos + neg))
    return total / n


def test_infonce_is_the_uniform_case():
    torch.manual_seed(0)
    scores = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    ref_scores = scores.detach().clone().requires_grad_(True)
    uniform = torch.zeros(6, 6)
    w = SF.negative_weights(uniform, alpha=1.0, beta=1.0, temperature=0.7)
    loss = SF.soft_infonce_loss(scores, w)
    ref = F.cross_entropy(ref_scores, torch.arange(6))
    loss.backward()
    ref.backward()
    assert torch.allclose(w, torch.ones(6, 6), atol=1e-6)
    assert abs(loss.item() - ref.item()) < 1e-6
    assert torch.allclose(scores.grad, ref_scores.grad.float().double(), atol=1e-6)


def test_alpha_zero_is_infonce_for_any_similarity():
    torch.manual_seed(1)
    scores = torch.randn(5, 9, requires_grad=True)
    ref_scores = scores.detach().clone().requires_grad_(True)
    w = SF.negative_weights(torch.randn(5, 9) * 4, alpha=0.0, beta=0.7, temperature=0.1)
    loss = SF.soft_infonce_loss(scores, w)
    ref = F.cross_entropy(ref_scores, torch.arange(5))
    loss.backward()
    ref.backward()
    assert abs(loss.item() - ref.item()) < 1e-6
    assert torch.allclose(scores.grad, ref_scores.grad, atol=1e-6)


@pytest.mark.parametrize("n,m", [(4, 4), (3, 8), (16, 16)])
def test_unclamped_negative_weights_sum_to_m_minus_one(n, m):
    torch.manual_seed(n * m)
    sim = torch.randn(n, m) * 3
    # alpha < beta keeps every weight positive, so a tiny clamp never binds.
    w = SF.negative_weights(sim, alpha=0.6, beta=0.9, temperature=0.5, min_weight=1e-12)
    neg_sum = w.sum(dim=1) - 1.0  # the positive has weight exactly 1
    assert torch.allclose(neg_sum, torch.full((n,), float(m - 1)), atol=1e-4)
    assert torch.all(w.diagonal() == 1.0)


def test_weights_match_the_loop_transcription_including_clamped_rows():
    gen = torch.Generator().manual_seed(2)
    clamped_seen = 0
    for trial in range(25):
        n = int(torch.randint(2, 7, (1,), generator=gen))
        m = n + int(torch.randint(0, 5, (1,), generator=gen))
        alpha = float(torch.rand(1, generator=gen)) * 2.0
        beta = 0.3 + float(torch.rand(1, generator=gen))
        if beta - alpha / (m - 1) <= 0.05:
            alpha = 0.5 * beta * (m - 1)
        t = 0.05 + float(torch.rand(1, generator=gen)) * 3
        sim = torch.randn(n, m, generator=gen, dtype=torch.float64) * 2
        positives = torch.randperm(m, generator=gen)[:n]
        w = SF.negative_weights(sim, alpha, beta, t, min_weight=0.1, positives=positives)
        ref = torch.tensor(
            loop_weights(sim.tolist(), alpha, beta, t, 0.1, positives.tolist()), dtype=torch.float64
        )
        assert torch.allclose(w.double(), ref, atol=1e-5), trial
        clamped_seen += int((ref == 0.1).sum())
        scores = torch.randn(n, m, generator=gen, dtype=torch.float64) * 3
        loss = SF.soft_infonce_loss(scores, w, labels=positives)
        expected = loop_loss(scores.tolist(), ref.tolist(), positives.tolist())
        assert abs(loss.item() - expected) < 1e-5, trial
    assert clamped_seen > 0, "the trials must include rows where the clamp binds"


def test_gradient_follows_eq5():
    """dL_i/d e^{s_ij} = w_ij / Z_i for negatives and 1/Z_i - 1/e^{s_ii} for the positive."""
    torch.manual_seed(3)
    n = 4
    exp_s = torch.rand(n, n, dtype=torch.float64) * 3 + 0.1
    exp_s.requires_grad_(True)
    w = SF.negative_weights(torch.randn(n, n), 1.3, 0.7, 0.5).double()
    loss = SF.soft_infonce_loss(exp_s.log(), w, reduction="sum")
    loss.backward()
    x = exp_s.detach()
    z = (w * x).sum(dim=1, keepdim=True)  # w_ii = 1
    expected = w / z
    expected = expected - torch.diag(1.0 / x.diagonal())
    assert torch.allclose(exp_s.grad, expected, atol=1e-5)


def test_weights_carry_no_gradient():
    sim = torch.randn(4, 4, requires_grad=True)
    w = SF.negative_weights(sim, 1.3, 0.7, 1.0)
    assert not w.requires_grad
    scores = torch.randn(4, 4, requires_grad=True)
    SF.soft_infonce_loss(scores, sim.exp()).backward()
    assert sim.grad is None


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(finite, min_size=9, max_size=9),
    sim=st.lists(finite, min_size=9, max_size=9),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
)
def test_finite_loss_and_gradients_for_any_finite_scores(data, sim, dtype):
    scores = torch.tensor(data).view(3, 3).to(dtype).requires_grad_(True)
    w = SF.negative_weights(torch.tensor(sim).view(3, 3).to(dtype), 1.3, 0.7, 0.1)
    loss = SF.soft_infonce_loss(scores, w)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert torch.isfinite(scores.grad.float()).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8))
def test_loss_is_invariant_to_permuting_the_batch(seed, n):
    g = torch.Generator().manual_seed(seed)
    scores, sim = torch.randn(n, n, generator=g) * 5, torch.randn(n, n, generator=g)
    perm = torch.randperm(n, generator=g)
    w = SF.negative_weights(sim, 1.5, 0.5 + 1.5 / (n - 1), 1.0)
    w_p = SF.negative_weights(sim[perm][:, perm], 1.5, 0.5 + 1.5 / (n - 1), 1.0)
    a = SF.soft_infonce_loss(scores, w)
    b = SF.soft_infonce_loss(scores[perm][:, perm], w_p)
    assert abs(a.item() - b.item()) < 1e-5


def test_zero_weight_cancels_a_negative():
    scores = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    w = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    loss = SF.soft_infonce_loss(scores, w, reduction="none")
    assert abs(loss[0].item() - (-math.log(math.exp(2) / (math.exp(2) + math.exp(0.5))))) < 1e-6


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scores": torch.randn(3)}, "2-D"),
        ({"scores": torch.randn(1, 1)}, "negative"),
        ({"scores": torch.randn(0, 4)}, "empty"),
        ({"scores": torch.randn(4, 3)}, "M >= N"),
        ({"scores": torch.tensor([[0.0, float("nan")], [1.0, 2.0]])}, "NaN"),
        ({"scores": torch.tensor([[0.0, float("inf")], [1.0, 2.0]])}, "infinite"),
        ({"scores": torch.randn(2, 3), "labels": torch.tensor([0, 3])}, "labels"),
        ({"scores": torch.randn(2, 3), "labels": torch.tensor([0])}, "labels"),
        ({"scores": torch.randn(2, 2), "weights": torch.ones(2, 3)}, "weights"),
        ({"scores": torch.randn(2, 2), "weights": -torch.ones(2, 2)}, "weights"),
        ({"scores": torch.randn(2, 2), "reduction": "avg"}, "reduction"),
    ],
)
def test_bad_loss_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SF.soft_infonce_loss(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"min_weight": 0.0}, "min_weight"),
        ({"min_weight": 1.5}, "min_weight"),
        ({"alpha": 3.0, "beta": 0.5}, "beta - alpha"),
        ({"similarity": torch.tensor([[0.0, float("nan")], [1.0, 2.0]])}, "similarity"),
    ],
)
def test_bad_weight_input_is_named(kwargs, match):
    args = {"similarity": torch.randn(3, 3), "alpha": 1.3, "beta": 0.7, "temperature": 1.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SF.negative_weights(**args)


def test_weighted_infonce_matches_transcription():
    torch.manual_seed(4)
    scores, sim = torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    loss = SF.weighted_infonce_loss(scores, sim, temperature=0.5)
    total = 0.0
    for i in range(4):
        log_p = torch.log_softmax(scores[i], 0)
        negs = [j for j in range(4) if j != i]
        q = torch.softmax(sim[i, negs] / 0.5, 0)
        total += -log_p[i] - sum(q[k] * log_p[j] for k, j in enumerate(negs))
    assert abs(loss.item() - total.item() / 4) < 1e-5


def test_bce_matches_torch_bce_on_softmax():
    torch.manual_seed(5)
    scores, sim = torch.randn(5, 5), torch.randn(5, 5)
    targets = torch.zeros(5, 5)
    for i in range(5):
        negs = [j for j in range(5) if j != i]
        targets[i, negs] = torch.softmax(sim[i, negs], 0)
        targets[i, i] = 1.0
    ref = torch.nn.BCELoss()(torch.softmax(scores, 1), targets)
    assert abs(SF.bce_soft_label_loss(scores, sim, 1.0).item() - ref.item()) < 1e-5


def test_kl_regularised_matches_torch_kl():
    torch.manual_seed(6)
    scores, sim = torch.randn(5, 5), torch.randn(5, 5)
    off = ~torch.eye(5, dtype=torch.bool)
    log_p_neg = torch.log_softmax(scores[off].view(5, 4), 1)
    q = torch.softmax(sim[off].view(5, 4) / 2.0, 1)
    kl = torch.nn.KLDivLoss(reduction="batchmean")(log_p_neg, q)
    ref = 0.7 * F.cross_entropy(scores, torch.arange(5)) + 1.3 * kl
    got = SF.kl_regularized_infonce_loss(scores, sim, temperature=2.0)
    assert abs(got.item() - ref.item()) < 1e-5


def test_cancellation_top_k_and_threshold_by_hand():
    sim = torch.tensor([[10.0, 9.5, 1.0, 5.0], [2.0, 4.0, 3.9, -1.0]])
    top1 = SF.cancellation_weights(sim, "top_k", k=1)
    assert top1.tolist() == [[1, 0, 1, 1], [1, 1, 0, 1]]
    top2 = SF.cancellation_weights(sim, "top_k", k=2)
    assert top2.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    # threshold 0.9 * positive: row 0 drops 9.5 (>= 9.0); row 1 drops 3.9 (>= 3.6)
    thr = SF.cancellation_weights(sim, "threshold", ratio=0.9)
    assert thr.tolist() == [[1, 0, 1, 1], [1, 1, 0, 1]]
    with pytest.raises(ValueError, match="mode"):
        SF.cancellation_weights(sim, "bottom")
    with pytest.raises(ValueError, match="k must"):
        SF.cancellation_weights(sim, "top_k", k=4)
