"""The losses the paper compares Soft-InfoNCE with (Section 6): weighted InfoNCE, BCE with
soft labels, InfoNCE + KL regularisation, and false-negative cancellation."""

from __future__ import annotations

from typing import Any, Literal

from .. import functional as SF
from ..estimators.base import WeightEstimator
from .base import PRESETS, ContrastiveLoss

__all__ = [
    "BCELoss",
    "FalseNegativeCancellationLoss",
    "KLRegularizedInfoNCELoss",
    "WeightedInfoNCELoss",
]


class _SimilarityLoss(ContrastiveLoss):
    """A baseline that turns the similarity into a soft target at ``temperature``."""

    needs_similarity = True

    def __init__(self, temperature: float | None = None, scale: float = 1.0,
                 estimator: WeightEstimator | None = None, symmetric: bool = False,
                 gather_across_devices: bool = False) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices)
        if temperature is None:
            preset = getattr(estimator, "preset", None)
            temperature = PRESETS[preset][2] if preset in PRESETS else 1.0
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, **super().get_config_dict()}


class WeightedInfoNCELoss(_SimilarityLoss):
    """Weighted InfoNCE (paper, Section 6): negatives get the similarity softmax as a soft
    target, ``L_i = -log p_ii - sum_{j != i} q_ij log p_ij``. See
    :func:`soft_infonce.functional.weighted_infonce_loss`."""

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.weighted_infonce_loss`."""
        return SF.weighted_infonce_loss(scores, similarity, self.temperature, labels)


class BCELoss(_SimilarityLoss):
    """Binary cross-entropy with soft labels (paper, Section 6): the softmax probability of
    each candidate against label 1 (positive) or ``q_ij`` (negative). See
    :func:`soft_infonce.functional.bce_soft_label_loss`."""

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.bce_soft_label_loss`."""
        return SF.bce_soft_label_loss(scores, similarity, self.temperature, labels)


class KLRegularizedInfoNCELoss(_SimilarityLoss):
    """``infonce_weight * InfoNCE + kl_weight * KL(q || p_negatives)`` (paper, Section 6).

    See :func:`soft_infonce.functional.kl_regularized_infonce_loss`.

    Args:
        infonce_weight: weight of the InfoNCE term (0.7, the paper's beta).
        kl_weight: weight of the KL term (1.3, the paper's alpha).
        temperature: softmax temperature of the similarity; ``None``: the estimator's preset.
        scale: multiplies the dot products.
        estimator: computes the similarity from the raw texts.
        symmetric: add the code-to-query direction.
        gather_across_devices: use the codes of all processes as negatives.

    Examples:
        >>> q, c, sim = torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 4)
        >>> loss = KLRegularizedInfoNCELoss()(q, c, sim)
    """

    def __init__(self, infonce_weight: float = 0.7, kl_weight: float = 1.3,
                 temperature: float | None = None, scale: float = 1.0,
                 estimator: WeightEstimator | None = None, symmetric: bool = False,
                 gather_across_devices: bool = False) -> None:
        super().__init__(temperature, scale, estimator, symmetric, gather_across_devices)
        if infonce_weight < 0 or kl_weight < 0:
            raise ValueError(
                f"infonce_weight and kl_weight must be >= 0, got {infonce_weight!r}, {kl_weight!r}"
            )
        self.infonce_weight, self.kl_weight = float(infonce_weight), float(kl_weight)

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.kl_regularized_infonce_loss`."""
        return SF.kl_regularized_infonce_loss(scores, similarity, self.temperature,
                                              self.infonce_weight, self.kl_weight, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """The two term weights besides the shared settings."""
        return {"infonce_weight": self.infonce_weight, "kl_weight": self.kl_weight,
                **super().get_config_dict()}


class FalseNegativeCancellationLoss(ContrastiveLoss):
    """InfoNCE without the suspected false negatives (paper, Section 6).

    ``mode="top_k"`` drops each query's ``k`` most similar negatives; ``mode="threshold"``
    drops negatives whose similarity reaches ``ratio`` times the positive's. Implemented as
    Soft-InfoNCE with weights 0 (dropped) or 1, i.e. ``log w = -inf``. See
    :func:`soft_infonce.functional.cancellation_weights`.

    Args:
        mode: ``"top_k"`` or ``"threshold"``.
        k: negatives dropped per query in ``top_k`` mode.
        ratio: ``threshold`` mode's fraction of the positive's similarity.
        scale: multiplies the dot products.
        estimator: computes the similarity from the raw texts.
        symmetric: add the code-to-query direction.
        gather_across_devices: use the codes of all processes as negatives.

    Examples:
        >>> loss_fn = FalseNegativeCancellationLoss(mode="top_k", k=1)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 4))
    """

    needs_similarity = True

    def __init__(self, mode: Literal["top_k", "threshold"] = "top_k", k: int = 1,
                 ratio: float = 0.9, scale: float = 1.0,
                 estimator: WeightEstimator | None = None, symmetric: bool = False,
                 gather_across_devices: bool = False) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices)
        if mode not in ("top_k", "threshold"):
            raise ValueError(f"mode must be 'top_k' or 'threshold', got {mode!r}")
        self.mode, self.k, self.ratio = mode, int(k), float(ratio)

    def loss_from_scores(self, scores, similarity, labels):
        """InfoNCE without the cancelled negatives (weight 0); records the share cancelled."""
        weights = SF.cancellation_weights(similarity, self.mode, self.k, self.ratio, labels)
        negatives = weights.numel() - weights.shape[0]
        self.last_statistics = {"cancelled": (weights == 0).sum().item() / negatives}
        return SF.soft_infonce_loss(scores, weights.to(scores.device), labels)

    def get_config_dict(self) -> dict[str, Any]:
        """mode, k and ratio besides the shared settings."""
        return {"mode": self.mode, "k": self.k, "ratio": self.ratio, **super().get_config_dict()}
