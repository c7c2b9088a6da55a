"""The cached sentence-transformers loss scores its anchors a chunk at a time: the chunk size,
and the same loss and gradients as the plain loss when every chunk is one mini-batch."""

from __future__ import annotations

import pytest

pytest.importorskip("sentence_transformers")

from integrations.test_sentence_transformers import (  # noqa: E402
    assert_same,
    batch_features,
    loss_and_grads,
    tiny_model,
)
from integrations.test_sentence_transformers import tiny_path as tiny_path  # noqa: E402, F401

from soft_infonce.estimators import BM25Estimator  # noqa: E402
from soft_infonce.integrations.sentence_transformers import (  # noqa: E402
    CachedSoftInfoNCELoss,
    SoftInfoNCELoss,
    cached,
)


@pytest.mark.parametrize(
    ("n", "m", "mini", "rows"),
    [(1024, 1024, 32, 1024), (1024, 4096, 32, 256), (8192, 8192, 32, 128),
     (8192, 2**21, 32, 32), (3, 6, 2, 3)],
)  # fmt: skip
def test_rows_per_chunk_keeps_a_chunk_within_the_budget(n, m, mini, rows) -> None:
    assert cached.loss_rows_per_chunk(n, m, mini) == rows


@pytest.mark.parametrize("negatives", [False, True])
def test_chunked_cached_loss_equals_the_plain_one(
    tiny_path, negatives, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cached, "SCORES_PER_CHUNK", 1)  # every chunk = one mini-batch of 2
    model = tiny_model(tiny_path)
    estimator = BM25Estimator(side="query-code")
    features = batch_features(model, negatives=negatives)
    plain = loss_and_grads(SoftInfoNCELoss(model, estimator), model, features)
    cached_fn = CachedSoftInfoNCELoss(model, estimator, mini_batch_size=2)
    assert_same(loss_and_grads(cached_fn, model, features), plain, atol=1e-6, rtol=1e-4)
    stats = cached_fn.last_statistics
    assert stats["q2c/weight_min"] < 1 < stats["q2c/weight_max"]


def test_the_loss_never_holds_the_whole_score_matrix(
    tiny_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cached, "SCORES_PER_CHUNK", 1)
    model = tiny_model(tiny_path)
    cached_fn = CachedSoftInfoNCELoss(model, BM25Estimator(side="query-code"), mini_batch_size=2)
    objective, shapes = cached_fn.loss.objective, []
    original = objective.loss_from_scores

    def spy(scores, similarity, labels):
        shapes.append(tuple(scores.shape))
        return original(scores, similarity, labels)

    monkeypatch.setattr(objective, "loss_from_scores", spy)
    loss_and_grads(cached_fn, model, batch_features(model, n=5))
    assert shapes == [(2, 5), (2, 5), (1, 5)]  # [rows, M] chunks, never [5, 5]
