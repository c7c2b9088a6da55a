"""InfoNCE and Soft-InfoNCE (Li et al., EMNLP 2023, Eq. 3-4)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import torch

from soft_infonce import _kernels as kernels
from soft_infonce import functional as SF
from soft_infonce.checks import check_number
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.losses.base import ContrastiveLoss
from soft_infonce.presets import PRESETS, resolve

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
        return kernels.soft_infonce(scores, None, labels)


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
        validate: scan inputs for NaN/inf (``None``: only when they carry no gradient);
            see :class:`~soft_infonce.losses.ContrastiveLoss`.

    References:
        Li, Zhou, Tuan, Miao. Rethinking Negative Pairs in Code Search. EMNLP 2023.

    Inputs:
        query_embeddings ``[N, H]``, code_embeddings ``[M, H]`` (``M >= N``), and either
        ``similarity [N, M]`` or the raw ``queries``/``codes`` for the estimator.
        ``last_statistics`` holds ``q2c/weight_mean``, ``q2c/weight_min``, ``q2c/weight_max``
        and ``q2c/weight_clamped`` (and ``c2q/...`` when symmetric) as detached tensors.

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
        validate: bool | None = None,
    ) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices, validate)
        self.alpha, self.beta, self.temperature = resolve(estimator, alpha, beta, temperature)
        self.min_weight = check_number("min_weight", min_weight, low=0, high=1, low_open=True)
        self._warned_flat = False

    @property
    def min_candidates(self) -> int:
        """The fewest candidates per query ``M`` for which Eq. 4 is defined:
        ``beta - alpha / (M - 1) > 0`` (e.g. 5 for the BM25 preset, alpha 1.5 and beta 0.5)."""
        m = max(2, int(self.alpha / self.beta) + 1)  # the bound, then float rounding settled
        while self.beta - self.alpha / (m - 1) <= 0:
            m += 1
        while m > 2 and self.beta - self.alpha / (m - 2) > 0:
            m -= 1
        return m

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
        settings = resolve(
            kwargs.get("estimator"),
            kwargs.pop("alpha", None),
            kwargs.pop("beta", None),
            kwargs.pop("temperature", None),
            preset=name,
        )
        return cls(**settings._asdict(), **kwargs)

    def weights(self, similarity: torch.Tensor, labels: torch.Tensor | None = None):
        """Eq. 4 weights for a similarity matrix, with this loss's settings.

        Args:
            similarity: ``[N, M]`` raw estimator scores.
            labels: positive column per row; the diagonal by default.

        Returns:
            Detached float32 weights ``[N, M]``.
        """
        return SF.negative_weights(
            similarity, self.alpha, self.beta, self.temperature, self.min_weight, labels
        )

    def loss_from_scores(self, scores, similarity, labels):
        """Eq. 3 with the Eq. 4 weights of ``similarity``; records weight statistics."""
        mask = kernels.positive_mask(scores.shape, labels)  # (N, M)
        weights = kernels.negative_weights(
            similarity.to(scores.device),
            self.alpha,
            self.beta,
            self.temperature,
            self.min_weight,
            mask,
            scores.dtype,
        )
        self.record(kernels.weight_statistics(weights, mask, self.min_weight))
        return kernels.soft_infonce(scores, weights, labels)

    def check_statistics(self, statistics: Mapping[str, float]) -> None:
        """Warn once when every weight lies within 1% of 1 (the loss is then InfoNCE)."""
        lows = [v for k, v in statistics.items() if k.endswith("weight_min")]
        highs = [v for k, v in statistics.items() if k.endswith("weight_max")]
        if not lows or not highs or self._warned_flat:
            return
        low, high = min(lows), max(highs)
        if max(abs(high - 1), abs(low - 1)) < 0.01:
            self._warned_flat = True
            logger.warning(
                "All Soft-InfoNCE weights lie within 1%% of 1 (min %.4f, max %.4f): the loss is "
                "InfoNCE in all but name. The temperature (t=%g) likely does not suit the "
                "estimator's score scale; try a smaller t.",
                low,
                high,
                self.temperature,
            )

    def get_config_dict(self) -> dict[str, Any]:
        """alpha, beta, temperature and min_weight besides the shared settings."""
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "temperature": self.temperature,
            "min_weight": self.min_weight,
            **super().get_config_dict(),
        }
