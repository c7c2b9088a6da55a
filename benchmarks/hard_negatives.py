"""Hard negatives: does Soft-InfoNCE beat InfoNCE once the negatives are mined (issue 11, part 4)?

Every loss is trained on the same pairs with the same negatives: in-batch only (``none``), or
k mined hard negatives per query (``bm25:k``: BM25 of the query against the training codes;
``dense:k``: the zero-shot encoder; ``*-pp``: with NV-Retriever's positive-aware filter), mined
once per experiment from the training pool (k = 1 is the first column of k = 3). Model: the
offline all-MiniLM-L6-v2 (mean, cosine x 20), AdamW, linear decay, batch 32 queries (so
M = 32 (1 + k) candidates). Data (``quality.experiments``): ``ruby`` (the first 1,000 pairs of
csn-ruby/valid.jsonl, tested on the other 400) and ``stdlib->cosqa`` (pairs mined from the
standard library; CoSQA dev, 500 queries x 6,267 codes). A validation split (``--valid-fraction``
of the training pairs, seed 0) picks the epoch: each run keeps the weights of its best validation
MRR, and only that model sees the test set. Reported per (experiment, negatives, loss): mean and
std of test MRR over seeds, a paired sign-flip test against InfoNCE **with the same negatives**,
and against the best InfoNCE overall. Results go to ``benchmarks/results/hard_negatives.json``
after every run (an interrupted grid resumes where it stopped), plus a PNG.

Runs (``--runs``): ``infonce``, ``zero-shot``, the peers ``mnrl`` / ``gist`` / ``gist-qc``
(``peers.py``: sentence-transformers' own trainer, same rows and negatives), ``LOSS:ESTIMATOR``
with the trainer's losses and estimators ``bm25``, ``simcse``, ``trained`` (the InfoNCE model of
the same seed and negatives), ``pa-bm25`` / ``pa-trained`` (``PositiveAwareEstimator`` over BM25
query-code / the trained model, t = 0.1), ``self`` (``SelfGuidedEstimator``), ``ema``
(``EMAEstimator``, decay 0.99), and a ``+cal`` suffix: t calibrated on 10 training batches to
``--effective-negatives`` (``calibrate_temperature``).

The grid measured (2026-11-28/29; two 1-thread grids side by side on the 2 cores, merged):

    python benchmarks/hard_negatives.py --threads 1 --experiments ruby --max-train-pairs 384 \\
        --epochs 2 --negatives bm25:3,none \\
        --runs infonce,soft:bm25,soft:pa-bm25,false_negative_cancellation:bm25
    python benchmarks/hard_negatives.py --threads 1 --experiments ruby --max-train-pairs 384 \\
        --epochs 2 --negatives bm25:3 \\
        --runs infonce,soft:simcse,soft:self,soft:ema,soft:bm25+cal,soft:pa-trained
    python benchmarks/hard_negatives.py --threads 1 --experiments ruby --max-train-pairs 384 \\
        --epochs 2 --negatives dense:3,bm25:1 --runs infonce,soft:pa-bm25
    python benchmarks/hard_negatives.py --threads 1 --experiments 'stdlib->cosqa' \\
        --max-train-pairs 384 --epochs 2 --negatives bm25:3,none \\
        --runs infonce,soft:bm25,soft:pa-bm25,soft:simcse \\
        --output benchmarks/results/hard_negatives_cosqa.json
    python benchmarks/hard_negatives.py --threads 1 --experiments 'stdlib->cosqa' \\
        --max-train-pairs 384 --epochs 2 --negatives bm25-pp:3 --runs infonce \\
        --output benchmarks/results/hard_negatives_cosqa.json
    python benchmarks/hard_negatives.py --merge benchmarks/results/hard_negatives_cosqa.json
    python benchmarks/hard_negatives.py --seeds 0 --epochs 1 --max-train-pairs 64 \\
        --experiments ruby --negatives none,bm25:1 --runs infonce,soft:bm25   # a smoke run
    python benchmarks/hard_negatives.py --report-only

Cost, query 32 / code 64 tokens, batch 32, one thread per grid with two grids on the 2 cores:
a MiniLM step takes 2.6-2.9 s in-batch and 8.0-9.4 s with k = 3 (EMA: 10-10.5 s, its second
forward); a Ruby run (24 steps, 2 validation passes, the 400-query test) 80 s in-batch and
210-275 s at k = 3; a CoSQA run 185-200 s and 315-405 s (its test embeds 6,267 codes).
BM25 mining: 0.4 s for Ruby's 900 training codes, 2.3 s for stdlib's 2,803. The full grid
(2 experiments x 5 negative settings x 9 runs x 3 seeds, 4 epochs of all pairs) is days on
this machine and 1-2 h on one GPU; the runs above took ~2 h 15 min.

Over 300 lines because this docstring holds the commands behind benchmarks/README.md's tables;
the settings, data and per-run guards are in ``hard_negatives_setup.py``, the tables and figure
in ``hard_negatives_report.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark quality.py
import numpy as np  # noqa: E402
import quality  # noqa: E402
import torch  # noqa: E402
from hard_negatives_report import report, summarise  # noqa: E402
from hard_negatives_setup import (  # noqa: E402
    KeepBest,
    load_data,
    parse_negatives,
    parse_runs,
    preflight,
    take_negatives,
    text_batches,
    trim,
)
from peers import ST_LOSSES, st_columns, train_peer  # noqa: E402
from quality import save_results  # noqa: E402
from transformers import set_seed  # noqa: E402

from soft_infonce.codesearch.data.negative_spec import (  # noqa: E402
    HardNegativeSpec,
)
from soft_infonce.estimators import PositiveAwareEstimator  # noqa: E402
from soft_infonce.integrations.hf.trainer import (  # noqa: E402
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
    build_loss,
)

ROOT = quality.ROOT
RUNS = "infonce,soft:bm25,soft:simcse,soft:trained,false_negative_cancellation:bm25"
NEGATIVES = "none,bm25:1,bm25:3,dense:1,dense:3"
logger = logging.getLogger("hard_negatives")
load_model = quality.load_model  # module attributes, so a test can swap in a tiny model


def mine(train, spec: HardNegativeSpec, args):
    """The training pairs with ``negatives``/``negative_queries`` mined from the training pool."""
    from soft_infonce.codesearch.data import mine_hard_negatives

    options = spec.miner_options()
    if spec.method == "dense":
        options |= {
            "model": load_model(),
            "max_query_length": args.max_query_length,
            "max_code_length": args.max_code_length,
        }
    return mine_hard_negatives(train, seed=0, show_progress=False, **options)


def make_estimator(name: str, model, infonce_model, args):
    """The estimator of a ``--runs`` name (``+cal`` stripped), built through the registry.

    pa-* estimators (ratios to the positive's score in [0, 2]) take the library's ``ratio``
    preset (t = 0.1) from ``PositiveAwareEstimator.preset``.
    """
    base = name.removesuffix("+cal")
    if base == "pa-trained":
        teacher = quality.estimator_for("trained", infonce_model, args)
        return PositiveAwareEstimator(teacher)
    return quality.estimator_for(base, infonce_model, args, model=model)


def train_one(spec: str, train, valid, seed: int, args, infonce_model):
    loss_name, _, est_name = spec.partition(":")
    est_name = est_name or "uniform"
    steps_per_epoch = len(train) // args.batch_size
    if steps_per_epoch < 1:
        raise SystemExit(f"{len(train)} training pairs give no batch of {args.batch_size}")
    set_seed(seed)
    model = load_model()
    estimator, temperature = None, None
    if loss_name != "infonce":
        estimator = make_estimator(est_name, model, infonce_model, args)
        if est_name.endswith("+cal"):  # t from the training batches' softmax spread
            from soft_infonce.estimators import calibrate_temperature

            temperature = calibrate_temperature(
                estimator,
                text_batches(train, args.batch_size, 10),
                effective_negatives=args.effective_negatives,
            )
    targs = SoftInfoNCETrainingArguments(
        output_dir="/tmp/hard_negatives",
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        num_train_epochs=args.epochs,
        warmup_steps=max(1, steps_per_epoch * args.epochs // 10),
        eval_strategy="steps",
        eval_steps=max(1, steps_per_epoch // args.evals_per_epoch),
        save_strategy="no",
        logging_steps=max(1, steps_per_epoch // 4),
        report_to="none",
        seed=seed,
        loss=loss_name,
        temperature=temperature,
        max_query_length=args.max_query_length,
        max_code_length=args.max_code_length,
        remove_unused_columns=False,
        disable_tqdm=True,
        use_cpu=True,
    )
    loss = build_loss(targs, estimator, scale=model.scale)
    keep = KeepBest(model)
    trainer = SoftInfoNCETrainer(
        model,
        targs,
        train_dataset=train,
        eval_dataset=valid,
        loss=loss,
        callbacks=[keep, *([estimator.callback()] if hasattr(estimator, "callback") else [])],
    )
    preflight(trainer, train)
    trainer.train()
    model.load_state_dict(keep.weights)
    stats: dict[str, list[float]] = {}
    for row in trainer.state.log_history:
        if "loss" in row:
            for key, value in row.items():
                if key not in ("loss", "learning_rate", "grad_norm", "epoch", "step"):
                    stats.setdefault(key, []).append(float(value))
    info = {
        "best_epoch": keep.best_epoch,
        "valid_mrr": keep.best,
        "valid_curve": keep.history,
        "steps": len(keep.step_seconds),
        "train_pairs": len(train),
        "temperature": getattr(loss, "temperature", None),
        "loss_config": {
            k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
            for k, v in loss.get_config_dict().items()
        },
        "step_seconds": float(np.median(keep.step_seconds)) if keep.step_seconds else None,
        "weights": {k: float(np.mean(v)) for k, v in stats.items()},
    }
    return model, info


def train_st(spec: str, train, valid, seed: int, args):
    """A peer (``peers.ST_LOSSES``) through sentence-transformers' trainer on the same rows and
    negatives (its own shuffle), validated on the same schedule as ``train_one``."""
    steps_per_epoch = len(train) // args.batch_size
    negatives = train["negatives"] if "negatives" in train.column_names else None
    targs = {
        "output_dir": "/tmp/hard_negatives",
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.epochs,
        "warmup_steps": max(1, int(steps_per_epoch * args.epochs) // 10),
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": max(1, steps_per_epoch // 4),
        "report_to": "none",
        "seed": seed,
        "disable_tqdm": True,
        "use_cpu": True,
    }
    columns = st_columns(train["query"], train["code"], negatives)
    every = max(1, steps_per_epoch // args.evals_per_epoch)
    model, keep = train_peer(spec, columns, valid, seed, args, targs, every=every)
    info = {
        "best_epoch": keep.best_epoch,
        "valid_mrr": keep.best,
        "valid_curve": keep.curve,
        "steps": len(keep.step_seconds),
        "train_pairs": len(train),
        "step_seconds": float(np.median(keep.step_seconds)) if keep.step_seconds else None,
    }
    return model, info


def save(results: dict, out: Path) -> None:
    save_results(results, out, summarise)


def merge_runs(results: dict, other: dict, name: str) -> None:
    """Add ``other``'s runs (exp -> negatives -> run -> seed) to ``results``; a run of the same
    seed in both must be the same run (equal reciprocal ranks), else it is an error."""
    for exp, by_neg in other.get("runs", {}).items():
        for neg, runs in by_neg.items():
            for spec, per_seed in runs.items():
                mine = results["runs"].setdefault(exp, {}).setdefault(neg, {}).setdefault(spec, {})
                for seed, entry in per_seed.items():
                    if seed in mine and mine[seed]["rr"] != entry["rr"]:
                        raise SystemExit(
                            f"--merge {name}: {exp}/{neg}/{spec} seed {seed} differs from the "
                            "run already in --output"
                        )
                    mine[seed] = entry
    for key, seconds in other.get("mining_seconds", {}).items():
        results.setdefault("mining_seconds", {}).setdefault(key, seconds)
    if "settings" in other:
        results.setdefault("merged_settings", {})[name] = other["settings"]


def run_grid(args, results: dict, out: Path) -> None:
    specs, negatives = parse_runs(args.runs), parse_negatives(args.negatives)
    data = load_data(args)
    exps = [e.strip() for e in args.experiments.split(",") if e.strip()]
    unknown = [e for e in exps if e not in data]
    if unknown:  # load_data is swapped out in the tests
        raise SystemExit(f"--experiments: unknown {unknown}, expected some of {list(data)}")
    mined: dict[tuple[str, str], object] = {}
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: partial grids stay paired
        for exp in exps:
            train, valid, test = data[exp]
            for neg, method, negative_spec in negatives:
                recorded = results["runs"].get(exp, {}).get(neg, {})
                todo = [
                    s
                    for s in specs
                    if str(seed) not in recorded.get(s, {})
                    and not (s == "zero-shot" and (neg != "none" or recorded.get(s)))
                ]
                if any("trained" in s for s in todo) and "infonce" not in todo:
                    todo.insert(0, "infonce")  # retrained (same seed and negatives) as estimator
                if not todo:
                    continue
                train_k = trim(train, args)
                if negative_spec is not None:
                    if (exp, method) not in mined:  # the deepest k; shallower ones take a prefix
                        t0 = time.time()
                        deepest = max(s.k for _, m, s in negatives if m == method and s is not None)
                        mined[exp, method] = mine(train, replace(negative_spec, k=deepest), args)
                        results.setdefault("mining_seconds", {})[f"{exp}/{method}"] = (
                            time.time() - t0
                        )
                    train_k = trim(take_negatives(mined[exp, method], negative_spec.k), args)
                infonce_model = None
                for spec in todo:
                    t0 = time.time()
                    info: dict = {}
                    if spec == "zero-shot":
                        model = load_model()
                    elif spec in ST_LOSSES:
                        model, info = train_st(spec, train_k, valid, seed, args)
                    else:
                        model, info = train_one(spec, train_k, valid, seed, args, infonce_model)
                    if spec == "infonce":
                        infonce_model = model
                        if str(seed) in recorded.get(spec, {}):
                            continue  # only retrained for soft:trained
                    entry = quality.test_entry(model, test, args)
                    entry |= {"seconds": time.time() - t0, **info}
                    results["runs"].setdefault(exp, {}).setdefault(neg, {}).setdefault(spec, {})[
                        str(seed)
                    ] = entry
                    logger.info(
                        "%s %s seed %d %-34s MRR %.4f (epoch %s, %.0f s, %s s/step)",
                        exp,
                        neg,
                        seed,
                        spec,
                        entry["mrr"],
                        info.get("best_epoch"),
                        entry["seconds"],
                        info.get("step_seconds"),
                    )
                    save(results, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        default=RUNS,
        help="Comma-separated: zero-shot, infonce, "
        "LOSS:ESTIMATOR (e.g. soft:bm25, false_negative_cancellation:bm25).",
    )
    parser.add_argument("--negatives", default=NEGATIVES, help="none, bm25:K, dense:K.")
    parser.add_argument("--experiments", default="ruby,stdlib->cosqa")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--evals-per-epoch", type=int, default=1)
    parser.add_argument("--max-train-pairs", type=int, default=None)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--effective-negatives",
        type=float,
        default=8.0,
        help="+cal runs: t giving the softmax over negatives this many.",
    )
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-query-length", type=int, default=32)
    parser.add_argument("--max-code-length", type=int, default=64)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/hard_negatives.json"))
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="Torch threads (two 1-thread grids into two --output files beat one 2-thread grid).",
    )
    parser.add_argument(
        "--merge",
        nargs="*",
        default=[],
        metavar="FILE",
        help="Results files of other grids to add to --output's, then report (no training).",
    )
    parser.add_argument("--report-only", action="store_true", help="Print and plot saved results.")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if args.merge:
        results = json.loads(out.read_text()) if out.exists() else {"runs": {}}
        for other in args.merge:
            merge_runs(results, json.loads(Path(other).read_text()), other)
        save(results, out)
    if args.report_only or args.merge:  # merging trains nothing
        report(json.loads(out.read_text()), out.with_suffix(".png"))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    results = quality.open_results(out, args)
    run_grid(args, results, out)
    results["settings"]["load_average_end"] = os.getloadavg()
    save(results, out)
    report(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
