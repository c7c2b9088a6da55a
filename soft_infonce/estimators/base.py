"""The :class:`WeightEstimator` interface: the relevance estimate sim_ij behind Eq. 4.

Soft-InfoNCE (Li et al., EMNLP 2023, Eq. 3-4) weights each negative code j of query i by
``w_ij`` computed from an estimated relevance ``sim_ij``. An estimator maps raw texts to
that ``[len(queries), len(codes)]`` score matrix; it is never trained by the loss.

This module holds the interface only (one abstract method and the validating call). Frozen
encoders and their embedding cache live in :mod:`soft_infonce.estimators.frozen`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from soft_infonce.checks import check_texts

__all__ = ["WeightEstimator", "check_texts"]


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
