"""Issue 12 for the loaders: blank texts skipped and counted with file:line before training;
values arrow cannot store, and JSON that is invalid or too deep, named by file and line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from soft_infonce.codesearch.data import loaders as L
from soft_infonce.codesearch.data.files import Skipped


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def csn(url: str, doc: list[str], code: list[str]) -> dict:
    return {"url": url, "docstring_tokens": doc, "code_tokens": code}


def test_load_jsonl_skips_and_counts_blank_texts_with_file_and_line(tmp_path, caplog):
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {"q": "sort a list", "c": "sorted(x)"},
            {"q": "   ", "c": "x"},  # line 2: blank query
            {"q": "open it", "c": "open(p)"},
            {"q": "read", "c": [" ", ""]},  # line 4: a token list joining to blank code
            {"q": "", "c": ""},  # line 5: both blank, counted once (as its query)
        ],
    )
    skipped = Skipped()
    with caplog.at_level(logging.WARNING):
        data = L.load_jsonl(path, "q", "c", skipped=skipped)
    assert data["query"] == ["sort a list", "open it"]
    assert skipped.counts == {"blank query": 2, "blank code": 1}
    assert skipped.examples["blank query"] == [f"{path}:2", f"{path}:5"]
    assert skipped.examples["blank code"] == [f"{path}:4"]
    assert "skipped 3 row(s) with a blank text" in caplog.text and f"{path}:2" in caplog.text


def test_a_file_of_only_blank_texts_is_an_error_before_training(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"query": " ", "code": "x"}])
    with pytest.raises(ValueError, match=r"p\.jsonl: no records"):
        L.load_jsonl(path)


def test_codesearchnet_split_skips_blank_docstrings(tmp_path):
    write_lines(tmp_path / "train.jsonl", [csn("a", ["Add", "it"], ["x"]), csn("b", [], ["y"])])
    skipped = Skipped()
    data = L.load_codesearchnet(tmp_path, "train", skipped=skipped)
    assert data["url"] == ["a"]
    assert skipped.examples == {"blank query": [f"{tmp_path / 'train.jsonl'}:2"]}


def test_codesearchnet_retrieval_skips_blank_codes_and_their_queries(tmp_path):
    write_lines(
        tmp_path / "codebase.jsonl",
        [csn("a", [], ["def", "a"]), csn("b", ["doc"], []), csn("c", [], ["def", "c"])],
    )
    write_lines(
        tmp_path / "test.jsonl",
        [csn("c", ["find", "c"], ["x"]), csn("b", ["find", "b"], ["x"]), csn("a", [" "], ["x"])],
    )
    skipped = Skipped()
    task = L.load_codesearchnet_retrieval(tmp_path, "test", skipped=skipped)
    assert task.codes == ["def a", "def c"]  # blank docstrings in the code base do not matter
    assert task.queries == ["find c"] and task.relevant == [1]
    assert skipped.counts == {"blank code": 1, "true code blank": 1, "blank query": 1}
    assert skipped.examples["blank code"] == [f"{tmp_path / 'codebase.jsonl'}:2"]
    assert skipped.examples["true code blank"] == [f"{tmp_path / 'test.jsonl'}:2"]


def test_cosqa_retrieval_drops_blank_codes_and_renumbers(tmp_path):
    code_map = tmp_path / "map.txt"
    code_map.write_text(json.dumps({"c0": 0, " ": 1, "c2": 2}), encoding="utf-8")
    queries = tmp_path / "q.json"
    records = [
        {"doc": "q2", "retrieval_idx": 2},
        {"doc": "q1", "retrieval_idx": 1},
        {"doc": "", "retrieval_idx": 0},
        {"doc": "q0", "retrieval_idx": 0},
    ]
    queries.write_text(json.dumps(records), encoding="utf-8")
    skipped = Skipped()
    task = L.load_cosqa_retrieval(queries, code_map, skipped=skipped)
    assert task.codes == ["c0", "c2"]
    assert [task.codes[i] for i in task.relevant] == ["c2", "c0"]
    assert task.queries == ["q2", "q0"]
    assert skipped.counts == {"blank code": 1, "true code blank": 1, "blank query": 1}


def test_cosqa_pairs_skip_blank_texts(tmp_path):
    path = tmp_path / "cosqa.json"
    path.write_text(
        json.dumps(
            [{"doc": "q", "code": "c", "label": 1}, {"doc": "q", "code": "\n\t", "label": 1}]
        ),
        encoding="utf-8",
    )
    skipped = Skipped()
    assert len(L.load_cosqa_pairs(path, skipped=skipped)) == 1
    assert skipped.examples == {"blank code": [f"{path}: record 1"]}


@pytest.mark.parametrize(
    ("values", "line", "kind"),
    [
        (["u1", "u2", 3, "u4"], 3, "int"),  # a string column meets an int
        ([1, 2, "x"], 3, "str"),
        ([[1], [2], ["a"]], 3, "list"),  # a list of ints meets a list of strings
        ([{"a": 1}, [1]], 2, "list"),
        ([1, 2**70], 2, "int"),  # beyond int64
    ],
)
def test_an_extra_field_arrow_cannot_store_names_file_line_and_field(tmp_path, values, line, kind):
    records = [{"query": f"q{i}", "code": f"c{i}", "meta": v} for i, v in enumerate(values)]
    path = write_lines(tmp_path / "mixed.jsonl", records)
    with pytest.raises(ValueError, match=rf"mixed\.jsonl:{line}: field 'meta' holds {kind}"):
        L.load_jsonl(path, extra_fields=("meta",))


def test_line_numbers_survive_skipped_rows(tmp_path):
    records = [
        {"query": " ", "code": "c", "id": "x"},
        {"query": "q", "code": "c", "id": "y"},
        {"query": "q", "code": "c", "id": 3},
    ]
    path = write_lines(tmp_path / "p.jsonl", records)
    with pytest.raises(ValueError, match=r"p\.jsonl:3: field 'id'"):
        L.load_jsonl(path, extra_fields="id")  # a str is one field name


def test_extra_fields_as_one_string_is_one_field(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [{"query": "q", "code": "c", "url": "u"}])
    assert L.load_jsonl(path, extra_fields="url").column_names == ["query", "code", "url"]
    with pytest.raises(TypeError, match="extra_fields"):
        L.load_jsonl(path, extra_fields=[1])
    with pytest.raises(TypeError, match="query_field"):
        L.load_jsonl(path, query_field=None)


def test_json_nested_too_deeply_names_the_line(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"query": "q", "code": "c"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"deep\.jsonl:2: JSON nested too deeply"):
        L.load_jsonl(path)


def test_invalid_json_in_a_json_file_names_file_and_line(tmp_path):
    path = tmp_path / "cosqa.json"
    path.write_text('[\n{"doc": "q", "code": "c", "label": 1},\n{"doc": oops}\n]')
    with pytest.raises(ValueError, match=r"cosqa\.json:3: invalid JSON"):
        L.load_cosqa_pairs(path)


def test_retrieval_set_refuses_blank_or_non_text_entries():
    with pytest.raises(ValueError, match=r"queries\[1\] is blank"):
        L.RetrievalSet(["q", " "], ["c"], [0, 0])
    with pytest.raises(ValueError, match=r"codes\[0\] is blank"):
        L.RetrievalSet(["q"], [""], [0])
    with pytest.raises(TypeError, match=r"codes\[0\] must be a str, got int"):
        L.RetrievalSet(["q"], [3], [0])


def test_path_arguments_of_the_wrong_kind_are_named(tmp_path):
    from soft_infonce.codesearch.data.cosqa import load_cosqa_retrieval

    with pytest.raises(TypeError, match="data_dir must be a path"):
        L.load_codesearchnet(None, "train")
    with pytest.raises(TypeError, match="data_dir must be a path"):
        L.load_codesearchnet_retrieval(3, "test")
    with pytest.raises(TypeError, match="path must be a path"):
        L.load_jsonl(["a.jsonl"])
    with pytest.raises(TypeError, match="path must be a path"):
        L.load_cosqa_pairs(None)
    with pytest.raises(TypeError, match="code_map_path must be a path"):
        load_cosqa_retrieval(tmp_path / "q.json", None)
