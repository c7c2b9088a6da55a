"""Gradient caching: contrastive batches far larger than memory allows.

A contrastive loss couples every query with every code of the batch, so the batch cannot
simply be split into gradient-accumulation steps. Gradient caching (Gao et al., 2021,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup") computes the
exact full-batch gradient in bounded memory:

1. embed the batch chunk by chunk without a graph (only the embeddings are kept);
2. compute the loss on the full embedding matrices and its gradient with respect to them;
3. re-embed chunk by chunk *with* a graph and back-propagate the cached embedding gradients
   into the parameters, replaying each chunk's random state so that dropout draws the
   same masks as in step 1.

Peak memory is one chunk's activations plus the ``[N, M]`` score matrix, instead of the whole
batch's activations; the price is one extra forward pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["RandomState", "grad_cached_step", "split_inputs"]

_TEXT_KEYS = ("queries", "codes")
_SIDES = ("query_", "code_")


class RandomState:
    """The CPU (and, once CUDA is in use, every CUDA device's) random state at one moment.

    Examples:
        >>> state = RandomState()
        >>> a = torch.rand(2)
        >>> with state.replay():
        ...     b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        # CUDA kernels draw from the CUDA generators; without CUDA in use there is nothing to
        # replay (and asking would initialise CUDA needlessly).
        use_cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        self.cuda = torch.cuda.get_rng_state_all() if use_cuda else None

    def restore(self) -> None:
        """Make this state the current one."""
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from this state, then put back the state the block started from."""
        outer = RandomState()
        self.restore()
        try:
            yield
        finally:
            outer.restore()


def _side_size(inputs: Mapping[str, Any], side: str) -> int:
    key = f"{side}_input_ids"
    value = inputs.get(key)
    if not isinstance(value, Tensor) or value.dim() < 1:
        raise ValueError(
            f"inputs must hold the tensor {key!r} (the collator's batch dict), got "
            f"{type(value).__name__}"
        )
    sizes = {
        k: v.shape[0]
        for k, v in inputs.items()
        if k.startswith(f"{side}_") and isinstance(v, Tensor) and v.dim() >= 1
    }
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the {side}_* tensors of inputs must share dim 0, got sizes {sizes}")
    return int(value.shape[0])


def split_inputs(inputs: Mapping[str, Any], chunks: int) -> list[dict[str, Tensor]]:
    """Split the tensors of a batch dict into ``chunks`` consecutive pieces along dim 0.

    Every ``query_*`` and ``code_*`` tensor is cut with ``torch.tensor_split`` (piece sizes
    differ by at most one); entries that are not tensors (the raw texts) are left out, as the
    model ignores them.

    Args:
        inputs: the collator's batch dict.
        chunks: number of pieces, at most the number of queries.

    Returns:
        ``chunks`` dicts of tensors, piece ``k`` holding query chunk ``k`` and code chunk ``k``.
    """
    tensors = {
        k: v
        for k, v in inputs.items()
        if isinstance(v, Tensor) and k.startswith(_SIDES) and v.dim() >= 1
    }
    parts = {k: torch.tensor_split(v, chunks, dim=0) for k, v in tensors.items()}
    return [{k: parts[k][i] for k in parts} for i in range(chunks)]


def _default_backward(loss: Tensor) -> None:
    loss.backward()


def grad_cached_step(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    inputs: Mapping[str, Any],
    mini_batch_size: int,
    backward: Callable[[Tensor], Any] = _default_backward,
) -> Tensor:
    """Forward and backward of one contrastive batch, embedded ``mini_batch_size`` at a time.

    The parameter gradients equal those of ``backward(loss_fn(*model(**inputs)))`` up to
    float rounding. With dropout on they equal those of embedding the same chunks with a
    graph: each chunk's re-forward replays the CPU and CUDA random states of its first
    forward, so it draws the same masks. Chunk ``k`` of the queries and chunk ``k`` of the
    codes are embedded together by ``model(...)`` (the wrapped model, so
    ``DistributedDataParallel`` hooks run); when the model has ``no_sync`` every re-forward
    but the last runs under it, so gradients are all-reduced once per step. Every process
    must make the same number of chunks (equal local batches), as DDP may broadcast buffers
    at each forward. ``backward`` is applied to the full-batch loss only (its scaling, e.g.
    an AMP loss scale or ``1 / gradient_accumulation_steps``, reaches the cached embedding
    gradients and through them the parameters); the re-forwards back-propagate those cached
    gradients directly. With ``gather_across_devices`` the loss's collectives run once per
    step, as without caching. Not for DeepSpeed, whose ``backward`` also steps the optimizer.

    Args:
        model: a bi-encoder: ``model(query_input_ids=..., query_attention_mask=...,
            code_input_ids=..., code_attention_mask=..., **other code_*/query_* tensors)``
            returns ``(query_embeddings, code_embeddings)``.
        loss_fn: called as ``loss_fn(q, c, queries=..., codes=...)`` (e.g. a
            :class:`~soft_infonce.SoftInfoNCELoss`), returning a scalar.
        inputs: the collator's batch dict (tensors plus the raw ``queries``/``codes``).
        mini_batch_size: most queries embedded at once; ``>= N`` is an ordinary step.
        backward: back-propagates the loss, e.g. ``lambda l: accelerator.backward(l / k)``.

    Returns:
        The detached loss of the full batch (before ``backward``'s scaling).

    Examples:
        >>> loss = grad_cached_step(model, SoftInfoNCELoss(estimator=BM25Estimator()),
        ...                         batch, mini_batch_size=32)  # doctest: +SKIP
        >>> optimizer.step()  # doctest: +SKIP
    """
    if (
        isinstance(mini_batch_size, bool)
        or not isinstance(mini_batch_size, int)
        or mini_batch_size < 1
    ):
        raise ValueError(f"mini_batch_size must be an int >= 1, got {mini_batch_size!r}")
    if not isinstance(inputs, Mapping):
        raise ValueError(f"inputs must be the collator's batch dict, got {type(inputs).__name__}")
    n, m = _side_size(inputs, "query"), _side_size(inputs, "code")
    if m < n:
        raise ValueError(f"inputs need at least one code per query, got {n} queries, {m} codes")
    texts = {k: inputs[k] for k in _TEXT_KEYS if k in inputs}
    chunks = math.ceil(n / mini_batch_size)
    if chunks == 1:  # nothing to cache: an ordinary step
        query_embeddings, code_embeddings = model(**split_inputs(inputs, 1)[0])
        loss = loss_fn(query_embeddings, code_embeddings, **texts)
        backward(loss)
        return loss.detach()

    pieces = split_inputs(inputs, chunks)
    states: list[RandomState] = []
    query_parts, code_parts = [], []
    with torch.no_grad():  # 1. embeddings only, no graph
        for piece in pieces:
            states.append(RandomState())
            q, c = model(**piece)
            query_parts.append(q)
            code_parts.append(c)
    queries = torch.cat(query_parts).detach().requires_grad_()  # (N, H)
    codes = torch.cat(code_parts).detach().requires_grad_()  # (M, H)
    loss = loss_fn(queries, codes, **texts)  # 2. full-batch loss, gradient w.r.t. embeddings
    backward(loss)
    if queries.grad is None and codes.grad is None:
        raise ValueError(
            "backward must back-propagate the loss (e.g. call loss.backward()), got no "
            "gradient on the embeddings"
        )
    query_grads = _grad_parts(queries, query_parts)
    code_grads = _grad_parts(codes, code_parts)
    del queries, codes, query_parts, code_parts

    no_sync = getattr(model, "no_sync", None)
    for k, piece in enumerate(pieces):  # 3. re-embed with a graph, push the cached gradients
        last = k == chunks - 1
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        with sync:
            with states[k].replay():
                q, c = model(**piece)
            torch.autograd.backward((q, c), (query_grads[k], code_grads[k]))
    return loss.detach()


def _grad_parts(leaf: Tensor, parts: list[Tensor]) -> tuple[Tensor, ...]:
    grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    return torch.split(grad, [p.shape[0] for p in parts])
