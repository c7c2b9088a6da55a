"""BM25 over the in-batch candidates, vectorised in torch (the paper's BM25 estimator)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from soft_infonce.estimators.base import WeightEstimator

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: "_" and punctuation split
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
SIDES = ("query-query", "query-code")


def code_tokenize(text: str) -> list[str]:
    """Split text or code into lower-case words at punctuation, snake_case and camelCase.

    Punctuation and whitespace separate words and are dropped; letters and digits stay
    together within a word (``"utf8"``, ``"sha256"``).

    Examples:
        >>> code_tokenize("def getHTTPResponse_code(self): return self.status_code")
        ['def', 'get', 'http', 'response', 'code', 'self', 'return', 'self', 'status', 'code']
    """
    return [part.lower() for word in _WORD.findall(text) for part in _CAMEL.split(word) if part]


class BM25Estimator(WeightEstimator):
    """Okapi BM25 of each query against the batch's candidates, as ``rank_bm25.BM25Okapi``.

    The corpus is the batch itself: the queries paired with the codes (``"query-query"``,
    the paper's setting) or the codes (``"query-code"``). With ``N`` documents, ``n(t)`` of
    them holding term ``t``, ``idf(t) = ln(N - n(t) + 0.5) - ln(n(t) + 0.5)``; a negative
    idf (t in more than half the documents) is replaced by ``epsilon`` times the mean idf of
    the batch vocabulary. The score of document d for query q is

        ``sum over the tokens t of q (with repeats) of
        idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))``.

    Each distinct text is tokenised once per run, so a step costs a few small tensor ops.

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
        if not (isinstance(k1, (int, float)) and k1 >= 0):
            raise ValueError(f"k1 must be a number >= 0, got {k1!r}")
        if not (isinstance(b, (int, float)) and 0 <= b <= 1):
            raise ValueError(f"b must be a number in [0, 1], got {b!r}")
        if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
            raise ValueError(f"epsilon must be a number >= 0, got {epsilon!r}")
        if not callable(tokenizer):
            raise ValueError(f"tokenizer must be callable, got {type(tokenizer).__name__}")
        self.side, self.k1, self.b, self.epsilon = side, float(k1), float(b), float(epsilon)
        self.tokenizer = tokenizer
        self._vocabulary: dict[str, int] = {}
        # text -> (sorted unique term ids, their counts, number of tokens)
        self._bags: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}

    @property
    def requires_candidate_queries(self) -> bool:  # type: ignore[override]
        """``True`` for ``"query-query"``: the corpus is the queries paired with the codes."""
        return self.side == "query-query"

    def clear_cache(self) -> None:
        """Forget the cached tokenisations."""
        self._vocabulary, self._bags = {}, {}

    def _bag(self, text: str) -> tuple[np.ndarray, np.ndarray, int]:
        bag = self._bags.get(text)
        if bag is None:
            tokens = self.tokenizer(text)
            if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
                raise ValueError(
                    f"tokenizer must return a list of str, got {type(tokens).__name__} "
                    f"for {text!r:.60}"
                )
            counts = Counter(self._vocabulary.setdefault(t, len(self._vocabulary)) for t in tokens)
            ids = sorted(counts)
            bag = (
                np.array(ids, dtype=np.int64),
                np.array([counts[i] for i in ids], dtype=np.float64),
                len(tokens),
            )
            self._bags[text] = bag
        return bag

    def _pairs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row index, term id and count of every (text, distinct term) pair of ``texts``."""
        bags = [self._bag(text) for text in texts]
        sizes = [len(bag[0]) for bag in bags]
        rows = np.repeat(np.arange(len(bags)), sizes)
        ids = np.concatenate([bag[0] for bag in bags])
        return rows, ids, np.concatenate([bag[1] for bag in bags])

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """BM25 scores ``[len(queries), len(codes)]`` in float64."""
        # numpy, not torch: on these tiny sparse arrays torch's intra-op threads cost more than
        # the work (tens of ms per call on a busy machine); numpy stays on one core.
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        documents = candidate_queries if self.side == "query-query" else codes
        if documents is None:
            raise ValueError("BM25Estimator(side='query-query') needs candidate_queries, got None")
        n_docs = len(documents)
        doc_rows, doc_ids, doc_counts = self._pairs(documents)  # (nnz,) each
        scores = np.zeros((len(queries), n_docs))
        if len(doc_ids) == 0:  # no document has a single token: nothing can match
            return torch.from_numpy(scores)
        terms, columns = np.unique(doc_ids, return_inverse=True)  # (V,), (nnz,)
        df = np.bincount(columns, minlength=len(terms))  # documents holding each term
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        idf[idf < 0] = self.epsilon * idf.mean()  # rank_bm25's floor
        lengths = np.array([self._bag(d)[2] for d in documents], dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * lengths / lengths.mean())  # (N docs,)
        saturated = doc_counts * (self.k1 + 1) / (doc_counts + norm[doc_rows])  # counts > 0
        weights = np.zeros((len(terms), n_docs))  # (V, N docs): idf * saturated tf
        weights[columns, doc_rows] = idf[columns] * saturated
        # each query term (with its count) adds its row of weights; unseen terms add nothing
        q_rows, q_ids, q_counts = self._pairs(queries)
        position = np.searchsorted(terms, q_ids).clip(max=len(terms) - 1)
        seen = terms[position] == q_ids
        np.add.at(scores, q_rows[seen], q_counts[seen, None] * weights[position[seen]])
        return torch.from_numpy(scores)
