"""Weight estimators: the relevance ``sim_ij`` from which Soft-InfoNCE weights negatives.

``UniformEstimator`` (InfoNCE), ``BM25Estimator`` (lexical, in-batch), ``EmbeddingEstimator``
(a frozen sentence encoder such as SimCSE) and ``TrainedModelEstimator`` (a frozen
InfoNCE-trained bi-encoder): the paper's. Beyond it: ``PositiveAwareEstimator`` (any
estimator's scores relative to the positive's), ``SelfGuidedEstimator`` (the training model's
own detached scores), ``EMAEstimator`` (a moving average of it) and ``calibrate_temperature``
(t from a target spread of the weights).
Subclass :class:`WeightEstimator` for your own, or :class:`FrozenEncoderEstimator` when it runs
a frozen neural encoder (freezing, device and an embedding cache come with it). Importing
this package is light: sentence-transformers and transformers load on first use.
"""

from __future__ import annotations

from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.estimators.bm25 import BM25Estimator, code_tokenize
from soft_infonce.estimators.cache import EmbeddingCache, EmbeddingStore
from soft_infonce.estimators.calibration import calibrate_temperature, negative_entropy
from soft_infonce.estimators.checks import check_texts
from soft_infonce.estimators.ema import EMAEstimator
from soft_infonce.estimators.embedding import EmbeddingEstimator
from soft_infonce.estimators.frozen import FrozenEncoderEstimator, freeze
from soft_infonce.estimators.positive_aware import PositiveAwareEstimator
from soft_infonce.estimators.self_guided import SelfGuidedEstimator
from soft_infonce.estimators.trained import TrainedModelEstimator
from soft_infonce.estimators.uniform import UniformEstimator

__all__ = [
    "BM25Estimator",
    "EMAEstimator",
    "EmbeddingCache",
    "EmbeddingEstimator",
    "EmbeddingStore",
    "FrozenEncoderEstimator",
    "PositiveAwareEstimator",
    "SelfGuidedEstimator",
    "TrainedModelEstimator",
    "UniformEstimator",
    "WeightEstimator",
    "calibrate_temperature",
    "check_texts",
    "code_tokenize",
    "freeze",
    "negative_entropy",
]
