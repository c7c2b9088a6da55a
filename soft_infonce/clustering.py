"""Topic clusters of training queries, and how many in-batch negatives are near-duplicates.

Clustering is the first half of topic-clustered batches (TAS-Balanced, Hofstaetter et al.,
SIGIR 2021): the queries are embedded once, by TF-IDF reduced with a truncated SVD (LSA) or by
any cached frozen-encoder embedding passed in, and grouped with k-means
(``scipy.cluster.vq.kmeans2`` from a k-means++ start). The samplers of
:mod:`soft_infonce.sampling` then draw each batch from one or two clusters.

:func:`near_duplicate_share` measures what such batches do: the share of in-batch negatives whose
docstring (or code) has token Jaccard >= 0.5 with the row's own, i.e. likely false negatives.

Example:
    >>> labels = cluster_queries(["sort a list", "sort the list", "open a file", "read a file"], 2)
    >>> labels = labels.tolist()
    >>> labels[0] == labels[1], labels[2] == labels[3], labels[0] != labels[2]
    (True, True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.cluster.vq import kmeans2
from scipy.linalg import lu

from soft_infonce.bm25 import code_tokenize
from soft_infonce.checks import check_int, check_number, check_texts

__all__ = ["cluster_queries", "near_duplicate_share", "tfidf_embeddings", "token_jaccard"]


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in code_tokenize(text)]


def tfidf_embeddings(texts: Sequence[str], dim: int = 64, seed: int = 0) -> np.ndarray:
    """L2-normalised LSA embeddings of ``texts``: TF-IDF (log tf, smoothed idf), truncated SVD.

    Args:
        texts: The texts (tokens: runs of letters and digits, camelCase split, lower-cased).
        dim: SVD components kept (fewer when the vocabulary or the text count is smaller).
        seed: Seed of the randomized SVD's test matrix (the result is reproducible).

    Returns:
        A float64 array of shape ``(len(texts), dim')``; a text without tokens is a zero row.
    """
    texts = check_texts("texts", texts)
    check_int("dim", dim)
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        counts: dict[int, int] = {}
        for token in _tokens(text):
            j = vocab.setdefault(token, len(vocab))
            counts[j] = counts.get(j, 0) + 1
        rows += [i] * len(counts)
        cols += list(counts)
        vals += [1.0 + np.log(c) for c in counts.values()]
    n = len(texts)
    if not vocab:
        return np.zeros((n, 1))
    tf = sp.csr_matrix((vals, (rows, cols)), shape=(n, len(vocab)))
    df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=len(vocab))
    x = tf @ sp.diags(np.log((1 + n) / (1 + df)) + 1.0)
    k = min(dim, min(x.shape) - 1)
    if k < 1:  # one text or one token: the TF-IDF rows themselves
        dense = x.toarray()
    else:
        dense = _randomized_svd(x, k, seed)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return dense / np.where(norms > 0, norms, 1.0)


def _randomized_svd(x: sp.spmatrix, k: int, seed: int, power: int = 4) -> np.ndarray:
    """``U_k * S_k`` of the sparse ``x`` by a randomized range finder (Halko et al., 2011).

    Dense NumPy linear algebra from a seeded test matrix, so the same input gives the same
    output on every call (ARPACK's ``svds`` does not: with tied singular values, as in
    symmetric topic sets, it returns a different basis each run and the clusters change).
    """
    rng = np.random.default_rng(seed)
    width = min(min(x.shape), k + 10)
    y = x @ rng.standard_normal((x.shape[1], width))
    for _ in range(power):  # power iterations sharpen the spectrum's decay; LU keeps the
        # columns apart at a fraction of a QR's cost (as scikit-learn's randomized_svd does)
        q, _ = lu(y, permute_l=True)
        q, _ = lu(x.T @ q, permute_l=True)
        y = x @ q
    q, _ = np.linalg.qr(y)
    u, singular, _ = np.linalg.svd((x.T @ q).T, full_matrices=False)
    return (q @ u[:, :k]) * singular[:k]


def cluster_queries(
    queries: Sequence[str],
    n_clusters: int,
    *,
    embeddings: np.ndarray | None = None,
    dim: int = 64,
    seed: int = 0,
    iterations: int = 20,
    restarts: int = 3,
) -> np.ndarray:
    """k-means cluster labels (``int64``, shape ``(len(queries),)``) of the queries.

    Args:
        queries: The training queries (used for TF-IDF unless ``embeddings`` is given).
        n_clusters: k. Must not exceed the number of distinct embedding rows.
        embeddings: Precomputed embeddings, shape ``(len(queries), d)`` (e.g. a cached frozen
            encoder's); by default :func:`tfidf_embeddings`.
        dim: SVD components of the TF-IDF embedding.
        seed: Seed of the SVD and of k-means.
        iterations: k-means iterations.
        restarts: k-means runs from different k-means++ starts; the lowest inertia wins.

    Raises:
        ValueError: ``n_clusters`` below 1 or above the count of distinct queries (e.g. a list of
            duplicates only, which k-means cannot split), or embeddings of the wrong shape.
    """
    n = len(queries)
    check_int("n_clusters", n_clusters)
    check_int("iterations", iterations)
    check_int("restarts", restarts)
    x = tfidf_embeddings(queries, dim=dim, seed=seed) if embeddings is None else embeddings
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, d), got {tuple(x.shape)}")
    distinct = len(np.unique(np.round(x, 9), axis=0))
    if n_clusters > distinct:
        raise ValueError(
            f"n_clusters={n_clusters} exceeds the {distinct} distinct queries (of {n}): "
            "k-means cannot split identical points; lower n_clusters or deduplicate"
        )
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        start = _kmeans_plus_plus(x, n_clusters, rng)
        centroids, labels = kmeans2(x, start, iter=iterations, minit="matrix", seed=rng)
        inertia = float(((x - centroids[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    assert best is not None
    return best.astype(np.int64)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007), one O(n d) pass per centre.

    (scipy's ``minit="++"`` takes ~13 s for 312 centres of 10k points; this takes well under 1.)
    """
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(len(x))]
    nearest = ((x - centres[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centres[c] = x[pick]
        nearest = np.minimum(nearest, ((x - centres[c]) ** 2).sum(axis=1))
    return centres


def token_jaccard(a: str, b: str) -> float:
    """Jaccard index of the two texts' lower-cased token sets (1.0 for two empty texts)."""
    sa, sb = set(_tokens(a)), set(_tokens(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def near_duplicate_share(
    queries: Sequence[str],
    codes: Sequence[str],
    batches: Iterable[Sequence[int]],
    threshold: float = 0.5,
) -> dict[str, float]:
    """Share of in-batch negatives that are near-duplicates of the row's positive.

    For every row ``i`` of every batch and every other row ``j`` of that batch (an in-batch
    negative of ``i``), counts whether the token Jaccard of the docstrings ``queries[i]``,
    ``queries[j]`` (and separately of the codes) is at least ``threshold``.

    Returns:
        ``{"negatives": count, "query_share": ..., "code_share": ..., "either_share": ...}``.
    """
    if len(queries) != len(codes):
        raise ValueError(f"queries and codes differ in length: {len(queries)} vs {len(codes)}")
    check_number("threshold", threshold, low=0, high=1)
    qt = [frozenset(_tokens(t)) for t in queries]
    ct = [frozenset(_tokens(t)) for t in codes]

    def close(sets: list[frozenset[str]], i: int, j: int) -> bool:
        union = len(sets[i] | sets[j])
        return union == 0 or len(sets[i] & sets[j]) / union >= threshold

    total = q_hits = c_hits = either = 0
    for batch in batches:
        rows = list(batch)
        for i in rows:
            for j in rows:
                if i == j:
                    continue
                q, c = close(qt, i, j), close(ct, i, j)
                total += 1
                q_hits += q
                c_hits += c
                either += q or c
    share = (lambda k: k / total) if total else (lambda k: 0.0)
    return {
        "negatives": float(total),
        "query_share": share(q_hits),
        "code_share": share(c_hits),
        "either_share": share(either),
    }
