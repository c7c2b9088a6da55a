"""Saving and loading a BiEncoder folder that both this library and sentence-transformers load.

A saved folder holds the encoder (``config.json`` + safetensors), the tokenizer, the library's
own ``bi_encoder.json``, the sentence-transformers modules (written by
:mod:`soft_infonce.integrations.hf.modeling.st_format`) and a ``README.md`` model card
(:mod:`soft_infonce.integrations.hf.modeling.model_card`).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Collection, Mapping
from typing import Any

from soft_infonce.integrations.hf.modeling.folder import (
    CONFIG_NAME,
    SETTINGS,
    SavedModel,
    read_json,
    write_json,
)
from soft_infonce.integrations.hf.modeling.integrity import (
    ModelFolderError,
    check_loaded_weights,
    check_tokenizer,
    has_modules_only,
    read_model_folder,
)
from soft_infonce.integrations.hf.modeling.layouts import ENCODER_ONLY

logger = logging.getLogger(__name__)


def _hub_settings(name: str) -> dict[str, Any]:
    """``bi_encoder.json`` of a Hub model as a dict, or ``{}`` when the model has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        file = hf_hub_download(name, CONFIG_NAME, local_files_only=False)
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return {}
    settings = read_json(file)
    if not isinstance(settings, dict):
        raise ValueError(f"{file} must hold a JSON object, got {settings!r:.80}")
    return settings


def _known_settings(settings: dict[str, Any], file: str) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        logger.warning("Ignoring unknown keys %s in %s.", unknown, file)
    return {key: value for key, value in settings.items() if key not in unknown}


def load_parts(
    path: str | os.PathLike, *, local_files_only: bool = True, given: Collection[str] = ()
) -> tuple[Any, Any, dict[str, Any]]:
    """The encoder, the tokenizer (or ``None``) and the settings of a saved model.

    A local folder is checked whole first (:func:`~.integrity.read_model_folder`): a missing
    or broken part is named before transformers reads anything; ``given`` names the settings
    the caller sets itself.
    """
    from transformers import AutoModel, AutoTokenizer

    path = os.fspath(path)
    is_dir = os.path.isdir(path)
    if local_files_only and not is_dir:
        raise ValueError(
            "path must be an existing local directory when local_files_only=True "
            f"(pass local_files_only=False to load a Hub model), got {path!r}"
        )
    if is_dir:
        settings, has_tokenizer = read_model_folder(path, given)
        if "scale" not in settings and "scale" not in given and has_modules_only(path):
            logger.warning(
                "%s has no bi_encoder.json: pooling and normalize come from its "
                "sentence-transformers modules, and scale (not recorded there) is 1.0; pass "
                "scale= to BiEncoder.from_pretrained to set it.", path,
            )  # fmt: skip
    else:
        settings, has_tokenizer = _hub_settings(path), True
    settings = _known_settings(settings, os.path.join(path, CONFIG_NAME))
    load_kwargs: dict[str, Any] = {"local_files_only": local_files_only, "trust_remote_code": False}
    if not is_dir:
        encoder = AutoModel.from_pretrained(path, **load_kwargs)
    else:
        try:
            encoder, info = AutoModel.from_pretrained(path, output_loading_info=True, **load_kwargs)
        except RuntimeError:  # a tensor's shape disagrees with config.json
            raise ModelFolderError(
                f"{path}: the tensors of model.safetensors do not fit config.json (a shape "
                "differs; transformers' load report above names it): the two files come from "
                "different models"
            ) from None
        check_loaded_weights(info, path, settings.get("pooling"))
    tokenizer = None
    if has_tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(path, **load_kwargs)
        check_tokenizer(tokenizer, encoder, path)
    else:
        logger.warning("No tokenizer files in %s: the BiEncoder has no tokenizer.", path)
    return encoder, tokenizer, settings


def _tokenizer_to_save(model: SavedModel) -> Any:
    """The tokenizer, with ``<encoder-only>`` marked special when a prompt holds it.

    sentence-transformers puts the UniXcoder prompt before the text; the token must then be
    one token, not split into ``<``, ``encoder``, ... A copy is changed, not the model's.
    """
    tokenizer = model.tokenizer
    if ENCODER_ONLY not in model.layout.sentence_transformers_prompt():
        return tokenizer
    from tokenizers import AddedToken

    token_id = tokenizer.convert_tokens_to_ids(ENCODER_ONLY)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"input_layout={model.input_layout!r} needs the token {ENCODER_ONLY!r} in the "
            f"tokenizer's vocabulary, got the unknown-token id {token_id!r}"
        )
    tokenizer = copy.deepcopy(tokenizer)
    token = AddedToken(ENCODER_ONLY, special=True, normalized=False)
    tokenizer.add_tokens([token], special_tokens=True)
    return tokenizer


def save_folder(
    model: SavedModel,
    path: str | os.PathLike,
    *,
    model_card: Mapping[str, Any] | None = None,
    max_seq_length: int | None = None,
) -> None:
    """Write the whole folder (see :meth:`BiEncoder.save_pretrained`)."""
    from soft_infonce.integrations.hf.modeling.model_card import write_model_card
    from soft_infonce.integrations.hf.modeling.st_format import (
        default_max_seq_length,
        write_sentence_transformers_files,
    )

    if model_card is not None and not isinstance(model_card, Mapping):
        raise ValueError(f"model_card must be a mapping or None, got {model_card!r:.80}")
    card = dict(model_card or {})
    if max_seq_length is None:
        max_seq_length = default_max_seq_length(model, card)
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    model.encoder.save_pretrained(path)
    tokenizer = _tokenizer_to_save(model)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    write_json(os.path.join(path, CONFIG_NAME), model.get_config_dict())
    written = False
    if tokenizer is not None:
        written = write_sentence_transformers_files(model, path, max_seq_length)
    else:
        logger.warning(
            "No tokenizer: %s holds no sentence-transformers modules (it cannot load it).", path
        )
    write_model_card(model, path, card, sentence_transformers=written,
                     max_seq_length=max_seq_length)  # fmt: skip


def accept_encoder_state_dict(
    module: Any, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Let ``load_state_dict`` take the encoder's own keys (a saved folder's safetensors).

    ``save_pretrained`` writes the encoder's weights without the ``encoder.`` prefix (so that
    transformers and sentence-transformers load them); ``transformers.Trainer`` loads the best
    checkpoint and resumes with ``model.load_state_dict`` (not strict). Keys are prefixed when
    none is one of the module's own and some are the encoder's.
    """
    mine = [key for key in state_dict if key.startswith(prefix)]
    own = module.state_dict(keep_vars=True).keys()
    if any(key[len(prefix) :] in own for key in mine):
        return
    encoder: Any = module.encoder
    encoder_keys = encoder.state_dict(keep_vars=True).keys()
    if not any(key[len(prefix) :] in encoder_keys for key in mine):
        return
    for key in mine:
        state_dict[f"{prefix}encoder.{key[len(prefix) :]}"] = state_dict.pop(key)
