"""One search result, and the fields an index keeps for each entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HIT_FIELDS", "SearchHit", "record_problem"]

#: The metadata an index keeps per entry, with each field's type (``None`` allowed).
HIT_FIELDS: dict[str, type] = {
    "name": str, "path": str, "line": int, "end_line": int, "language": str, "text": str,
}  # fmt: skip


def record_problem(record: Any) -> str | None:
    """What is wrong with one entry's metadata, or ``None``: an object of the known fields,
    each of its type or null (what :attr:`HIT_FIELDS` lists and a saved index can hold)."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for key, value in record.items():
        kind = HIT_FIELDS.get(key)
        if kind is None:
            return f"unknown field {key!r} (expected {sorted(HIT_FIELDS)})"
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"field {key!r} must be {kind.__name__} or null, got {value!r:.60}"
    return None


@dataclass(frozen=True)
class SearchHit:
    """One result: ``score`` is the model's similarity, ``scale * q . c``.

    ``path``, ``line``, ``end_line`` and ``language`` are ``None`` for an indexed text;
    ``text`` is the indexed text when the index keeps texts.
    """

    score: float
    id: int
    name: str | None = None
    path: str | None = None
    line: int | None = None
    end_line: int | None = None
    language: str | None = None
    text: str | None = None

    @property
    def location(self) -> str:
        """``path:line``, or ``#id`` for an indexed text."""
        return f"{self.path}:{self.line}" if self.path is not None else f"#{self.id}"

    def __str__(self) -> str:
        return f"{self.score:9.4f}  {self.location}  {self.name or ''}".rstrip()
