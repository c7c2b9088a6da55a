"""Reading an index folder's parts back, each checked and each error naming its file.

``search_index.json`` (the manifest) records the settings, the model that built the index
(its folder, kind, scale and the embeddings of a fixed probe text), the counts and, for each
of ``index.faiss`` and ``metadata.jsonl``, its size and sha256. A part that is missing,
truncated, edited or swapped for another index's is refused with its file (and, for
``metadata.jsonl``, its line) named; the manifest records the sha256 of its own content too.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from soft_infonce.codesearch.search._faiss import INDEX_TYPES
from soft_infonce.codesearch.search.hits import record_problem

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "METADATA_FILE",
    "IndexFolderError",
    "check_manifest",
    "file_digest",
    "manifest_digest",
    "read_metadata",
    "verify_manifest",
    "verify_part",
]

FORMAT_VERSION = 2
INDEX_FILE, METADATA_FILE, CONFIG_FILE = "index.faiss", "metadata.jsonl", "search_index.json"
MODEL_KINDS = (None, "bi_encoder", "sentence_transformers")
PROBE_COSINE = 0.995  # the least cosine between a probe's recorded and new embeddings


class IndexFolderError(ValueError):
    """A saved index folder is missing a part, or a part is broken or does not match."""


def file_digest(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex digest}`` of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _require(config: dict[str, Any], key: str, ok: bool, expected: str, where: Path) -> None:
    if not ok:
        raise IndexFolderError(f"{where}: {key} must be {expected}, got {config.get(key)!r:.80}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder``, every field checked (type and range)."""
    file = folder / CONFIG_FILE
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IndexFolderError(
            f"{file}:{error.lineno}: invalid JSON ({error.msg}): the manifest is truncated or "
            "corrupt; rebuild the index (soft-infonce index)"
        ) from None
    except UnicodeDecodeError as error:
        raise IndexFolderError(f"{file}: not valid UTF-8 ({error.reason})") from None
    if not isinstance(config, dict):
        raise IndexFolderError(f"{file} must hold a JSON object, got {type(config).__name__}")
    if config.get("format_version") != FORMAT_VERSION:
        raise IndexFolderError(
            f"{file}: format_version must be {FORMAT_VERSION}, got "
            f"{config.get('format_version')!r}: rebuild the index with this version"
        )
    for key in ("dim", "hnsw_m", "ef_construction", "ef_search", "nprobe", "max_length"):
        _require(config, key, _positive_int(config.get(key)), "a positive int", file)
    count = config.get("count")
    _require(config, "count", _positive_int(count) or count == 0, "an int >= 0", file)
    nlist = config.get("nlist")
    _require(config, "nlist", nlist is None or _positive_int(nlist), "null or a positive int", file)
    _require(
        config, "index_type", config.get("index_type") in INDEX_TYPES, f"one of {INDEX_TYPES}", file
    )
    _require(
        config, "model_kind", config.get("model_kind") in MODEL_KINDS, f"one of {MODEL_KINDS}", file
    )
    path = config.get("model_path")
    _require(config, "model_path", path is None or isinstance(path, str), "null or a string", file)
    scale = config.get("scale")
    ok = (
        isinstance(scale, (int, float))
        and not isinstance(scale, bool)
        and math.isfinite(scale)
        and scale > 0
    )
    _require(config, "scale", ok, "a positive finite number", file)
    skipped = config.get("skipped", {})
    ok = isinstance(skipped, dict) and all(_positive_int(v) or v == 0 for v in skipped.values())
    _require(config, "skipped", ok, "an object of counts", file)
    probe = config.get("model_probe")
    if probe is not None:
        ok = (
            isinstance(probe, dict)
            and isinstance(probe.get("text"), str)
            and all(
                isinstance(probe.get(side), list)
                and len(probe[side]) == config["dim"]
                and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in probe[side]
                )
                for side in ("query", "code")
            )
        )
        _require(
            config,
            "model_probe",
            ok,
            f"a text with query and code embeddings of dim {config['dim']}",
            file,
        )
    files = config.get("files")
    ok = isinstance(files, dict) and all(
        isinstance(files.get(name), dict)
        and _positive_int(files[name].get("bytes"))
        and isinstance(files[name].get("sha256"), str)
        and len(files[name]["sha256"]) == 64
        for name in (INDEX_FILE, METADATA_FILE)
    )
    _require(config, "files", ok, f"the size and sha256 of {INDEX_FILE} and {METADATA_FILE}", file)
    return config


def manifest_digest(config: dict[str, Any]) -> str:
    """The sha256 of the manifest's own content (every key but ``"sha256"``, canonical JSON):
    a value edited by hand, even to another valid one, no longer matches it."""
    content = {key: value for key, value in config.items() if key != "sha256"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_manifest(folder: Path, config: dict[str, Any]) -> None:
    """Raise unless the manifest's recorded ``sha256`` matches its content."""
    if config.get("sha256") != manifest_digest(config):
        raise IndexFolderError(
            f"{folder / CONFIG_FILE} does not match its own sha256: a setting was changed after "
            "the index was written; rebuild the index"
        )


def verify_part(folder: Path, name: str, config: dict[str, Any]) -> None:
    """Raise unless ``folder / name`` has the size and sha256 the manifest records."""
    file = folder / name
    if not file.is_file():
        raise IndexFolderError(f"{folder} is missing {name}: the index is incomplete; rebuild it")
    expected, found = config["files"][name], file_digest(file)
    if found["bytes"] != expected["bytes"]:
        raise IndexFolderError(
            f"{file} holds {found['bytes']} bytes but {CONFIG_FILE} records {expected['bytes']}: "
            "the file was truncated or replaced; rebuild the index"
        )
    if found["sha256"] != expected["sha256"]:
        raise IndexFolderError(
            f"{file} does not match the sha256 recorded in {CONFIG_FILE}: it was changed after "
            "the index was written (or comes from another index); rebuild the index"
        )


def read_metadata(folder: Path) -> list[dict[str, Any]]:
    """The records of ``metadata.jsonl``, each line checked (JSON object, known fields)."""
    file = folder / METADATA_FILE
    if not file.is_file():
        raise IndexFolderError(
            f"{folder} is missing {METADATA_FILE}: the index is incomplete; rebuild it"
        )
    records = []
    with open(file, encoding="utf-8", errors="strict") as handle:
        try:
            lines = list(handle)
        except UnicodeDecodeError as error:
            raise IndexFolderError(f"{file}: not valid UTF-8 ({error.reason})") from None
    for number, line in enumerate(lines, 1):
        where = f"{file}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise IndexFolderError(f"{where}: invalid JSON ({error.msg})") from None
        problem = record_problem(record)
        if problem is not None:
            raise IndexFolderError(f"{where}: {problem}")
        records.append(record)
    return records


def probe_matches(recorded: dict[str, Any], query: np.ndarray, code: np.ndarray) -> bool:
    """Whether a model's probe embeddings are the recorded ones up to numerical noise: cosine
    >= :data:`PROBE_COSINE` and norms within 2% on both sides (the same model in half precision
    or on another device passes; another model, or the same one fine-tuned further, does
    not)."""
    for side, new in (("query", query), ("code", code)):
        old = np.asarray(recorded[side], dtype=np.float64)
        if new.shape != old.shape:
            return False
        norms = float(np.linalg.norm(old)), float(np.linalg.norm(new))
        if min(norms) == 0.0:
            if max(norms) > 0.0:
                return False
            continue
        cosine = float(old @ new) / (norms[0] * norms[1])
        if cosine < PROBE_COSINE or abs(norms[1] / norms[0] - 1.0) > 0.02:
            return False
    return True
