"""Reading JSON and JSON-lines records for the loaders, every problem named by file and line.

Rules every loader follows (:mod:`soft_infonce.codesearch.data.loaders`):

* malformed input (invalid UTF-8 or JSON, a missing or mistyped field, a value that cannot sit
  in one column with the others) raises ``ValueError`` naming the file, the line (or record)
  and the problem; nothing surfaces as a ``json`` or ``pyarrow`` error;
* a **blank** text (empty or only whitespace, or a token list joining to that) cannot train or
  be searched for: its row is **skipped and counted**, never silently kept. The counts, by
  reason (``"blank query"``, ``"blank code"``, ...) with the first ``file:line`` of each, go
  into the caller's :class:`~soft_infonce.codesearch.data.files.Skipped` and one warning per file; a
  file left with no rows raises ``ValueError``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soft_infonce.checks import is_blank
from soft_infonce.codesearch.data.files import Skipped

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger("soft_infonce.codesearch.data.loaders")

__all__ = [
    "Skipped",
    "as_path",
    "int_field",
    "is_blank",
    "iter_jsonl",
    "load_json",
    "skip_blank",
    "text_field",
    "to_dataset",
    "warn_skipped",
]


def as_path(value: Any, name: str) -> Path:
    """``value`` as a Path; anything but a str or os.PathLike is a TypeError naming ``name``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(value)


def _decode_error(where: str, error: json.JSONDecodeError) -> ValueError:
    return ValueError(f"{where}: invalid JSON ({error.msg} at column {error.colno})")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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
                raise _decode_error(f"{path}:{lineno}", error) from None
            except RecursionError:
                raise ValueError(f"{path}:{lineno}: JSON nested too deeply") from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            yield lineno, record


def load_json(path: Path) -> Any:
    """A whole JSON file; errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _decode_error(f"{path}:{error.lineno}", error) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 ({error.reason})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def field(record: dict[str, Any], name: str, where: str) -> Any:
    if name not in record:
        raise ValueError(f"{where}: missing field {name!r}")
    return record[name]


def text_field(record: dict[str, Any], name: str, where: str) -> str:
    """A string field; a list of strings (a token list) is joined with single spaces."""
    value = field(record, name, where)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)
    raise ValueError(
        f"{where}: field {name!r} must be a string or a list of strings, got {type(value).__name__}"
    )


def int_field(record: dict[str, Any], name: str, where: str) -> int:
    value = field(record, name, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: field {name!r} must be an integer, got {value!r:.60}")
    return value


def warn_skipped(source: Path, skipped: Skipped, before: int) -> None:
    """One warning for the rows of ``source`` skipped since ``skipped.total`` was ``before``."""
    if skipped.total > before:
        logger.warning(
            "%s: skipped %d row(s) with a blank text: %s",
            source,
            skipped.total - before,
            skipped.summary(),
        )


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, OverflowError, TypeError, ValueError)


def _first_bad_row(values: Sequence[Any]) -> int | None:
    """The index of the first value that cannot join the ones before it in one arrow column."""
    import pyarrow as pa

    errors = _arrow_errors()
    try:
        pa.array(values)
        return None
    except errors:
        pass
    low, high = 1, len(values)  # the shortest failing prefix has length in [low, high]
    while low < high:
        middle = (low + high) // 2
        try:
            pa.array(values[:middle])
            low = middle + 1
        except errors:
            high = middle
    return low - 1


def to_dataset(
    columns: dict[str, list[Any]], source: Path, lines: Sequence[int | str] | None = None
) -> datasets.Dataset:
    """A Dataset of the columns; a value arrow cannot store with its column names its line.

    Args:
        columns: name -> values, one per row.
        source: the file, for messages.
        lines: each row's line number (or record label), for messages.
    """
    import datasets

    if not columns["query"]:
        raise ValueError(f"{source}: no records (an empty split cannot be used)")
    try:
        return datasets.Dataset.from_dict(columns)
    except _arrow_errors() as error:
        for name, values in columns.items():
            row = _first_bad_row(values)
            if row is None:
                continue
            where = f"{source}:{lines[row]}" if lines is not None else f"{source}: row {row}"
            first = type(values[0]).__name__
            raise ValueError(
                f"{where}: field {name!r} holds {type(values[row]).__name__} "
                f"{values[row]!r:.60}, which cannot share a column with the earlier rows' "
                f"values (the first is {first}); give the field one type in every line"
            ) from None
        raise ValueError(f"{source}: the records cannot form a dataset ({error})") from None


def skip_blank(
    skipped: Skipped, where: str, query: str | None = None, code: str | None = None
) -> bool:
    """Whether the row must be skipped for a blank text (counted in ``skipped``)."""
    for side, text in (("query", query), ("code", code)):
        if text is not None and is_blank(text):
            skipped.add(f"blank {side}", where)
            return True
    return False
