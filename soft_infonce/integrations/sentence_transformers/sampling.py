"""Topic-clustered batches for ``SentenceTransformerTrainer``.

sentence-transformers accepts a callable as ``SentenceTransformerTrainingArguments.
batch_sampler``; it is called with ``(dataset, batch_size=..., drop_last=..., valid_label_columns=
..., generator=..., seed=...)`` and must return a batch sampler. :func:`clustered_batches`
returns such a callable: it clusters the dataset's anchor column (TF-IDF k-means, or the
embeddings you pass; :func:`soft_infonce.sampling.topic_labels`) and returns a
:class:`~soft_infonce.sampling.ClusteredBatchSampler`, whose ``set_epoch`` the trainer calls
every epoch.

Example:
    >>> from sentence_transformers import SentenceTransformerTrainingArguments
    >>> args = SentenceTransformerTrainingArguments(
    ...     output_dir="out", batch_sampler=clustered_batches(n_clusters=64)
    ... )
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from soft_infonce.checks import check_int
from soft_infonce.sampling import ClusteredBatchSampler, topic_labels

__all__ = ["clustered_batches"]


def clustered_batches(
    n_clusters: int | None = None,
    *,
    column: str | None = None,
    clusters_per_batch: int = 1,
    embeddings: np.ndarray | None = None,
) -> Callable[..., ClusteredBatchSampler]:
    """A ``batch_sampler`` callable for ``SentenceTransformerTrainingArguments``.

    Args:
        n_clusters: k-means clusters; ``None``: rows // batch size (capped at distinct texts).
        column: the column to cluster; ``None``: the dataset's first column (the anchor).
        clusters_per_batch: 1 or 2 clusters per batch.
        embeddings: precomputed embeddings of that column's rows (e.g. a frozen encoder's).

    Returns:
        ``f(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0)``.
    """
    if n_clusters is not None:
        check_int("n_clusters", n_clusters)

    def build(
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: Any = None,
        seed: int = 0,
    ) -> ClusteredBatchSampler:
        name = column or dataset.column_names[0]
        if name not in dataset.column_names:
            raise ValueError(f"column {name!r} is not in the dataset's {dataset.column_names}")
        texts = [str(t) for t in dataset[name]]
        labels = topic_labels(texts, batch_size, n_clusters, embeddings=embeddings, seed=seed)
        return ClusteredBatchSampler(
            labels,
            batch_size,
            clusters_per_batch=clusters_per_batch,
            drop_last=drop_last,
            seed=seed,
        )

    return build
