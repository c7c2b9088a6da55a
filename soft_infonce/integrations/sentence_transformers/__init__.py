"""The sentence-transformers face of Soft-InfoNCE: losses for ``SentenceTransformerTrainer``.

:class:`SoftInfoNCELoss` and :class:`CachedSoftInfoNCELoss` follow sentence-transformers'
loss conventions (the model first; ``forward(sentence_features, labels)``; columns
``(anchor, positive, negative_1, ...)``; ``scale`` and ``similarity_fct``;
``get_config_dict()`` and ``citation`` for the model card) and weight each negative with
Eq. 4 of Li et al. (EMNLP 2023) from any :class:`~soft_infonce.WeightEstimator`.

The estimator reads raw texts, which sentence-transformers' default collator drops after
tokenising. :class:`SoftInfoNCEDataCollator` keeps them (``<column>_raw_text``); without
it the losses decode the token ids with the model's tokenizer and warn once.
:func:`clustered_batches` is a ``batch_sampler`` for topic-clustered batches.
Needs sentence-transformers >= 6.0.
"""

try:
    from sentence_transformers.base.losses.gradcache import CachedLossMixin  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "soft_infonce.integrations.sentence_transformers needs sentence-transformers >= 6.0: "
        'pip install "soft-infonce[sentence-transformers]"'
    ) from error

from soft_infonce.integrations.sentence_transformers.cached import CachedSoftInfoNCELoss
from soft_infonce.integrations.sentence_transformers.collator import (
    TEXT_KEY,
    SoftInfoNCEDataCollator,
    without_texts,
)
from soft_infonce.integrations.sentence_transformers.loss import SoftInfoNCELoss
from soft_infonce.integrations.sentence_transformers.sampling import clustered_batches

__all__ = [
    "TEXT_KEY",
    "CachedSoftInfoNCELoss",
    "SoftInfoNCEDataCollator",
    "SoftInfoNCELoss",
    "clustered_batches",
    "without_texts",
]
