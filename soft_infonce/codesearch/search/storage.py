"""An index's files: ``index.faiss`` (FAISS's own format), ``metadata.jsonl`` (one JSON object
per entry: path, line, end_line, name, language or text) and ``search_index.json`` (settings,
model folder, embedding dim, counts). Nothing is pickled."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from soft_infonce.codesearch.search._faiss import import_faiss

# A CodeIndex (typed ``Any`` here: index.py imports this module, so this one must not import it).
CodeIndex = Any

FORMAT_VERSION = 1
INDEX_FILE, METADATA_FILE, CONFIG_FILE = "index.faiss", "metadata.jsonl", "search_index.json"


def save_index(index: CodeIndex, directory: str | os.PathLike[str]) -> Path:
    """Write ``index`` to ``directory`` (created if needed); see :meth:`CodeIndex.save`."""
    if index._index is None:
        raise ValueError("the index is empty: nothing to save")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    import_faiss().write_index(index._index, str(out / INDEX_FILE))
    with open(out / METADATA_FILE, "w", encoding="utf-8") as handle:
        for record in index.records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    config = {
        "format_version": FORMAT_VERSION, "count": len(index), "dim": index.dim,
        "index_type": index.index_type, "hnsw_m": index.hnsw_m,
        "ef_construction": index.ef_construction, "ef_search": index.ef_search,
        "nlist": index.nlist, "nprobe": index.nprobe,
        "max_length": index.max_length, "model_path": index.model_path, "scale": index.scale,
        "model_kind": index.encoder.kind if index.encoder is not None else None,
        "skipped": dict(index.skipped.counts),
    }  # fmt: skip
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def load_index(
    cls: Any, directory: str | os.PathLike[str], model: Any, *, load_model: bool
) -> CodeIndex:
    """Read an index folder; see :meth:`CodeIndex.load`."""
    folder = Path(directory)
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(
            f"directory must hold a saved index ({CONFIG_FILE}), got {str(folder)!r}: "
            "build one first (CodeIndex.save or `soft-infonce index`)"
        )
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported index format_version {config.get('format_version')!r}")
    if model is None and load_model:
        model = config["model_path"]
        if model is None or not os.path.isdir(model):
            raise ValueError(
                f"the index's model folder {model!r} is not available: pass model= (--model)"
            )
    index = cls(
        model, index_type=config["index_type"], hnsw_m=config["hnsw_m"],
        ef_construction=config["ef_construction"], ef_search=config["ef_search"],
        nlist=config["nlist"], nprobe=config["nprobe"], max_length=config["max_length"],
    )  # fmt: skip
    if index.dim is not None and index.dim != config["dim"]:
        raise ValueError(
            f"model embeds in dim {index.dim} but the index in {config['dim']}: "
            f"use the model the index was built with ({config['model_path']})"
        )
    index.dim = config["dim"]
    if index.encoder is None:
        index.model_path, index.scale = config["model_path"], config["scale"]
    index._index = import_faiss().read_index(str(folder / INDEX_FILE))
    with open(folder / METADATA_FILE, encoding="utf-8") as handle:
        index.records = [json.loads(line) for line in handle if line.strip()]
    if not index._index.ntotal == len(index.records) == config["count"]:
        raise ValueError(
            f"{folder}: {INDEX_FILE} holds {index._index.ntotal} vectors, {METADATA_FILE} "
            f"{len(index.records)} records and {CONFIG_FILE} says {config['count']}"
        )
    index.set_search_params()
    index.skipped.counts.update(config.get("skipped", {}))
    return index
