"""benchmarks/hybrid_search.py: its metrics by hand and its readers of the two data sets."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("faiss")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
bench = importlib.import_module("hybrid_search")


def test_metrics_by_hand() -> None:
    # ranks 2 and absent (infinite): MRR (1/2 + 0) / 2; recall@1 0, @5 1/2, @10 1/2
    got = bench.metrics([[2, 1, 0], [0, 1]], [1, 5])
    assert got == {"mrr": 0.25, "recall@1": 0.0, "recall@5": 0.5, "recall@10": 0.5}
    assert math.isclose(bench.metrics([[7]], [7])["mrr"], 1.0)


def test_readers(tmp_path: Path) -> None:
    cosqa = tmp_path / "cosqa"
    cosqa.mkdir()
    (cosqa / "code_idx_map.txt").write_text(json.dumps({"def b(): pass": 1, "def a(): pass": 0}))
    rows = [{"doc": "make b", "retrieval_idx": 1}, {"doc": "make a", "retrieval_idx": 0}]
    (cosqa / "cosqa-retrieval-dev-500.json").write_text(json.dumps(rows))
    assert bench.cosqa(cosqa) == (["make b", "make a"], ["def a(): pass", "def b(): pass"], [1, 0])
    ruby = tmp_path / "valid.jsonl"
    lines = [{"docstring_tokens": ["Add", "one"], "code": "def add(x)\n  x + 1\nend"}]
    ruby.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert bench.ruby(ruby) == (["Add one"], ["def add(x)\n  x + 1\nend"], [0])
