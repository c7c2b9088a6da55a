"""A tiny random BiEncoder saved to a folder, and a small repository, for the search tests."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

WORDS = (
    "def return read a json file the of to open load ( ) : . , x y sort list by key in for "
    "write path data with as f import class self text lines split join number sum parse "
    "string int = + if else not none true false dict get value items end function"
).split()


def save_tiny_model(folder: Path, *, hidden_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer BERT with a word-level tokenizer over WORDS, as a saved BiEncoder folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from soft_infonce.integrations.hf.modeling import BiEncoder

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(str(vocab))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=hidden_size, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=37, max_position_embeddings=128,
    )  # fmt: skip
    model = BiEncoder(BertModel(config).eval(), tokenizer, pooling="mean", scale=2.0)
    model.save_pretrained(folder)
    return folder


PYTHON_FILE = """
import json


def load(path):
    with open(path) as f:
        return json.load(f)


class Store:
    def write(self, path, data):
        with open(path, "w") as f:
            json.dump(data, f)

    def keys(self):
        return sorted(self.data)
"""

RUBY_FILE = """
def sum_list(x)
  x.sum
end
"""


def make_repository(root: Path) -> Path:
    """A repository with 3 Python functions, 1 Ruby method and one unparseable file."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "io.py").write_text(PYTHON_FILE)
    (root / "pkg" / "broken.py").write_text("def broken(:\n    pass\n")
    (root / "lib").mkdir()
    (root / "lib" / "util.rb").write_text(RUBY_FILE)
    (root / "README.md").write_text("not code\n")
    return root
