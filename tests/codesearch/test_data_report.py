"""inspect_pairs on hand-built pairs with known near-duplicates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soft_infonce.codesearch.data.report import (
    inspect_pairs,
    near_duplicate_links,
    read_pairs,
    verdict,
)

WORDS = [f"w{i}" for i in range(400)]


def distinct_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    queries, codes = [], []
    for i in range(n):
        words = rng.choice(WORDS, 6, replace=False)
        queries.append(f"q{i} " + " ".join(words[:3]))
        codes.append(f"def f{i} ( ) : " + " ".join(words[3:]))
    return queries, codes


def test_links_are_the_pairs_at_or_above_the_threshold():
    texts = ["a b c d", "a b c e", "x y", "a b"]
    # jaccard: (0,1) 3/5 = 0.6; (0,3) 2/4 = 0.5; (1,3) 2/4 = 0.5; (2, *) 0
    links = near_duplicate_links(texts, 0.5).tocsr()
    assert sorted(zip(*links.nonzero())) == [(0, 1), (0, 3), (1, 3)]
    assert sorted(zip(*near_duplicate_links(texts, 0.6).nonzero())) == [(0, 1)]


def test_report_finds_the_copies_and_their_share():
    queries, codes = distinct_pairs(60)
    # three groups: pair 0 with 3 copies, pair 1 with 1 copy (query only near), pair 2 chained
    queries += [queries[0]] * 3 + [queries[1] + " again"] + ["zz " + queries[2]]
    codes += [codes[0] + " # c", codes[0] + " # d", codes[0] + " # e", "other z", codes[2]]
    report = inspect_pairs(queries, codes, batch_size=8, estimator="bm25")
    assert report.pairs == 65
    assert report.exact_duplicate_codes == 1  # codes[2] repeated
    assert report.groups == 3 and report.pairs_in_groups == 4 + 2 + 2
    assert report.largest_groups == [4, 2, 2]
    random, clustered = report.batches["random"], report.batches["clustered"]
    # 16 ordered same-group pairs (12 + 2 + 2) among 65 * 64 possible: random batches hold few
    assert random["false_negative_share"] < 0.02
    assert clustered["false_negative_share"] > random["false_negative_share"]
    # BM25 query-query sees the copies' shared words: they keep less weight than the rest
    assert clustered["w_false_negatives"] < clustered["w_other_negatives"]
    assert 0 <= clustered["clamped_false_negatives"] <= 1
    assert report.verdict and json.dumps(report.to_dict())


def test_verdict_follows_the_share():
    assert "rare" in verdict(0.001, 0.005)
    assert "small effects" in verdict(0.01, 0.05)
    assert "enough to matter" in verdict(0.02, 0.3)


def test_bad_input(tmp_path):
    queries, codes = distinct_pairs(10)
    with pytest.raises(ValueError, match="batch_size"):
        inspect_pairs(queries, codes, batch_size=16)
    with pytest.raises(ValueError, match="differ in length"):
        inspect_pairs(queries, codes[:-1], batch_size=4)
    with pytest.raises(ValueError, match="estimator"):
        inspect_pairs(queries, codes, batch_size=4, estimator="nope")
    with pytest.raises(ValueError, match="own scores"):
        inspect_pairs(queries, codes, batch_size=4, estimator="self")
    with pytest.raises(ValueError, match="needs estimator_model"):
        inspect_pairs(queries, codes, batch_size=4, estimator="simcse")
    with pytest.raises(ValueError, match="threshold must be in"):
        inspect_pairs(queries, codes, batch_size=4, threshold=0.0)
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query": "a", "code": "b"}\n\n{"query": "", "code": "c"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:3: field 'query' missing or blank"):
        read_pairs(path)
    path.write_text('{"query": ["sort", "it"], "code": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: not JSON"):
        read_pairs(path)


def test_cli_prints_the_report_and_json(tmp_path, capsys):
    from soft_infonce.codesearch.cli import main

    queries, codes = distinct_pairs(40)
    queries += [queries[0]] * 2
    codes += [codes[0] + " x", codes[0] + " y"]
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"query": q, "code": c}) + "\n" for q, c in zip(queries, codes))
    )
    assert main(["inspect", str(path), "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "42 pairs" in out and "1 near-duplicate groups holding 3 pairs" in out
    assert "verdict:" in out
    assert main(["inspect", str(path), "--batch-size", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == 1 and report["largest_groups"] == [3]
    assert main(["inspect", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["inspect", str(path), "--batch-size", "8", "--estimator", "pa-bm25"]) == 0
    assert "estimator pa-bm25 at its preset" in capsys.readouterr().out
