"""CI: the installed wheel works on its own (run from outside the checkout, in a fresh venv).

Imports the package from site-packages, trains a tiny random bi-encoder for two steps with
Soft-InfoNCE (BM25 weights), saves it, then indexes the installed package's own functions
and searches them with the ``soft-infonce`` console script and ``python -m soft_infonce``.
A module or file missing from the wheel fails one of these steps.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

import soft_infonce  # noqa: E402
from soft_infonce.modeling import BiEncoder  # noqa: E402
from soft_infonce.trainer import SoftInfoNCETrainer, SoftInfoNCETrainingArguments  # noqa: E402

package = Path(soft_infonce.__file__).parent
assert "site-packages" in str(package), f"not the installed wheel: {package}"
words = "read write sort load parse open a the file json list text def return ( ) : x".split()

with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words]))
    tokenizer = BertTokenizerFast(str(root / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words) + 4,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    model = BiEncoder(BertModel(config), tokenizer, pooling="mean", normalize=True, scale=20.0)
    verbs, nouns = words[:6], words[6:11]
    pairs = [{"query": f"{v} a {n}", "code": f"def {v} ( x ) : return {n}"}
             for v in verbs for n in nouns][:16]  # fmt: skip
    args = SoftInfoNCETrainingArguments(
        output_dir=str(root / "out"), per_device_train_batch_size=8, max_steps=2,
        learning_rate=1e-3, eval_strategy="no", save_strategy="no", logging_steps=1,
        report_to="none", loss="soft", estimator="bm25", max_query_length=16,
        max_code_length=16, disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = SoftInfoNCETrainer(model, args, train_dataset=datasets.Dataset.from_list(pairs))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and losses and all(map(math.isfinite, losses)), losses
    model.save_pretrained(root / "model")
    assert BiEncoder.from_pretrained(root / "model").embedding_dim == 32

    bin_dir = Path(sys.executable).parent

    def run(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, f"{command} failed:\n{result.stderr}"
        return result.stdout

    print(run(str(bin_dir / "soft-infonce"), "index", str(package), "--model", str(root / "model"),
              "--out", str(root / "index"), "--no-progress").strip())  # fmt: skip
    hits = run(sys.executable, "-m", "soft_infonce", "search", str(root / "index"),
               "read a json file", "-k", "3").splitlines()  # fmt: skip
    assert len(hits) == 3 and all(str(package) in line for line in hits), hits
    print(f"wheel OK: soft_infonce {soft_infonce.__file__}; 2 steps, losses {losses}")
