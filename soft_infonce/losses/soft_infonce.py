"""InfoNCE and Soft-InfoNCE (Li et al., EMNLP 2023, Eq. 3-4)."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch

from .. import functional as SF
from ..estimators.base import WeightEstimator
from .base import PRESETS, ContrastiveLoss

logger = logging.getLogger(__name__)

__all__ = ["InfoNCELoss", "SoftInfoNCELoss"]


class InfoNCELoss(ContrastiveLoss):
    """InfoNCE: cross-entropy of each query's positive against all candidates.

    ``L = -1/N sum_i log(e^{s_ii} / sum_j e^{s_ij})``. Same forward as every loss here;
    a ``similarity`` argument is ignored.

    Examples:
        >>> loss = InfoNCELoss(scale=20.0)
        >>> q, c = torch.nn.functional.normalize(torch.randn(8, 16), dim=1), torch.randn(8, 16)
        >>> loss(q, c).shape
        torch.Size([])
    """

    def loss_from_scores(self, scores, similarity, labels):
        """Cross-entropy of the positives (the similarity is not used)."""
        return SF.soft_infonce_loss(scores, None, labels)


def _weight_statistics(weights: torch.Tensor, labels: torch.Tensor, min_weight: float) -> dict:
    mask = torch.ones_like(weights, dtype=torch.bool)
    mask[torch.arange(weights.shape[0]), labels.to(weights.device)] = False
    neg = weights[mask]
    return {
        "weight_mean": neg.mean().item(),
        "weight_min": neg.min().item(),
        "weight_max": neg.max().item(),
        "weight_clamped": (neg <= min_weight + 1e-7).float().mean().item(),
    }


class SoftInfoNCELoss(ContrastiveLoss):
    """Soft-InfoNCE (Li et al., EMNLP 2023): InfoNCE with a weight on each negative.

    ``L_i = -log( e^{s_ii} / (e^{s_ii} + sum_{j != i} w_ij e^{s_ij}) )`` (Eq. 3) with
    ``w_ij = (beta - alpha p_ij) / (beta - alpha / (M - 1))`` where ``p_ij`` is the softmax of
    the estimated similarity over the negatives at temperature ``t`` (Eq. 4), clamped at
    ``min_weight``. Negatives the estimator finds relevant to the query are pushed away less.

    Args:
        alpha: down-weighting strength; ``alpha = 0`` is InfoNCE. ``None``: the estimator's
            paper preset (see :data:`PRESETS`), else 1.3.
        beta: the uniform part. ``None``: the estimator's preset, else 0.7.
        temperature: softmax temperature of the similarity. ``None``: the estimator's preset,
            else 1.0. It must suit the estimator's score scale: the paper's ``t = 5`` suits
            dot products, not cosines.
        min_weight: lower clamp of the weights, in ``(0, 1]``.
        scale: multiplies the dot products.
        estimator: a :class:`~soft_infonce.WeightEstimator`; else pass ``similarity``.
        symmetric: add the code-to-query direction.
        gather_across_devices: use the codes of all processes as negatives.

    References:
        Li, Zhou, Tuan, Miao. Rethinking Negative Pairs in Code Search. EMNLP 2023.

    Inputs:
        query_embeddings ``[N, H]``, code_embeddings ``[M, H]`` (``M >= N``), and either
        ``similarity [N, M]`` or the raw ``queries``/``codes`` for the estimator.

    Relations:
        ``InfoNCELoss`` is the case ``alpha = 0``; ``FalseNegativeCancellationLoss`` sets
        weights to 0 or 1 instead.

    Examples:
        >>> from soft_infonce import SoftInfoNCELoss
        >>> loss_fn = SoftInfoNCELoss.from_preset("simcse")
        >>> q, c, sim = torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 4)
        >>> loss = loss_fn(q, c, similarity=sim)
    """

    needs_similarity = True

    def __init__(
        self,
        alpha: float | None = None,
        beta: float | None = None,
        temperature: float | None = None,
        min_weight: float = 0.1,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices)
        preset = PRESETS.get(getattr(estimator, "preset", None) or "", (1.3, 0.7, 1.0))
        alpha = preset[0] if alpha is None else alpha
        beta = preset[1] if beta is None else beta
        temperature = preset[2] if temperature is None else temperature
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0 < min_weight <= 1:
            raise ValueError(f"min_weight must lie in (0, 1], got {min_weight!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature, self.min_weight = float(temperature), float(min_weight)
        self._warned_flat = False

    @classmethod
    def from_preset(
        cls, name: Literal["bm25", "simcse", "trained"], **kwargs: Any
    ) -> SoftInfoNCELoss:
        """The paper's Table 7 settings: bm25 1.5/0.5/1.0, simcse 1.3/0.7/0.1,
        trained 1.3/0.7/5.0 (alpha/beta/t).

        Args:
            name: ``"bm25"``, ``"simcse"`` or ``"trained"``.
            **kwargs: other constructor arguments (they override the preset's values).

        Returns:
            The configured loss.

        Examples:
            >>> SoftInfoNCELoss.from_preset("bm25").alpha
            1.5
        """
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        alpha, beta, t = PRESETS[name]
        return cls(**{"alpha": alpha, "beta": beta, "temperature": t, **kwargs})

    def weights(self, similarity: torch.Tensor, labels: torch.Tensor | None = None):
        """Eq. 4 weights for a similarity matrix, with this loss's settings.

        Args:
            similarity: ``[N, M]`` raw estimator scores.
            labels: positive column per row; the diagonal by default.

        Returns:
            Detached float32 weights ``[N, M]``.
        """
        return SF.negative_weights(similarity, self.alpha, self.beta, self.temperature,
                                   self.min_weight, labels)

    def loss_from_scores(self, scores, similarity, labels):
        """Eq. 3 with the Eq. 4 weights of ``similarity``; records weight statistics."""
        weights = self.weights(similarity.to(scores.device), labels)
        self.last_statistics = _weight_statistics(weights, labels, self.min_weight)
        spread = max(abs(self.last_statistics["weight_max"] - 1),
                     abs(self.last_statistics["weight_min"] - 1))
        if spread < 0.01 and not self._warned_flat:
            self._warned_flat = True
            logger.warning(
                "All Soft-InfoNCE weights lie within 1%% of 1 (min %.4f, max %.4f): the loss is "
                "InfoNCE in all but name. The temperature (t=%g) likely does not suit the "
                "estimator's score scale; try a smaller t.", self.last_statistics["weight_min"],
                self.last_statistics["weight_max"], self.temperature)
        return SF.soft_infonce_loss(scores, weights, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """alpha, beta, temperature and min_weight besides the shared settings."""
        return {"alpha": self.alpha, "beta": self.beta, "temperature": self.temperature,
                "min_weight": self.min_weight, **super().get_config_dict()}
