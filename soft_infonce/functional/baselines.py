"""The losses the paper compares Soft-InfoNCE with (Section 6), in their pure forms."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from soft_infonce._kernels import positive_mask as _positive_mask
from soft_infonce.checks import check_number
from soft_infonce.functional.core import (
    Reduction,
    _check_reduction,
    _check_similarity,
    _reduce,
    _upcast,
    check_scores,
    default_labels,
    negative_distribution,
)

__all__ = [
    "bce_soft_label_loss",
    "cancellation_weights",
    "kl_regularized_infonce_loss",
    "unrecognised_positives",
    "weighted_infonce_loss",
]


@torch.no_grad()
def unrecognised_positives(
    similarity: torch.Tensor, positives: torch.Tensor | None = None
) -> torch.Tensor:
    """Rows whose positive the estimator does not recognise: it scores no higher than the
    row's least similar negative (e.g. BM25 when query and code share no word: the positive
    scores 0, like most negatives).

    On such a row the estimator says nothing about which negatives are false ones, so
    :func:`cancellation_weights` in ``threshold`` mode keeps all of that row's negatives.

    Args:
        similarity: ``[N, M]`` raw estimator scores.
        positives: positive column per row ``[N]``; the diagonal by default.

    Returns:
        ``[N]`` bool, True where the positive is not recognised.
    """
    check_scores(similarity, "similarity")
    labels = default_labels(similarity, positives, "positives")
    sim = similarity.detach().float()
    positive = sim.gather(1, labels[:, None]).squeeze(1)  # (N,)
    mask = _positive_mask(sim.shape, labels)
    lowest = sim.masked_fill(mask, float("inf")).amin(dim=1)  # (N,) least similar negative
    return positive <= lowest


@torch.no_grad()
def cancellation_weights(
    similarity: torch.Tensor,
    mode: Literal["top_k", "threshold"] = "top_k",
    k: int = 1,
    ratio: float = 0.9,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weights that drop suspected false negatives (0) and keep the rest (1).

    The paper's false-negative cancellation baseline (Section 6). No row ever loses all its
    negatives (its loss would be 0 with no gradient, silently):

    * ``top_k`` drops each row's ``k`` negatives with the highest similarity, ``k <= M - 2``.
    * ``threshold`` drops negative ``j`` of row ``i`` when the estimator scores it close to
      the positive and distinguishes it from the rest:
      ``sim_ij >= sim_ii - (1 - ratio) * |sim_ii|`` (``ratio`` times the positive's similarity
      when that is positive; for a negative one the threshold stays below it) **and**
      ``sim_ij > min_k sim_ik`` over the row's negatives. So the least similar negative(s) of
      every row are kept, and a row whose positive scores no higher than its least similar
      negative (:func:`unrecognised_positives`: the estimator does not recognise the positive,
      e.g. BM25 with no word shared by query and code) cancels nothing: it is InfoNCE.

    Args:
        similarity: ``[N, M]`` raw estimator scores.
        mode: ``"top_k"`` or ``"threshold"``.
        k: negatives dropped per row in ``top_k`` mode, an int in ``[0, M - 2]``.
        ratio: ``threshold`` mode's fraction of the positive's similarity, in ``(0, 1]``.
        positives: positive column per row ``[N]``; the diagonal by default.

    Returns:
        float32 ``[N, M]`` of zeros and ones; 1 at the positive; at least one negative kept
        per row.

    Examples:
        >>> cancellation_weights(torch.tensor([[9.0, 8.0, 1.0], [0.0, 9.0, 1.0]]), k=1)
        tensor([[1., 0., 1.],
                [1., 1., 0.]])
        >>> cancellation_weights(torch.tensor([[0.0, 0.0, 2.0], [0.0, 9.0, 1.0]]), "threshold")
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    if mode not in ("top_k", "threshold"):
        raise ValueError(f"mode must be 'top_k' or 'threshold', got {mode!r}")
    check_scores(similarity, "similarity")
    labels = default_labels(similarity, positives, "positives")
    sim = similarity.detach().float()
    positive_mask = _positive_mask(sim.shape, labels)
    keep = torch.ones_like(sim)
    if mode == "top_k":
        most = sim.shape[1] - 2
        k = check_number("k", k, low=0, integer=True)
        if k > most:
            raise ValueError(
                f"k must be an int in [0, {most}] (M - 2: each row keeps at least one of its "
                f"{most + 1} negatives), got {k!r}"
            )
        if k > 0:
            ranked = sim.masked_fill(positive_mask, float("-inf"))
            drop = ranked.topk(k, dim=1).indices  # (N, k)
            keep.scatter_(1, drop, 0.0)
    else:
        check_number("ratio", ratio, low=0.0, high=1.0, low_open=True)
        positive = sim.gather(1, labels[:, None])  # (N, 1)
        threshold = positive - (1 - ratio) * positive.abs()  # (N, 1)
        lowest = sim.masked_fill(positive_mask, float("inf")).amin(dim=1, keepdim=True)  # (N, 1)
        recognised = positive > lowest  # (N, 1)
        keep = ~((sim >= threshold) & (sim > lowest) & recognised)
        keep = keep.float()
    return keep.masked_fill(positive_mask, 1.0)


def weighted_infonce_loss(
    scores: torch.Tensor,
    similarity: torch.Tensor,
    temperature: float = 1.0,
    labels: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Weighted InfoNCE, the paper's first design alternative (Section 6).

    ``L_i = -log p_ii - sum_{j != i} q_ij log p_ij`` with ``p = softmax(scores)`` over all
    candidates and ``q`` the similarity softmax over the negatives (:func:`negative_distribution`).
    The estimated relevance acts as a soft target for the negatives, which pulls similar
    negatives *towards* the query; the paper shows this hurts. Choice made here (the paper
    gives no coefficient): the negative term has weight 1, as in the paper's experiments.

    Args:
        scores: ``[N, M]`` query-candidate scores.
        similarity: ``[N, M]`` raw estimator scores.
        temperature: softmax temperature of the similarity.
        labels: positive column per row ``[N]``; the diagonal by default.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Returns:
        The float32 loss (``[N]`` for ``reduction="none"``).

    Examples:
        >>> weighted_infonce_loss(torch.randn(4, 4), torch.randn(4, 4)).shape
        torch.Size([])
    """
    check_scores(scores)
    _check_similarity(similarity, scores)
    _check_reduction(reduction)
    labels = default_labels(scores, labels)
    q = negative_distribution(similarity, temperature, labels)  # (N, M), 0 at positives
    log_p = torch.log_softmax(_upcast(scores), dim=1)  # (N, M)
    loss = -log_p.gather(1, labels[:, None]).squeeze(1) - (q * log_p).sum(dim=1)
    return _reduce(loss, reduction)


def bce_soft_label_loss(
    scores: torch.Tensor,
    similarity: torch.Tensor,
    temperature: float = 1.0,
    labels: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Binary cross-entropy with soft labels, the paper's second design alternative (Section 6).

    Each candidate's softmax probability ``p_ij`` is a binary prediction against a soft label:
    1 for the positive and ``q_ij`` (the similarity softmax over negatives) for each negative:
    ``L_i = -1/M sum_j [y_ij log p_ij + (1 - y_ij) log(1 - p_ij)]``. Choice made here: the
    average over the ``M`` candidates of a row, as ``torch.nn.BCELoss`` averages.

    Args:
        scores: ``[N, M]`` query-candidate scores.
        similarity: ``[N, M]`` raw estimator scores.
        temperature: softmax temperature of the similarity.
        labels: positive column per row ``[N]``; the diagonal by default.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Returns:
        The float32 loss (``[N]`` for ``reduction="none"``).

    Examples:
        >>> bce_soft_label_loss(torch.randn(4, 4), torch.randn(4, 4)).shape
        torch.Size([])
    """
    check_scores(scores)
    _check_similarity(similarity, scores)
    _check_reduction(reduction)
    labels = default_labels(scores, labels)
    q = negative_distribution(similarity, temperature, labels)  # (N, M)
    targets = q.masked_fill(_positive_mask(q.shape, labels), 1.0)
    logits = _upcast(scores)  # (N, M)
    log_p = torch.log_softmax(logits, dim=1)
    log_not_p = _log_one_minus_softmax(logits, log_p).clamp_min(-100.0)  # floored like BCELoss
    log_p = log_p.clamp_min(-100.0)
    loss = -(targets * log_p + (1 - targets) * log_not_p).mean(dim=1)
    return _reduce(loss, reduction)


def _log_one_minus_softmax(logits: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``log(1 - p_ij)`` of ``p = softmax(logits)`` without cancellation.

    For every candidate but the row's largest, ``p_ij <= 1/2`` and ``log(-expm1(log p_ij))`` is
    exact. For the largest, ``p`` may round to 1 (then ``log p = 0`` and that form is ``-inf``),
    so it uses ``log sum_{k != j} e^{s_ik} - log sum_k e^{s_ik}`` instead.
    """
    top = logits.argmax(dim=1, keepdim=True)  # (N, 1)
    is_top = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top, True)  # (N, M)
    lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (N, 1)
    rest = torch.logsumexp(logits.masked_fill(is_top, float("-inf")), dim=1, keepdim=True)
    general = torch.log(-torch.expm1(log_p.masked_fill(is_top, -1.0)))  # (N, M), finite
    return torch.where(is_top, rest - lse, general)


def kl_regularized_infonce_loss(
    scores: torch.Tensor,
    similarity: torch.Tensor,
    temperature: float = 1.0,
    infonce_weight: float = 0.7,
    kl_weight: float = 1.3,
    labels: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """InfoNCE plus a KL regulariser, the paper's third design alternative (Section 6).

    ``L_i = infonce_weight * InfoNCE_i + kl_weight * KL(q_i || softmax(s_i over negatives))``:
    the model's distribution over the negatives is pulled towards the estimated one. The
    defaults 0.7 / 1.3 mirror the paper's beta / alpha.

    Args:
        scores: ``[N, M]`` query-candidate scores.
        similarity: ``[N, M]`` raw estimator scores.
        temperature: softmax temperature of the similarity.
        infonce_weight: weight of the InfoNCE term, finite and ``>= 0``.
        kl_weight: weight of the KL term, finite and ``>= 0``.
        labels: positive column per row ``[N]``; the diagonal by default.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Returns:
        The float32 loss (``[N]`` for ``reduction="none"``).

    Examples:
        >>> kl_regularized_infonce_loss(torch.randn(4, 4), torch.randn(4, 4)).shape
        torch.Size([])
    """
    check_scores(scores)
    _check_similarity(similarity, scores)
    check_number("infonce_weight", infonce_weight, low=0.0)
    check_number("kl_weight", kl_weight, low=0.0)
    _check_reduction(reduction)
    labels = default_labels(scores, labels)
    positive_mask = _positive_mask(scores.shape, labels)
    q = negative_distribution(similarity, temperature, labels)  # (N, M)
    logits = _upcast(scores)
    infonce = F.cross_entropy(logits, labels, reduction="none")  # (N,)
    log_p_neg = torch.log_softmax(logits.masked_fill(positive_mask, float("-inf")), dim=1)
    log_q = q.clamp_min(1e-38).log()
    kl = torch.where(q > 0, q * (log_q - log_p_neg), torch.zeros_like(q)).sum(dim=1)  # (N,)
    return _reduce(infonce_weight * infonce + kl_weight * kl, reduction)
