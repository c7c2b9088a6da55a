"""``soft-infonce data codesearchnet``: local files and a stand-in for the Hub, read back with
the loaders the recipes use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soft_infonce.codesearch.cli import main
from soft_infonce.codesearch.data import load_codesearchnet, load_codesearchnet_retrieval, prepare

SHARED_RUBY = Path(__file__).resolve().parents[3] / "shared" / "data" / "csn-ruby" / "valid.jsonl"


def code_text_row(i: int, partition: str) -> dict:
    """A row in CodeXGLUE's Code-Text layout."""
    return {
        "repo": "me/lib", "path": f"lib/f{i}.rb", "func_name": f"F.f{i}",
        "original_string": f"def f{i}(x)\n  x + {i}\nend", "language": "ruby",
        "code": f"def f{i}(x)\n  x + {i}\nend",
        "code_tokens": ["def", f"f{i}", "(", "x", ")", "x", "+", str(i), "end"],
        "docstring": f"Add {i} to x", "docstring_tokens": ["Add", str(i), "to", "x"],
        "sha": "0" * 40, "url": f"https://github.com/me/lib/blob/0/lib/f{i}.rb#L1-L3",
        "partition": partition,
    }  # fmt: skip


def write_split_folder(folder: Path, sizes=(6, 3, 2)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, n in zip(("train", "valid", "test"), sizes):
        rows = [code_text_row(start + i, split) for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        start += n
    return folder


def test_local_folder_to_the_recipes_layout(tmp_path: Path, capsys) -> None:
    source = write_split_folder(tmp_path / "codexglue" / "ruby")
    out = tmp_path / "dataset"
    assert main(["data", "codesearchnet", "--language", "ruby", "--out", str(out),
                 "--from-jsonl", str(source)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "train.jsonl" in printed and "24,927" in printed  # beside the paper's Table 6
    folder = out / "ruby"
    assert sorted(p.name for p in folder.iterdir()) == [
        "codebase.jsonl", "test.jsonl", "train.jsonl", "valid.jsonl"
    ]  # fmt: skip
    train = load_codesearchnet(folder, "train")
    assert len(train) == 6 and train[0]["query"] == "Add 0 to x"
    assert train[0]["code"] == "def f0 ( x ) x + 0 end"
    test = load_codesearchnet_retrieval(folder, "test")
    assert len(test.codes) == 5  # valid (3) + test (2)
    assert [test.codes[i] for i in test.relevant] == ["def f9 ( x ) x + 9 end",
                                                      "def f10 ( x ) x + 10 end"]  # fmt: skip
    source_text = load_codesearchnet(folder, "train", use_tokens=False)[0]["code"]
    assert source_text == "def f0(x)\n  x + 0\nend"  # original_string, for GraphCodeBERT


def test_files_split_by_their_partition_and_a_given_code_base(tmp_path: Path) -> None:
    rows = [code_text_row(i, p) for i, p in enumerate(["train"] * 4 + ["valid", "test"])]
    mixed = tmp_path / "all.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    codebase = tmp_path / "codebase.jsonl"
    extra = [code_text_row(i, "test") for i in (4, 5, 99)]  # two in the splits + a distractor
    codebase.write_text("".join(json.dumps(r) + "\n" for r in extra))
    out = tmp_path / "dataset"
    assert main(["data", "codesearchnet", "--language", "ruby", "--out", str(out),
                 "--from-jsonl", str(mixed), "--codebase-jsonl", str(codebase)]) == 0  # fmt: skip
    assert len((out / "ruby" / "train.jsonl").read_text().splitlines()) == 4
    assert len(load_codesearchnet_retrieval(out / "ruby", "valid").codes) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows[1].pop("docstring_tokens"), r"train.jsonl:2: no 'docstring_tokens'"),
        (lambda rows: rows[0].update(code_tokens="def f"), r"train.jsonl:1: 'code_tokens' must"),
    ],
)
def test_bad_rows_are_named_by_file_and_line(tmp_path: Path, capsys, change, message) -> None:
    source = write_split_folder(tmp_path / "src")
    rows = [json.loads(line) for line in (source / "train.jsonl").read_text().splitlines()]
    change(rows)
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["data", "codesearchnet", "--language", "ruby", "--out", str(tmp_path / "d"),
            "--from-jsonl", str(source)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert pytest.importorskip("re").search(message, err), err


def test_a_missing_split_is_refused(tmp_path: Path, capsys) -> None:
    source = write_split_folder(tmp_path / "src")
    (source / "test.jsonl").unlink()
    assert main(["data", "codesearchnet", "--language", "ruby", "--out", str(tmp_path / "d"),
                 "--from-jsonl", str(source)]) == 2  # fmt: skip
    assert "the data has no test rows" in capsys.readouterr().err


def test_the_hub_path_maps_splits_and_fields(tmp_path: Path, monkeypatch) -> None:
    """The Hub is out of reach here: ``load_dataset`` answers with a local DatasetDict of the
    Hub data set's columns and split names (validation, not valid)."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(name: str, config: str):
        calls.append((name, config))
        splits = {"train": 6, "validation": 2, "test": 2}
        start, parts = 0, {}
        for split, n in splits.items():
            rows = [code_text_row(start + i, split) for i in range(n)]
            for row in rows:
                row.pop("partition")
                row["id"] = start
            parts[split] = datasets.Dataset.from_list(rows)
            start += n
        return datasets.DatasetDict(parts)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    out = tmp_path / "dataset"
    assert main(["data", "codesearchnet", "--language", "ruby", "--out", str(out)]) == 0
    assert calls == [(prepare.HUB_DATASET, "ruby")]
    valid = load_codesearchnet_retrieval(out / "ruby", "valid")
    assert valid.queries == ["Add 6 to x", "Add 7 to x"] and len(valid.codes) == 4


@pytest.mark.skipif(not SHARED_RUBY.is_file(), reason="the shared CodeSearchNet Ruby file")
def test_the_real_code_text_file(tmp_path: Path) -> None:
    lines = SHARED_RUBY.read_text(encoding="utf-8").splitlines()
    source = tmp_path / "ruby"
    source.mkdir()
    for split, part in (("train", lines[:1000]), ("valid", lines[1000:1200]),
                        ("test", lines[1200:])):  # fmt: skip
        (source / f"{split}.jsonl").write_text("\n".join(part) + "\n")
    counts = prepare.prepare_codesearchnet(
        "ruby", tmp_path / "dataset", prepare.read_rows([source])
    )
    assert counts == {"train": 1000, "valid": 200, "test": 200, "codebase": 400}
    test = load_codesearchnet_retrieval(tmp_path / "dataset" / "ruby", "test")
    assert len(test.queries) == 200 and len(test.codes) == 400
