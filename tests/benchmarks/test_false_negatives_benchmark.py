"""benchmarks/false_negatives.py end to end on a tiny random BERT: every loss, resume, report."""

from __future__ import annotations

import copy
import importlib
import json
import random
import sys
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")
pytest.importorskip("sentence_transformers")
pytest.importorskip("matplotlib")
from helpers.tiny_vocab import NOUNS, VERBS, save_verb_noun_bert, verb_noun_pair  # noqa: E402

from soft_infonce.clustering import token_jaccard  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.retrieval import RetrievalSet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
fn = importlib.import_module("false_negatives")
FD = importlib.import_module("false_negatives_data")

pair = verb_noun_pair


@pytest.fixture()
def tiny(tmp_path, monkeypatch, one_thread):
    path = save_verb_noun_bert(tmp_path / "tiny")
    model = BiEncoder.from_pretrained(str(path), pooling="mean", normalize=True, scale=20.0)
    monkeypatch.setattr(fn, "load_model", lambda: copy.deepcopy(model))
    monkeypatch.setattr(fn, "model_path", lambda: str(path))
    monkeypatch.setattr(fn.quality, "model_path", lambda: str(path))  # the simcse estimator
    rng = random.Random(0)
    base = list({pair(rng.choice(VERBS), rng.choice(NOUNS)) for _ in range(40)})[:8]
    queries, codes, groups = FD.make_copies([q for q, _ in base], [c for _, c in base], 3)
    test_pairs = [pair(v, n) for v in VERBS for n in NOUNS[:2]]
    test = RetrievalSet(*map(list, zip(*test_pairs)), list(range(len(test_pairs))), name="t")
    valid = RetrievalSet(test.queries[:6], test.codes[:6], list(range(6)), name="v")
    data = {"train": (queries, codes, groups), "valid": valid, "test": test}
    monkeypatch.setattr(fn, "load_data", lambda args: data)
    return tmp_path


def test_every_loss_runs_on_the_same_batches_resumes_and_reports(tiny, capsys):
    out = tiny / "fn.json"
    argv = ["--seeds", "0", "--rates", "0,0.25", "--epochs", "1", "--batch-size", "8"]
    argv += ["--output", str(out), "--losses", ",".join(fn.LOSSES)]
    fn.main(argv)
    results = json.loads(out.read_text())
    for rate in ("0", "0.25"):
        runs = results["runs"][rate]
        assert set(runs) == set(fn.LOSSES)
        trained = [s for s in fn.LOSSES if s != "zero-shot"]
        digests = {runs[s]["0"]["batches_digest"] for s in trained}
        assert len(digests) == 1  # ours and sentence-transformers' trainers: the same batches
        assert all(runs[s]["0"]["batches_seen"] == 4 for s in trained)  # 32 rows / 8
        assert runs["zero-shot"]["0"]["batches_seen"] == 0
        assert all(len(runs[s]["0"]["rr"]) == 16 for s in fn.LOSSES)
    low, high = (
        results["runs"][r]["infonce"]["0"]["false_negative_share"][0] for r in ("0", "0.25")
    )
    assert low == 0.0 and high == pytest.approx(0.25, abs=0.06)
    w = results["runs"]["0.25"]["soft:bm25"]["0"]["copy_weights"]
    assert 0.1 <= w["w_copies"] <= w["w_true_negatives"]  # BM25 sees the copies' shared words
    summary = results["summary"]["0.25"]
    assert "p_vs_infonce" in summary["oracle"] and "p_vs_gist" in summary["soft:bm25"]
    w = results["runs"]["0.25"]["soft:pa-guide"]["0"]["copy_weights"]
    assert 0.1 <= w["w_copies"] <= w["w_true_negatives"]  # the guide scores copies high
    mtime = out.stat().st_mtime_ns
    fn.main(argv)  # resume: nothing left to run
    assert json.loads(out.read_text())["runs"] == results["runs"] and out.stat().st_mtime_ns > mtime
    fn.main(["--output", str(out), "--report-only"])
    printed = capsys.readouterr().out
    assert "soft:pa-bm25" in printed and (tiny / "fn.png").exists()


def test_copies_differ_and_keep_groups():
    queries, codes, groups = FD.make_copies(
        ["sort the list of users by name", "open a file"],
        [
            "def sort_users ( users ) users . sort_by { | u | u . name } end",
            "def open_file ( p ) end",
        ],
        4,
    )
    assert groups == [0, 1] + [0] * 4 + [1] * 4
    assert len(set(codes)) == len(codes) == 10
    assert all(token_jaccard(codes[0], c) >= 0.5 for c in codes[2:6])  # near-duplicates


def test_group_estimator_marks_the_copies():
    est = FD.GroupEstimator({"a": 0, "b": 1, "a2": 0})
    sim = est(["qa", "qb"], ["a", "b", "a2", "zzz"], ["qa", "qb", "qa2", "qz"])
    assert sim.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]]
