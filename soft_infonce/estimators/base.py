"""The :class:`WeightEstimator` interface: the relevance estimate sim_ij behind Eq. 4.

Soft-InfoNCE (Li et al., EMNLP 2023, Eq. 3-4) weights each negative code j of query i by
``w_ij`` computed from an estimated relevance ``sim_ij``. An estimator maps raw texts to
that ``[len(queries), len(codes)]`` score matrix; it is never trained by the loss.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from soft_infonce.estimators.cache import CachedEmbeddingsMixin


def check_texts(name: str, texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list after checking it is a non-empty list of non-blank strings."""
    if isinstance(texts, (str, bytes)):
        raise ValueError(
            f"{name} must be a sequence of strings, got a single {type(texts).__name__}"
            f" {texts[:40]!r}"
        )
    try:
        texts = list(texts)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of strings, got {type(texts).__name__}"
        ) from None
    if not texts:
        raise ValueError(f"{name} must hold at least one text, got an empty {name}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a str, got {type(text).__name__}: {text!r:.60}")
        if not text or text.isspace():
            raise ValueError(f"{name}[{i}] must be a non-blank text, got {text!r}")
    return texts


def _eval_only_train(module: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement ``train`` for frozen modules: any ``train(mode)`` leaves them in eval mode."""
    return nn.Module.train(module, False)


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode, turn off its gradients, and keep it so under ``.train()``."""
    module.train = functools.partial(_eval_only_train, module)  # picklable, unlike a lambda
    module.eval()
    module.requires_grad_(False)
    for parameter in module.parameters():
        parameter.grad = None  # a frozen module needs no (deep-copied) gradients
    return module


def _similarity_mode(cls: type) -> str:
    """How ``cls.similarity`` takes candidate_queries: "keyword", "positional" or "none"."""
    raw = inspect.getattr_static(cls, "similarity")
    func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return "keyword"
    if not isinstance(raw, staticmethod):
        params = params[1:]  # self or cls
    kind = inspect.Parameter
    if any(p.kind == kind.VAR_KEYWORD for p in params) or any(
        p.name == "candidate_queries" and p.kind != kind.POSITIONAL_ONLY for p in params
    ):
        return "keyword"
    positional = [p for p in params if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind == kind.VAR_POSITIONAL for p in params):
        return "positional"
    return "none"


class WeightEstimator(CachedEmbeddingsMixin, abc.ABC):
    """Estimates the relevance ``sim_ij`` of candidate code j to query i, without gradients.

    Subclasses implement :meth:`similarity`; calling the estimator validates the inputs,
    runs it under ``torch.no_grad()`` and checks the result. ``similarity(self, queries,
    codes)`` with two arguments is accepted too; it is then never given candidate_queries.

    Any ``torch.nn.Module`` assigned as an attribute is frozen (eval mode, no gradients,
    and it stays in eval mode when a parent module calls ``.train()``) and moves with
    :meth:`to`. Estimators built on a frozen encoder implement :meth:`encode` and call
    :meth:`embed`, which embeds each distinct text once per run (keyed by the sha256 of
    its content); :meth:`precompute`, :meth:`save_cache` and :meth:`load_cache` manage it.

    Attributes:
        preset: the paper's hyper-parameter preset that suits the score scale:
            ``"bm25"``, ``"simcse"``, ``"trained"`` or ``None``.
        requires_candidate_queries: whether the call needs ``candidate_queries``.
        embedding_sides: the sides (``"query"``, ``"code"``) that :meth:`embed` caches.

    Examples:
        >>> class LengthEstimator(WeightEstimator):
        ...     def similarity(self, queries, codes):
        ...         lengths = torch.tensor([float(len(c)) for c in codes])
        ...         return -(lengths[None, :] - lengths[: len(queries), None]).abs()
        >>> LengthEstimator()(["sort a list", "read a file"], ["sorted(x)", "open(p).read()"]).shape
        torch.Size([2, 2])
    """

    preset: ClassVar[str | None] = None
    requires_candidate_queries: bool = False
    _similarity_mode: ClassVar[str] = "keyword"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._similarity_mode = _similarity_mode(cls)

    @abc.abstractmethod
    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Raw relevance scores, shape ``[len(queries), len(codes)]``.

        Args:
            queries: the batch's queries; row i scores query i.
            codes: the candidate codes; column j scores codes[j].
            candidate_queries: ``candidate_queries[j]`` is the query paired with ``codes[j]``
                (query-query estimators compare with it).

        Returns:
            A tensor of finite scores; higher means more relevant.
        """

    def __call__(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Validated :meth:`similarity`: a detached float32 ``[len(queries), len(codes)]``."""
        queries, codes = check_texts("queries", queries), check_texts("codes", codes)
        name = type(self).__name__
        if candidate_queries is not None:
            candidate_queries = check_texts("candidate_queries", candidate_queries)
            if len(candidate_queries) != len(codes):
                raise ValueError(
                    f"candidate_queries must hold one query per code (len(codes) = {len(codes)}),"
                    f" got {len(candidate_queries)} candidate_queries"
                )
        elif self.requires_candidate_queries:
            raise ValueError(
                f"{name} compares each query with the query paired with each code, so "
                "candidate_queries (candidate_queries[j] paired with codes[j]) is required, "
                "got None"
            )
        self._ensure_frozen()
        with torch.no_grad():
            if self._similarity_mode == "keyword":
                scores = self.similarity(queries, codes, candidate_queries=candidate_queries)
            elif self._similarity_mode == "positional":
                scores = self.similarity(queries, codes, candidate_queries)
            else:
                scores = self.similarity(queries, codes)
        return self._checked_scores(scores, len(queries), len(codes))

    def _checked_scores(self, scores: Any, rows: int, cols: int) -> torch.Tensor:
        name = type(self).__name__
        if not isinstance(scores, torch.Tensor):
            try:
                scores = torch.as_tensor(scores)
            except (TypeError, ValueError, RuntimeError) as error:
                raise ValueError(
                    f"{name}.similarity must return a torch.Tensor, got {type(scores).__name__}"
                ) from error
        if tuple(scores.shape) != (rows, cols):
            raise ValueError(
                f"{name}.similarity must return shape (len(queries), len(codes)) = "
                f"({rows}, {cols}), got {tuple(scores.shape)}"
            )
        if scores.is_complex():
            raise ValueError(f"{name}.similarity must return real scores, got {scores.dtype}")
        scores = scores.detach().to(torch.float32)
        finite = torch.isfinite(scores)
        if not bool(finite.all()):
            raise ValueError(
                f"{name}.similarity returned {int((~finite).sum())} non-finite "
                f"scores (NaN or inf) out of {scores.numel()}"
            )
        return scores

    # Frozen modules and device placement
    def __setattr__(self, name: str, value: Any) -> None:
        registry = self.__dict__.setdefault("_frozen_modules", {})
        self.__dict__.get("_frozen_parts", {}).pop(name, None)
        if isinstance(value, nn.Module):
            registry[name] = freeze(value)
            # a new model invalidates every embedding and the identity of the old one
            self.__dict__.pop("_fingerprint", None)
            self.__dict__.pop("_caches", None)
        else:
            registry.pop(name, None)
        object.__setattr__(self, name, value)

    @property
    def frozen_modules(self) -> dict[str, nn.Module]:
        """The frozen ``torch.nn.Module`` attributes, by attribute name."""
        return dict(self.__dict__.get("_frozen_modules", {}))

    def _ensure_frozen(self) -> None:
        # flat lists, taken when the module was assigned: walking a transformer's module
        # tree on every call costs ~0.4 ms
        parts = self.__dict__.setdefault("_frozen_parts", {})
        for name, module in self.__dict__.get("_frozen_modules", {}).items():
            if name not in parts:
                parts[name] = (list(module.modules()), list(module.parameters()))
            submodules, parameters = parts[name]
            if any(sub.training for sub in submodules):
                module.eval()
            if any(p.requires_grad for p in parameters):
                module.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """Where the frozen modules run (the device given to :meth:`to`, else their own)."""
        if "_device" in self.__dict__:
            return self.__dict__["_device"]
        for module in self.__dict__.get("_frozen_modules", {}).values():
            for tensor in module.parameters():
                return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> WeightEstimator:
        """Move every frozen module to ``device``; returns ``self``."""
        device = torch.device(device)
        for module in self.__dict__.get("_frozen_modules", {}).values():
            module.to(device)
        self.__dict__["_device"] = device
        return self
