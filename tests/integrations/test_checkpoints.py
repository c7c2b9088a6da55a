"""integrations.hf.checkpoints: a checkpoint whose write was cut short is never resumed from."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from soft_infonce.integrations.hf.checkpoints import (
    checkpoint_problem,
    is_complete_checkpoint,
    last_complete_checkpoint,
)


def write_checkpoint(folder: Path, step: int) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.randn(64, 64)}, str(path / "model.safetensors"))
    torch.save({"state": torch.randn(64)}, path / "optimizer.pt")
    torch.save({"lr": 1.0}, path / "scheduler.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_whole_checkpoint_is_complete(tmp_path):
    path = write_checkpoint(tmp_path, 4)
    assert checkpoint_problem(path) is None and is_complete_checkpoint(path)
    assert last_complete_checkpoint(tmp_path) == path


def test_each_way_a_write_can_stop_short_is_caught(tmp_path):
    cases = {
        "state": lambda p: (p / "trainer_state.json").unlink(),
        "state_json": lambda p: truncate(p / "trainer_state.json"),
        "weights": lambda p: (p / "model.safetensors").unlink(),
        "weights_cut": lambda p: truncate(p / "model.safetensors", 0.9),
        "weights_header": lambda p: truncate(p / "model.safetensors", 0.0001),
        "optimizer_cut": lambda p: truncate(p / "optimizer.pt", 0.6),
    }
    reasons = {}
    for i, (name, damage) in enumerate(cases.items()):
        path = write_checkpoint(tmp_path / name, i + 1)
        damage(path)
        reasons[name] = checkpoint_problem(path)
        assert reasons[name] is not None, name
    assert "trainer_state.json" in reasons["state"]
    assert "no model weights" in reasons["weights"]
    assert "model.safetensors is truncated" in reasons["weights_cut"]
    assert "optimizer.pt is not a whole torch archive" in reasons["optimizer_cut"]


def test_a_state_for_another_step_is_refused(tmp_path):
    path = write_checkpoint(tmp_path, 6)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    assert "for step 4, the folder for step 6" in checkpoint_problem(path)


def test_the_last_complete_one_wins_and_newer_broken_ones_are_set_aside(tmp_path, caplog):
    good = write_checkpoint(tmp_path, 4)
    broken = write_checkpoint(tmp_path, 12)
    (broken / "trainer_state.json").unlink()
    write_checkpoint(tmp_path, 8)
    truncate(tmp_path / "checkpoint-8" / "model.safetensors")
    assert last_complete_checkpoint(tmp_path) == good  # numeric order: 12, 8, then 4
    assert "checkpoint-12 is incomplete" in caplog.text
    assert broken.is_dir()  # only looked at
    assert last_complete_checkpoint(tmp_path, set_aside_incomplete=True) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-4",
        "incomplete-checkpoint-12",
        "incomplete-checkpoint-8",
    ]
    assert last_complete_checkpoint(tmp_path / "missing") is None
