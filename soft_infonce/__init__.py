"""soft-infonce: Soft-InfoNCE (Li et al., EMNLP 2023) as a drop-in loss for retrieval bi-encoders.

Three layers, each a folder:

- the core (this package's top level: ``functional``, ``losses``, ``presets``, ``estimators``,
  ``metrics``, ``distributed``, ``gradcache``, ``clustering`` and the batch samplers of
  ``sampling``): torch, numpy, scipy, safetensors and tqdm only;
- ``integrations``: ``integrations.hf`` (``BiEncoder``, ``SoftInfoNCETrainer`` and its
  arguments, the collator, retrieval evaluation) and ``integrations.sentence_transformers``;
- ``codesearch``: the applications (data loading and mining, the search index, the
  ``soft-infonce`` command, plotting, GraphCodeBERT data flow).

The core names are imported here; the Hugging Face names in ``_LAZY`` import transformers, so
they load on first attribute access (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from soft_infonce.estimators import (
    BM25Estimator,
    UniformEstimator,
    WeightEstimator,
)
from soft_infonce.functional import (
    bce_soft_label_loss,
    cancellation_weights,
    kl_regularized_infonce_loss,
    negative_weights,
    soft_infonce_loss,
    weighted_infonce_loss,
)
from soft_infonce.losses import (
    BCELoss,
    FalseNegativeCancellationLoss,
    InfoNCELoss,
    KLRegularizedInfoNCELoss,
    SoftInfoNCELoss,
    WeightedInfoNCELoss,
)
from soft_infonce.metrics import mean_reciprocal_rank, retrieval_metrics, target_ranks
from soft_infonce.presets import PRESETS
from soft_infonce.sampling import (
    ClusteredBatchSampler,
    GroupBatchSampler,
    clustered_batch_sampler,
)

__version__ = "0.1.0"

# name -> module holding it; imported on first attribute access. Only modules that pull in
# transformers or datasets belong here (tests/core/test_losses.py checks the import stays light).
_LAZY = {
    "BiEncoder": "soft_infonce.integrations.hf.modeling",
    "EMAEstimator": "soft_infonce.integrations.hf.ema_estimator",
    "EmbeddingEstimator": "soft_infonce.integrations.sentence_transformers.estimator",
    "TrainedModelEstimator": "soft_infonce.integrations.hf.trained_estimator",
    "evaluate_retrieval": "soft_infonce.integrations.hf.evaluation",
    "SoftInfoNCETrainer": "soft_infonce.integrations.hf.trainer",
    "SoftInfoNCETrainingArguments": "soft_infonce.integrations.hf.training_args",
    "mine_pairs": "soft_infonce.codesearch.data.mining",
}

__all__ = [
    "PRESETS",
    "BCELoss",
    "BM25Estimator",
    "ClusteredBatchSampler",
    "GroupBatchSampler",
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
    "clustered_batch_sampler",
    "kl_regularized_infonce_loss",
    "negative_weights",
    "soft_infonce_loss",
    "mean_reciprocal_rank",
    "retrieval_metrics",
    "target_ranks",
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
    from soft_infonce.codesearch.data.mining import mine_pairs
    from soft_infonce.integrations.hf.ema_estimator import EMAEstimator
    from soft_infonce.integrations.hf.evaluation import evaluate_retrieval
    from soft_infonce.integrations.hf.modeling import BiEncoder
    from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator
    from soft_infonce.integrations.hf.trainer import SoftInfoNCETrainer
    from soft_infonce.integrations.hf.training_args import SoftInfoNCETrainingArguments
    from soft_infonce.integrations.sentence_transformers.estimator import EmbeddingEstimator
