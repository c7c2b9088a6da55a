"""The training set's checks, made when the Trainer is built (before any step): its size
against a global batch, and every query, code and hard negative a non-blank text, named by
dataset row (inside a batch the index would mean nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soft_infonce.integrations.hf.training_args import SoftInfoNCETrainingArguments

__all__ = ["check_train_size", "check_train_texts"]


def check_train_size(train_dataset: Any, args: SoftInfoNCETrainingArguments) -> None:
    """Refuse an empty training set, or one smaller than a global batch when the last short
    batch is dropped (no step would run)."""
    if train_dataset is None or not hasattr(train_dataset, "__len__"):
        return
    size, batch = len(train_dataset), args.train_batch_size * max(1, args.world_size)
    if size == 0:
        raise ValueError("train_dataset is empty (0 rows): nothing to train on")
    if args.dataloader_drop_last and size < batch:
        raise ValueError(
            f"train_dataset has {size} rows, fewer than one global batch of {batch} "
            f"(per_device_train_batch_size {args.per_device_train_batch_size} x "
            f"{args.train_batch_size // args.per_device_train_batch_size} device(s) x "
            f"{max(1, args.world_size)} process(es)) with dataloader_drop_last=True: no step "
            "would run. Use more pairs or a smaller batch."
        )


def _blank_text(row: int, column: str, value: Any) -> ValueError:
    return ValueError(
        f"train_dataset row {row}: {column!r} must hold non-blank text, got {value!r} (the data "
        "loaders skip and count such rows; filter this dataset the same way)"
    )


def _is_text(item: Any) -> bool:
    return isinstance(item, str) and bool(item.strip())


def check_train_texts(train_dataset: Any) -> None:
    """Refuse, before any step, a row whose query, code or hard negative is not a non-blank
    string, naming the dataset row (inside a batch the index would mean nothing). Each column
    is read once."""
    columns = getattr(train_dataset, "column_names", None)
    if not columns:
        return
    for column in ("query", "code"):
        if column in columns:
            for row, value in enumerate(train_dataset[column]):
                if not _is_text(value):
                    raise _blank_text(row, column, value)
    if "negatives" in columns or "negative_queries" in columns:
        _check_negative_columns(train_dataset, columns)


def _check_negative_columns(train_dataset: Any, columns: list[str]) -> None:
    """Hard negatives: both list columns of non-blank texts, one paired query per negative, the
    same k in every row (the collator stacks them column by column), each problem named by its
    dataset row."""
    missing = {"negatives", "negative_queries"} - set(columns)
    if missing:
        raise ValueError(
            f"train_dataset has {sorted({'negatives', 'negative_queries'} - missing)} but no "
            f"{sorted(missing)}: hard negatives need both list columns (mine_hard_negatives "
            "writes them)"
        )
    k = None
    rows = zip(train_dataset["negatives"], train_dataset["negative_queries"], strict=True)
    for row, (negatives, queries) in enumerate(rows):
        if not isinstance(negatives, list) or not isinstance(queries, list):
            raise ValueError(
                f"train_dataset row {row}: 'negatives' and 'negative_queries' must be lists, "
                f"got {type(negatives).__name__} and {type(queries).__name__}"
            )
        for column, values in (("negatives", negatives), ("negative_queries", queries)):
            if not all(_is_text(item) for item in values):
                raise _blank_text(row, column, values)
        if len(queries) != len(negatives):
            raise ValueError(
                f"train_dataset row {row}: {len(negatives)} negatives but {len(queries)} "
                "negative_queries (one paired query per negative)"
            )
        if k is None:
            k = len(negatives)
        elif len(negatives) != k:
            raise ValueError(
                f"train_dataset row {row}: {len(negatives)} negatives, row 0 has {k}: every row "
                "needs the same k (mine_hard_negatives drops rows left with fewer)"
            )
