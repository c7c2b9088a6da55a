"""CoSQA (Huang et al., 2021): web queries with code answers, as pairs or a retrieval task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soft_infonce.codesearch.data.files import Skipped
from soft_infonce.codesearch.data.records import (
    as_path,
    load_json,
    skip_blank,
    to_dataset,
    warn_skipped,
)
from soft_infonce.codesearch.data.records import int_field as _int
from soft_infonce.codesearch.data.records import text_field as _text
from soft_infonce.integrations.hf.retrieval import RetrievalSet

if TYPE_CHECKING:
    import datasets

__all__ = ["load_cosqa_pairs", "load_cosqa_retrieval"]


class _Pairs(list):
    """A JSON object's (key, value) pairs in file order, repeated keys kept."""


def _refuse_repeated_codes(path: Path, distinct: int) -> None:
    """A JSON object keeps the last of repeated keys: find a code given twice and name it."""
    pairs = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_Pairs)
    if len(pairs) == distinct:
        return
    first: dict[str, object] = {}
    for code, index in pairs:
        if code in first:
            line = code.strip().splitlines()[0] if code.strip() else code
            raise ValueError(
                f"{path}: the same code is given twice, with index {first[code]!r} and "
                f"{index!r} (each code must appear once in the map; it begins {line[:80]!r})"
            )
        first[code] = index


def load_cosqa_pairs(
    path: str | Path, positives_only: bool = True, *, skipped: Skipped | None = None
) -> datasets.Dataset:
    """Loads CoSQA question-code pairs (``cosqa-dev.json``, a JSON list).

    Args:
        path: The JSON file; records have ``doc``, ``code`` and ``label`` (0 or 1).
        positives_only: Keep only the pairs labelled 1 (the code answers the question).
        skipped: Filled in place with the records skipped for a blank query or code.

    Returns:
        A Dataset with columns ``query`` (``doc``), ``code`` and ``label``.
    """
    path = as_path(path, "path")
    skipped = skipped if skipped is not None else Skipped()
    before = skipped.total
    records = load_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    columns: dict[str, list[Any]] = {"query": [], "code": [], "label": []}
    kept: list[str] = []
    for i, record in enumerate(records):
        where = f"{path}: record {i}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        label = _int(record, "label", where)
        if label not in (0, 1):
            raise ValueError(f"{where}: field 'label' must be 0 or 1, got {label!r}")
        query, code = _text(record, "doc", where), _text(record, "code", where)
        if positives_only and label != 1:
            continue
        if skip_blank(skipped, where, query, code):
            continue
        columns["query"].append(query)
        columns["code"].append(code)
        columns["label"].append(label)
        kept.append(f"record {i}")
    warn_skipped(path, skipped, before)
    return to_dataset(columns, path, kept)


def load_cosqa_retrieval(
    queries_path: str | Path, code_map_path: str | Path, *, skipped: Skipped | None = None
) -> RetrievalSet:
    """Loads the CoSQA retrieval task: web queries ranked against a fixed code base.

    Blank codes leave the code base (the others keep their order) and blank queries, or
    queries whose true code was blank, are skipped; all are counted.

    Args:
        queries_path: ``cosqa-retrieval-dev-500.json``: a JSON list of records with ``doc``
            and ``retrieval_idx`` (the index of the true code).
        code_map_path: ``code_idx_map.txt``: one JSON object ``{code: index}`` whose indices
            are exactly ``0 .. n-1``.
        skipped: Filled in place with the skipped codes and queries.

    Returns:
        A RetrievalSet named ``"cosqa-retrieval"`` (500 queries vs 6,267 codes for the dev set).
    """
    skipped = skipped if skipped is not None else Skipped()
    before = skipped.total
    code_map_path = as_path(code_map_path, "code_map_path")
    code_map = load_json(code_map_path)
    if not isinstance(code_map, dict) or not code_map:
        raise ValueError(f"{code_map_path}: expected a non-empty JSON object {{code: index}}")
    _refuse_repeated_codes(code_map_path, len(code_map))
    slots: list[str | None] = [None] * len(code_map)
    for code, index in code_map.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(slots):
            raise ValueError(
                f"{code_map_path}: indices must be integers in [0, {len(slots)}), got {index!r}"
            )
        if slots[index] is not None:
            raise ValueError(f"{code_map_path}: index {index} is given to two codes")
        slots[index] = code
    codes: list[str] = []
    new_index: list[int | None] = []  # old index -> index in codes (None: blank, left out)
    for index, code in enumerate(slots):
        if skip_blank(skipped, f"{code_map_path}: index {index}", code=code):
            new_index.append(None)
            continue
        new_index.append(len(codes))
        codes.append(code)  # type: ignore[arg-type]
    warn_skipped(code_map_path, skipped, before)
    before = skipped.total
    queries_path = as_path(queries_path, "queries_path")
    records = load_json(queries_path)
    if not isinstance(records, list) or not records:
        raise ValueError(f"{queries_path}: expected a non-empty JSON list of records")
    queries: list[str] = []
    relevant: list[int] = []
    for i, record in enumerate(records):
        where = f"{queries_path}: record {i}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        index = _int(record, "retrieval_idx", where)
        if not 0 <= index < len(slots):
            raise ValueError(
                f"{where}: 'retrieval_idx' must be in [0, {len(slots)}), got {index!r}"
            )
        query = _text(record, "doc", where)
        if skip_blank(skipped, where, query):
            continue
        if new_index[index] is None:
            skipped.add("true code blank", where)
            continue
        queries.append(query)
        relevant.append(new_index[index])  # type: ignore[arg-type]
    warn_skipped(queries_path, skipped, before)
    if not queries or not codes:
        raise ValueError(f"{queries_path}: no usable records (all blank or pointing at blanks)")
    return RetrievalSet(queries, codes, relevant, name="cosqa-retrieval")
