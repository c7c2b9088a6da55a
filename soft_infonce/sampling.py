"""Batch samplers that control what a batch's in-batch negatives are.

* :class:`ClusteredBatchSampler`: topic-clustered batches (TAS-Balanced): each batch is drawn
  from one or two clusters of similar queries (:func:`soft_infonce.clustering.cluster_queries`),
  so in-batch negatives are harder, at no extra encoding cost.
* :class:`GroupBatchSampler`: rows carry known group ids (e.g. a pair and its lightly changed
  copies); the sampler dials the share of in-batch negatives that come from the row's own group.

Both yield lists of row indices, every row exactly once per epoch (the last batch may be short
unless ``drop_last``), are seeded (``seed`` and the epoch), and follow the ``set_epoch`` protocol
of ``transformers`` / ``sentence-transformers``; when no one calls it, each new iteration is the
next epoch. Pass them as a ``DataLoader``'s ``batch_sampler``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from soft_infonce.checks import check_int, check_number
from soft_infonce.clustering import cluster_queries, tfidf_embeddings

__all__ = [
    "ClusteredBatchSampler",
    "GroupBatchSampler",
    "clustered_batch_sampler",
    "same_group_share",
    "topic_labels",
]


def _check_sizes(n: int, batch_size: int) -> None:
    check_int("batch_size", batch_size, minimum=2)
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} rows: no full batch")


def same_group_share(groups: Sequence[int] | np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Share of in-batch negatives (ordered pairs ``i != j`` in a batch) with equal group ids."""
    g = np.asarray(groups)
    same = total = 0
    for batch in batches:
        _, counts = np.unique(g[np.asarray(batch, dtype=np.int64)], return_counts=True)
        same += int((counts * (counts - 1)).sum())
        total += len(batch) * (len(batch) - 1)
    return same / total if total else 0.0


class _EpochSampler(Sampler[list[int]]):
    """Shared epoch bookkeeping: ``set_epoch`` or, failing that, one epoch per iteration."""

    def __init__(self, n: int, batch_size: int, drop_last: bool, seed: int) -> None:
        _check_sizes(n, batch_size)
        check_int("seed", seed, minimum=0)
        self.n, self.batch_size, self.drop_last, self.seed = n, batch_size, drop_last, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        yield from batches

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])


class ClusteredBatchSampler(_EpochSampler):
    """Batches drawn from one or two clusters each (TAS-Balanced style), every row once an epoch.

    Per epoch: each cluster's rows are shuffled and cut into chunks of ``batch_size //
    clusters_per_batch``; a batch is ``clusters_per_batch`` random chunks (of different clusters
    when two). A cluster's rows that do not fill a chunk (all of a cluster smaller than a chunk)
    go to a shuffled pool of mixed batches at the end of the epoch's order; the batches are then
    shuffled. Large clusters give more batches, so clusters are sampled in proportion to size.

    Args:
        labels: Cluster id of every row (e.g. ``cluster_queries(...)``).
        batch_size: Rows per batch (>= 2, at most the row count).
        clusters_per_batch: 1 or 2.
        drop_last: Drop the short batch (then not every row is seen each epoch).
        seed: Seed; epoch ``e`` uses ``(seed, e)``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        clusters_per_batch: int = 1,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {self.labels.shape}")
        super().__init__(len(self.labels), batch_size, drop_last, seed)
        if clusters_per_batch not in (1, 2):
            raise ValueError(f"clusters_per_batch must be 1 or 2, got {clusters_per_batch!r}")
        if batch_size % clusters_per_batch:
            raise ValueError(f"batch_size={batch_size} must be even with two clusters per batch")
        self.clusters_per_batch = clusters_per_batch

    def batches(self, epoch: int) -> list[list[int]]:
        rng = self._rng(epoch)
        chunk = self.batch_size // self.clusters_per_batch
        chunks: list[tuple[int, list[int]]] = []
        rest: list[int] = []
        for label in np.unique(self.labels):
            rows = rng.permutation(np.flatnonzero(self.labels == label)).tolist()
            full = len(rows) // chunk * chunk
            chunks += [(int(label), rows[s : s + chunk]) for s in range(0, full, chunk)]
            rest += rows[full:]
        order = rng.permutation(len(chunks)).tolist()
        out: list[list[int]] = []
        if self.clusters_per_batch == 1:
            out = [chunks[k][1] for k in order]
        else:
            pending: list[tuple[int, list[int]]] = []
            for k in order:
                label, rows = chunks[k]
                mate = next((p for p in pending if p[0] != label), None)
                if mate is None:
                    pending.append(chunks[k])
                else:
                    pending.remove(mate)
                    out.append(mate[1] + rows)
            rest += [r for _, rows in pending for r in rows]  # unmatched chunks: mixed batches
        rest = rng.permutation(np.asarray(rest, dtype=np.int64)).tolist()
        tail = [rest[s : s + self.batch_size] for s in range(0, len(rest), self.batch_size)]
        full_tail = [b for b in tail if len(b) == self.batch_size]
        short = [b for b in tail if len(b) < self.batch_size]
        mixed = out + full_tail
        return [mixed[k] for k in rng.permutation(len(mixed))] + short


class GroupBatchSampler(_EpochSampler):
    """Batches in which a dialed share of in-batch negatives share the row's group.

    A group (a pair and its copies) is cut into blocks; blocks are packed first-fit into batches
    that hold no other block of the same group. A block of size ``s`` gives each of its rows
    ``s - 1`` same-group negatives, so the share is set by the block sizes: the sampler searches
    (bisection) the mean block size whose packed batches realise ``same_group_share`` over the
    epoch. Share 0 spreads every group over distinct batches. The realised share of an epoch is
    ``same_group_share(groups, sampler.batches(epoch))``.

    Args:
        groups: Group id of every row.
        batch_size: Rows per batch.
        same_group_share: Target share of in-batch negatives from the row's group, in ``[0, 1]``
            (reachable up to about ``(group size - 1) / (batch_size - 1)``).
        drop_last: Drop the short batch.
        seed: Seed; epoch ``e`` uses ``(seed, e)``.
    """

    def __init__(
        self,
        groups: Sequence[int] | np.ndarray,
        batch_size: int,
        same_group_share: float = 0.0,
        *,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        self.groups = np.asarray(groups, dtype=np.int64)
        if self.groups.ndim != 1:
            raise ValueError(f"groups must be 1-D, got shape {self.groups.shape}")
        super().__init__(len(self.groups), batch_size, drop_last, seed)
        self.target = check_number("same_group_share", same_group_share, low=0, high=1)

    def _pack(self, epoch: int, extra: float) -> list[list[int]]:
        """Blocks of about ``1 + extra`` rows, packed; the same rng stream for every ``extra``."""
        rng = self._rng(epoch)
        low, frac = int(np.floor(extra)), extra - np.floor(extra)
        blocks: list[tuple[int, list[int]]] = []
        for g in rng.permutation(np.unique(self.groups)):
            rows = rng.permutation(np.flatnonzero(self.groups == g)).tolist()
            draws = rng.random(len(rows))
            start = 0
            while start < len(rows):
                size = min(self.batch_size, 1 + low + int(draws[start] < frac))
                blocks.append((int(g), rows[start : start + size]))
                start += size
        blocks = [blocks[k] for k in rng.permutation(len(blocks))]
        blocks.sort(key=lambda b: -len(b[1]))  # first-fit decreasing, random among equal sizes
        batches: list[list[int]] = []
        members: list[set[int]] = []
        for g, rows in blocks:
            for batch, seen in zip(batches, members):
                if len(batch) + len(rows) <= self.batch_size and g not in seen:
                    batch += rows
                    seen.add(g)
                    break
            else:
                batches.append(list(rows))
                members.append({g})
        full = [b for b in batches if len(b) == self.batch_size]
        rest = [r for b in batches if len(b) < self.batch_size for r in b]
        full += [rest[s : s + self.batch_size] for s in range(0, len(rest), self.batch_size)]
        short = [b for b in full if len(b) < self.batch_size]
        full = [b for b in full if len(b) == self.batch_size]
        return [full[k] for k in rng.permutation(len(full))] + short

    def batches(self, epoch: int) -> list[list[int]]:
        if self.target == 0.0:
            return self._pack(epoch, 0.0)
        low, high = 0.0, float(self.batch_size - 1)
        best = self._pack(epoch, high)
        for _ in range(30):
            mid = (low + high) / 2
            plan = self._pack(epoch, mid)
            if same_group_share(self.groups, plan) < self.target:
                low = mid
            else:
                high, best = mid, plan
            if high - low < 1e-3:
                break
        return best


def topic_labels(
    texts: Sequence[str],
    batch_size: int,
    n_clusters: int | None = None,
    *,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Cluster labels of ``texts`` for topic-clustered batches of ``batch_size``.

    Args:
        texts: The texts to cluster (the training queries, or a dataset's anchor column).
        batch_size: Rows per batch; sets the default cluster count.
        n_clusters: k-means clusters; ``None``: ``len(texts) // batch_size`` (about one batch
            per cluster). Either way capped at the count of distinct embedding rows, so a set
            with many repeated texts still clusters.
        embeddings: Precomputed embeddings of ``texts`` (e.g. a cached frozen encoder's);
            ``None``: :func:`~soft_infonce.clustering.tfidf_embeddings`.
        seed: Seed of the embedding and of k-means.

    Returns:
        ``int64`` labels, shape ``(len(texts),)``.
    """
    _check_sizes(len(texts), batch_size)
    if n_clusters is not None:
        check_int("n_clusters", n_clusters)
    x = tfidf_embeddings(texts, seed=seed) if embeddings is None else embeddings
    x = np.asarray(x, dtype=np.float64)
    distinct = len(np.unique(np.round(x, 9), axis=0)) if x.ndim == 2 else len(texts)
    k = min(n_clusters or max(1, len(texts) // batch_size), distinct)
    return cluster_queries(texts, k, embeddings=x, seed=seed)


def clustered_batch_sampler(
    queries: Sequence[str],
    batch_size: int,
    n_clusters: int | None = None,
    *,
    clusters_per_batch: int = 1,
    drop_last: bool = False,
    seed: int = 0,
) -> ClusteredBatchSampler:
    """Cluster ``queries`` (TF-IDF k-means, :func:`topic_labels`) and return a
    :class:`ClusteredBatchSampler` over them.

    ``n_clusters`` defaults to ``len(queries) // batch_size`` (about one batch per cluster), and
    is capped at the count of distinct queries.

    Examples:
        >>> queries = ["sort a list", "sort the list", "open a file", "read a file"]
        >>> sampler = clustered_batch_sampler(queries, 2, seed=0)
        >>> sorted(sorted(batch) for batch in sampler)
        [[0, 1], [2, 3]]
    """
    labels = topic_labels(queries, batch_size, n_clusters, seed=seed)
    return ClusteredBatchSampler(
        labels,
        batch_size,
        clusters_per_batch=clusters_per_batch,
        drop_last=drop_last,
        seed=seed,
    )
