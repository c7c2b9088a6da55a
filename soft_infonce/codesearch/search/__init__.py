"""Code search with a trained bi-encoder: index a code base's functions, then query it.

Needs FAISS: ``pip install "soft-infonce[search]"`` (and ``"soft-infonce[graphcodebert]"`` for
the tree-sitter parsers of Ruby, Go, Java, JavaScript and PHP). See ``docs/search.md``.

Examples:
    >>> from soft_infonce.codesearch.search import CodeIndex  # doctest: +SKIP
    >>> index = CodeIndex("my-model/", index_type="flat")  # doctest: +SKIP
    >>> index.add_paths(["src/", "lib/"])  # doctest: +SKIP
    >>> index.search("read a json file", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

from soft_infonce.codesearch.search.encoders import Encoder, load_encoder
from soft_infonce.codesearch.search.extract import (
    LANGUAGE_SUFFIXES,
    CodeUnit,
    extract_functions,
    iter_code_units,
)
from soft_infonce.codesearch.search.index import CodeIndex, SearchHit

__all__ = [
    "LANGUAGE_SUFFIXES",
    "CodeIndex",
    "CodeUnit",
    "Encoder",
    "SearchHit",
    "extract_functions",
    "iter_code_units",
    "load_encoder",
]
