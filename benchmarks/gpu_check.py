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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from gpu_check_models import (  # noqa: E402
    GPU,
    MODELS,
    ROOT,
    TINY,
    Sizes,
    minilm_path,
    recipe,
    synthetic_pairs,
    write_codesearchnet,
)
from gpu_check_steps import Group, Variant, run_group  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LOSSES = ("infonce", "soft:uniform", "soft:bm25", "soft:simcse", "soft:trained")
#: one recipe per family for the accelerate launches: every estimator is used once
LAUNCH_RECIPES = {
    "codebert": "soft_bm25",
    "unixcoder": "soft_simcse",
    "graphcodebert": "soft_trained",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the default on CPU)")
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
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
    precisions = (args.precisions or ("bf16,fp16" if device.type == "cuda" else "fp32")).split(",")
    losses = args.losses.split(",")
    fp16_losses = (
        losses
        if args.fp16_losses == "all"
        else [x for x in losses if x in args.fp16_losses.split(",")]
    )
    minis = {"off": None, "on": sizes.mini_batch}
    groups = []
    for k in [0] + ([args.hard_negatives] if args.hard_negatives else []):
        for precision in precisions:
            chosen = fp16_losses if precision == "fp16" else losses
            for gc in args.gradcache.split(","):
                for model in args.models.split(","):
                    if model and chosen:
                        groups.append(
                            Group(
                                model,
                                precision,
                                minis[gc],
                                k,
                                [Variant(*(x.split(":") + [""])[:2]) for x in chosen],
                            )
                        )
    return groups


def launch(
    family: str,
    work: Path,
    device: torch.device,
    sizes: Sizes,
    steps: int,
    models: dict[str, str],
    data_dir: Path,
    timeout: float,
) -> dict[str, Any]:
    """``accelerate launch --num_processes 1 examples/run_codesearch.py <recipe> --max_steps N``."""
    name = f"{family}_python_{LAUNCH_RECIPES[family]}"
    config, out = recipe(family, LAUNCH_RECIPES[family]), work / f"launch-{family}"
    q, c = sizes.lengths(family)
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which(
        "accelerate"
    )
    head = (
        [accelerate, "launch"]
        if accelerate
        else [sys.executable, "-m", "accelerate.commands.launch"]
    )
    options: dict[str, Any] = {
        "--model_name_or_path": models[family],
        "--allow_download": "false",
        "--data_dir": data_dir,
        "--output_dir": out,
        "--max_steps": steps,
        "--per_device_train_batch_size": sizes.batch,
        "--per_device_eval_batch_size": 2 * sizes.batch,
        "--eval_strategy": "steps",
        "--eval_steps": steps,
        "--save_strategy": "steps",
        "--save_steps": steps,
        "--logging_steps": 1,
        "--dataloader_num_workers": 0,
        "--disable_tqdm": "true",
        "--max_query_length": q,
        "--max_code_length": c,
        "--report_to": "none",
    }
    if config.get("input_layout") == "graphcodebert":
        options["--data_flow_length"] = sizes.data_flow_length or config["data_flow_length"]
    if config.get("estimator") == "simcse":
        options["--estimator_model"] = minilm_path()
    elif config.get("estimator") == "trained":
        options["--estimator_model"] = models[family]
    if device.type == "cuda":
        options["--bf16"] = "true"
    precision = "bf16" if device.type == "cuda" else "no"
    cmd = [*head, "--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no"]
    cmd += [
        "--mixed_precision",
        precision,
        "examples/run_codesearch.py",
        f"examples/configs/{name}.json",
    ]
    cmd += [str(x) for item in options.items() for x in item]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        rc, tail = done.returncode, (done.stdout + done.stderr)[-1500:]
    except subprocess.TimeoutExpired as err:
        rc, tail = None, f"timed out after {timeout:.0f} s: {str(err.stdout)[-500:]}"
    shown = "accelerate launch " + " ".join(cmd[len(head) :])
    result: dict[str, Any] = {
        "recipe": name,
        "command": shown,
        "rc": rc,
        "seconds": round(time.perf_counter() - started, 1),
    }
    results = out / "results.json"
    runs = json.loads(results.read_text())["runs"] if rc == 0 and results.is_file() else {}
    trained = [r for n, r in runs.items() if n != "zero-shot"]
    result["ok"] = bool(trained) and all(
        r.get("train_loss") is not None and r["train_loss"] == r["train_loss"] for r in trained
    )
    result["test_mrr"] = {n: r["test"]["test"]["mrr"] for n, r in runs.items()}
    if not result["ok"]:
        result["tail"] = tail
    return result


def print_table(report: dict[str, Any]) -> None:
    cols = (
        "model",
        "prec",
        "gc",
        "K",
        "loss",
        "steps/s",
        "ratio",
        "peak MB",
        "syncs",
        "loss diff",
        "grad rel",
    )
    print(("{:<14}{:<6}{:<4}{:>3} {:<14}" + "{:>9}" * 6).format(*cols))
    for r in report["configs"]:
        if "error" in r:
            print(f"{r['model']:<14}{r['precision']:<6}  ERROR {r['loss']}: {r['error'][:80]}")
            continue
        flag = lambda ok: "" if ok else "!"  # noqa: E731
        print(
            ("{:<14}{:<6}{:<4}{:>3} {:<14}" + "{:>9}" * 6).format(
                r["model"],
                r["precision"],
                "on" if r["mini_batch_size"] else "off",
                r["hard_negatives"],
                r["loss"],
                f"{r['steps_per_s']:.2f}",
                f"{r['ratio_vs_infonce']:.3f}" if r["ratio_vs_infonce"] else "-",
                f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] is not None else "-",
                f"{r['host_syncs_train_step']:.0f}/{r['host_syncs_step']:.0f}",
                f"{r['loss_abs_diff']:.1e}{flag(r['loss_ok'])}",
                f"{r['grad_rel_diff']:.1e}{flag(r['grad_ok'])}",
            )
        )
    for s in report["skipped"]:
        print(f"skipped: {s['what']}: {s['why']}")
    for r in report["launches"]:
        print(
            f"launch {r['recipe']}: {'ok' if r['ok'] else 'FAILED'} ({r['seconds']} s)"
            + ("" if r["ok"] else f"\n{r.get('tail', '')}")
        )


def main(argv: list[str] | None = None) -> int:
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
        print("No CUDA device: the CPU smoke run (tiny sizes, float32; GPU figures need a GPU).")
    else:
        print(f"CUDA: {torch.cuda.get_device_name(device)}")
    report: dict[str, Any] = {
        "device": device_info(device),
        "sizes": vars(sizes),
        "rounds": rounds,
        "steps_per_round": steps,
        "configs": [],
        "skipped": [],
        "launches": [],
    }
    pairs = synthetic_pairs(sizes.pairs)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        from gpu_check_steps import Context

        context = Context(device, sizes, pairs, work, rounds, steps)
        launch_reserve = 60.0 * len(LAUNCH_RECIPES) if do_launch else 0.0
        for group in plan_groups(args, device, sizes):
            elapsed = time.perf_counter() - started
            if budget is not None and elapsed > budget - launch_reserve:
                report["skipped"].append(
                    {"what": group.name, "why": f"time budget ({elapsed:.0f} s)"}
                )
                continue
            if group.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
                report["skipped"].append({"what": group.name, "why": "no bf16 on this GPU"})
                continue
            configs, skipped = run_group(context, group)
            report["configs"] += configs
            report["skipped"] += skipped
            print(f"[{time.perf_counter() - started:6.1f} s] {group.name}: {len(configs)} configs")
        if do_launch:
            steps_n = args.launch_steps or (10 if cuda and not args.tiny else 2)
            data = write_codesearchnet(work / "csn", pairs, n_eval=min(64, len(pairs) // 4))
            models = {f: context.saved_model(f) for f in LAUNCH_RECIPES}
            for family in LAUNCH_RECIPES:
                remaining = (
                    600.0 if budget is None else budget + 20 - (time.perf_counter() - started)
                )
                report["launches"].append(
                    launch(
                        family,
                        work,
                        device,
                        sizes,
                        steps_n,
                        models,
                        data,
                        timeout=max(remaining, 30.0),
                    )
                )
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
    raise SystemExit(main())
