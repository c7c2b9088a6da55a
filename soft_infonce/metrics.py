"""Ranking metrics (MRR, recall@k) over query and code embeddings or a score matrix.

Every query has one true code among the whole code base. Its rank counts ties against the
model: ``rank = 1 + #codes scoring strictly higher + #other codes scoring exactly the same``,
so a model that scores everything alike gets the worst rank, never the best. Ranking is chunked
over queries and codes, so memory stays bounded for million-code bases and nothing is sorted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def check_cutoff(cutoff: int | None) -> None:
    if cutoff is not None and (
        isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1
    ):
        raise ValueError(f"cutoff must be None or a positive int, got {cutoff!r}")


def _as_tensor(value: object, name: str) -> Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise TypeError(
            f"{name} must be a tensor or a list of ints, got {type(value).__name__} {value!r:.60}"
        ) from None


def check_targets(targets: Tensor | Sequence[int], n_queries: int, n_codes: int) -> Tensor:
    if n_queries == 0:
        raise ValueError("there are no queries to rank: give at least one query (and target)")
    if n_codes == 0:
        raise ValueError("there are no codes to rank the queries against: give at least one")
    targets = _as_tensor(targets, "targets")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(f"targets must hold integer code indices, got dtype {targets.dtype}")
    if targets.shape != (n_queries,):
        raise ValueError(
            f"targets must have shape ({n_queries},) (one per query), got {tuple(targets.shape)}"
        )
    if n_queries and (int(targets.min()) < 0 or int(targets.max()) >= n_codes):
        raise ValueError(
            f"targets must lie in [0, {n_codes}) (the code indices), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    return targets.long()


def target_ranks(
    query_embeddings: Tensor,
    code_embeddings: Tensor,
    targets: Tensor | Sequence[int],
    *,
    chunk_size: int = 8192,
    query_chunk_size: int = 512,
    cutoff: int | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Rank of each query's true code among all codes, scored by ``scale * q . c``.

    Scores are computed in float32 at least (float16 / bfloat16 embeddings are upcast, so large
    products neither overflow to ``inf`` nor round into ties); float64 stays float64.

    The score matrix is computed block by block (``query_chunk_size x chunk_size``) into
    reused buffers, so memory beyond the embeddings stays fixed whatever the number of codes
    (about 50 MiB at the defaults and dim 768). Nothing is sorted. Each block is one matrix
    product that also scores the block's true codes, so a true code and an identical copy of
    it elsewhere get bit-identical scores and tie.

    Args:
        query_embeddings: ``(n_queries, dim)``.
        code_embeddings: ``(n_codes, dim)``, on the same device.
        targets: ``(n_queries,)`` index of each query's true code.
        chunk_size: Codes per block.
        query_chunk_size: Queries per block.
        cutoff: If set, ranks above it are reported as ``cutoff + 1`` ("not retrieved").
        scale: Score multiplier (a positive scale never changes a rank; kept for exactness).

    Returns:
        ``(n_queries,)`` int64 ranks, 1 = best. Ties count against the model.

    Examples:
        >>> q = torch.tensor([[1.0, 0.0]]); c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> target_ranks(q, c, [0]).tolist()  # code 1 ties with the true code 0
        [2]
    """
    for name, value in (("chunk_size", chunk_size), ("query_chunk_size", query_chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a positive number, got {type(scale).__name__}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    check_cutoff(cutoff)
    for name, tensor in (
        ("query_embeddings", query_embeddings),
        ("code_embeddings", code_embeddings),
    ):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype.is_complex:
            raise ValueError(f"{name} must be a real tensor, got dtype {tensor.dtype}")
    if query_embeddings.dim() != 2 or code_embeddings.dim() != 2:
        raise ValueError(
            "query_embeddings and code_embeddings must be 2-D (n, dim), got shapes "
            f"{tuple(query_embeddings.shape)} and {tuple(code_embeddings.shape)}"
        )
    if query_embeddings.shape[1] != code_embeddings.shape[1]:
        raise ValueError(
            "query_embeddings and code_embeddings must share their dim, got "
            f"{query_embeddings.shape[1]} and {code_embeddings.shape[1]}"
        )
    n_queries, n_codes = query_embeddings.shape[0], code_embeddings.shape[0]
    targets = check_targets(targets, n_queries, n_codes).to(query_embeddings.device)
    # float32 at least: float16 products overflow to inf (and round), which ties codes silently.
    dtype = torch.promote_types(
        torch.promote_types(query_embeddings.dtype, code_embeddings.dtype), torch.float32
    )
    device = query_embeddings.device
    ranks = torch.empty(n_queries, dtype=torch.long, device=device)
    # Buffers reused by every block: no allocation (and no page faults) inside the loop.
    q_width, c_width = min(query_chunk_size, n_queries), min(chunk_size, n_codes)
    candidates = torch.empty(
        q_width + c_width, query_embeddings.shape[1], dtype=dtype, device=device
    )
    flat_scores = torch.empty(q_width * (q_width + c_width), dtype=dtype, device=device)
    flat_mask = torch.empty(q_width * (q_width + c_width), dtype=torch.bool, device=device)
    for q_start in range(0, n_queries, query_chunk_size):
        queries = query_embeddings[q_start : q_start + query_chunk_size].to(dtype)
        block_targets = targets[q_start : q_start + query_chunk_size]
        n_block = queries.shape[0]
        candidates[:n_block] = code_embeddings[block_targets]  # the true codes, then a chunk
        at_least = torch.zeros(n_block, dtype=torch.long, device=device)
        for c_start in range(0, n_codes, chunk_size):
            n_chunk = min(chunk_size, n_codes - c_start)
            width = n_block + n_chunk
            candidates[n_block:width] = code_embeddings[c_start : c_start + n_chunk]
            # One product scores the true codes and this chunk: (n_block, n_block + n_chunk)
            scores = flat_scores[: n_block * width].view(n_block, width)
            torch.matmul(queries, candidates[:width].T, out=scores)
            if scale != 1.0:
                scores.mul_(scale)
            mask = flat_mask[: n_block * width].view(n_block, width)
            extremes = torch.stack((scores.amax(), scores.amin()))  # NaN propagates into amax
            if not torch.isfinite(extremes).all():
                raise ValueError(
                    "query_embeddings and code_embeddings gave NaN or infinite scores "
                    f"(queries {q_start}..{q_start + n_block - 1}): embeddings that large "
                    f"overflow {dtype} products, and infinite scores tie, so ranks would be wrong"
                )
            own = scores[:, :n_block].diagonal().unsqueeze(1)  # (n_block, 1)
            # Codes scoring higher than or tying with the true code (an int32 sum is ~5x faster).
            at_least_chunk = mask[:, n_block:]
            torch.ge(scores[:, n_block:], own, out=at_least_chunk)
            at_least += at_least_chunk.sum(dim=1, dtype=torch.int32)
            # The true code compared with itself is not a competitor: take it back.
            local = block_targets - c_start
            rows = ((local >= 0) & (local < n_chunk)).nonzero().squeeze(1)
            at_least[rows] -= at_least_chunk[rows, local[rows]].long()
        ranks[q_start : q_start + n_block] = 1 + at_least
    if cutoff is not None:
        ranks.clamp_(max=cutoff + 1)
    return ranks


def retrieval_metrics(
    ranks: Tensor | Sequence[int], *, cutoff: int | None = None, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """MRR and recall@k from the ranks of the true codes.

    Args:
        ranks: ``(n_queries,)`` ranks, 1 = best (from ``target_ranks``).
        cutoff: Only the top ``cutoff`` codes count as retrieved: a rank above it has
            reciprocal rank 0 and misses every recall@k (CodeXGLUE uses 1000).
        ks: The recall@k to report.

    Returns:
        ``{"mrr", "recall@<k>" for k in ks, "num_queries"}`` as floats.

    Examples:
        >>> retrieval_metrics([1, 2, 20], cutoff=10, ks=(1,))
        {'mrr': 0.5, 'recall@1': 0.3333333333333333, 'num_queries': 3.0}
    """
    check_cutoff(cutoff)
    ranks = _as_tensor(ranks, "ranks")
    if ranks.dim() != 1 or ranks.numel() == 0:
        raise ValueError(f"ranks must be a non-empty 1-D tensor, got shape {tuple(ranks.shape)}")
    if ranks.dtype.is_floating_point or ranks.dtype.is_complex or ranks.dtype == torch.bool:
        raise ValueError(f"ranks must hold integers, got dtype {ranks.dtype}")
    if int(ranks.min()) < 1:
        raise ValueError(f"ranks must be >= 1, got a minimum of {int(ranks.min())}")
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise TypeError(f"ks must be a sequence of positive ints, got {type(ks).__name__}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks must hold positive ints, got {k!r} in {ks!r}")
    ranks = ranks.cpu().double()
    retrieved = ranks <= cutoff if cutoff is not None else torch.ones_like(ranks, dtype=torch.bool)
    metrics = {"mrr": float(torch.where(retrieved, 1.0 / ranks, 0.0).mean())}
    for k in ks:
        metrics[f"recall@{k}"] = float(((ranks <= k) & retrieved).double().mean())
    metrics["num_queries"] = float(ranks.numel())
    return metrics


def mean_reciprocal_rank(
    scores: Tensor, targets: Tensor | Sequence[int], *, cutoff: int | None = None
) -> float:
    """MRR of a full score matrix, ties counted against the model.

    Args:
        scores: ``(n_queries, n_codes)``; higher is better. NaN is rejected, +-inf allowed.
        targets: ``(n_queries,)`` index of each query's true code.
        cutoff: Ranks above it have reciprocal rank 0.

    Returns:
        The mean reciprocal rank.

    Examples:
        >>> mean_reciprocal_rank(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), [0, 1])
        0.75
    """
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D (n_queries, n_codes), got {tuple(scores.shape)}")
    targets = check_targets(targets, scores.shape[0], scores.shape[1]).to(scores.device)
    own = scores.gather(1, targets.unsqueeze(1))  # (n_queries, 1)
    ranks = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
    step = max(1, 2**22 // max(1, scores.shape[1]))  # rows per pass: temporaries stay ~20 MB
    for start in range(0, scores.shape[0], step):
        rows = scores[start : start + step]
        if torch.isnan(rows).any():
            raise ValueError("scores must not contain NaN")
        # rank = 1 + #others >= own, and the true code itself is >= own: one count does both.
        at_least = rows >= own[start : start + step]
        ranks[start : start + step] = at_least.sum(dim=1, dtype=torch.int32)
    return retrieval_metrics(ranks, cutoff=cutoff, ks=())["mrr"]
