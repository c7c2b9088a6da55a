from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("transformers")

from helpers.search_fixtures import make_repository, save_tiny_model  # noqa: E402

from soft_infonce.codesearch.cli import main  # noqa: E402
from soft_infonce.codesearch.search import CodeIndex  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("tree_sitter_ruby")
    root = tmp_path_factory.mktemp("cli")
    paths = {"model": save_tiny_model(root / "model"), "repo": make_repository(root / "repo")}
    paths["index"] = root / "index"
    return paths


def test_index_then_search(built: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    argv = ["index", str(built["repo"]), "--model", str(built["model"]),
            "--out", str(built["index"]), "--no-progress", "--index-type", "hnsw"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Indexed 4 functions into {built['index']}")
    assert "skipped 1 files: 1 unparseable (first: " in out and "broken.py" in out
    assert main(["search", str(built["index"]), "read", "a", "json", "file", "-k", "2",
                 "--json"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = CodeIndex.load(built["index"]).search("read a json file", k=2)
    assert [(r["path"], r["line"], r["name"]) for r in rows] == [
        (h.path, h.line, h.name) for h in expected
    ]
    assert [r["score"] for r in rows] == pytest.approx([h.score for h in expected], abs=1e-6)
    assert main(["search", str(built["index"]), "sort keys", "--ef-search", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(":" in line.split()[1] for line in lines)  # score path:line


def test_errors_are_one_line_with_status_2(
    built: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["search", str(tmp_path), "read a json file"]) == 2
    assert "directory must hold a saved index" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("no code")
    argv = ["index", str(tmp_path), "--model", str(built["model"]), "--out", str(tmp_path / "i")]
    assert main(argv) == 2
    assert "paths hold no function to index" in capsys.readouterr().err
    if not (built["index"] / "search_index.json").exists():
        pytest.skip("needs the index of test_index_then_search")
    small = save_tiny_model(tmp_path / "small", hidden_size=16)
    assert main(["search", str(built["index"]), "x", "--model", str(small)]) == 2
    assert "model embeds in dim 16 but the index in 32" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["index", str(tmp_path), "--out", "x"])  # --model is required
    assert exit_info.value.code == 2


def test_help_lists_every_option(capsys: pytest.CaptureFixture) -> None:
    for command, options in {
        "index": ["--model", "--out", "--index-type", "--languages", "--include-tests",
                  "--max-length", "--batch-size", "--hnsw-m", "--ef-construction",
                  "--ef-search", "--nlist", "--nprobe", "--no-progress"],
        "search": ["--top-k", "--model", "--ef-search", "--nprobe", "--json"],
    }.items():  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert all(option in text for option in options), command
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("index", "search", "train"))


def test_python_dash_m(built: dict[str, Path]) -> None:
    if not (built["index"] / "search_index.json").exists():
        pytest.skip("needs the index of test_index_then_search")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "soft_infonce.codesearch", "search", str(built["index"]),
               "read a json file", "-k", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    hit = CodeIndex.load(built["index"]).search("read a json file", k=1)[0]
    assert result.stdout.split()[1:] == [f"{hit.path}:{hit.line}", hit.name]


def test_train_runs_the_packaged_training_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: soft-infonce train") and "--model_name_or_path" in text
