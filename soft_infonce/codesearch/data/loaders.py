"""Loaders for code-search data: CodeSearchNet, CoSQA and any JSON lines.

Every loader returns a :class:`datasets.Dataset` with at least the columns ``query`` and
``code``, or a :class:`RetrievalSet` (queries ranked against a code base). Malformed input
raises ``ValueError`` naming the file, the line (or record) and what is wrong. Rows with a
blank query or code are **skipped and counted** (one warning per file, and the counts by
reason with the first ``file:line`` in the ``skipped`` argument when one is given), so they
never reach training; see :mod:`soft_infonce.codesearch.data.records`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soft_infonce.codesearch.data.cosqa import load_cosqa_pairs, load_cosqa_retrieval
from soft_infonce.codesearch.data.files import Skipped
from soft_infonce.codesearch.data.records import (
    as_path,
    iter_jsonl,
    skip_blank,
    to_dataset,
    warn_skipped,
)
from soft_infonce.codesearch.data.records import field as _field
from soft_infonce.codesearch.data.records import text_field as _text
from soft_infonce.integrations.hf.retrieval import RetrievalSet, pairs_to_retrieval_set

if TYPE_CHECKING:
    import datasets

__all__ = [
    "RetrievalSet",
    "Skipped",
    "load_code_text",
    "load_codesearchnet",
    "load_codesearchnet_retrieval",
    "load_cosqa_pairs",
    "load_cosqa_retrieval",
    "load_jsonl",
    "pairs_to_retrieval_set",
]

logger = logging.getLogger(__name__)

_SPLITS = ("train", "valid", "test")


def _check_split(split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}, got {split!r}")


def _csn_rows(path: Path, use_tokens: bool = True) -> Iterator[tuple[int, str, str, str]]:
    """(line, url, query, code) of a GraphCodeBERT/UniXcoder code-search file."""
    for lineno, record in iter_jsonl(path):
        where = f"{path}:{lineno}"
        url = _text(record, "url", where)
        code_field = "code_tokens" if use_tokens else "original_string"
        if not use_tokens and "original_string" not in record and "code" in record:
            code_field = "code"
        yield (
            lineno,
            url,
            _text(record, "docstring_tokens", where),
            _text(record, code_field, where),
        )


def load_codesearchnet(
    data_dir: str | Path,
    split: str,
    use_tokens: bool = True,
    *,
    skipped: Skipped | None = None,
) -> datasets.Dataset:
    """Loads one split of CodeSearchNet in the GraphCodeBERT / UniXcoder code-search layout.

    ``data_dir`` holds ``train.jsonl``, ``valid.jsonl``, ``test.jsonl`` and
    ``codebase.jsonl``; each line has ``url``, ``docstring_tokens`` and ``code_tokens``.

    Args:
        data_dir: The folder of one language (e.g. ``dataset/python``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        use_tokens: Code as its tokens joined by spaces (the convention); ``False`` gives the
            source text (``original_string``, else ``code``), which GraphCodeBERT's data-flow
            parser needs.
        skipped: Filled in place with the rows skipped for a blank query or code.

    Returns:
        A Dataset with columns ``query`` (the docstring tokens joined by spaces), ``code``
        (the code tokens joined by spaces, or the source) and ``url``.

    Examples:
        >>> train = load_codesearchnet("dataset/python", "train")  # doctest: +SKIP
    """
    _check_split(split, _SPLITS)
    skipped = skipped if skipped is not None else Skipped()
    before = skipped.total
    path = as_path(data_dir, "data_dir") / f"{split}.jsonl"
    columns: dict[str, list[Any]] = {"query": [], "code": [], "url": []}
    lines: list[int] = []
    for lineno, url, query, code in _csn_rows(path, use_tokens):
        if skip_blank(skipped, f"{path}:{lineno}", query, code):
            continue
        columns["query"].append(query)
        columns["code"].append(code)
        columns["url"].append(url)
        lines.append(lineno)
    warn_skipped(path, skipped, before)
    return to_dataset(columns, path, lines)


def load_codesearchnet_retrieval(
    data_dir: str | Path,
    split: str = "test",
    use_tokens: bool = True,
    *,
    skipped: Skipped | None = None,
) -> RetrievalSet:
    """The queries of a CodeSearchNet split ranked against ``codebase.jsonl``.

    Each query's true code is the code-base entry with the same ``url`` (as in the
    GraphCodeBERT / UniXcoder evaluation). A url repeated in the code base keeps its first
    entry (a warning says how many repeats there were). Code-base entries with a blank code
    are skipped, and so are queries that are blank or whose true code was skipped (all
    counted, reasons ``"blank code"``, ``"blank query"``, ``"true code blank"``).

    Args:
        data_dir: The folder of one language, holding ``{split}.jsonl`` and ``codebase.jsonl``.
        split: ``"valid"`` or ``"test"``.
        use_tokens: As in :func:`load_codesearchnet`.
        skipped: Filled in place with the skipped rows.

    Returns:
        A RetrievalSet named ``"codesearchnet-{split}"``.

    Raises:
        ValueError: A url of the split is not in the code base (naming file and line).
    """
    _check_split(split, ("valid", "test"))
    skipped = skipped if skipped is not None else Skipped()
    before = skipped.total
    data_dir = as_path(data_dir, "data_dir")
    codebase_path = data_dir / "codebase.jsonl"
    codes: list[str] = []
    index_of: dict[str, int | None] = {}  # None: the entry's code is blank
    repeats = 0
    for lineno, url, _, code in _csn_rows(codebase_path, use_tokens):
        if url in index_of:
            repeats += 1
            continue
        if skip_blank(skipped, f"{codebase_path}:{lineno}", code=code):
            index_of[url] = None
            continue
        index_of[url] = len(codes)
        codes.append(code)
    if repeats:
        logger.warning("%s: %d repeated urls kept their first entry", codebase_path, repeats)
    warn_skipped(codebase_path, skipped, before)
    if not codes:
        raise ValueError(f"{codebase_path}: no records (an empty code base cannot be used)")
    before = skipped.total
    path = data_dir / f"{split}.jsonl"
    queries: list[str] = []
    relevant: list[int] = []
    for lineno, url, query, _ in _csn_rows(path):
        if url not in index_of:
            raise ValueError(f"{path}:{lineno}: url {url!r} not found in {codebase_path}")
        index = index_of[url]
        if skip_blank(skipped, f"{path}:{lineno}", query):
            continue
        if index is None:
            skipped.add("true code blank", f"{path}:{lineno}")
            continue
        queries.append(query)
        relevant.append(index)
    warn_skipped(path, skipped, before)
    if not queries:
        raise ValueError(f"{path}: no records (an empty split cannot be used)")
    return RetrievalSet(queries, codes, relevant, name=f"codesearchnet-{split}")


def load_code_text(
    path: str | Path, use_tokens: bool = True, *, skipped: Skipped | None = None
) -> datasets.Dataset:
    """Loads a CodeXGLUE Code-Text file (e.g. ``csn-ruby/valid.jsonl``) as query-code pairs.

    Args:
        path: The JSON-lines file.
        use_tokens: Join ``docstring_tokens`` / ``code_tokens`` with spaces (the code-search
            convention) instead of the raw ``docstring`` / ``code`` strings. For Python, the
            raw ``code`` still contains its docstring.
        skipped: Filled in place with the rows skipped for a blank query or code.

    Returns:
        A Dataset with columns ``query``, ``code`` and ``url``.
    """
    path = as_path(path, "path")
    query_field, code_field = (
        ("docstring_tokens", "code_tokens") if use_tokens else ("docstring", "code")
    )
    return load_jsonl(path, query_field, code_field, extra_fields=("url",), skipped=skipped)


def load_jsonl(
    path: str | Path,
    query_field: str = "query",
    code_field: str = "code",
    extra_fields: str | Sequence[str] = (),
    *,
    skipped: Skipped | None = None,
) -> datasets.Dataset:
    """Loads query-code pairs from any JSON-lines file.

    Args:
        path: The file; blank lines are skipped.
        query_field: The field holding the query (a string, or a token list joined by spaces).
        code_field: The field holding the code (likewise).
        extra_fields: Further fields to keep, each under its own name (every line must have
            them, each with one type throughout the file); a plain string is one field.
        skipped: Filled in place with the rows skipped for a blank query or code.

    Returns:
        A Dataset with columns ``query``, ``code`` and the extra fields.

    Examples:
        >>> pairs = load_jsonl("pairs.jsonl", "docstring", "function")  # doctest: +SKIP
    """
    path = as_path(path, "path")
    for name, value in (("query_field", query_field), ("code_field", code_field)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    extra_fields = (extra_fields,) if isinstance(extra_fields, str) else tuple(extra_fields)
    if not all(isinstance(f, str) for f in extra_fields):
        raise TypeError(f"extra_fields must hold field names (str), got {extra_fields!r:.80}")
    if {"query", "code"} & set(extra_fields) or len(set(extra_fields)) != len(extra_fields):
        raise ValueError(
            f"extra_fields must not contain 'query', 'code' or a repeat, got {extra_fields!r}"
        )
    skipped = skipped if skipped is not None else Skipped()
    before = skipped.total
    columns: dict[str, list[Any]] = {"query": [], "code": [], **{f: [] for f in extra_fields}}
    lines: list[int] = []
    for lineno, record in iter_jsonl(path):
        where = f"{path}:{lineno}"
        query, code = _text(record, query_field, where), _text(record, code_field, where)
        extras = [_field(record, f, where) for f in extra_fields]
        if skip_blank(skipped, where, query, code):
            continue
        columns["query"].append(query)
        columns["code"].append(code)
        for name, value in zip(extra_fields, extras):
            columns[name].append(value)
        lines.append(lineno)
    warn_skipped(path, skipped, before)
    return to_dataset(columns, path, lines)
