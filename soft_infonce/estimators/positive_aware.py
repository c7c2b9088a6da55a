"""Scores relative to the positive's: a negative scored like its query's positive is suspect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from soft_infonce.checks import check_number
from soft_infonce.estimators.base import WeightEstimator

MODES = ("ratio", "difference")


class PositiveAwareEstimator(WeightEstimator):
    """Any estimator's scores, measured against the score of each query's own positive.

    Mined hard negatives are often relevant (duplicated functions, the same API elsewhere);
    a teacher cannot say how relevant in absolute terms, but a negative it scores like the
    positive is a likely false negative (NV-Retriever's "TopK-PercPos" drops negatives above
    95% of the positive's score). This wraps a teacher ``estimator`` (any
    :class:`WeightEstimator`: BM25, a frozen encoder, ...) and rescales each row by the
    positive's score. Column ``i`` is query ``i``'s positive (the first ``N`` candidates are
    the positives, as the collator lays them out), so ``len(codes) >= len(queries)``.

    ``"ratio"`` (default): ``r_ij = (s_ij - m_i) / (s_ii - m_i)``, clipped to
    ``[0, max_ratio]``, with ``m_i`` the row's smallest score. For a non-negative teacher
    whose row minimum is 0 (BM25), that is exactly ``s_ij / s_ii``; the anchor makes it
    defined for signed scores (cosines, dot products) too. 1 means "as relevant as the
    positive", 0 "the least relevant candidate of the row"; the positive itself scores 1. It
    is scale-free, so one temperature suits every teacher: with a softmax over ratios in
    ``[0, 1]`` use a cosine-like ``t`` (0.1) or :func:`calibrate_temperature`. A row whose
    positive is the least relevant candidate (``s_ii = m_i``) gives ``max_ratio`` to every
    negative above it.

    ``"difference"``: ``s_ij - s_ii`` in the teacher's units (its preset applies). Eq. 4's
    softmax is shift-invariant per row, so Soft-InfoNCE's weights do not change; thresholds
    do (false-negative cancellation, ``mode="threshold"``, then cuts at a margin below the
    positive).

    Cost: the teacher's call plus an ``[N, M]`` elementwise pass.

    Args:
        estimator: the teacher.
        mode: ``"ratio"`` or ``"difference"``.
        max_ratio: the upper clip of ``"ratio"`` (``>= 1``).

    Examples:
        >>> from soft_infonce.estimators import BM25Estimator
        >>> aware = PositiveAwareEstimator(BM25Estimator(side="query-code"))
        >>> aware(["read a file"], ["def read_file(p): ...", "def read(p): ..."]).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        estimator: WeightEstimator,
        mode: Literal["ratio", "difference"] = "ratio",
        max_ratio: float = 2.0,
    ) -> None:
        if not isinstance(estimator, WeightEstimator):
            raise TypeError(
                f"estimator must be a soft_infonce.WeightEstimator, got {type(estimator).__name__}"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.estimator, self.mode = estimator, mode
        self.max_ratio = check_number("max_ratio", max_ratio, low=1.0)

    @property
    def preset(self) -> str | None:  # type: ignore[override]
        """The teacher's preset for ``"difference"`` (same units); the library's ``"ratio"``
        preset (1.3 / 0.7 / t = 0.1, :data:`soft_infonce.presets.LIBRARY_PRESETS`) otherwise."""
        return self.estimator.preset if self.mode == "difference" else "ratio"

    @property
    def requires_candidate_queries(self) -> bool:  # type: ignore[override]
        """Whatever the teacher needs."""
        return self.estimator.requires_candidate_queries

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Relative scores ``[len(queries), len(codes)]``; column i is query i's positive."""
        n = len(queries)
        if len(codes) < n:
            raise ValueError(
                f"{type(self).__name__} reads codes[i] as query i's positive, so codes must hold "
                f"at least len(queries) = {n} candidates, got {len(codes)}"
            )
        scores = self.estimator(queries, codes, candidate_queries).double()  # (N, M)
        positive = scores.diagonal()[:, None]  # (N, 1): s_ii
        if self.mode == "difference":
            return scores - positive
        floor = scores.min(dim=1, keepdim=True).values  # (N, 1): m_i
        span = positive - floor  # >= 0
        tiny = torch.finfo(scores.dtype).tiny
        ratio = ((scores - floor) / span.clamp_min(tiny)).clamp(0.0, self.max_ratio)
        rows = torch.arange(n)
        ratio[rows, rows] = 1.0  # the positive, also in a row where it is the minimum
        return ratio
