"""GPU readiness: a few training steps of every recipe family through the CUDA path, checked.

For the offline all-MiniLM-L6-v2 bi-encoder and a random small model of each recipe family
(CodeBERT: RoBERTa layout, pooler; UniXcoder: ``<encoder-only>`` layout, mean pooling;
GraphCodeBERT: data flow; see ``gpu_check_models.py``), ``SoftInfoNCETrainer`` trains in bf16
(and fp16 with a grad scaler) with InfoNCE and Soft-InfoNCE under each estimator (caches filled
with ``precompute``), gradient caching off and on, and ``--hard-negatives K`` extra negatives
per row. Each group (model, precision, gradient caching, K) interleaves its losses round by
round, so the Soft-InfoNCE / InfoNCE step-time ratio compares steps of the same moments.

Per configuration: steps/s, the ratio, peak GPU memory, host syncs per step (inside
``training_step``, and the whole step with the optimizer; CUDA: ``torch.cuda.set_sync_debug_mode``;
CPU: a count of tensor -> Python conversions, a proxy), the loss on one batch against a float32
CPU copy of the same weights, and the gradients of a gradient-cached step against an ordinary
one (dropout off, same batch, same weights). Then ``accelerate launch --num_processes 1
examples/run_codesearch.py <recipe> --max_steps N`` for one recipe per family, on a random model
and a synthetic CodeSearchNet folder. On CPU it says so and uses tiny sizes (seconds).

Run (whole GPU run < 6 minutes; JSON to benchmarks/results/gpu_check.json)::

    python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --hard-negatives 3
    python benchmarks/gpu_check.py --tiny --models codebert --no-launch   # CPU smoke, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from gpu_check_launch import LAUNCH_RECIPES, launch  # noqa: E402
from gpu_check_models import (  # noqa: E402
    FAMILIES,
    GPU,
    MODELS,
    ROOT,
    TINY,
    Sizes,
    synthetic_pairs,
    write_codesearchnet,
)
from gpu_check_steps import Context, Group, Variant, run_group  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LOSSES = ("infonce", "soft:uniform", "soft:bm25", "soft:simcse", "soft:trained")
PRECISIONS = ("fp32", "bf16", "fp16")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the default on CPU)")
    p.add_argument(
        "--models", default=None, help=f"subset of {','.join(MODELS)} (CPU default: no minilm)"
    )
    p.add_argument("--losses", default=",".join(LOSSES), help=f"subset of {','.join(LOSSES)}")
    p.add_argument("--precisions", default=None, help="CUDA: bf16,fp16 (default); CPU: fp32 only")
    p.add_argument(
        "--fp16-losses",
        default="infonce,soft:bm25",
        help="losses also run in fp16 ('all' for every one)",
    )
    p.add_argument("--gradcache", default="off,on", help="off,on: mini_batch_size unset / set")
    p.add_argument(
        "--hard-negatives",
        type=int,
        default=0,
        metavar="K",
        help="also run every group with K hard negatives per row",
    )
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (GPU 3, CPU 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (GPU 4, CPU 1)")
    p.add_argument(
        "--launch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the accelerate launches (default: on CUDA only)",
    )
    p.add_argument("--launch-steps", type=int, default=None, help="--max_steps (GPU 10, CPU 2)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip remaining groups past this many seconds (CUDA default 330)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    return p.parse_args(argv)


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info |= {
            "name": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "memory_gb": torch.cuda.get_device_properties(device).total_memory / 2**30,
        }
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def plan_groups(args: argparse.Namespace, device: torch.device, sizes: Sizes) -> list[Group]:
    """Groups in order of importance (bf16 first), so a budget cut drops the least useful."""
    cuda = device.type == "cuda"
    precisions = (args.precisions or ("bf16,fp16" if cuda else "fp32")).split(",")
    default_models = ",".join(MODELS if cuda else FAMILIES)
    models = [m for m in (default_models if args.models is None else args.models).split(",") if m]
    losses = [x for x in args.losses.split(",") if x]
    for name, given, allowed in (("--models", models, MODELS), ("--losses", losses, LOSSES),
                                 ("--precisions", precisions, PRECISIONS)):  # fmt: skip
        if set(given) - set(allowed):
            raise SystemExit(
                f"{name} must be among {allowed}, got {sorted(set(given) - set(allowed))}"
            )
    if "fp16" in precisions and not cuda:
        raise SystemExit(
            "--precisions fp16 needs CUDA (a grad scaler); on the CPU use fp32 or bf16"
        )
    if args.fp16_losses != "all":
        fp16_losses = [x for x in losses if x in args.fp16_losses.split(",")]
    else:
        fp16_losses = losses
    minis = {"off": None, "on": sizes.mini_batch}
    groups = []
    for precision in precisions:
        chosen = [Variant(*(x.split(":") + [""])[:2]) for x in
                  (fp16_losses if precision == "fp16" else losses)]  # fmt: skip
        for k in [0] + ([args.hard_negatives] if args.hard_negatives else []):
            for gc in args.gradcache.split(","):
                groups += [Group(m, precision, minis[gc], k, chosen) for m in models if chosen]
    return groups


_ROW = "{:<14}{:<5}{:<4}{:>2} {:<13}" + "{:>9}" * 5 + "{:>10}" * 2
_HEAD = ("model", "prec", "gc", "K", "loss", "steps/s", "ratio", "peak MB", "step MB", "syncs",
         "loss diff", "grad rel")  # fmt: skip


def _cells(r: dict[str, Any]) -> tuple[str, ...]:
    def mb(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    return (
        r["model"], r["precision"], "on" if r["mini_batch_size"] else "off",
        str(r["hard_negatives"]), r["loss"], f"{r['steps_per_s']:.2f}",
        "-" if r["ratio_vs_infonce"] is None else f"{r['ratio_vs_infonce']:.3f}",
        mb(r["peak_memory_mb"]), mb(r["step_memory_mb"]),
        f"{r['host_syncs_train_step']:.0f}/{r['host_syncs_step']:.0f}",
        f"{r['loss_abs_diff']:.1e}" + ("" if r["loss_ok"] else "!"),
        f"{r['grad_rel_diff']:.1e}" + ("" if r["grad_ok"] else "!"),
    )  # fmt: skip


def print_table(report: dict[str, Any]) -> None:
    """One row per configuration ("!" marks a failed check), then skips and launches."""
    print(_ROW.format(*_HEAD))
    for r in report["configs"]:
        if "error" in r:
            print(f"{r['model']:<14}{r['precision']:<5} ERROR {r['loss']}: {r['error'][:200]}")
        else:
            print(_ROW.format(*_cells(r)))
    for s in report["skipped"]:
        print(f"skipped: {s['what']}: {s['why']}")
    for r in report["launches"]:
        status = "ok" if r["ok"] else f"FAILED\n{r.get('tail', '')}"
        print(f"launch {r['recipe']}: {r['seconds']} s, {status}")


def _group_error(group: Group, err: Exception) -> dict[str, Any]:
    return {"model": group.model, "precision": group.precision, "loss": "(group)",
            "mini_batch_size": group.mini_batch_size, "hard_negatives": group.hard_negatives,
            "error": f"{type(err).__name__}: {err}"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the checks; write the JSON and print the table. Returns 0 when all passed."""
    args = parse_args(argv)
    started = time.perf_counter()
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda: no CUDA device is available")
    device = torch.device("cuda" if cuda else "cpu")
    sizes = TINY if args.tiny or not cuda else GPU
    rounds = args.rounds or (3 if cuda and not args.tiny else 2)
    steps = args.steps or (4 if cuda and not args.tiny else 1)
    budget = args.budget_s if args.budget_s is not None else (330.0 if cuda else None)
    do_launch = cuda if args.launch is None else args.launch
    if not cuda:
        torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared machine
        print("No CUDA device: the CPU smoke run (tiny sizes; GPU figures need a GPU).")
    else:
        print(f"CUDA: {torch.cuda.get_device_name(device)}")
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: dict[str, Any] = {"device": device_info(device), "options": options,
                              "sizes": vars(sizes), "rounds": rounds, "steps_per_round": steps,
                              "configs": [], "skipped": [], "launches": []}  # fmt: skip
    pairs = synthetic_pairs(sizes.pairs)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        context = Context(device, sizes, pairs, Path(tmp), rounds, steps)
        reserve = 40.0 * len(LAUNCH_RECIPES) if do_launch else 0.0
        for group in plan_groups(args, device, sizes):
            elapsed = time.perf_counter() - started
            if budget is not None and elapsed > budget - reserve:
                report["skipped"].append({"what": group.name, "why": f"budget ({elapsed:.0f} s)"})
            elif group.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
                report["skipped"].append({"what": group.name, "why": "no bf16 on this GPU"})
            else:
                try:
                    configs, skipped = run_group(context, group)
                except Exception as err:  # keep the other groups and the JSON
                    configs, skipped = [_group_error(group, err)], []
                report["configs"] += configs
                report["skipped"] += skipped
                print(
                    f"[{time.perf_counter() - started:6.1f} s] {group.name}: {len(configs)} configs"
                )
        if do_launch:
            n = args.launch_steps or (10 if cuda and not args.tiny else 2)
            data = write_codesearchnet(Path(tmp) / "csn", pairs, n_eval=min(64, len(pairs) // 4))
            models = {f: context.saved_model(f) for f in LAUNCH_RECIPES}
            for family in LAUNCH_RECIPES:
                left = 600.0 if budget is None else budget + 20 - (time.perf_counter() - started)
                args_ = (family, Path(tmp), device, sizes, n, models, data, max(left, 30.0))
                try:
                    report["launches"].append(launch(*args_))
                except Exception as err:
                    report["launches"].append({"recipe": family, "ok": False, "seconds": 0,
                                               "tail": f"{type(err).__name__}: {err}"})  # fmt: skip
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    bad = [r for r in report["configs"] if "error" in r or not (r["loss_ok"] and r["grad_ok"])]
    report["all_checks_ok"] = not bad and all(r["ok"] for r in report["launches"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(
        f"\n{'all checks passed' if report['all_checks_ok'] else 'SOME CHECKS FAILED'}; "
        f"elapsed {report['elapsed_s']:.0f} s on {report['device']['name']}; {args.out}"
    )
    return 0 if report["all_checks_ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # one GPU: no DataParallel in the Trainer
    raise SystemExit(main())
