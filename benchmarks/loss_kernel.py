"""Time and peak memory of the Soft-InfoNCE loss kernel against a direct transcription of Eq. 3-4.

For ``N`` queries against ``N`` codes (scores ``20 * cosine``, estimator similarities
cosines at ``t = 0.1``), forward + backward of

* ``library``: :func:`soft_infonce.negative_weights` then :func:`soft_infonce.soft_infonce_loss`
  (cross-entropy on ``s + log w``, inputs scanned for NaN/inf: the public, checked API);
* ``module``: what :class:`soft_infonce.SoftInfoNCELoss` runs on the training path,
  ``loss_from_scores``: the sync-free kernels of :mod:`soft_infonce._kernels` (no value
  scans) plus the weight statistics it records as 0-d tensors;
* ``naive``: Eq. 4 then Eq. 3 as written (explicit ``exp``, weighted sum, ``log``), below.

Time: process CPU time (``time.process_time``; wall time is recorded too), median (and
minimum) over interleaved repeats (library, module, naive, ...), one thread by default (on a
shared machine a second thread mostly waits for the first, and CPU time is what other jobs
disturb least). Peak memory: the most
bytes held by tensors allocated during one call, replayed from the torch profiler's
allocation events (``profile_memory=True``), the inputs excluded. CPU, float32::

    python benchmarks/loss_kernel.py                       # N = 64 .. 8192, 1-3 minutes
    python benchmarks/loss_kernel.py --sizes 64,256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from soft_infonce import negative_weights, soft_infonce_loss
from soft_infonce.losses import SoftInfoNCELoss

RESULTS = Path(__file__).resolve().parent / "results"
ALPHA, BETA, TEMPERATURE, MIN_WEIGHT = 1.3, 0.7, 0.1, 0.1


def naive_soft_infonce(scores: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """Eq. 4 then Eq. 3 of the paper, transcribed: exp, normalise, weight, sum, log."""
    n, m = scores.shape
    positive = torch.eye(n, m, dtype=torch.bool)
    with torch.no_grad():  # Eq. 4: w_ij = (beta - alpha p_ij) / (beta - alpha/(M-1) sum_k p_ik)
        e = torch.exp(similarity / TEMPERATURE) * ~positive
        p = e / e.sum(dim=1, keepdim=True)
        w = (BETA - ALPHA * p) / (BETA - ALPHA / (m - 1) * p.sum(dim=1, keepdim=True))
        w = torch.where(positive, 1.0, w.clamp_min(MIN_WEIGHT))
    exp_scores = torch.exp(scores)  # Eq. 3: -log(e^s_ii / (e^s_ii + sum_j!=i w_ij e^s_ij))
    numerator = exp_scores.diagonal()
    denominator = numerator + (w * exp_scores * ~positive).sum(dim=1)
    return -torch.log(numerator / denominator).mean()


def library_soft_infonce(scores: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """The public, checked functional API (scans its inputs for NaN/inf)."""
    weights = negative_weights(similarity, ALPHA, BETA, TEMPERATURE, MIN_WEIGHT)
    return soft_infonce_loss(scores, weights)


_MODULE = SoftInfoNCELoss(alpha=ALPHA, beta=BETA, temperature=TEMPERATURE, min_weight=MIN_WEIGHT)


def module_soft_infonce(scores: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """The loss module's training path: the sync-free kernels of ``soft_infonce._kernels``
    (mask, Eq. 4, Eq. 3) plus the weight statistics it records, as 0-d tensors, every call."""
    labels = torch.arange(scores.shape[0], device=scores.device)
    return _MODULE.loss_from_scores(scores, similarity, labels)


def peak_allocated(fn: Callable[[], object]) -> int:
    """Peak bytes of the tensors allocated while ``fn`` runs (relative to its start).

    Replays the torch profiler's allocation events in time order: each op's
    ``self_cpu_memory_usage`` (its allocations minus its frees) and the ``[memory]`` frees
    between ops. Temporaries freed inside the op that made them are not seen.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.time_range.start, e.self_cpu_memory_usage)
        for e in prof.events()
        if e.self_cpu_memory_usage
    )
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


def machine() -> dict:
    """Where the figures were measured."""
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "gpu": None,
        "commit": commit(),
    }


def commit() -> str | None:
    """The checkout's commit (``+dirty`` when the library's files differ from it), or ``None``."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "soft_infonce"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty.strip() else "")


def inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, c, e = (
        torch.nn.functional.normalize(torch.randn(n, 64, generator=g), dim=1) for _ in range(3)
    )
    scores = (20.0 * q @ c.T).requires_grad_()  # (N, N), a leaf: the kernel alone is timed
    similarity = q @ e.T * 0.5 + q @ c.T * 0.5  # (N, N) cosine-like estimator scores
    return scores, similarity


def run_once(
    kernel: Callable, scores: torch.Tensor, similarity: torch.Tensor
) -> tuple[float, float]:
    """Forward + backward once: (process CPU seconds, wall seconds)."""
    scores.grad = None
    cpu, wall = time.process_time(), time.perf_counter()
    kernel(scores, similarity).backward()
    return time.process_time() - cpu, time.perf_counter() - wall


KERNELS = {
    "library": library_soft_infonce,
    "module": module_soft_infonce,
    "naive": naive_soft_infonce,
}


def measure(n: int, repeats: int) -> dict:
    """One row: times (interleaved), peak memory and agreement of the two kernels at ``N``."""
    scores, similarity = inputs(n)
    for kernel in KERNELS.values():  # warm-up
        run_once(kernel, scores, similarity)
    times: dict[str, list[float]] = {name: [] for name in KERNELS}  # CPU seconds
    walls: dict[str, list[float]] = {name: [] for name in KERNELS}
    for _ in range(repeats):
        for name, kernel in KERNELS.items():
            cpu, wall = run_once(kernel, scores, similarity)
            times[name].append(cpu)
            walls[name].append(wall)
    values, grads, peaks = {}, {}, {}
    for name, kernel in KERNELS.items():
        scores.grad = None
        loss = kernel(scores, similarity)
        loss.backward()
        values[name], grads[name] = loss.item(), scores.grad.clone()
        peaks[name] = peak_allocated(lambda k=kernel: k(scores, similarity).backward())
    diffs = {}
    for name in KERNELS:  # loss and gradient against the transcription, relative
        gap = (grads[name] - grads["naive"]).abs().max() / grads["naive"].abs().max()
        diffs[name] = max(abs(values[name] - values["naive"]) / abs(values["naive"]), gap.item())
    return {
        "n": n,
        "repeats": repeats,
        "max_relative_difference": max(diffs.values()),
        **{f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items()},
        **{f"{k}_min_ms": 1000 * min(v) for k, v in times.items()},
        **{f"{k}_ms_all": [round(1000 * t, 3) for t in v] for k, v in times.items()},
        **{f"{k}_wall_ms": 1000 * statistics.median(v) for k, v in walls.items()},
        **{f"{k}_wall_min_ms": 1000 * min(v) for k, v in walls.items()},
        **{f"{k}_peak_bytes": v for k, v in peaks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,128,256,512,1024,2048,4096,8192")
    parser.add_argument("--repeats", type=int, default=0, help="0: 40 below N=1024, fewer above")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "loss_kernel.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, info = [], machine()
    print(
        f"{'N':>6} {'library ms':>11} {'module ms':>10} {'naive ms':>9} {'naive/lib':>9} "
        f"{'(min)':>6} {'naive/mod':>9} {'(min)':>6} {'library MiB':>12} {'module MiB':>11} "
        f"{'naive MiB':>10} {'max rel diff':>12}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        repeats = args.repeats or (40 if n < 1024 else 15 if n < 4096 else 7 if n < 8192 else 4)
        row = measure(n, repeats)
        rows.append(row)
        print(
            f"{n:>6} {row['library_ms']:>11.2f} {row['module_ms']:>10.2f} {row['naive_ms']:>9.2f} "
            f"{row['naive_ms'] / row['library_ms']:>9.2f} "
            f"{row['naive_min_ms'] / row['library_min_ms']:>6.2f} "
            f"{row['naive_ms'] / row['module_ms']:>9.2f} "
            f"{row['naive_min_ms'] / row['module_min_ms']:>6.2f} "
            f"{row['library_peak_bytes'] / 2**20:>12.1f} {row['module_peak_bytes'] / 2**20:>11.1f} "
            f"{row['naive_peak_bytes'] / 2**20:>10.1f} {row['max_relative_difference']:>12.1e}"
        )
    info["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(
            {
                "benchmark": "loss_kernel",
                "machine": info,
                "rows": rows,
                "settings": {
                    "alpha": ALPHA,
                    "beta": BETA,
                    "temperature": TEMPERATURE,
                    "min_weight": MIN_WEIGHT,
                    "dtype": "float32",
                    "clock": "process CPU time (time.process_time); *_wall_ms: wall time",
                },
            },
            handle,
            indent=1,
        )
    plot(rows, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, style in (("library", "o-"), ("module", "^-"), ("naive", "s--")):
        left.plot(n, [r[f"{name}_ms"] for r in rows], style, label=name)
        right.plot(n, [r[f"{name}_peak_bytes"] / 2**20 for r in rows], style, label=name)
    for axis, label in ((left, "forward + backward, CPU ms (median)"), (right, "peak MiB")):
        axis.set(xscale="log", yscale="log", xlabel="N (queries = codes)", ylabel=label)
        axis.set_xticks(n, [str(x) for x in n], rotation=45)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    fig.suptitle("Soft-InfoNCE loss kernel (Eq. 3-4), CPU float32")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
