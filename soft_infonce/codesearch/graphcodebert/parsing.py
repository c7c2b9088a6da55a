"""Tree-sitter parsers from PyPI wheels and the code-token sequence GraphCodeBERT reads.

Each language's grammar ships as its own wheel (``tree-sitter-python``, ``tree-sitter-java``,
...) holding a compiled parser, so nothing is compiled or downloaded at run time. The tokens of a
function are the leaves of its syntax tree in source order, with comments (and, for Python,
docstring-like string statements) removed and every string literal kept as one token, as in
GraphCodeBERT (Guo et al., ICLR 2021, Sec. 3.1).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

from soft_infonce.codesearch.graphcodebert.grammars import GRAMMARS, Grammar

INSTALL_HINT = (
    "GraphCodeBERT data flow needs the tree-sitter wheels: "
    "pip install 'soft-infonce[graphcodebert]' "
    "(tree-sitter and tree-sitter-{python,java,javascript,php,go,ruby})"
)


class UnsupportedCode(ValueError):
    """The parser cannot turn this code into tokens and a data-flow graph."""


def get_grammar(language: str) -> Grammar:
    """Return the node-type tables of ``language`` (one of :data:`SUPPORTED_LANGUAGES`)."""
    grammar = GRAMMARS.get(language) if isinstance(language, str) else None
    if grammar is None:
        raise ValueError(f"language must be one of {sorted(GRAMMARS)}, got {language!r}")
    return grammar


@functools.cache
def get_parser(language: str) -> Any:
    """Return a ``tree_sitter.Parser`` for ``language`` (built once per process).

    Raises:
        ValueError: ``language`` is not supported.
        ImportError: the tree-sitter wheels are not installed.
    """
    grammar = get_grammar(language)
    try:
        import tree_sitter

        module = importlib.import_module(grammar.module)
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT}; missing: {error.name}") from error
    ts_language = tree_sitter.Language(getattr(module, grammar.factory)())
    return tree_sitter.Parser(ts_language)


@dataclass
class ParsedCode:
    """A parsed function: its tree, source bytes and token table.

    Attributes:
        root: The tree's root node (keep ``tree`` alive while it is used).
        tree: The ``tree_sitter.Tree``.
        tokens: The code tokens, in source order.
        index: ``(start_byte, end_byte)`` of each token's node -> its position in ``tokens``.
        error_tokens: How many tokens lie inside ``ERROR`` nodes (code the grammar rejected).
    """

    root: Any
    tree: Any
    tokens: list[str]
    index: dict[tuple[int, int], int]
    error_tokens: int


def is_token(node: Any, grammar: Grammar) -> bool:
    """Whether ``node`` is read as one code token (a leaf or a whole string literal)."""
    return node.child_count == 0 or node.type in grammar.atomic


def is_skipped(node: Any, grammar: Grammar) -> bool:
    """Whether ``node`` is a comment (or a Python string statement, e.g. a docstring)."""
    if node.type in grammar.comments:
        return True
    if grammar.string_statements and node.type == "expression_statement":
        named = node.named_children
        return len(named) == 1 and named[0].type in ("string", "concatenated_string")
    return False


def parse_code(code: str, language: str) -> ParsedCode:
    """Parse ``code`` and list its tokens.

    PHP code without an opening tag is wrapped in ``<?php ... ?>`` first, as GraphCodeBERT does,
    so a bare function parses as PHP rather than as inline HTML.

    Raises:
        UnsupportedCode: the code is empty, cannot be encoded, or has no tokens.
    """
    if not isinstance(code, str):
        raise ValueError(f"code must be a string, got {type(code).__name__}")
    grammar = get_grammar(language)
    if not code.strip():
        raise UnsupportedCode(f"no code tokens in empty {language} code {code!r}")
    if language == "php" and not code.lstrip().startswith("<?"):
        code = f"<?php\n{code}\n?>"
    try:
        source = code.encode("utf-8")
    except UnicodeEncodeError as error:
        raise UnsupportedCode(f"code is not valid UTF-8 text: {error}") from error
    tree = get_parser(language).parse(source)
    tokens: list[str] = []
    index: dict[tuple[int, int], int] = {}
    error_tokens = 0
    # Iterative pre-order walk: deep expression chains would overflow Python's recursion limit.
    stack: list[tuple[Any, bool]] = [(tree.root_node, False)]
    while stack:
        node, in_error = stack.pop()
        if is_skipped(node, grammar):
            continue
        in_error = in_error or node.type == "ERROR"
        if is_token(node, grammar):
            if node.end_byte > node.start_byte:  # zero-width nodes are MISSING placeholders
                index[(node.start_byte, node.end_byte)] = len(tokens)
                tokens.append(source[node.start_byte : node.end_byte].decode("utf-8", "replace"))
                error_tokens += in_error
            continue
        stack.extend((child, in_error) for child in reversed(node.children))
    if not tokens:
        raise UnsupportedCode(f"no code tokens in {language} code {code[:80]!r}")
    return ParsedCode(tree.root_node, tree, tokens, index, error_tokens)
