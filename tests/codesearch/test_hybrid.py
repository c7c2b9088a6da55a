"""Hybrid search: reciprocal rank fusion by hand, the searcher against rank_bm25 and the dense
index, the texts file beside a saved index, and ``soft-infonce search --hybrid``."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
from helpers.search_fixtures import make_repository, save_tiny_model  # noqa: E402

from soft_infonce.bm25 import code_tokenize  # noqa: E402
from soft_infonce.codesearch.cli import main  # noqa: E402
from soft_infonce.codesearch.search import CodeIndex  # noqa: E402
from soft_infonce.codesearch.search.hybrid import (  # noqa: E402
    TEXTS_FILE,
    HybridSearcher,
    reciprocal_rank_fusion,
    source_texts,
    texts_jsonl,
)
from soft_infonce.codesearch.search.manifest import manifest_digest  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

CODES = {
    "A": "sort a list",  # dense first, no query word: BM25 leaves it out
    "B": "parse json string parse json string",  # BM25 first, dense last
    "C": "parse json",  # second by both
    "D": "open a file",
    "E": "close the door",
    "F": "print a number",
}
QUERY = "parse json string"
#: unit vectors whose inner products with the query's give the dense order A, C, D, E, F, B
VECTORS = {
    QUERY: [1.0, 0.0], "A": [0.9, 0.436], "C": [0.8, 0.6], "D": [0.5, 0.866],
    "E": [0.4, 0.917], "F": [0.3, 0.954], "B": [0.1, 0.995],
}  # fmt: skip


class Lookup:
    """A stand-in sentence-transformers model with a fixed vector per text, so that the dense
    ranking is known by hand."""

    similarity_fn_name = "dot"

    def get_embedding_dimension(self) -> int:
        return 2

    def _embed(self, texts, **_: object) -> np.ndarray:
        by_text = {CODES.get(k, k): v for k, v in VECTORS.items()}
        return np.array([by_text[t] for t in texts], dtype=np.float32)

    encode_query = encode_document = _embed


def test_fusion_by_hand() -> None:
    # k = 1: id 1 has 1/(1+2) + 1/(1+1); id 3 has 1/2; id 4 1/3; id 2 1/4
    assert reciprocal_rank_fusion([[3, 1, 2], [1, 4]], k_rrf=1.0) == [
        (1, 1 / 3 + 1 / 2), (3, 0.5), (4, 1 / 3), (2, 0.25)
    ]  # fmt: skip
    fused = reciprocal_rank_fusion([[7, 8], [8, 7]], k_rrf=60, weights=[2.0, 1.0])
    assert [i for i, _ in fused] == [7, 8]
    assert fused[0][1] == pytest.approx(2 / 61 + 1 / 62)
    # a tie keeps the first ranking's order
    assert [i for i, _ in reciprocal_rank_fusion([[5, 6], [6, 5]])] == [5, 6]
    assert reciprocal_rank_fusion([]) == []
    with pytest.raises(ValueError, match="k_rrf must be a number >= 0, got -1"):
        reciprocal_rank_fusion([[1]], k_rrf=-1)
    with pytest.raises(ValueError, match="weights must hold 2 numbers, got 1"):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])


def test_searcher_fuses_the_dense_and_bm25_rankings() -> None:
    rank_bm25 = pytest.importorskip("rank_bm25")
    names, codes = list(CODES), list(CODES.values())
    index = CodeIndex(Lookup(), show_progress=False)
    index.add_texts(codes, names=names)
    dense = [hit.id for hit in index.search(QUERY, k=6)]
    assert [names[i] for i in dense] == ["A", "C", "D", "E", "F", "B"]
    reference = rank_bm25.BM25Okapi([code_tokenize(c) for c in codes])
    scores = reference.get_scores(code_tokenize(QUERY))
    lexical = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]
    assert [names[i] for i in lexical] == ["B", "C"]
    searcher = HybridSearcher(index, codes)
    assert list(searcher.lexical_ranking([QUERY], 6)[0]) == lexical
    hits = searcher.search(QUERY, k=6)
    # k = 60: C 1/62 + 1/62, B 1/66 + 1/61, A 1/61, D 1/63, E 1/64, F 1/65
    by_hand = [("C", 2 / 62), ("B", 1 / 66 + 1 / 61), ("A", 1 / 61), ("D", 1 / 63),
               ("E", 1 / 64), ("F", 1 / 65)]  # fmt: skip
    assert [(h.name, h.score) for h in hits] == [(n, pytest.approx(s)) for n, s in by_hand]
    assert hits[0].text == CODES["C"]
    assert [h.name for h in HybridSearcher(index, codes, k_rrf=0).search(QUERY, k=2)] == ["B", "A"]
    with pytest.raises(ValueError, match="texts must hold one string per index entry"):
        HybridSearcher(index, codes[:3])
    with pytest.raises(ValueError, match="depth must be a positive int or None, got 0"):
        HybridSearcher(index, codes, depth=0)


def test_source_texts_read_the_indexed_lines(tmp_path: Path) -> None:
    file = tmp_path / "m.py"
    file.write_text("a = 1\ndef f():\n    return 2\n")
    records = [{"path": str(file), "line": 2, "end_line": 3, "name": "f"}, {"text": "x"}]
    assert source_texts(records) == ["def f():\n    return 2", "x"]
    file.write_text("def f():\n")
    with pytest.raises(ValueError, match="the file changed since it was indexed"):
        source_texts(records)
    with pytest.raises(ValueError, match="entry 0 has neither a text nor a path"):
        source_texts([{"name": "g"}])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hybrid")
    model = save_tiny_model(root / "model")
    repo = make_repository(root / "repo")
    out = root / "index"
    assert main(["index", str(repo), "--model", str(model), "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    return {"model": model, "repo": repo, "index": out}


def test_index_writes_the_texts_and_search_hybrid_uses_them(built, capsys) -> None:
    lines = (built["index"] / TEXTS_FILE).read_text().splitlines()
    metadata = (built["index"] / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == len(metadata) == 4
    entry = json.loads(lines[0])
    source = Path(entry["path"]).read_text().splitlines()
    meta = json.loads(metadata[0])
    assert entry["text"] == "\n".join(source[meta["line"] - 1 : meta["end_line"]])
    capsys.readouterr()
    assert main(["search", str(built["index"]), "write", "json", "--hybrid", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 4
    assert hits[0]["name"] == "Store.write"  # BM25 and the random model's ranks, fused
    searcher = HybridSearcher.load(built["index"])
    expected = [h.name for h in searcher.search("write json", k=4)]
    assert [h["name"] for h in hits] == expected


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for file in folder.iterdir():
        (to / file.name).write_bytes(file.read_bytes())
    return to


def test_the_texts_are_saved_with_the_index_and_checked_by_sha256(built, tmp_path, capsys):
    config = json.loads((built["index"] / "search_index.json").read_text())
    data = (built["index"] / TEXTS_FILE).read_bytes()
    recorded = config["files"][TEXTS_FILE]
    assert recorded == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    copy = _copy(built["index"], tmp_path / "index")
    lines = (copy / TEXTS_FILE).read_text().splitlines()
    entry = json.loads(lines[0])
    stale = entry | {"text": entry["text"][::-1]}  # same entry and size, another source
    (copy / TEXTS_FILE).write_text("\n".join([json.dumps(stale), *lines[1:]]) + "\n")
    assert main(["search", str(copy), "write", "json", "--hybrid"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's progress bar
    assert last.startswith("soft-infonce search: error: ")
    assert f"{TEXTS_FILE} does not match the sha256" in last


def test_an_unlisted_texts_file_from_another_build_is_refused(built, tmp_path, capsys) -> None:
    copy = _copy(built["index"], tmp_path / "index")  # as if copied in by hand: not in the manifest
    config = json.loads((copy / "search_index.json").read_text())
    del config["files"][TEXTS_FILE]
    config["sha256"] = manifest_digest(config)
    (copy / "search_index.json").write_text(json.dumps(config))
    lines = (copy / TEXTS_FILE).read_text().splitlines()
    (copy / TEXTS_FILE).write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    assert main(["search", str(copy), "write", "json", "--hybrid"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("soft-infonce search: error: ") and f"{TEXTS_FILE}:1 does not" in last


def test_saving_again_replaces_the_texts_as_one_unit(built, tmp_path) -> None:
    index = CodeIndex.load(built["index"])
    out = index.save(tmp_path / "index", extras={TEXTS_FILE: texts_jsonl(index)})
    assert (out / TEXTS_FILE).read_text() == (built["index"] / TEXTS_FILE).read_text()
    index.save(out)  # a build without texts leaves none of the old build's behind
    assert not (out / TEXTS_FILE).exists()
    assert [h.name for h in HybridSearcher.load(out).search("write json", k=2)]  # from sources
    for name in ("index.faiss", "search_index.json", "../x", ".hidden", "sub/x"):
        with pytest.raises(ValueError, match="extras"):
            index.save(out, extras={name: "x"})
    with pytest.raises(ValueError, match="must be the file's text"):
        index.save(out, extras={"notes.txt": b"x"})  # type: ignore[dict-item]


def test_index_without_faiss_fails_before_loading_the_model(built, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    import soft_infonce.codesearch.search.encoders as encoders

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the missing extra was found")

    monkeypatch.setattr(encoders, "load_encoder", never)
    out = tmp_path / "index"
    assert main(["index", str(built["repo"]), "--model", str(built["model"]), "--out",
                 str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "soft-infonce[search]"' in err
    assert not out.exists()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
