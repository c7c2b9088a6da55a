"""Checks that a saved model folder is whole before anything in it is loaded.

A folder written by :meth:`BiEncoder.save_pretrained` holds the encoder (``config.json`` and
safetensors weights), the tokenizer (``tokenizer.json`` or a vocabulary file), the library's
settings (``bi_encoder.json``) and the sentence-transformers modules (``modules.json`` and
one folder per module). :func:`read_model_folder` refuses a folder with a missing or broken
part, naming the file, and returns the settings the folder records; where both
``bi_encoder.json`` and the sentence-transformers modules record pooling and normalisation,
they must agree.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "ModelFolderError",
    "check_loaded_weights",
    "check_safetensors",
    "check_tokenizer",
    "has_modules_only",
    "read_model_folder",
    "settings_error",
]

SETTINGS_FILE = "bi_encoder.json"
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
VOCABULARY_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
    "tokenizer.model",
)  # fmt: skip
_ST_JSON = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


class ModelFolderError(ValueError):
    """A saved model folder is incomplete, broken or contradicts itself."""


def _json(path: str, what: str = "a JSON list") -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ModelFolderError(
            f"{path} must hold {what}, got invalid JSON at line {error.lineno} ({error.msg}): "
            "the file is truncated or corrupt; save the model again"
        ) from None
    except UnicodeDecodeError as error:
        raise ModelFolderError(f"{path}: not valid UTF-8 ({error.reason})") from None


def _json_object(path: str) -> dict[str, Any]:
    value = _json(path, "a JSON object")
    if not isinstance(value, dict):
        raise ModelFolderError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def check_safetensors(path: str) -> None:
    """Raise :class:`ModelFolderError` naming ``path`` unless it is a whole safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            handle.keys()
    except Exception as error:  # noqa: BLE001 - safetensors raises its own, untyped errors
        raise ModelFolderError(
            f"{path} is not a whole safetensors file ({error}): it was truncated or damaged "
            "while being written or copied; save the model again"
        ) from None


def _check_weights(folder: str) -> None:
    single = os.path.join(folder, "model.safetensors")
    sharded = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        check_safetensors(single)
    elif os.path.isfile(sharded):
        weight_map = _json_object(sharded).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFolderError(f"{sharded} must map tensor names to shard files")
        for shard in sorted(set(map(str, weight_map.values()))):
            file = os.path.join(folder, shard)
            if not os.path.isfile(file):
                raise ModelFolderError(f"{folder} is missing the weights shard {shard} ({sharded})")
            check_safetensors(file)
    elif not os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
        raise ModelFolderError(
            f"{folder} holds no weights: model.safetensors is missing (save the model with "
            "BiEncoder.save_pretrained)"
        )


def _check_tokenizer_files(folder: str) -> bool:
    """Whether the folder has a tokenizer; raise when it has only part of one."""
    present = [
        n for n in (*TOKENIZER_JSON, *VOCABULARY_FILES) if os.path.isfile(os.path.join(folder, n))
    ]
    if not present:
        return False
    for name in TOKENIZER_JSON:
        if name in present:
            _json_object(os.path.join(folder, name))
    if not any(name in present for name in VOCABULARY_FILES):
        raise ModelFolderError(
            f"{folder} has tokenizer settings ({', '.join(present)}) but no vocabulary: "
            "tokenizer.json is missing (a tokenizer built without it maps every word to the "
            "unknown token)"
        )
    return True


def _module_settings(folder: str) -> dict[str, Any] | None:
    """Pooling and normalisation as the sentence-transformers modules record them."""
    modules_file = os.path.join(folder, "modules.json")
    if not os.path.isfile(modules_file):
        return None
    for name in _ST_JSON[1:]:
        if os.path.isfile(os.path.join(folder, name)):
            _json_object(os.path.join(folder, name))
    modules = _json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelFolderError(f"{modules_file} must hold a JSON list of module objects")
    types, pooling_config = [], None
    for i, module in enumerate(modules):
        kind, path = module.get("type"), module.get("path")
        if not isinstance(kind, str) or not isinstance(path, str):
            raise ModelFolderError(f"{modules_file}: module {i} needs a 'type' and a 'path' string")
        kind = kind.rsplit(".", 1)[-1]
        types.append(kind)
        if kind in ("Pooling", "Dense"):
            config_file = os.path.join(folder, path, "config.json")
            if not os.path.isfile(config_file):
                raise ModelFolderError(
                    f"{folder} is missing {os.path.join(path, 'config.json')} (module {i}, "
                    f"{kind}, listed in modules.json)"
                )
            config = _json_object(config_file)
            if kind == "Pooling":
                pooling_config = (config_file, config)
            else:
                weights = os.path.join(folder, path, "model.safetensors")
                if not os.path.isfile(weights):
                    raise ModelFolderError(
                        f"{folder} is missing {os.path.join(path, 'model.safetensors')}"
                    )
                check_safetensors(weights)
    pooling = None
    if pooling_config is not None:
        file, config = pooling_config
        modes = sorted(
            k[len("pooling_mode_") :]
            for k, v in config.items()
            if k.startswith("pooling_mode_") and v is True
        )
        if modes == ["mean_tokens"]:
            pooling = "mean"
        elif modes == ["cls_token"]:
            pooling = "pooler" if "Dense" in types else "cls"
    return {"pooling": pooling, "normalize": "Normalize" in types, "modules_file": modules_file}


def read_model_folder(folder: str, given: Collection[str] = ()) -> tuple[dict[str, Any], bool]:
    """Check a saved model folder and return ``(settings, has_tokenizer)``.

    ``settings`` come from ``bi_encoder.json``; without it, pooling and normalisation come
    from the sentence-transformers modules (and ``scale`` stays at its default, with a
    warning). A plain transformers folder (neither file) gives ``{}``. ``given`` names the
    settings the caller sets itself (they need not be readable from the folder).

    Raises:
        ModelFolderError: a part is missing or broken (named), or the files disagree.
    """
    config = os.path.join(folder, "config.json")
    if not os.path.isfile(config):
        raise ModelFolderError(
            f"path must be a saved model folder with config.json (the encoder's), got "
            f"{folder!r} without it: save with BiEncoder.save_pretrained"
        )
    _json_object(config)
    _check_weights(folder)
    has_tokenizer = _check_tokenizer_files(folder)
    modules = _module_settings(folder)
    settings_file = os.path.join(folder, SETTINGS_FILE)
    if os.path.isfile(settings_file):
        settings = _json_object(settings_file)
        if modules is not None:
            for key in ("pooling", "normalize"):
                if modules[key] is not None and key in settings and settings[key] != modules[key]:
                    raise ModelFolderError(
                        f"{folder}: {SETTINGS_FILE} says {key}={settings[key]!r} but the "
                        f"sentence-transformers modules ({modules['modules_file']}) give "
                        f"{key}={modules[key]!r}: the folder contradicts itself; save it again"
                    )
        return settings, has_tokenizer
    if modules is None:
        return {}, has_tokenizer
    if modules["pooling"] is None and "pooling" not in given:
        raise ModelFolderError(
            f"{folder} has no {SETTINGS_FILE} and its sentence-transformers pooling is not "
            "one this library reads (mean or cls): pass pooling= and normalize= to "
            "BiEncoder.from_pretrained"
        )
    derived = {"pooling": modules["pooling"], "normalize": modules["normalize"]}
    return {k: v for k, v in derived.items() if v is not None}, has_tokenizer


def check_loaded_weights(info: dict[str, Any], folder: str, pooling: Any) -> None:
    """Refuse weights that leave part of the encoder at its random initialisation: tensors
    ``config.json`` declares but the weights file lacks (e.g. ``num_hidden_layers`` edited).
    A missing pooler is allowed (many encoders are saved without one) unless the model pools
    with it."""
    missing = sorted(info.get("missing_keys") or ())
    pooler = [key for key in missing if key.startswith("pooler.")]
    others = [key for key in missing if not key.startswith("pooler.")]
    if others or (pooler and pooling == "pooler"):
        shown = ", ".join((others or pooler)[:3])
        raise ModelFolderError(
            f"{folder}: model.safetensors lacks {len(others or pooler)} tensor(s) config.json "
            f"declares ({shown}, ...): they would be random; the weights and config.json "
            "come from different models, or the weights file is incomplete"
        )
    if pooler:
        logger.warning(
            "%s has no pooler weights: the encoder's pooler is random (use pooling 'mean' or "
            "'cls', not 'pooler').", folder,
        )  # fmt: skip


def settings_error(error: ValueError, path: Any, from_file: Collection[str]) -> ValueError:
    """``error`` (raised building a model from a folder's settings) naming ``bi_encoder.json``
    when the setting it is about came from that file, not from the caller."""
    file = os.path.join(os.fspath(path), SETTINGS_FILE)
    named = any(str(error).startswith(f"{key} ") for key in from_file)
    if named and os.path.isfile(file):
        return ModelFolderError(f"{file}: {error}")
    return error


def has_modules_only(path: str | os.PathLike[str]) -> bool:
    """A local folder with sentence-transformers modules and no ``bi_encoder.json``."""
    folder = os.fspath(path)
    return os.path.isfile(os.path.join(folder, "modules.json")) and not os.path.isfile(
        os.path.join(folder, SETTINGS_FILE)
    )


def check_tokenizer(tokenizer: Any, encoder: Any, folder: str) -> None:
    """Refuse a tokenizer with no words; warn about ids beyond the encoder's embedding table."""
    size = len(tokenizer)
    specials = len(set(getattr(tokenizer, "all_special_ids", ()) or ()))
    if size <= specials:
        raise ModelFolderError(
            f"the tokenizer of {folder} holds only its {size} special tokens: its vocabulary "
            "(tokenizer.json) is missing or empty"
        )
    rows = getattr(getattr(encoder, "config", None), "vocab_size", None)
    if isinstance(rows, int) and size > rows:
        logger.warning(
            "The tokenizer of %s has %d tokens but the encoder's embedding table %d rows: "
            "the extra tokens' ids are out of range (is the tokenizer another model's?)",
            folder, size, rows,
        )  # fmt: skip
