"""Weight estimators: the relevance ``sim_ij`` from which Soft-InfoNCE weights negatives.

Here (torch, numpy and scipy only): ``UniformEstimator`` (InfoNCE) and ``BM25Estimator``
(lexical, in-batch), two of the paper's; ``PositiveAwareEstimator`` (any estimator's scores
relative to the positive's), ``SelfGuidedEstimator`` (the training model's own detached scores)
and ``calibrate_temperature`` (t from a target spread of the weights). The estimators that run
another library's model sit with its integration: ``EmbeddingEstimator`` (the paper's SimCSE,
:mod:`soft_infonce.integrations.sentence_transformers`), ``TrainedModelEstimator`` and
``EMAEstimator`` (:mod:`soft_infonce.integrations.hf`).
Subclass :class:`WeightEstimator` for your own, or :class:`FrozenEncoderEstimator` when it runs
a frozen neural encoder (freezing, device and an embedding cache come with it).
"""

from __future__ import annotations

from soft_infonce.checks import check_texts
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.estimators.bm25 import BM25Estimator, code_tokenize
from soft_infonce.estimators.cache import EmbeddingCache, EmbeddingStore
from soft_infonce.estimators.calibration import calibrate_temperature, negative_entropy
from soft_infonce.estimators.frozen import FrozenEncoderEstimator, freeze
from soft_infonce.estimators.positive_aware import PositiveAwareEstimator
from soft_infonce.estimators.self_guided import SelfGuidedEstimator
from soft_infonce.estimators.uniform import UniformEstimator

__all__ = [
    "BM25Estimator",
    "EmbeddingCache",
    "EmbeddingStore",
    "FrozenEncoderEstimator",
    "PositiveAwareEstimator",
    "SelfGuidedEstimator",
    "UniformEstimator",
    "WeightEstimator",
    "calibrate_temperature",
    "check_texts",
    "code_tokenize",
    "freeze",
    "negative_entropy",
]
