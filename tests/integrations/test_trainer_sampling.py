"""SoftInfoNCETrainer with a batch sampler: the trained batches are the sampler's batches."""

from __future__ import annotations

import pytest

datasets = pytest.importorskip("datasets")
from integrations.test_trainer import make_pairs  # noqa: E402
from integrations.test_trainer import tiny_model as tiny_model  # noqa: E402, F401 - the fixture

from soft_infonce.integrations.hf.trainer import (  # noqa: E402
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
    build_loss,
)
from soft_infonce.sampling import ClusteredBatchSampler, GroupBatchSampler  # noqa: E402


def args_for(tmp_path, **kw) -> SoftInfoNCETrainingArguments:
    return SoftInfoNCETrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_train_epochs=2,
        learning_rate=1e-3,
        save_strategy="no",
        report_to="none",
        loss="infonce",
        max_query_length=16,
        max_code_length=16,
        disable_tqdm=True,
        use_cpu=True,
        **kw,
    )


def recorded_batches(trainer: SoftInfoNCETrainer) -> list[list[str]]:
    seen: list[list[str]] = []
    collate = trainer.data_collator

    def recording(rows):
        seen.append([r["query"] for r in rows])
        return collate(rows)

    trainer.data_collator = recording
    trainer.train()
    return seen


def test_the_trainer_trains_on_the_samplers_batches_each_epoch(tmp_path, tiny_model):
    train = make_pairs(32, seed=1)
    groups = [i // 4 for i in range(32)]
    sampler = GroupBatchSampler(groups, 8, 0.25, seed=5)
    expected = [
        [train[i]["query"] for i in batch] for epoch in (0, 1) for batch in sampler.batches(epoch)
    ]
    args = args_for(tmp_path)
    trainer = SoftInfoNCETrainer(
        tiny_model, args, train_dataset=train, loss=build_loss(args, None), batch_sampler=sampler
    )
    assert recorded_batches(trainer) == expected
    assert trainer.state.global_step == 8


def test_clustered_argument_builds_a_clustered_sampler(tmp_path, tiny_model):
    train = make_pairs(48, seed=2)
    args = args_for(tmp_path, batch_sampler="clustered", batch_clusters=4)
    trainer = SoftInfoNCETrainer(tiny_model, args, train_dataset=train, loss=build_loss(args, None))
    assert isinstance(trainer.batch_sampler, ClusteredBatchSampler)
    assert len(set(trainer.batch_sampler.labels.tolist())) == 4
    batches = recorded_batches(trainer)
    assert all(len(b) == 8 for b in batches) and len(batches) == 12
    first_epoch = sorted(q for b in batches[:6] for q in b)
    assert first_epoch == sorted(train["query"])  # every pair once per epoch


def test_bad_sampler_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_sampler must be one of"):
        args_for(tmp_path, batch_sampler="topics")
    with pytest.raises(ValueError, match="batch_clusters"):
        args_for(tmp_path, batch_sampler="clustered", batch_clusters=0)


def test_clustered_needs_a_query_column(tmp_path, tiny_model):
    train = make_pairs(16, seed=3).rename_column("query", "text")
    args = args_for(tmp_path, batch_sampler="clustered")
    with pytest.raises(ValueError, match="clusters the train_dataset's 'query' column"):
        SoftInfoNCETrainer(tiny_model, args, train_dataset=train, loss=build_loss(args, None))
