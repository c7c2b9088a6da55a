"""SoftInfoNCETrainer end to end on a tiny random BERT: loss, logging, selection, resume."""

from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
datasets = pytest.importorskip("datasets")
from helpers.tiny_vocab import bert_vocab  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast, TrainerCallback  # noqa: E402

from soft_infonce import SoftInfoNCELoss  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.trainer import (  # noqa: E402
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
    build_loss,
)

VERBS = "read write sort parse open close load save split join count find".split()
NOUNS = "file list json string number line table key value path url name".split()
CODE_WORDS = [f"v{i}" for i in range(len(VERBS))] + [f"n{i}" for i in range(len(NOUNS))]


def make_pairs(n: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
        # the code side speaks its own vocabulary: only training can match the two sides
        code = f"def v{VERBS.index(verb)} _ n{NOUNS.index(noun)} ( x ) : return x"
        rows.append({"query": f"{verb} a {noun}", "code": code, "url": f"u{i}"})
    return datasets.Dataset.from_list(rows)


@pytest.fixture()
def tiny_model(tmp_path) -> BiEncoder:
    vocab = bert_vocab(*VERBS, *NOUNS, *CODE_WORDS)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))  # transformers 5: positional
    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    )
    return BiEncoder(encoder, tokenizer, pooling="mean", normalize=True, scale=20.0)


def make_args(tmp_path, **overrides) -> SoftInfoNCETrainingArguments:
    settings = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=5e-4,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=3,
        save_strategy="steps",
        save_steps=3,
        logging_steps=1,
        report_to="none",
        seed=7,
        loss="soft",
        estimator="bm25",
        max_query_length=16,
        max_code_length=16,
        metric_for_best_model="mrr",
        load_best_model_at_end=True,
        disable_tqdm=True,
        use_cpu=True,
    )
    settings.update(overrides)
    return SoftInfoNCETrainingArguments(**settings)


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="loss must be one of"):
        make_args(tmp_path, loss="triplet")
    with pytest.raises(ValueError, match="estimator must be one of"):
        make_args(tmp_path, estimator="tfidf")
    with pytest.raises(ValueError, match="estimator_model"):
        make_args(tmp_path, estimator="trained")
    assert make_args(tmp_path).dataloader_drop_last, "in-batch negatives need full batches"


def test_build_loss_uses_the_estimator_preset(tmp_path):
    loss = build_loss(make_args(tmp_path, estimator="bm25"))
    assert isinstance(loss, SoftInfoNCELoss)
    assert (loss.alpha, loss.beta, loss.temperature) == (1.5, 0.5, 1.0)
    loss = build_loss(make_args(tmp_path, estimator="uniform", alpha=1.1, temperature=0.3))
    assert (loss.alpha, loss.beta, loss.temperature) == (1.1, 0.7, 0.3)


def test_compute_loss_equals_the_loss_on_the_model_embeddings(tmp_path, tiny_model):
    args = make_args(tmp_path, eval_strategy="no", load_best_model_at_end=False)
    train = make_pairs(16, seed=0)
    trainer = SoftInfoNCETrainer(tiny_model, args, train_dataset=train)
    batch = trainer.data_collator([train[i] for i in range(8)])
    tiny_model.eval()  # no dropout, so both paths see the same network
    loss = trainer.compute_loss(tiny_model, batch, num_items_in_batch=8)
    q = tiny_model.encode_texts(batch["queries"], side="query", max_length=16)
    c = tiny_model.encode_texts(batch["codes"], side="code", max_length=16)
    ref = trainer.loss_fn(q, c, queries=batch["queries"], codes=batch["codes"])
    assert abs(loss.item() - ref.item()) < 1e-4


def test_training_logs_weights_selects_on_validation_and_learns(tmp_path, tiny_model):
    train, valid = make_pairs(64, seed=1), make_pairs(24, seed=2)
    args = make_args(tmp_path, max_steps=12, eval_steps=4, save_steps=4, learning_rate=2e-3)
    trainer = SoftInfoNCETrainer(tiny_model, args, train_dataset=train, eval_dataset=valid)
    before = trainer.evaluate()["eval_mrr"]
    trainer.train()
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_mrr" in h and h.get("step", 0) > 0]
    assert train_logs and all(
        "q2c/weight_mean" in h and "q2c/weight_clamped" in h for h in train_logs
    )
    assert all(
        0.1 <= h["q2c/weight_min"] <= h["q2c/weight_mean"] <= h["q2c/weight_max"]
        for h in train_logs
    )
    best = max(e["eval_mrr"] for e in evals)
    assert trainer.state.best_metric == pytest.approx(best)
    assert trainer.evaluate()["eval_mrr"] == pytest.approx(best, abs=1e-6)  # best reloaded
    assert best > before


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


@pytest.mark.parametrize("how", ["path", "last complete"])
def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path, tiny_model, how):
    import copy
    import shutil

    train, valid = make_pairs(64, seed=3), make_pairs(16, seed=4)
    initial = copy.deepcopy(tiny_model.state_dict())
    settings = dict(load_best_model_at_end=False, save_total_limit=None, max_steps=6)

    full = SoftInfoNCETrainer(
        tiny_model, make_args(tmp_path / "a", **settings), train_dataset=train, eval_dataset=valid
    )
    full.train()
    expected = full.evaluate()

    tiny_model.load_state_dict(initial)
    broken = SoftInfoNCETrainer(
        tiny_model,
        make_args(tmp_path / "b", **settings),
        train_dataset=train,
        eval_dataset=valid,
        callbacks=[StopAt(3)],
    )
    broken.train()
    assert broken.state.global_step == 3
    tiny_model.load_state_dict(initial)  # the resumed run must restore everything itself
    resumed = SoftInfoNCETrainer(
        tiny_model, make_args(tmp_path / "b", **settings), train_dataset=train, eval_dataset=valid
    )
    out = tmp_path / "b" / "out"
    if how == "path":
        resumed.train(resume_from_checkpoint=str(out / "checkpoint-3"))
    else:  # a later checkpoint whose write was killed before trainer_state.json
        shutil.copytree(out / "checkpoint-3", out / "checkpoint-5")
        (out / "checkpoint-5" / "trainer_state.json").unlink()
        resumed.train(resume_from_checkpoint=True)
        assert (out / "incomplete-checkpoint-5").is_dir()  # set aside, not deleted
    got = resumed.evaluate()
    assert got["eval_mrr"] == pytest.approx(expected["eval_mrr"], abs=1e-6)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_extra_columns_survive_and_are_dropped(tmp_path, tiny_model):
    train = make_pairs(16, seed=5).add_column("language", ["python"] * 16)
    trainer = SoftInfoNCETrainer(
        tiny_model,
        make_args(
            tmp_path,
            max_steps=1,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
        ),
        train_dataset=train,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["queries"] and batch["codes"]
    assert "language" not in batch
    trainer.train()


def test_trained_estimator_keeps_the_papers_temperature(tmp_path, tiny_model):
    """The trained-model estimator scores on the frozen model's own scale (scale * q . c), so
    the paper's t = 5 applies as is, the same in every face (no per-face rescaling)."""
    from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator

    args = make_args(tmp_path, estimator="trained", estimator_model="unused")
    loss = build_loss(args, TrainedModelEstimator(tiny_model))
    assert (loss.alpha, loss.beta, loss.temperature) == (1.3, 0.7, 5.0)
    loss = build_loss(
        make_args(tmp_path, estimator="trained", estimator_model="unused", temperature=2.0),
        TrainedModelEstimator(tiny_model),
    )
    assert loss.temperature == 2.0


def test_graphcodebert_inputs_flow_through_collator_trainer_and_encode_texts(tmp_path):
    pytest.importorskip("tree_sitter_python")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    import soft_infonce.codesearch.graphcodebert  # noqa: F401  (registers the layout)

    words = ["def", "(", ")", ":", "return", "x", "=", "+", "1", "a", "a b", *VERBS, *NOUNS]
    vocab = {w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        cls_token="<s>",
        pad_token="<pad>",
        sep_token="</s>",
        unk_token="<unk>",
    )
    torch.manual_seed(0)
    encoder = RobertaModel(
        RobertaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            pad_token_id=1,
        )
    )
    model = BiEncoder(
        encoder,
        tokenizer,
        pooling="mean",
        normalize=True,
        scale=20.0,
        input_layout="graphcodebert",
        language="python",
        data_flow_length=8,
    )
    rng = random.Random(0)
    rows = [
        {"query": f"{v} a {n}", "code": f"def {v}(x):\n    {n} = x + 1\n    return {n}"}
        for v, n in ((rng.choice(VERBS), rng.choice(NOUNS)) for _ in range(16))
    ]
    train = datasets.Dataset.from_list(rows)
    args = make_args(
        tmp_path,
        max_steps=2,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        per_device_train_batch_size=8,
    )
    trainer = SoftInfoNCETrainer(model, args, train_dataset=train)
    batch = next(iter(trainer.get_train_dataloader()))
    length = 16 + 8  # code tokens + data-flow nodes
    assert batch["code_position_idx"].shape == (8, length)
    assert batch["code_attention_mask"].shape == (8, length, length)
    assert (batch["code_position_idx"] == 0).any(), "the data-flow nodes are in the batch"
    trainer.train()
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])
    # evaluation embeds code the same way as training does
    model.eval()
    q, c = model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
    again = model.encode_texts(batch["codes"], side="code", max_length=16)
    assert torch.allclose(c, again, atol=1e-5)
    model.save_pretrained(tmp_path / "saved")
    loaded = BiEncoder.from_pretrained(tmp_path / "saved")
    assert (loaded.input_layout, loaded.language, loaded.data_flow_length) == (
        "graphcodebert",
        "python",
        8,
    )


@pytest.mark.parametrize(
    "rows,match", [(5, "5 rows, fewer than one global batch of 8"), (0, "empty")]
)
def test_a_train_set_smaller_than_one_batch_is_refused_before_any_work(
    tmp_path, tiny_model, rows, match
):
    train = make_pairs(max(rows, 1), seed=0).select(range(rows))
    with pytest.raises(ValueError, match=match):
        SoftInfoNCETrainer(tiny_model, make_args(tmp_path), train_dataset=train)
    assert not (tmp_path / "out").exists()


def test_compute_loss_passes_hard_negatives_and_their_queries(tmp_path, tiny_model):
    from soft_infonce import WeightEstimator

    class Recorder(WeightEstimator):
        preset = "bm25"
        calls: list = []

        def similarity(self, queries, codes, candidate_queries=None):
            type(self).calls.append((list(queries), list(codes), candidate_queries))
            return torch.rand(len(queries), len(codes))

    args = make_args(tmp_path, eval_strategy="no", load_best_model_at_end=False)
    train = make_pairs(16, seed=0)
    trainer = SoftInfoNCETrainer(tiny_model, args, train_dataset=train, estimator=Recorder())
    rows = [train[i] for i in range(8)]
    batch = trainer.data_collator(rows)
    negatives = trainer.data_collator([train[8 + i] for i in range(8)])
    hard = {
        k: torch.cat([batch[k], negatives[k]])
        for k in batch
        if k.startswith("code_") and isinstance(batch[k], torch.Tensor)
    }
    hard.update({k: v for k, v in batch.items() if k.startswith("query_")})
    hard.update(
        queries=batch["queries"],
        codes=batch["codes"] + negatives["codes"],
        candidate_queries=batch["queries"] + negatives["queries"],
    )
    tiny_model.eval()
    loss = trainer.compute_loss(tiny_model, hard)
    queries, codes, paired = Recorder.calls[-1]
    assert (queries, codes, paired) == (hard["queries"], hard["codes"], hard["candidate_queries"])
    q = tiny_model.encode_texts(hard["queries"], side="query", max_length=16)
    c = tiny_model.encode_texts(hard["codes"], side="code", max_length=16)
    assert c.shape[0] == 16
    torch.manual_seed(0)
    sim = torch.rand(8, 16)
    ref = trainer.loss_fn(q, c, sim)
    torch.manual_seed(0)
    loss = trainer.compute_loss(tiny_model, hard)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-4)


def test_checkpoints_load_with_from_pretrained(tmp_path, tiny_model):
    train, valid = make_pairs(32, seed=1), make_pairs(16, seed=2)
    args = make_args(tmp_path, max_steps=4, eval_steps=2, save_steps=2)
    trainer = SoftInfoNCETrainer(tiny_model, args, train_dataset=train, eval_dataset=valid)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-4"
    loaded = BiEncoder.from_pretrained(checkpoint)
    assert (tmp_path / "out" / "checkpoint-4" / "bi_encoder.json").exists()
    queries = ["read a file", "sort a list"]
    tiny_model.eval()
    trainer.state.best_model_checkpoint = str(checkpoint)
    trainer._load_best_model()  # the Trainer's own reader takes our checkpoint format
    expected = tiny_model.encode_texts(queries, side="query", max_length=16)
    got = loaded.encode_texts(queries, side="query", max_length=16)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    trainer.save_model(str(tmp_path / "final"))
    final = BiEncoder.from_pretrained(tmp_path / "final")
    torch.testing.assert_close(
        final.encode_texts(queries, side="query", max_length=16), expected, atol=1e-5, rtol=1e-5
    )


def test_help_lists_the_choices():
    from transformers import HfArgumentParser

    from soft_infonce.integrations.hf.training_args import (
        SoftInfoNCETrainingArguments as FromModule,
    )

    assert FromModule is SoftInfoNCETrainingArguments
    text = HfArgumentParser(SoftInfoNCETrainingArguments).format_help()
    assert "false_negative_cancellation" in text and "simcse" in text and "threshold" in text


@pytest.mark.parametrize(
    ("column", "value", "row"),
    [("query", "   ", 5), ("code", "", 9), ("negatives", ["def f(): pass", " "], 2)],
)
def test_a_blank_text_is_refused_before_training_naming_the_row(
    tmp_path, tiny_model, column, value, row
):
    train = make_pairs(16, seed=11)
    if column == "negatives":
        train = train.add_column("negatives", [["def g(): pass", "def h(): pass"]] * 16)
        train = train.add_column("negative_queries", [["g", "h"]] * 16)
    rows = train.to_list()
    rows[row][column] = value
    broken = datasets.Dataset.from_list(rows)
    with pytest.raises(ValueError, match=rf"train_dataset row {row}: '{column}'"):
        SoftInfoNCETrainer(tiny_model, make_args(tmp_path), train_dataset=broken)


@pytest.mark.parametrize(
    ("negatives", "queries", "message"),
    [
        ({4: ["def g(): pass"]}, {4: ["g"]}, "train_dataset row 4: 1 negatives, row 0 has 2"),
        ({}, {7: ["g"]}, "train_dataset row 7: 2 negatives but 1 negative_queries"),
        (None, {}, "train_dataset has ['negatives'] but no ['negative_queries']"),
    ],
)
def test_ragged_or_unpaired_hard_negatives_are_refused_naming_the_row(
    tmp_path, tiny_model, negatives, queries, message
):
    """The collator stacks negatives column by column: a row with another k, or negatives
    without one paired query each, must fail before training with the dataset row, not with a
    batch index."""
    rows = make_pairs(16, seed=11).to_list()
    for i, row in enumerate(rows):
        row["negatives"] = (negatives or {}).get(i, ["def g(): pass", "def h(): pass"])
        row["negative_queries"] = queries.get(i, ["g", "h"])
        if negatives is None:
            del row["negative_queries"]
    broken = datasets.Dataset.from_list(rows)
    with pytest.raises(ValueError, match=re.escape(message)):
        SoftInfoNCETrainer(tiny_model, make_args(tmp_path), train_dataset=broken)


def test_pin_memory_is_off_without_cuda(tmp_path):
    args = make_args(tmp_path)
    assert args.dataloader_pin_memory is torch.cuda.is_available()
