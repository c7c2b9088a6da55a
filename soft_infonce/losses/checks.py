"""Input checks of the loss modules that need no host sync: types, shapes and text counts.

Value scans (NaN/inf) are separate: :mod:`soft_infonce.functional` always runs them, the
modules only behind ``validate=``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from soft_infonce.checks import check_tensor

__all__ = ["candidate_matrix", "check_embeddings", "texts_of"]

_TEXT_KEYS = ("queries", "codes", "candidate_queries")


def check_embeddings(name: str, x: Any) -> torch.Tensor:
    """``x`` if it is a non-empty 2-D floating-point tensor ``[batch, dim]``."""
    check_tensor(name, x)
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [batch, dim], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_finite(name: str, x: torch.Tensor, *, sync: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` when ``x`` holds NaN or inf.

    ``sync=False`` asserts on the device (``torch._assert_async``): no host sync, so the
    training step keeps running ahead of the accelerator; on the CPU it fails at once and is
    turned into the ``ValueError``; on an accelerator the next kernel fails with the message.
    """
    message = f"{name} contains NaN or infinite values"
    finite = torch.isfinite(x).all()
    if sync:
        if not bool(finite):
            raise ValueError(message)
        return
    try:
        torch._assert_async(finite, message)
    except RuntimeError as error:  # the CPU asserts synchronously
        raise ValueError(message) from error


def check_candidates(
    q: torch.Tensor, candidates: Any, name: str = "candidate_embeddings"
) -> torch.Tensor:
    """Check ``[M, H]`` candidates against ``[N, H]`` queries (shapes only: no host sync)."""
    c = check_embeddings(name, candidates)
    n, m = q.shape[0], c.shape[0]
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            f"query_embeddings and {name} must share the embedding size, got "
            f"{q.shape[1]} and {c.shape[1]}"
        )
    if m < n:
        raise ValueError(
            f"{name} needs at least one code per query (the first N are the positives), got "
            f"{n} queries and {m} codes"
        )
    if m < 2:
        raise ValueError(
            "a contrastive loss needs at least one negative: a batch of one query with one "
            "code has none (use a batch size >= 2 or pass extra candidate codes)"
        )
    return c


def candidate_matrix(candidate_embeddings: Any, n: int) -> torch.Tensor:
    """A ``[M, H]`` tensor, or columns ``[N, H]`` (positive, negative_1, ...) concatenated."""
    if isinstance(candidate_embeddings, torch.Tensor):
        return candidate_embeddings
    if not isinstance(candidate_embeddings, Sequence) or not candidate_embeddings:
        raise TypeError(
            "candidate_embeddings must be a [M, H] tensor or a non-empty sequence of [N, H] "
            f"column tensors, got {type(candidate_embeddings).__name__}"
        )
    for i, column in enumerate(candidate_embeddings):
        check_embeddings(f"candidate_embeddings[{i}]", column)
        if column.shape[0] != n:
            raise ValueError(
                f"candidate_embeddings[{i}] must have one row per query ({n}), got "
                f"{column.shape[0]}"
            )
    return torch.cat(list(candidate_embeddings))  # (N * columns, H), column-major


def texts_of(texts: Mapping[str, Any] | None, n: int, m: int) -> list[list[str] | None]:
    """queries, codes, candidate_queries from ``texts``, their counts checked."""
    if texts is None:
        return [None, None, None]
    if not isinstance(texts, Mapping):
        raise TypeError(
            f"texts must be a mapping with {list(_TEXT_KEYS)}, got {type(texts).__name__}"
        )
    out: list[list[str] | None] = []
    for key, rows, embeddings in zip(
        _TEXT_KEYS, (n, m, m), ("query_embeddings", "candidate embeddings", "candidate embeddings")
    ):
        value = texts.get(key)
        if value is None:
            out.append(None)
            continue
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(f"{key} must be a list of str, got {type(value).__name__}")
        if len(value) != rows:
            raise ValueError(
                f"{key} must hold one text per row of the {embeddings} ({rows}), got {len(value)}"
            )
        out.append(list(value))
    return out
