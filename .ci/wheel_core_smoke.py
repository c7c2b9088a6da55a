"""CI: the wheel installed with no extra runs the README's loss snippet and a two-step Trainer run.

Run from outside the checkout in a fresh venv holding only the wheel's own dependencies (torch,
numpy, scipy, safetensors, tqdm, transformers, datasets, accelerate). Argument: the path of the
README.md whose loss snippet (the first Python block using ``SoftInfoNCELoss``) is executed.
Also checks that an extra's module fails with an ImportError naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXTRAS = ("sentence_transformers", "faiss", "tree_sitter", "matplotlib")
present = [name for name in EXTRAS if importlib.util.find_spec(name) is not None]
assert not present, f"an extra's dependency is installed, the check would prove nothing: {present}"

# 1. The README's loss snippet, as written.
readme = Path(sys.argv[1]).read_text(encoding="utf-8")
blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
snippet = next(block for block in blocks if "SoftInfoNCELoss" in block)
namespace: dict = {}
exec(compile(snippet, "README.md (loss snippet)", "exec"), namespace)  # noqa: S102
readme_loss = float(namespace["loss"].detach())
assert math.isfinite(readme_loss), readme_loss

# 2. A missing extra is one ImportError that names it.
for module, extra in (
    ("soft_infonce.integrations.sentence_transformers", "sentence-transformers"),
    ("soft_infonce.codesearch.search", "search"),
):
    try:
        importlib.import_module(module).__dict__  # noqa: B018
        if module.endswith("search"):
            from soft_infonce.codesearch.search._faiss import import_faiss

            import_faiss()
    except ImportError as error:
        assert f"soft-infonce[{extra}]" in str(error), f"{module}: {error}"
    else:
        raise AssertionError(f"{module} worked without the {extra} extra")

# 3. Two Trainer steps on a tiny random BERT.
import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from soft_infonce import (  # noqa: E402
    BiEncoder,
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
)

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
        output_dir=str(root / "out"),
        per_device_train_batch_size=8,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        max_query_length=16,
        max_code_length=16,
        estimator="bm25",
    )
    trainer = SoftInfoNCETrainer(model, args, train_dataset=datasets.Dataset.from_list(pairs))
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
print(
    f"core wheel OK: README loss {float(namespace['loss']):.4f}; 2 Trainer steps, losses {losses}"
)
