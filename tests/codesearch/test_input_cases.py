"""Bad input the data loaders and the miner refuse by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soft_infonce.codesearch.data import load_cosqa_retrieval, mine_hard_negatives

PAIRS = [{"query": f"read file {i}", "code": f"def read_{i}(p): return open(p).read() + {i}"}
         for i in range(8)]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("relative_margin", float("nan"), "finite"), ("relative_margin", -1.0, r"\[0, 1\)"),
     ("relative_margin", 1.0, r"\[0, 1\)"), ("absolute_margin", float("nan"), "finite"),
     ("absolute_margin", float("inf"), "finite"), ("max_score", float("nan"), "finite"),
     ("min_score", float("-inf"), "finite")],
)  # fmt: skip
def test_mining_refuses_bad_margins_by_name(name: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must .*{message}"):
        mine_hard_negatives(PAIRS, k=2, **{name: value})


def test_a_code_given_twice_in_the_cosqa_map_is_named(tmp_path: Path) -> None:
    codes = ["def a(): pass", "def b(): pass", "def a(): pass"]
    text = "{" + ", ".join(f"{json.dumps(c)}: {i}" for i, c in enumerate(codes)) + "}"
    (tmp_path / "map.txt").write_text(text)
    (tmp_path / "q.json").write_text(json.dumps([{"doc": "a", "retrieval_idx": 0}]))
    with pytest.raises(
        ValueError,
        match=r"map\.txt: the same code is given twice, with index 0 and 2 .*'def a\(\): pass'",
    ):
        load_cosqa_retrieval(tmp_path / "q.json", tmp_path / "map.txt")
