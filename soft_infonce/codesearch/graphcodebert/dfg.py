"""Data-flow graphs of functions, after GraphCodeBERT (Guo et al., ICLR 2021, Sec. 3.1).

The nodes of the graph are the variable (and literal) tokens of a function; an edge says where
the value at a token comes from:

* ``comesFrom``: a read of a variable comes from the definitions that can reach it;
* ``computedFrom``: an assigned, declared or loop-bound variable is computed from the tokens of
  its right-hand side (and from its own previous value for ``+=``, ``x++``).

As in the published design, only nodes with an edge (as target or source) are kept. How the
tree is walked (branches, loops) is in ``walker.py``; which node types do what, in
``grammars.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from soft_infonce.codesearch.graphcodebert.parsing import UnsupportedCode, get_grammar, parse_code
from soft_infonce.codesearch.graphcodebert.walker import DataflowWalker

Relation = Literal["comesFrom", "computedFrom"]

MAX_ERROR_FRACTION = 0.5  # more tokens than this inside ERROR nodes -> UnsupportedCode


@dataclass
class DataflowEdge:
    """One node of the data-flow graph and the edges into it.

    Attributes:
        name: The token's text (the variable name or literal).
        token_index: Its position in the code tokens.
        relation: ``"comesFrom"`` (a read) or ``"computedFrom"`` (a write).
        sources: The names at ``source_indices`` (one per index).
        source_indices: Token indices the value comes from, ascending.
    """

    name: str
    token_index: int
    relation: Relation
    sources: list[str]
    source_indices: list[int]


def extract_dataflow(code: str, language: str) -> tuple[list[str], list[DataflowEdge]]:
    """Return the code tokens of ``code`` and its data-flow graph.

    Args:
        code: The source of one function (PHP without its ``<?php`` tag is fine).
        language: One of ``python``, ``java``, ``javascript``, ``php``, ``go``, ``ruby``.

    Returns:
        The code tokens (comments removed, string literals whole) and one
        :class:`DataflowEdge` per graph node, sorted by token index.

    Raises:
        ValueError: ``language`` is not supported or ``code`` is not a string.
        UnsupportedCode: the parser cannot handle the code (no tokens, mostly syntax errors,
            too deep or too large to walk).

    Examples:
        >>> tokens, edges = extract_dataflow("def f(a):\\n    b = a + 1\\n    return b", "python")
        >>> tokens[6:11]
        ['b', '=', 'a', '+', '1']
        >>> [(e.name, e.token_index, e.source_indices) for e in edges if e.name == "b"]
        [('b', 6, [8, 10]), ('b', 12, [6])]
    """
    grammar = get_grammar(language)
    parsed = parse_code(code, language)
    if parsed.error_tokens > MAX_ERROR_FRACTION * len(parsed.tokens):
        raise UnsupportedCode(
            f"{parsed.error_tokens} of {len(parsed.tokens)} tokens are syntax errors for {language}"
        )
    walker = DataflowWalker(parsed, grammar)
    try:
        walker.visit(parsed.root)
    except RecursionError as error:
        raise UnsupportedCode("syntax tree too deep for the data-flow walk") from error
    records = walker.records
    linked = {i for i, (_, sources) in records.items() if sources}
    linked.update(j for _, sources in records.values() for j in sources)
    tokens = parsed.tokens
    edges = []
    for index in sorted(linked & records.keys()):
        relation, sources = records[index]  # "comesFrom" or "computedFrom" (the walker's)
        ordered = sorted(sources)
        edges.append(
            DataflowEdge(
                tokens[index],
                index,
                cast(Relation, relation),
                [tokens[j] for j in ordered],
                ordered,
            )  # fmt: skip
        )
    return tokens, edges
