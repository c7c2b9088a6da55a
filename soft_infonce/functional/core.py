"""Soft-InfoNCE itself (paper, Eq. 3-4) and the input checks every functional form shares."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from soft_infonce import _kernels
from soft_infonce._kernels import positive_mask as _positive_mask
from soft_infonce.checks import check_number, check_same_shape, check_tensor

__all__ = [
    "check_scores",
    "default_labels",
    "negative_distribution",
    "negative_weights",
    "soft_infonce_loss",
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
    check_tensor(name, scores)
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
    check_number("temperature", temperature, low=0.0, low_open=True)


def _check_similarity(similarity: torch.Tensor, scores: torch.Tensor) -> None:
    """``similarity`` must be a finite matrix of the shape of ``scores`` (checked first)."""
    check_tensor("similarity", similarity)
    check_same_shape("similarity", similarity, "scores", scores)


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
    check_number("min_weight", min_weight, low=0.0, high=1.0, low_open=True)
    check_number("alpha", alpha, low=0.0)
    check_number("beta", beta, low=0.0, low_open=True)
    check_scores(similarity, "similarity")
    _check_temperature(temperature)
    mask = _positive_mask(similarity.shape, default_labels(similarity, positives, "positives"))
    return _kernels.negative_weights(similarity, alpha, beta, temperature, min_weight, mask)


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
    check_same_shape("weights", weights, "scores", scores)
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
        check_tensor("weights", weights)
        weights = weights.detach().to(device=scores.device, dtype=logits.dtype)
        _check_weights(weights, scores, labels)
        logits = logits + weights.log()  # log 0 = -inf: that negative leaves the sum
    return F.cross_entropy(logits, labels, reduction=reduction)
