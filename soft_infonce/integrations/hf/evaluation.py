"""Retrieval evaluation of a bi-encoder: encode queries and a code base, rank, report MRR.

The ranking itself (ties counted against the model, chunked, nothing sorted) is
:mod:`soft_infonce.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from soft_infonce.checks import is_blank
from soft_infonce.metrics import check_cutoff, check_targets, retrieval_metrics, target_ranks

if TYPE_CHECKING:
    from soft_infonce.integrations.hf.modeling import BiEncoder


def evaluate_retrieval(
    model: BiEncoder,
    queries: Sequence[str],
    codes: Sequence[str],
    relevant: Sequence[int] | Tensor,
    *,
    batch_size: int = 64,
    max_query_length: int = 128,
    max_code_length: int = 256,
    cutoff: int | None = None,
    show_progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Encode queries and a code base with ``model`` and rank every code for every query.

    Args:
        model: The bi-encoder; scores are ``model.scale * q . c``.
        queries: The natural-language queries.
        codes: The whole code base.
        relevant: For each query, the index in ``codes`` of its true code (any iterable of
            ints: a generator is read once into a list).
        batch_size: Texts per forward pass.
        max_query_length: Token budget of a query.
        max_code_length: Token budget of a code.
        cutoff: Only the top ``cutoff`` count (1000 reproduces CodeXGLUE).
        show_progress: Progress bars while encoding.
        device: Where to rank the embeddings (in bounded memory); defaults to the model's
            device. The model encodes on its own device.

    Returns:
        ``{"mrr", "recall@1", "recall@5", "recall@10", "num_queries"}``.
    """
    for name, texts in (("queries", queries), ("codes", codes)):
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
            raise TypeError(
                f"{name} must be a sequence of texts (a list of str), got {type(texts).__name__}"
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"{name}[{i}] must be a str, got {type(text).__name__} {text!r:.60}"
                )
            if is_blank(text):
                raise ValueError(
                    f"{name}[{i}] is blank: it cannot be ranked (the data loaders skip and "
                    "count blank texts; filter them the same way)"
                )
    if not isinstance(relevant, (Tensor, Sequence)):
        if not isinstance(relevant, Iterable):
            raise TypeError(
                f"relevant must be a sequence of code indices, got {type(relevant).__name__}"
            )
        relevant = list(relevant)  # an iterator or generator, read once
    if len(relevant) != len(queries):
        raise ValueError(
            f"relevant must have one code index per query ({len(queries)}), got {len(relevant)}"
        )
    if len(queries) == 0 or len(codes) == 0:
        raise ValueError(
            f"queries and codes must be non-empty, got {len(queries)} and {len(codes)}"
        )
    targets = check_targets(relevant, len(queries), len(codes))
    check_cutoff(cutoff)
    query_embeddings = model.encode_texts(
        queries,
        side="query",
        max_length=max_query_length,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    code_embeddings = model.encode_texts(
        codes,
        side="code",
        max_length=max_code_length,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    rank_device = device if device is not None else getattr(model, "device", "cpu")
    query_embeddings = query_embeddings.to(rank_device)
    code_embeddings = code_embeddings.to(rank_device)
    ranks = target_ranks(
        query_embeddings, code_embeddings, targets, cutoff=cutoff, scale=model.scale
    )
    return retrieval_metrics(ranks, cutoff=cutoff)
