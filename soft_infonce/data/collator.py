"""Batch query-code pairs for a bi-encoder: tokenise both sides and keep the raw texts.

This module imports torch only (the tokenizer is any Hugging Face tokenizer, duck-typed), so
the model code can import :func:`tokenize_texts` without pulling in datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

InputLayout = Literal["plain", "unixcoder"]
_LAYOUTS = ("plain", "unixcoder")
_ENCODER_ONLY = "<encoder-only>"
_SPECIAL_PER_TEXT = 4  # [cls, <encoder-only>, sep] + tokens + [sep]


def _check_layout(input_layout: str) -> None:
    if input_layout not in _LAYOUTS:
        raise ValueError(f"input_layout must be one of {_LAYOUTS}, got {input_layout!r}")


def _unixcoder_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    mode_id = tokenizer.convert_tokens_to_ids(_ENCODER_ONLY)
    if mode_id is None or mode_id == tokenizer.unk_token_id:
        raise ValueError(
            f"input_layout='unixcoder' needs the token {_ENCODER_ONLY!r} in the tokenizer's "
            f"vocabulary (UniXcoder's has it), got the unknown-token id {mode_id!r}"
        )
    head = [tokenizer.cls_token_id, mode_id, tokenizer.sep_token_id]
    tail = [tokenizer.sep_token_id]
    if None in head or tokenizer.pad_token_id is None:
        raise ValueError(
            "input_layout='unixcoder' needs cls, sep and pad tokens, got "
            f"cls={tokenizer.cls_token_id!r}, sep={tokenizer.sep_token_id!r}, "
            f"pad={tokenizer.pad_token_id!r}"
        )
    rows = []
    for text in texts:
        tokens = tokenizer.tokenize(text)[: max_length - _SPECIAL_PER_TEXT]
        rows.append(head + list(tokenizer.convert_tokens_to_ids(tokens)) + tail)
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    input_layout: InputLayout = "plain",
) -> dict[str, torch.Tensor]:
    """Tokenises a batch of texts into padded ``input_ids`` and ``attention_mask``.

    Args:
        tokenizer: A Hugging Face tokenizer.
        texts: The texts (at least one).
        max_length: Most tokens per text, special tokens included.
        input_layout: ``"plain"``: the tokenizer's own special tokens, truncated to
            ``max_length`` and padded to the longest text. ``"unixcoder"``: UniXcoder's
            code-search layout ``[cls] <encoder-only> [sep] tokens [sep]`` with at most
            ``max_length - 4`` text tokens, padded with the pad id to the longest row.

    Returns:
        ``{"input_ids", "attention_mask"}``: LongTensors of shape (batch, longest row); the
        mask is 1 on real tokens and 0 on padding.

    Examples:
        >>> batch = tokenize_texts(tokenizer, ["sort a list"], 32)  # doctest: +SKIP
        >>> batch["input_ids"].shape  # doctest: +SKIP
        torch.Size([1, 5])
    """
    _check_layout(input_layout)
    if isinstance(texts, str) or not texts:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
    minimum = _SPECIAL_PER_TEXT if input_layout == "unixcoder" else 1
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < minimum:
        raise ValueError(
            f"max_length must be an int >= {minimum} for input_layout={input_layout!r}, "
            f"got {max_length!r}"
        )
    if input_layout == "unixcoder":
        return _unixcoder_ids(tokenizer, texts, max_length)
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return {
        "input_ids": encoded["input_ids"].long(),
        "attention_mask": encoded["attention_mask"].long(),
    }


class BiEncoderCollator:
    """Collates ``{"query", "code", ...}`` features into a bi-encoder batch.

    Both sides are tokenised with :func:`tokenize_texts`; the raw texts travel with the batch
    because the weight estimators (BM25, SimCSE, trained model) score the texts themselves.
    Other columns whose values are all ``str`` or ``int`` are kept as lists under their own
    names; the rest are dropped.

    Args:
        tokenizer: A Hugging Face tokenizer.
        max_query_length: Most tokens per query, special tokens included.
        max_code_length: Most tokens per code, special tokens included.
        input_layout: ``"plain"`` or ``"unixcoder"`` (see :func:`tokenize_texts`).
        code_featurizer: When given, builds the code side instead of the tokenizer:
            ``code_featurizer(codes)`` returns a dict of tensors whose keys all start with
            ``"code_"`` (e.g. GraphCodeBERT's data-flow inputs).

    Inputs:
        features: a list of dicts, each with string ``"query"`` and ``"code"``.

    Returns (from ``__call__``):
        ``query_input_ids``, ``query_attention_mask``, ``code_input_ids``,
        ``code_attention_mask`` (LongTensors, (batch, length)), ``queries`` and ``codes``
        (lists of the raw texts), plus the kept extra columns.

    Examples:
        >>> collator = BiEncoderCollator(tokenizer, 64, 128)  # doctest: +SKIP
        >>> batch = collator([{"query": "add two numbers", "code": "def add(a, b): ..."}])
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_query_length: int = 128,
        max_code_length: int = 256,
        input_layout: InputLayout = "plain",
        code_featurizer: Callable[[list[str]], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        _check_layout(input_layout)
        minimum = _SPECIAL_PER_TEXT if input_layout == "unixcoder" else 1
        for name, value in (
            ("max_query_length", max_query_length),
            ("max_code_length", max_code_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if code_featurizer is not None and not callable(code_featurizer):
            raise ValueError(f"code_featurizer must be callable or None, got {code_featurizer!r}")
        self.tokenizer = tokenizer
        self.max_query_length = max_query_length
        self.max_code_length = max_code_length
        self.input_layout: InputLayout = input_layout
        self.code_featurizer = code_featurizer

    def _code_features(self, codes: list[str]) -> dict[str, torch.Tensor]:
        if self.code_featurizer is None:
            encoded = tokenize_texts(self.tokenizer, codes, self.max_code_length, self.input_layout)
            return {f"code_{key}": value for key, value in encoded.items()}
        features = self.code_featurizer(codes)
        if not isinstance(features, dict) or not features:
            raise ValueError(f"code_featurizer must return a non-empty dict, got {features!r}")
        bad = [key for key in features if not str(key).startswith("code_")]
        if bad:
            raise ValueError(f"code_featurizer's keys must start with 'code_', got {bad!r}")
        return features

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("features must be a non-empty list of dicts, got []")
        for i, feature in enumerate(features):
            for key in ("query", "code"):
                if not isinstance(feature.get(key), str):
                    raise ValueError(
                        f"features[{i}][{key!r}] must be a string, got {feature.get(key)!r}"
                    )
        queries = [feature["query"] for feature in features]
        codes = [feature["code"] for feature in features]
        encoded = tokenize_texts(self.tokenizer, queries, self.max_query_length, self.input_layout)
        batch: dict[str, Any] = {f"query_{key}": value for key, value in encoded.items()}
        batch.update(self._code_features(codes))
        batch["queries"], batch["codes"] = queries, codes
        for key in features[0]:
            if key in ("query", "code") or key in batch:
                continue
            values = [feature.get(key) for feature in features]
            if all(isinstance(v, str) for v in values) or all(isinstance(v, int) for v in values):
                batch[key] = values
        return batch
