"""``nn.Module`` faces of the losses in :mod:`soft_infonce.functional`.

Every loss here shares one path, :meth:`ContrastiveLoss.compute_loss_from_embeddings`::

    query/candidate embeddings -> candidates gathered across devices (if asked)
                               -> scores = scale * q . c
                               -> similarity (given, or from the estimator on the raw texts)
                               -> loss_from_scores(scores, similarity, labels)  # the override
                               -> + the code-to-query direction when symmetric=True

``PRESETS`` lives in :mod:`soft_infonce.presets` and is re-exported here.
"""

from __future__ import annotations

from soft_infonce.losses.base import CITATION, ContrastiveLoss
from soft_infonce.losses.baselines import (
    BCELoss,
    FalseNegativeCancellationLoss,
    KLRegularizedInfoNCELoss,
    WeightedInfoNCELoss,
)
from soft_infonce.losses.soft_infonce import InfoNCELoss, SoftInfoNCELoss
from soft_infonce.presets import PRESETS

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
