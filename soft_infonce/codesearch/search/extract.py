"""Functions of a code base, as the units a code-search index holds.

Python is read with :mod:`ast`; Ruby, Go, Java, JavaScript and PHP with the tree-sitter
grammars the library already uses for GraphCodeBERT (``pip install "soft-infonce[graphcodebert]"``).
A unit is a function or method with its source, path, first line and (qualified) name.
Functions nested inside functions are part of their parent, as in CodeSearchNet. Files are
walked with :func:`soft_infonce.codesearch.data.files.iter_source_files` (regular files only,
bounded
reads); a file that cannot be read, decoded or parsed is counted in a
:class:`~soft_infonce.codesearch.data.files.Skipped` and passed over, never fatal.
"""

from __future__ import annotations

import ast
import os
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soft_infonce.codesearch.data.files import (
    Skipped,
    SourceFileError,
    iter_source_files,
    read_source,
)

__all__ = ["LANGUAGE_SUFFIXES", "CodeUnit", "extract_functions", "iter_code_units"]

#: File endings of each language that can be indexed.
LANGUAGE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "python": (".py",),
    "ruby": (".rb",),
    "go": (".go",),
    "java": (".java",),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"),
    "php": (".php",),
}

# tree-sitter node types: functions, and the containers that qualify their names.
_FUNCTIONS: dict[str, frozenset[str]] = {
    "ruby": frozenset({"method", "singleton_method"}),
    "go": frozenset({"function_declaration", "method_declaration"}),
    "java": frozenset({"method_declaration", "constructor_declaration"}),
    "javascript": frozenset(
        {"function_declaration", "generator_function_declaration", "method_definition"}
    ),
    "php": frozenset({"function_definition", "method_declaration"}),
}
_CONTAINERS = frozenset(
    {
        "class", "module", "class_declaration", "interface_declaration", "enum_declaration",
        "record_declaration", "trait_declaration",
    }
)  # fmt: skip
_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "generator_function"})


@dataclass(frozen=True)
class CodeUnit:
    """One function of a code base.

    Attributes:
        code: Its source, dedented.
        path: The file it comes from.
        line: Its first line (1-based; the ``def`` line for Python).
        end_line: Its last line.
        name: Its name, qualified by enclosing classes (``Reader.read``).
        language: One of :data:`LANGUAGE_SUFFIXES`.
    """

    code: str
    path: str
    line: int
    end_line: int
    name: str
    language: str


def _language_of(path: Path) -> str | None:
    for language, suffixes in LANGUAGE_SUFFIXES.items():
        if path.suffix in suffixes:
            return language
    return None


def extract_functions(text: str, language: str, path: str = "<string>") -> list[CodeUnit]:
    """The functions and methods defined in one file's ``text``.

    Args:
        text: The file's source.
        language: One of :data:`LANGUAGE_SUFFIXES`.
        path: Recorded in each unit.

    Returns:
        The units in source order.

    Raises:
        ValueError: ``language`` is not supported, or the text does not parse (a Python
            ``SyntaxError``, or a tree-sitter tree with errors).
    """
    if language not in LANGUAGE_SUFFIXES:
        raise ValueError(f"language must be one of {sorted(LANGUAGE_SUFFIXES)}, got {language!r}")
    if language == "python":
        return _python_functions(text, path)
    return _tree_sitter_functions(text, language, path)


def _python_functions(text: str, path: str) -> list[CodeUnit]:
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise ValueError(f"{path} does not parse as Python: {error}") from error
    lines = text.split("\n")
    units: list[CodeUnit] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                end = child.end_lineno or child.lineno
                code = textwrap.dedent("\n".join(lines[child.lineno - 1 : end]))
                units.append(CodeUnit(code, path, child.lineno, end, prefix + child.name, "python"))
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif not isinstance(child, (ast.expr, ast.Lambda)):
                visit(child, prefix)  # if / try / with blocks at module or class level

    visit(module, "")
    return units


def _tree_sitter_functions(text: str, language: str, path: str) -> list[CodeUnit]:
    from soft_infonce.codesearch.graphcodebert.parsing import get_parser

    source = text.encode("utf-8", "replace")
    tree = get_parser(language).parse(source)
    if tree.root_node.has_error:
        raise ValueError(f"{path} does not parse as {language} (the syntax tree has errors)")
    functions = _FUNCTIONS[language]
    units: list[CodeUnit] = []

    def name_of(node: Any) -> str:
        field = node.child_by_field_name("name")
        return source[field.start_byte : field.end_byte].decode("utf-8", "replace") if field else ""

    def add(node: Any, name: str) -> None:
        start = source.rfind(b"\n", 0, node.start_byte) + 1
        if source[start : node.start_byte].strip():  # code before it on its first line
            start = node.start_byte
        code = textwrap.dedent(source[start : node.end_byte].decode("utf-8", "replace"))
        line, end = node.start_point[0] + 1, node.end_point[0] + 1
        units.append(CodeUnit(code, path, line, end, name, language))

    stack: list[tuple[Any, str]] = [(tree.root_node, "")]
    while stack:
        node, prefix = stack.pop()
        if node.type in functions:
            add(node, prefix + name_of(node))
            continue  # nested functions are part of their parent
        if language == "javascript" and node.type == "variable_declarator":
            value = node.child_by_field_name("value")
            if value is not None and value.type in _JS_FUNCTION_VALUES:
                add(node, prefix + name_of(node))
                continue
        if node.type in _CONTAINERS and name_of(node):
            prefix = f"{prefix}{name_of(node)}."
        stack.extend((child, prefix) for child in reversed(node.named_children))
    return units


def iter_code_units(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    languages: Iterable[str] | None = None,
    *,
    skip_tests: bool = True,
    skipped: Skipped | None = None,
) -> Iterator[CodeUnit]:
    """The functions of every source file under ``paths``.

    Args:
        paths: Files and/or folders (a plain string is one path).
        languages: Languages to index (default: all of :data:`LANGUAGE_SUFFIXES`; then files
            whose tree-sitter parser is not installed are skipped and counted, while a language
            named here without its parser raises ``ImportError``).
        skip_tests: Leave out test files and folders (``test_*.py``, ``tests/``, ...).
        skipped: Filled in place with the files passed over, by reason (``"unparseable"``,
            ``"not decodable"``, ``"too large"``, ``"not a regular file"``,
            ``"no parser installed"``, ...).

    Yields:
        The units, file by file in sorted path order.

    Raises:
        ValueError: a language is unknown, or a named path does not exist.
    """
    chosen = list(LANGUAGE_SUFFIXES) if languages is None else list(languages)
    unknown = sorted(set(chosen) - set(LANGUAGE_SUFFIXES))
    if unknown or not chosen:
        raise ValueError(
            f"languages must be among {sorted(LANGUAGE_SUFFIXES)}, got {unknown or chosen!r}"
        )
    suffixes = tuple(s for language in chosen for s in LANGUAGE_SUFFIXES[language])
    skipped = skipped if skipped is not None else Skipped()
    for path in iter_source_files(paths, suffixes, skip_tests=skip_tests, skipped=skipped):
        language = _language_of(path)
        if language is None:  # pragma: no cover - the suffix filter chose it
            continue
        try:
            text = read_source(path, python=language == "python")
        except SourceFileError as error:
            skipped.add(error.reason, path)
            continue
        try:
            units = extract_functions(text, language, str(path))
        except ValueError:
            skipped.add("unparseable", path)
            continue
        except ImportError:
            if languages is not None:
                raise
            skipped.add("no parser installed", path)
            continue
        yield from units
