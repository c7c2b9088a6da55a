"""Per-language node-type tables that drive the data-flow walk (see ``dfg.py``).

The walk itself is language-agnostic; each grammar only says which syntax-tree node types
assign, declare, branch or loop, and which leaves name variables. The names are those of the
tree-sitter grammars published on PyPI (checked against tree-sitter-python 0.25, -java 0.23,
-javascript 0.25, -php 0.25, -go 0.25, -ruby 0.23).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Field names shared by the grammars.
BRANCH_FIELDS = frozenset({"consequence", "alternative", "body"})  # paths of an if-like node
INIT_FIELDS = frozenset({"initializer", "init", "initialize"})  # run once before a loop
UPDATE_FIELDS = frozenset({"update", "increment"})  # run after the loop body
SEQUENCES = frozenset(
    {
        "pattern_list",
        "expression_list",
        "tuple",
        "tuple_pattern",
        "left_assignment_list",
        "right_assignment_list",
    }
)  # ``a, b = x, y``: paired element by element when both sides have the same length


@dataclass(frozen=True)
class Grammar:
    """What the data-flow walk needs to know about one language's syntax tree.

    Attributes:
        module, factory: The wheel's module and the function returning its language pointer.
        variables: Leaf types naming a variable (a first sight defines it).
        variable_parents: Leaf type -> parent type it must have to be a variable (PHP ``$x``).
        atomic: String-like node types read as a single token.
        comments: Comment node types (dropped from the tokens).
        string_statements: Drop statements made of a lone string (Python docstrings).
        assignments: Node types with ``left``/``right`` fields; an operator other than ``=``
            or ``:=`` (``+=``, ``.=``) makes the target also read its previous value.
        declarations: Node type -> (name field, value field); the value may be absent.
        updates: ``x++``-like node types: each variable in them reads and rewrites itself.
        branches: If-like node types; children in :data:`BRANCH_FIELDS` are alternative paths.
        open_alternatives: Alternative types that do not close an if chain (``elif``).
        loops: Loop node types (their body is walked twice so values flow around the loop).
        do_loops: Loops whose body runs before their condition.
        loop_headers: Child types whose children are the loop's parts (Go ``for_clause``).
        foreach: Node type -> (target field, iterable field); a target field ``"after:as"`` means
            "the named children after the ``as`` keyword" (PHP ``foreach``).
        first: Child types walked before their siblings (comprehension ``for`` clauses).
        cases: Switch-case node types (alternative paths of their parent).
        default_cases: Case types that close a switch (``default``).
    """

    module: str
    factory: str
    variables: frozenset[str]
    atomic: frozenset[str]
    comments: frozenset[str]
    assignments: frozenset[str]
    declarations: Mapping[str, tuple[str, str]]
    branches: frozenset[str]
    loops: frozenset[str]
    foreach: Mapping[str, tuple[str, str]]
    cases: frozenset[str]
    variable_parents: Mapping[str, str] = field(default_factory=dict)
    string_statements: bool = False
    updates: frozenset[str] = frozenset()
    open_alternatives: frozenset[str] = frozenset()
    do_loops: frozenset[str] = frozenset({"do_statement"})
    loop_headers: frozenset[str] = frozenset()
    first: frozenset[str] = frozenset()
    default_cases: frozenset[str] = frozenset()


def _set(*names: str) -> frozenset[str]:
    return frozenset(names)


GRAMMARS: dict[str, Grammar] = {
    "python": Grammar(
        module="tree_sitter_python",
        factory="language",
        variables=_set("identifier"),
        atomic=_set("string"),
        comments=_set("comment"),
        string_statements=True,
        assignments=_set("assignment", "augmented_assignment"),
        declarations={
            "default_parameter": ("name", "value"),
            "typed_default_parameter": ("name", "value"),
        },
        branches=_set("if_statement"),
        open_alternatives=_set("elif_clause"),
        loops=_set("for_statement", "while_statement"),
        foreach={"for_statement": ("left", "right"), "for_in_clause": ("left", "right")},
        first=_set("for_in_clause"),
        cases=_set("case_clause"),
    ),
    "java": Grammar(
        module="tree_sitter_java",
        factory="language",
        variables=_set("identifier"),
        atomic=_set("string_literal", "character_literal"),
        comments=_set("line_comment", "block_comment"),
        assignments=_set("assignment_expression"),
        declarations={"variable_declarator": ("name", "value")},
        updates=_set("update_expression"),
        branches=_set("if_statement"),
        loops=_set("for_statement", "enhanced_for_statement", "while_statement", "do_statement"),
        foreach={"enhanced_for_statement": ("name", "value")},
        cases=_set("switch_block_statement_group", "switch_rule"),
    ),
    "javascript": Grammar(
        module="tree_sitter_javascript",
        factory="language",
        variables=_set(
            "identifier", "shorthand_property_identifier", "shorthand_property_identifier_pattern"
        ),
        atomic=_set("string", "template_string", "regex"),
        comments=_set("comment", "html_comment"),
        assignments=_set(
            "assignment_expression", "augmented_assignment_expression", "assignment_pattern"
        ),
        declarations={"variable_declarator": ("name", "value")},
        updates=_set("update_expression"),
        branches=_set("if_statement"),
        loops=_set("for_statement", "for_in_statement", "while_statement", "do_statement"),
        foreach={"for_in_statement": ("left", "right")},
        cases=_set("switch_case"),
        default_cases=_set("switch_default"),
    ),
    "php": Grammar(
        module="tree_sitter_php",
        factory="language_php",
        variables=_set("name"),
        variable_parents={"name": "variable_name"},
        atomic=_set("string", "encapsed_string", "heredoc", "nowdoc"),
        comments=_set("comment"),
        assignments=_set(
            "assignment_expression",
            "augmented_assignment_expression",
            "reference_assignment_expression",
        ),
        declarations={"simple_parameter": ("name", "default_value")},
        updates=_set("update_expression"),
        branches=_set("if_statement"),
        open_alternatives=_set("else_if_clause"),
        loops=_set("for_statement", "foreach_statement", "while_statement", "do_statement"),
        foreach={"foreach_statement": ("after:as", "before:as")},
        cases=_set("case_statement"),
        default_cases=_set("default_statement"),
    ),
    "go": Grammar(
        module="tree_sitter_go",
        factory="language",
        variables=_set("identifier"),
        atomic=_set("interpreted_string_literal", "raw_string_literal", "rune_literal"),
        comments=_set("comment"),
        assignments=_set("assignment_statement", "short_var_declaration"),
        declarations={"var_spec": ("name", "value"), "const_spec": ("name", "value")},
        updates=_set("inc_statement", "dec_statement"),
        branches=_set("if_statement"),
        loops=_set("for_statement"),
        loop_headers=_set("for_clause", "range_clause"),
        foreach={"range_clause": ("left", "right")},
        cases=_set("expression_case", "type_case", "communication_case"),
        default_cases=_set("default_case"),
    ),
    "ruby": Grammar(
        module="tree_sitter_ruby",
        factory="language",
        variables=_set("identifier", "instance_variable", "class_variable", "global_variable"),
        atomic=_set("string", "delimited_symbol", "regex", "subshell", "heredoc_body"),
        comments=_set("comment"),
        assignments=_set("assignment", "operator_assignment"),
        declarations={
            "optional_parameter": ("name", "value"),
            "keyword_parameter": ("name", "value"),
        },
        branches=_set("if", "unless", "elsif", "if_modifier", "unless_modifier"),
        loops=_set("for", "while", "until", "while_modifier", "until_modifier"),
        foreach={"for": ("pattern", "value")},
        cases=_set("when"),
        default_cases=_set("else"),
    ),
}

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(GRAMMARS)
