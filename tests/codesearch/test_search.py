from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("transformers")

from helpers.search_fixtures import make_repository, save_tiny_model  # noqa: E402

from soft_infonce.codesearch.data.files import Skipped  # noqa: E402
from soft_infonce.codesearch.search import CodeIndex, extract_functions, iter_code_units  # noqa: E402
from soft_infonce.integrations.hf.evaluation import evaluate_retrieval  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

QUERIES = ["read a json file", "sort a list by key", "write text lines", "parse an int",
           "open the path", "sum of number list", "split string", "get dict value"]  # fmt: skip
CODES = [
    "def load ( path ) : return json . load ( open ( path ) )",
    "def sort ( x ) : return sorted ( x , key = key )",
    "def write ( path , lines ) : open ( path ) . write ( lines )",
    "def parse ( text ) : return int ( text )",
    "with open ( path ) as f : return f",
    "def total ( x ) : return sum ( x )",
    "def split ( string ) : return string . split ( )",
    "def get ( data , key ) : return data . get ( key )",
    "class list : pass",
    "for x in y : if not x : return none",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def model(model_dir: Path) -> BiEncoder:
    return BiEncoder.from_pretrained(model_dir)


def test_python_functions_names_and_lines() -> None:
    source = (
        "import os\n"  # 1
        "class A:\n"  # 2
        "    @staticmethod\n"  # 3
        "    def f():\n"  # 4
        "        def inner():\n"  # 5
        "            pass\n"  # 6
        "        return 1\n"  # 7
        "    try:\n"  # 8
        "        async def g(self): pass\n"  # 9
        "    except ImportError: pass\n"  # 10
        "def top(x):\n"  # 11
        "    return x\n"  # 12
    )
    units = extract_functions(source, "python", "a.py")
    assert [(u.name, u.line, u.end_line) for u in units] == [
        ("A.f", 4, 7), ("A.g", 9, 9), ("top", 11, 12)
    ]  # fmt: skip
    assert units[0].code == "def f():\n    def inner():\n        pass\n    return 1"
    with pytest.raises(ValueError, match="does not parse as Python"):
        extract_functions("def broken(:\n", "python")
    with pytest.raises(ValueError, match="language must be one of"):
        extract_functions("x", "cobol")


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        ("ruby", "class A\n  def foo(x)\n    x\n  end\n  def self.bar; end\nend\n",
         [("A.foo", 2), ("A.bar", 5)]),
        ("go", "package m\n\nfunc F(a int) int { return a }\nfunc (s *S) M() {}\n",
         [("F", 3), ("M", 4)]),
        ("java", "class A {\n  A() {}\n  int f(int x) { return x; }\n}\n",
         [("A.A", 2), ("A.f", 3)]),
        ("javascript", "function f(a) { return a }\nclass C {\n  m() {}\n}\nconst g = (x) => x;\n",
         [("f", 1), ("C.m", 3), ("g", 5)]),
        ("php", "<?php\nfunction f($a) { return $a; }\nclass C { public function m() {} }\n",
         [("f", 2), ("C.m", 3)]),
    ],
)  # fmt: skip
def test_tree_sitter_functions(language: str, source: str, expected: list) -> None:
    pytest.importorskip(f"tree_sitter_{language}")
    units = extract_functions(source, language)
    assert [(u.name, u.line) for u in units] == expected
    assert all(u.language == language for u in units)


def test_repository_walk_counts_unparseable(tmp_path: Path) -> None:
    pytest.importorskip("tree_sitter_ruby")
    skipped = Skipped()
    units = list(iter_code_units(make_repository(tmp_path), skipped=skipped))
    assert [u.name for u in units] == ["sum_list", "load", "Store.write", "Store.keys"]
    assert units[1].path.endswith("io.py") and units[1].line == 5
    assert dict(skipped.counts) == {"unparseable": 1}
    assert skipped.examples["unparseable"][0].endswith("broken.py")
    with pytest.raises(ValueError, match="languages must be among"):
        list(iter_code_units(tmp_path, ["cobol"]))


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_mrr_through_the_index_equals_evaluate_retrieval(model: BiEncoder, index_type) -> None:
    index = CodeIndex(model, index_type=index_type, show_progress=False, max_length=64, nprobe=9)
    assert index.add_texts(CODES) == len(CODES)
    relevant = list(range(len(QUERIES)))
    hits = index.search_many(QUERIES, k=len(CODES))
    ranks = [[hit.id for hit in row].index(target) + 1 for row, target in zip(hits, relevant)]
    expected = evaluate_retrieval(
        model, QUERIES, CODES, relevant, max_query_length=64, max_code_length=64,
        show_progress=False,
    )  # fmt: skip
    assert np.mean([1 / r for r in ranks]) == pytest.approx(expected["mrr"], abs=1e-12)
    # Scores are the model's own similarity, scale * q . c, best first.
    q = model.encode_texts(QUERIES[:1], side="query", max_length=64)
    c = model.encode_texts(CODES, side="code", max_length=64)
    reference = model.similarity(q, c)[0]
    assert [h.score for h in hits[0]] == pytest.approx(
        sorted(reference.tolist(), reverse=True), abs=1e-5
    )
    assert hits[0][0].text == CODES[hits[0][0].id] and hits[0][0].location.startswith("#")


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(model_dir: Path, tmp_path: Path, index_type: str) -> None:
    pytest.importorskip("tree_sitter_ruby")
    index = CodeIndex(model_dir, index_type=index_type, show_progress=False, ef_search=16, nprobe=2)
    assert index.add_paths(make_repository(tmp_path / "repo")) == 4
    before = index.search("read a json file", k=3)
    out = index.save(tmp_path / "index")
    assert sorted(p.name for p in out.iterdir()) == [
        "index.faiss", "metadata.jsonl", "search_index.json"
    ]  # fmt: skip
    config = json.loads((out / "search_index.json").read_text())
    assert config["model_path"] == str(model_dir) and config["dim"] == 32
    assert config["count"] == 4 and config["skipped"] == {"unparseable": 1}
    loaded = CodeIndex.load(out)
    assert loaded.index_type == index_type and len(loaded) == 4
    assert (loaded.ef_search, loaded.nprobe, loaded.nlist) == (16, 2, index.nlist)
    after = loaded.search("read a json file", k=3)
    assert [(h.path, h.line, h.name) for h in after] == [(h.path, h.line, h.name) for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-6)
    assert str(after[0]).split()[1] == f"{after[0].path}:{after[0].line}"
    # Without a model: embeddings only, same vectors.
    bare = CodeIndex.load(out, load_model=False)
    q = loaded.encoder.encode(["read a json file"], "query")
    assert np.array_equal(bare.search_embeddings(q, 3)[1], loaded.search_embeddings(q, 3)[1])
    with pytest.raises(ValueError, match="has no model"):
        bare.search("x")


def test_bad_inputs(model_dir: Path, tmp_path: Path) -> None:
    index = CodeIndex(model_dir, show_progress=False)
    with pytest.raises(ValueError, match="index is empty"):
        index.search("read a json file")
    with pytest.raises(ValueError, match="nothing to save"):
        index.save(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no code\n")
    with pytest.raises(ValueError, match="no function to index"):
        index.add_paths(empty)
    (empty / "bad.py").write_text("def f(:\n")
    with pytest.raises(ValueError, match=r"1 files skipped: 1 unparseable \(first: .*bad\.py\)"):
        index.add_paths(empty)
    with pytest.raises(ValueError, match="must be existing files or folders"):
        index.add_paths(tmp_path / "missing")
    with pytest.raises(ValueError, match="directory must hold a saved index"):
        CodeIndex.load(empty)
    with pytest.raises(ValueError, match="index_type must be one of"):
        CodeIndex(model_dir, index_type="lsh")
    with pytest.raises(ValueError, match="model must be an existing model folder"):
        CodeIndex(tmp_path / "no-model")
    index.add_texts(CODES[:3])
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search("x", k=0)
    with pytest.raises(ValueError, match="embeddings must have the index's dim 32, got dim 16"):
        index.add_embeddings(np.zeros((2, 16)))
    assert len(index.search("x", k=10)) == 3  # k above the index size: every entry once
    # A model of another width against a saved index.
    index.save(tmp_path / "index")
    other = save_tiny_model(tmp_path / "small", hidden_size=16)
    with pytest.raises(ValueError, match="model embeds in dim 16 but the index in 32"):
        CodeIndex.load(tmp_path / "index", model=other)


def test_codes_longer_than_the_model_positions(model: BiEncoder) -> None:
    long_code = "def f ( x ) : " + " + ".join(["x"] * 400)  # ~800 tokens, 128 positions
    index = CodeIndex(model, show_progress=False, max_length=512)
    index.add_texts([long_code, CODES[0]])
    expected = model.encode_texts([long_code], side="code", max_length=128)
    assert np.allclose(index._index.reconstruct(0), expected[0].numpy(), atol=1e-5)


def test_sentence_transformers_model(model_dir: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(model_dir), local_files_only=True, device="cpu")
    index = CodeIndex(model, show_progress=False)
    index.add_texts(CODES)
    hits = index.search("read a json file", k=3)
    # The model's own similarity (cosine or dot, as its configuration says).
    q = model.encode_query(["read a json file"], convert_to_tensor=True)
    c = model.encode_document(CODES, convert_to_tensor=True)
    expected = model.similarity(q, c)[0].topk(3)
    assert [h.id for h in hits] == expected.indices.tolist()
    assert [h.score for h in hits] == pytest.approx(expected.values.tolist(), abs=1e-5)
