"""BM25 over the in-batch candidates (the paper's BM25 estimator), on :mod:`soft_infonce.bm25`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from soft_infonce.bm25 import BM25, check_parameters, code_tokenize
from soft_infonce.estimators.base import WeightEstimator

SIDES = ("query-query", "query-code")
__all__ = ["SIDES", "BM25Estimator", "code_tokenize"]


class BM25Estimator(WeightEstimator):
    """Okapi BM25 of each query against the batch's candidates, as ``rank_bm25.BM25Okapi``.

    The corpus is the batch itself: the queries paired with the codes (``"query-query"``,
    the paper's setting) or the codes (``"query-code"``). With ``N`` documents, ``n(t)`` of
    them holding term ``t``, ``idf(t) = ln(N - n(t) + 0.5) - ln(n(t) + 0.5)``; a negative
    idf (t in more than half the documents) is replaced by ``epsilon`` times the mean idf of
    the batch vocabulary. The score of document d for query q is

        ``sum over the tokens t of q (with repeats) of
        idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))``.

    The scoring is :class:`soft_infonce.bm25.BM25`, the implementation hard-negative mining
    uses too. Each distinct text is tokenised once per run, so a warm 32 x 32 call costs
    about 0.1 ms (``benchmarks/results/mining.json``).

    Args:
        side: ``"query-query"`` (needs ``candidate_queries``) or ``"query-code"``.
        k1: term-frequency saturation, ``>= 0``.
        b: length normalisation, in ``[0, 1]``.
        epsilon: the idf floor as a fraction of the mean idf, ``>= 0``.
        tokenizer: text -> list of tokens; :func:`code_tokenize` by default.

    Examples:
        >>> bm25 = BM25Estimator(side="query-code")
        >>> sim = bm25(["read a file", "sort a list"], ["def read_file(p): ...", "sorted(xs)"])
        >>> bool(sim[0, 0] > sim[0, 1])
        True
    """

    preset = "bm25"

    def __init__(
        self,
        side: Literal["query-query", "query-code"] = "query-query",
        k1: float = 1.2,
        b: float = 0.75,
        epsilon: float = 0.25,
        tokenizer: Callable[[str], list[str]] = code_tokenize,
    ) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        check_parameters(k1, b, epsilon, tokenizer)
        self.side = side
        self._bm25 = BM25(k1=k1, b=b, epsilon=epsilon, tokenizer=tokenizer)

    k1 = property(lambda self: self._bm25.k1, doc="Term-frequency saturation.")
    b = property(lambda self: self._bm25.b, doc="Length normalisation.")
    epsilon = property(lambda self: self._bm25.epsilon, doc="The idf floor (share of mean idf).")
    tokenizer = property(lambda self: self._bm25.tokenizer, doc="Text -> list of tokens.")

    @property
    def requires_candidate_queries(self) -> bool:  # type: ignore[override]
        """``True`` for ``"query-query"``: the corpus is the queries paired with the codes."""
        return self.side == "query-query"

    def clear_cache(self) -> None:
        """Forget the cached tokenisations."""
        self._bm25.clear_cache()

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """BM25 scores ``[len(queries), len(codes)]`` in float64."""
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        documents = candidate_queries if self.side == "query-query" else codes
        if documents is None:
            raise ValueError("BM25Estimator(side='query-query') needs candidate_queries, got None")
        return torch.from_numpy(self._bm25.scores(queries, documents))
