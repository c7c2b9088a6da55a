"""Embedding many texts: length-sorted batches in evaluation mode, input order kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from soft_infonce.checks import check_int


@torch.no_grad()
def encode_in_batches(
    module: nn.Module,
    encode: Callable[[list[str]], Tensor],
    texts: Sequence[str],
    batch_size: int,
    dim: int,
    progress: str | None = None,
) -> Tensor:
    """``encode(chunk)`` over ``texts``, ``batch_size`` texts at a time, ``module`` in eval mode.

    Texts are sorted by length (fewer padding tokens); the result is in input order, and the
    module's training mode is restored afterwards.

    Args:
        module: The model whose mode is switched (never moved).
        encode: Embeds a list of texts, ``(len(chunk), dim)``.
        texts: The texts.
        batch_size: Texts per call of ``encode``.
        dim: The embedding size (for an empty ``texts``).
        progress: A tqdm progress-bar label, or ``None`` for none.

    Returns:
        ``(len(texts), dim)`` float32 embeddings on the CPU.
    """
    if isinstance(texts, str):
        raise ValueError(f"texts must be a sequence of strings, got the string {texts!r}")
    check_int("batch_size", batch_size)
    texts = list(texts)
    if not texts:
        return torch.empty(0, dim)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    starts: Sequence[int] = range(0, len(texts), batch_size)
    if progress is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="batch")
    was_training = module.training
    module.eval()
    try:
        chunks = [
            encode([texts[i] for i in order[start : start + batch_size]]).float().cpu()
            for start in starts
        ]
    finally:
        module.train(was_training)
    result = torch.empty(len(texts), chunks[0].shape[1])
    result[torch.tensor(order)] = torch.cat(chunks)
    return result
