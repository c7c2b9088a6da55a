"""sentence-transformers' collator that keeps the raw texts the estimator reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentence_transformers.sentence_transformer.data_collator import (
    SentenceTransformerDataCollator,
)

__all__ = ["TEXT_KEY", "SoftInfoNCEDataCollator", "without_texts"]

#: The feature key under which :class:`SoftInfoNCEDataCollator` keeps a column's raw texts.
TEXT_KEY = "raw_text"


@dataclass
class SoftInfoNCEDataCollator(SentenceTransformerDataCollator):
    """sentence-transformers' collator that also keeps each text column's raw strings.

    Every string column ``c`` gains ``c_raw_text`` (the texts as in the dataset, before any
    prompt); the trainer hands it to the loss inside that column's features as ``"raw_text"``.
    Build it as the trainer would: ``SoftInfoNCEDataCollator(model.preprocess,
    prompts=args.prompts, router_mapping=args.router_mapping)``.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        if not features:
            return batch
        for column in features[0]:
            if column == "dataset_name" or column in self.valid_label_columns:
                continue
            values = [row[column] for row in features]
            if all(isinstance(value, str) for value in values):
                batch[f"{column}_{TEXT_KEY}"] = values
        return batch


def without_texts(features: dict[str, Any]) -> dict[str, Any]:
    """``features`` without the raw texts, so the model and column merging never see them."""
    return {key: value for key, value in features.items() if key != TEXT_KEY}
