"""HardNegativeSpec: the hard-negative setting parsed once, checked once, handed to the miner."""

from __future__ import annotations

import pytest

from soft_infonce.codesearch.data import mine_hard_negatives
from soft_infonce.codesearch.data.negative_spec import HardNegativeSpec

PAIRS = [
    {"query": "read a file", "code": "def read(p): return open(p).read()"},
    {"query": "write a file", "code": "def write(p, s): open(p).write(s)"},
    {"query": "sort a list", "code": "def sort(xs): return sorted(xs)"},
    {"query": "read a json file", "code": "def load(p): return json.load(open(p))"},
]


def test_parse_reads_method_and_k_and_keeps_the_margins() -> None:
    assert HardNegativeSpec.parse("bm25:3") == HardNegativeSpec("bm25", 3)
    assert HardNegativeSpec.parse(" dense : 2 ", relative_margin=0.05) == HardNegativeSpec(
        "dense", 2, relative_margin=0.05
    )
    for off in (None, "", "none", " none "):
        assert HardNegativeSpec.parse(off) is None


@pytest.mark.parametrize(
    ("text", "margins", "message"),
    [
        ("bm25", {}, "must be METHOD:K with METHOD bm25 or dense and K >= 1"),
        ("bm25:0", {}, "got 'bm25:0'"),
        ("sparse:3", {}, "got 'sparse:3'"),
        ("bm25:2", {"relative_margin": 1.5}, r"relative_margin must be in \[0, 1\), got 1.5"),
        ("bm25:2", {"absolute_margin": float("nan")}, "absolute_margin must be a finite number"),
    ],
)
def test_bad_settings_are_refused_when_the_object_is_built(text, margins, message) -> None:
    with pytest.raises(ValueError, match=message):
        HardNegativeSpec.parse(text, **margins)


def test_the_constructor_checks_as_parse_does() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        HardNegativeSpec("tfidf", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        HardNegativeSpec("bm25", 0)


def test_the_miner_takes_the_spec_options() -> None:
    spec = HardNegativeSpec("bm25", 1)
    assert spec.miner_options() == {"k": 1, "method": "bm25"}
    mined = mine_hard_negatives(PAIRS, **spec.miner_options())
    assert all(len(row["negatives"]) == 1 for row in mined)
    assert mined["negatives"] == mine_hard_negatives(PAIRS, 1, method="bm25")["negatives"]
    filtered = HardNegativeSpec("bm25", 1, relative_margin=0.0).miner_options()
    assert filtered == {"k": 1, "method": "bm25", "relative_margin": 0.0}
    assert spec.to_dict() == {
        "method": "bm25",
        "k": 1,
        "relative_margin": None,
        "absolute_margin": None,
    }
