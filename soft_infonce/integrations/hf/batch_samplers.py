"""The Trainer's training batches from a batch sampler (:mod:`soft_infonce.sampling`).

``transformers.Trainer`` builds its loader from a per-row sampler and a batch size; a batch
sampler (topic-clustered batches, known groups) decides whole batches instead, so the loader
is built here with the Trainer's own column removal, worker seeding and ``accelerate``
preparation (which shards the batches across processes and calls ``set_epoch`` each epoch).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader, IterableDataset, Sampler
from transformers.trainer_utils import seed_worker

from soft_infonce.sampling import clustered_batch_sampler

if TYPE_CHECKING:
    from transformers import Trainer

    from soft_infonce.integrations.hf.training_args import SoftInfoNCETrainingArguments

__all__ = ["batch_sampler_loader", "train_batch_sampler"]


def train_batch_sampler(
    args: SoftInfoNCETrainingArguments, train_dataset: Any
) -> Sampler[list[int]] | None:
    """The batch sampler ``args.batch_sampler`` names (``None`` for ``"random"``): for
    ``"clustered"``, the training queries clustered once (TF-IDF k-means, ``batch_clusters``
    clusters) into a :class:`~soft_infonce.sampling.ClusteredBatchSampler`."""
    if args.batch_sampler == "random" or train_dataset is None:
        return None
    columns = getattr(train_dataset, "column_names", None) or []
    if "query" not in columns:
        raise ValueError(
            f"batch_sampler={args.batch_sampler!r} clusters the train_dataset's 'query' column, "
            f"but its columns are {columns}"
        )
    return clustered_batch_sampler(
        list(train_dataset["query"]),
        args.train_batch_size,
        args.batch_clusters,
        drop_last=args.dataloader_drop_last,
        seed=args.seed,
    )


def batch_sampler_loader(trainer: Trainer, sampler: Sampler[list[int]]) -> Any:
    """The prepared training ``DataLoader`` over ``sampler``'s batches of
    ``trainer.train_dataset`` (unused columns removed as the Trainer removes them)."""
    dataset: Any = trainer.train_dataset
    if dataset is None or isinstance(dataset, IterableDataset):
        raise ValueError("a batch sampler needs a train_dataset with rows to index, got "
                         f"{type(dataset).__name__}")  # fmt: skip
    collator: Any = trainer.data_collator
    if hasattr(dataset, "column_names"):
        dataset = trainer._remove_unused_columns(dataset, description="training")
    else:
        collator = trainer._get_collator_with_removed_columns(collator, description="training")
    args = trainer.args
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=args.dataloader_num_workers,
        pin_memory=args.dataloader_pin_memory,
        persistent_workers=args.dataloader_persistent_workers,
        worker_init_fn=partial(
            seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index
        ),
    )
    return trainer.accelerator.prepare(loader)
