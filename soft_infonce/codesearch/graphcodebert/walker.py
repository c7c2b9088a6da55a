"""The walk behind :func:`~soft_infonce.codesearch.graphcodebert.extract_dataflow`.

The syntax tree is walked in evaluation order with, as the state, the token indices of the
definitions of each name that can reach the current point. At an ``if`` every path starts from
the same state and the states are merged after it (with the entry state when no ``else`` closes
the chain); switch cases likewise. A loop is walked twice, the second time from the merge of the
entry state and the first pass's exit, so that values written late in the body reach reads early
in it; only the second pass's edges are kept. Which node types assign, declare, branch or loop
comes from the language's :class:`~soft_infonce.codesearch.graphcodebert.grammars.Grammar`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from soft_infonce.codesearch.graphcodebert.grammars import (
    BRANCH_FIELDS,
    INIT_FIELDS,
    SEQUENCES,
    UPDATE_FIELDS,
    Grammar,
)
from soft_infonce.codesearch.graphcodebert.parsing import (
    ParsedCode,
    UnsupportedCode,
    is_skipped,
    is_token,
)

State = dict[str, tuple[int, ...]]  # variable name -> token indices of its reaching definitions
MAX_STEPS = 200_000  # node visits before a function is given up (nested loops double the walk)


def _merge(states: Iterable[State]) -> State:
    merged: dict[str, set[int]] = {}
    for state in states:
        for name, indices in state.items():
            merged.setdefault(name, set()).update(indices)
    return {name: tuple(sorted(indices)) for name, indices in merged.items()}


class DataflowWalker:
    """Walks one parsed function, filling ``records``: token index -> (relation, sources)."""

    def __init__(self, parsed: ParsedCode, grammar: Grammar) -> None:
        self.parsed = parsed
        self.grammar = grammar
        self.state: State = {}
        self.records: dict[int, tuple[str, set[int]]] = {}
        self.steps = 0

    # -- tokens -------------------------------------------------------------------------------
    def _index(self, node: Any) -> int | None:
        if not is_token(node, self.grammar):
            return None
        return self.parsed.index.get((node.start_byte, node.end_byte))

    def _kind(self, node: Any, index: int) -> str | None:
        """``"variable"``, ``"value"`` (a literal or other name) or None (keyword, punctuation)."""
        grammar = self.grammar
        if node.type in grammar.variables:
            parent_type = grammar.variable_parents.get(node.type)
            if parent_type is None or (node.parent is not None and node.parent.type == parent_type):
                return "variable"
        if not node.is_named or self.parsed.tokens[index] == node.type:
            return None
        return "value"

    def _tokens_in(self, nodes: Iterable[Any], targets: bool = False) -> list[int]:
        """Candidate token indices under ``nodes``; with ``targets``, names only (no literals)."""
        found: list[int] = []
        stack = list(reversed(list(nodes)))
        while stack:
            node = stack.pop()
            if is_skipped(node, self.grammar):
                continue
            index = self._index(node)
            if index is None:
                stack.extend(reversed(node.children))
                continue
            kind = self._kind(node, index)
            named = node.type in self.grammar.variables or node.type.endswith("identifier")
            if kind == "variable" or (kind == "value" and (not targets or named)):
                found.append(index)
        return found

    def _record(self, index: int, relation: str, sources: Iterable[int]) -> None:
        previous = self.records.get(index)
        merged = set(sources) | (previous[1] if previous else set())
        self.records[index] = (relation, merged)

    def _read(self, node: Any) -> None:
        index = self._index(node)
        kind = None if index is None else self._kind(node, index)
        if kind is None or index is None:
            return
        name = self.parsed.tokens[index]
        if name in self.state:
            self._record(index, "comesFrom", self.state[name])
        else:
            if kind == "variable":
                self.state[name] = (index,)
            self._record(index, "comesFrom", ())

    def _write(self, target: Any, sources: list[int], reads_self: bool = False) -> None:
        for index in self._tokens_in([target], targets=True):
            name = self.parsed.tokens[index]
            origins = [*sources, *(self.state.get(name, ()) if reads_self else ())]
            self._record(index, "computedFrom" if origins else "comesFrom", origins)
            self.state[name] = (index,)

    # -- walk ---------------------------------------------------------------------------------
    def visit(self, node: Any) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise UnsupportedCode(f"data-flow walk exceeded {MAX_STEPS} steps")
        grammar, kind = self.grammar, node.type
        if is_skipped(node, grammar):
            return
        if is_token(node, grammar):
            self._read(node)
        elif kind in grammar.assignments:
            self._assign(node)
        elif kind in grammar.declarations:
            self._declare(node, *grammar.declarations[kind])
        elif kind in grammar.updates:
            self._write(node, [], reads_self=True)
        elif kind in grammar.branches:
            self._branch(node)
        elif kind in grammar.loops:
            self._loop(node)
        elif kind in grammar.foreach:  # a binding without a body: comprehension ``for``
            self._loop_parts(node, [(node.field_name_for_child(i), c) for i, c in _enum(node)])
        else:
            children = node.children
            if any(child.type in grammar.cases for child in children):
                self._cases(children)
                return
            for child in children:
                if child.type in grammar.first:
                    self.visit(child)
            for child in children:
                if child.type not in grammar.first:
                    self.visit(child)

    def _assign(self, node: Any) -> None:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        if left is None or right is None:  # e.g. a Python annotation without a value
            for child in node.children:
                self.visit(child)
            return
        operator = "="
        for child in node.children:
            index = self._index(child)
            if not child.is_named and index is not None:
                text = self.parsed.tokens[index]
                if text.endswith("="):
                    operator = text
                    break
        self.visit(right)
        for target, value in _pairs(left, right):
            self._write(target, self._tokens_in([value]), reads_self=operator not in ("=", ":="))

    def _declare(self, node: Any, name_field: str, value_field: str) -> None:
        names = node.children_by_field_name(name_field)
        value = node.child_by_field_name(value_field)
        if value is None:
            for name in names:
                self._write(name, [])
            return
        self.visit(value)
        values = value.named_children if value.type in SEQUENCES else [value]
        if len(names) != len(values):
            values = [value] * len(names)
        for name, part in zip(names, values):
            self._write(name, self._tokens_in([part]))

    def _branch(self, node: Any) -> None:
        heads, paths, closed = [], [], False
        for i, child in _enum(node):
            field = node.field_name_for_child(i)
            if field in BRANCH_FIELDS:
                paths.append(child)
                closed |= field == "alternative" and child.type not in (
                    self.grammar.branches | self.grammar.open_alternatives
                )
            else:
                heads.append(child)
        for child in heads:  # conditions first, even when written after the body
            self.visit(child)
        self._alternatives(paths, closed)

    def _cases(self, children: list[Any]) -> None:
        grammar = self.grammar
        paths = [c for c in children if c.type in grammar.cases or c.type in grammar.default_cases]
        for child in children:
            if child not in paths:
                self.visit(child)
        self._alternatives(paths, any(c.type in grammar.default_cases for c in paths))

    def _alternatives(self, paths: list[Any], closed: bool) -> None:
        start, ends = dict(self.state), []
        for path in paths:
            self.state = dict(start)
            self.visit(path)
            ends.append(self.state)
        self.state = _merge([*ends] if closed else [start, *ends])

    def _loop(self, node: Any) -> None:
        parts: list[tuple[str | None, Any]] = []
        header = node  # the node whose type names the foreach fields (Go: its range_clause)
        for i, child in _enum(node):
            if child.type in self.grammar.loop_headers:
                parts.extend((child.field_name_for_child(j), c) for j, c in _enum(child))
                header = child if child.type in self.grammar.foreach else header
            else:
                parts.append((node.field_name_for_child(i), child))
        self._loop_parts(header, parts, body_of=node)

    def _loop_parts(
        self, node: Any, parts: list[tuple[str | None, Any]], body_of: Any | None = None
    ) -> None:
        """Walk a loop (``body_of`` set) or a comprehension binding from its parts."""
        target_field, iterable_field = self.grammar.foreach.get(node.type, ("", ""))
        targets: list[Any] = []
        iterables: list[Any] = []
        once, conditions, updates, rest = [], [], [], []
        after_as = False
        for field, child in parts:
            if target_field == "after:as" and field is None and child.is_named:
                (targets if after_as else iterables).append(child)  # PHP: foreach (xs as x)
            elif target_field == "after:as" and not child.is_named and child.type == "as":
                after_as = True
            elif field is not None and field == target_field:
                targets.append(child)
            elif field is not None and field == iterable_field:
                iterables.append(child)
            elif field in INIT_FIELDS:
                once.append(child)
            elif field == "condition":
                conditions.append(child)
            elif field in UPDATE_FIELDS:
                updates.append(child)
            else:
                rest.append(child)
        for child in once + iterables:
            self.visit(child)
        if len(targets) == 1 and len(iterables) == 1:
            pairs = _pairs(targets[0], iterables[0])
        else:
            pairs = [(target, iterables) for target in targets]
        bindings = [(t, self._tokens_in(v if isinstance(v, list) else [v])) for t, v in pairs]
        if body_of is None:  # a comprehension clause binds once
            for target, sources in bindings:
                self._write(target, sources)
            return
        do_loop = body_of.type in self.grammar.do_loops
        order = rest + conditions if do_loop else conditions + rest
        start = dict(self.state)
        kept, self.records = self.records, {}  # the first pass only carries values around
        for final_pass in (False, True):
            if final_pass:
                self.records = kept
            for target, sources in bindings:
                self._write(target, sources)
            for child in order + updates:
                self.visit(child)
            self.state = _merge([start, self.state])


def _enum(node: Any) -> list[tuple[int, Any]]:
    return list(enumerate(node.children))


def _pairs(left: Any, right: Any) -> list[tuple[Any, Any]]:
    """``a, b = x, y`` pairs a with x and b with y; otherwise the whole sides go together."""
    lefts = left.named_children if left.type in SEQUENCES else [left]
    rights = right.named_children if right.type in SEQUENCES else [right]
    if len(lefts) == len(rights) > 1:
        return list(zip(lefts, rights))
    return [(left, right)]
