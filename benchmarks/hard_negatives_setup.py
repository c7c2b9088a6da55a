"""The hard-negative grid's inputs and guards (``benchmarks/hard_negatives.py``): its settings
(``--negatives``, ``--runs``), its data, the nested negatives each k takes, and the checks and
the callback every training run uses.
"""

from __future__ import annotations

import logging
import math
import time

import quality
import torch
from peers import ST_LOSSES
from transformers import TrainerCallback

from soft_infonce.codesearch.data.negative_spec import POSITIVE_AWARE_MARGIN, HardNegativeSpec
from soft_infonce.estimators.registry import ESTIMATORS as REGISTERED
from soft_infonce.integrations.hf.retrieval import pairs_to_retrieval_set
from soft_infonce.integrations.hf.trainer import LOSSES

#: The library's registry, plus pa-trained (PositiveAwareEstimator over the trained teacher);
#: ema decays at 0.99 here; +cal: calibrated t.
ESTIMATORS = (*REGISTERED, "pa-trained")
logger = logging.getLogger("hard_negatives")


def parse_negatives(text: str) -> list[tuple[str, str, HardNegativeSpec | None]]:
    """``"none,bm25-pp:3"`` -> ``[("none", "none", None), ("bm25-pp:3", "bm25-pp",
    HardNegativeSpec("bm25", 3, relative_margin=0.05))]``: (item, miner label, spec), checked.

    Each item is ``none`` or the library's ``METHOD:K``; a ``-pp`` after the method labels
    NV-Retriever's positive-aware filter (``relative_margin=0.05``: a candidate scoring within
    5% of the positive is dropped as a likely false negative).
    """
    out: list[tuple[str, str, HardNegativeSpec | None]] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if item == "none":
            out.append((item, "none", None))
            continue
        label, colon, k = item.partition(":")
        method = label.removesuffix("-pp")
        margin = POSITIVE_AWARE_MARGIN if label.endswith("-pp") else None
        try:
            spec = HardNegativeSpec.parse(f"{method}{colon}{k}", relative_margin=margin)
        except ValueError as error:
            raise SystemExit(
                f"--negatives: {item!r} (or none; -pp: positive-aware): {error}"
            ) from None
        out.append((item, label, spec))
    return out


def parse_runs(text: str) -> list[str]:
    """Check every ``loss[:estimator]`` before any work (a typo must not cost an hour)."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    for spec in specs:
        loss, _, est = spec.partition(":")
        if spec in ("zero-shot", "infonce", *ST_LOSSES):
            continue
        base = est.removesuffix("+cal")
        if loss not in LOSSES or loss == "infonce" or base not in ESTIMATORS or est == "self+cal":
            raise SystemExit(
                f"--runs: {spec!r} is not zero-shot, infonce or LOSS:ESTIMATOR with "
                f"LOSS in {LOSSES[1:]} and ESTIMATOR in {ESTIMATORS} (+cal: calibrated t; not self)"
            )
    return specs


def load_data(args) -> dict:
    """name -> (train, valid, test) for each of ``--experiments``: the validation split is carved
    from the training pairs (``--max-train-pairs`` trims the training pairs later, after mining
    from all of them)."""
    data = {}
    for exp in (e.strip() for e in args.experiments.split(",") if e.strip()):
        try:
            pairs, test = quality.experiment(exp)
        except ValueError as error:
            raise SystemExit(f"--experiments: {error}") from error
        pairs = pairs.select_columns(["query", "code"]).shuffle(seed=0)
        n_valid = max(2, round(args.valid_fraction * len(pairs)))
        valid = pairs_to_retrieval_set(pairs.select(range(n_valid)), name=f"{exp}-valid")
        train = pairs.select(range(n_valid, len(pairs)))
        data[exp] = (train, valid, test)
    return data


def trim(train, args):
    """The first ``--max-train-pairs`` rows (the pool mined from stays the whole training set)."""
    if args.max_train_pairs is None or args.max_train_pairs >= len(train):
        return train
    return train.select(range(args.max_train_pairs))


def take_negatives(mined, k: int):
    """The first ``k`` mined negatives of every row (nested settings: k = 1 within k = 3)."""
    return mined.map(
        lambda row: {
            "negatives": row["negatives"][:k],
            "negative_queries": row["negative_queries"][:k],
        }
    )


def preflight(trainer, train) -> None:
    """Refuse to train when the library would drop the mined negatives or the loss would fail:
    collate one batch and run the loss (and its estimator) on random embeddings of it."""
    k = len(train[0]["negatives"]) if "negatives" in train.column_names else 0
    n = min(trainer.args.per_device_train_batch_size, len(train))  # one real batch
    batch = trainer.data_collator([train[i] for i in range(n)])
    rows = next(
        v.shape[0] for key, v in batch.items() if key.startswith("code_") and torch.is_tensor(v)
    )
    if rows != n * (1 + k) or len(batch.get("candidate_queries") or batch["queries"]) != rows:
        raise SystemExit(
            f"the collator gave {rows} candidate codes for {n} queries with k={k} negatives "
            f"(expected {n * (1 + k)}, with candidate_queries): this soft_infonce has no "
            "hard-negative path yet"
        )
    q = torch.nn.functional.normalize(torch.randn(n, 8), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(rows, 8), dim=-1)
    try:
        trainer.loss_fn(
            q,
            c,
            queries=batch["queries"],
            codes=batch["codes"],
            candidate_queries=batch.get("candidate_queries"),
        )
    except (ValueError, TypeError) as error:
        raise SystemExit(f"{type(trainer.loss_fn).__name__} cannot run here: {error}") from error


class KeepBest(TrainerCallback):
    """Keep the weights of the best validation MRR and time the training steps."""

    def __init__(self, model) -> None:
        self.model, self.best, self.weights, self.history = model, -math.inf, None, []
        self.step_seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds.append(time.perf_counter() - self._t0)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        mrr = float(metrics["eval_mrr"])
        self.history.append({"epoch": round(float(state.epoch or 0), 3), "valid_mrr": mrr})
        if mrr > self.best:
            self.best, self.best_epoch = mrr, float(state.epoch or 0)
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def text_batches(train, batch_size: int, count: int) -> list[dict[str, list[str]]]:
    """Raw-text batches in the collator's layout (positives, then negative columns)."""
    rows = train.shuffle(seed=0).select(range(min(len(train), batch_size * count)))
    batches = []
    for start in range(0, len(rows) - batch_size + 1, batch_size):
        chunk = rows.select(range(start, start + batch_size))
        negs = chunk["negatives"] if "negatives" in chunk.column_names else [[]] * batch_size
        nqs = chunk["negative_queries"] if negs[0] else [[]] * batch_size
        k = len(negs[0])
        batches.append(
            {
                "queries": list(chunk["query"]),
                "codes": list(chunk["code"]) + [row[j] for j in range(k) for row in negs],
                "candidate_queries": list(chunk["query"])
                + [row[j] for j in range(k) for row in nqs],
            }
        )
    return batches
