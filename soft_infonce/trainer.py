"""``SoftInfoNCETrainer``: a ``transformers.Trainer`` for bi-encoders trained with Soft-InfoNCE.

The trainer overrides only what it must: ``compute_loss`` (embed both sides, hand the raw
texts to the loss's estimator), ``_set_signature_columns_if_needed`` (so the ``query``/``code``
columns survive ``remove_unused_columns``), ``evaluate`` (retrieval MRR on the validation set,
never the test set) and ``log`` (the weight statistics beside the loss).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import Trainer, TrainingArguments

from .data.collator import BiEncoderCollator
from .data.loaders import RetrievalSet, pairs_to_retrieval_set
from .estimators.base import WeightEstimator
from .evaluation import evaluate_retrieval
from .losses import (
    PRESETS,
    BCELoss,
    ContrastiveLoss,
    FalseNegativeCancellationLoss,
    InfoNCELoss,
    KLRegularizedInfoNCELoss,
    SoftInfoNCELoss,
    WeightedInfoNCELoss,
)

logger = logging.getLogger(__name__)

__all__ = ["LOSSES", "SoftInfoNCETrainer", "SoftInfoNCETrainingArguments", "build_loss"]

LossName = Literal["infonce", "soft", "bce", "weighted_infonce", "kl",
                   "false_negative_cancellation"]
LOSSES = ("infonce", "soft", "bce", "weighted_infonce", "kl", "false_negative_cancellation")
ESTIMATORS = ("bm25", "simcse", "trained", "uniform")
_PRESET_OF = {"bm25": "bm25", "simcse": "simcse", "trained": "trained", "uniform": None}


@dataclass
class SoftInfoNCETrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the loss, its weights and the tokenisation lengths."""

    loss: str = field(default="soft", metadata={"help": f"One of {', '.join(LOSSES)}."})
    estimator: str = field(
        default="bm25", metadata={"help": f"Weight estimator: one of {', '.join(ESTIMATORS)}."}
    )
    estimator_model: str | None = field(
        default=None,
        metadata={"help": "Path of the frozen model for the simcse (a sentence-transformer) or "
                          "trained (a BiEncoder saved with save_pretrained) estimator."},
    )
    alpha: float | None = field(default=None, metadata={"help": "Soft-InfoNCE alpha; None: the "
                                                                "estimator's paper preset."})
    beta: float | None = field(default=None, metadata={"help": "Soft-InfoNCE beta; None: preset."})
    temperature: float | None = field(
        default=None, metadata={"help": "Softmax temperature of the similarity; None: preset."}
    )
    min_weight: float = field(default=0.1, metadata={"help": "Lower clamp of the weights."})
    scale: float | None = field(
        default=None, metadata={"help": "Score scale; None: the model's own (BiEncoder.scale)."}
    )
    symmetric: bool = field(default=False, metadata={"help": "Add code-to-query InfoNCE."})
    gather_across_devices: bool = field(
        default=False, metadata={"help": "Use the codes of every process as negatives."}
    )
    cancellation_mode: str = field(default="top_k", metadata={"help": "top_k or threshold."})
    cancellation_k: int = field(default=1, metadata={"help": "Negatives dropped per query."})
    cancellation_ratio: float = field(
        default=0.9, metadata={"help": "threshold mode: drop negatives with similarity >= ratio "
                                       "x the positive's."}
    )
    max_query_length: int = field(default=128, metadata={"help": "Query tokens."})
    max_code_length: int = field(default=256, metadata={"help": "Code tokens."})
    dataloader_drop_last: bool = field(
        default=True, metadata={"help": "Drop the last short batch (a batch of one has no "
                                        "in-batch negative)."}
    )
    mini_batch_size: int | None = field(
        default=None, metadata={"help": "Gradient caching: embed in chunks of this size (large "
                                        "batches in bounded memory); None: off."}
    )

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.estimator in ("simcse", "trained") and self.loss != "infonce" \
                and not self.estimator_model:
            raise ValueError(f"estimator {self.estimator!r} needs estimator_model (a local path)")
        if not 0 < self.min_weight <= 1:
            raise ValueError(f"min_weight must lie in (0, 1], got {self.min_weight!r}")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {self.mini_batch_size!r}")
        if self.max_query_length < 4 or self.max_code_length < 4:
            raise ValueError("max_query_length and max_code_length must be >= 4, got "
                             f"{self.max_query_length!r}, {self.max_code_length!r}")
        super().__post_init__()


def build_estimator(args: SoftInfoNCETrainingArguments) -> WeightEstimator | None:
    """The estimator named by ``args.estimator`` (None for plain InfoNCE)."""
    from . import estimators

    if args.loss == "infonce":
        return None
    if args.estimator == "bm25":
        return estimators.BM25Estimator()
    if args.estimator == "uniform":
        return estimators.UniformEstimator()
    if args.estimator == "simcse":
        return estimators.EmbeddingEstimator(args.estimator_model)
    return estimators.TrainedModelEstimator(
        args.estimator_model, max_query_length=args.max_query_length,
        max_code_length=args.max_code_length,
    )


def build_loss(
    args: SoftInfoNCETrainingArguments,
    estimator: WeightEstimator | None = None,
    scale: float = 1.0,
) -> ContrastiveLoss:
    """The loss named by ``args.loss``, with the estimator's paper preset where unset."""
    scale = args.scale if args.scale is not None else scale
    common = {"scale": scale, "symmetric": args.symmetric,
              "gather_across_devices": args.gather_across_devices}
    if args.loss == "infonce":
        return InfoNCELoss(**common)
    preset = PRESETS.get(_PRESET_OF[args.estimator] or "", (1.3, 0.7, 1.0))
    temperature = args.temperature if args.temperature is not None else preset[2]
    if args.temperature is None and args.estimator == "trained":
        # The paper tuned t = 5 on the trained model's own scores, scale * q . c; the estimator
        # returns q . c, so the same softmax needs t / scale (0.25 for cosine x 20).
        frozen_scale = float(getattr(getattr(estimator, "model", None), "scale", 1.0))
        temperature = preset[2] / frozen_scale
    with_estimator = {**common, "estimator": estimator}
    if args.loss == "soft":
        return SoftInfoNCELoss(
            alpha=args.alpha if args.alpha is not None else preset[0],
            beta=args.beta if args.beta is not None else preset[1],
            temperature=temperature, min_weight=args.min_weight, **with_estimator)
    if args.loss == "bce":
        return BCELoss(temperature=temperature, **with_estimator)
    if args.loss == "weighted_infonce":
        return WeightedInfoNCELoss(temperature=temperature, **with_estimator)
    if args.loss == "kl":
        return KLRegularizedInfoNCELoss(
            infonce_weight=args.beta if args.beta is not None else 0.7,
            kl_weight=args.alpha if args.alpha is not None else 1.3,
            temperature=temperature, **with_estimator)
    return FalseNegativeCancellationLoss(
        mode=args.cancellation_mode, k=args.cancellation_k, ratio=args.cancellation_ratio,
        **with_estimator)


class SoftInfoNCETrainer(Trainer):
    """Train a :class:`~soft_infonce.BiEncoder` with Soft-InfoNCE (or any loss of this library).

    Args:
        model: the bi-encoder (its tokenizer and input layout feed the default collator).
        args: :class:`SoftInfoNCETrainingArguments`.
        train_dataset: pairs with ``query`` and ``code`` columns.
        eval_dataset: validation pairs (a ``Dataset`` with ``query``/``code``, ranked among
            their own codes) or a :class:`~soft_infonce.data.RetrievalSet`. Model selection uses
            it: set ``metric_for_best_model="mrr"``. Never pass the test set here.
        loss: a loss module; built from ``args`` (and ``estimator``) when ``None``.
        estimator: the weight estimator; built from ``args`` when ``None`` and ``loss`` is None.
        **kwargs: passed to ``transformers.Trainer``.

    Examples:
        >>> trainer = SoftInfoNCETrainer(model, args, train_dataset=train, eval_dataset=valid)
        >>> trainer.train()
    """

    def __init__(self, model, args: SoftInfoNCETrainingArguments, train_dataset=None,
                 eval_dataset=None, loss: ContrastiveLoss | None = None,
                 estimator: WeightEstimator | None = None, data_collator=None,
                 **kwargs: Any) -> None:
        if not isinstance(args, SoftInfoNCETrainingArguments):
            raise ValueError("args must be SoftInfoNCETrainingArguments, got "
                             f"{type(args).__name__}")
        if loss is None:
            estimator = estimator if estimator is not None else build_estimator(args)
            loss = build_loss(args, estimator, scale=getattr(model, "scale", 1.0))
        if data_collator is None:
            layout = getattr(model, "input_layout", "plain")
            featurizer = model.code_featurizer(args.max_code_length) \
                if layout == "graphcodebert" else None
            data_collator = BiEncoderCollator(
                model.tokenizer, args.max_query_length, args.max_code_length,
                input_layout="plain" if featurizer is not None else layout,
                code_featurizer=featurizer)
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: _as_retrieval_set(v, k) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = _as_retrieval_set(eval_dataset, "eval")
        super().__init__(model=model, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, data_collator=data_collator, **kwargs)
        self.loss_fn = loss
        self._statistics: dict[str, list[float]] = defaultdict(list)

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = ["query", "code"]

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """Embed queries and codes, then apply the loss with the batch's raw texts."""
        tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        query_embeddings, code_embeddings = model(**tensors)
        loss = self.loss_fn(query_embeddings, code_embeddings, queries=inputs.get("queries"),
                            codes=inputs.get("codes"))
        if model.training:
            self._record_statistics()
        outputs = {"query_embeddings": query_embeddings, "code_embeddings": code_embeddings}
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        """The usual step, or a gradient-cached one when ``args.mini_batch_size`` is set."""
        if self.args.mini_batch_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        from .gradcache import grad_cached_step

        model.train()
        inputs = self._prepare_inputs(inputs)
        steps = self.current_gradient_accumulation_steps
        with self.compute_loss_context_manager():
            loss = grad_cached_step(model, self.loss_fn, inputs, self.args.mini_batch_size,
                                    backward=lambda value: self.accelerator.backward(value / steps))
        self._record_statistics()
        return loss.detach() / steps

    def _record_statistics(self) -> None:
        for key, value in self.loss_fn.last_statistics.items():
            self._statistics[key].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean weight statistics since the last log to the training logs."""
        if "loss" in logs and self._statistics:
            for key, values in self._statistics.items():
                logs[key] = sum(values) / len(values)
            self._statistics.clear()
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Retrieval MRR and recall@k of the validation queries among the validation codes."""
        target = eval_dataset if eval_dataset is not None else self.eval_dataset
        if target is None:
            raise ValueError("evaluate needs an eval_dataset (validation pairs or RetrievalSet)")
        sets = target if isinstance(target, dict) else {"": _as_retrieval_set(target, "eval")}
        model = self.accelerator.unwrap_model(self.model)
        metrics: dict[str, float] = {}
        for name, rset in sets.items():
            prefix = f"{metric_key_prefix}_{name}_" if name else f"{metric_key_prefix}_"
            result = evaluate_retrieval(
                model, rset.queries, rset.codes, rset.relevant,
                batch_size=self.args.per_device_eval_batch_size,
                max_query_length=self.args.max_query_length,
                max_code_length=self.args.max_code_length,
                show_progress=not self.args.disable_tqdm and self.is_world_process_zero())
            metrics.update({prefix + k.replace("@", "_at_"): float(v) for k, v in result.items()})
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control,
                                                         metrics)
        return metrics


def _as_retrieval_set(data: Any, name: str) -> RetrievalSet:
    if isinstance(data, RetrievalSet):
        return data
    if hasattr(data, "column_names") and {"query", "code"} <= set(data.column_names):
        return pairs_to_retrieval_set(data, name=name)
    raise ValueError(
        f"eval_dataset {name!r} must be a RetrievalSet or a Dataset with 'query' and 'code' "
        f"columns, got {type(data).__name__}"
    )
