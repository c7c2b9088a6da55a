"""The loss of :meth:`ContrastiveLoss.compute_loss_from_embeddings` a few query rows at a time.

Every contrastive loss here is a mean over query rows, and each row's term (its scores, its
Eq. 4 weights, its cross-entropy) reads only that row. Scoring ``rows_per_chunk`` queries at
a time and back-propagating each chunk's share before the next one bounds the ``[N, M]``
score memory of a large (gradient-cached) batch to ``[rows_per_chunk, M]``: the same loss
and the same gradients, to float rounding. The estimator's similarity is computed once for
the whole batch (it carries no gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from soft_infonce.checks import check_int
from soft_infonce.distributed import GatheredCandidates

__all__ = ["loss_in_row_chunks", "merge_statistics"]


def merge_statistics(
    parts: list[tuple[int, Mapping[str, torch.Tensor]]],
) -> dict[str, torch.Tensor]:
    """One batch's statistics from its chunks' ``(rows, statistics)``: min of the ``_min``s,
    max of the ``_max``s, the sum of counts of rows, and the row-weighted mean of the rest."""
    total = sum(rows for rows, _ in parts)
    merged: dict[str, torch.Tensor] = {}
    for key in parts[0][1]:
        values = [(rows, statistics[key]) for rows, statistics in parts]
        if key.endswith("_min"):
            merged[key] = torch.stack([v for _, v in values]).amin()
        elif key.endswith("_max"):
            merged[key] = torch.stack([v for _, v in values]).amax()
        elif key.endswith("rows_without_negatives"):
            merged[key] = torch.stack([v for _, v in values]).sum()
        else:
            merged[key] = sum(v * (rows / total) for rows, v in values)  # type: ignore[assignment]
    return merged


def loss_in_row_chunks(
    loss: Any,  # a ContrastiveLoss (base.py imports this module)
    q: torch.Tensor,
    g: GatheredCandidates,
    dtype: torch.dtype,
    labels: torch.Tensor,
    similarity: torch.Tensor | None,
    rows_per_chunk: int,
) -> torch.Tensor:
    """Back-propagate the loss chunk by chunk into ``q`` and the candidates; return it detached.

    The chunks' gradients are gathered on detached copies of the embeddings and passed on
    through the embeddings' own graph (the gather included) once at the end.
    """
    if loss.symmetric:
        raise ValueError("rows_per_chunk cannot be used with symmetric=True")
    check_int("rows_per_chunk", rows_per_chunk)
    loss._direction = "q2c"
    n = q.shape[0]
    q_leaf = q.detach().to(dtype).requires_grad_()
    c_leaf = g.embeddings.detach().to(dtype).requires_grad_()
    estimator = loss.estimator
    shape_only = torch.empty((n, c_leaf.shape[0]), device="meta")
    by_scores = similarity is None and estimator is not None and estimator.uses_scores
    sim_all = None if by_scores else loss._similarity(similarity, shape_only, g)
    total = q_leaf.new_zeros(())
    parts: list[tuple[int, Mapping[str, torch.Tensor]]] = []
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, min(start + rows_per_chunk, n))
        scores = loss._scores(q_leaf[rows], c_leaf)  # (rows, world * M), checked there
        if by_scores:
            sim = estimator.similarity_from_scores(scores.detach())
        else:
            sim = None if sim_all is None else sim_all[rows]
        loss.last_statistics = {}
        share = loss.loss_from_scores(scores, sim, labels[rows]) * ((rows.stop - rows.start) / n)
        share.backward()
        total = total + share.detach()
        parts.append((rows.stop - rows.start, dict(loss.last_statistics)))
    loss.last_statistics = merge_statistics(parts)
    pairs = [
        (t, leaf.grad.to(t.dtype))
        for t, leaf in ((q, q_leaf), (g.embeddings, c_leaf))
        if t.requires_grad and leaf.grad is not None
    ]
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [grad for _, grad in pairs])
    return total
