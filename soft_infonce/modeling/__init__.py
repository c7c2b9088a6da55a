"""The bi-encoder model and its input layouts.

* :class:`BiEncoder` (``bi_encoder.py``): pooling, scores, ``encode_texts``, saving/loading;
* input layouts (``layouts.py``): :class:`PlainLayout`, :class:`UniXcoderLayout` and
  :class:`GraphCodeBERTLayout` (from ``soft_infonce.graphcodebert.layout``, imported on first
  use): ``tokenize`` one side's texts, ``encode`` them;
* ``saving.py``, ``st_format.py``, ``model_card.py``: the saved folder (the library's
  ``bi_encoder.json``, the sentence-transformers modules and the ``README.md`` card).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bi_encoder import INPUT_LAYOUTS, POOLING_MODES, SETTINGS, BiEncoder
from .layouts import Encoded, InputLayout, PlainLayout, UniXcoderLayout, make_layout
from .saving import CONFIG_NAME

if TYPE_CHECKING:
    from soft_infonce.graphcodebert.layout import GraphCodeBERTLayout

__all__ = [
    "CONFIG_NAME",
    "INPUT_LAYOUTS",
    "POOLING_MODES",
    "SETTINGS",
    "BiEncoder",
    "Encoded",
    "GraphCodeBERTLayout",
    "InputLayout",
    "PlainLayout",
    "UniXcoderLayout",
    "make_layout",
]


def __getattr__(name: str) -> Any:
    if name == "GraphCodeBERTLayout":  # lazily: the graphcodebert package imports this one
        from soft_infonce.graphcodebert.layout import GraphCodeBERTLayout

        return GraphCodeBERTLayout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
