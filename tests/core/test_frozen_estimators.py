"""Tests of the estimator base classes after the split (issue 10 part 2, issue 12 items 4, 7, 10).

``WeightEstimator`` (interface), ``FrozenEncoderEstimator`` (freezing, device, cache), the
embedding cache's checksum, the trained-model estimator's score scale, and the argument checks.
"""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from soft_infonce.checks import check_int, check_number, check_tensor
from soft_infonce.estimators import EmbeddingCache, FrozenEncoderEstimator, WeightEstimator
from soft_infonce.functional import negative_weights
from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator
from soft_infonce.integrations.sentence_transformers.estimator import EmbeddingEstimator

PACKAGE = Path(__file__).resolve().parents[2] / "soft_infonce" / "estimators"
QUERIES = ["read a json file", "sort a list of numbers", "open a file", "parse a date", "zip it"]
CODES = ["json.load(open(p))", "sorted(xs)", "open(path).close()", "parse(d)", "zip(a, b)"]
TRAINED_PRESET = (1.3, 0.7, 5.0)  # the paper's Table 7, trained-model estimator


class Linear(FrozenEncoderEstimator):
    """Character features through a frozen linear layer with dropout (eval mode matters)."""

    def __init__(self, seed: int = 0, **kwargs) -> None:
        torch.manual_seed(seed)
        super().__init__(nn.Sequential(nn.Linear(8, 6), nn.Dropout(0.5)), **kwargs)
        self.calls = 0

    def encode(self, texts, side):
        self.calls += len(texts)
        rows = [[float(ord(ch) % 11) for ch in (t + " " * 8)[:8]] for t in texts]
        return self.model(torch.tensor(rows))

    def similarity(self, queries, codes, candidate_queries=None):
        return self.embed(queries, "query") @ self.embed(codes, "code").T


# ----------------------------------------------------------------------------- the layout
def test_cache_module_imports_nothing_from_the_estimator_base():
    tree = ast.parse((PACKAGE / "cache.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("soft_infonce.estimators.")} - {
        "soft_infonce.estimators.checks"
    }


def test_the_interface_has_no_cache_or_module_machinery():
    for name in ("embed", "precompute", "save_cache", "load_cache", "to", "device", "__setattr__"):
        assert name not in vars(WeightEstimator), name
    assert WeightEstimator.__abstractmethods__ == frozenset({"similarity"})


def test_similarity_gets_candidate_queries_positionally():
    class New(WeightEstimator):
        def similarity(self, queries, codes, candidate_queries=None):
            return torch.full((len(queries), len(codes)), float(len(candidate_queries)))

    assert torch.equal(New()(["q"], ["a", "b"], ["x", "y"]), torch.full((1, 2), 2.0))

    class TwoArguments(WeightEstimator):  # no adapter: the one signature is the interface
        def similarity(self, queries, codes):
            return torch.ones(len(queries), len(codes))

    with pytest.raises(TypeError, match="positional argument"):
        TwoArguments()(["q"], ["a", "b"], ["x", "y"])


# ----------------------------------------------------------------------------- freezing, device
def test_the_model_is_frozen_explicitly_and_stays_so():
    estimator = Linear()
    model = estimator.model
    assert isinstance(model[1], nn.Dropout) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    model.train()  # the patched train keeps it in eval mode
    assert not model.training
    model[1].training = True  # flipped behind its back, and gradients turned back on
    model.requires_grad_(True)
    first = estimator(QUERIES, CODES)
    assert not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    estimator.clear_cache()
    assert torch.equal(first, estimator(QUERIES, CODES))  # dropout off: same scores
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        estimator.model = "bert"


def test_device_and_to():
    estimator = Linear()
    assert estimator.device == torch.device("cpu")
    assert estimator.to("cpu") is estimator and estimator.device == torch.device("cpu")
    estimator.model = nn.Sequential(nn.Linear(8, 6))  # a new model follows the chosen device
    assert next(estimator.model.parameters()).device.type == "cpu"


def test_a_new_model_drops_the_cache_and_changes_the_identity():
    estimator = Linear()
    estimator(QUERIES, CODES)
    identity = estimator.cache_identity()
    assert estimator.cache_size() == {"query": 5, "code": 5}
    estimator.model = nn.Sequential(nn.Linear(8, 6))
    assert estimator.cache_size() == {"query": 0, "code": 0}
    assert estimator.cache_identity() != identity


# ----------------------------------------------------------------------------- cache checksum
def _overwrite_tensor(path: Path, name: str, values: np.ndarray) -> None:
    """Overwrite the bytes of tensor ``name`` in a safetensors file, in place."""
    raw = bytearray(path.read_bytes())
    (header_size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_size])
    start, end = header[name]["data_offsets"]
    payload = values.astype(np.float32).tobytes()
    assert len(payload) == end - start
    base = 8 + header_size
    raw[base + start : base + end] = payload
    path.write_bytes(bytes(raw))


def test_finite_garbage_in_a_cache_file_is_caught_by_the_checksum(tmp_path):
    from safetensors import safe_open

    writer = Linear()
    expected = writer(QUERIES, CODES)
    path = tmp_path / "cache.safetensors"
    writer.save_cache(path)
    garbage = np.random.default_rng(0).normal(0, 10, size=(5, 6))
    _overwrite_tensor(path, "code.embeddings", garbage)
    with safe_open(str(path), framework="pt") as handle:  # a valid file with finite values
        stored = handle.get_tensor("code.embeddings")
        assert torch.isfinite(stored).all() and torch.allclose(
            stored, torch.tensor(garbage).float()
        )
        assert handle.metadata()["checksum"].startswith("sha256:")
    reader = Linear()
    with pytest.warns(UserWarning, match="checksum .* differs from the stored"):
        assert reader.load_cache(path) == 0
    assert reader.cache_size() == {"query": 0, "code": 0}
    torch.testing.assert_close(reader(QUERIES, CODES), expected)  # recomputed, not garbage
    assert reader.calls == 10


def test_a_cache_of_the_previous_format_is_recomputed(tmp_path):
    from safetensors.torch import save_file

    estimator = Linear()
    keys = torch.zeros(1, 32, dtype=torch.uint8)
    meta = {
        "format": "soft-infonce-embedding-cache",
        "version": "1",  # no checksum
        "model": "x",
        "identity": estimator.cache_identity(),
        "sides": '["query"]',
        "dim.query": "6",
    }
    save_file({"query.keys": keys, "query.embeddings": torch.ones(1, 6)}, str(tmp_path / "a"), meta)
    with pytest.warns(UserWarning, match="not a soft-infonce-embedding-cache v2 file"):
        assert estimator.load_cache(tmp_path / "a") == 0


def test_the_cache_round_trips_without_an_estimator(tmp_path):
    cache = EmbeddingCache(("query",))
    encoded = []

    def encode(texts):
        encoded.extend(texts)
        return torch.tensor([[float(len(t)), 1.0] for t in texts])

    assert cache.precompute(["ab", "abc", "ab"], "query", encode, 8, show_progress=False) == 2
    cache.save(tmp_path / "c", model="m", identity="id")
    again = EmbeddingCache(("query",))
    assert again.load(tmp_path / "c", model="m", identity="id") == 2
    assert torch.equal(again.lookup(["abc"], "query", encode, 8), torch.tensor([[3.0, 1.0]]))
    assert encoded == ["abc", "ab"]  # longest first, each once; the lookup came from the file
    with pytest.raises(TypeError, match="embeddings must be a torch.Tensor, got list"):
        again.store("query").add([b"k" * 32], [[1.0, 2.0]])


# ----------------------------------------------------------------------------- trained-model scale
class ScaledStandIn(nn.Module):
    """A cosine x 20 bi-encoder look-alike: normalised embeddings and ``scale = 20``."""

    def __init__(self, scale=20.0) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.proj = nn.Linear(8, 4)
        self.scale = scale

    def encode_texts(self, texts, side="query", max_length=128, batch_size=64, **_):
        rows = [[float(ord(ch) % 7) for ch in (t + " " * 8)[:8]] for t in texts]
        return F.normalize(self.proj(torch.tensor(rows)), dim=-1)


def test_trained_estimator_scores_on_the_models_scale_and_the_preset_moves_weights():
    model = ScaledStandIn()
    q, c = model.encode_texts(QUERIES), model.encode_texts(CODES, "code")
    cosine = q @ c.T
    estimator = TrainedModelEstimator(model)
    scores = estimator(QUERIES, CODES)
    torch.testing.assert_close(scores, 20.0 * cosine)
    assert estimator.scale == 20.0 and estimator.preset == "trained"
    alpha, beta, t = TRAINED_PRESET
    weights = negative_weights(scores, alpha=alpha, beta=beta, temperature=t)
    off = weights[~torch.eye(5, dtype=torch.bool)]
    flat = negative_weights(cosine, alpha=alpha, beta=beta, temperature=t)[~torch.eye(5).bool()]
    # t = 5 on the raw cosine barely moves a weight (the old behaviour: InfoNCE in all but name)
    assert (flat - 1).abs().max() < 0.06
    # on the model's own scale it does
    assert off.max() - off.min() > 0.3, off
    mask = torch.eye(5, dtype=torch.bool)
    assert (weights[~mask] < 0.9).any() and torch.equal(weights[mask], torch.ones(5))
    learnt = ScaledStandIn(scale=nn.Parameter(torch.tensor(20.0)))  # a learnt scale
    torch.testing.assert_close(TrainedModelEstimator(learnt)(QUERIES, CODES), scores)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0.0, -1.0, "20"])
def test_trained_estimator_refuses_a_model_scale_that_is_not_a_positive_number(bad):
    model = ScaledStandIn(scale=bad)
    error = TypeError if isinstance(bad, str) else ValueError
    with pytest.raises(error, match=r"ScaledStandIn\.scale must"):
        TrainedModelEstimator(model)


# ----------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 2.0}, TypeError, "batch_size must be a positive int, got float"),
        ({"batch_size": True}, TypeError, "batch_size must be a positive int, got bool"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ({"max_code_length": float("inf")}, TypeError, "max_code_length must be a positive int"),
        ({"cache": 1}, TypeError, "cache must be a bool, got int"),
        ({"similarity": "l2"}, ValueError, "similarity must be one of"),
    ],
)
def test_trained_estimator_numbers_are_checked_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        TrainedModelEstimator(ScaledStandIn(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 3.5}, "batch_size must be a positive int, got float"),
        ({"cache": "yes"}, "cache must be a bool, got str"),
        ({"local_files_only": None}, "local_files_only must be a bool, got NoneType"),
    ],
)
def test_embedding_estimator_settings_are_checked_before_loading(kwargs, message):
    with pytest.raises(TypeError, match=message):
        EmbeddingEstimator("no/such/model", **kwargs)


def test_wrong_types_are_type_errors_and_value_errors():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        check_int("batch_size", True)
    with pytest.raises(ValueError, match=r"t must be > 0, got 0"):
        check_number("t", 0, low=0.0, low_open=True)
    with pytest.raises(ValueError, match="t must be a finite number, got nan"):
        check_number("t", float("nan"))
    with pytest.raises(TypeError, match="scores must be a torch.Tensor, got list"):
        check_tensor("scores", [[1.0]])
    with pytest.raises(ValueError, match="scores must be a torch.Tensor, got list"):
        check_tensor("scores", [[1.0]])


def test_an_encode_that_returns_a_list_is_a_type_error_naming_encode():
    class Lists(Linear):
        def encode(self, texts, side):
            return [[0.0] * 6 for _ in texts]

    with pytest.raises(TypeError, match="Lists.encode must return a torch.Tensor, got list"):
        Lists()(QUERIES, CODES)


# ----------------------------------------------------------------------------- the call's contract
def _estimators() -> list[WeightEstimator]:
    from soft_infonce.estimators import BM25Estimator, PositiveAwareEstimator, UniformEstimator

    return [
        UniformEstimator(),
        BM25Estimator("query-query"),
        BM25Estimator("query-code"),
        PositiveAwareEstimator(BM25Estimator("query-code")),
        Linear(),
    ]


ESTIMATORS = _estimators()
text = st.one_of(
    st.text(min_size=0, max_size=12),
    st.sampled_from(["  ", "\n", "read a file", "def f(): pass"]),
    st.integers(),
    st.none(),
)
argument = st.one_of(st.lists(text, max_size=5), st.text(max_size=5), st.none(), st.integers())


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(0, len(ESTIMATORS) - 1),
    queries=argument,
    codes=argument,
    candidate_queries=st.one_of(st.none(), argument),
)
def test_a_call_gives_finite_scores_or_an_error_naming_the_argument(
    index, queries, codes, candidate_queries
):
    estimator = ESTIMATORS[index]
    try:
        scores = estimator(queries, codes, candidate_queries)
    except (ValueError, TypeError) as error:
        assert any(name in str(error) for name in ("queries", "codes", "candidate_queries"))
        return
    assert scores.shape == (len(queries), len(codes)) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
