from __future__ import annotations

import contextlib
import os

import pytest
import torch

pytest.importorskip("transformers")
from transformers import BertConfig, BertModel, BertTokenizer  # noqa: E402

from soft_infonce.estimators.base import WeightEstimator  # noqa: E402
from soft_infonce.gradcache import RandomState, grad_cached_step, split_inputs  # noqa: E402
from soft_infonce.integrations.hf.collator import BiEncoderCollator  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.losses import InfoNCELoss, SoftInfoNCELoss  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = "def return read a json file open load sort list by key in for x y sum max min str".split()
PAIRS = [
    ("read a json file", "def load ( x ) : return json . load ( open ( x ) )"),
    ("sort a list", "def f ( x ) : return sorted ( x )"),
    ("sort a list by key", "def f ( x , k ) : return sorted ( x , key = k )"),
    ("open a file", "def f ( p ) : return open ( p )"),
    ("sum a list", "def f ( x ) : return sum ( x )"),
    ("max of a list", "def f ( x ) : return max ( x )"),
    ("min of a list", "def f ( x ) : return min ( x )"),
    ("read a file", "def f ( p ) : return open ( p ) . read ( )"),
    ("to str", "def f ( x ) : return str ( x )"),
    ("for x in y", "for x in y : sum ( x )"),
]


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOKENIZER = BertTokenizer(
    vocab={t: i for i, t in enumerate(SPECIALS + WORDS + list("(),.:=") + ["sorted", "p"])}
)


class OverlapEstimator(WeightEstimator):
    """Word-overlap (Jaccard) between each query and each code: needs the texts."""

    def similarity(self, queries, codes, candidate_queries=None):
        def jaccard(a: str, b: str) -> float:
            sa, sb = set(a.split()), set(b.split())
            return len(sa & sb) / len(sa | sb)

        return torch.tensor([[jaccard(q, c) for c in codes] for q in queries])


def make_model(dropout: float) -> BiEncoder:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 20, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )  # fmt: skip
    return BiEncoder(BertModel(config), normalize=True, scale=10.0).train()


def make_batch(n: int = 10) -> dict:
    pairs = [{"query": q, "code": c} for q, c in PAIRS[:n]]
    batch = BiEncoderCollator(TOKENIZER, 16, 24)(pairs)
    batch["code_token_type_ids"] = torch.zeros_like(batch["code_input_ids"])
    return batch


def losses() -> dict:
    return {
        "infonce": InfoNCELoss(scale=1.0),
        "soft": SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=0.1, estimator=OverlapEstimator()),
    }


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def chunked_uncached_step(model, loss_fn, batch, chunks: int) -> torch.Tensor:
    """Plain autograd: embed the same chunks in the same order (same dropout draws), one graph."""
    pieces = split_inputs(batch, chunks)
    outputs = [model(**piece) for piece in pieces]
    q = torch.cat([o[0] for o in outputs])
    c = torch.cat([o[1] for o in outputs])
    loss = loss_fn(q, c, queries=batch["queries"], codes=batch["codes"])
    loss.backward()
    return loss.detach()


def assert_same_gradients(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys() and len(actual) > 10
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_random_state_replays_and_restores() -> None:
    torch.manual_seed(3)
    state = RandomState()
    first = torch.rand(4)
    after = torch.rand(4)  # what the generator gives next, outside the replay
    torch.manual_seed(3)
    torch.rand(4)
    with state.replay():
        assert torch.equal(torch.rand(4), first)
    assert torch.equal(torch.rand(4), after)


def test_split_inputs_cuts_both_sides_and_drops_texts() -> None:
    batch = make_batch(10)
    pieces = split_inputs(batch, 3)
    assert [p["query_input_ids"].shape[0] for p in pieces] == [4, 3, 3]
    assert [p["code_token_type_ids"].shape[0] for p in pieces] == [4, 3, 3]
    assert all("queries" not in p and "codes" not in p for p in pieces)
    torch.testing.assert_close(
        torch.cat([p["code_input_ids"] for p in pieces]), batch["code_input_ids"]
    )


@pytest.mark.parametrize("name", ["infonce", "soft"])
def test_matches_full_batch_step_without_dropout(name: str) -> None:
    batch, loss_fn = make_batch(10), losses()[name]
    model = make_model(dropout=0.0)
    q, c = model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
    expected_loss = loss_fn(q, c, queries=batch["queries"], codes=batch["codes"])
    expected_loss.backward()
    expected = gradients(model)
    loss = grad_cached_step(model, loss_fn, batch, mini_batch_size=4)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected_loss.detach(), atol=1e-6, rtol=1e-6)
    assert_same_gradients(gradients(model), expected)


@pytest.mark.parametrize("name", ["infonce", "soft"])
def test_matches_uncached_step_with_dropout_replayed(name: str) -> None:
    batch, loss_fn = make_batch(10), losses()[name]
    model = make_model(dropout=0.1)
    torch.manual_seed(11)
    expected_loss = chunked_uncached_step(model, loss_fn, batch, chunks=3)
    expected, expected_rng = gradients(model), torch.get_rng_state()
    torch.manual_seed(11)
    loss = grad_cached_step(model, loss_fn, batch, mini_batch_size=4)  # 3 chunks: 4, 3, 3
    torch.testing.assert_close(loss, expected_loss, atol=1e-6, rtol=1e-6)
    assert_same_gradients(gradients(model), expected)
    # The generator ends where the uncached step leaves it (the replays are undone).
    assert torch.equal(torch.get_rng_state(), expected_rng)
    # The dropout is real: other masks give other gradients, so the match above is not vacuous.
    torch.manual_seed(12)
    grad_cached_step(model, loss_fn, batch, mini_batch_size=4)
    other = gradients(model)
    assert max((other[k] - expected[k]).abs().max().item() for k in expected) > 1e-3


def test_backward_callable_scales_every_gradient() -> None:
    batch, loss_fn, model = make_batch(8), InfoNCELoss(), make_model(dropout=0.0)
    grad_cached_step(model, loss_fn, batch, mini_batch_size=3)
    plain = gradients(model)
    loss = grad_cached_step(model, loss_fn, batch, 3, backward=lambda t: (t / 4).backward())
    quarter = gradients(model)
    assert loss.item() > 0
    for name in plain:
        torch.testing.assert_close(quarter[name], plain[name] / 4, atol=1e-6, rtol=1e-5)


class SyncRecorder(torch.nn.Module):
    """Stands in for DistributedDataParallel: records whether each forward ran in no_sync."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module, self.in_no_sync, self.calls = module, False, []

    @contextlib.contextmanager
    def no_sync(self):
        self.in_no_sync = True
        try:
            yield
        finally:
            self.in_no_sync = False

    def forward(self, **inputs):
        self.calls.append((torch.is_grad_enabled(), self.in_no_sync))
        return self.module(**inputs)


def test_no_sync_for_every_reforward_but_the_last() -> None:
    model = SyncRecorder(make_model(dropout=0.0))
    grad_cached_step(model, InfoNCELoss(), make_batch(10), mini_batch_size=3)  # 4 chunks
    assert model.calls == [(False, False)] * 4 + [(True, True)] * 3 + [(True, False)]


def test_one_chunk_is_an_ordinary_step() -> None:
    model = SyncRecorder(make_model(dropout=0.0))
    grad_cached_step(model, InfoNCELoss(), make_batch(6), mini_batch_size=6)
    assert model.calls == [(True, False)]


@pytest.mark.parametrize(
    "mini_batch_size, inputs, message",
    [
        (0, None, "mini_batch_size must be an int >= 1, got 0"),
        (True, None, "mini_batch_size must be an int >= 1, got True"),
        (2, {"queries": ["a"]}, "inputs must hold the tensor 'query_input_ids'"),
        (2, [1, 2], "inputs must be the collator's batch dict, got list"),
    ],
)
def test_checks_arguments(mini_batch_size, inputs, message) -> None:
    inputs = make_batch(4) if inputs is None else inputs
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        grad_cached_step(make_model(0.0), InfoNCELoss(), inputs, mini_batch_size)


def test_backward_that_does_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="backward must back-propagate the loss"):
        grad_cached_step(make_model(0.0), InfoNCELoss(), make_batch(4), 2, backward=lambda t: None)


def test_trainer_with_mini_batch_size_matches_the_plain_trainer(tmp_path) -> None:
    """SoftInfoNCETrainer end to end: two SGD steps with gradient accumulation 2, with and
    without gradient caching, reach the same weights and log the same losses."""
    datasets = pytest.importorskip("datasets")
    from soft_infonce.integrations.hf.trainer import (
        SoftInfoNCETrainer,
        SoftInfoNCETrainingArguments,
    )

    def train(mini_batch_size: int | None) -> tuple[dict, list[float]]:
        model = make_model(dropout=0.0)
        model.tokenizer = TOKENIZER
        args = SoftInfoNCETrainingArguments(
            output_dir=str(tmp_path / str(mini_batch_size)), per_device_train_batch_size=5,
            gradient_accumulation_steps=2, learning_rate=0.05, optim="sgd",
            lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, max_steps=2,
            save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
            logging_steps=1, max_query_length=16, max_code_length=24, seed=3,
            mini_batch_size=mini_batch_size, dataloader_drop_last=True,
        )  # fmt: skip
        rows = [{"query": q, "code": c} for q, c in PAIRS] * 2
        trainer = SoftInfoNCETrainer(
            model, args, train_dataset=datasets.Dataset.from_list(rows), loss=losses()["soft"]
        )
        trainer.train()
        logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, logged

    before = {k: v.detach().clone() for k, v in make_model(dropout=0.0).state_dict().items()}
    plain, plain_losses = train(None)
    cached, cached_losses = train(2)  # batches of 5 in chunks of 2, 2, 1
    assert len(plain_losses) == 2
    assert cached_losses == pytest.approx(plain_losses, abs=1e-5)
    for name, value in plain.items():
        torch.testing.assert_close(cached[name], value, atol=1e-5, rtol=1e-5, msg=name)
    assert max((plain[k] - before[k]).abs().max().item() for k in plain) > 1e-3


class PairedQueryOverlap(WeightEstimator):
    """Word overlap of each query with the query paired with each candidate code."""

    requires_candidate_queries = True

    def similarity(self, queries, codes, candidate_queries=None):
        def jaccard(a: str, b: str) -> float:
            sa, sb = set(a.split()), set(b.split())
            return len(sa & sb) / len(sa | sb)

        return torch.tensor([[jaccard(q, p) for p in candidate_queries] for q in queries])


def make_hard_batch(n: int = 6) -> dict:
    """n rows, each with one hard negative: M = 2n candidates, positives first."""
    negative = [(i + 3) % len(PAIRS) for i in range(n)]
    pairs = [{"query": q, "code": c} for q, c in PAIRS[:n]]
    extra = [{"query": PAIRS[j][0], "code": PAIRS[j][1]} for j in negative]
    collate = BiEncoderCollator(TOKENIZER, 16, 24)
    batch, more = collate(pairs), collate(extra)
    for key in ("code_input_ids", "code_attention_mask"):
        width = max(batch[key].shape[1], more[key].shape[1])
        pad = [torch.nn.functional.pad(t[key], (0, width - t[key].shape[1])) for t in (batch, more)]
        batch[key] = torch.cat(pad)
    batch["code_token_type_ids"] = torch.zeros_like(batch["code_input_ids"])
    batch["codes"] = batch["codes"] + more["codes"]
    batch["candidate_queries"] = batch["queries"] + more["queries"]
    return batch


def test_hard_negative_columns_match_the_uncached_step() -> None:
    batch = make_hard_batch(6)
    loss_fn = SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=0.1, estimator=PairedQueryOverlap())
    model = make_model(dropout=0.0)
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    q, c = model(**tensors)
    assert c.shape[0] == 12
    expected_loss = loss_fn.compute_loss_from_embeddings(q, c, batch)
    expected_loss.backward()
    expected = gradients(model)
    loss = grad_cached_step(model, loss_fn, batch, mini_batch_size=4)  # chunks of 3 + 3 rows
    torch.testing.assert_close(loss, expected_loss.detach(), atol=1e-5, rtol=1e-5)
    actual = gradients(model)
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-5, msg=name)
