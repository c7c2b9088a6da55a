"""Finding a checkpoint to resume from that was written completely.

``transformers.Trainer`` writes ``checkpoint-<step>/`` in stages: the model's weights, the
optimizer and scheduler, the RNG states, and ``trainer_state.json`` last. A process killed
half-way leaves a folder that ``get_last_checkpoint`` still picks (it only looks at the
highest step number), and resuming from it fails or, worse, restores a mix. Here a checkpoint
is **complete** when:

* ``trainer_state.json`` parses as a JSON object whose ``global_step`` is the folder's step;
* the weights are there and readable: a ``model.safetensors`` whose header parses (or every
  shard a ``model.safetensors.index.json`` names), or a ``pytorch_model.bin`` that is a whole
  zip archive;
* every other ``.pt`` / ``.pth`` / ``.bin`` file (optimizer, scheduler, RNG states) is a whole
  zip archive (``torch.save``'s format; a truncated one has no central directory).

These checks read headers and directory entries only, never the tensors.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["checkpoint_problem", "is_complete_checkpoint", "last_complete_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_MAX_HEADER = 100_000_000  # safetensors refuses headers larger than 100 MB as well


def _safetensors_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            raw = handle.read(8)
            if len(raw) < 8:
                return f"{path.name} is truncated"
            (length,) = struct.unpack("<Q", raw)
            if length > min(_MAX_HEADER, size - 8):
                return f"{path.name} is truncated (header of {length} bytes)"
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as error:
        return f"{path.name} is unreadable ({error})"
    if not isinstance(header, dict):
        return f"{path.name} has no tensor table"
    end = max(
        (
            v["data_offsets"][1]
            for k, v in header.items()
            if k != "__metadata__"
            and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list)
        ),
        default=0,
    )
    if 8 + length + end > size:
        return f"{path.name} is truncated ({size} bytes, its header needs {8 + length + end})"
    return None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        return f"{path.name} is not a whole torch archive ({error})"
    return None


def _weights_problem(folder: Path) -> str | None:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return _safetensors_problem(single)
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            return f"{index.name} is unreadable ({error})"
        for shard in sorted(shards):
            shard_path = folder / shard
            if not shard_path.is_file():
                return f"shard {shard} is missing"
            problem = _safetensors_problem(shard_path)
            if problem:
                return problem
        return None
    if (folder / "pytorch_model.bin").is_file():
        return _zip_problem(folder / "pytorch_model.bin")
    return "no model weights (model.safetensors or pytorch_model.bin)"


def checkpoint_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a complete checkpoint, or ``None`` when it is one.

    Args:
        path: a ``checkpoint-<step>`` folder.

    Returns:
        A short reason (``"no trainer_state.json"``, ``"model.safetensors is truncated"``, ...)
        or ``None``.
    """
    folder = Path(path)
    if not folder.is_dir():
        return "not a folder"
    state_path = folder / "trainer_state.json"
    if not state_path.is_file():
        return "no trainer_state.json (its write did not finish)"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"trainer_state.json is unreadable ({error})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json has no global_step"
    match = _CHECKPOINT.match(folder.name)
    if match and int(match.group(1)) != state["global_step"]:
        return (
            f"trainer_state.json is for step {state['global_step']}, the folder for step "
            f"{match.group(1)}"
        )
    problem = _weights_problem(folder)
    if problem:
        return problem
    for item in sorted(folder.iterdir()):
        if item.suffix in (".pt", ".pth", ".bin") and item.is_file():
            problem = _zip_problem(item)
            if problem:
                return problem
    return None


def is_complete_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a complete checkpoint (see the module docstring)."""
    return checkpoint_problem(path) is None


def last_complete_checkpoint(
    folder: str | os.PathLike[str], *, set_aside_incomplete: bool = False
) -> Path | None:
    """The ``checkpoint-<step>`` under ``folder`` with the highest step that is complete.

    Incomplete ones are passed over with a warning naming why. With ``set_aside_incomplete``,
    those with a higher step than the one returned are renamed ``incomplete-checkpoint-<step>``
    (nothing is deleted), so that the trainer's rotation and a later resume never pick them.

    Args:
        folder: the run's output folder.
        set_aside_incomplete: rename the incomplete checkpoints newer than the result.

    Returns:
        The checkpoint folder, or ``None`` when there is no complete one (or no folder).
    """
    root = Path(folder)
    if not root.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), item)
        for item in root.iterdir()
        if (m := _CHECKPOINT.match(item.name)) and item.is_dir()
    )
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("%s is incomplete, not resuming from it: %s", path, problem)
        if set_aside_incomplete:
            target = path.with_name(f"incomplete-{path.name}")
            suffix = 1
            while target.exists():
                target = path.with_name(f"incomplete-{path.name}.{suffix}")
                suffix += 1
            path.rename(target)
            logger.warning("renamed %s to %s", path, target.name)
    return None
