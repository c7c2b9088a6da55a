"""The estimator registry: a name (or an import string) -> the factory that builds it.

This is the one map from a name to an estimator; the training arguments, the training command
and the benchmarks all build through :func:`build_estimator`. Each estimator's preset is its own
``preset`` attribute (see :mod:`soft_infonce.presets`), never a second table here.

A name is one of :data:`ESTIMATORS` or ``"package.module:Attribute"``, any importable
:class:`~soft_infonce.estimators.WeightEstimator` subclass or factory function of your own::

    --runs soft:my_package.weights:MyEstimator

A factory receives, by keyword, the :class:`EstimatorContext` fields its signature names
(``estimator_model``, ``model``, ``max_query_length``, ``max_code_length``, ``device``). The
built-in entries that run another library's model name their class by import string too, so
this module imports nothing above the core.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from soft_infonce.estimators.base import WeightEstimator

__all__ = [
    "ESTIMATORS",
    "EstimatorContext",
    "EstimatorEntry",
    "build_estimator",
    "estimator_entry",
]


@dataclass(frozen=True)
class EstimatorContext:
    """What a factory may use besides its name.

    Attributes:
        estimator_model: The frozen model of a model-based estimator: a local path or a
            loaded model.
        model: The model being trained (for estimators that follow it, such as ``"ema"``).
        max_query_length: Token budget of a query.
        max_code_length: Token budget of a code.
        device: Where a frozen model runs.
    """

    estimator_model: str | os.PathLike[str] | Any | None = None
    model: Any = None
    max_query_length: int = 128
    max_code_length: int = 256
    device: Any = None


_CONTEXT_FIELDS = tuple(f.name for f in fields(EstimatorContext))


@dataclass(frozen=True)
class EstimatorEntry:
    """One registered estimator.

    Attributes:
        target: ``"module:attribute"`` of the class or factory.
        arguments: factory keyword -> :class:`EstimatorContext` field it is given.
        requires: the context fields that must be set (not ``None``).
        summary: One line for ``--help`` and the docs.
        from_signature: Give the factory the context fields its signature names (for an
            import string of the user's) instead of :attr:`arguments`.
    """

    target: str
    arguments: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    summary: str = ""
    from_signature: bool = False

    def load(self) -> Callable[..., WeightEstimator]:
        """Import the class or factory named by :attr:`target`."""
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ImportError(
                f"estimator {self.target!r}: cannot import {module_name!r} ({error})"
            ) from error
        factory = getattr(module, attribute, None)
        if not callable(factory):
            raise ValueError(
                f"estimator {self.target!r}: {module_name} has no callable {attribute!r}"
            )
        return factory


def positive_aware_bm25() -> WeightEstimator:
    """BM25 query-code scores of each candidate relative to the positive's (``"pa-bm25"``)."""
    from soft_infonce.estimators.bm25 import BM25Estimator
    from soft_infonce.estimators.positive_aware import PositiveAwareEstimator

    return PositiveAwareEstimator(BM25Estimator(side="query-code"))


_LENGTHS = {"max_query_length": "max_query_length", "max_code_length": "max_code_length"}
_REGISTRY: dict[str, EstimatorEntry] = {
    "uniform": EstimatorEntry(
        "soft_infonce.estimators.uniform:UniformEstimator", summary="all weights 1 (InfoNCE)"
    ),
    "bm25": EstimatorEntry(
        "soft_infonce.estimators.bm25:BM25Estimator", summary="BM25 of the queries (the paper's)"
    ),
    "pa-bm25": EstimatorEntry(
        "soft_infonce.estimators.registry:positive_aware_bm25",
        summary="BM25 query-code relative to the positive's",
    ),
    "self": EstimatorEntry(
        "soft_infonce.estimators.self_guided:SelfGuidedEstimator",
        summary="the training model's own detached scores",
    ),
    "simcse": EstimatorEntry(
        "soft_infonce.integrations.sentence_transformers.estimator:EmbeddingEstimator",
        arguments={"model": "estimator_model", "device": "device"},
        requires=("estimator_model",),
        summary="a frozen sentence encoder, query-query (the paper's; needs estimator_model)",
    ),
    "trained": EstimatorEntry(
        "soft_infonce.integrations.hf.trained_estimator:TrainedModelEstimator",
        arguments={"model": "estimator_model", "device": "device", **_LENGTHS},
        requires=("estimator_model",),
        summary="a frozen InfoNCE-trained BiEncoder (the paper's; needs estimator_model)",
    ),
    "pa-guide": EstimatorEntry(
        "soft_infonce.integrations.hf.trained_estimator:positive_aware_guide",
        arguments={"model": "estimator_model", "device": "device", **_LENGTHS},
        requires=("estimator_model",),
        summary="a frozen guide encoder's query-code score relative to the positive's (needs "
        "estimator_model: the base model, as GISTEmbedLoss's guide)",
    ),
    "ema": EstimatorEntry(
        "soft_infonce.integrations.hf.ema_estimator:EMAEstimator",
        arguments={"model": "model", "device": "device", **_LENGTHS},
        requires=("model",),
        summary="a moving average of the training model",
    ),
}
#: The registered names.
ESTIMATORS: tuple[str, ...] = tuple(_REGISTRY)


def _is_import_string(name: str) -> bool:
    module, colon, attribute = name.partition(":")
    return bool(colon and attribute.isidentifier()) and all(
        part.isidentifier() for part in module.split(".")
    )


def estimator_entry(name: str) -> EstimatorEntry:
    """The entry of a registered name or of a ``"module:Attribute"`` import string.

    An import string's factory gets the context fields its signature names.

    Raises:
        ValueError: ``name`` is neither.
    """
    if not isinstance(name, str):
        raise ValueError(f"estimator must be a str, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if not _is_import_string(name):
        raise ValueError(
            f"estimator must be one of {list(ESTIMATORS)} or 'package.module:Attribute', "
            f"got {name!r}"
        )
    return EstimatorEntry(name, from_signature=True)


def _arguments(entry: EstimatorEntry, factory: Callable[..., Any]) -> Mapping[str, str]:
    if not entry.from_signature:
        return entry.arguments
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it nothing
        return {}
    return {name: name for name in parameters if name in _CONTEXT_FIELDS}


def build_estimator(
    name: str, context: EstimatorContext | None = None, **settings: Any
) -> WeightEstimator:
    """Build the estimator ``name`` (see :data:`ESTIMATORS`) with what ``context`` holds.

    Args:
        name: A registered name or ``"package.module:Attribute"``.
        context: The models and lengths a factory may use (default: none).
        **settings: Extra keyword arguments for the factory.

    Returns:
        The estimator.

    Raises:
        ValueError: an unknown name; a required context field unset; ``estimator_model`` set
            for an estimator that does not read it; a factory that returns no estimator.
    """
    context = context if context is not None else EstimatorContext()
    entry = estimator_entry(name)
    factory = entry.load()
    arguments = _arguments(entry, factory)
    for needed in entry.requires:
        if getattr(context, needed) is None:
            raise ValueError(f"estimator {name!r} needs {needed}, got None")
    if context.estimator_model is not None and "estimator_model" not in arguments.values():
        raise ValueError(
            f"estimator_model is not used by estimator {name!r}, got "
            f"{context.estimator_model!r}: leave it unset"
        )
    kwargs = {key: getattr(context, source) for key, source in arguments.items()}
    estimator = factory(**kwargs, **settings)
    if not isinstance(estimator, WeightEstimator):
        raise ValueError(
            f"estimator {name!r} must build a WeightEstimator, got {type(estimator).__name__}"
        )
    return estimator
