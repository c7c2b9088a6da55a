"""The uniform estimator: every negative alike, so Soft-InfoNCE reduces to InfoNCE."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from soft_infonce.estimators.base import WeightEstimator


class UniformEstimator(WeightEstimator):
    """All-zero relevance: every negative weighs 1 and Soft-InfoNCE is exactly InfoNCE.

    With ``sim_ij = 0`` the softmax of Eq. 4 is uniform over the M - 1 negatives,
    ``p_ij = 1 / (M - 1)``, so ``w_ij = (beta - alpha / (M - 1)) / (beta - alpha / (M - 1)) = 1``
    for every alpha and beta. It is the baseline and the sanity check of a training setup.

    Examples:
        >>> UniformEstimator()(["q1", "q2"], ["c1", "c2"])
        tensor([[0., 0.],
                [0., 0.]])
    """

    preset = None

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Zeros of shape ``[len(queries), len(codes)]``."""
        return torch.zeros(len(queries), len(codes))
