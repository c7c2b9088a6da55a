"""The sentence-transformers face of Soft-InfoNCE: losses for ``SentenceTransformerTrainer``.

:class:`SoftInfoNCELoss` and :class:`CachedSoftInfoNCELoss` follow sentence-transformers'
loss conventions (the model first; ``forward(sentence_features, labels)``; columns
``(anchor, positive, negative_1, ...)``; ``scale`` and ``similarity_fct``;
``get_config_dict()`` and ``citation`` for the model card) and weight each negative with
Eq. 4 of Li et al. (EMNLP 2023) from any :class:`~soft_infonce.WeightEstimator`.

The estimator reads raw texts, which sentence-transformers' default collator drops after
tokenising. :class:`SoftInfoNCEDataCollator` keeps them (``<column>_raw_text``); without
it the losses decode the token ids with the model's tokenizer and warn once.
Needs sentence-transformers >= 6.0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

try:
    from sentence_transformers.base.losses.gradcache import (
        CachedLossMixin,
        has_static_embedding_input,
    )
    from sentence_transformers.base.losses.merged_forward import embed_columns
    from sentence_transformers.sentence_transformer.data_collator import (
        SentenceTransformerDataCollator,
    )
    from sentence_transformers.util import cos_sim, similarity_fct_name
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "soft_infonce.sentence_transformers needs sentence-transformers >= 6.0: "
        "pip install 'sentence-transformers>=6.0'"
    ) from error

from . import losses as core
from .distributed import gather_objects, gather_with_grad, rank
from .estimators.base import WeightEstimator

logger = logging.getLogger(__name__)

__all__ = ["TEXT_KEY", "CachedSoftInfoNCELoss", "SoftInfoNCEDataCollator", "SoftInfoNCELoss"]

#: The feature key under which :class:`SoftInfoNCEDataCollator` keeps a column's raw texts.
TEXT_KEY = "raw_text"


@dataclass
class SoftInfoNCEDataCollator(SentenceTransformerDataCollator):
    """sentence-transformers' collator that also keeps each text column's raw strings.

    Every string column ``c`` gains ``c_raw_text`` (the texts as in the dataset, before any
    prompt); the trainer hands it to the loss inside that column's features as ``"raw_text"``.
    Build it as the trainer would: ``SoftInfoNCEDataCollator(model.preprocess,
    prompts=args.prompts, router_mapping=args.router_mapping)``.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        if not features:
            return batch
        for column in features[0]:
            if column == "dataset_name" or column in self.valid_label_columns:
                continue
            values = [row[column] for row in features]
            if all(isinstance(value, str) for value in values):
                batch[f"{column}_{TEXT_KEY}"] = values
        return batch


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
        alpha: down-weighting strength (``None``: the estimator's preset in
            :data:`soft_infonce.PRESETS`, else 1.3).
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
        estimator takes pairs only.

    Relations:
        :class:`CachedSoftInfoNCELoss` is the GradCache version (large batches, little
        memory); :class:`soft_infonce.SoftInfoNCELoss` is the plain PyTorch face.

    Examples:
        ```python
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from soft_infonce.estimators import BM25Estimator
        from soft_infonce.sentence_transformers import SoftInfoNCEDataCollator, SoftInfoNCELoss

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
            raise ValueError(
                f"estimator must be a soft_infonce.WeightEstimator, got {type(estimator).__name__}"
            )
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if not callable(similarity_fct):
            raise ValueError(f"similarity_fct must be callable, got {similarity_fct!r}")
        default = core.PRESETS.get(estimator.preset or "", (1.3, 0.7, 1.0))
        self.model = model
        self.objective = core.SoftInfoNCELoss(
            alpha=default[0] if alpha is None else alpha,
            beta=default[1] if beta is None else beta,
            temperature=default[2] if temperature is None else temperature,
            min_weight=min_weight,
            estimator=estimator,
        )
        self.scale = float(scale)
        self.similarity_fct = similarity_fct
        self.gather_across_devices = bool(gather_across_devices)
        self.decode_missing_texts = bool(decode_missing_texts)
        self._warned_decode = False

    @property
    def estimator(self) -> WeightEstimator:
        """The weight estimator (shared with :attr:`objective`)."""
        return self.objective.estimator

    @property
    def last_statistics(self) -> dict[str, float]:
        """Mean, min, max and clamped share of the last batch's negative weights."""
        return self.objective.last_statistics

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
        rows_per_chunk: int | None = None,
        with_backward: bool = False,
    ) -> Tensor:
        """Soft-InfoNCE from per-column embeddings ``[N, H]`` and their raw texts.

        Args:
            embeddings: anchors, positives, then any hard-negative columns.
            labels: unused (the positives are the paired rows).
            texts: the raw texts of each column (see :meth:`texts_of`).
            rows_per_chunk: score this many anchors at a time (the cached loss's memory cap).
            with_backward: back-propagate each chunk and return the detached total.

        Returns:
            The mean loss over the anchors (float32 scalar).
        """
        if len(embeddings) < 2 or texts is None or len(texts) != len(embeddings):
            raise ValueError(
                f"embeddings and texts must both hold (anchor, positive[, negatives...]) "
                f"columns, got {len(embeddings)} embedding and "
                f"{None if texts is None else len(texts)} text column(s)"
            )
        anchors, n = embeddings[0], embeddings[0].shape[0]
        candidates = embeddings[1:]
        queries = list(texts[0])
        columns = [list(column) for column in texts[1:]]
        offset = 0
        if self.gather_across_devices:
            candidates = [gather_with_grad(c) for c in candidates]  # each (world * N, H)
            columns = [gather_objects(column) for column in columns]
            paired = gather_objects(queries)
            offset = rank() * n
        else:
            paired = queries
        codes = [text for column in columns for text in column]
        candidate_queries = paired if len(columns) == 1 else None
        if candidate_queries is None and self.estimator.requires_candidate_queries:
            raise ValueError(
                f"{type(self.estimator).__name__} compares each query with the query paired "
                f"with each candidate, but the {len(columns) - 1} hard-negative column(s) have "
                "no paired query: use a 'query-code' estimator or (anchor, positive) pairs"
            )
        similarity = self.estimator(queries, codes, candidate_queries)  # (N, world * N * (1+k))
        all_candidates = torch.cat(candidates)  # (world * N * (1 + k), H)
        positives = torch.arange(offset, offset + n, device=anchors.device)
        step = n if rows_per_chunk is None else rows_per_chunk
        total, statistics = anchors.new_zeros((), dtype=torch.float32), []
        for begin in range(0, n, step):
            rows = slice(begin, min(begin + step, n))
            scores = self.similarity_fct(anchors[rows], all_candidates) * self.scale  # (rows, M)
            chunk = self.objective.loss_from_scores(scores, similarity[rows], positives[rows])
            chunk = chunk * (rows.stop - rows.start) / n
            statistics.append((rows.stop - rows.start, self.objective.last_statistics))
            if with_backward:
                chunk.backward()
                chunk = chunk.detach()
            total = total + chunk
        self.objective.last_statistics = _merge_statistics(statistics)
        return total

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


def without_texts(features: dict[str, Any]) -> dict[str, Any]:
    """``features`` without the raw texts, so the model and column merging never see them."""
    return {key: value for key, value in features.items() if key != TEXT_KEY}


def _merge_statistics(parts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    if len(parts) == 1 or not all(stats for _, stats in parts):
        return parts[-1][1]
    rows = sum(count for count, _ in parts)
    merged = {
        key: sum(count * stats[key] for count, stats in parts) / rows
        for key in ("weight_mean", "weight_clamped")
    }
    merged["weight_min"] = min(stats["weight_min"] for _, stats in parts)
    merged["weight_max"] = max(stats["weight_max"] for _, stats in parts)
    return merged


class CachedSoftInfoNCELoss(CachedLossMixin, nn.Module):
    """:class:`SoftInfoNCELoss` with GradCache (Gao et al., 2021), for batches beyond memory.

    As sentence-transformers' ``CachedMultipleNegativesRankingLoss``: the columns are embedded
    ``mini_batch_size`` rows at a time without gradients, the loss is back-propagated to
    the embeddings (``mini_batch_size`` anchors at a time), and each mini-batch is embedded
    again with gradients. Same value and gradients as :class:`SoftInfoNCELoss` (without
    dropout), at the cost of a second forward pass; the estimator runs once per batch.

    Args:
        model: the SentenceTransformer to train.
        estimator: any :class:`~soft_infonce.WeightEstimator`.
        alpha: as :class:`SoftInfoNCELoss` (``None``: the estimator's preset).
        beta: as :class:`SoftInfoNCELoss`.
        temperature: as :class:`SoftInfoNCELoss`.
        min_weight: as :class:`SoftInfoNCELoss`.
        scale: as :class:`SoftInfoNCELoss`.
        similarity_fct: as :class:`SoftInfoNCELoss`.
        mini_batch_size: rows embedded (and anchors scored) at a time.
        mini_batch_num_tokens: cap mini-batches by non-padding tokens instead.
        gather_across_devices: as :class:`SoftInfoNCELoss`.
        decode_missing_texts: as :class:`SoftInfoNCELoss`.
        show_progress_bar: show the mini-batch progress.

    Examples:
        ``loss = CachedSoftInfoNCELoss(model, BM25Estimator(), mini_batch_size=32)`` with
        ``per_device_train_batch_size=1024``, otherwise as :class:`SoftInfoNCELoss`.
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
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        gather_across_devices: bool = False,
        decode_missing_texts: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        if not (isinstance(mini_batch_size, int) and mini_batch_size > 0):
            raise ValueError(f"mini_batch_size must be a positive int, got {mini_batch_size!r}")
        if mini_batch_num_tokens is not None and not (
            isinstance(mini_batch_num_tokens, int) and mini_batch_num_tokens > 0
        ):
            raise ValueError(
                "mini_batch_num_tokens must be a positive int or None, got "
                f"{mini_batch_num_tokens!r}"
            )
        if has_static_embedding_input(model):
            raise ValueError(
                "model must embed batched token ids, got a StaticEmbedding model whose inputs "
                "cannot be split into mini-batches: use SoftInfoNCELoss"
            )
        self.model = model
        self.loss = SoftInfoNCELoss(
            model,
            estimator,
            alpha=alpha,
            beta=beta,
            temperature=temperature,
            min_weight=min_weight,
            scale=scale,
            similarity_fct=similarity_fct,
            gather_across_devices=gather_across_devices,
            decode_missing_texts=decode_missing_texts,
        )
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self._texts: list[list[str]] | None = None

    @property
    def last_statistics(self) -> dict[str, float]:
        """Mean, min, max and clamped share of the last batch's negative weights."""
        return self.loss.last_statistics

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None) -> Tensor:
        """GradCache forward; the estimator reads the raw texts of the whole batch once."""
        features = list(sentence_features)
        self._texts = self.loss.texts_of(features)
        try:
            return self.forward_cached([without_texts(f) for f in features], labels)
        finally:
            self._texts = None

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The Soft-InfoNCE loss from the mini-batch embeddings (the GradCache step 2)."""
        embeddings = [torch.cat(column) for column in reps]  # each (N, H)
        return self.loss.compute_loss_from_embeddings(
            embeddings, labels, self._texts, self.mini_batch_size, with_backward
        )

    def get_config_dict(self) -> dict[str, Any]:
        """The settings shown on the model card."""
        return {
            **self.loss.get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }

    @property
    def citation(self) -> str:
        """BibTeX of Li et al., EMNLP 2023 (GradCache: Gao et al., 2021, arXiv:2101.06983)."""
        return core.CITATION
