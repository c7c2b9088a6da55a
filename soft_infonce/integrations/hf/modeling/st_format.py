"""The sentence-transformers files of a saved BiEncoder (the format every release reads).

``SentenceTransformer(path)`` builds ``Transformer -> Pooling [-> Dense] [-> Normalize]`` from
``modules.json``; this writes the classic (2.x-6.x) layout: ``sentence_bert_config.json``,
``1_Pooling/config.json``, ``2_Dense/`` (pooling ``"pooler"``: the encoder's pooler is a
``tanh(W h_cls + b)`` dense layer), ``Normalize`` when the model normalises, and
``config_sentence_transformers.json`` with the similarity and the prompts a layout needs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from soft_infonce.integrations.hf.modeling.folder import SavedModel, write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = "3.0.0"  # similarity_fn_name needs sentence-transformers >= 3.0
_MODULES = "sentence_transformers.models."


def default_max_seq_length(model: SavedModel, card: Mapping[str, Any]) -> int:
    """``card["max_code_length"]`` (else 256), capped by the encoder's position embeddings."""
    length = card.get("max_code_length") or 256
    positions = getattr(model.encoder.config, "max_position_embeddings", None)
    if isinstance(positions, int):
        offset = 2 if getattr(model.encoder.config, "model_type", "") == "roberta" else 0
        length = min(length, positions - offset)
    return int(length)


def _pooler_dense(model: SavedModel) -> nn.Linear | None:
    """The encoder's pooler dense layer when the pooler is ``tanh(dense(h_cls))``."""
    pooler = getattr(model.encoder, "pooler", None)
    dense = getattr(pooler, "dense", None)
    activation = getattr(pooler, "activation", None)
    if isinstance(dense, nn.Linear) and isinstance(activation, nn.Tanh):
        return dense
    return None


def write_sentence_transformers_files(model: SavedModel, path: str, max_seq_length: int) -> bool:
    """Write the modules; return ``False`` (and warn) when they cannot reproduce the model."""
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) \
            or max_seq_length < model.layout.min_length:  # fmt: skip
        raise ValueError(
            f"max_seq_length must be an int >= {model.layout.min_length}, got {max_seq_length!r}"
        )
    dense = _pooler_dense(model) if model.pooling == "pooler" else None
    if model.pooling == "pooler" and dense is None:
        logger.warning(
            "pooling='pooler' with %s: its pooler is not tanh(dense(cls)), which "
            "sentence-transformers cannot reproduce; %s holds no sentence-transformers modules.",
            type(model.encoder).__name__, path,
        )  # fmt: skip
        return False
    if not model.layout.sentence_transformers_exact:
        logger.warning(
            "input_layout=%r: sentence-transformers loads %s with plain inputs, so its query "
            "embeddings match BiEncoder's but its code embeddings do not (it cannot build the "
            "data-flow graph). Load it with BiEncoder.from_pretrained to embed code.",
            model.input_layout, path,
        )  # fmt: skip
    hidden = model.embedding_dim
    modules: list[dict[str, Any]] = [{"path": "", "type": "Transformer"}]
    write_json(os.path.join(path, "sentence_bert_config.json"),
               {"max_seq_length": max_seq_length, "do_lower_case": False})  # fmt: skip
    os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
    mean = model.pooling == "mean"
    write_json(os.path.join(path, "1_Pooling", "config.json"), {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": not mean,
        "pooling_mode_mean_tokens": mean,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })  # fmt: skip
    modules.append({"path": "1_Pooling", "type": "Pooling"})
    if dense is not None:
        _write_dense(os.path.join(path, f"{len(modules)}_Dense"), dense)
        modules.append({"path": f"{len(modules)}_Dense", "type": "Dense"})
    if model.normalize:
        modules.append({"path": f"{len(modules)}_Normalize", "type": "Normalize"})
    write_json(os.path.join(path, "modules.json"), [
        {"idx": i, "name": str(i), "path": m["path"], "type": _MODULES + m["type"]}
        for i, m in enumerate(modules)
    ])  # fmt: skip
    prompt = model.layout.sentence_transformers_prompt()
    write_json(os.path.join(path, "config_sentence_transformers.json"), {
        "__version__": {"sentence_transformers": FORMAT_VERSION},
        "prompts": {"query": prompt, "document": prompt},
        "default_prompt_name": "query" if prompt else None,
        "similarity_fn_name": "cosine" if model.normalize else "dot",
    })  # fmt: skip
    return True


def _write_dense(folder: str, dense: nn.Linear) -> None:
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "config.json"), {
        "in_features": dense.in_features,
        "out_features": dense.out_features,
        "bias": dense.bias is not None,
        "activation_function": "torch.nn.modules.activation.Tanh",
    })  # fmt: skip
    tensors = {"linear.weight": dense.weight.detach().cpu().contiguous()}
    if dense.bias is not None:
        tensors["linear.bias"] = dense.bias.detach().cpu().contiguous()
    save_file(tensors, os.path.join(folder, "model.safetensors"))
