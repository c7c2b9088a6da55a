"""The bi-encoder model and its input layouts.

* :class:`BiEncoder` (``bi_encoder.py``): pooling, scores, ``encode_texts``, saving/loading;
* input layouts (``layouts.py``): :class:`PlainLayout`, :class:`UniXcoderLayout` and those
  registered with :func:`register_layout` (``GraphCodeBERTLayout``, by
  :mod:`soft_infonce.codesearch.graphcodebert`): ``tokenize`` one side's texts, ``encode`` them;
* ``saving.py``, ``st_format.py``, ``model_card.py``: the saved folder (the library's
  ``bi_encoder.json``, the sentence-transformers modules and the ``README.md`` card).
"""

from __future__ import annotations

from soft_infonce.integrations.hf.modeling.bi_encoder import (
    INPUT_LAYOUTS,
    POOLING_MODES,
    BiEncoder,
)
from soft_infonce.integrations.hf.modeling.folder import CONFIG_NAME, SETTINGS
from soft_infonce.integrations.hf.modeling.layouts import (
    Encoded,
    InputLayout,
    PlainLayout,
    UniXcoderLayout,
    make_layout,
    register_layout,
)

__all__ = [
    "CONFIG_NAME",
    "INPUT_LAYOUTS",
    "POOLING_MODES",
    "SETTINGS",
    "BiEncoder",
    "Encoded",
    "InputLayout",
    "PlainLayout",
    "UniXcoderLayout",
    "make_layout",
    "register_layout",
]
