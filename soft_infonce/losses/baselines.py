"""The losses the paper compares Soft-InfoNCE with (Section 6): weighted InfoNCE, BCE with
soft labels, InfoNCE + KL regularisation, and false-negative cancellation.

These baselines go through the checked functional forms of :mod:`soft_infonce.functional`,
which scan the similarity for NaN/inf on every call (a host sync per step); only
:class:`~soft_infonce.SoftInfoNCELoss` and :class:`~soft_infonce.InfoNCELoss` keep a training
step free of host syncs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from numbers import Integral
from typing import Any, Literal

from soft_infonce import _kernels as kernels
from soft_infonce import functional as SF
from soft_infonce.checks import check_number
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.losses.base import ContrastiveLoss
from soft_infonce.presets import resolve

logger = logging.getLogger(__name__)

__all__ = [
    "BCELoss",
    "FalseNegativeCancellationLoss",
    "KLRegularizedInfoNCELoss",
    "WeightedInfoNCELoss",
]


class _SimilarityLoss(ContrastiveLoss):
    """A baseline that turns the similarity into a soft target at ``temperature``."""

    needs_similarity = True

    def __init__(
        self,
        temperature: float | None = None,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
        validate: bool | None = None,
    ) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices, validate)
        self.temperature = resolve(estimator, temperature=temperature).temperature

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

    def __init__(
        self,
        infonce_weight: float = 0.7,
        kl_weight: float = 1.3,
        temperature: float | None = None,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
        validate: bool | None = None,
    ) -> None:
        super().__init__(temperature, scale, estimator, symmetric, gather_across_devices, validate)
        self.infonce_weight = check_number("infonce_weight", infonce_weight, low=0)
        self.kl_weight = check_number("kl_weight", kl_weight, low=0)

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.kl_regularized_infonce_loss`."""
        return SF.kl_regularized_infonce_loss(
            scores, similarity, self.temperature, self.infonce_weight, self.kl_weight, labels
        )

    def get_config_dict(self) -> dict[str, Any]:
        """The two term weights besides the shared settings."""
        return {
            "infonce_weight": self.infonce_weight,
            "kl_weight": self.kl_weight,
            **super().get_config_dict(),
        }


class FalseNegativeCancellationLoss(ContrastiveLoss):
    """InfoNCE without the suspected false negatives (paper, Section 6).

    ``mode="top_k"`` drops each query's ``k`` most similar negatives; ``mode="threshold"``
    drops negatives whose similarity reaches ``ratio`` times the positive's. Implemented as
    Soft-InfoNCE with weights 0 (dropped) or 1, i.e. ``log w = -inf``. See
    :func:`soft_infonce.functional.cancellation_weights`. ``last_statistics`` holds the
    share of negatives ``cancelled`` and the ``rows_without_negatives`` (rows whose every
    negative was cancelled: they add no gradient) and, in threshold mode, the share of
    ``unrecognised_positives`` (rows whose positive the estimator scores no higher than their
    least similar negative: all their negatives are kept); :meth:`statistics` warns once
    about either.

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

    def __init__(
        self,
        mode: Literal["top_k", "threshold"] = "top_k",
        k: int = 1,
        ratio: float = 0.9,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
        validate: bool | None = None,
    ) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices, validate)
        if mode not in ("top_k", "threshold"):
            raise ValueError(f"mode must be 'top_k' or 'threshold', got {mode!r}")
        if isinstance(k, bool) or not isinstance(k, Integral):
            raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k!r}")
        self.mode: Literal["top_k", "threshold"] = mode
        self.k: int = int(k)
        self.ratio: float = check_number("ratio", ratio, low=0, high=1, low_open=True)
        self._warned_empty_rows: bool = False
        self._warned_unrecognised: bool = False

    def loss_from_scores(self, scores, similarity, labels):
        """InfoNCE without the cancelled negatives (weight 0); records what was cancelled."""
        weights = SF.cancellation_weights(similarity, self.mode, self.k, self.ratio, labels)
        weights = weights.to(scores.device)
        statistics = kernels.cancellation_statistics(
            weights, kernels.positive_mask(weights.shape, labels)
        )
        if self.mode == "threshold":
            # rows kept whole because the estimator scores their positive like a stray negative
            unrecognised = SF.unrecognised_positives(similarity, labels.to(similarity.device))
            statistics["unrecognised_positives"] = unrecognised.float().mean().to(scores.device)
        self.record(statistics)
        return kernels.soft_infonce(scores, weights, labels)

    def check_statistics(self, statistics: Mapping[str, float]) -> None:
        """Warn once when some row had every negative cancelled (it trained nothing)."""
        empty = sum(v for k, v in statistics.items() if k.endswith("rows_without_negatives"))
        if empty > 0 and not self._warned_empty_rows:
            self._warned_empty_rows = True
            logger.warning(
                "FalseNegativeCancellationLoss(mode=%r) cancelled every negative of %g row(s): "
                "those rows add no loss and no gradient. Check the estimator (a positive it "
                "scores 0, e.g. BM25 with no shared token) or use mode='top_k'.",
                self.mode,
                empty,
            )
        unrecognised = max(
            (v for k, v in statistics.items() if k.endswith("unrecognised_positives")), default=0
        )
        if unrecognised > 0 and not self._warned_unrecognised:
            self._warned_unrecognised = True
            logger.warning(
                "the estimator scores the positive of %.1f%% of rows no higher than their least "
                "similar negative (e.g. BM25 with no shared token): threshold cancellation keeps "
                "all negatives of those rows (plain InfoNCE there)",
                100 * unrecognised,
            )

    def get_config_dict(self) -> dict[str, Any]:
        """mode, k and ratio besides the shared settings."""
        return {"mode": self.mode, "k": self.k, "ratio": self.ratio, **super().get_config_dict()}
