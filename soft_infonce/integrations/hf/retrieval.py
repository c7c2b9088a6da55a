"""Retrieval tasks: queries ranked against a code base, each with one relevant code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from soft_infonce.checks import is_blank

if TYPE_CHECKING:
    import datasets

__all__ = ["RetrievalSet", "pairs_to_retrieval_set"]


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
        for side in ("queries", "codes"):
            for i, text in enumerate(getattr(self, side)):
                if not isinstance(text, str):
                    raise TypeError(
                        f"RetrievalSet {self.name!r}: {side}[{i}] must be a str, "
                        f"got {type(text).__name__}"
                    )
                if is_blank(text):
                    raise ValueError(
                        f"RetrievalSet {self.name!r}: {side}[{i}] is blank (the loaders skip "
                        "blank texts; drop it before building the set)"
                    )
        for i, index in enumerate(self.relevant):
            if isinstance(index, bool) or not isinstance(index, int):
                raise ValueError(f"relevant[{i}] must be an int, got {index!r}")
            if not 0 <= index < len(self.codes):
                raise ValueError(f"relevant[{i}] must be in [0, {len(self.codes)}), got {index!r}")


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
    if len(queries) != len(pair_codes):
        raise ValueError(
            f"dataset columns 'query' and 'code' must have one entry per row, got "
            f"{len(queries)} and {len(pair_codes)}"
        )
    for i, code in enumerate(pair_codes):
        if not isinstance(code, str):
            raise TypeError(f"dataset['code'][{i}] must be a str, got {type(code).__name__}")
    index_of: dict[str, int] = {}
    relevant = [index_of.setdefault(code, len(index_of)) for code in pair_codes]
    return RetrievalSet(queries, list(index_of), relevant, name=name)


def as_retrieval_set(data: Any, name: str) -> RetrievalSet:
    """``data`` as a :class:`RetrievalSet`: itself, or validation pairs ranked among their own
    codes (a Dataset with ``query`` and ``code`` columns)."""
    if isinstance(data, RetrievalSet):
        return data
    if hasattr(data, "column_names") and {"query", "code"} <= set(data.column_names):
        return pairs_to_retrieval_set(data, name=name)
    raise ValueError(
        f"eval_dataset {name!r} must be a RetrievalSet or a Dataset with 'query' and 'code' "
        f"columns, got {type(data).__name__}"
    )
