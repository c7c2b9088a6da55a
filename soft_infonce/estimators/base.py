"""The :class:`WeightEstimator` interface: the relevance estimate sim_ij behind Eq. 4.

Soft-InfoNCE (Li et al., EMNLP 2023, Eq. 3-4) weights each negative code j of query i by
``w_ij`` computed from an estimated relevance ``sim_ij``. An estimator maps raw texts to
that ``[len(queries), len(codes)]`` score matrix; it is never trained by the loss.

This module holds the interface only (one abstract method and the validating call). Frozen
encoders and their embedding cache live in :mod:`soft_infonce.estimators.frozen`.
"""

from __future__ import annotations

import abc
import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from soft_infonce.estimators.checks import check_texts

__all__ = ["WeightEstimator", "check_texts"]

_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08


def _legacy_similarity(cls: type, method: Callable[..., Any]) -> Callable[..., Any] | None:
    """An adapter for a ``similarity`` that cannot take candidate_queries positionally.

    The interface calls ``similarity(queries, codes, candidate_queries)``. Subclasses written
    for older releases defined ``similarity(self, queries, codes)`` (never given
    candidate_queries) or took it by keyword only; they keep working through this adapter,
    with a ``DeprecationWarning`` when the class is created. ``None`` when no adapter is needed
    (the fixed signature, ``*args``, or anything that is not a plain function).
    """
    code = getattr(method, "__code__", None)
    if code is None or code.co_argcount >= 4 or code.co_flags & _CO_VARARGS:
        return None
    names = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    by_keyword = "candidate_queries" in names or bool(code.co_flags & _CO_VARKEYWORDS)
    warnings.warn(
        f"{cls.__qualname__}.similarity should take (self, queries, codes, "
        "candidate_queries=None); the form it has is deprecated and will stop working in a "
        "future release",
        DeprecationWarning,
        stacklevel=4,  # the class statement (through ABCMeta.__new__)
    )

    @functools.wraps(method)
    def similarity(self: Any, queries: Any, codes: Any, candidate_queries: Any = None) -> Any:
        if by_keyword:
            return method(self, queries, codes, candidate_queries=candidate_queries)
        return method(self, queries, codes)

    return similarity


class WeightEstimator(abc.ABC):
    """Estimates the relevance ``sim_ij`` of candidate code j to query i, without gradients.

    Subclasses implement :meth:`similarity`; calling the estimator checks the texts, runs it
    under ``torch.no_grad()`` and checks the result (a real ``[len(queries), len(codes)]``
    matrix of finite scores), which it returns detached as float32. Estimators built on a
    frozen neural encoder subclass :class:`~soft_infonce.estimators.FrozenEncoderEstimator`,
    which adds freezing, device placement and an embedding cache.

    Attributes:
        preset: the paper's hyper-parameter preset tuned on this estimator's score scale:
            ``"bm25"``, ``"simcse"``, ``"trained"`` or ``None``; resolved by the losses.
        requires_candidate_queries: whether the call needs ``candidate_queries``.
        uses_scores: ``True`` for estimators that read the training model's own detached
            score matrix instead of texts; the loss then calls
            ``estimator.similarity_from_scores(scores)`` (see ``SelfGuidedEstimator``).

    Examples:
        >>> class LengthEstimator(WeightEstimator):
        ...     def similarity(self, queries, codes, candidate_queries=None):
        ...         lengths = torch.tensor([float(len(c)) for c in codes])
        ...         return -(lengths[None, :] - lengths[: len(queries), None]).abs()
        >>> LengthEstimator()(["sort a list", "read a file"], ["sorted(x)", "open(p).read()"]).shape
        torch.Size([2, 2])
    """

    preset: ClassVar[str | None] = None
    requires_candidate_queries: bool = False
    uses_scores: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("similarity")
        if method is not None and not getattr(method, "__isabstractmethod__", False):
            adapter = _legacy_similarity(cls, method)
            if adapter is not None:
                cls.similarity = adapter  # type: ignore[method-assign]

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
            A tensor (or array) of finite scores; higher means more relevant.
        """

    def __call__(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Validated :meth:`similarity`: a detached float32 ``[len(queries), len(codes)]``.

        Raises:
            ValueError: a text argument is empty, holds a blank or non-str text, or
                ``candidate_queries`` is missing where needed or has the wrong length; or the
                scores have the wrong shape or are not finite (naming the estimator class).
        """
        queries, codes = check_texts("queries", queries), check_texts("codes", codes)
        if candidate_queries is not None:
            candidate_queries = check_texts("candidate_queries", candidate_queries)
            if len(candidate_queries) != len(codes):
                raise ValueError(
                    f"candidate_queries must hold one query per code (len(codes) = {len(codes)}),"
                    f" got {len(candidate_queries)} candidate_queries"
                )
        elif self.requires_candidate_queries:
            raise ValueError(
                f"{type(self).__name__} compares each query with the query paired with each "
                "code, so candidate_queries (candidate_queries[j] paired with codes[j]) is "
                "required, got None"
            )
        with torch.no_grad():
            scores = self.similarity(queries, codes, candidate_queries)
        return self.checked_scores(scores, len(queries), len(codes))

    def similarity_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Relevance from the loss's detached ``[N, M]`` score matrix, for ``uses_scores``.

        The losses call this instead of the text path when ``uses_scores`` is ``True``; an
        estimator that sets it overrides this method (see ``SelfGuidedEstimator``).

        Raises:
            NotImplementedError: this estimator scores texts (it does not override this).
        """
        raise NotImplementedError(
            f"{type(self).__name__} scores texts (uses_scores = {self.uses_scores}); "
            "an estimator that reads the loss's scores overrides similarity_from_scores"
        )

    def checked_scores(self, scores: Any, rows: int, cols: int) -> torch.Tensor:
        """``scores`` as a detached float32 tensor after checking shape, dtype and finiteness."""
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
        if scores.is_complex() or scores.dtype == torch.bool:
            raise ValueError(f"{name}.similarity must return real scores, got {scores.dtype}")
        scores = scores.detach().to(torch.float32)
        finite = torch.isfinite(scores)
        if scores.device.type != "cpu":
            # on an accelerator a Python-side check would stall every training step on a host
            # sync; a device-side assert stops the run at the next kernel instead, unsynced
            torch._assert_async(
                finite.all(), f"{name}.similarity returned non-finite scores (NaN or inf)"
            )
        elif not bool(finite.all()):
            raise ValueError(
                f"{name}.similarity returned {int((~finite).sum())} non-finite "
                f"scores (NaN or inf) out of {scores.numel()}"
            )
        return scores


def __getattr__(name: str) -> Any:
    """``freeze`` moved to :mod:`soft_infonce.estimators.frozen`; the old import still works."""
    if name == "freeze":
        warnings.warn(
            "soft_infonce.estimators.base.freeze moved to soft_infonce.estimators.frozen.freeze "
            "(also soft_infonce.estimators.freeze)",
            DeprecationWarning,
            stacklevel=2,
        )
        from soft_infonce.estimators.frozen import freeze

        return freeze
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
