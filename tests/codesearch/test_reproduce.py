"""``soft-infonce reproduce``: a whole row of Table 1 in order, with a tiny model and tiny data
(one step per run), and the paper's figures as docs/reproducing.md gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("datasets")
from soft_infonce.codesearch.cli import main  # noqa: E402
from soft_infonce.codesearch.reproduce import LANGUAGES, PAPER_TABLE_1, paper_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAMES = {"CodeBERT": "codebert", "GraphCodeBERT": "graphcodebert", "UniXcoder": "unixcoder"}
RUN_NAMES = {("InfoNCE", "-"): "infonce", ("Soft-InfoNCE", "BM25"): "soft_bm25",
             ("Soft-InfoNCE", "trained model"): "soft_trained",
             ("Soft-InfoNCE", "SimCSE"): "soft_simcse"}  # fmt: skip


def test_the_paper_figures_are_those_of_docs_reproducing() -> None:
    text = (ROOT / "docs" / "reproducing.md").read_text(encoding="utf-8")
    table = text[text.index("## The paper's Table 1") :]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] in MODEL_NAMES:
            key = (MODEL_NAMES[cells[0]], RUN_NAMES[(cells[1], cells[2])])
            rows[key] = tuple(float(c) for c in cells[3:])
    assert rows == PAPER_TABLE_1
    assert paper_row("unixcoder", "ruby")["infonce"] == 0.740
    assert LANGUAGES[0] == "ruby"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from helpers.search_fixtures import save_tiny_model

    root = tmp_path_factory.mktemp("reproduce")
    model = save_tiny_model(root / "model", hidden_size=16)
    data = root / "dataset" / "ruby"
    data.mkdir(parents=True)
    verbs, nouns = ["read", "write", "sort", "parse"], ["file", "list", "json", "string"]
    rows = [
        {"url": f"u{i}", "docstring_tokens": [verbs[i % 4], "a", nouns[i // 4 % 4]],
         "code_tokens": ["def", verbs[i % 4], nouns[i // 4 % 4], "(", "x", ")"],
         "original_string": f"def {verbs[i % 4]}_{nouns[i // 4 % 4]}(x): pass"}
        for i in range(24)
    ]  # fmt: skip
    for split, part in (("train", rows[:16]), ("valid", rows[16:20]), ("test", rows[20:]),
                        ("codebase", rows[16:])):  # fmt: skip
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {"root": root, "model": model, "data": data.parent}


def test_a_row_runs_infonce_first_and_prints_the_paper_beside(tiny, tmp_path, capsys) -> None:
    out = tmp_path / "outputs"
    argv = ["reproduce", "--language", "ruby", "--model", "unixcoder",
            "--data", str(tiny["data"]), "--configs", str(ROOT / "examples" / "configs"),
            "--output-dir", str(out), "--",
            "--model_name_or_path", str(tiny["model"]), "--allow_download", "false",
            "--input_layout", "plain", "--max_steps", "1", "--per_device_train_batch_size", "16",
            "--per_device_eval_batch_size", "8", "--dataloader_num_workers", "0",
            "--max_query_length", "8", "--max_code_length", "8", "--disable_tqdm", "true",
            "--use_cpu", "true"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    order = re.findall(r"^== (\w+):", printed, re.MULTILINE)
    assert order == ["infonce", "soft_bm25", "soft_trained"]  # soft_simcse: no SimCSE model
    assert "soft_simcse skipped: its SimCSE model outputs/simcse/final is missing" in printed
    results = json.loads((out / "unixcoder-ruby" / "soft_trained" / "results.json").read_text())
    estimator = results["config"]["training"]["estimator_model"]
    assert estimator == str(out / "unixcoder-ruby" / "infonce" / "best")
    table = printed[printed.index("unixcoder on ruby: test MRR") :].splitlines()
    for run, line in zip(("infonce", "soft_bm25", "soft_trained"), table[2:]):
        saved = json.loads((out / "unixcoder-ruby" / run / "results.json").read_text())
        name = {"infonce": "infonce", "soft_bm25": "soft:bm25", "soft_trained": "soft:trained"}
        ours = saved["runs"][name[run]]["test"]["test"]["mrr"]
        paper = paper_row("unixcoder", "ruby")[run]
        assert line.split() == [run, f"{ours:.3f}", f"{paper:.3f}", f"{ours - paper:+.3f}"]


def test_missing_data_is_named_with_the_command_that_makes_it(tmp_path, capsys) -> None:
    argv = ["reproduce", "--language", "go", "--data", str(tmp_path / "nowhere"),
            "--configs", str(ROOT / "examples" / "configs")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "soft-infonce data codesearchnet --language go" in err and err.count("\n") == 1
