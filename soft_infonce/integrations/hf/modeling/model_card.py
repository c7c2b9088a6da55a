"""The ``README.md`` model card of a saved BiEncoder, in the shape of sentence-transformers' cards.

YAML metadata for the Hub first (``base_model`` as a Hub id, tags, ``datasets``, ``model-index``
with the evaluation results, written by ``huggingface_hub.ModelCardData``), then Markdown: the
model, the training (loss and estimator with every setting, data, hyperparameters), the
evaluation table, usage, framework versions and the citation. No absolute path is written
(:func:`~soft_infonce.integrations.hf.modeling.card_facts.public_name`).

The facts come as a mapping; :func:`~soft_infonce.integrations.hf.modeling.card_facts.trainer_facts`
builds it from a Trainer, so checkpoints, ``Trainer.save_model`` and the training command's
``best/`` write the same card. Known keys: ``model_name``, ``base_model``, ``loss`` and
``estimator`` (a name, or a mapping with ``name`` and the settings; ``loss_config`` and
``estimator_settings`` add settings), ``train_data`` (a name, or ``{"name", "size", ...}``),
``train_size``, ``eval_size``, ``hyperparameters``, ``eval_metrics`` (validation),
``test_metrics`` (set -> metrics), ``datasets`` (Hub ids), ``global_step``; any other key is
listed under "Other settings".
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from soft_infonce.integrations.hf.modeling.card_facts import hub_id, public_name
from soft_infonce.integrations.hf.modeling.folder import SavedModel

__all__ = ["render_model_card", "write_model_card"]

_KNOWN = frozenset({
    "model_name", "base_model", "loss", "loss_config", "estimator", "estimator_settings",
    "train_data", "train_size", "eval_size", "hyperparameters", "eval_metrics", "test_metrics",
    "datasets", "global_step",
})  # fmt: skip
_FRAMEWORKS = (("soft-infonce", "soft-infonce"), ("PyTorch", "torch"),
               ("Transformers", "transformers"), ("sentence-transformers", "sentence-transformers"),
               ("Accelerate", "accelerate"), ("Datasets", "datasets"),
               ("Tokenizers", "tokenizers"))  # fmt: skip
_METRIC_ORDER = ("mrr", "recall@1", "recall@5", "recall@10", "recall@100", "ndcg@10")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return f"`{value}`" if isinstance(value, (str, bool)) or value is None else str(value)


def _component(title: str, value: Any, extra: Any) -> list[str]:
    """A loss or an estimator: a name, or a mapping ``{"name": ..., setting: value, ...}``."""
    if value is None:
        return []
    value = dict(value) if isinstance(value, Mapping) else {"name": value}
    if isinstance(extra, Mapping):
        value |= {k: v for k, v in extra.items() if k not in value}
    lines = [f"- **{title}**: {_value(value.pop('name', '(unnamed)'))}"]
    return lines + [f"  - {key}: {_value(setting)}" for key, setting in value.items()]


def _metric_name(key: str) -> str | None:
    name = key.removeprefix("eval_").replace("_at_", "@")
    return None if name in ("num_queries", "runtime", "loss", "epoch") else name


def evaluation_rows(card: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Evaluation set -> metric -> value: ``validation`` from ``eval_metrics``, then each set of
    ``test_metrics``."""
    rows: dict[str, dict[str, float]] = {}
    validation = card.get("eval_metrics")
    if isinstance(validation, Mapping):
        clean = {_metric_name(k): v for k, v in validation.items()}
        rows["validation"] = {k: float(v) for k, v in clean.items()
                              if k and isinstance(v, (int, float))}  # fmt: skip
    tests = card.get("test_metrics")
    if isinstance(tests, Mapping):
        for name, metrics in tests.items():
            if isinstance(metrics, Mapping):
                rows[str(name)] = {_metric_name(k) or k: float(v) for k, v in metrics.items()
                                   if isinstance(v, (int, float)) and _metric_name(k)}  # fmt: skip
    return {name: metrics for name, metrics in rows.items() if metrics}


def _ordered(metrics: set[str]) -> list[str]:
    return [m for m in _METRIC_ORDER if m in metrics] + sorted(metrics - set(_METRIC_ORDER))


def _metadata(card: Mapping[str, Any], name: str, base: str | None, st: bool,
              rows: Mapping[str, Mapping[str, float]]) -> str:  # fmt: skip
    from huggingface_hub import EvalResult, ModelCardData

    datasets = card.get("datasets")
    train = card.get("train_data")
    train_name = train.get("name") if isinstance(train, Mapping) else train
    results = [
        EvalResult(task_type="information-retrieval", task_name="Code search",
                   dataset_type=(datasets[0] if datasets else "custom"),
                   dataset_name=f"{train_name or 'code search'} ({split})", dataset_split=split,
                   metric_type=metric, metric_value=round(value, 4), metric_name=metric.upper()
                   if metric == "mrr" else metric)
        for split, metrics in rows.items() for metric, value in metrics.items()
    ]  # fmt: skip
    data = ModelCardData(
        model_name=name, base_model=base, datasets=list(datasets) if datasets else None,
        library_name="sentence-transformers" if st else "soft-infonce",
        pipeline_tag="sentence-similarity" if st else "feature-extraction",
        tags=["soft-infonce", "code-search", "feature-extraction"]
        + (["sentence-transformers"] if st else []),
        eval_results=results or None, license=card.get("license"),
    )  # fmt: skip
    return data.to_yaml()


def render_model_card(
    model: SavedModel,
    card: Mapping[str, Any],
    *,
    sentence_transformers: bool,
    max_seq_length: int,
) -> str:
    """The card's Markdown, with YAML metadata for the Hub."""
    from soft_infonce.losses.base import CITATION

    card = public_name({k: v for k, v in card.items() if v is not None})
    source = card.get("base_model") or getattr(model.encoder.config, "_name_or_path", None)
    base = hub_id(source) if source else None
    shown = base or (public_name(source) if source else None)
    name = card.get("model_name") or "Soft-InfoNCE code-search bi-encoder"
    rows = evaluation_rows(card)
    lines = ["---", _metadata(card, name, base, sentence_transformers, rows).rstrip(), "---", "",
             f"# {name}", "",
             "A bi-encoder for natural-language code search: it embeds a query and a function, "
             "and ranks functions by the similarity of the two. Trained with the "
             "[soft-infonce](https://aclanthology.org/2023.emnlp-main.786) library.", "",
             "## Model", "", "| setting | value |", "|---|---|",
             f"| base model | {_value(shown)} |",
             f"| architecture | `{type(model.encoder).__name__}` |",
             f"| embedding dimension | {model.embedding_dim} |"]  # fmt: skip
    lines += [f"| {key} | {_value(value)} |" for key, value in model.get_config_dict().items()]
    lines.append(f"| max sequence length (sentence-transformers) | {max_seq_length} |")
    training = _component("Loss", card.get("loss"), card.get("loss_config"))
    training += _component("Estimator", card.get("estimator"), card.get("estimator_settings"))
    train = card.get("train_data")
    if isinstance(train, Mapping):
        training.append(
            f"- **Training data**: {train.get('name')}"
            + (f", {train['size']} pairs" if train.get("size") is not None else "")
        )
        training += [f"  - {k}: {_value(v)}" for k, v in train.items() if k not in ("name", "size")]
    elif train is not None:
        training.append(f"- **Training data**: {train}")
    for key in ("train_size", "eval_size"):
        if card.get(key) is not None:
            training.append(f"- **{key.replace('_', ' ')}**: {_value(card[key])} pairs")
    if card.get("global_step") is not None:
        training.append(f"- **steps trained**: {card['global_step']}")
    hyper = card.get("hyperparameters")
    if isinstance(hyper, Mapping) and hyper:
        training += ["", "Hyperparameters:", "", "| setting | value |", "|---|---|"]
        training += [f"| {k} | {_value(v)} |" for k, v in hyper.items()]
    extra = {k: v for k, v in card.items() if k not in _KNOWN}
    if extra:
        training += ["", "Other settings:", ""] + [f"- {k}: {_value(v)}" for k, v in extra.items()]
    if training:
        lines += ["", "## Training", "", *training]
    if rows:
        columns = _ordered({m for metrics in rows.values() for m in metrics})
        lines += ["", "## Evaluation", "",
                  "Queries ranked against every code of the set (validation: the set used to "
                  "select the checkpoint).", "",
                  "| set | " + " | ".join(columns) + " |",
                  "|---|" + "---:|" * len(columns)]  # fmt: skip
        for split, metrics in rows.items():
            cells = [f"{metrics[c]:.4f}" if c in metrics else "" for c in columns]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines += _usage(model, sentence_transformers)
    lines += ["", "## Framework versions", "", f"- Python: {platform.python_version()}"]
    lines += [f"- {title}: {version}" for title, version in _versions()]
    lines += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _versions() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for title, package in _FRAMEWORKS:
        try:
            found.append((title, version(package)))
        except PackageNotFoundError:
            pass
    return found


def _usage(model: SavedModel, sentence_transformers: bool) -> list[str]:
    lines = ["", "## Usage", "", "```python", "from soft_infonce import BiEncoder", "",
             'model = BiEncoder.from_pretrained("path/to/this/folder")',
             'q = model.encode_texts(["read a json file"], side="query")',
             'c = model.encode_texts(["def load(p): ..."], side="code")',
             "scores = model.similarity(q, c)", "```", "",
             "As a code-search index over your own code (`pip install \"soft-infonce[search]\"`):",
             "", "```bash", "soft-infonce index src/ --model path/to/this/folder --out code-index/",
             'soft-infonce search code-index/ "read a json file" -k 5', "```"]  # fmt: skip
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
              "```"]  # fmt: skip
    return lines


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
