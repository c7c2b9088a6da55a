"""The bi-encoder model and its input layouts.

* :class:`BiEncoder` (``bi_encoder.py``): pooling, scores, ``encode_texts``, saving/loading;
* input layouts (``layouts.py``): :class:`PlainLayout`, :class:`UniXcoderLayout`,
  :class:`GraphCodeBERTLayout` (``tokenize`` one side's texts, ``encode`` them);
* ``saving.py``, ``st_format.py``, ``model_card.py``: the saved folder (the library's
  ``bi_encoder.json``, the sentence-transformers modules and the ``README.md`` card).
"""

from __future__ import annotations

from .bi_encoder import INPUT_LAYOUTS, POOLING_MODES, SETTINGS, BiEncoder
from .layouts import (
    Encoded,
    GraphCodeBERTLayout,
    InputLayout,
    PlainLayout,
    UniXcoderLayout,
    make_layout,
)
from .saving import CONFIG_NAME

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
