"""The model being trained as its own estimator: its detached scores, no second model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from soft_infonce.checks import check_tensor
from soft_infonce.estimators.base import WeightEstimator


class SelfGuidedEstimator(WeightEstimator):
    """``sim_ij`` = the training model's own scores ``s_ij``, detached (no second model).

    The trained-model estimator needs a separate InfoNCE run and a frozen copy; this one reads
    the scores the loss has already computed for the batch, ``s = scale * q . c``, so it costs
    one ``detach`` and no encoder call, cache or memory. Its scores are on the scale the
    paper's trained-model preset was tuned on (the model's own ``s_ij``), hence
    ``preset = "trained"`` (t = 5). Early in training the model's scores carry little signal,
    and a negative it already confuses with the positive is down-weighted, so the model can
    settle on its own mistakes: start from a model trained with InfoNCE (or a pretrained
    encoder), and compare with the frozen trained-model estimator.

    The loss calls it through a hook rather than on texts: an estimator with
    ``uses_scores = True`` gets ``similarity_from_scores(scores)`` with the loss's detached
    ``[N, M]`` score matrix (after gathering, the gathered one). Calling it on texts is an
    error that says so.

    Examples:
        >>> scores = torch.tensor([[9.0, 3.0], [1.0, 8.0]], requires_grad=True)
        >>> SelfGuidedEstimator().similarity_from_scores(scores).requires_grad
        False
    """

    preset = "trained"
    uses_scores: ClassVar[bool] = True

    def similarity_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The detached score matrix ``[N, M]`` (float32 at least; no host sync, no copy).

        Raises:
            TypeError: ``scores`` is not a tensor (a list, a NumPy array).
            ValueError: ``scores`` is not 2-D.
        """
        scores = check_tensor("scores", scores, ndim=2).detach()
        if not scores.is_floating_point():
            raise ValueError(f"scores must be a floating-point tensor, got {scores.dtype}")
        return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Not available: the scores come from the loss (see :meth:`similarity_from_scores`)."""
        raise ValueError(
            f"{type(self).__name__} has no text path: it reads the model's own scores, which "
            "the loss passes to similarity_from_scores(scores) (losses check "
            "estimator.uses_scores); it cannot score texts on its own"
        )
