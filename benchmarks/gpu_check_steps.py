"""The measured part of ``gpu_check.py``: trainers of one group, interleaved rounds, checks."""

from __future__ import annotations

import contextlib
import copy
import gc
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from gpu_check_clock import StepClock, summarize
from gpu_check_models import Sizes, build_model, minilm_path, tiny_tokenizer, with_hard_negatives
from transformers.trainer_callback import PrinterCallback

#: |device loss - float32 CPU loss| <= atol + rtol * |CPU loss|, per precision
LOSS_TOLERANCE = {"fp32": (1e-4, 1e-4), "bf16": (0.03, 0.02), "fp16": (0.01, 0.005)}
#: max |cached - uncached gradient| / max |uncached gradient|, per precision
GRAD_TOLERANCE = {"fp32": 1e-4, "bf16": 0.05, "fp16": 0.01}


@dataclass
class Variant:
    loss: str  # "infonce" | "soft"
    estimator: str = ""  # "" | "uniform" | "bm25" | "simcse" | "trained"

    @property
    def name(self) -> str:
        return f"{self.loss}:{self.estimator}" if self.estimator else self.loss


@dataclass
class Group:
    model: str
    precision: str  # "fp32" | "bf16" | "fp16"
    mini_batch_size: int | None
    hard_negatives: int
    variants: list[Variant]

    @property
    def name(self) -> str:
        gc_ = f"gc{self.mini_batch_size}" if self.mini_batch_size else "nogc"
        return f"{self.model}/{self.precision}/{gc_}/k{self.hard_negatives}"


@dataclass
class Context:
    """What the groups share: device, sizes, data, models and filled estimator caches."""

    device: torch.device
    sizes: Sizes
    pairs: list[dict[str, str]]
    work: Path
    rounds: int
    steps: int
    _tokenizer: Any = None
    _models: dict[str, Any] = field(default_factory=dict)
    _estimators: dict[tuple[str, str], Any] = field(default_factory=dict)
    _saved: dict[str, str] = field(default_factory=dict)

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = tiny_tokenizer(
                [p["query"] for p in self.pairs] + [p["code"] for p in self.pairs]
            )
        return self._tokenizer

    def model(self, family: str) -> Any:
        """A fresh copy of the family's initial model (every trainer starts from the same)."""
        if family not in self._models:
            self._models[family] = build_model(family, self.sizes, self.tokenizer())
        return copy.deepcopy(self._models[family])

    def saved_model(self, family: str) -> str:
        """The family's initial model saved with ``save_pretrained`` (a local path)."""
        if family == "minilm":
            return minilm_path()
        if family not in self._saved:
            path = self.work / "models" / family
            self.model(family).save_pretrained(path)
            self._saved[family] = str(path)
        return self._saved[family]

    def estimator(self, family: str, name: str) -> Any:
        """The estimator of a family, its embeddings of every training text precomputed."""
        from soft_infonce.estimators.registry import EstimatorContext, build_estimator

        key = (family, name)
        if key not in self._estimators:
            q, c = self.sizes.lengths(family)
            frozen = {"simcse": minilm_path(), "trained": self.model(family)}.get(name)
            context = EstimatorContext(
                estimator_model=frozen, max_query_length=q, max_code_length=c, device=self.device
            )
            est = build_estimator(name, context)
            texts = {
                "query": [p["query"] for p in self.pairs],
                "code": [p["code"] for p in self.pairs],
            }
            for side in getattr(est, "embedding_sides", ()):
                est.precompute(texts[side], side=side, show_progress=False)
            self._estimators[key] = est
        return self._estimators[key]


def _trainer(ctx: Context, group: Group, variant: Variant, dataset: Any, clock: StepClock):
    from soft_infonce import SoftInfoNCETrainer, SoftInfoNCETrainingArguments

    q, c = ctx.sizes.lengths(group.model)
    est_model = None  # the path the arguments name; the estimator object itself is passed
    if variant.estimator == "simcse":
        est_model = minilm_path()
    elif variant.estimator == "trained":
        est_model = ctx.saved_model(group.model)
    args = SoftInfoNCETrainingArguments(
        output_dir=str(ctx.work / "out" / group.name / variant.name.replace(":", "-")),
        per_device_train_batch_size=ctx.sizes.batch,
        max_steps=2,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        seed=0,
        loss=variant.loss,
        estimator=variant.estimator or "bm25",
        estimator_model=est_model,
        mini_batch_size=group.mini_batch_size,
        max_query_length=q,
        max_code_length=c,
        bf16=group.precision == "bf16",
        fp16=group.precision == "fp16",
        use_cpu=ctx.device.type == "cpu",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        logging_nan_inf_filter=False,
    )
    estimator = ctx.estimator(group.model, variant.estimator) if variant.loss != "infonce" else None
    trainer = SoftInfoNCETrainer(
        ctx.model(group.model), args, train_dataset=dataset, estimator=estimator, callbacks=[clock]
    )
    trainer.remove_callback(PrinterCallback)
    clock.wrap(trainer)
    return trainer


def _train(trainer: Any, clock: StepClock, steps: int) -> list[dict[str, float]]:
    clock.records.clear()
    trainer.args.max_steps = steps
    try:
        trainer.train()
    finally:
        if clock.counter.active:  # a step raised between on_step_begin and on_step_end
            clock.counter.stop()
    return list(clock.records)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _on(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def loss_agreement(trainer: Any, batch: dict[str, Any], device: torch.device, precision: str):
    """The loss on ``batch`` (eval mode, the run's precision) against a float32 CPU copy."""
    model = trainer.model
    model.eval()
    with torch.no_grad(), _autocast(device, precision):
        on_device = float(trainer.compute_loss(model, batch).float())
    reference = copy.deepcopy(model)
    reference.__dict__.pop("forward", None)  # drop accelerate's autocast wrapper, if any
    reference.to("cpu", torch.float32)
    with torch.no_grad():
        on_cpu = float(trainer.compute_loss(reference, _on(batch, "cpu")))
    atol, rtol = LOSS_TOLERANCE[precision]
    diff = abs(on_device - on_cpu)
    return {
        "loss_device": on_device,
        "loss_reference": on_cpu,
        "loss_abs_diff": diff,
        "loss_tolerance": atol + rtol * abs(on_cpu),
        "loss_ok": diff <= atol + rtol * abs(on_cpu),
    }


def gradcache_agreement(trainer: Any, batch: dict[str, Any], mini_batch: int, precision: str):
    """Gradients of a gradient-cached ``training_step`` against an ordinary one: same weights,
    same batch, dropout off (the model stays in eval mode through ``training_step``)."""
    model, saved = trainer.model, trainer.args.mini_batch_size
    params = [p for p in model.parameters() if p.requires_grad]
    grads = {}
    model.eval()
    model.train = lambda mode=True: model  # training_step calls model.train()
    try:
        for mb in (None, mini_batch):
            trainer.args.mini_batch_size = mb
            model.zero_grad(set_to_none=True)
            trainer.training_step(model, dict(batch))
            grads[mb] = [
                torch.zeros_like(p) if p.grad is None else p.grad.detach().float().clone()
                for p in params
            ]
    finally:
        trainer.args.mini_batch_size = saved
        del model.train
        model.zero_grad(set_to_none=True)
        model.train()
    diff = max(float((a - b).abs().max()) for a, b in zip(grads[None], grads[mini_batch]))
    top = max(float(a.abs().max()) for a in grads[None])
    rel = diff / top if top > 0 else float("inf")
    return {
        "grad_max_abs_diff": diff,
        "grad_rel_diff": rel,
        "grad_mini_batch": mini_batch,
        "grad_tolerance": GRAD_TOLERANCE[precision],
        "grad_ok": rel <= GRAD_TOLERANCE[precision],
    }


def _dataset(ctx: Context, k: int) -> Any:
    import datasets

    rows = with_hard_negatives(ctx.pairs, k) if k else ctx.pairs
    return datasets.Dataset.from_list(rows)


def _hard_negatives_missing(trainer: Any, batch_size: int, k: int) -> str | None:
    """Why a batch lacks its ``N(1 + k)`` candidate codes (``None`` when it has them): the
    trainer's collator is tried on the dataset's ``negatives`` / ``negative_queries`` columns."""
    if not k:
        return None
    rows = next(iter(trainer.get_train_dataloader()))["code_input_ids"].shape[0]
    if rows == batch_size * (1 + k):
        return None
    return (
        f"the trainer's batches hold no hard negatives yet ({rows} candidate codes per batch, "
        f"expected N(1+K) = {batch_size * (1 + k)}): the collator drops the negatives columns"
    )


def run_group(ctx: Context, group: Group) -> tuple[list[dict], list[dict]]:
    """Warm up every variant, time interleaved rounds, then check loss and gradients."""
    dataset, skipped, results = _dataset(ctx, group.hard_negatives), [], []
    trainers: dict[str, tuple[Any, StepClock]] = {}
    base = {
        "model": group.model,
        "precision": group.precision,
        "mini_batch_size": group.mini_batch_size,
        "hard_negatives": group.hard_negatives,
    }
    for variant in group.variants:
        try:
            clock = StepClock(ctx.device)
            trainer = _trainer(ctx, group, variant, dataset, clock)
            note = _hard_negatives_missing(trainer, ctx.sizes.batch, group.hard_negatives)
            if note:  # the same collator serves every variant: skip the group
                return results, [{"what": group.name, "why": note}]
            _train(trainer, clock, 2)  # warm-up: allocations, kernels, caches
            trainers[variant.name] = (trainer, clock)
        except Exception as err:  # a broken configuration is reported, the others still run
            results.append({**base, "loss": variant.name, "error": f"{type(err).__name__}: {err}"})
    times: dict[str, list[float]] = {name: [] for name in trainers}
    records: dict[str, list[dict]] = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(ctx.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)] if names else []:
            trainer, clock = trainers[name]
            steps = _train(trainer, clock, ctx.steps)
            records[name] += steps
            times[name].append(statistics.median(s["seconds"] for s in steps))
    for name, (trainer, _clock) in trainers.items():
        steps, result = records[name], {**base, "loss": name}
        ratios = [t / i for t, i in zip(times[name], times.get("infonce", []))]
        result |= summarize(steps, ctx.device) | {
            "ratio_vs_infonce": statistics.median(ratios) if ratios else None,
            "ratio_range": [min(ratios), max(ratios)] if ratios else None,
        }
        try:
            batch = _on(next(iter(trainer.get_train_dataloader())), trainer.args.device)
            result |= gradcache_agreement(trainer, batch, ctx.sizes.mini_batch, group.precision)
            result |= loss_agreement(trainer, batch, ctx.device, group.precision)
        except Exception as err:
            result["error"] = f"check failed: {type(err).__name__}: {err}"
        results.append(result)
    trainers.clear()
    gc.collect()
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    return results, skipped
