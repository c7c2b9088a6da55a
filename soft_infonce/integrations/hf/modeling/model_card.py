"""The ``README.md`` model card of a saved BiEncoder.

The trainer passes what it knows as a mapping (``base_model``, ``loss``, ``estimator``,
``train_size``, ``eval_size``, ``eval_metrics``, ...); the model adds its own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from soft_infonce.integrations.hf.modeling.folder import SavedModel

_KNOWN = ("base_model", "loss", "estimator", "train_size", "eval_size", "eval_metrics",
          "model_name")  # fmt: skip


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return f"`{value}`" if isinstance(value, (str, bool)) or value is None else str(value)


def _component(title: str, value: Any) -> list[str]:
    """A loss or an estimator: a name, or a mapping ``{"name": ..., setting: value, ...}``."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [f"- **{title}**: {_value(value)}"]
    settings = {k: v for k, v in value.items() if k != "name"}
    lines = [f"- **{title}**: {_value(value.get('name', '(unnamed)'))}"]
    lines += [f"  - {key}: {_value(setting)}" for key, setting in settings.items()]
    return lines


def _base_model(model: SavedModel, card: Mapping[str, Any]) -> str | None:
    base = card.get("base_model") or getattr(model.encoder.config, "_name_or_path", None)
    return str(base) if base else None


def render_model_card(
    model: SavedModel,
    card: Mapping[str, Any],
    *,
    sentence_transformers: bool,
    max_seq_length: int,
) -> str:
    """The card's Markdown (with YAML metadata for the Hub)."""
    from soft_infonce.losses.base import CITATION

    base = _base_model(model, card)
    name = card.get("model_name") or "Soft-InfoNCE code-search bi-encoder"
    tags = ["soft-infonce", "code-search", "feature-extraction"]
    meta = ["---", "tags:", *(f"- {tag}" for tag in tags)]
    if sentence_transformers:
        meta += ["- sentence-transformers", "library_name: sentence-transformers",
                 "pipeline_tag: sentence-similarity"]  # fmt: skip
    if base and not os.path.isabs(base):
        meta.append(f"base_model: {base}")
    meta.append("---")
    lines = [*meta, "", f"# {name}", "",
             "A bi-encoder for natural-language code search, trained with the "
             "[soft-infonce](https://aclanthology.org/2023.emnlp-main.786) library.", "",
             "## Model", "",
             "| setting | value |", "|---|---|",
             f"| base model | {_value(base)} |",
             f"| architecture | `{type(model.encoder).__name__}` |",
             f"| embedding dimension | {model.embedding_dim} |"]  # fmt: skip
    lines += [f"| {key} | {_value(value)} |" for key, value in model.get_config_dict().items()]
    lines.append(f"| max sequence length (sentence-transformers) | {max_seq_length} |")
    training = _component("Loss", card.get("loss")) + _component("Estimator", card.get("estimator"))
    for key in ("train_size", "eval_size"):
        if card.get(key) is not None:
            training.append(f"- **{key.replace('_', ' ')}**: {_value(card[key])} pairs")
    extra = {k: v for k, v in card.items() if k not in _KNOWN and v is not None}
    training += [f"- {key}: {_value(value)}" for key, value in extra.items()]
    if training:
        lines += ["", "## Training", "", *training]
    metrics = card.get("eval_metrics")
    if isinstance(metrics, Mapping) and metrics:
        lines += ["", "## Evaluation (last validation)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_value(value)} |" for key, value in metrics.items()]
    lines += ["", "## Usage", "", "```python", "from soft_infonce import BiEncoder", "",
              'model = BiEncoder.from_pretrained("path/to/this/folder")',
              'q = model.encode_texts(["read a json file"], side="query")',
              'c = model.encode_texts(["def load(p): ..."], side="code")',
              "scores = model.similarity(q, c)", "```"]  # fmt: skip
    if sentence_transformers:
        lines += ["", "With sentence-transformers (same embeddings; "
                  "`model.similarity` has no scale factor, the ranking is the same):", "",
                  "```python", "from sentence_transformers import SentenceTransformer", "",
                  'model = SentenceTransformer("path/to/this/folder")',
                  'q = model.encode_query(["read a json file"])',
                  'c = model.encode_document(["def load(p): ..."])', "```"]  # fmt: skip
        if not model.layout.sentence_transformers_exact:
            lines += ["", f"**Warning**: with input layout `{model.input_layout}` "
                      "sentence-transformers reproduces the query embeddings only; code "
                      "embeddings need `BiEncoder` (the data-flow graph)."]  # fmt: skip
    else:
        lines += ["", "This folder holds no sentence-transformers modules (see the warning "
                  "logged when it was saved)."]  # fmt: skip
    lines += ["", "Share it on the Hugging Face Hub with", "", "```python",
              "from huggingface_hub import HfApi", "",
              'HfApi().upload_folder(folder_path="path/to/this/folder", repo_id="me/my-model")',
              "```", "", "## Citation", "", "```bibtex", CITATION, "```", ""]  # fmt: skip
    return "\n".join(lines)


def write_model_card(
    model: SavedModel,
    path: str,
    card: Mapping[str, Any],
    *,
    sentence_transformers: bool,
    max_seq_length: int,
) -> None:
    """Write ``README.md`` into the saved folder."""
    text = render_model_card(
        model, card, sentence_transformers=sentence_transformers, max_seq_length=max_seq_length
    )
    with open(os.path.join(path, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
