"""Soft-InfoNCE for ``SentenceTransformerTrainer``: the shared loss path behind
sentence-transformers' loss conventions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import cos_sim, similarity_fct_name
from torch import Tensor, nn

from soft_infonce import losses as core
from soft_infonce.checks import check_number
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.integrations.sentence_transformers.collator import TEXT_KEY, without_texts

logger = logging.getLogger(__name__)

__all__ = ["SoftInfoNCELoss"]


def _estimator_name(estimator: WeightEstimator) -> str:
    settings = {"side": getattr(estimator, "side", None)}
    cache_config = getattr(estimator, "cache_config", dict)  # frozen-encoder estimators only
    settings.update({k: v for k, v in cache_config().items() if k == "model"})
    args = ", ".join(f"{k}={v!r}" for k, v in settings.items() if v is not None)
    return f"{type(estimator).__name__}({args})"


class SoftInfoNCELoss(nn.Module):
    """Soft-InfoNCE for sentence-transformers: InfoNCE whose negatives carry weights ``w_ij``.

    ``L_i = -log(e^{s_ii} / (e^{s_ii} + sum_{j != i} w_ij e^{s_ij}))`` (paper, Eq. 3) with
    ``s = scale * similarity_fct(anchor, candidates)`` and ``w`` from the estimator's
    relevance by Eq. 4 (:func:`soft_infonce.functional.negative_weights`). With a
    :class:`~soft_infonce.estimators.UniformEstimator` it equals
    ``MultipleNegativesRankingLoss`` with the same ``scale`` and ``similarity_fct``.

    Args:
        model: the SentenceTransformer to train.
        estimator: any :class:`~soft_infonce.WeightEstimator` (BM25, a frozen guide
            encoder, a trained bi-encoder, your own); it never receives gradients.
        alpha: down-weighting strength (``None``: the estimator's preset, resolved by
            :func:`soft_infonce.presets.resolve` as in every face, else 1.3).
        beta: the uniform part (``None``: the preset's, else 0.7).
        temperature: softmax temperature of the relevance, not ``1 / scale`` (``None``: the
            preset's, else 1.0). It must suit the estimator's score scale.
        min_weight: lower clamp of the weights, in ``(0, 1]``.
        scale: multiplies ``similarity_fct`` (20 with cosine, as MultipleNegativesRankingLoss).
        similarity_fct: ``(a [N, H], b [M, H]) -> [N, M]``; cosine by default.
        gather_across_devices: score against the candidates of every process (and their
            texts), with gradients reaching every process.
        decode_missing_texts: without :class:`SoftInfoNCEDataCollator`, decode the texts
            from the token ids (lossy: case, truncation) instead of raising ``ValueError``.

    References:
        Li, Zhou, Tuan, Miao. Rethinking Negative Pairs in Code Search. EMNLP 2023.

    Inputs:
        Columns ``(anchor, positive)`` or ``(anchor, positive, negative_1, ..., negative_n)``;
        no labels. Hard-negative columns become extra candidates (``M = N * (1 + n)``),
        scored by the estimator too; they have no paired query, so a ``"query-query"``
        estimator takes pairs only. The loss is :class:`soft_infonce.SoftInfoNCELoss`'s
        ``compute_loss_from_embeddings`` (the one shared path) with ``similarity_fct`` as its
        score function; ``last_statistics`` holds its ``q2c/...`` weight statistics.

    Relations:
        :class:`CachedSoftInfoNCELoss` is the GradCache version (large batches, little
        memory); :class:`soft_infonce.SoftInfoNCELoss` is the plain PyTorch face.

    Examples:
        ```python
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from soft_infonce.estimators import BM25Estimator
        from soft_infonce.integrations.sentence_transformers import (
            SoftInfoNCEDataCollator,
            SoftInfoNCELoss,
        )

        model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
        train = Dataset.from_dict({
            "query": ["sort a list", "read a file", "parse json", "write a file", "sum values"],
            "code": ["sorted(x)", "open(p).read()", "json.loads(s)", "open(p, 'w').write(s)",
                     "sum(v)"],
        })
        trainer = SentenceTransformerTrainer(
            model=model, train_dataset=train, loss=SoftInfoNCELoss(model, BM25Estimator()),
            data_collator=SoftInfoNCEDataCollator(model.preprocess),
        )
        trainer.train()
        ```
    """

    def __init__(
        self,
        model: nn.Module,
        estimator: WeightEstimator,
        alpha: float | None = None,
        beta: float | None = None,
        temperature: float | None = None,
        min_weight: float = 0.1,
        scale: float = 20.0,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
        gather_across_devices: bool = False,
        decode_missing_texts: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(estimator, WeightEstimator):
            raise TypeError(
                f"estimator must be a soft_infonce.WeightEstimator, got {type(estimator).__name__}"
            )
        if not callable(similarity_fct):
            raise TypeError(f"similarity_fct must be callable, got {similarity_fct!r}")
        self.model = model
        self.objective = core.SoftInfoNCELoss(
            alpha=alpha,
            beta=beta,
            temperature=temperature,
            min_weight=min_weight,
            scale=check_number("scale", scale, low=0, low_open=True),
            estimator=estimator,
            gather_across_devices=gather_across_devices,
        )
        self.objective.score_fn = similarity_fct
        self.similarity_fct = similarity_fct
        self.decode_missing_texts = bool(decode_missing_texts)
        self._warned_decode = False

    @property
    def scale(self) -> float:
        """Multiplies ``similarity_fct`` (the objective's scale)."""
        return self.objective.scale

    @property
    def gather_across_devices(self) -> bool:
        """Whether the candidates of every process are negatives."""
        return self.objective.gather_across_devices

    @property
    def estimator(self) -> WeightEstimator:
        """The weight estimator (shared with :attr:`objective`)."""
        estimator = self.objective.estimator
        assert estimator is not None  # required and checked by __init__
        return estimator

    @property
    def last_statistics(self) -> dict[str, Tensor]:
        """The last batch's weight statistics (``q2c/weight_mean``, ...) as 0-d tensors."""
        return self.objective.last_statistics

    def statistics(self) -> dict[str, float]:
        """:attr:`last_statistics` as numbers (one host sync; warns once about flat weights)."""
        return self.objective.statistics()

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None) -> Tensor:
        """Embed the columns, then :meth:`compute_loss_from_embeddings` (labels are unused)."""
        features = list(sentence_features)
        texts = self.texts_of(features)
        embeddings = embed_columns(self.model, [without_texts(f) for f in features])
        return self.compute_loss_from_embeddings(embeddings, labels, texts)

    def texts_of(self, sentence_features: Sequence[dict[str, Any]]) -> list[list[str]]:
        """The raw texts of each column: kept by the collator, else decoded from token ids."""
        if len(sentence_features) < 2:
            raise ValueError(
                f"{type(self).__name__} needs (anchor, positive[, negatives...]) columns, got "
                f"{len(sentence_features)} column(s)"
            )
        if all(TEXT_KEY in f for f in sentence_features):
            return [list(f[TEXT_KEY]) for f in sentence_features]
        model = getattr(self.model, "module", self.model)  # DDP
        tokenizer = getattr(getattr(model, "_orig_mod", model), "tokenizer", None)
        if (
            not self.decode_missing_texts
            or tokenizer is None
            or any("input_ids" not in f for f in sentence_features)
        ):
            raise ValueError(
                f"{type(self).__name__} needs the raw texts for its estimator, got features "
                f"without {TEXT_KEY!r}: pass data_collator=SoftInfoNCEDataCollator("
                "model.preprocess) to SentenceTransformerTrainer"
            )
        if not self._warned_decode:
            self._warned_decode = True
            logger.warning(
                "No raw texts in the batch: decoding them from the token ids for the estimator "
                "(lossy: truncated, maybe lower-cased). Pass data_collator=SoftInfoNCEDataCollator"
                "(model.preprocess) to SentenceTransformerTrainer to keep the original texts."
            )
        return [
            tokenizer.batch_decode(f["input_ids"], skip_special_tokens=True)
            for f in sentence_features
        ]

    def compute_loss_from_embeddings(
        self,
        embeddings: list[Tensor],
        labels: Tensor | None = None,
        texts: Sequence[Sequence[str]] | None = None,
        *,
        rows_per_chunk: int | None = None,
    ) -> Tensor:
        """Soft-InfoNCE from per-column embeddings ``[N, H]`` and their raw texts.

        Args:
            embeddings: anchors, positives, then any hard-negative columns.
            labels: unused (the positives are the paired rows).
            texts: the raw texts of each column (see :meth:`texts_of`).
            rows_per_chunk: score and back-propagate this many anchors at a time (the cached
                loss's memory bound); the returned loss is then detached.

        Returns:
            The mean loss over the anchors (float32 at least).
        """
        if len(embeddings) < 2 or texts is None or len(texts) != len(embeddings):
            raise ValueError(
                f"embeddings and texts must both hold (anchor, positive[, negatives...]) "
                f"columns, got {len(embeddings)} embedding and "
                f"{None if texts is None else len(texts)} text column(s)"
            )
        queries = list(texts[0])
        codes = [text for column in texts[1:] for text in column]
        candidate_queries = queries if len(texts) == 2 else None
        if candidate_queries is None and self.estimator.requires_candidate_queries:
            raise ValueError(
                f"{type(self.estimator).__name__} compares each query with the query paired "
                f"with each candidate, but the {len(texts) - 2} hard-negative column(s) have "
                "no paired query: use a 'query-code' estimator or (anchor, positive) pairs"
            )
        paired = {"queries": queries, "codes": codes, "candidate_queries": candidate_queries}
        return self.objective.compute_loss_from_embeddings(
            embeddings[0], embeddings[1:], paired, rows_per_chunk=rows_per_chunk
        )

    def get_config_dict(self) -> dict[str, Any]:
        """The settings shown on the model card."""
        return {
            "estimator": _estimator_name(self.estimator),
            "alpha": self.objective.alpha,
            "beta": self.objective.beta,
            "temperature": self.objective.temperature,
            "min_weight": self.objective.min_weight,
            "scale": self.scale,
            "similarity_fct": similarity_fct_name(self.similarity_fct),
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        """BibTeX of Li et al., EMNLP 2023."""
        return core.CITATION
