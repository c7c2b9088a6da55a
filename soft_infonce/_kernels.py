"""The maths of the losses, unchecked: no value scans, no host syncs.

:mod:`soft_infonce.functional` is the public, checked form of the same equations (it scans
every input for NaN/inf, which costs a device-to-host sync per check). The modules check
shapes and settings once and call these kernels, so a training step never waits on the
device; ``tests/core/test_losses.py`` compares the two forms. Statistics stay 0-d tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "cancellation_statistics",
    "negative_weights",
    "positive_mask",
    "soft_infonce",
    "weight_statistics",
]


def positive_mask(shape: torch.Size | tuple[int, ...], labels: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` bool, true at each row's positive column ``labels[i]``."""
    mask = torch.zeros(shape, dtype=torch.bool, device=labels.device)
    return mask.scatter_(1, labels[:, None], True)


@torch.no_grad()
def negative_weights(
    similarity: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
    min_weight: float,
    mask: torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Eq. 4 weights ``[N, M]`` (1 at the positives), in ``dtype`` (float32 at least).

    ``w_ij = max(min_weight, (beta - alpha p_ij) / (beta - alpha / (M - 1)))`` with ``p`` the
    softmax of ``similarity / temperature`` over each row's negatives (it sums to 1, so the
    denominator of Eq. 4 is one number). Only that number is checked (on the host).
    """
    num_negatives = similarity.shape[1] - 1
    denominator = beta - alpha / num_negatives
    if denominator <= 0:
        raise ValueError(
            f"beta - alpha / (M - 1) must be > 0 for the weights to be defined, got "
            f"beta={beta!r}, alpha={alpha!r}, M - 1={num_negatives} negatives: use a larger "
            "batch or a smaller alpha"
        )
    dtype = torch.promote_types(dtype, torch.float32)
    logits = similarity.detach().to(dtype) / temperature  # (N, M), a fresh tensor
    p = torch.softmax(logits.masked_fill_(mask, float("-inf")), dim=1)  # 0 at the positives
    del logits  # in place from here on: peak 2 N*M floats instead of 4
    weights = p.mul_(-alpha).add_(beta).div_(denominator).clamp_min_(min_weight)
    return weights.masked_fill_(mask, 1.0)


def soft_infonce(
    scores: torch.Tensor, weights: torch.Tensor | None, labels: torch.Tensor
) -> torch.Tensor:
    """Eq. 3: mean cross-entropy on ``scores + log(weights)`` (``None``: InfoNCE).

    ``scores`` is already float32 or float64; a weight of 0 removes that negative.
    """
    logits = scores
    if weights is not None:
        logits = logits + weights.detach().to(device=scores.device, dtype=scores.dtype).log()
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def weight_statistics(
    weights: torch.Tensor, mask: torch.Tensor, min_weight: float
) -> dict[str, torch.Tensor]:
    """Mean, min, max and clamped share of the negatives' weights, as detached 0-d tensors.

    Masked reductions instead of boolean indexing, whose output size would need a sync.
    """
    negatives = mask.numel() - mask.shape[0]
    inf = torch.tensor(float("inf"), dtype=weights.dtype, device=weights.device)
    clamped = (weights <= min_weight + 1e-7) & ~mask
    return {
        "weight_mean": weights.masked_fill(mask, 0).sum() / negatives,
        "weight_min": torch.where(mask, inf, weights).amin(),
        "weight_max": torch.where(mask, -inf, weights).amax(),
        "weight_clamped": clamped.sum(dtype=weights.dtype) / negatives,
    }


@torch.no_grad()
def cancellation_statistics(weights: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Share of negatives cancelled (weight 0) and the rows left with no negative at all."""
    negatives = mask.numel() - mask.shape[0]
    cancelled = (weights == 0) & ~mask
    return {
        "cancelled": cancelled.sum(dtype=torch.float32) / negatives,
        "rows_without_negatives": (cancelled | mask).all(dim=1).sum(dtype=torch.float32),
    }
