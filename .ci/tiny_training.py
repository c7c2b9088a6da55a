"""CI helper shared by the wheel smoke scripts: two Soft-InfoNCE (BM25) Trainer steps on a tiny
random BERT with a 22-token vocabulary, through the installed package's public names."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from soft_infonce import BiEncoder, SoftInfoNCETrainer, SoftInfoNCETrainingArguments

WORDS = "read write sort load parse open a the file json list text def return ( ) : x".split()
VERBS, NOUNS = WORDS[:6], WORDS[6:11]


def train_two_steps(root: Path) -> tuple[BiEncoder, list[float]]:
    """The trained tiny model and its two logged losses (checked finite)."""
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]))
    tokenizer = BertTokenizerFast(str(root / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    model = BiEncoder(BertModel(config), tokenizer, pooling="mean", normalize=True, scale=20.0)
    pairs = [{"query": f"{v} a {n}", "code": f"def {v} ( x ) : return {n}"}
             for v in VERBS for n in NOUNS][:16]  # fmt: skip
    args = SoftInfoNCETrainingArguments(
        output_dir=str(root / "out"), per_device_train_batch_size=8, max_steps=2,
        learning_rate=1e-3, eval_strategy="no", save_strategy="no", logging_steps=1,
        report_to="none", loss="soft", estimator="bm25", max_query_length=16,
        max_code_length=16, disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = SoftInfoNCETrainer(model, args, train_dataset=datasets.Dataset.from_list(pairs))
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert trainer.state.global_step == 2 and len(losses) == 2, trainer.state.log_history
    assert all(map(math.isfinite, losses)), losses
    return model, losses
