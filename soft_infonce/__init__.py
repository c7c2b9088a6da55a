"""soft-infonce: Soft-InfoNCE (Li et al., EMNLP 2023) as a drop-in loss for retrieval bi-encoders.

Importing this package is light: the losses, the presets and the estimators need torch only
(the estimators load their frozen models' frameworks when built), so they are imported here.
The integrations (``BiEncoder``, ``SoftInfoNCETrainer``, evaluation, the data loaders) import
transformers or datasets, so ``_LAZY`` imports them on first use and only them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .estimators import (
    BM25Estimator,
    EmbeddingEstimator,
    TrainedModelEstimator,
    UniformEstimator,
    WeightEstimator,
)
from .functional import (
    bce_soft_label_loss,
    cancellation_weights,
    kl_regularized_infonce_loss,
    negative_weights,
    soft_infonce_loss,
    weighted_infonce_loss,
)
from .losses import (
    BCELoss,
    FalseNegativeCancellationLoss,
    InfoNCELoss,
    KLRegularizedInfoNCELoss,
    SoftInfoNCELoss,
    WeightedInfoNCELoss,
)
from .presets import PRESETS

__version__ = "0.1.0"

# name -> module holding it; imported on first attribute access (PEP 562). Only modules that
# pull in transformers or datasets belong here (tests/test_losses.py checks the import stays
# light).
_LAZY = {
    "BiEncoder": "soft_infonce.modeling",
    "evaluate_retrieval": "soft_infonce.evaluation",
    "mean_reciprocal_rank": "soft_infonce.evaluation",
    "retrieval_metrics": "soft_infonce.evaluation",
    "target_ranks": "soft_infonce.evaluation",
    "SoftInfoNCETrainer": "soft_infonce.trainer",
    "SoftInfoNCETrainingArguments": "soft_infonce.training_args",
    "mine_pairs": "soft_infonce.data",
}

__all__ = [
    "PRESETS",
    "BCELoss",
    "BM25Estimator",
    "EmbeddingEstimator",
    "TrainedModelEstimator",
    "UniformEstimator",
    "FalseNegativeCancellationLoss",
    "InfoNCELoss",
    "KLRegularizedInfoNCELoss",
    "SoftInfoNCELoss",
    "WeightEstimator",
    "WeightedInfoNCELoss",
    "__version__",
    "bce_soft_label_loss",
    "cancellation_weights",
    "kl_regularized_infonce_loss",
    "negative_weights",
    "soft_infonce_loss",
    "weighted_infonce_loss",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'soft_infonce' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .data import mine_pairs
    from .evaluation import (
        evaluate_retrieval,
        mean_reciprocal_rank,
        retrieval_metrics,
        target_ranks,
    )
    from .modeling import BiEncoder
    from .trainer import SoftInfoNCETrainer
    from .training_args import SoftInfoNCETrainingArguments
