"""``SoftInfoNCETrainer``: a ``transformers.Trainer`` for bi-encoders trained with Soft-InfoNCE.

The trainer overrides only what it must: ``compute_loss`` (embed both sides, hand the batch's
raw texts to the loss through its ``compute_loss_from_embeddings`` seam; gradient caching is
a loss-side backward hook, see :mod:`soft_infonce.gradcache`), ``_set_signature_columns_if_needed``
(so the text columns survive ``remove_unused_columns``), ``evaluate`` (retrieval MRR on the
validation set, never the test set), ``log`` (the weight statistics beside the loss, turned
into numbers only there) and ``_save`` (checkpoints written by the model's ``save_pretrained``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel  # type: ignore[import-untyped]
from torch.utils.data import Sampler
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import TrainOutput

from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.gradcache import grad_cached_loss
from soft_infonce.integrations.hf.batch_samplers import batch_sampler_loader, train_batch_sampler
from soft_infonce.integrations.hf.batches import (
    NAMED_ERRORS,
    ROW_COLUMN,
    RowNamingCollator,
    check_batch_candidates,
    name_rows,
)
from soft_infonce.integrations.hf.collator import BiEncoderCollator
from soft_infonce.integrations.hf.modeling.card_facts import trainer_facts
from soft_infonce.integrations.hf.multiprocess import evaluate_retrieval_sharded, reduce_statistics
from soft_infonce.integrations.hf.retrieval import RetrievalSet, as_retrieval_set
from soft_infonce.integrations.hf.run_loss import RunLoss
from soft_infonce.integrations.hf.train_checks import check_train_size, check_train_texts
from soft_infonce.integrations.hf.training_args import (
    ESTIMATORS,
    LOSSES,
    SoftInfoNCETrainingArguments,
    build_estimator,
    build_loss,
)
from soft_infonce.losses import ContrastiveLoss

__all__ = [
    "ESTIMATORS",
    "LOSSES",
    "SoftInfoNCETrainer",
    "SoftInfoNCETrainingArguments",
    "build_estimator",
    "build_loss",
]

_COLUMNS = ["query", "code", "negatives", "negative_queries"]


def _default_collator(model: Any, args: SoftInfoNCETrainingArguments) -> BiEncoderCollator:
    return BiEncoderCollator.for_model(model, args.max_query_length, args.max_code_length)


class SoftInfoNCETrainer(Trainer):
    """Train a :class:`~soft_infonce.BiEncoder` with Soft-InfoNCE (or any loss of this library).

    Args:
        model: the bi-encoder (its tokenizer and input layout feed the default collator).
        args: :class:`SoftInfoNCETrainingArguments`.
        train_dataset: pairs with ``query`` and ``code`` columns (and optionally
            ``negatives``/``negative_queries``, see :mod:`soft_infonce.codesearch.data`); it must
            hold
            at least one global batch.
        eval_dataset: validation pairs (a ``Dataset`` with ``query``/``code``, ranked among
            their own codes) or a :class:`~soft_infonce.integrations.hf.retrieval.RetrievalSet`.
            Model selection uses
            it: set ``metric_for_best_model="mrr"``. Never pass the test set here.
        loss: a loss module; built from ``args`` (and ``estimator``) when ``None``.
        estimator: the weight estimator; built from ``args`` when ``None`` and ``loss`` is None.
        batch_sampler: yields the training batches' row indices (e.g. a
            :mod:`soft_infonce.sampling` sampler); ``None``: ``args.batch_sampler`` decides
            (``"clustered"`` clusters the training queries once, here).
        **kwargs: passed to ``transformers.Trainer``.

    Examples:
        >>> trainer = SoftInfoNCETrainer(model, args, train_dataset=train, eval_dataset=valid)
        >>> trainer.train()
    """

    args: SoftInfoNCETrainingArguments

    def __init__(
        self,
        model,
        args: SoftInfoNCETrainingArguments,
        train_dataset=None,
        eval_dataset=None,
        loss: ContrastiveLoss | None = None,
        estimator: WeightEstimator | None = None,
        data_collator=None,
        batch_sampler: Sampler[list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, SoftInfoNCETrainingArguments):
            raise TypeError(f"args must be SoftInfoNCETrainingArguments, got {type(args).__name__}")
        check_train_size(train_dataset, args)
        check_train_texts(train_dataset)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if loss is None:
            built = estimator is None
            estimator = estimator if estimator is not None else build_estimator(args, model)
            loss = build_loss(args, estimator, scale=getattr(model, "scale", 1.0))
            make_callback = getattr(estimator, "callback", None)
            if built and callable(make_callback):
                callbacks.append(make_callback())  # an EMA estimator follows each step
        check_batch_candidates(loss, train_dataset, args)
        if data_collator is None:
            data_collator = _default_collator(model, args)
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: as_retrieval_set(v, k) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = as_retrieval_set(eval_dataset, "eval")
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator,
            callbacks=callbacks or None,
            **kwargs,
        )
        self.loss_fn = loss
        self._statistics: dict[str, torch.Tensor] = {}
        self._statistics_steps = 0
        self._last_eval_metrics: dict[str, float] = {}
        self._run_loss = RunLoss()
        if batch_sampler is None:
            batch_sampler = train_batch_sampler(args, train_dataset)
        self.batch_sampler = batch_sampler

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = [*_COLUMNS, ROW_COLUMN]  # type: ignore[assignment]

    def get_train_dataloader(self) -> Any:
        """The Trainer's loader (or one over ``batch_sampler``'s batches) over ``train_dataset``
        with each row's index added, so that errors raised on a batch name the dataset rows
        (:mod:`.batches`)."""
        dataset: Any = self.train_dataset
        collator: Any = self.data_collator
        if hasattr(dataset, "add_column") and ROW_COLUMN not in dataset.column_names:
            self.train_dataset = dataset.add_column(ROW_COLUMN, list(range(len(dataset))))
            self.data_collator = RowNamingCollator(collator)
        try:
            if self.batch_sampler is not None:
                return batch_sampler_loader(self, self.batch_sampler)
            return super().get_train_dataloader()
        finally:
            self.train_dataset, self.data_collator = dataset, collator

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
        **kwargs: Any,
    ) -> TrainOutput:
        """``Trainer.train``; ``resume_from_checkpoint=True`` resumes from the last *complete*
        checkpoint of ``output_dir`` (one whose write was killed half-way is set aside, see
        :mod:`soft_infonce.integrations.hf.checkpoints`) instead of failing on it."""
        if resume_from_checkpoint is True:
            from soft_infonce.integrations.hf.checkpoints import last_complete_checkpoint

            if self.args.output_dir is None:
                raise ValueError("resume_from_checkpoint=True needs args.output_dir, got None")
            found = last_complete_checkpoint(
                self.args.output_dir, set_aside_incomplete=self.is_world_process_zero()
            )
            if found is None:
                raise ValueError(
                    "resume_from_checkpoint=True but output_dir "
                    f"{self.args.output_dir!r} holds no complete checkpoint-<step> folder"
                )
            resume_from_checkpoint = str(found)
        self._run_loss.start(resume_from_checkpoint if resume_from_checkpoint else None)
        output = super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,  # older transformers take more keywords
        )
        return self._run_loss.finish(self, output)  # train_loss over the whole run

    def compute_loss(
        self,
        model,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Embed queries and candidates, then the loss with the batch's raw texts
        (``queries``, ``codes``, ``candidate_queries``); gradient-cached when
        ``args.mini_batch_size`` is set. Errors name the batch's dataset rows."""
        try:
            return self._compute_loss(model, inputs, return_outputs)
        except NAMED_ERRORS as error:
            raise name_rows(error, inputs.get(ROW_COLUMN)) from error

    def _compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool):
        outputs = None
        if self.args.mini_batch_size is not None and not return_outputs:
            loss = grad_cached_loss(model, self.loss_fn, inputs, self.args.mini_batch_size)
        else:
            tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            query_embeddings, code_embeddings = model(**tensors)
            loss = self.loss_fn.compute_loss_from_embeddings(
                query_embeddings, code_embeddings, inputs
            )
            outputs = {"query_embeddings": query_embeddings, "code_embeddings": code_embeddings}
        if model.training and torch.is_grad_enabled():
            self._accumulate(self.loss_fn.last_statistics)
        return (loss, outputs) if return_outputs else loss

    def _accumulate(self, statistics: dict[str, torch.Tensor]) -> None:
        """Running min / max / sum of the statistics on their device (no host sync)."""
        for key, value in statistics.items():
            old = self._statistics.get(key)
            if old is None:
                self._statistics[key] = value
            elif key.endswith("_min"):
                self._statistics[key] = torch.minimum(old, value)
            elif key.endswith("_max"):
                self._statistics[key] = torch.maximum(old, value)
            else:
                self._statistics[key] = old + value
        self._statistics_steps += 1 if statistics else 0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the weight statistics since the last log (mean; min and max over the steps),
        averaged over the processes (min and max over them)."""
        if "loss" in logs and self._statistics:
            steps = max(1, self._statistics_steps)
            # the mean over processes (min / max over them): every process logs, same keys
            reduced = reduce_statistics(self._statistics)
            numbers = {
                key: float(value) if key.endswith(("_min", "_max")) else float(value) / steps
                for key, value in reduced.items()
            }
            if self.is_world_process_zero():
                self.loss_fn.check_statistics(numbers)
            logs.update(numbers)
            self._statistics, self._statistics_steps = {}, 0
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Retrieval MRR and recall@k of the validation queries among the validation codes.

        With several processes each encodes its share of the queries and codes and the
        embeddings are gathered: every process gets the metrics of the whole set."""
        target = eval_dataset if eval_dataset is not None else self.eval_dataset
        if target is None:
            raise ValueError("evaluate needs an eval_dataset (validation pairs or RetrievalSet)")
        sets: dict[str, RetrievalSet] = (
            {k: as_retrieval_set(v, k) for k, v in target.items()}
            if isinstance(target, dict)
            else {"": as_retrieval_set(target, "eval")}
        )
        model = extract_model_from_parallel(self.model)
        metrics: dict[str, float] = {}
        for name, rset in sets.items():
            prefix = f"{metric_key_prefix}_{name}_" if name else f"{metric_key_prefix}_"
            result = evaluate_retrieval_sharded(  # each process encodes 1 / world of the set
                model,
                rset.queries,
                rset.codes,
                rset.relevant,
                batch_size=self.args.per_device_eval_batch_size,
                max_query_length=self.args.max_query_length,
                max_code_length=self.args.max_code_length,
                show_progress=not self.args.disable_tqdm and self.is_world_process_zero(),
            )
            metrics.update({prefix + k.replace("@", "_at_"): float(v) for k, v in result.items()})
        self._last_eval_metrics = dict(metrics)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics

    def model_card(self) -> dict[str, Any]:
        """What the saved model's card states (the same for checkpoints and ``save_model``):
        loss and estimator with their settings, data sizes, hyperparameters, last metrics."""
        return trainer_facts(self)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write checkpoints and ``save_model`` through the model's ``save_pretrained`` (with
        a model card), so every checkpoint loads with ``BiEncoder.from_pretrained``; models
        without it (or a given ``state_dict``, e.g. FSDP) take the Trainer's own path."""
        self._run_loss.record(self)  # saved with the checkpoint's trainer_state.json
        model = extract_model_from_parallel(self.model)
        save = getattr(model, "save_pretrained", None)
        from transformers import PreTrainedModel

        if save is None or state_dict is not None or isinstance(model, PreTrainedModel):
            super()._save(output_dir, state_dict)
            return
        output_dir = str(output_dir if output_dir is not None else self.args.output_dir)
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if "model_card" in inspect.signature(save).parameters:
            save(output_dir, model_card=self.model_card())
        else:
            save(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
