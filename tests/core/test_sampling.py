"""The batch samplers: coverage, sizes, seeds, the shares they realise."""

from __future__ import annotations

import numpy as np
import pytest

from soft_infonce.sampling import (
    ClusteredBatchSampler,
    GroupBatchSampler,
    clustered_batch_sampler,
    same_group_share,
    topic_labels,
)

TOPICS = ["sort list", "open file", "parse json", "send email", "resize image", "hash password"]


def topic_queries(per_topic: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    fillers = "a the some this new old my each".split()
    queries, topics = [], []
    for t, topic in enumerate(TOPICS):
        for _ in range(per_topic):
            queries.append(f"{topic} {' '.join(rng.choice(fillers, 2))}")
            topics.append(t)
    return queries, np.asarray(topics)


def epoch(sampler) -> list[list[int]]:
    return [list(b) for b in sampler]


@pytest.mark.parametrize("clusters_per_batch", [1, 2])
@pytest.mark.parametrize("drop_last", [False, True])
def test_clustered_every_row_once_sizes_and_share(clusters_per_batch, drop_last):
    queries, topics = topic_queries(21)  # 126 rows: clusters of 21 leave remainders
    sampler = ClusteredBatchSampler(
        topics, 8, clusters_per_batch=clusters_per_batch, drop_last=drop_last, seed=3
    )
    batches = epoch(sampler)
    rows = [r for b in batches for r in b]
    if drop_last:
        assert all(len(b) == 8 for b in batches) and len(batches) == len(sampler) == 15
        assert len(set(rows)) == len(rows) == 120
    else:
        assert sorted(rows) == list(range(126))
        assert [len(b) for b in batches[:-1]] == [8] * 15 and len(batches[-1]) == 6
    clustered = same_group_share(topics, batches)
    rng = np.random.default_rng(0)
    random = same_group_share(topics, rng.permutation(126)[:120].reshape(15, 8).tolist())
    # random: ~20/125 of negatives share a topic; clustered: most do
    assert random < 0.25 and clustered > (0.75 if clusters_per_batch == 1 else 0.35)


def test_clustered_seeded_and_epochs_differ():
    _, topics = topic_queries(16)
    a = ClusteredBatchSampler(topics, 8, seed=1)
    b = ClusteredBatchSampler(topics, 8, seed=1)
    assert epoch(a) == epoch(b)
    assert epoch(a) != a.batches(0)  # the second iteration is epoch 1
    a.set_epoch(0)
    assert epoch(a) == ClusteredBatchSampler(topics, 8, seed=1).batches(0)
    assert ClusteredBatchSampler(topics, 8, seed=2).batches(0) != a.batches(0)


def test_small_clusters_go_to_mixed_batches():
    labels = np.repeat(np.arange(10), 3)  # every cluster (3 rows) smaller than a batch of 8
    batches = ClusteredBatchSampler(labels, 8, seed=0).batches(0)
    assert sorted(r for b in batches for r in b) == list(range(30))


def test_samplers_refuse_bad_sizes():
    with pytest.raises(ValueError, match="exceeds the 5 rows"):
        ClusteredBatchSampler(np.zeros(5, dtype=int), 8)
    with pytest.raises(ValueError, match="exceeds the 3 rows"):
        GroupBatchSampler([0, 0, 1], 4)
    with pytest.raises(ValueError, match="same_group_share"):
        GroupBatchSampler(np.arange(10), 4, 1.5)
    with pytest.raises(ValueError, match="even"):
        ClusteredBatchSampler(np.zeros(20, dtype=int), 7, clusters_per_batch=2)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.25])
def test_group_sampler_dials_the_share(target):
    groups = np.repeat(np.arange(60), 10)  # 60 pairs with 9 copies each, batch 32
    sampler = GroupBatchSampler(groups, 32, target, seed=0)
    for e in range(2):
        batches = sampler.batches(e)
        assert sorted(r for b in batches for r in b) == list(range(len(groups)))
        assert [len(b) for b in batches] == [32] * 18 + [24]
        share = same_group_share(groups, batches)
        assert share == pytest.approx(target, abs=0.012)
    assert sampler.batches(0) != sampler.batches(1)
    assert sampler.batches(0) == GroupBatchSampler(groups, 32, target, seed=0).batches(0)


def test_same_group_share_by_hand():
    # batch [0, 1, 2]: rows 0 and 1 share group 7 -> 2 of 6 ordered pairs
    assert same_group_share([7, 7, 8, 9], [[0, 1, 2], [3]]) == pytest.approx(2 / 6)


def test_topic_labels_caps_k_at_the_distinct_texts_and_defaults_to_rows_per_batch():
    queries, topics = topic_queries(20)  # 120 rows, 6 topics
    labels = topic_labels(queries, 20, seed=0)  # k = 120 // 20 = 6: the topics again
    assert len(set(labels.tolist())) == 6
    for t in range(len(TOPICS)):
        assert len(set(labels[topics == t].tolist())) == 1
    repeated = ["get value"] * 30 + ["set value"] * 30
    assert sorted(set(topic_labels(repeated, 4, n_clusters=10).tolist())) == [0, 1]
    with pytest.raises(ValueError, match="n_clusters must be a positive int"):
        topic_labels(queries, 20, n_clusters=0)


def test_clustered_batch_sampler_builds_topic_batches():
    queries, topics = topic_queries(20)
    sampler = clustered_batch_sampler(queries, 20, seed=0)
    batches = list(sampler)
    assert sorted(r for b in batches for r in b) == list(range(120))
    assert all(len(set(topics[b].tolist())) == 1 for b in batches)  # one topic per batch
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        clustered_batch_sampler(queries, 1)
