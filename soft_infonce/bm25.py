"""Okapi BM25 in numpy and scipy.sparse: one implementation for the estimator and for mining.

:class:`BM25` scores queries against a set of documents with the formula of
``rank_bm25.BM25Okapi`` (idf floored at ``epsilon`` times the mean idf). The same object
serves a training batch (:class:`~soft_infonce.estimators.BM25Estimator`: tens of documents,
every score, ~0.1 ms) and a corpus (:func:`soft_infonce.codesearch.data.mine_hard_negatives`:
10^4-10^5
documents, scores in chunks of queries). Tokenisations are cached per text, so a text seen
in an earlier call costs a dictionary lookup.

Why not a BM25 library (``benchmarks/mining.py``, ``benchmarks/results/mining.json``, code
mined from the standard library and site-packages, 2 shared cores): on 10k codes, index and
top-10 for every code's query take 16 s here, 14 s with ``bm25s``, ~1,600 s with
``rank_bm25`` (it loops over documents in Python per query term); on 100k codes, 1,620 s,
2,190 s and ~140,000 s. In the estimator's case (32 queries x 32-128 codes per call) this
code takes 0.45-0.72 ms, ``bm25s`` 10-14 ms (it builds an index per call), ``rank_bm25``
13-31 ms. And ``bm25s`` has no idf floor (its Robertson idf clamps at 0): its top-10 equals
``rank_bm25``'s for 60-70% of the queries, this code's for all of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from soft_infonce.checks import check_number

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: "_" and punctuation split
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def code_tokenize(text: str) -> list[str]:
    """Split text or code into lower-case words at punctuation, snake_case and camelCase.

    Punctuation and whitespace separate words and are dropped; letters and digits stay
    together within a word (``"utf8"``, ``"sha256"``).

    Examples:
        >>> code_tokenize("def getHTTPResponse_code(self): return self.status_code")
        ['def', 'get', 'http', 'response', 'code', 'self', 'return', 'self', 'status', 'code']
    """
    return [part.lower() for word in _WORD.findall(text) for part in _CAMEL.split(word) if part]


def check_parameters(k1: float, b: float, epsilon: float, tokenizer: object) -> None:
    """Raise ``ValueError`` naming the first BM25 setting out of range."""
    check_number("k1", k1, low=0)
    check_number("b", b, low=0, high=1)
    check_number("epsilon", epsilon, low=0)
    if not callable(tokenizer):
        raise ValueError(f"tokenizer must be callable, got {type(tokenizer).__name__}")


class BM25:
    """Okapi BM25 of queries against documents, as ``rank_bm25.BM25Okapi`` computes it.

    With ``N`` documents, ``n(t)`` of them holding term ``t``,
    ``idf(t) = ln(N - n(t) + 0.5) - ln(n(t) + 0.5)``; a negative idf (``t`` in more than
    half the documents) is replaced by ``epsilon`` times the mean idf of the documents'
    vocabulary. The score of document ``d`` for query ``q`` is

        ``sum over the tokens t of q (with repeats) of
        idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))``.

    Args:
        k1: Term-frequency saturation, ``>= 0``.
        b: Length normalisation, in ``[0, 1]``.
        epsilon: The idf floor as a fraction of the mean idf, ``>= 0``.
        tokenizer: Text -> list of tokens; :func:`code_tokenize` by default.

    Examples:
        >>> bm25 = BM25()
        >>> scores = bm25.scores(["read a file"], ["def read_file(p): ...", "sorted(xs)"])
        >>> bool(scores[0, 0] > scores[0, 1])
        True
    """

    def __init__(
        self,
        k1: float = 1.2,
        b: float = 0.75,
        epsilon: float = 0.25,
        tokenizer: Callable[[str], list[str]] = code_tokenize,
    ) -> None:
        check_parameters(k1, b, epsilon, tokenizer)
        self.k1, self.b, self.epsilon = float(k1), float(b), float(epsilon)
        self.tokenizer = tokenizer
        self._vocabulary: dict[str, int] = {}
        # text -> (sorted unique term ids, their counts, number of tokens)
        self._bags: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

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
        rows = np.repeat(np.arange(len(bags)), [len(bag[0]) for bag in bags])
        ids = np.concatenate([bag[0] for bag in bags] or [np.zeros(0, np.int64)])
        counts = np.concatenate([bag[1] for bag in bags] or [np.zeros(0)])
        return rows, ids, counts

    def index(self, documents: Sequence[str]) -> tuple[np.ndarray, sp.csr_matrix]:
        """The documents' terms (sorted ids) and their weights ``[n terms, n documents]``.

        A weight is ``idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b |d| / avgdl))``,
        the score a query token ``t`` adds to document ``d``.
        """
        n_docs = len(documents)
        doc_rows, doc_ids, doc_counts = self._pairs(documents)  # (nnz,) each
        terms, columns = np.unique(doc_ids, return_inverse=True)  # (V,), (nnz,)
        if len(terms) == 0:  # no document has a single token: nothing can match
            return terms, sp.csr_matrix((0, n_docs))
        df = np.bincount(columns, minlength=len(terms))  # documents holding each term
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        idf[idf < 0] = self.epsilon * idf.mean()  # rank_bm25's floor
        lengths = np.array([self._bag(d)[2] for d in documents], dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * lengths / lengths.mean())  # (N docs,)
        saturated = doc_counts * (self.k1 + 1) / (doc_counts + norm[doc_rows])  # counts > 0
        weights = sp.csr_matrix(
            (idf[columns] * saturated, (columns, doc_rows)), shape=(len(terms), n_docs)
        )
        return terms, weights

    def query_matrix(self, queries: Sequence[str], terms: np.ndarray) -> sp.csr_matrix:
        """Counts of each query's tokens over ``terms`` (unseen terms dropped), ``[Q, V]``."""
        q_rows, q_ids, q_counts = self._pairs(queries)
        if len(terms) == 0:
            return sp.csr_matrix((len(queries), 0))
        position = np.searchsorted(terms, q_ids).clip(max=len(terms) - 1)
        seen = terms[position] == q_ids
        return sp.csr_matrix(
            (q_counts[seen], (q_rows[seen], position[seen])), shape=(len(queries), len(terms))
        )

    def scores(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """BM25 scores ``[len(queries), len(documents)]`` in float64, the corpus = ``documents``."""
        terms, weights = self.index(documents)
        if len(terms) == 0:
            return np.zeros((len(queries), len(documents)))
        return (self.query_matrix(queries, terms) @ weights).toarray()

    def iter_scores(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        chunk_size: int = 512,
        dtype: type = np.float32,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, scores[start:start + chunk_size])`` of every query against a corpus.

        The corpus is indexed once; each chunk is a dense ``[<= chunk_size, len(documents)]``
        array, so memory stays bounded however many queries there are.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        terms, weights = self.index(documents)
        weights = weights.astype(dtype)
        matrix = self.query_matrix(queries, terms).astype(dtype)
        for start in range(0, len(queries), chunk_size):
            rows = matrix[start : start + chunk_size]
            if len(terms) == 0:
                yield start, np.zeros((rows.shape[0], len(documents)), dtype=dtype)
            else:
                yield start, (rows @ weights).toarray()
