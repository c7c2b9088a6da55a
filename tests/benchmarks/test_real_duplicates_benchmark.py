"""benchmarks/real_duplicates.py end to end on a tiny random BERT: both samplings, every loss on
the same batches, validation inside the epoch, resume, merge and report."""

from __future__ import annotations

import copy
import importlib
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
pytest.importorskip("sentence_transformers")
pytest.importorskip("matplotlib")
from helpers.tiny_vocab import NOUNS, VERBS, save_verb_noun_bert, verb_noun_pair  # noqa: E402

from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.retrieval import RetrievalSet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
rd = importlib.import_module("real_duplicates")

pair = verb_noun_pair


@pytest.fixture()
def tiny(tmp_path, monkeypatch, one_thread):
    path = save_verb_noun_bert(tmp_path / "tiny")
    model = BiEncoder.from_pretrained(str(path), pooling="mean", normalize=True, scale=20.0)
    monkeypatch.setattr(rd.fn, "load_model", lambda: copy.deepcopy(model))
    monkeypatch.setattr(rd.quality, "model_path", lambda: str(path))  # peers and the guide
    rng = random.Random(0)
    train = [pair(v, n) for v in VERBS[:4] for n in NOUNS[:4]]  # 16 distinct pairs
    train[1] = (train[0][0], train[1][1])  # a generic docstring shared by two functions
    rng.shuffle(train)
    queries, codes = map(list, zip(*train))
    test_pairs = [pair(v, n) for v in VERBS for n in NOUNS[4:6]]
    test = RetrievalSet(*map(list, zip(*test_pairs)), list(range(len(test_pairs))), name="t")
    valid = RetrievalSet(test.queries[:6], test.codes[:6], list(range(6)), name="v")
    data = {
        "train": (queries, codes, rd.duplicate_groups(queries, codes)),
        "valid": valid,
        "tests": {"a": test, "b": RetrievalSet(test.queries[6:], test.codes[6:], list(range(10)))},
        "corpus": {"paths": ["tiny"]},
    }
    monkeypatch.setattr(rd, "load_data", lambda args: data)
    return tmp_path


def test_duplicate_groups_join_docstring_or_code_copies():
    queries = ["sort the list of users", "sort the list of users now", "open a file", "zip"]
    codes = ["def a ( ) : pass", "def b ( x ) : return x", "def b ( x ) : return x + 1", "def z"]
    groups = rd.duplicate_groups(queries, codes)  # 0~1 by docstring (4/5), 1~2 by code (6/8)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_grid_shares_batches_validates_mid_epoch_resumes_and_merges(tiny, capsys, monkeypatch):
    base = ["--seeds", "0", "--epochs", "1", "--batch-size", "8", "--evals-per-epoch", "2"]
    base += ["--losses", "infonce,soft:bm25,soft:pa-guide,gist,mnrl,zero-shot"]
    outs = []
    for sampling in ("random", "clustered"):
        out = tiny / f"rd_{sampling}.json"
        rd.main([*base, "--sampling", sampling, "--output", str(out)])
        outs.append(out)
        runs = json.loads(out.read_text())["runs"][sampling]
        trained = [s for s in runs if s != "zero-shot"]
        assert len({runs[s]["0"]["batches_digest"] for s in trained}) == 1  # same batches
        for spec in trained:
            entry = runs[spec]["0"]
            assert entry["steps"] == 2 and entry["batches_seen"] == 2  # 16 rows / 8
            assert [e["epoch"] for e in entry["valid_curve"]] == [0.5, 1.0]
            assert entry["valid_mrr"] == max(e["valid_mrr"] for e in entry["valid_curve"])
            assert len(entry["a"]["rr"]) == 16 and len(entry["b"]["rr"]) == 10
            assert entry["a"]["mrr"] == pytest.approx(np.mean(entry["a"]["rr"]))
        assert "copy_weights" in runs["soft:bm25"]["0"]
        before = out.read_text()
        rd.main([*base, "--sampling", sampling, "--output", str(out)])  # resume: nothing to do
        assert json.loads(out.read_text())["runs"] == json.loads(before)["runs"]
    capsys.readouterr()
    monkeypatch.setattr(rd, "ROOT", tiny)  # the merged file goes to ROOT/benchmarks/results
    rd.main(["--report", *map(str, outs)])
    merged = json.loads((tiny / "benchmarks/results/real_duplicates.json").read_text())
    runs = merged["runs"]
    for test in ("a", "b"):
        shift = merged["summary"]["clustered_vs_random"][test]["infonce"]
        expected = np.mean(runs["clustered"]["infonce"]["0"][test]["rr"]) - np.mean(
            runs["random"]["infonce"]["0"][test]["rr"]
        )
        assert shift["delta"] == pytest.approx(expected) and 0 < shift["p"] <= 1
        row = merged["summary"]["random"][test]["soft:bm25"]
        gap = np.mean(runs["random"]["soft:bm25"]["0"][test]["rr"]) - np.mean(
            runs["random"]["gist"]["0"][test]["rr"]
        )
        assert row["delta_vs_gist"] == pytest.approx(gap)
    printed = capsys.readouterr().out
    assert "| clustered | b | soft:pa-guide |" in printed
    assert (tiny / "benchmarks/results/real_duplicates.png").stat().st_size > 0
