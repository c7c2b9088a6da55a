"""Collectives for negatives across devices: gathers that keep gradients, and text gathers.

With ``gather_across_devices=True`` every process scores its ``N`` queries against the codes
of all ``W`` processes (``[N, W * M]`` scores). The code embeddings are gathered with
:func:`gather_with_grad`, whose backward pass sums each slice's gradient over the processes,
so that under ``DistributedDataParallel`` (which averages gradients) the update is exactly
the gradient of the loss over the global batch (the mean of the per-process losses). The raw
texts travel too (:func:`gather_candidates`), so that the estimator scores the gathered
candidates, not only the local ones.

All functions degrade to the identity when ``torch.distributed`` is not initialised or the
world has one process, so single-process code paths need no special case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "GatheredCandidates",
    "gather_candidates",
    "gather_objects",
    "gather_with_grad",
    "rank",
    "world_size",
]


def world_size() -> int:
    """Number of processes (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without an initialised process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


_MAX_DIMS = 8


def _check_same_shape(tensor: torch.Tensor) -> None:
    """Raise ``ValueError`` on every process unless all processes hold the same shape.

    The shapes travel as a small integer tensor on ``tensor``'s device (the device the
    gather itself uses, so the backend supports it), cheaper than an object gather.
    """
    if tensor.dim() > _MAX_DIMS:
        raise ValueError(f"gather_with_grad takes at most {_MAX_DIMS} dims, got {tensor.dim()}")
    shape = torch.full((_MAX_DIMS + 1,), -1, dtype=torch.long, device=tensor.device)
    shape[0] = tensor.dim()
    shape[1 : 1 + tensor.dim()] = torch.tensor(tensor.shape, dtype=torch.long)
    shapes = [torch.empty_like(shape) for _ in range(world_size())]
    dist.all_gather(shapes, shape)
    listed = [tuple(s[1 : 1 + int(s[0])].tolist()) for s in shapes]
    if len(set(listed)) != 1:
        raise ValueError(
            "gather_across_devices needs the same batch shape on every process, got "
            f"{listed} (rank order): use dataloader_drop_last=True, or accelerate's "
            "even_batches, so that no process gets a short batch"
        )


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward: sum the gradient over processes, keep own slice."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rows, ctx.rank = tensor.shape[0], rank()
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)  # (world * B, ...)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        # Every process's loss used every slice: the slice's gradient is the sum over the
        # processes. An all-reduce of the whole (small) gradient works on every backend.
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, differentiably.

    The backward pass sums the incoming gradients over processes (an all-reduce) and returns
    each process its own slice, so every process's loss reaches every process's parameters.
    All processes must pass the same shape; a mismatch raises ``ValueError`` on every process
    (instead of a hang).

    Args:
        tensor: ``[B, ...]`` on this process.

    Returns:
        ``[world * B, ...]``, process ``r``'s rows at ``r * B .. (r + 1) * B - 1``.

    Examples:
        >>> gather_with_grad(torch.ones(2, 3)).shape  # one process: the identity
        torch.Size([2, 3])
    """
    if world_size() == 1:
        return tensor
    _check_same_shape(tensor)
    return _GatherWithGrad.apply(tensor.contiguous())


def gather_objects(items: Sequence[Any] | None) -> list[Any] | None:
    """Concatenate per-process lists of picklable objects (strings, tuples) in rank order.

    Args:
        items: this process's list, or ``None`` (then ``None`` comes back; every process must
            agree on passing ``None``).

    Returns:
        The lists of all processes, concatenated in rank order.
    """
    if items is None:
        return None
    if world_size() == 1:
        return list(items)
    out: list[list[Any] | None] = [None] * world_size()
    dist.all_gather_object(out, list(items))
    return [x for part in out for x in part]  # type: ignore[union-attr]


@dataclass
class GatheredCandidates:
    """The candidates a process scores its queries against, and their raw texts.

    ``embeddings`` holds tensors; ``code_texts``, ``candidate_query_texts`` and
    ``query_texts`` hold strings (``None`` when the caller passed none).
    """

    embeddings: torch.Tensor  # (world * M, H) candidate embeddings, process r's at r * M
    offset: int  # column of this process's first candidate: rank * M
    rank: int
    code_texts: Sequence[str] | None  # world * M raw codes
    candidate_query_texts: Sequence[str] | None  # world * M queries paired with the codes
    query_texts: Sequence[str] | None  # world * N raw queries
    gathered: bool = False  # False: the local batch as it came

    @classmethod
    def local(
        cls,
        embeddings: torch.Tensor,
        queries: Sequence[str] | None,
        codes: Sequence[str] | None,
        candidate_queries: Sequence[str] | None,
    ) -> GatheredCandidates:
        """This process's candidates only (no collective)."""
        return cls(embeddings, 0, 0, codes, candidate_queries, queries)


def gather_candidates(
    candidate_embeddings: torch.Tensor,
    queries: Sequence[str] | None,
    codes: Sequence[str] | None,
    candidate_queries: Sequence[str] | None,
) -> GatheredCandidates:
    """Gather candidate embeddings (with gradient) and the texts the estimator needs.

    The candidates may include hard negatives: ``M = N (1 + k)`` rows per process, the first
    ``N`` being the positives. Process ``r``'s block starts at column ``r * M`` of the gathered
    scores, so its queries' positives are the columns ``r * M + i``. The three text lists
    travel in one object gather. With one process this is the identity (no collective).

    Args:
        candidate_embeddings: ``[M, H]`` local candidates (the first ``N`` are the positives).
        queries: the ``N`` local raw queries, or ``None``.
        codes: the ``M`` local raw codes, or ``None``.
        candidate_queries: the query paired with each local code, or ``None``.

    Returns:
        The gathered candidates; ``gathered`` is true when more than one process took part.
    """
    if world_size() == 1:
        return GatheredCandidates.local(candidate_embeddings, queries, codes, candidate_queries)
    r, m = rank(), candidate_embeddings.shape[0]
    embeddings = gather_with_grad(candidate_embeddings)  # (world * M, H)
    parts: list[Any] = [None] * world_size()
    local = tuple(None if t is None else list(t) for t in (queries, codes, candidate_queries))
    dist.all_gather_object(parts, local)
    merged: list[list[str] | None] = []
    for i, name in enumerate(("queries", "codes", "candidate_queries")):
        present = [part[i] is not None for part in parts]
        if any(present) and not all(present):
            raise ValueError(
                f"gather_across_devices needs {name} on every process or on none, got them on "
                f"ranks {[j for j, p in enumerate(present) if p]} only"
            )
        merged.append([x for part in parts for x in part[i]] if all(present) else None)
    return GatheredCandidates(
        embeddings=embeddings,
        offset=r * m,
        rank=r,
        code_texts=merged[1],
        candidate_query_texts=merged[2],
        query_texts=merged[0],
        gathered=True,
    )
