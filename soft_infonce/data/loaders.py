"""Loaders for code-search data: CodeSearchNet, CoSQA and any JSON lines.

Every loader returns a :class:`datasets.Dataset` with at least the columns ``query`` and
``code``, or a :class:`RetrievalSet` (queries ranked against a code base). Malformed input
raises ``ValueError`` naming the file, the line (or record) and what is wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

_SPLITS = ("train", "valid", "test")


@dataclass
class RetrievalSet:
    """Queries to rank against a code base, each with one relevant code.

    Args:
        queries: The natural-language queries.
        codes: The code base every query is ranked against.
        relevant: ``relevant[i]`` is the index in ``codes`` of query ``i``'s true code.
        name: A label for reports.

    Examples:
        >>> task = RetrievalSet(["sort a list"], ["def f(x): return sorted(x)"], [0])
        >>> len(task.queries), len(task.codes)
        (1, 1)
    """

    queries: list[str]
    codes: list[str]
    relevant: list[int]
    name: str = ""

    def __post_init__(self) -> None:
        if not self.queries:
            raise ValueError(f"RetrievalSet {self.name!r}: queries must be non-empty, got 0")
        if not self.codes:
            raise ValueError(f"RetrievalSet {self.name!r}: codes must be non-empty, got 0")
        if len(self.relevant) != len(self.queries):
            raise ValueError(
                f"RetrievalSet {self.name!r}: relevant must have one index per query "
                f"({len(self.queries)}), got {len(self.relevant)}"
            )
        for i, index in enumerate(self.relevant):
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"relevant[{i}] must be an int, got {index!r}")
            if not 0 <= index < len(self.codes):
                raise ValueError(f"relevant[{i}] must be in [0, {len(self.codes)}), got {index!r}")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (line number, object) for each non-blank line of a JSON-lines file."""
    if not path.is_file():
        raise FileNotFoundError(f"JSON-lines file not found: {path}")
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({error.reason})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}:{lineno}: invalid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            yield lineno, record


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno})"
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 ({error.reason})") from None


def _field(record: dict[str, Any], field: str, where: str) -> Any:
    if field not in record:
        raise ValueError(f"{where}: missing field {field!r}")
    return record[field]


def _text(record: dict[str, Any], field: str, where: str) -> str:
    """A string field; a list of strings (a token list) is joined with single spaces."""
    value = _field(record, field, where)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)
    raise ValueError(
        f"{where}: field {field!r} must be a string or a list of strings, "
        f"got {type(value).__name__}"
    )


def _int(record: dict[str, Any], field: str, where: str) -> int:
    value = _field(record, field, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: field {field!r} must be an integer, got {value!r}")
    return value


def _to_dataset(columns: dict[str, list[Any]], source: Path) -> datasets.Dataset:
    import datasets

    if not columns["query"]:
        raise ValueError(f"{source}: no records (an empty split cannot be used)")
    return datasets.Dataset.from_dict(columns)


def _check_split(split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}, got {split!r}")


def _csn_rows(path: Path, use_tokens: bool = True) -> Iterator[tuple[int, str, str, str]]:
    """(line, url, query, code) of a GraphCodeBERT/UniXcoder code-search file."""
    for lineno, record in _iter_jsonl(path):
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
    data_dir: str | Path, split: str, use_tokens: bool = True
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

    Returns:
        A Dataset with columns ``query`` (the docstring tokens joined by spaces), ``code``
        (the code tokens joined by spaces, or the source) and ``url``.

    Examples:
        >>> train = load_codesearchnet("dataset/python", "train")  # doctest: +SKIP
    """
    _check_split(split, _SPLITS)
    path = Path(data_dir) / f"{split}.jsonl"
    columns: dict[str, list[Any]] = {"query": [], "code": [], "url": []}
    for _, url, query, code in _csn_rows(path, use_tokens):
        columns["query"].append(query)
        columns["code"].append(code)
        columns["url"].append(url)
    return _to_dataset(columns, path)


def load_codesearchnet_retrieval(
    data_dir: str | Path, split: str = "test", use_tokens: bool = True
) -> RetrievalSet:
    """The queries of a CodeSearchNet split ranked against ``codebase.jsonl``.

    Each query's true code is the code-base entry with the same ``url`` (as in the
    GraphCodeBERT / UniXcoder evaluation). A url repeated in the code base keeps its first
    entry (a warning says how many repeats there were).

    Args:
        data_dir: The folder of one language, holding ``{split}.jsonl`` and ``codebase.jsonl``.
        split: ``"valid"`` or ``"test"``.
        use_tokens: As in :func:`load_codesearchnet`.

    Returns:
        A RetrievalSet named ``"codesearchnet-{split}"``.

    Raises:
        ValueError: A url of the split is not in the code base (naming file and line).
    """
    _check_split(split, ("valid", "test"))
    data_dir = Path(data_dir)
    codebase_path = data_dir / "codebase.jsonl"
    codes: list[str] = []
    index_of: dict[str, int] = {}
    repeats = 0
    for _, url, _, code in _csn_rows(codebase_path, use_tokens):
        if url in index_of:
            repeats += 1
            continue
        index_of[url] = len(codes)
        codes.append(code)
    if repeats:
        logger.warning("%s: %d repeated urls kept their first entry", codebase_path, repeats)
    if not codes:
        raise ValueError(f"{codebase_path}: no records (an empty code base cannot be used)")
    path = data_dir / f"{split}.jsonl"
    queries: list[str] = []
    relevant: list[int] = []
    for lineno, url, query, _ in _csn_rows(path):
        if url not in index_of:
            raise ValueError(f"{path}:{lineno}: url {url!r} not found in {codebase_path}")
        queries.append(query)
        relevant.append(index_of[url])
    if not queries:
        raise ValueError(f"{path}: no records (an empty split cannot be used)")
    return RetrievalSet(queries, codes, relevant, name=f"codesearchnet-{split}")


def load_code_text(path: str | Path, use_tokens: bool = True) -> datasets.Dataset:
    """Loads a CodeXGLUE Code-Text file (e.g. ``csn-ruby/valid.jsonl``) as query-code pairs.

    Args:
        path: The JSON-lines file.
        use_tokens: Join ``docstring_tokens`` / ``code_tokens`` with spaces (the code-search
            convention) instead of the raw ``docstring`` / ``code`` strings. For Python, the
            raw ``code`` still contains its docstring.

    Returns:
        A Dataset with columns ``query``, ``code`` and ``url``.
    """
    path = Path(path)
    query_field, code_field = (
        ("docstring_tokens", "code_tokens") if use_tokens else ("docstring", "code")
    )
    return load_jsonl(path, query_field, code_field, extra_fields=("url",))


def load_cosqa_pairs(path: str | Path, positives_only: bool = True) -> datasets.Dataset:
    """Loads CoSQA question-code pairs (``cosqa-dev.json``, a JSON list).

    Args:
        path: The JSON file; records have ``doc``, ``code`` and ``label`` (0 or 1).
        positives_only: Keep only the pairs labelled 1 (the code answers the question).

    Returns:
        A Dataset with columns ``query`` (``doc``), ``code`` and ``label``.
    """
    path = Path(path)
    records = _load_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    columns: dict[str, list[Any]] = {"query": [], "code": [], "label": []}
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
        columns["query"].append(query)
        columns["code"].append(code)
        columns["label"].append(label)
    return _to_dataset(columns, path)


def load_cosqa_retrieval(queries_path: str | Path, code_map_path: str | Path) -> RetrievalSet:
    """Loads the CoSQA retrieval task: web queries ranked against a fixed code base.

    Args:
        queries_path: ``cosqa-retrieval-dev-500.json``: a JSON list of records with ``doc``
            and ``retrieval_idx`` (the index of the true code).
        code_map_path: ``code_idx_map.txt``: one JSON object ``{code: index}`` whose indices
            are exactly ``0 .. n-1``.

    Returns:
        A RetrievalSet named ``"cosqa-retrieval"`` (500 queries vs 6,267 codes for the dev set).
    """
    code_map_path = Path(code_map_path)
    code_map = _load_json(code_map_path)
    if not isinstance(code_map, dict) or not code_map:
        raise ValueError(f"{code_map_path}: expected a non-empty JSON object {{code: index}}")
    codes: list[str | None] = [None] * len(code_map)
    for code, index in code_map.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(codes):
            raise ValueError(
                f"{code_map_path}: indices must be integers in [0, {len(codes)}), got {index!r}"
            )
        if codes[index] is not None:
            raise ValueError(f"{code_map_path}: index {index} is given to two codes")
        codes[index] = code
    queries_path = Path(queries_path)
    records = _load_json(queries_path)
    if not isinstance(records, list) or not records:
        raise ValueError(f"{queries_path}: expected a non-empty JSON list of records")
    queries: list[str] = []
    relevant: list[int] = []
    for i, record in enumerate(records):
        where = f"{queries_path}: record {i}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        index = _int(record, "retrieval_idx", where)
        if not 0 <= index < len(codes):
            raise ValueError(
                f"{where}: 'retrieval_idx' must be in [0, {len(codes)}), got {index!r}"
            )
        queries.append(_text(record, "doc", where))
        relevant.append(index)
    return RetrievalSet(queries, codes, relevant, name="cosqa-retrieval")  # type: ignore[arg-type]


def load_jsonl(
    path: str | Path,
    query_field: str = "query",
    code_field: str = "code",
    extra_fields: Sequence[str] = (),
) -> datasets.Dataset:
    """Loads query-code pairs from any JSON-lines file.

    Args:
        path: The file; blank lines are skipped.
        query_field: The field holding the query (a string, or a token list joined by spaces).
        code_field: The field holding the code (likewise).
        extra_fields: Further fields to keep, each under its own name (every line must have them).

    Returns:
        A Dataset with columns ``query``, ``code`` and the extra fields.

    Examples:
        >>> pairs = load_jsonl("pairs.jsonl", "docstring", "function")  # doctest: +SKIP
    """
    path = Path(path)
    clashes = {"query", "code"} & set(extra_fields)
    if clashes:
        raise ValueError(f"extra_fields must not contain 'query' or 'code', got {extra_fields!r}")
    columns: dict[str, list[Any]] = {"query": [], "code": [], **{f: [] for f in extra_fields}}
    for lineno, record in _iter_jsonl(path):
        where = f"{path}:{lineno}"
        columns["query"].append(_text(record, query_field, where))
        columns["code"].append(_text(record, code_field, where))
        for field in extra_fields:
            columns[field].append(_field(record, field, where))
    return _to_dataset(columns, path)


def pairs_to_retrieval_set(dataset: datasets.Dataset, name: str = "") -> RetrievalSet:
    """Turns query-code pairs into a retrieval task over their own (deduplicated) codes.

    Codes are deduplicated exactly, in order of first appearance; every row stays a query
    whose relevant index is its code's position in that list.

    Args:
        dataset: A Dataset (or a dict of lists) with columns ``query`` and ``code``.
        name: The task's name.

    Returns:
        A RetrievalSet with ``len(dataset)`` queries.

    Examples:
        >>> task = pairs_to_retrieval_set({"query": ["a", "b"], "code": ["x", "x"]})
        >>> task.codes, task.relevant
        (['x'], [0, 0])
    """
    columns = getattr(dataset, "column_names", None) or list(dataset)
    missing = [c for c in ("query", "code") if c not in columns]
    if missing:
        raise ValueError(f"dataset must have columns 'query' and 'code', got {list(columns)!r}")
    queries, pair_codes = list(dataset["query"]), list(dataset["code"])
    index_of: dict[str, int] = {}
    relevant = [index_of.setdefault(code, len(index_of)) for code in pair_codes]
    return RetrievalSet(queries, list(index_of), relevant, name=name)
