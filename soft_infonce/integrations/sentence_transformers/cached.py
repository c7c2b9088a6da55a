"""The GradCache version of the sentence-transformers loss."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import (
    CachedLossMixin,
    has_static_embedding_input,
)
from sentence_transformers.util import cos_sim
from torch import Tensor, nn

from soft_infonce import losses as core
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.integrations.sentence_transformers.collator import without_texts
from soft_infonce.integrations.sentence_transformers.loss import SoftInfoNCELoss

__all__ = ["CachedSoftInfoNCELoss", "loss_rows_per_chunk"]

SCORES_PER_CHUNK = 2**20  # score entries per chunk of the loss step: 4 MiB per float32 matrix


def loss_rows_per_chunk(n: int, m: int, mini_batch_size: int) -> int:
    """Anchors scored (and back-propagated) at a time by the loss step: ``mini_batch_size``,
    or more while a chunk's ``[rows, M]`` scores stay within :data:`SCORES_PER_CHUNK` entries,
    so the loss's memory is bounded whatever the batch and the chunks are few."""
    return min(n, max(mini_batch_size, SCORES_PER_CHUNK // max(1, m)))


class CachedSoftInfoNCELoss(CachedLossMixin, nn.Module):
    """:class:`SoftInfoNCELoss` with GradCache (Gao et al., 2021), for batches beyond memory.

    As sentence-transformers' ``CachedMultipleNegativesRankingLoss``: the columns are embedded
    ``mini_batch_size`` rows at a time without gradients, the loss (the shared
    ``compute_loss_from_embeddings``) is back-propagated to the embeddings a chunk of anchors
    at a time (:func:`loss_rows_per_chunk`: the ``[rows, M]`` scores of a chunk stay within
    about 4 MiB), and each mini-batch is embedded again with gradients. Same value and
    gradients as :class:`SoftInfoNCELoss` (without dropout), at the cost of a second forward
    pass; the estimator runs once per batch.

    Args:
        model: the SentenceTransformer to train.
        estimator: any :class:`~soft_infonce.WeightEstimator`.
        alpha: as :class:`SoftInfoNCELoss` (``None``: the estimator's preset).
        beta: as :class:`SoftInfoNCELoss`.
        temperature: as :class:`SoftInfoNCELoss`.
        min_weight: as :class:`SoftInfoNCELoss`.
        scale: as :class:`SoftInfoNCELoss`.
        similarity_fct: as :class:`SoftInfoNCELoss`.
        mini_batch_size: rows embedded at a time.
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
        if isinstance(mini_batch_size, bool) or not (
            isinstance(mini_batch_size, int) and mini_batch_size > 0
        ):
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
    def last_statistics(self) -> dict[str, Tensor]:
        """The last batch's weight statistics (``q2c/weight_mean``, ...) as 0-d tensors."""
        return self.loss.last_statistics

    def statistics(self) -> dict[str, float]:
        """:attr:`last_statistics` as numbers (one host sync; warns once about flat weights)."""
        return self.loss.statistics()

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
        n, m = embeddings[0].shape[0], embeddings[0].shape[0] * (len(embeddings) - 1)
        rows = loss_rows_per_chunk(n, m, self.mini_batch_size) if with_backward else None
        return self.loss.compute_loss_from_embeddings(
            embeddings, labels, self._texts, rows_per_chunk=rows
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
