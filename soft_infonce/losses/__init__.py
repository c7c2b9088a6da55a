"""``nn.Module`` faces of the losses in :mod:`soft_infonce.functional`.

Every loss here shares one forward path (:class:`ContrastiveLoss`)::

    query/code embeddings -> scores = scale * q . c   (codes gathered across devices if asked)
                          -> similarity (given, or from the estimator on the raw texts)
                          -> loss_from_scores(scores, similarity, labels)   # the one override
                          -> + the code-to-query direction when symmetric=True
"""

from __future__ import annotations

from .base import CITATION, PRESETS, ContrastiveLoss
from .baselines import (
    BCELoss,
    FalseNegativeCancellationLoss,
    KLRegularizedInfoNCELoss,
    WeightedInfoNCELoss,
)
from .soft_infonce import InfoNCELoss, SoftInfoNCELoss

__all__ = [
    "CITATION",
    "PRESETS",
    "BCELoss",
    "ContrastiveLoss",
    "FalseNegativeCancellationLoss",
    "InfoNCELoss",
    "KLRegularizedInfoNCELoss",
    "SoftInfoNCELoss",
    "WeightedInfoNCELoss",
]
