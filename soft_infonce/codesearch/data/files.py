"""Walking source trees safely: regular files only, bounded reads, every failure counted.

Mining pairs (:mod:`soft_infonce.codesearch.data.mining`) and indexing a code base for search both
read
arbitrary folders a user points at, which may hold FIFOs (a read blocks forever), links to
devices (``/dev/zero`` never ends), link loops, unreadable or huge files. Nothing here
follows a link to a folder, opens anything but a regular file, or reads more than
``max_bytes``; each file passed over is counted under its reason in a :class:`Skipped`.
"""

from __future__ import annotations

import io
import os
import stat
import tokenize
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PRUNED_DIRS",
    "TEST_DIRS",
    "Skipped",
    "SourceFileError",
    "as_paths",
    "is_test_file",
    "iter_source_files",
    "read_source",
]

TEST_DIRS = frozenset({"test", "tests", "testing"})
PRUNED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
#: Files larger than this are passed over by default (generated code, data blobs).
MAX_BYTES = 2_000_000


class SourceFileError(Exception):
    """A file that cannot be used; ``reason`` is a short category for the counts."""

    def __init__(self, reason: str, path: Path, detail: str = "") -> None:
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason, self.path = reason, path


@dataclass
class Skipped:
    """Files passed over, counted by reason, with the first few paths of each reason."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, path: Path | str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(str(path))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line, e.g. ``"2 not a regular file (first: a.py), 1 too large (first: b.py)"``."""
        return ", ".join(
            f"{n} {reason} (first: {self.examples[reason][0]})"
            for reason, n in self.counts.most_common()
        )


def as_paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """A path or an iterable of paths as a list (a plain string is one path, never its
    characters)."""
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    if isinstance(paths, (bytes, bytearray)):
        raise TypeError("paths must be str or os.PathLike (or a list of them), got bytes")
    try:
        items = list(paths)
    except TypeError:
        raise TypeError(
            f"paths must be a path or a list of paths, got {type(paths).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths must hold str or os.PathLike items, got {type(item).__name__}")
    return [Path(p) for p in items]


def is_test_file(name: str) -> bool:
    """Whether a Python file name is a test module (``test_*.py``, ``*_test.py``, ...)."""
    return (
        name.startswith("test_")
        or name.endswith(("_test.py", "_tests.py"))
        or name in {"test.py", "tests.py", "conftest.py"}
    )


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = path.stat()  # follows a link to a file: its target must be regular too
    except (OSError, RuntimeError):  # missing, no permission, link loop
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def iter_source_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    suffixes: str | tuple[str, ...] = (".py",),
    *,
    skip_tests: bool = True,
    skipped: Skipped | None = None,
) -> Iterator[Path]:
    """The regular files with one of ``suffixes`` under ``paths``, each once, in sorted order.

    Folders are searched recursively without following links to folders; hidden folders,
    ``__pycache__``, ``site-packages``, ``node_modules`` (and, with ``skip_tests``, test
    folders and test files) are left out. A named path that does not exist raises
    ``ValueError``; anything else unusable (a FIFO, a device, a dangling link or link loop)
    is counted in ``skipped`` and passed over.

    Args:
        paths: files and/or folders; a plain string is one path.
        suffixes: file endings to keep, e.g. ``(".py",)`` or ``(".rb", ".go")``; a plain
            string is one ending.
        skip_tests: leave out test files and folders (Python naming rules).
        skipped: counts of what was passed over, filled in place.

    Yields:
        The files.
    """
    if isinstance(suffixes, str):
        suffixes = (suffixes,)  # one ending, never its characters
    suffixes = tuple(suffixes)
    if not all(isinstance(s, str) for s in suffixes):
        raise TypeError(f"suffixes must be file endings (str), got {suffixes!r:.80}")
    skipped = skipped if skipped is not None else Skipped()
    seen: set[Path] = set()
    for root in as_paths(paths):
        if not os.path.lexists(root):
            raise ValueError(f"paths must be existing files or folders, got {str(root)!r}")
        if root.is_dir():
            candidates = _walk(root, suffixes, skip_tests)
        elif root.suffix in suffixes or not suffixes:
            candidates = iter([root])
        else:
            skipped.add("not a source file", root)
            continue
        for path in candidates:
            if skip_tests and is_test_file(path.name):
                continue
            if _regular(path) is None:
                skipped.add("not a regular file", path)
                continue
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path


def _walk(root: Path, suffixes: tuple[str, ...], skip_tests: bool) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in PRUNED_DIRS
            and not d.startswith(".")
            and not (skip_tests and d in TEST_DIRS)
        )
        for name in sorted(names):
            if name.endswith(suffixes):
                yield Path(folder) / name


def read_source(path: Path, max_bytes: int = MAX_BYTES, *, python: bool = True) -> str:
    """A source file's text, read with a bound, newlines normalised to ``\\n``.

    Args:
        path: the file; it must be a regular file (a FIFO would block, a device never ends).
        max_bytes: larger files raise (reason ``"too large"``).
        python: decode with the file's PEP 263 coding line (else UTF-8).

    Returns:
        The text.

    Raises:
        SourceFileError: with a ``reason`` of ``"not a regular file"``, ``"unreadable"``,
            ``"too large"`` or ``"not decodable"``.
    """
    if _regular(path) is None:
        raise SourceFileError("not a regular file", path)
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after the check, open won't block.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise SourceFileError("not a regular file", path)
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise SourceFileError("unreadable", path, error.strerror or str(error)) from error
    if len(data) > max_bytes:
        raise SourceFileError("too large", path, f"over {max_bytes} bytes")
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0] if python else "utf-8"
        text = data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError) as error:
        raise SourceFileError("not decodable", path, str(error)) from error
    return text.replace("\r\n", "\n").replace("\r", "\n")
