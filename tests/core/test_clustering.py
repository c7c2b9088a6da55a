"""Clustering the queries (TF-IDF/LSA k-means) and the near-duplicate share of batches."""

from __future__ import annotations

import numpy as np
import pytest
from core.test_sampling import TOPICS, topic_queries

from soft_infonce.clustering import (
    cluster_queries,
    near_duplicate_share,
    tfidf_embeddings,
    token_jaccard,
)


def test_tfidf_rows_are_unit_and_cluster_recovers_topics():
    queries, topics = topic_queries(20)
    x = tfidf_embeddings(queries, dim=16)
    assert x.shape == (120, 16)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    labels = cluster_queries(queries, len(TOPICS), seed=0)
    # every topic lands in one cluster and topics do not share clusters
    for t in range(len(TOPICS)):
        assert len(set(labels[topics == t])) == 1
    assert len(set(labels)) == len(TOPICS)


def test_cluster_refuses_duplicates_only_and_bad_k():
    with pytest.raises(ValueError, match="distinct queries"):
        cluster_queries(["get value"] * 50, 3)
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_queries(["a b", "c d"], 0)
    with pytest.raises(ValueError, match="shape"):
        cluster_queries(["a", "b", "c"], 2, embeddings=np.zeros((2, 4)))
    assert (cluster_queries(["get value"] * 5, 1) == 0).all()


def test_near_duplicate_share_by_hand():
    queries = ["sort a list", "sort a list quickly", "open a file", "send mail"]
    codes = ["def f(x): x", "def g(y): y", "def f(x): x", "z"]
    # jaccard(q0, q1) = 3/4; jaccard(c0, c2) = 1; c0 vs c1: {def, f, x} vs {def, g, y} = 1/5
    assert token_jaccard(queries[0], queries[1]) == pytest.approx(0.75)
    share = near_duplicate_share(queries, codes, [[0, 1, 2, 3]])
    assert share["negatives"] == 12
    assert share["query_share"] == pytest.approx(2 / 12)
    assert share["code_share"] == pytest.approx(2 / 12)
    assert share["either_share"] == pytest.approx(4 / 12)


def test_blank_texts_and_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"texts\[1\] must be a non-blank text"):
        tfidf_embeddings(["sort a list", "  "])
    with pytest.raises(ValueError, match="dim must be a positive int"):
        tfidf_embeddings(["sort a list"], dim=0)
    with pytest.raises(ValueError, match="threshold must be in"):
        near_duplicate_share(["a"], ["b"], [[0]], threshold=1.5)
