"""The word-level vocabulary the tiny random BERTs of the trainer-level tests share."""

from __future__ import annotations

#: BERT's special tokens, then the words of the synthetic ``def v _ n ( x ) : return x`` codes.
BASE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "def", "(", ")", ":", "return", "x", "_"]


def bert_vocab(*words: str) -> list[str]:
    """The base tokens followed by ``words`` (one token each), for ``BertTokenizerFast``."""
    return [*BASE, *words]
