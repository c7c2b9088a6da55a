"""Batch query-code rows for a bi-encoder: tokenise every side, keep the raw texts.

This module imports torch only (the tokenizer is any Hugging Face tokenizer, duck-typed, and
the input layouts import torch only), so it never pulls in transformers or datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch

from soft_infonce.integrations.hf.modeling.layouts import InputLayout, make_layout, tokenize_texts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["BiEncoderCollator", "tokenize_texts"]

_TEXT_COLUMNS = ("query", "code", "negatives", "negative_queries")


def _hard_negatives(features: list[dict[str, Any]]) -> tuple[list[list[str]], list[list[str]]]:
    """Each row's ``negatives`` and ``negative_queries``, checked (same k for every row)."""
    if not any("negatives" in feature for feature in features):
        return [[] for _ in features], [[] for _ in features]
    negatives, negative_queries = [], []
    k = None
    for i, feature in enumerate(features):
        for key in ("negatives", "negative_queries"):
            values = feature.get(key)
            if not isinstance(values, (list, tuple)):
                raise ValueError(
                    f"features[{i}][{key!r}] must be a list of strings (every row of a batch "
                    f"with hard negatives has 'negatives' and 'negative_queries'), got "
                    f"{values!r:.80}"
                )
            bad = [j for j, value in enumerate(values) if not isinstance(value, str)]
            if bad:
                raise ValueError(
                    f"features[{i}][{key!r}][{bad[0]}] must be a string, got {values[bad[0]]!r:.80}"
                )
        row, paired = list(feature["negatives"]), list(feature["negative_queries"])
        if len(paired) != len(row):
            raise ValueError(
                f"features[{i}]['negative_queries'] must pair one query with each of its "
                f"{len(row)} negatives, got {len(paired)}"
            )
        if k is None:
            k = len(row)
        elif len(row) != k:
            raise ValueError(
                f"features[{i}]['negatives'] must hold k={k} negatives like features[0], "
                f"got {len(row)}"
            )
        negatives.append(row)
        negative_queries.append(paired)
    return negatives, negative_queries


class BiEncoderCollator:
    """Collates ``{"query", "code"[, "negatives", "negative_queries"], ...}`` rows into a batch.

    Both sides are tokenised by the model's input layout; the raw texts travel with the batch
    because the weight estimators (BM25, SimCSE, trained model) score the texts themselves.
    Rows with hard negatives (``negatives``: k codes, ``negative_queries``: the query paired
    with each, the same k in every row) give ``M = N (1 + k)`` candidate codes in column-major
    order: the N positives, then the first negative of every row, ..., then the k-th negative
    of every row (sentence-transformers' order for (anchor, positive, negative_1..k) columns).
    Other columns whose values are all ``str`` or ``int`` are kept as lists under their own
    names; the rest are dropped.

    Args:
        tokenizer: A Hugging Face tokenizer (``None`` when ``input_layout`` is a layout object
            that holds one).
        max_query_length: Most tokens per query, special tokens included.
        max_code_length: Most tokens per code, special tokens included.
        input_layout: ``"plain"``, ``"unixcoder"``, ``"graphcodebert"`` (needs a layout object
            with its language) or an
            :class:`~soft_infonce.integrations.hf.modeling.layouts.InputLayout`.

    Inputs:
        features: a list of dicts, each with string ``"query"`` and ``"code"``.

    Returns (from ``__call__``):
        ``query_*`` tensors (N rows) and ``code_*`` tensors (M rows) from the layout
        (``input_ids``, ``attention_mask``, ...); ``queries`` (N), ``codes`` (M) and
        ``candidate_queries`` (M: the query paired with each candidate; ``queries`` when there
        are no hard negatives): lists of raw texts; plus the kept extra columns.

    Examples:
        >>> collator = BiEncoderCollator.for_model(model, 64, 128)  # doctest: +SKIP
        >>> batch = collator([{"query": "add two numbers", "code": "def add(a, b): ..."}])
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_query_length: int = 128,
        max_code_length: int = 256,
        input_layout: str | InputLayout = "plain",
    ) -> None:
        self.layout = make_layout(input_layout, tokenizer)
        if self.layout.tokenizer is None:
            raise ValueError(
                "tokenizer must be given (or held by the input_layout object), got None"
            )
        minimum = self.layout.min_length
        for name, value in (
            ("max_query_length", max_query_length),
            ("max_code_length", max_code_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        self.max_query_length = max_query_length
        self.max_code_length = max_code_length

    @classmethod
    def for_model(
        cls, model: Any, max_query_length: int = 128, max_code_length: int = 256
    ) -> BiEncoderCollator:
        """The collator that tokenises as ``model`` (a :class:`~soft_infonce.BiEncoder`) reads.

        Args:
            model: A bi-encoder with a ``layout`` (a wrapped model is unwrapped via ``.module``).
            max_query_length: Most tokens per query.
            max_code_length: Most tokens per code.
        """
        inner = getattr(model, "module", model)
        layout = getattr(inner, "layout", None)
        if not isinstance(layout, InputLayout):
            raise ValueError(
                f"model must be a BiEncoder (with an input layout), got {type(model).__name__}"
            )
        return cls(None, max_query_length, max_code_length, input_layout=layout)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The layout's tokenizer."""
        return cast("PreTrainedTokenizerBase", self.layout.tokenizer)

    @property
    def input_layout(self) -> str:
        """The layout's name."""
        return self.layout.name

    def _code_features(self, codes: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.layout.tokenize(codes, "code", self.max_code_length)
        return {f"code_{key}": value for key, value in encoded.items()}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(features, list) or not features:
            raise ValueError(f"features must be a non-empty list of dicts, got {features!r:.80}")
        for i, feature in enumerate(features):
            for key in ("query", "code"):
                if not isinstance(feature.get(key), str):
                    raise ValueError(
                        f"features[{i}][{key!r}] must be a string, got {feature.get(key)!r}"
                    )
        queries = [feature["query"] for feature in features]
        negatives, negative_queries = _hard_negatives(features)
        k = len(negatives[0])
        # Column-major: the N positives, then negative j of every row for j = 1..k.
        codes = [feature["code"] for feature in features]
        codes += [row[j] for j in range(k) for row in negatives]
        candidate_queries = queries + [row[j] for j in range(k) for row in negative_queries]
        encoded = self.layout.tokenize(queries, "query", self.max_query_length)
        batch: dict[str, Any] = {f"query_{key}": value for key, value in encoded.items()}
        batch.update(self._code_features(codes))
        batch["queries"], batch["codes"] = queries, codes
        batch["candidate_queries"] = candidate_queries
        for key in features[0]:
            if key in _TEXT_COLUMNS or key in batch:
                continue
            values = [feature.get(key) for feature in features]
            if all(isinstance(v, str) for v in values) or all(isinstance(v, int) for v in values):
                batch[key] = values
        return batch
