"""Writing and reading an index folder as one unit; nothing is pickled.

The folder holds ``index.faiss`` (FAISS's own format), ``metadata.jsonl`` (one JSON object
per entry: path, line, end_line, name, language or text) and ``search_index.json`` (the
manifest, :mod:`.manifest`). :func:`save_index` writes a complete new folder beside the
target (``.<name>.writing``), then renames the old folder to ``.<name>.previous``, the new one
into place, and deletes the old one. A writer killed at any moment leaves the old index or the
new one readable, never a mix: :func:`load_index` reads ``.<name>.previous`` when the target
is missing (killed between the two renames), and the next save clears what a killed writer
left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soft_infonce.codesearch.search._faiss import import_faiss
from soft_infonce.codesearch.search.manifest import (
    CONFIG_FILE,
    FORMAT_VERSION,
    INDEX_FILE,
    METADATA_FILE,
    IndexFolderError,
    check_manifest,
    file_digest,
    manifest_digest,
    probe_matches,
    read_metadata,
    verify_manifest,
    verify_part,
)

# A CodeIndex (typed ``Any`` here: index.py imports this module, so this one must not import it).
CodeIndex = Any

__all__ = ["check_destination", "index_folder", "load_index", "save_index", "verify_extra"]

logger = logging.getLogger(__name__)


def _siblings(folder: Path) -> tuple[Path, Path]:
    """The temporary folder a save writes, and where the replaced index waits."""
    return folder.with_name(f".{folder.name}.writing"), folder.with_name(f".{folder.name}.previous")


def check_destination(directory: str | os.PathLike[str]) -> Path:
    """Refuse a destination that is a file or a folder of something other than an index.

    Call it before any embedding work: ``soft-infonce index`` does.
    """
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise IndexFolderError(
            f"out must be a folder for the index, got the existing file {str(folder)!r}"
        )
    if folder.is_dir() and any(folder.iterdir()) and not (folder / CONFIG_FILE).is_file():
        raise IndexFolderError(
            f"out must be a new folder or a saved index, got {str(folder)!r}, which holds "
            f"other files (no {CONFIG_FILE}): it will not be replaced"
        )
    return folder


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


def _check_extras(extras: Mapping[str, str]) -> None:
    core = (INDEX_FILE, METADATA_FILE, CONFIG_FILE)
    for name, text in extras.items():
        if not isinstance(name, str) or Path(name).name != name or name in core or name[:1] == ".":
            raise ValueError(
                f"extras: {name!r} must be a plain file name other than {core} (no folders, "
                "not hidden)"
            )
        if not isinstance(text, str):
            raise ValueError(f"extras[{name!r}] must be the file's text, got {type(text).__name__}")


def _write_parts(index: CodeIndex, folder: Path, extras: Mapping[str, str]) -> None:
    folder.mkdir(parents=True)
    import_faiss().write_index(index._index, str(folder / INDEX_FILE))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in index.records)
    _write_text(folder / METADATA_FILE, lines)
    for name, text in extras.items():
        _write_text(folder / name, text)
    config = {
        "format_version": FORMAT_VERSION, "count": len(index), "dim": index.dim,
        "index_type": index.index_type, "hnsw_m": index.hnsw_m,
        "ef_construction": index.ef_construction, "ef_search": index.ef_search,
        "nlist": index.nlist, "nprobe": index.nprobe,
        "max_length": index.max_length, "model_path": index.model_path, "scale": index.scale,
        "model_kind": index.encoder.kind if index.encoder is not None else None,
        "model_probe": index.model_probe,
        "skipped": dict(index.skipped.counts),
        "files": {
            name: file_digest(folder / name) for name in (INDEX_FILE, METADATA_FILE, *extras)
        },
    }  # fmt: skip
    config["sha256"] = manifest_digest(config)
    _write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    _fsync_folder(folder)


def save_index(
    index: CodeIndex, directory: str | os.PathLike[str], extras: Mapping[str, str] | None = None
) -> Path:
    """Write ``index`` to ``directory`` as one unit; see :meth:`CodeIndex.save`."""
    if index._index is None:
        raise ValueError("the index is empty: nothing to save")
    extras = dict(extras or {})
    _check_extras(extras)
    folder = check_destination(directory)
    if index.model_probe is None and index.encoder is not None and not index.model_mismatch:
        index.model_probe = index.encoder.probe_record(index.max_length)
    writing, previous = _siblings(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if writing.exists():  # left by a writer that was killed
        shutil.rmtree(writing)
    _write_parts(index, writing, extras)
    if folder.exists():
        if previous.exists():  # a stale copy: the target is whole
            shutil.rmtree(previous)
        os.replace(folder, previous)
    os.replace(writing, folder)
    _fsync_folder(folder.parent)
    if previous.exists():
        shutil.rmtree(previous)
    return folder


def verify_extra(directory: str | os.PathLike[str], name: str) -> Path | None:
    """The file ``name`` a save wrote beside the index (``extras``), checked against the sha256
    its manifest records; ``None`` when the folder has no such file. A file the manifest does
    not list (copied in by hand, or from an older build) is returned unchecked."""
    folder = index_folder(directory)
    config = check_manifest(folder)
    if name in config.get("files", {}):
        verify_part(folder, name, config)
    return folder / name if (folder / name).is_file() else None


def index_folder(directory: str | os.PathLike[str]) -> Path:
    """The folder a load reads: ``directory``, or the index it replaced when a save was
    interrupted between its two renames."""
    folder = Path(directory)
    _, previous = _siblings(folder)
    if not folder.exists() and (previous / CONFIG_FILE).is_file():
        logger.warning(
            "%s is missing but %s holds the index it replaced (a save was interrupted): "
            "reading that one", folder, previous,
        )  # fmt: skip
        return previous
    if not (folder / CONFIG_FILE).is_file():
        raise IndexFolderError(
            f"directory must hold a saved index ({CONFIG_FILE}), got {str(folder)!r}: "
            "build one first (CodeIndex.save or `soft-infonce index`)"
        )
    return folder


def _read_faiss(folder: Path, config: dict[str, Any]) -> Any:
    verify_part(folder, INDEX_FILE, config)
    try:
        index = import_faiss().read_index(str(folder / INDEX_FILE))
    except RuntimeError as error:
        raise IndexFolderError(f"{folder / INDEX_FILE}: FAISS cannot read it ({error})") from None
    if index.d != config["dim"]:
        raise IndexFolderError(
            f"{folder / INDEX_FILE} holds vectors of dim {index.d} but {CONFIG_FILE} says "
            f"{config['dim']}"
        )
    return index


def check_model(index: CodeIndex, config: dict[str, Any], *, allow_other_model: bool) -> None:
    """Compare the model's embeddings of the probe text with those recorded at build time."""
    recorded = config.get("model_probe")
    if index.encoder is None or recorded is None:
        return
    query, code = index.encoder.probe(recorded["text"], index.max_length)
    if probe_matches(recorded, query, code):
        return
    message = (
        f"the model {index.encoder.path or type(index.encoder.model).__name__} embeds "
        f"differently from the one that built this index ({config['model_path']}): its "
        "scores would rank mismatched embeddings"
    )
    if not allow_other_model:
        raise IndexFolderError(
            message + "; pass the model the index was built with, or allow_other_model=True "
            "(--allow-other-model) to search anyway"
        )
    logger.warning("%s (searching anyway: allow_other_model=True)", message)
    index.model_mismatch = True


def load_index(
    cls: Any,
    directory: str | os.PathLike[str],
    model: Any,
    *,
    load_model: bool,
    allow_other_model: bool = False,
) -> CodeIndex:
    """Read an index folder; see :meth:`CodeIndex.load`."""
    folder = index_folder(directory)
    config = check_manifest(folder)
    records = read_metadata(folder)
    verify_part(folder, METADATA_FILE, config)
    faiss_index = _read_faiss(folder, config)
    if not faiss_index.ntotal == len(records) == config["count"]:
        raise IndexFolderError(
            f"{folder}: {INDEX_FILE} holds {faiss_index.ntotal} vectors, {METADATA_FILE} "
            f"{len(records)} records and {CONFIG_FILE} says {config['count']}"
        )
    verify_manifest(folder, config)
    if model is None and load_model:
        model = config["model_path"]
        if model is None or not os.path.isdir(model):
            raise IndexFolderError(
                f"the index's model folder {model!r} is not available: pass model= (--model)"
            )
    index = cls(
        model, index_type=config["index_type"], hnsw_m=config["hnsw_m"],
        ef_construction=config["ef_construction"], ef_search=config["ef_search"],
        nlist=config["nlist"], nprobe=config["nprobe"], max_length=config["max_length"],
    )  # fmt: skip
    if index.dim is not None and index.dim != config["dim"]:
        raise IndexFolderError(
            f"model embeds in dim {index.dim} but the index in {config['dim']}: "
            f"use the model the index was built with ({config['model_path']})"
        )
    check_model(index, config, allow_other_model=allow_other_model)
    index.dim = config["dim"]
    if index.encoder is None:
        index.model_path, index.scale = config["model_path"], float(config["scale"])
    index.model_probe = config.get("model_probe")
    index._index = faiss_index
    index.records = records
    index.set_search_params()
    index.skipped.counts.update(config.get("skipped", {}))
    return index
