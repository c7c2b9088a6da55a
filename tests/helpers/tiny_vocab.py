"""The word-level vocabulary the tiny random BERTs of the trainer-level tests share."""

from __future__ import annotations

#: BERT's special tokens, then the words of the synthetic ``def v _ n ( x ) : return x`` codes.
BASE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "def", "(", ")", ":", "return", "x", "_"]


#: The words of the benchmark tests' synthetic pairs (``verb_noun`` functions).
VERBS = "read write sort parse open close load save".split()
NOUNS = "file list json string number line table key".split()


def verb_noun_pair(verb: str, noun: str) -> tuple[str, str]:
    """A docstring and a code of the benchmark tests' synthetic pairs."""
    return f"{verb} the {noun} now", f"def {verb}_{noun} ( x ) : return x"


def save_verb_noun_bert(folder):
    """``save_tiny_bert`` over every word of ``verb_noun_pair``'s texts."""
    words = [f"{v}_{n}" for v in VERBS for n in NOUNS]
    return save_tiny_bert(folder, *VERBS, *NOUNS, *words, "now", "the")


def bert_vocab(*words: str) -> list[str]:
    """The base tokens followed by ``words`` (one token each), for ``BertTokenizerFast``."""
    return [*BASE, *words]


def save_tiny_bert(folder, *words: str, seed: int = 0):
    """A 1-layer random BERT (hidden 32) and its word-level tokenizer over ``bert_vocab(*words)``,
    saved to ``folder`` (a Path): loadable by ``BiEncoder.from_pretrained`` and
    sentence-transformers alike. Returns ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = bert_vocab(*words)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder
