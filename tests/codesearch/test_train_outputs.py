"""What ``soft-infonce train`` leaves and says when it finishes: the ``best/`` models with their
cards, no checkpoints, the paths and the next step printed, and ``results.png`` drawn from zero
with the zero-shot level."""

from __future__ import annotations

import json
import os
import random
import re

import pytest

pytest.importorskip("datasets")
pytest.importorskip("matplotlib")
yaml = pytest.importorskip("yaml")
from helpers.tiny_vocab import bert_vocab  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from soft_infonce.codesearch.plotting import plot_run_comparison  # noqa: E402
from soft_infonce.codesearch.train import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
VERBS = "read write sort parse open close load save".split()
NOUNS = "file list json string number line table key".split()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    vocab = bert_vocab(*VERBS, *NOUNS)
    model = root / "tiny"
    model.mkdir()
    (root / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(str(root / "vocab.txt")).save_pretrained(model)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=40,
    )
    BertModel(config).save_pretrained(model)  # fmt: skip
    rng = random.Random(0)
    rows = [
        {
            "url": f"u{i}",
            "docstring_tokens": [v, "a", n],
            "code_tokens": ["def", v, "_", n, "(", "x", ")", ":", "return", "x"],
        }
        for i, (v, n) in enumerate((rng.choice(VERBS), rng.choice(NOUNS)) for _ in range(80))
    ]
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))  # fmt: skip
    out = root / "out"
    argv = ["--model_name_or_path", str(model), "--code_text_file", str(data),
            "--output_dir", str(out), "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
            "--max_query_length", "12", "--max_code_length", "12", "--warmup_steps", "0",
            "--logging_steps", "1", "--disable_tqdm", "true", "--use_cpu", "true",
            "--report_to", "none"]  # fmt: skip
    return {"root": root, "out": out, "argv": argv}


def test_a_finished_run_keeps_best_models_only_and_says_where(finished, capsys) -> None:
    main(finished["argv"])
    printed = capsys.readouterr().out
    out = finished["out"]
    assert not list(out.rglob("checkpoint-*"))  # optimizer state gone once the run completed
    for run in ("infonce", "soft-bm25"):
        assert (out / run / "best" / "model.safetensors").is_file()
        assert f"{out / run / 'best'}" in printed
    index_line = re.search(r"soft-infonce index \S+ --model (\S+) --out code-index/", printed)
    assert index_line and index_line[1] == str(out / "soft-bm25" / "best")
    assert 'soft-infonce search code-index/ "read a json file" -k 5' in printed
    finished["printed"] = printed


def test_best_holds_the_card_with_validation_and_test_metrics(finished) -> None:
    out = finished["out"]
    results = json.loads((out / "results.json").read_text())
    text = (out / "soft-bm25" / "best" / "README.md").read_text()
    meta = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)[1])
    assert str(finished["root"]) not in text and not any(
        str(v).startswith(os.sep) for v in json.dumps(meta).split('"')
    )
    (entry,) = meta["model-index"]
    values = {(r["dataset"]["split"], m["type"]): m["value"]
              for r in entry["results"] for m in r["metrics"]}  # fmt: skip
    run = results["runs"]["soft:bm25"]
    assert values[("test", "mrr")] == round(run["test"]["test"]["mrr"], 4)
    assert values[("validation", "mrr")] == round(run["best_valid_mrr"], 4)
    for expected in ["- **Loss**: `SoftInfoNCELoss`", "- **Estimator**: `BM25Estimator`",
                     "CodeXGLUE Code-Text file pairs.jsonl", "| max_steps | 4 |",
                     "local folder 'tiny'", "| test |", "| validation |"]:  # fmt: skip
        assert expected in text, expected


def test_results_png_starts_from_zero_with_the_zero_shot_level(finished) -> None:
    out = finished["out"]
    assert (out / "results.png").stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    zero = results["runs"]["zero-shot"]
    figure = plot_run_comparison(results)
    left, right = figure.axes
    assert left.get_ylim() == (0.0, 1.0) and right.get_ylim() == (0.0, 1.0)
    (dashed,) = [line for line in left.get_lines() if line.get_label() == "zero-shot"]
    assert tuple(dashed.get_ydata()) == (zero["valid"]["mrr"], zero["valid"]["mrr"])
    curve = [line for line in left.get_lines() if line.get_label() == "infonce"][0]
    assert curve.get_xdata()[0] == 0 and curve.get_ydata()[0] == zero["valid"]["mrr"]
    from matplotlib.colors import to_rgb

    assert to_rgb(right.containers[0][1].get_facecolor()) == to_rgb(curve.get_color())
    heights = [bar.get_height() for bar in right.containers[0]]
    expected = [results["runs"][n]["test"]["test"]["mrr"] for n in ("zero-shot", "infonce",
                                                                    "soft:bm25")]  # fmt: skip
    assert heights == pytest.approx(expected)


def test_seeds_give_means_and_ranges(finished) -> None:
    results = json.loads((finished["out"] / "results.json").read_text())
    other = json.loads(json.dumps(results))
    for run in other["runs"].values():
        run["test"]["test"]["mrr"] = 0.5
    figure = plot_run_comparison([results, other])
    from matplotlib.container import BarContainer

    (bars,) = [c for c in figure.axes[1].containers if isinstance(c, BarContainer)]
    first = results["runs"]["zero-shot"]["test"]["test"]["mrr"]
    assert bars[0].get_height() == pytest.approx((first + 0.5) / 2)
    assert "2 seeds" in figure.axes[1].get_title()
    with pytest.raises(ValueError, match="at least one results.json"):
        plot_run_comparison([])
