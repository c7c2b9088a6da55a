"""What the trainer checks about its batches: the smallest batch the loss accepts, and
errors raised inside a batch naming the dataset rows the batch holds.

A collator or an estimator sees a batch, and its errors name a position in it
(``queries[3]``), which means nothing once the sampler has shuffled the rows. The trainer adds
each row's index in ``train_dataset`` as the column :data:`ROW_COLUMN`; :class:`RowNamingCollator`
takes it out before the user's collator runs and puts the list back in the batch, and
:func:`name_rows` rewrites an error raised on the batch (by the collator, the model or the
loss and its estimator) to say which dataset row each batch position is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from soft_infonce.integrations.hf.training_args import SoftInfoNCETrainingArguments

__all__ = ["ROW_COLUMN", "RowNamingCollator", "check_batch_candidates", "name_rows"]

ROW_COLUMN = "dataset_row"
NAMED_ERRORS = (ValueError, TypeError)  # what bad data raises; others pass through unchanged


def name_rows(error: Exception, rows: Sequence[Any] | None) -> Exception:
    """``error`` with the batch's dataset rows appended, same type (``ValueError`` when the
    type cannot be rebuilt from a message); ``error`` itself when the rows are unknown."""
    if not rows or any(row is None for row in rows):
        return error
    message = f"{error} [batch positions 0..{len(rows) - 1} are train_dataset rows {list(rows)}]"
    try:
        named = type(error)(message)
    except Exception:  # noqa: BLE001 - an exception type with another constructor
        named = ValueError(message)
    named.__cause__ = error
    return named


class RowNamingCollator:
    """Wraps a collator: the dataset rows leave the features and come back in the batch."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [feature.pop(ROW_COLUMN, None) for feature in features]
        try:
            batch = self.collator(features)
        except NAMED_ERRORS as error:
            raise name_rows(error, rows) from error
        batch[ROW_COLUMN] = rows
        return batch


def check_batch_candidates(
    loss: Any, train_dataset: Any, args: SoftInfoNCETrainingArguments
) -> None:
    """Refuse, before any step, a batch too small for the loss's weights (Eq. 4 needs
    ``beta - alpha / (M - 1) > 0``), counting the smallest batch an epoch ends with."""
    needed = getattr(loss, "min_candidates", None)
    if needed is None or train_dataset is None or not hasattr(train_dataset, "__len__"):
        return
    columns = getattr(train_dataset, "column_names", None) or []
    k = len(train_dataset[0]["negatives"]) if "negatives" in columns and len(train_dataset) else 0
    batch = args.per_device_train_batch_size
    last = len(train_dataset) % (batch * max(1, args.world_size))
    smallest = batch if args.dataloader_drop_last or last == 0 else min(batch, last)
    world = max(1, args.world_size) if loss.gather_across_devices else 1
    m = smallest * (1 + k) * world
    if m >= needed:
        return
    where = "each batch" if smallest == batch else f"the last batch of an epoch ({smallest} rows)"
    rows = -(-needed // ((1 + k) * world))
    fix = f"use per_device_train_batch_size >= {rows}"
    if smallest != batch:
        fix = f"set dataloader_drop_last=True (or a batch size leaving >= {rows} rows at the end)"
    raise ValueError(
        f"per_device_train_batch_size={batch}{f' with {k} hard negatives' if k else ''} gives "
        f"{where} {m} candidates per query, but {type(loss).__name__} with alpha={loss.alpha} "
        f"and beta={loss.beta} needs at least {needed} (beta - alpha / (M - 1) > 0, Eq. 4): "
        f"{fix}, or a smaller alpha"
    )
