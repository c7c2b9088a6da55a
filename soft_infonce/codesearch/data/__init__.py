"""Data for code search: loaders (CodeSearchNet, CoSQA, JSON lines), mining of pairs and of
hard negatives, and the data report on near-duplicates and likely false negatives.

``datasets`` is imported by the loaders when they run, not when this package is imported.
"""

from __future__ import annotations

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
from soft_infonce.codesearch.data.report import inspect_pairs

__all__ = [
    "default_corpus",
    "inspect_pairs",
    "load_code_text",
    "load_codesearchnet",
    "load_codesearchnet_retrieval",
    "load_cosqa_pairs",
    "load_cosqa_retrieval",
    "load_jsonl",
    "mine_hard_negatives",
    "mine_pairs",
]
