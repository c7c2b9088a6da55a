"""Pure functional forms of Soft-InfoNCE and the losses the paper compares it with.

Every loss here takes a score matrix ``scores`` of shape ``[N, M]``: row ``i`` is query ``i``
scored against ``M >= N`` candidate codes (the in-batch codes, then any extra candidates such
as hard negatives or codes gathered from other devices). ``labels[i]`` is the column of query
``i``'s positive (the diagonal by default). Weights never carry gradient, and every
log-sum-exp runs in float32 at least (float64 input stays float64).

The central identity (paper, Eq. 3): ``sum_j w_ij exp(s_ij) = sum_j exp(s_ij + log w_ij)``, so
Soft-InfoNCE is cross-entropy on ``scores + log(weights)``. InfoNCE is ``log w = 0`` and
false-negative cancellation is ``log w = -inf``.
"""

# Over 300 lines for a reason: DESIGN.md gives the pure forms of every loss one home, and about
# half of the file is the docstrings that carry the paper's equations and each input contract.

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from . import _kernels
from ._checks import check_number, check_same_shape, check_tensor
from ._kernels import positive_mask as _positive_mask

__all__ = [
    "bce_soft_label_loss",
    "cancellation_weights",
    "check_scores",
    "default_labels",
    "kl_regularized_infonce_loss",
    "negative_distribution",
    "negative_weights",
    "soft_infonce_loss",
    "unrecognised_positives",
    "weighted_infonce_loss",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def check_scores(scores: torch.Tensor, name: str = "scores") -> None:
    """Raise unless ``scores`` is a finite floating ``[N, M]`` matrix with ``M >= max(N, 2)``.

    Args:
        scores: the matrix to check.
        name: the argument name used in the error message.

    Raises:
        TypeError: ``scores`` is not a tensor (e.g. a list).
        ValueError: wrong shape or dtype, or a NaN / infinite entry.
    """
    check_tensor(scores, name)
    if scores.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, M], got shape {tuple(scores.shape)}")
    n, m = scores.shape
    if n == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(scores.shape)})")
    if m < 2:
        raise ValueError(
            f"{name} has {m} candidate(s) per query: a contrastive loss needs at least one "
            f"negative (a batch of one with no extra candidates has none), got shape "
            f"{tuple(scores.shape)}"
        )
    if m < n:
        raise ValueError(
            f"{name} must have at least as many candidates as queries (M >= N), got shape "
            f"{tuple(scores.shape)}"
        )
    if not scores.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {scores.dtype}")
    if not torch.isfinite(scores).all():
        bad = (~torch.isfinite(scores)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def default_labels(
    scores: torch.Tensor, labels: torch.Tensor | None = None, name: str = "labels"
) -> torch.Tensor:
    """Return the positive column of each row: ``labels`` checked, or the diagonal ``0..N-1``.

    Args:
        scores: the ``[N, M]`` score matrix the labels index.
        labels: ``[N]`` integer columns, or ``None``.
        name: the argument name used in error messages (``"positives"`` for the weights).

    Returns:
        ``[N]`` int64 positive columns on the device of ``scores``.
    """
    n, m = scores.shape
    if labels is None:
        return torch.arange(n, device=scores.device)
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a tensor (or a list) of column indices, got "
                f"{type(labels).__name__} {labels!r:.60}"
            ) from None
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{name} must have shape [{n}] (one positive column per row), got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= m):
        raise ValueError(
            f"{name} must lie in [0, {m - 1}] (columns of scores), got values from "
            f"{labels.min().item()} to {labels.max().item()}"
        )
    return labels.to(device=scores.device, dtype=torch.long)


def _check_temperature(temperature: float) -> None:
    check_number(temperature, "temperature", low=0.0, low_open=True)


def _check_similarity(similarity: torch.Tensor, scores: torch.Tensor) -> None:
    """``similarity`` must be a finite matrix of the shape of ``scores`` (checked first)."""
    check_tensor(similarity, "similarity")
    check_same_shape(similarity, "similarity", scores, "scores")


@torch.no_grad()
def negative_distribution(
    similarity: torch.Tensor,
    temperature: float,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax of ``similarity / temperature`` over each row's negatives (paper, Eq. 4).

    Args:
        similarity: raw estimator scores ``[N, M]``.
        temperature: softmax temperature ``t > 0``.
        positives: positive column per row ``[N]``; the diagonal by default.

    Returns:
        float32 ``[N, M]``: each row sums to 1 over its negatives and is 0 at its positive.
    """
    check_scores(similarity, "similarity")
    _check_temperature(temperature)
    mask = _positive_mask(similarity.shape, default_labels(similarity, positives, "positives"))
    return _softmax_over_negatives(similarity, temperature, mask)


def _softmax_over_negatives(
    similarity: torch.Tensor, temperature: float, positive_mask: torch.Tensor
) -> torch.Tensor:
    logits = similarity.detach().float() / temperature  # (N, M)
    return torch.softmax(logits.masked_fill(positive_mask, float("-inf")), dim=1)


@torch.no_grad()
def negative_weights(
    similarity: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
    min_weight: float = 0.1,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft-InfoNCE weights of the negatives (paper, Eq. 4).

    ``w_ij = (beta - alpha * p_ij) / (beta - alpha / (M - 1) * sum_k p_ik)`` where ``p_ij`` is
    the softmax of ``similarity / temperature`` over the row's ``M - 1`` negatives; weights are
    clamped below at ``min_weight`` and the positive gets weight exactly 1. Before the clamp
    each row's negative weights sum to ``M - 1``; ``alpha = beta`` with uniform similarity, or
    ``alpha = 0``, gives all ones (InfoNCE).

    Args:
        similarity: raw estimator scores ``[N, M]`` (no gradient flows through them).
        alpha: how strongly similar negatives are down-weighted (``>= 0``).
        beta: the uniform part (``> 0``).
        temperature: softmax temperature ``t > 0``; it must suit the estimator's score scale.
        min_weight: lower clamp, in ``(0, 1]``.
        positives: positive column per row ``[N]``; the diagonal by default.

    Returns:
        Detached float32 weights ``[N, M]``.

    Examples:
        >>> sim = torch.tensor([[9.0, 3.0, 0.0], [1.0, 9.0, 1.0]])
        >>> w = negative_weights(sim, alpha=1.3, beta=0.7, temperature=1.0)
        >>> w[0, 0].item(), bool(w[0, 1] < w[0, 2])
        (1.0, True)
    """
    check_number(min_weight, "min_weight", low=0.0, high=1.0, low_open=True)
    check_number(alpha, "alpha", low=0.0)
    check_number(beta, "beta", low=0.0, low_open=True)
    check_scores(similarity, "similarity")
    _check_temperature(temperature)
    mask = _positive_mask(similarity.shape, default_labels(similarity, positives, "positives"))
    return _kernels.negative_weights(similarity, alpha, beta, temperature, min_weight, mask)


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
        k = check_number(k, "k", low=0, integer=True)
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
        check_number(ratio, "ratio", low=0.0, high=1.0, low_open=True)
        positive = sim.gather(1, labels[:, None])  # (N, 1)
        threshold = positive - (1 - ratio) * positive.abs()  # (N, 1)
        lowest = sim.masked_fill(positive_mask, float("inf")).amin(dim=1, keepdim=True)  # (N, 1)
        recognised = positive > lowest  # (N, 1)
        keep = ~((sim >= threshold) & (sim > lowest) & recognised)
        keep = keep.float()
    return keep.masked_fill(positive_mask, 1.0)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16/float32 -> float32; float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: str) -> None:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_weights(weights: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
    check_same_shape(weights, "weights", scores, "scores")
    positive_mask = _positive_mask(weights.shape, labels)  # (N, M)
    usable = torch.isfinite(weights) & (weights >= 0)
    problems = torch.stack(  # one host sync for the three checks
        [
            ~usable.all(),
            (weights.gather(1, labels[:, None]) <= 0).any(),
            ~((weights > 0) & usable & ~positive_mask).any(dim=1).all(),
        ]
    ).tolist()
    if problems[0]:
        raise ValueError("weights must be finite and >= 0 (0 cancels a negative)")
    if problems[1]:
        raise ValueError("weights must be > 0 at each row's positive")
    if problems[2]:
        rows = (~((weights > 0) & ~positive_mask).any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(
            f"weights cancel every negative of rows {rows[:10]}: such a row's loss is 0 with no "
            "gradient; keep at least one negative (weight > 0) per row"
        )


def soft_infonce_loss(
    scores: torch.Tensor,
    weights: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Soft-InfoNCE (paper, Eq. 3): cross-entropy on ``scores + log(weights)``.

    ``L_i = -log( e^{s_ii} / (e^{s_ii} + sum_{j != i} w_ij e^{s_ij}) )``. ``weights=None`` is
    plain InfoNCE; a weight of 0 removes that negative (false-negative cancellation). The
    weights are detached; the computation runs in float32.

    Args:
        scores: ``[N, M]`` query-candidate scores, any floating dtype.
        weights: ``[N, M]`` non-negative weights (1 at the positives), e.g. from
            :func:`negative_weights`; ``None`` for InfoNCE.
        labels: positive column per row ``[N]``; the diagonal by default.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Returns:
        The loss (a float32 scalar, or ``[N]`` for ``reduction="none"``).

    Examples:
        >>> scores = torch.randn(4, 4)
        >>> torch.allclose(soft_infonce_loss(scores), F.cross_entropy(scores, torch.arange(4)))
        True
    """
    check_scores(scores)
    _check_reduction(reduction)
    labels = default_labels(scores, labels)
    logits = _upcast(scores)  # (N, M), float32 at least
    if weights is not None:
        check_tensor(weights, "weights")
        weights = weights.detach().to(device=scores.device, dtype=logits.dtype)
        _check_weights(weights, scores, labels)
        logits = logits + weights.log()  # log 0 = -inf: that negative leaves the sum
    return F.cross_entropy(logits, labels, reduction=reduction)


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
    check_number(infonce_weight, "infonce_weight", low=0.0)
    check_number(kl_weight, "kl_weight", low=0.0)
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
