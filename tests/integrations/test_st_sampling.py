"""clustered_batches as SentenceTransformerTrainer's batch_sampler: pure topic batches, trains."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
from datasets import Dataset  # noqa: E402
from integrations.test_sentence_transformers import tiny_model  # noqa: E402
from integrations.test_sentence_transformers import tiny_path as tiny_path  # noqa: E402, F401
from sentence_transformers import (  # noqa: E402
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    MultipleNegativesRankingLoss,
)

from soft_infonce.integrations.sentence_transformers import clustered_batches  # noqa: E402
from soft_infonce.sampling import ClusteredBatchSampler  # noqa: E402

TOPICS = ["sort a list", "read a file", "parse json", "write a value"]


def topic_dataset() -> tuple[Dataset, np.ndarray]:
    anchors, codes, topics = [], [], []
    for t, topic in enumerate(TOPICS):
        for i in range(8):
            anchors.append(f"{topic} {'the ' * (i % 3)}{'key ' * (i // 3)}".strip())
            codes.append(f"def f{t}{i}(x): return x")
            topics.append(t)
    return Dataset.from_dict({"anchor": anchors, "positive": codes}), np.asarray(topics)


def test_clustered_batches_in_the_trainer(tiny_path, tmp_path):
    dataset, topics = topic_dataset()
    model = tiny_model(tiny_path)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_train_epochs=1,
        batch_sampler=clustered_batches(n_clusters=4),
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
    )
    sampler = trainer.get_batch_sampler(dataset, batch_size=8, drop_last=False, seed=3)
    assert isinstance(sampler, ClusteredBatchSampler)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(32))
    assert all(len(set(topics[b])) == 1 for b in batches)  # every batch one topic
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert trainer.state.global_step == 4 and all(math.isfinite(x) for x in losses or [0.0])


def test_clustered_batches_refuses_a_missing_column():
    dataset, _ = topic_dataset()
    with pytest.raises(ValueError, match="'query' is not in"):
        clustered_batches(column="query")(dataset, 8, False)
    with pytest.raises(ValueError, match="n_clusters must be a positive int"):
        clustered_batches(n_clusters=0)
