"""Real duplication, random vs clustered batches: does Soft-InfoNCE pay, and against which peer?

Issue 18, part 3. Where ``false_negatives.py`` dials copies it made itself, this run trains on
code with the duplication it already has.

Data. Training pairs are mined (``mine_pairs``, docstring summary -> function, exact code
duplicates dropped as always) from a code base full of vendored copies: the installed ``pip``
and ``setuptools`` (with their ``_vendor`` trees and ``setuptools/_distutils``),
``pkg_resources``, and the standalone packages they vendor where installed (``packaging``,
``requests``, ``urllib3``, ``idna``, ``certifi``, ``rich``, ``pygments``, ``platformdirs``, ...),
plus the standard library's ``distutils``. The mined train split (whole files) is shuffled
(seed 0) and its first ``--pairs`` rows are the training set; the first ``--valid-pairs`` rows
of the mined valid split (other files) pick the epoch. Tests, never tuned on: CoSQA's 500 real
web queries against its 6,267-code base, and all 1,400 CodeSearchNet-Ruby pairs.

Likely false negatives: two training pairs are a near-duplicate group when their docstrings or
their codes have token Jaccard >= 0.5 (connected components, as ``soft-infonce inspect``); the
run records their share of in-batch negatives and, for Soft-InfoNCE, the weight they keep.

Batches: ``random`` (one cluster: a seeded shuffle) or ``clustered`` (TF-IDF k-means of the
training docstrings, ``topic_labels``, one cluster per batch, TAS-Balanced style). Every loss of
a (sampling, seed) trains on the same batches in the same order (digest recorded).

Losses (as in ``false_negatives.py``): ``infonce``, ``soft:bm25`` (the paper's preset),
``soft:pa-guide`` (positive-aware weights from the frozen MiniLM's query-code scores),
``gist`` (``GISTEmbedLoss`` as shipped, guide = the same frozen MiniLM) and ``mnrl``, the last two
through sentence-transformers' own trainer; ``oracle`` masks the Jaccard groups; ``zero-shot``.
Reported per (sampling, test set): test MRR mean/std over seeds, paired sign-flip tests on
per-query reciprocal ranks (seed-averaged) against InfoNCE and GIST, and clustered vs random per
loss. Results: ``benchmarks/results/real_duplicates_<sampling>.json`` after every run (a rerun
skips finished runs); ``--report FILES`` merges them into ``real_duplicates.json`` + ``.png``.

The grid as run (2026-12-07, 2 h of the two cores; a step took 3.5 s for InfoNCE, 4.3-4.6 s for
``soft:pa-guide`` and 6-10 s for GIST, and a run 7-15 minutes, 3-5 of them for the tests)::

    L=infonce,soft:pa-guide,gist,soft:bm25
    nohup python benchmarks/real_duplicates.py --sampling random --losses $L > \
        benchmarks/results/real_duplicates_random.log 2>&1 &
    nohup python benchmarks/real_duplicates.py --sampling clustered --losses $L > \
        benchmarks/results/real_duplicates_clustered.log 2>&1 &
    python benchmarks/real_duplicates.py --losses zero-shot --seeds 0 \
        --output benchmarks/results/real_duplicates_zeroshot.json  # its own file: one writer each
    python benchmarks/real_duplicates.py --report benchmarks/results/real_duplicates_{random,\
clustered,zeroshot}.json
    python benchmarks/real_duplicates.py --pairs 64 --valid-pairs 32 --epochs 1 --seeds 0 \
        --losses infonce,gist --tests ruby --output /tmp/rd.json      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import sysconfig
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import false_negatives as fn  # noqa: E402
import numpy as np  # noqa: E402
import quality  # noqa: E402
import torch  # noqa: E402
from peers import ST_LOSSES, KeepBest  # noqa: E402
from real_duplicates_report import report, save  # noqa: E402

from soft_infonce.sampling import ClusteredBatchSampler, same_group_share, topic_labels  # noqa: E402

ROOT = quality.ROOT
LOSSES = ("infonce", "soft:bm25", "soft:pa-guide", "gist", "mnrl", "oracle", "zero-shot")
#: site-packages folders with vendored copies of one another, and the originals they copy
VENDORED = (
    "pip",
    "setuptools",
    "pkg_resources",
    "packaging",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "rich",
    "pygments",
    "platformdirs",
    "tomli",
    "distlib",
    "msgpack",
    "more_itertools",
    "zipp",
    "importlib_metadata",
    "typing_extensions.py",
    "wheel",
    "jaraco",
)
logger = logging.getLogger("real_duplicates")


def corpus_paths() -> list[str]:
    """The vendored code base: VENDORED folders of site-packages that exist, and distutils."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    paths = [str(purelib / name) for name in VENDORED if (purelib / name).exists()]
    stdlib_distutils = Path(sysconfig.get_paths()["stdlib"]) / "distutils"
    return paths + ([str(stdlib_distutils)] if stdlib_distutils.is_dir() else [])


def duplicate_groups(queries: list[str], codes: list[str], threshold: float = 0.5) -> list[int]:
    """Near-duplicate groups, as ``soft-infonce inspect`` forms them."""
    from soft_infonce.codesearch.data.report import near_duplicate_groups

    return near_duplicate_groups(queries, codes, threshold).tolist()


def load_data(args) -> dict:
    """train (queries, codes, groups), valid and the test RetrievalSets named in ``--tests``."""
    from soft_infonce.codesearch import data as D
    from soft_infonce.integrations.hf.retrieval import RetrievalSet, pairs_to_retrieval_set

    paths = corpus_paths()
    mined = D.mine_pairs(paths, seed=0, valid_fraction=0.1, test_fraction=0.0, show_progress=False)
    train = list(zip(mined["train"]["query"], mined["train"]["code"]))
    random.Random(0).shuffle(train)
    if len(train) < args.pairs or len(mined["valid"]) < args.valid_pairs:
        raise SystemExit(f"mined {len(train)} train / {len(mined['valid'])} valid pairs: too few")
    queries, codes = (list(x) for x in zip(*train[: args.pairs]))
    valid = mined["valid"].select(range(args.valid_pairs))
    tests = {}
    if "cosqa" in args.tests:
        tests["cosqa"] = D.load_cosqa_retrieval(
            quality.DATA / "cosqa" / "cosqa-retrieval-dev-500.json",
            quality.DATA / "cosqa" / "code_idx_map.txt",
        )
    if "ruby" in args.tests:
        ruby = D.load_code_text(quality.DATA / "csn-ruby" / "valid.jsonl")
        tests["ruby"] = pairs_to_retrieval_set(ruby, name="ruby")
    return {
        "train": (queries, codes, duplicate_groups(queries, codes)),
        "valid": RetrievalSet(
            list(valid["query"]), list(valid["code"]), list(range(len(valid))), name="valid"
        ),
        "tests": tests,
        "corpus": {"paths": paths, "mined": {s: len(mined[s]) for s in mined}},
    }


class RecordingSampler(fn.Recording, ClusteredBatchSampler):
    """Random (all labels 0) or clustered batches that hash what they yield."""


def make_sampler(kind: str, queries: list[str], seed: int, args) -> RecordingSampler:
    if kind == "random":
        labels = np.zeros(len(queries), dtype=np.int64)
    else:  # one TF-IDF k-means clustering, fixed across seeds (the batches still vary by seed)
        labels = topic_labels(queries, args.batch_size, seed=0)
    return RecordingSampler(labels, args.batch_size, seed=seed).start()


def run_grid(args, results: dict, out: Path) -> None:
    specs = [s.strip() for s in args.losses.split(",") if s.strip()]
    unknown = [s for s in specs if s not in LOSSES]
    if unknown:
        raise SystemExit(f"--losses: unknown {unknown}, expected some of {LOSSES}")
    data = load_data(args)
    queries, codes, groups = data["train"]
    sizes = np.bincount(groups)
    results["data"] = {
        "train": len(queries),
        "valid": len(data["valid"].queries),
        "tests": {k: len(t.queries) for k, t in data["tests"].items()},
        "corpus": data["corpus"],
        "rows_in_duplicate_groups": int((sizes[groups] > 1).sum()),
        "duplicate_groups": int((sizes > 1).sum()),
    }
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: partial grids stay paired
        for spec in specs:
            if str(seed) in results["runs"].get(args.sampling, {}).get(spec, {}):
                continue
            sampler = make_sampler(args.sampling, queries, seed, args)
            t0 = time.time()
            if spec == "zero-shot":
                model, info = fn.load_model(), {}
                keep = KeepBest(model, lambda m=model: m, data["valid"], args)
                keep.on_epoch_end(None, types.SimpleNamespace(epoch=0), None)
                keep.step_seconds = [0.0]
            else:
                train = fn.train_st if spec in ST_LOSSES else fn.train_ours
                every = max(1, len(sampler) // args.evals_per_epoch)
                model, keep, info = train(spec, data, sampler, seed, args, every)
            entry = {name: quality.test_entry(model, t, args) for name, t in data["tests"].items()}
            entry |= info | fn.run_fields(keep, sampler, t0)
            entry["false_negative_share"] = [same_group_share(groups, sampler.batches(0))]
            results["runs"].setdefault(args.sampling, {}).setdefault(spec, {})[str(seed)] = entry
            logger.info(
                "%s seed %d %-14s %s (best epoch %s, %.0f s, %.2f s/step)",
                args.sampling,
                seed,
                spec,
                " ".join(f"{k} {entry[k]['mrr']:.4f}" for k in data["tests"]),
                keep.best_epoch,
                entry["seconds"],
                entry["step_seconds"],
            )
            save(results, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sampling", choices=("random", "clustered"), default="random")
    p.add_argument("--losses", default="infonce,soft:bm25,soft:pa-guide,gist,mnrl,zero-shot")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--tests", default="cosqa,ruby")
    p.add_argument("--pairs", type=int, default=2048, help="Training pairs.")
    p.add_argument("--valid-pairs", type=int, default=300)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--evals-per-epoch", type=int, default=2, help="Validation points an epoch.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-query-length", type=int, default=32)
    p.add_argument("--max-code-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default=None, help="results/real_duplicates_<sampling>.json")
    p.add_argument("--report", nargs="*", default=None, metavar="FILE", help="Merge and report.")
    args = p.parse_args(argv)
    if args.report is not None:
        merged: dict = {"runs": {}, "parts": {}}
        for name in args.report:
            part = json.loads(Path(name).read_text())
            for sampling, by_loss in part["runs"].items():  # zero-shot may come in its own file
                merged["runs"].setdefault(sampling, {}).update(by_loss)
            merged["parts"][Path(name).name] = {"settings": part["settings"], "data": part["data"]}
        out = ROOT / "benchmarks/results/real_duplicates.json"
        save(merged, out)
        report(merged, out.with_suffix(".png"))
        return
    out = Path(args.output or ROOT / f"benchmarks/results/real_duplicates_{args.sampling}.json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    results = quality.open_results(out, args)
    run_grid(args, results, out)
    save(results, out)


if __name__ == "__main__":
    main()
