"""benchmarks/hard_negatives.py end to end on a tiny random BERT: grid, resume, report."""

from __future__ import annotations

import copy
import importlib
import json
import random
import sys
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")
pytest.importorskip("matplotlib")
from helpers.tiny_vocab import save_tiny_bert  # noqa: E402

from soft_infonce.codesearch.data.negative_spec import HardNegativeSpec  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.retrieval import RetrievalSet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
hn = importlib.import_module("hard_negatives")

VERBS = "read write sort parse open close load save".split()
NOUNS = "file list json string number line table key".split()


def pair(verb: str, noun: str) -> dict[str, str]:
    return {"query": f"{verb} a {noun}", "code": f"def {verb}_{noun} ( x ) : return x"}


def make_pairs(n: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    return datasets.Dataset.from_list(
        [pair(rng.choice(VERBS), rng.choice(NOUNS)) for _ in range(n)]
    )


@pytest.fixture()
def tiny(tmp_path, monkeypatch, one_thread):
    words = [f"{v}_{n}" for v in VERBS for n in NOUNS]
    path = save_tiny_bert(tmp_path / "tiny", *VERBS, *NOUNS, *words)
    model = BiEncoder.from_pretrained(str(path), pooling="mean", normalize=True, scale=20.0)
    monkeypatch.setattr(hn, "load_model", lambda: copy.deepcopy(model))
    monkeypatch.setattr(hn.quality, "model_path", lambda: str(path))  # the peers' model
    test_pairs = [pair(v, n) for v in VERBS for n in NOUNS[:3]]
    test = RetrievalSet(
        [p["query"] for p in test_pairs],
        [p["code"] for p in test_pairs],
        list(range(len(test_pairs))),
        name="test",
    )
    valid = RetrievalSet(test.queries[:8], test.codes[:8], list(range(8)), name="valid")
    monkeypatch.setattr(hn, "load_data", lambda args: {"ruby": (make_pairs(16, 0), valid, test)})
    return tmp_path


def test_grid_writes_pairs_by_negatives_resumes_and_reports(tiny, capsys):
    out = tiny / "hn.json"
    argv = [
        "--experiments",
        "ruby",
        "--negatives",
        "none,bm25:1",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--learning-rate",
        "1e-3",
        "--max-query-length",
        "16",
        "--max-code-length",
        "16",
        "--runs",
        "infonce,soft:bm25",
        "--output",
        str(out),
    ]
    hn.main(argv)
    results = json.loads(out.read_text())
    runs = results["runs"]["ruby"]
    assert set(runs) == {"none", "bm25:1"}
    for neg in runs:
        for spec in ("infonce", "soft:bm25"):
            entry = runs[neg][spec]["0"]
            assert len(entry["rr"]) == 24 and entry["steps"] == 4  # 2 batches x 2 epochs
            assert [e["epoch"] for e in entry["valid_curve"]] == [1.0, 2.0]
            assert entry["valid_mrr"] == max(e["valid_mrr"] for e in entry["valid_curve"])
            assert entry["mrr"] == pytest.approx(sum(entry["rr"]) / 24)
        row = results["summary"]["ruby"][neg]["soft:bm25"]
        assert 0 <= row["p_value"] <= 1 and "delta_vs_infonce" in row
    # resume: a finished grid trains nothing again, and the file is unchanged
    before = out.read_text()
    hn.main(argv)
    assert json.loads(out.read_text())["runs"] == json.loads(before)["runs"]
    capsys.readouterr()
    hn.main(["--report-only", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "bm25:1" in printed and "soft:bm25" in printed
    assert out.with_suffix(".png").stat().st_size > 0


def test_peers_train_on_the_same_rows_and_negatives(tiny):
    pytest.importorskip("sentence_transformers")
    out = tiny / "peers.json"
    argv = ["--experiments", "ruby", "--negatives", "none,bm25:1", "--seeds", "0"]
    argv += ["--epochs", "1", "--evals-per-epoch", "2", "--batch-size", "4", "--threads", "1"]
    argv += ["--runs", "infonce,mnrl,gist", "--output", str(out)]
    hn.main(argv)
    results = json.loads(out.read_text())
    for neg in ("none", "bm25:1"):
        for spec in ("mnrl", "gist"):
            entry = results["runs"]["ruby"][neg][spec]["0"]
            assert entry["steps"] == 4 and entry["train_pairs"] == 16  # 16 rows / 4 per batch
            assert [e["epoch"] for e in entry["valid_curve"]] == [0.5, 1.0]
            assert entry["valid_mrr"] == max(e["valid_mrr"] for e in entry["valid_curve"])
            assert len(entry["rr"]) == 24
            row = results["summary"]["ruby"][neg][spec]
            assert 0 <= row["p_value"] <= 1 and "delta_vs_infonce" in row


def test_bad_settings_are_refused_before_any_work():
    with pytest.raises(SystemExit, match="METHOD:K"):
        hn.parse_negatives("none,bm25")
    with pytest.raises(SystemExit, match="soft:bm52"):
        hn.parse_runs("infonce,soft:bm52")
    assert hn.parse_negatives("none,dense:3,bm25-pp:2") == [
        ("none", "none", None),
        ("dense:3", "dense", HardNegativeSpec("dense", 3)),
        ("bm25-pp:2", "bm25-pp", HardNegativeSpec("bm25", 2, relative_margin=0.05)),
    ]


def _entry(rr: list[float]) -> dict:
    return {"mrr": sum(rr) / len(rr), "rr": rr}


def test_merge_adds_the_other_grids_runs_and_refuses_a_different_rerun(tmp_path, capsys):
    """Two grids run side by side into two files: --merge folds the second into the first
    (new seeds and settings added, the summary recomputed); the same seed with other ranks is
    an error, the same seed with the same ranks is no conflict."""
    ours = {"runs": {"ruby": {"none": {"infonce": {"0": _entry([1.0, 0.5])}}}}}
    theirs = {
        "runs": {
            "ruby": {"none": {"infonce": {"0": _entry([1.0, 0.5]), "1": _entry([0.5, 0.5])}}},
            "stdlib->cosqa": {"bm25:3": {"infonce": {"0": _entry([0.25, 1.0])}}},
        },
        "mining_seconds": {"stdlib->cosqa/bm25": 2.0},
    }
    out, other = tmp_path / "hn.json", tmp_path / "other.json"
    out.write_text(json.dumps(ours))
    other.write_text(json.dumps(theirs))
    hn.main(["--merge", str(other), "--output", str(out)])
    merged = json.loads(out.read_text())
    assert set(merged["runs"]["ruby"]["none"]["infonce"]) == {"0", "1"}
    assert merged["runs"]["stdlib->cosqa"]["bm25:3"]["infonce"]["0"]["rr"] == [0.25, 1.0]
    assert merged["summary"]["ruby"]["none"]["infonce"]["mrr_mean"] == pytest.approx(0.625)
    assert merged["mining_seconds"] == {"stdlib->cosqa/bm25": 2.0}
    assert "stdlib->cosqa" in capsys.readouterr().out
    theirs["runs"]["ruby"]["none"]["infonce"]["0"] = _entry([0.5, 0.5])
    other.write_text(json.dumps(theirs))
    with pytest.raises(SystemExit, match="ruby/none/infonce seed 0 differs"):
        hn.main(["--merge", str(other), "--output", str(out)])
