"""Topic-clustered batches: what they cost and what they put in a batch (issue 18, part 1).

Three measurements, written to ``benchmarks/results/sampling.json``:

* **Clustering cost**: TF-IDF + truncated SVD + k-means (``cluster_queries``) of ``--queries``
  docstrings mined from ``--max-files`` files of site-packages (``mine_pairs``), k = queries // 32,
  wall and CPU seconds, with the torch/BLAS threads set by ``--threads``.
* **Near-duplicate share** (``near_duplicate_share``): the share of in-batch negatives whose
  docstring (or code) has token Jaccard >= 0.5 with the row's own, random batches vs batches
  from one / two clusters, on the first 1,000 CodeSearchNet-Ruby pairs and on the mined
  site-packages pairs (vendored copies left in), batch ``--batch-size``, 3 epochs.
* **Step cost** (``--steps`` > 0): offline MiniLM training steps (cosine x 20, InfoNCE, query 32 /
  code 64 tokens) on random and on clustered batches of Ruby, interleaved; the ratio of medians.

    python benchmarks/sampling.py --threads 1 --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import quality  # noqa: E402
import torch  # noqa: E402

from soft_infonce.clustering import cluster_queries, near_duplicate_share  # noqa: E402
from soft_infonce.sampling import ClusteredBatchSampler  # noqa: E402

ROOT = quality.ROOT


def site_packages_pairs(limit: int, max_files: int) -> tuple[list[str], list[str], float]:
    """Up to ``limit`` docstring/function pairs mined from the first ``max_files`` files of
    site-packages, and the mining time."""
    from soft_infonce.codesearch.data import mine_pairs

    t0 = time.perf_counter()
    purelib = sysconfig.get_paths()["purelib"]
    mined = mine_pairs(purelib, seed=0, max_files=max_files, show_progress=False)
    queries, codes = [], []
    for split in ("train", "validation", "test"):
        if split in mined:
            queries += mined[split]["query"]
            codes += mined[split]["code"]
    return queries[:limit], codes[:limit], time.perf_counter() - t0


def shares(queries, codes, batch_size: int, n_clusters: int, epochs: int = 3) -> dict:
    """Near-duplicate shares of random and of clustered (1 or 2 clusters) batches."""
    n = len(queries) // batch_size * batch_size
    out: dict = {"pairs": len(queries), "batch_size": batch_size, "clusters": n_clusters}
    rng = np.random.default_rng(0)
    random = [
        b
        for _ in range(epochs)
        for b in rng.permutation(len(queries))[:n].reshape(-1, batch_size).tolist()
    ]
    out["random"] = near_duplicate_share(queries, codes, random)
    labels = cluster_queries(queries, n_clusters, seed=0)
    for per_batch in (1, 2):
        sampler = ClusteredBatchSampler(
            labels, batch_size, clusters_per_batch=per_batch, drop_last=True
        )
        batches = [b for e in range(epochs) for b in sampler.batches(e)]
        out[f"clustered_{per_batch}"] = near_duplicate_share(queries, codes, batches)
    return out


def step_times(steps: int, batch_size: int) -> dict:
    """Median seconds of InfoNCE steps on random vs clustered Ruby batches, interleaved (the
    sampler's own cost is the index lists, made once an epoch)."""
    from soft_infonce import InfoNCELoss
    from soft_infonce.integrations.hf.collator import BiEncoderCollator

    ruby, _ = quality.experiment("ruby")
    queries, codes = list(ruby["query"]), list(ruby["code"])
    labels = cluster_queries(queries, len(queries) // batch_size, seed=0)
    clustered = ClusteredBatchSampler(labels, batch_size, drop_last=True).batches(0)
    clustered = [b for b in clustered if len(b) == batch_size]
    rng = np.random.default_rng(0)
    random = rng.permutation(len(queries))[: len(clustered) * batch_size].reshape(-1, batch_size)
    model = quality.load_model().train()
    collator = BiEncoderCollator(model.tokenizer, 32, 64)
    loss_fn = InfoNCELoss(scale=model.scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    times: dict[str, list[float]] = {"random": [], "clustered": []}
    tokens: dict[str, list[int]] = {"random": [], "clustered": []}  # padded input ids
    for k in range(steps + 1):  # the first pair of steps warms up and is not counted
        for kind, batches in (("random", random.tolist()), ("clustered", clustered)):
            batch = batches[k % len(batches)]
            t0 = time.perf_counter()  # collation + forward + backward + update
            rows = collator([{"query": queries[i], "code": codes[i]} for i in batch])
            q, c = model(**{k: v for k, v in rows.items() if isinstance(v, torch.Tensor)})
            loss = loss_fn(q, c)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if k:
                times[kind].append(time.perf_counter() - t0)
                tokens[kind].append(sum(v.numel() for n, v in rows.items() if "input_ids" in n))
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "steps": steps,
        "median_seconds": med,
        "ratio": med["clustered"] / med["random"],
        "mean_padded_tokens": {k: float(np.mean(v)) for k, v in tokens.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=10000)
    p.add_argument("--max-files", type=int, default=2500, help="site-packages files mined.")
    p.add_argument("--pairs-cache", help="JSON file keeping the mined pairs between runs.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=0, help="Timed steps of each kind (0: skip).")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/sampling.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["settings"] = vars(args) | {"load_average_start": os.getloadavg()}
    cache = Path(args.pairs_cache) if args.pairs_cache else None
    if cache is not None and cache.exists():  # mined before: skip the minutes of mining
        queries, codes, mining = json.loads(cache.read_text())
    else:
        queries, codes, mining = site_packages_pairs(args.queries, args.max_files)
        if cache is not None:
            cache.write_text(json.dumps([queries, codes, mining]))
    t0, c0 = time.perf_counter(), time.process_time()
    k = max(1, len(queries) // 32)
    cluster_queries(queries, k, seed=0)
    results["clustering"] = {
        "queries": len(queries),
        "clusters": k,
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "mining_seconds": mining,
    }
    print("clustering", results["clustering"])
    ruby, _ = quality.experiment("ruby")
    results["near_duplicates"] = {
        "ruby": shares(
            list(ruby["query"]), list(ruby["code"]), args.batch_size, 1000 // args.batch_size
        ),
        "site-packages": shares(queries, codes, args.batch_size, len(queries) // args.batch_size),
    }
    for name, row in results["near_duplicates"].items():
        for kind in ("random", "clustered_1", "clustered_2"):
            s = row[kind]
            print(f"{name:<14}{kind:<13} query {s['query_share']:.4f}  code {s['code_share']:.4f}")
    if args.steps:
        results["step_cost"] = step_times(args.steps, args.batch_size)
        print("step cost", results["step_cost"])
    results["settings"]["load_average_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
