"""The ``accelerate launch`` part of ``gpu_check.py``: ``examples/run_codesearch.py`` with a recipe
of each family, on a random model and a synthetic CodeSearchNet folder, for a few steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from gpu_check_models import ROOT, Sizes, minilm_path, recipe

#: one recipe per family for the accelerate launches: every estimator is used once
LAUNCH_RECIPES = {
    "codebert": "soft_bm25",
    "unixcoder": "soft_simcse",
    "graphcodebert": "soft_trained",
}


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
    precision = "no"
    if device.type == "cuda":  # bf16 where the GPU has it, else fp16 with a grad scaler
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        options[f"--{precision}"] = "true"
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
