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

As in sentence-transformers' cached losses, step 3 lives on the loss side: the loss returned
by :func:`grad_cached_loss` carries a backward hook, so whoever back-propagates it (a plain
``loss.backward()``, ``accelerator.backward`` inside ``Trainer.training_step``, with its loss
scaling and gradient-accumulation division) runs the re-embedding. The trainer needs no
``training_step`` of its own.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["RandomState", "grad_cached_loss", "grad_cached_step", "split_inputs"]

_TEXT_KEYS = ("queries", "codes", "candidate_queries")
_SIDES = ("query_", "code_")


class RandomState:
    """The CPU random state (and that of the CUDA ``devices``) at one moment, for replay.

    Replays run inside :func:`torch.random.fork_rng`, which puts back the state the block
    started from.

    Args:
        devices: the CUDA devices whose generators the replayed code draws from; by default
            every initialised CUDA device (none without CUDA in use).

    Examples:
        >>> state = RandomState()
        >>> a = torch.rand(2)
        >>> with state.replay():
        ...     b = torch.rand(2)
        >>> torch.equal(a, b)
        True
    """

    def __init__(self, devices: list[int] | None = None) -> None:
        if devices is None:  # asking without CUDA in use would initialise it needlessly
            in_use = torch.cuda.is_available() and torch.cuda.is_initialized()
            devices = list(range(torch.cuda.device_count())) if in_use else []
        self.devices = devices
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from this state, then put back the state the block started from."""
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda):
                torch.cuda.set_rng_state(state, device)
            yield


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
    model ignores them. With hard negatives the code side has ``M = N (1 + k)`` rows, cut
    into the same number of pieces.

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


def apply_loss(loss_fn: Callable[..., Tensor], q: Tensor, c: Tensor, inputs: Mapping[str, Any]):
    """``loss_fn`` on the embeddings with the batch's raw texts (through the shared seam when
    ``loss_fn`` is a :class:`~soft_infonce.losses.ContrastiveLoss`)."""
    texts = {k: inputs.get(k) for k in _TEXT_KEYS}
    seam = getattr(loss_fn, "compute_loss_from_embeddings", None)
    if seam is not None:
        return seam(q, c, texts)
    return loss_fn(q, c, **{k: v for k, v in texts.items() if v is not None})


def _check(inputs: Mapping[str, Any], mini_batch_size: int) -> int:
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
    return math.ceil(n / mini_batch_size)


def _cuda_devices(pieces: list[dict[str, Tensor]]) -> list[int]:
    return sorted({v.device.index or 0 for p in pieces for v in p.values() if v.is_cuda})


class _Cache:
    """What the backward hook needs: the pieces, their random states and embedding grads."""

    def __init__(self, model, pieces, states, query_grads, code_grads) -> None:
        self.model, self.pieces, self.states = model, pieces, states
        self.query_grads, self.code_grads = query_grads, code_grads
        self.ran = False

    def backward_hook(self, grad_output: Tensor) -> None:
        """Re-embed each piece with a graph and push ``grad_output`` x the cached gradients."""
        self.ran = True
        no_sync = getattr(self.model, "no_sync", None)
        last = len(self.pieces) - 1
        with torch.enable_grad():
            for k, piece in enumerate(self.pieces):
                sync = contextlib.nullcontext() if k == last or no_sync is None else no_sync()
                with sync:
                    with self.states[k].replay():
                        q, c = self.model(**piece)
                    grads = (self.query_grads[k] * grad_output, self.code_grads[k] * grad_output)
                    torch.autograd.backward((q, c), grads)


def grad_cached_loss(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    inputs: Mapping[str, Any],
    mini_batch_size: int,
) -> Tensor:
    """The loss of one contrastive batch, embedded ``mini_batch_size`` queries at a time.

    Steps 1 and 2 run here; the returned loss carries a backward hook that runs step 3, so
    ``backward`` of it (any scaling included) gives the parameters the full-batch gradient.
    With grad disabled (evaluation) only the chunked loss is computed. Chunk ``k`` of the
    queries and chunk ``k`` of the codes are embedded together by ``model(...)`` (the wrapped
    model, so ``DistributedDataParallel`` hooks run); when the model has ``no_sync``, every
    re-forward but the last runs under it. Every process must make the same number of
    chunks (equal local batches). Not for DeepSpeed, whose ``backward`` steps the optimizer.

    Args:
        model: a bi-encoder: ``model(query_input_ids=..., code_input_ids=..., ...)`` returns
            ``(query_embeddings, code_embeddings)``.
        loss_fn: a :class:`~soft_infonce.losses.ContrastiveLoss` (called through
            ``compute_loss_from_embeddings`` with the batch's ``queries``, ``codes`` and
            ``candidate_queries``) or any ``loss_fn(q, c, queries=..., codes=...)``.
        inputs: the collator's batch dict (tensors plus the raw texts).
        mini_batch_size: most queries embedded at once; ``>= N`` is an ordinary forward.

    Returns:
        The scalar loss; back-propagating it fills the parameters' gradients.
    """
    chunks = _check(inputs, mini_batch_size)
    if chunks == 1 or not torch.is_grad_enabled():
        pieces = split_inputs(inputs, chunks)
        if chunks == 1:
            q, c = model(**pieces[0])
        else:
            parts = [model(**piece) for piece in pieces]
            q, c = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return apply_loss(loss_fn, q, c, inputs)

    pieces = split_inputs(inputs, chunks)
    devices = _cuda_devices(pieces)
    states: list[RandomState] = []
    query_parts, code_parts = [], []
    with torch.no_grad():  # 1. embeddings only, no graph
        for piece in pieces:
            states.append(RandomState(devices))
            q, c = model(**piece)
            query_parts.append(q)
            code_parts.append(c)
    queries = torch.cat(query_parts).requires_grad_()  # (N, H)
    codes = torch.cat(code_parts).requires_grad_()  # (M, H)
    loss = apply_loss(loss_fn, queries, codes, inputs)  # 2. full-batch loss
    query_grad, code_grad = torch.autograd.grad(loss, (queries, codes), allow_unused=True)
    query_grad = torch.zeros_like(queries) if query_grad is None else query_grad
    code_grad = torch.zeros_like(codes) if code_grad is None else code_grad
    cache = _Cache(
        model,
        pieces,
        states,
        torch.split(query_grad, [p.shape[0] for p in query_parts]),
        torch.split(code_grad, [p.shape[0] for p in code_parts]),
    )
    loss = loss.detach().requires_grad_()
    loss.register_hook(cache.backward_hook)  # 3. runs when the caller back-propagates
    loss._grad_cache = cache  # lets grad_cached_step check
    return loss


def _default_backward(loss: Tensor) -> None:
    loss.backward()


def grad_cached_step(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    inputs: Mapping[str, Any],
    mini_batch_size: int,
    backward: Callable[[Tensor], Any] = _default_backward,
) -> Tensor:
    """Forward and backward of one contrastive batch: :func:`grad_cached_loss`, then
    ``backward`` of it.

    The parameter gradients equal those of ``backward(loss_fn(*model(**inputs)))`` up to
    float rounding; with dropout on, they equal those of embedding the same chunks with a
    graph (each re-forward replays its first forward's random state). ``backward``'s
    scaling (an AMP loss scale, ``1 / gradient_accumulation_steps``) reaches every gradient.

    Args:
        model: the bi-encoder (see :func:`grad_cached_loss`).
        loss_fn: the loss (see :func:`grad_cached_loss`).
        inputs: the collator's batch dict.
        mini_batch_size: most queries embedded at once; ``>= N`` is an ordinary step.
        backward: back-propagates the loss, e.g. ``lambda l: accelerator.backward(l / k)``.

    Returns:
        The detached loss of the full batch (before ``backward``'s scaling).

    Examples:
        >>> loss = grad_cached_step(model, SoftInfoNCELoss(estimator=BM25Estimator()),
        ...                         batch, mini_batch_size=32)  # doctest: +SKIP
        >>> optimizer.step()  # doctest: +SKIP
    """
    loss = grad_cached_loss(model, loss_fn, inputs, mini_batch_size)
    backward(loss)
    cache = getattr(loss, "_grad_cache", None)
    if cache is not None and not cache.ran:
        raise ValueError(
            "backward must back-propagate the loss (e.g. call loss.backward()), got no "
            "gradient on the embeddings"
        )
    return loss.detach()
