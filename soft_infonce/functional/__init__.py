"""Pure functional forms of Soft-InfoNCE and the losses the paper compares it with.

Every loss here takes a score matrix ``scores`` of shape ``[N, M]``: row ``i`` is query ``i``
scored against ``M >= N`` candidate codes (the in-batch codes, then any extra candidates such
as hard negatives or codes gathered from other devices). ``labels[i]`` is the column of query
``i``'s positive (the diagonal by default). Weights never carry gradient, and every
log-sum-exp runs in float32 at least (float64 input stays float64).

The central identity (paper, Eq. 3): ``sum_j w_ij exp(s_ij) = sum_j exp(s_ij + log w_ij)``, so
Soft-InfoNCE is cross-entropy on ``scores + log(weights)``. InfoNCE is ``log w = 0`` and
false-negative cancellation is ``log w = -inf``.
"""

from soft_infonce.functional.baselines import (
    bce_soft_label_loss,
    cancellation_weights,
    kl_regularized_infonce_loss,
    unrecognised_positives,
    weighted_infonce_loss,
)
from soft_infonce.functional.core import (
    check_scores,
    default_labels,
    negative_distribution,
    negative_weights,
    soft_infonce_loss,
)

__all__ = [
    "bce_soft_label_loss",
    "cancellation_weights",
    "check_scores",
    "default_labels",
    "kl_regularized_infonce_loss",
    "negative_distribution",
    "negative_weights",
    "soft_infonce_loss",
    "unrecognised_positives",
    "weighted_infonce_loss",
]
