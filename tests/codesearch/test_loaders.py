from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from soft_infonce.codesearch.data.loaders import (
    RetrievalSet,
    load_code_text,
    load_codesearchnet,
    load_codesearchnet_retrieval,
    load_cosqa_pairs,
    load_cosqa_retrieval,
    load_jsonl,
    pairs_to_retrieval_set,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
RUBY = DATA / "csn-ruby" / "valid.jsonl"
COSQA = DATA / "cosqa"


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def csn(url: str, doc: list[str], code: list[str]) -> dict:
    return {"url": url, "docstring_tokens": doc, "code_tokens": code, "repo": "r"}


@pytest.fixture
def csn_dir(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "train.jsonl", [csn("u1", ["Add", "two", "numbers"], ["def", "add"])])
    write_jsonl(tmp_path / "valid.jsonl", [csn("u3", ["Sort", "it"], ["def", "srt"])])
    write_jsonl(
        tmp_path / "test.jsonl",
        [csn("u2", ["Reverse", "a", "list"], ["def", "rev"]), csn("u1", ["Add"], ["x"])],
    )
    write_jsonl(
        tmp_path / "codebase.jsonl",
        [csn("u1", ["Add"], ["def", "add"]), csn("u2", [], ["def", "rev"]), csn("u3", [], ["y"])],
    )
    return tmp_path


# --- RetrievalSet -------------------------------------------------------------------------------


def test_retrieval_set_accepts_valid_input():
    task = RetrievalSet(["q1", "q2"], ["c1", "c2", "c3"], [2, 0], name="t")
    assert task.relevant == [2, 0] and task.name == "t"


@pytest.mark.parametrize(
    ("queries", "codes", "relevant", "message"),
    [
        ([], ["c"], [], "queries must be non-empty"),
        (["q"], [], [0], "codes must be non-empty"),
        (["q", "r"], ["c"], [0], "one index per query"),
        (["q"], ["c", "d"], [2], r"relevant\[0\] must be in \[0, 2\), got 2"),
        (["q"], ["c"], [-1], "got -1"),
        (["q"], ["c"], [True], "must be an int"),
    ],
)
def test_retrieval_set_rejects_bad_input(queries, codes, relevant, message):
    with pytest.raises(ValueError, match=message):
        RetrievalSet(queries, codes, relevant)


# --- CodeSearchNet (GraphCodeBERT / UniXcoder layout) -------------------------------------------


def test_load_codesearchnet_joins_tokens(csn_dir: Path):
    train = load_codesearchnet(csn_dir, "train")
    assert train.column_names == ["query", "code", "url"]
    assert train[0] == {"query": "Add two numbers", "code": "def add", "url": "u1"}
    assert len(load_codesearchnet(csn_dir, "test")) == 2


def test_load_codesearchnet_can_keep_the_source_text(tmp_path: Path):
    source = "def add(a, b):\n    return a + b"
    record = csn("u1", ["Add"], ["def", "add"]) | {"original_string": source}
    write_jsonl(tmp_path / "train.jsonl", [record])
    write_jsonl(tmp_path / "test.jsonl", [record])
    write_jsonl(tmp_path / "codebase.jsonl", [record])
    assert load_codesearchnet(tmp_path, "train", use_tokens=False)[0]["code"] == source
    assert load_codesearchnet_retrieval(tmp_path, "test", use_tokens=False).codes == [source]
    del record["original_string"]
    write_jsonl(tmp_path / "train.jsonl", [record])
    with pytest.raises(ValueError, match="original_string"):
        load_codesearchnet(tmp_path, "train", use_tokens=False)


def test_load_codesearchnet_rejects_unknown_split(csn_dir: Path):
    with pytest.raises(ValueError, match="split must be one of .* got 'dev'"):
        load_codesearchnet(csn_dir, "dev")


def test_load_codesearchnet_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        load_codesearchnet(tmp_path, "train")


def test_retrieval_matches_urls_against_codebase(csn_dir: Path):
    task = load_codesearchnet_retrieval(csn_dir, "test")
    assert task.codes == ["def add", "def rev", "y"]  # code-base order
    assert task.queries == ["Reverse a list", "Add"]
    assert task.relevant == [1, 0]
    assert task.name == "codesearchnet-test"
    assert load_codesearchnet_retrieval(csn_dir, "valid").relevant == [2]


def test_retrieval_unknown_url_names_file_and_line(csn_dir: Path):
    write_jsonl(csn_dir / "test.jsonl", [csn("u1", ["a"], ["b"]), csn("nope", ["a"], ["b"])])
    with pytest.raises(ValueError, match=r"test\.jsonl:2: url 'nope' not found in .*codebase"):
        load_codesearchnet_retrieval(csn_dir, "test")


def test_retrieval_repeated_codebase_url_keeps_first(csn_dir: Path, caplog):
    write_jsonl(
        csn_dir / "codebase.jsonl",
        [csn("u1", [], ["first"]), csn("u1", [], ["second"]), csn("u2", [], ["z"])],
    )
    with caplog.at_level(logging.WARNING):
        task = load_codesearchnet_retrieval(csn_dir, "test")
    assert task.codes == ["first", "z"] and task.relevant == [1, 0]
    assert "1 repeated urls" in caplog.text


def test_retrieval_rejects_train_split(csn_dir: Path):
    with pytest.raises(ValueError, match="got 'train'"):
        load_codesearchnet_retrieval(csn_dir, "train")


# --- malformed JSON lines -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"url": "u", "docstring_tokens": ["a"]', r"valid\.jsonl:2: invalid JSON"),
        ('{"url": "u", "docstring_tokens": ["a"]}', r"valid\.jsonl:2: missing field 'code_tokens'"),
        ("[1, 2]", r"valid\.jsonl:2: expected a JSON object, got list"),
        ('{"url": "u", "docstring_tokens": 3, "code_tokens": []}', "'docstring_tokens' must be"),
    ],
)
def test_malformed_line_names_file_line_and_problem(tmp_path: Path, second_line, message):
    good = json.dumps(csn("u0", ["a"], ["b"]))
    (tmp_path / "valid.jsonl").write_text(f"{good}\n{second_line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_codesearchnet(tmp_path, "valid")


def test_invalid_utf8_names_line(tmp_path: Path):
    good = json.dumps(csn("u0", ["a"], ["b"])).encode()
    (tmp_path / "valid.jsonl").write_bytes(good + b"\n" + b'{"url": "\xff"}\n')
    with pytest.raises(ValueError, match=r"valid\.jsonl:2: not valid UTF-8"):
        load_codesearchnet(tmp_path, "valid")


def test_empty_split_is_an_error(tmp_path: Path):
    (tmp_path / "valid.jsonl").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no records"):
        load_codesearchnet(tmp_path, "valid")


def test_blank_lines_are_skipped(tmp_path: Path):
    line = json.dumps(csn("u0", ["a"], ["b"]))
    (tmp_path / "valid.jsonl").write_text(f"\n{line}\n\n{line}\n", encoding="utf-8")
    assert len(load_codesearchnet(tmp_path, "valid")) == 2


# --- Code-Text, generic JSON lines, pairs -> retrieval ------------------------------------------


def test_load_code_text_tokens_or_raw(tmp_path: Path):
    record = {
        "url": "u",
        "docstring": "Adds  them.",
        "docstring_tokens": ["Adds", "them", "."],
        "code": "def add(a, b):\n    return a + b",
        "code_tokens": ["def", "add", "(", "a", ",", "b", ")", ":", "return", "a", "+", "b"],
    }
    path = write_jsonl(tmp_path / "valid.jsonl", [record])
    assert load_code_text(path)[0] == {
        "query": "Adds them .",
        "code": "def add ( a , b ) : return a + b",
        "url": "u",
    }
    assert load_code_text(path, use_tokens=False)[0]["code"] == "def add(a, b):\n    return a + b"


def test_load_jsonl_field_mapping_and_extras(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [{"nl": "find max", "fn": ["max", "(", "x", ")"], "lang": "py", "id": 7}],
    )
    data = load_jsonl(path, "nl", "fn", extra_fields=("lang", "id"))
    assert data.column_names == ["query", "code", "lang", "id"]
    assert data[0] == {"query": "find max", "code": "max ( x )", "lang": "py", "id": 7}
    with pytest.raises(ValueError, match=r"p\.jsonl:1: missing field 'repo'"):
        load_jsonl(path, "nl", "fn", extra_fields=("repo",))
    with pytest.raises(ValueError, match="extra_fields"):
        load_jsonl(path, "nl", "fn", extra_fields=("query",))


def test_pairs_to_retrieval_set_deduplicates_codes():
    import datasets

    pairs = datasets.Dataset.from_dict(
        {"query": ["q0", "q1", "q2", "q3"], "code": ["a", "b", "a", "c"]}
    )
    task = pairs_to_retrieval_set(pairs, name="x")
    assert task.codes == ["a", "b", "c"]
    assert task.queries == ["q0", "q1", "q2", "q3"]
    assert task.relevant == [0, 1, 0, 2]
    with pytest.raises(ValueError, match="columns 'query' and 'code'"):
        pairs_to_retrieval_set(datasets.Dataset.from_dict({"query": ["q"]}))


# --- CoSQA --------------------------------------------------------------------------------------


def test_load_cosqa_pairs(tmp_path: Path):
    records = [
        {"idx": "a", "doc": "q1", "code": "c1", "label": 1},
        {"idx": "b", "doc": "q2", "code": "c2", "label": 0},
        {"idx": "c", "doc": "q3", "code": "c3", "label": 1},
    ]
    path = tmp_path / "cosqa.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    positives = load_cosqa_pairs(path)
    assert positives["query"] == ["q1", "q3"] and positives["label"] == [1, 1]
    assert load_cosqa_pairs(path, positives_only=False)["code"] == ["c1", "c2", "c3"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"doc": "q", "code": "c", "label": 1},\n{"doc": ]', r"cosqa\.json:2: invalid JSON"),
        ('[{"doc": "q", "code": "c"}]', "record 0: missing field 'label'"),
        ('[{"doc": "q", "code": "c", "label": 2}]', "must be 0 or 1, got 2"),
        ('{"doc": "q"}', "expected a JSON list"),
        ('[{"doc": "q", "code": "c", "label": 0}]', "no records"),
    ],
)
def test_load_cosqa_pairs_malformed(tmp_path: Path, text, message):
    path = tmp_path / "cosqa.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_cosqa_pairs(path)


def test_load_cosqa_retrieval(tmp_path: Path):
    code_map = tmp_path / "map.txt"
    code_map.write_text(json.dumps({"c1": 1, "c0": 0, "c2": 2}), encoding="utf-8")
    queries = tmp_path / "q.json"
    queries.write_text(
        json.dumps([{"doc": "q", "retrieval_idx": 2}, {"doc": "r", "retrieval_idx": 0}]),
        encoding="utf-8",
    )
    task = load_cosqa_retrieval(queries, code_map)
    assert task.codes == ["c0", "c1", "c2"]
    assert task.queries == ["q", "r"] and task.relevant == [2, 0]


def test_load_cosqa_retrieval_malformed(tmp_path: Path):
    queries = tmp_path / "q.json"
    queries.write_text(json.dumps([{"doc": "q", "retrieval_idx": 3}]), encoding="utf-8")
    code_map = tmp_path / "map.txt"
    code_map.write_text(json.dumps({"c0": 0, "c1": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"record 0: 'retrieval_idx' must be in \[0, 2\), got 3"):
        load_cosqa_retrieval(queries, code_map)
    code_map.write_text(json.dumps({"c0": 0, "c1": 2}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"map\.txt: indices must be integers in \[0, 2\), got 2"):
        load_cosqa_retrieval(queries, code_map)


# --- the real files in ../shared/data -----------------------------------------------------------


@pytest.mark.skipif(not RUBY.is_file(), reason="shared data absent")
def test_real_csn_ruby_valid():
    data = load_code_text(RUBY)
    assert len(data) == 1400
    with RUBY.open(encoding="utf-8") as handle:
        first, last = json.loads(handle.readline()), json.loads(handle.readlines()[-1])
    assert data[0]["query"] == " ".join(first["docstring_tokens"])
    assert data[0]["code"] == " ".join(first["code_tokens"])
    assert data[1399]["url"] == last["url"]
    task = pairs_to_retrieval_set(data, name="ruby")
    assert len(task.queries) == 1400 and len(task.codes) <= 1400


@pytest.mark.skipif(not (COSQA / "code_idx_map.txt").is_file(), reason="shared data absent")
def test_real_cosqa():
    task = load_cosqa_retrieval(COSQA / "cosqa-retrieval-dev-500.json", COSQA / "code_idx_map.txt")
    assert len(task.queries) == 500 and len(task.codes) == 6267
    assert all(0 <= i < 6267 for i in task.relevant)
    records = json.loads((COSQA / "cosqa-retrieval-dev-500.json").read_text(encoding="utf-8"))
    # the true code of every query is its own code text (an independent consistency check)
    assert all(task.codes[i] == r["code"] for i, r in zip(task.relevant, records))
    assert task.queries[0] == records[0]["doc"]
    pairs = load_cosqa_pairs(COSQA / "cosqa-dev.json")
    assert len(pairs) == 313 and set(pairs["label"]) == {1}
    assert len(load_cosqa_pairs(COSQA / "cosqa-dev.json", positives_only=False)) == 604


def test_package_exports_resolve():
    import soft_infonce.codesearch.data as data

    assert set(data.__all__) <= set(dir(data))
    for name in data.__all__:
        assert callable(getattr(data, name)), name
    assert data.load_jsonl is load_jsonl
