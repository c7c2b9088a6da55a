"""The trainer's batches: errors raised inside one name the train_dataset rows (not batch
positions), a batch too small for the preset fails before training, and the train_loss of a
resumed run covers the whole run."""

from __future__ import annotations

import re

import pytest

datasets = pytest.importorskip("datasets")

from integrations.test_trainer import StopAt, make_args, make_pairs  # noqa: E402
from integrations.test_trainer import tiny_model as tiny_model  # noqa: E402, F401 - the fixture

from soft_infonce.estimators.base import WeightEstimator  # noqa: E402
from soft_infonce.integrations.hf.trainer import SoftInfoNCETrainer  # noqa: E402

POISON = 37  # the dataset row whose query the estimator and the collator refuse


class Refusing(WeightEstimator):
    """Raises on the poisoned query, naming its position in the batch (as estimators do)."""

    preset = None

    def similarity(self, queries, codes, candidate_queries=None):
        import torch

        for i, query in enumerate(queries):
            if query.startswith("poison"):
                raise ValueError(f"queries[{i}] cannot be scored")
        return torch.zeros(len(queries), len(codes))


def _poisoned() -> datasets.Dataset:
    rows = make_pairs(64, seed=1).to_list()
    rows[POISON]["query"] = "poison " + rows[POISON]["query"]
    return datasets.Dataset.from_list(rows)


def _row_of_position(message: str) -> int:
    position = int(re.search(r"\[(\d+)\] cannot", message).group(1))
    rows = [
        int(r) for r in re.search(r"train_dataset rows \[([\d, ]+)\]", message).group(1).split(",")
    ]
    return rows[position]


@pytest.mark.parametrize("mini_batch_size", [None, 4])
def test_an_estimator_error_names_the_dataset_row(tmp_path, tiny_model, mini_batch_size) -> None:
    args = make_args(tmp_path, max_steps=8, eval_strategy="no", save_strategy="no",
                     load_best_model_at_end=False, mini_batch_size=mini_batch_size)  # fmt: skip
    trainer = SoftInfoNCETrainer(tiny_model, args, train_dataset=_poisoned(), estimator=Refusing())
    with pytest.raises(ValueError, match="cannot be scored") as caught:
        trainer.train()
    assert _row_of_position(str(caught.value)) == POISON


def test_a_collator_error_names_the_dataset_row(tmp_path, tiny_model) -> None:
    from soft_infonce.integrations.hf.collator import BiEncoderCollator

    inner = BiEncoderCollator(tiny_model.tokenizer, 16, 16)

    def collator(features):
        for i, feature in enumerate(features):
            if feature["query"].startswith("poison"):
                raise ValueError(f"features[{i}] cannot be scored")
        return inner(features)

    args = make_args(tmp_path, max_steps=8, eval_strategy="no", save_strategy="no",
                     load_best_model_at_end=False)  # fmt: skip
    trainer = SoftInfoNCETrainer(
        tiny_model, args, train_dataset=_poisoned(), data_collator=collator
    )
    with pytest.raises(ValueError, match="cannot be scored") as caught:
        trainer.train()
    assert _row_of_position(str(caught.value)) == POISON
    assert "dataset_row" not in trainer.train_dataset.column_names  # the user's dataset as given


@pytest.mark.parametrize(
    ("rows", "batch", "drop_last", "message"),
    [(64, 4, False, r"per_device_train_batch_size=4 gives each batch 4 candidates per query, "
                    r"but SoftInfoNCELoss with alpha=1.5 and beta=0.5 needs at least 5"),
     (66, 8, False, r"the last batch of an epoch \(2 rows\) 2 candidates"),
     (66, 8, True, None), (65, 5, False, None)],
)  # fmt: skip
def test_a_batch_too_small_for_the_preset_fails_before_training(
    tmp_path, tiny_model, rows, batch, drop_last, message
) -> None:
    args = make_args(tmp_path, per_device_train_batch_size=batch, dataloader_drop_last=drop_last,
                     eval_strategy="no", load_best_model_at_end=False)  # fmt: skip
    build = lambda: SoftInfoNCETrainer(tiny_model, args, train_dataset=make_pairs(rows, seed=2))  # noqa: E731
    if message is None:
        assert build().loss_fn.min_candidates == 5
        return
    with pytest.raises(ValueError, match=message):
        build()


def test_the_train_loss_after_a_resume_covers_the_whole_run(tmp_path, tiny_model) -> None:
    import copy

    train = make_pairs(64, seed=3)
    initial = copy.deepcopy(tiny_model.state_dict())
    settings = dict(load_best_model_at_end=False, save_total_limit=None, eval_strategy="no")
    full = SoftInfoNCETrainer(
        tiny_model, make_args(tmp_path / "a", **settings), train_dataset=train
    )
    expected = full.train().training_loss  # the mean over steps 1-6
    tiny_model.load_state_dict(initial)
    args = make_args(tmp_path / "b", **settings)
    SoftInfoNCETrainer(tiny_model, args, train_dataset=train, callbacks=[StopAt(3)]).train()
    tiny_model.load_state_dict(initial)
    resumed = SoftInfoNCETrainer(tiny_model, args, train_dataset=train)
    output = resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-3"))
    assert output.training_loss == pytest.approx(expected, rel=1e-5)
    assert output.metrics["train_loss"] == pytest.approx(expected, rel=1e-5)
    logged = [entry["train_loss"] for entry in resumed.state.log_history if "train_loss" in entry]
    assert logged[-1] == pytest.approx(expected, rel=1e-5)
