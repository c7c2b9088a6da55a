"""``SoftInfoNCETrainingArguments`` (``TrainingArguments`` plus the loss and its settings)
and what they build: :func:`build_estimator` and :func:`build_loss`.

The choices are ``Literal`` types, so ``HfArgumentParser`` lists them in ``--help`` and
refuses others; ``__post_init__`` checks them again for direct construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from transformers import TrainingArguments

from soft_infonce.checks import check_int
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.estimators.registry import ESTIMATORS, EstimatorContext, estimator_entry
from soft_infonce.estimators.registry import build_estimator as build_registered
from soft_infonce.integrations.hf.multiprocess import check_launch
from soft_infonce.losses import (
    BCELoss,
    ContrastiveLoss,
    FalseNegativeCancellationLoss,
    InfoNCELoss,
    KLRegularizedInfoNCELoss,
    SoftInfoNCELoss,
    WeightedInfoNCELoss,
)

__all__ = [
    "build_estimator",
    "build_loss",
    "ESTIMATORS",
    "LOSSES",
    "BatchSamplerName",
    "CancellationMode",
    "LossName",
    "SoftInfoNCETrainingArguments",
]

LossName = Literal[
    "infonce", "soft", "bce", "weighted_infonce", "kl", "false_negative_cancellation"
]
CancellationMode = Literal["top_k", "threshold"]
BatchSamplerName = Literal["random", "clustered"]
LOSSES: tuple[str, ...] = get_args(LossName)


@dataclass
class SoftInfoNCETrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the loss, its weights and the tokenisation lengths."""

    loss: LossName = field(default="soft", metadata={"help": "The contrastive loss."})
    estimator: str = field(
        default="bm25",
        metadata={
            "help": f"Weight estimator: one of {', '.join(ESTIMATORS)}, or "
            "package.module:Attribute (your own WeightEstimator class or factory)."
        },
    )
    estimator_model: str | None = field(
        default=None,
        metadata={
            "help": "Path of the frozen model for the simcse (a sentence-transformer), "
            "pa-guide (the guide encoder, usually the base model) or trained (a BiEncoder "
            "saved with save_pretrained) estimator; refused for others."
        },
    )
    alpha: float | None = field(
        default=None, metadata={"help": "Soft-InfoNCE alpha; None: the estimator's paper preset."}
    )
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
    cancellation_mode: CancellationMode = field(
        default="top_k", metadata={"help": "false_negative_cancellation: how to pick negatives."}
    )
    cancellation_k: int = field(default=1, metadata={"help": "Negatives dropped per query."})
    cancellation_ratio: float = field(
        default=0.9,
        metadata={
            "help": "threshold mode: drop negatives with similarity >= ratio x the positive's."
        },
    )
    max_query_length: int = field(default=128, metadata={"help": "Query tokens."})
    max_code_length: int = field(default=256, metadata={"help": "Code tokens."})
    dataloader_drop_last: bool = field(
        default=True,
        metadata={"help": "Drop the last short batch (a batch of one has no in-batch negative)."},
    )
    batch_sampler: BatchSamplerName = field(
        default="random",
        metadata={
            "help": "random: shuffled batches; clustered: each batch from one topic cluster of "
            "the training queries (TF-IDF k-means, soft_infonce.sampling)."
        },
    )
    batch_clusters: int | None = field(
        default=None,
        metadata={"help": "clustered: k-means clusters; None: training pairs // batch size."},
    )
    mini_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Gradient caching: embed in chunks of this size (large "
            "batches in bounded memory); None: off."
        },
    )

    def __post_init__(self) -> None:
        choices = (
            ("loss", LOSSES),
            ("cancellation_mode", get_args(CancellationMode)),
            ("batch_sampler", get_args(BatchSamplerName)),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        entry = estimator_entry(self.estimator)  # an estimator_model it does not read is
        # refused when it is built (build_estimator), once the loss is known to use it
        if self.loss != "infonce" and "estimator_model" in entry.requires:
            if not self.estimator_model:
                raise ValueError(
                    f"estimator {self.estimator!r} needs estimator_model (a local path)"
                )
        for name in ("alpha", "beta", "temperature", "scale", "min_weight", "cancellation_ratio"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0 < self.min_weight <= 1:
            raise ValueError(f"min_weight must lie in (0, 1], got {self.min_weight!r}")
        if self.batch_clusters is not None:
            check_int("batch_clusters", self.batch_clusters)
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {self.mini_batch_size!r}")
        if self.max_query_length < 4 or self.max_code_length < 4:
            raise ValueError(
                "max_query_length and max_code_length must be >= 4, got "
                f"{self.max_query_length!r}, {self.max_code_length!r}"
            )
        if self.dataloader_pin_memory and not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for; spares torch's warning
        super().__post_init__()  # sets up the devices and, under a launcher, the process group
        check_launch(self.world_size)


def build_estimator(
    args: SoftInfoNCETrainingArguments, model: Any = None
) -> WeightEstimator | None:
    """The estimator named by ``args.estimator`` (None for plain InfoNCE), from the registry.

    Args:
        args: The training arguments (estimator, estimator_model, lengths, device).
        model: The model being trained, for estimators that follow it (``"ema"``).
    """
    if args.loss == "infonce":
        return None
    context = EstimatorContext(
        estimator_model=args.estimator_model,
        model=model,
        max_query_length=args.max_query_length,
        max_code_length=args.max_code_length,
        device=args.device,  # texts missing from a cache are embedded where training runs
    )
    return build_registered(args.estimator, context)


def build_loss(
    args: SoftInfoNCETrainingArguments,
    estimator: WeightEstimator | None = None,
    scale: float = 1.0,
) -> ContrastiveLoss:
    """The loss named by ``args.loss``, with ``estimator`` (built from ``args`` when None).

    Unset alpha, beta and temperature stay unset here: the loss fills them from its
    estimator's preset (:func:`soft_infonce.presets.resolve`, once).
    """
    scale = args.scale if args.scale is not None else scale
    common: dict[str, Any] = {
        "scale": scale,
        "symmetric": args.symmetric,
        "gather_across_devices": args.gather_across_devices,
    }
    if args.loss == "infonce":
        return InfoNCELoss(**common)
    if estimator is None:
        estimator = build_estimator(args)
    alpha, beta, temperature = args.alpha, args.beta, args.temperature
    with_estimator: dict[str, Any] = {**common, "estimator": estimator}
    if args.loss == "soft":
        return SoftInfoNCELoss(
            alpha=alpha,
            beta=beta,
            temperature=temperature,
            min_weight=args.min_weight,
            **with_estimator,
        )
    if args.loss == "bce":
        return BCELoss(temperature=temperature, **with_estimator)
    if args.loss == "weighted_infonce":
        return WeightedInfoNCELoss(temperature=temperature, **with_estimator)
    if args.loss == "kl":
        return KLRegularizedInfoNCELoss(
            infonce_weight=args.beta if args.beta is not None else 0.7,
            kl_weight=args.alpha if args.alpha is not None else 1.3,
            temperature=temperature,
            **with_estimator,
        )
    return FalseNegativeCancellationLoss(
        mode=args.cancellation_mode,
        k=args.cancellation_k,
        ratio=args.cancellation_ratio,
        **with_estimator,
    )
