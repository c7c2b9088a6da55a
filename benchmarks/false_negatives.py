"""Controlled false negatives: does down-weighting them pay, and against which peer (issue 18)?

Design. Real pairs: CodeSearchNet-Ruby valid (``../shared/data/csn-ruby/valid.jsonl``). Its last
400 pairs are the clean test set (never copied, never seen in training); of the first 1,000
(shuffled, seed 0, distinct codes) the first ``--valid-pairs`` are the clean validation set and the
next ``--pairs`` are the training pairs. Each training pair gets ``--copies`` lightly changed
copies (``false_negatives_data``: identifiers renamed, a comment added, words dropped or another
docstring sentence), so a pair and its copies form a known group. **The training data is the same
at every false-negative rate**: only the batch composition changes. ``GroupBatchSampler`` dials the
share of in-batch negatives that are copies of the row's own pair (``--rates``, 0 / 10 / 25%
measured over each epoch; 0 puts every copy in another batch). Every loss of a (rate, seed)
trains on the same batches in the same order (their digest is recorded per run).

Losses: ``infonce``; ``soft:bm25`` / ``soft:simcse`` (the paper's estimators at their presets),
``soft:pa-bm25`` (positive-aware BM25, the library's ratio preset), ``soft:pa-guide``
(positive-aware over GIST's guide: the frozen MiniLM's query-code score relative to the
positive's, ratio preset);
``zero-shot`` (the untrained encoder, for scale); ``gist``
(``GISTEmbedLoss`` as shipped, guide = the frozen MiniLM the SimCSE-style estimator uses,
temperature 0.05 = scale 20; it also contrasts query-query and code-code in-batch pairs),
``gist-qc`` (the same with query->code negatives only, as InfoNCE) and ``mnrl``
(``MultipleNegativesRankingLoss``, scale 20), all through sentence-transformers' own
``SentenceTransformerTrainer`` with the same batch sampler;
``oracle``: InfoNCE with the known copies dropped from each row's negatives
(``FalseNegativeCancellationLoss`` in threshold mode over a group-id estimator). Model: the
offline all-MiniLM-L6-v2 (mean pooling, cosine x 20), AdamW, linear decay, 10% warm-up. After
every epoch the validation MRR is measured; the best epoch's weights alone see the test set.
Reported: test MRR mean/std over seeds per (rate, loss), paired sign-flip tests on per-query
reciprocal ranks (seed-averaged) against InfoNCE and against GIST, and for the Soft-InfoNCE runs
the mean weight the known copies keep next to true negatives. Results go to
``benchmarks/results/false_negatives.json`` after every run (a rerun skips finished runs) and a
figure ``false_negatives.png`` (test MRR vs false-negative rate, one line per loss).

The grid as run (2026-12-07): three one-thread processes, each a list of phases
(``benchmarks/run_false_negatives.sh a|b|c``: 64 pairs x 5 copies, batch 16, 2 epochs, seeds
0-2), launched with ``nohup bash benchmarks/run_false_negatives.sh a >
benchmarks/results/false_negatives_a.log 2>&1 &`` (likewise b, c), then merged::

    python benchmarks/false_negatives.py --merge benchmarks/results/false_negatives_b.json \
        benchmarks/results/false_negatives_c.json        # folds b and c into false_negatives.json
    python benchmarks/false_negatives.py --report-only   # table + figure from the saved results
    python benchmarks/false_negatives.py --seeds 0 --rates 0.25 --pairs 16 --epochs 1 \
        --losses infonce,gist --output /tmp/fn.json    # a smoke run

Cost: a MiniLM step at batch 16, query/code 64 tokens, one thread: 1.35 s (InfoNCE) to 2.2 s
(GIST, its guide's forward) on an idle core, 4-9 s with the machine shared at load 6-12; a run
(48 steps, 2 validation passes, the 400-query test) 1.5-8 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import false_negatives_data as FD  # noqa: E402
import hard_negatives as hn  # noqa: E402
import quality  # noqa: E402
import torch  # noqa: E402
from false_negatives_report import report, save  # noqa: E402
from peers import ST_LOSSES, KeepBest, st_columns, train_peer  # noqa: E402
from transformers import set_seed  # noqa: E402

from soft_infonce.estimators.registry import estimator_entry  # noqa: E402
from soft_infonce.sampling import GroupBatchSampler, same_group_share  # noqa: E402

ROOT = quality.ROOT
LOSSES = (
    "infonce",
    "soft:bm25",
    "soft:simcse",
    "soft:pa-bm25",
    "soft:pa-guide",
    "gist",
    "gist-qc",
    "mnrl",
    "oracle",
    "zero-shot",
)
logger = logging.getLogger("false_negatives")
load_model = quality.load_model  # module attributes: the test swaps in a tiny model
model_path = quality.model_path


def load_data(args) -> dict:
    """train (queries, codes, groups), valid and test RetrievalSets, as described above."""
    from soft_infonce.codesearch import data as D
    from soft_infonce.integrations.hf.retrieval import RetrievalSet, pairs_to_retrieval_set

    ruby = D.load_code_text(quality.DATA / "csn-ruby" / "valid.jsonl")
    test = pairs_to_retrieval_set(ruby.select(range(1000, len(ruby))), name="ruby-test")
    pool = ruby.select(range(1000)).shuffle(seed=0)
    seen, rows = set(), []
    for q, c in zip(pool["query"], pool["code"]):
        if c not in seen:
            seen.add(c)
            rows.append((q, c))
    need = args.valid_pairs + args.pairs
    if len(rows) < need:
        raise SystemExit(f"--valid-pairs + --pairs = {need} exceeds the {len(rows)} pairs")
    vq, vc = zip(*rows[: args.valid_pairs])
    valid = RetrievalSet(list(vq), list(vc), list(range(len(vq))), name="ruby-valid")
    bq, bc = zip(*rows[args.valid_pairs : need])
    queries, codes, groups = FD.make_copies(bq, bc, args.copies, seed=0)
    return {"train": (queries, codes, groups), "valid": valid, "test": test}


class Recording:
    """Mixin for a batch sampler: hashes and counts the batches it yields (every loss of a run
    must see the same); ``start()`` resets both."""

    def __iter__(self):
        for batch in super().__iter__():  # type: ignore[misc]
            self.digest.update(json.dumps(batch).encode())
            self.count += 1
            yield batch

    def start(self):
        self.digest, self.count, self.epoch = hashlib.sha256(), 0, 0
        return self


class RecordingSampler(Recording, GroupBatchSampler):
    """A GroupBatchSampler that hashes the batches it yields."""


def common_args(seed: int, steps: int, args) -> dict:
    return {
        "output_dir": "/tmp/false_negatives",
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.epochs,
        "warmup_steps": max(1, steps // 10),
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": max(1, steps // 8),
        "report_to": "none",
        "seed": seed,
        "dataloader_drop_last": False,
        "disable_tqdm": True,
        "use_cpu": True,
    }


def train_ours(spec: str, data: dict, sampler, seed: int, args, every: int | None = None):
    """infonce, soft:EST or oracle through SoftInfoNCETrainer; (model, keep, info). ``every``:
    validate every this many steps too (``KeepBest``), not only after each epoch."""
    from datasets import Dataset

    from soft_infonce.integrations.hf.trainer import (
        SoftInfoNCETrainer,
        SoftInfoNCETrainingArguments,
        build_loss,
    )

    queries, codes, groups = data["train"]
    train = Dataset.from_dict({"query": queries, "code": codes})
    set_seed(seed)
    model = load_model()
    est_name = spec.partition(":")[2]
    estimator, temperature, extra = None, None, {"loss": "infonce"}
    if spec == "oracle":
        estimator = FD.GroupEstimator({c: g for c, g in zip(codes, groups)})
        extra = {
            "loss": "false_negative_cancellation",
            "cancellation_mode": "threshold",
            "cancellation_ratio": 1.0,
            "estimator": "uniform",
        }
    elif est_name == "pa-guide":  # GIST's guide as Soft-InfoNCE weights: the frozen MiniLM's
        # query-code score of each negative relative to the positive's (ratio preset, t = 0.1)
        estimator = hn.make_estimator("pa-trained", model, load_model(), args)
        extra = {"loss": "soft", "estimator": "trained", "estimator_model": "in-memory"}
    elif est_name:
        estimator = hn.make_estimator(est_name, model, None, args)
        needs_model = "estimator_model" in estimator_entry(est_name).requires
        extra = {
            "loss": "soft",
            "estimator": est_name,
            "estimator_model": "in-memory" if needs_model else None,
        }
    targs = SoftInfoNCETrainingArguments(
        **common_args(seed, len(sampler) * int(args.epochs), args),
        temperature=temperature,
        max_query_length=args.max_query_length,
        max_code_length=args.max_code_length,
        **extra,
    )
    loss = build_loss(targs, estimator, scale=model.scale)
    keep = KeepBest(model, lambda: model, data["valid"], args, every=every)
    trainer = SoftInfoNCETrainer(
        model, targs, train_dataset=train, loss=loss, callbacks=[keep], batch_sampler=sampler
    )
    trainer.train()
    info = {}
    if spec.startswith("soft:"):  # the weights the copies keep, on this run's epoch-0 batches
        info["copy_weights"] = FD.weight_on_copies(
            loss, estimator, queries, codes, groups, sampler.batches(0)
        )
    model.load_state_dict(keep.weights)
    return model, keep, info


def train_st(spec: str, data: dict, sampler, seed: int, args, every: int | None = None):
    """gist, gist-qc or mnrl through sentence-transformers' own trainer, on the same batches."""
    queries, codes, _ = data["train"]
    steps = len(sampler) * int(args.epochs)
    return (
        *train_peer(
            spec,
            st_columns(queries, codes),
            data["valid"],
            seed,
            args,
            common_args(seed, steps, args),
            sampler=sampler,
            every=every,
        ),
        {},
    )


def run_fields(keep: KeepBest, sampler: RecordingSampler, started: float) -> dict:
    """What a results entry records of a run besides its test figures."""
    return {
        "seconds": time.time() - started,
        "best_epoch": keep.best_epoch,
        "valid_mrr": keep.best,
        "valid_curve": keep.curve,
        "steps": len(keep.step_seconds),
        "step_seconds": sorted(keep.step_seconds)[len(keep.step_seconds) // 2],
        "batches_seen": sampler.count,
        "batches_digest": sampler.digest.hexdigest()[:16],
    }


def run_grid(args, results: dict, out: Path) -> None:
    specs = [s.strip() for s in args.losses.split(",") if s.strip()]
    unknown = [s for s in specs if s not in LOSSES]
    if unknown:
        raise SystemExit(f"--losses: unknown {unknown}, expected some of {LOSSES}")
    rates = [float(r) for r in args.rates.split(",")]
    data = load_data(args)
    queries, codes, groups = data["train"]
    results["data"] = {
        "train_rows": len(queries),
        "pairs": args.pairs,
        "copies": args.copies,
        "valid": len(data["valid"].queries),
        "test": len(data["test"].queries),
    }
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: partial grids stay paired
        for rate in rates:
            key = f"{rate:g}"
            for spec in specs:
                done = results["runs"].get(key, {}).get(spec, {})
                if str(seed) in done:
                    continue
                sampler = RecordingSampler(groups, args.batch_size, rate, seed=seed).start()
                t0 = time.time()
                if spec == "zero-shot":  # the untrained encoder: the level training starts from
                    model, info = load_model(), {}
                    keep = KeepBest(model, lambda m=model: m, data["valid"], args)
                    keep.on_epoch_end(None, types.SimpleNamespace(epoch=0), None)
                    keep.step_seconds = [0.0]
                else:
                    train = train_st if spec in ST_LOSSES else train_ours
                    model, keep, info = train(spec, data, sampler, seed, args)
                entry = quality.test_entry(model, data["test"], args)
                shares = [same_group_share(groups, sampler.batches(e)) for e in range(2)]
                entry |= info | run_fields(keep, sampler, t0) | {"false_negative_share": shares}
                results["runs"].setdefault(key, {}).setdefault(spec, {})[str(seed)] = entry
                logger.info(
                    "rate %s seed %d %-14s test MRR %.4f (best epoch %s, %.0f s, %.2f s/step)",
                    key,
                    seed,
                    spec,
                    entry["mrr"],
                    keep.best_epoch,
                    entry["seconds"],
                    entry["step_seconds"],
                )
                save(results, out)


def merge(results: dict, other: dict, name: str) -> None:
    """Fold ``other``'s runs in; a run present in both must be the same (equal ranks)."""
    for rate, runs in other.get("runs", {}).items():
        for spec, per_seed in runs.items():
            mine = results["runs"].setdefault(rate, {}).setdefault(spec, {})
            for seed, entry in per_seed.items():
                if seed in mine and mine[seed]["rr"] != entry["rr"]:
                    raise SystemExit(f"--merge {name}: {rate}/{spec} seed {seed} differs")
                mine[seed] = entry
    results.setdefault("merged_settings", {})[name] = other.get("settings")
    results.setdefault("data", other.get("data"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--losses", default=",".join(LOSSES))
    p.add_argument("--rates", default="0,0.1,0.25")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pairs", type=int, default=160, help="Training pairs (before copies).")
    p.add_argument("--copies", type=int, default=5, help="Copies per training pair.")
    p.add_argument("--valid-pairs", type=int, default=100)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--max-code-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/false_negatives.json"))
    p.add_argument("--merge", nargs="*", default=[], metavar="FILE")
    p.add_argument("--report-only", action="store_true", help="Print and plot saved results.")
    args = p.parse_args(argv)
    out = Path(args.output)
    if args.merge:
        results = json.loads(out.read_text()) if out.exists() else {"runs": {}}
        for other in args.merge:
            merge(results, json.loads(Path(other).read_text()), other)
        save(results, out)
    if args.report_only or args.merge:
        report(json.loads(out.read_text()), out.with_suffix(".png"))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    results = quality.open_results(out, args)
    run_grid(args, results, out)
    save(results, out)
    report(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
