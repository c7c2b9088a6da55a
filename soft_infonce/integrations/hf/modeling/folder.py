"""What a saved BiEncoder folder is made of: its settings file, JSON helpers and the model's face.

``saving.py``, ``st_format.py`` and ``model_card.py`` write a folder from a model through
:class:`SavedModel` (the attributes they read), so none of them imports ``bi_encoder.py``, which
imports them.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from soft_infonce.integrations.hf.modeling.layouts import InputLayout

CONFIG_NAME = "bi_encoder.json"
#: The settings ``bi_encoder.json`` records (and ``from_pretrained`` may override).
SETTINGS = ("pooling", "normalize", "scale", "input_layout", "language", "data_flow_length")


class SavedModel(Protocol):
    """The parts of a :class:`~soft_infonce.integrations.hf.modeling.BiEncoder` a saved folder
    is written from."""

    @property
    def encoder(self) -> Any: ...
    @property
    def tokenizer(self) -> Any: ...
    @property
    def layout(self) -> InputLayout: ...
    @property
    def input_layout(self) -> str: ...
    @property
    def pooling(self) -> str: ...
    @property
    def normalize(self) -> bool: ...
    @property
    def embedding_dim(self) -> int: ...
    def get_config_dict(self) -> dict[str, Any]: ...
    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...
    def modules(self) -> Any: ...


def read_json(file: str | os.PathLike, what: str = "a JSON object") -> Any:
    """Read a JSON file; invalid JSON raises a ``ValueError`` that names the file."""
    try:
        with open(file, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{os.fspath(file)} must hold {what}, got invalid JSON: {error}"
        ) from error


def write_json(file: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as indented JSON with a final newline."""
    with open(file, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
