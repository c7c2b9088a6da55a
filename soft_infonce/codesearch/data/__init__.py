"""Data for code search: loaders (CodeSearchNet, CoSQA, JSON lines), mining of pairs and of
hard negatives.

Names are imported on first use (PEP 562), so importing the package never imports ``datasets``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "load_code_text": "loaders",
    "load_codesearchnet": "loaders",
    "load_codesearchnet_retrieval": "loaders",
    "load_cosqa_pairs": "loaders",
    "load_cosqa_retrieval": "loaders",
    "load_jsonl": "loaders",
    "default_corpus": "mining",
    "mine_pairs": "mining",
    "mine_hard_negatives": "hard_negatives",
}

__all__ = [
    "default_corpus",
    "load_code_text",
    "load_codesearchnet",
    "load_codesearchnet_retrieval",
    "load_cosqa_pairs",
    "load_cosqa_retrieval",
    "load_jsonl",
    "mine_hard_negatives",
    "mine_pairs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from soft_infonce.codesearch.data.hard_negatives import mine_hard_negatives
    from soft_infonce.codesearch.data.loaders import (
        load_code_text,
        load_codesearchnet,
        load_codesearchnet_retrieval,
        load_cosqa_pairs,
        load_cosqa_retrieval,
        load_jsonl,
    )
    from soft_infonce.codesearch.data.mining import default_corpus, mine_pairs
