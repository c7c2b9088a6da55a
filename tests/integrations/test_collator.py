from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from soft_infonce.integrations.hf.collator import BiEncoderCollator, tokenize_texts
from soft_infonce.integrations.hf.modeling.layouts import PlainLayout

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<encoder-only>"]
VOCAB += ["sort", "a", "list", "def", "f", "(", "x", ")", ":", "return", "sorted"]
ID = {token: i for i, token in enumerate(VOCAB)}
PAD, CLS, SEP, MODE = ID["[PAD]"], ID["[CLS]"], ID["[SEP]"], ID["<encoder-only>"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import BertTokenizer  # transformers 5: the tokenizers-backed class

    return BertTokenizer(vocab=dict(ID))


def ids(text: str) -> list[int]:
    return [ID[token] for token in text.split()]


def test_plain_layout_matches_hand_ids(tokenizer):
    batch = tokenize_texts(tokenizer, ["sort a list", "return x"], max_length=16)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_ids"].tolist() == [
        [CLS, *ids("sort a list"), SEP],
        [CLS, *ids("return x"), SEP, PAD],
    ]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_plain_layout_truncates(tokenizer):
    batch = tokenize_texts(tokenizer, ["def f ( x ) : return sorted ( x )"], max_length=5)
    assert batch["input_ids"].tolist() == [[CLS, *ids("def f ("), SEP]]


def test_unixcoder_layout_token_by_token(tokenizer):
    batch = tokenize_texts(
        tokenizer, ["sort a list", "return x", "def f ( x ) : return"], 8, "unixcoder"
    )
    # [cls] <encoder-only> [sep] + at most 8 - 4 = 4 tokens + [sep], padded to the longest row
    assert batch["input_ids"].tolist() == [
        [CLS, MODE, SEP, *ids("sort a list"), SEP, PAD],
        [CLS, MODE, SEP, *ids("return x"), SEP, PAD, PAD],
        [CLS, MODE, SEP, *ids("def f ( x"), SEP],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ]


def test_unixcoder_layout_needs_its_mode_token():
    from transformers import BertTokenizer

    plain = BertTokenizer(vocab={t: i for i, t in enumerate(VOCAB) if t != "<encoder-only>"})
    with pytest.raises(ValueError, match="<encoder-only>"):
        tokenize_texts(plain, ["sort"], 8, "unixcoder")


@pytest.mark.parametrize(
    ("texts", "max_length", "layout", "message"),
    [
        ([], 8, "plain", "texts must be a non-empty"),
        ("sort", 8, "plain", "texts must be a non-empty"),
        (["sort"], 0, "plain", "max_length must be an int >= 1"),
        (["sort"], 3, "unixcoder", "max_length must be an int >= 4"),
        (["sort"], 8, "roberta", "input_layout must be one of"),
    ],
)
def test_tokenize_texts_checks_arguments(tokenizer, texts, max_length, layout, message):
    with pytest.raises(ValueError, match=message):
        tokenize_texts(tokenizer, texts, max_length, layout)


def test_collator_batch(tokenizer):
    collator = BiEncoderCollator(tokenizer, max_query_length=4, max_code_length=6)
    features = [
        {"query": "sort a list", "code": "def f ( x ) : return sorted ( x )", "url": "u0", "id": 3},
        {"query": "x", "code": "return x", "url": "u1", "id": 4, "tokens": ["x"], "w": 0.5},
    ]
    batch = collator(features)
    assert batch["query_input_ids"].tolist() == [
        [CLS, *ids("sort a"), SEP],
        [CLS, ID["x"], SEP, PAD],
    ]
    assert batch["code_input_ids"].shape == (2, 6)
    assert batch["code_input_ids"][0].tolist() == [CLS, *ids("def f ( x"), SEP]
    assert batch["code_attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert batch["queries"] == ["sort a list", "x"]
    assert batch["codes"] == [f["code"] for f in features]  # raw, untruncated
    assert batch["url"] == ["u0", "u1"] and batch["id"] == [3, 4]
    assert "tokens" not in batch and "w" not in batch and "query" not in batch


def test_collator_unixcoder_layout(tokenizer):
    collator = BiEncoderCollator(tokenizer, 6, 6, input_layout="unixcoder")
    batch = collator([{"query": "sort a list", "code": "return x"}])
    assert batch["query_input_ids"].tolist() == [[CLS, MODE, SEP, *ids("sort a"), SEP]]
    assert batch["code_input_ids"].tolist() == [[CLS, MODE, SEP, *ids("return x"), SEP]]


def test_collator_code_side_comes_from_the_layout(tokenizer):
    class Lengths(PlainLayout):
        def tokenize(self, texts, side, max_length):
            if side == "code":
                return {"lengths": torch.tensor([len(c) for c in texts])}
            return super().tokenize(texts, side, max_length)

    batch = BiEncoderCollator(input_layout=Lengths(tokenizer))(
        [{"query": "sort", "code": "abc"}, {"query": "list", "code": "de"}]
    )
    assert batch["code_lengths"].tolist() == [3, 2]
    assert "code_input_ids" not in batch and "query_input_ids" in batch


def test_collator_checks_features_and_arguments(tokenizer):
    collator = BiEncoderCollator(tokenizer)
    with pytest.raises(ValueError, match="non-empty list"):
        collator([])
    with pytest.raises(ValueError, match=r"features\[1\]\['code'\] must be a string, got None"):
        collator([{"query": "a", "code": "b"}, {"query": "a"}])
    with pytest.raises(ValueError, match="max_code_length must be an int >= 1, got 0"):
        BiEncoderCollator(tokenizer, max_code_length=0)
    with pytest.raises(ValueError, match="input_layout"):
        BiEncoderCollator(tokenizer, input_layout="graphcodebert")


def test_collator_in_a_dataloader(tokenizer):
    import datasets

    data = datasets.Dataset.from_dict(
        {"query": ["sort a list", "return x", "a"], "code": ["sorted ( x )", "x", "f"]}
    )
    loader = torch.utils.data.DataLoader(
        data, batch_size=2, collate_fn=BiEncoderCollator(tokenizer)
    )
    batches = list(loader)
    assert [b["queries"] for b in batches] == [["sort a list", "return x"], ["a"]]
    assert batches[1]["code_input_ids"].tolist() == [[CLS, ID["f"], SEP]]


def test_collator_module_is_import_light():
    code = (
        "import sys; import soft_infonce.integrations.hf.collator; "
        "print(sorted(m for m in ('datasets', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def hard_rows() -> list[dict]:
    # Row i: query, positive code, k = 2 negatives and the query paired with each.
    table = [
        ("sort", "def", ["x", "f"], ["a", "list"]),
        ("a", "return", [":", "("], ["x", "f"]),
        ("list", "sorted", [")", "x"], ["f", "a"]),
    ]
    keys = ("query", "code", "negatives", "negative_queries")
    return [dict(zip(keys, row)) for row in table]


def test_hard_negatives_come_column_major_with_their_paired_queries(tokenizer):
    batch = BiEncoderCollator(tokenizer, 8, 8)(hard_rows())
    # N = 3 positives, then the first negative of every row, then the second: M = 3 * (1 + 2).
    order = ["def", "return", "sorted", "x", ":", ")", "f", "(", "x"]
    assert batch["codes"] == order
    assert batch["code_input_ids"].tolist() == [[CLS, ID[code], SEP] for code in order]
    assert batch["candidate_queries"] == ["sort", "a", "list", "a", "x", "f", "list", "f", "a"]
    assert batch["queries"] == ["sort", "a", "list"]
    assert batch["query_input_ids"].shape == (3, 3)
    assert "negatives" not in batch and "negative_queries" not in batch


def test_without_negatives_candidate_queries_are_the_queries(tokenizer):
    rows = [{"query": "sort a", "code": "def f"}, {"query": "list", "code": "x"}]
    batch = BiEncoderCollator(tokenizer)(rows)
    assert batch["candidate_queries"] == batch["queries"] == ["sort a", "list"]
    assert batch["codes"] == ["def f", "x"]
    empty = [dict(row, negatives=[], negative_queries=[]) for row in rows]  # k = 0
    again = BiEncoderCollator(tokenizer)(empty)
    assert again["codes"] == batch["codes"] and again["candidate_queries"] == batch["queries"]
    assert torch.equal(again["code_input_ids"], batch["code_input_ids"])


@pytest.mark.parametrize(
    ("row", "change", "message"),
    [
        (1, {"negatives": ["x"], "negative_queries": ["a"]},
         r"features\[1\]\['negatives'\] must hold k=2 negatives like features\[0\], got 1"),
        (2, {"negative_queries": None},
         r"features\[2\]\['negative_queries'\] must be a list of strings"),
        (0, {"negatives": ["x", 3]}, r"features\[0\]\['negatives'\]\[1\] must be a string, got 3"),
        (1, {"negative_queries": ["x"]},
         r"features\[1\]\['negative_queries'\] must pair one query with each of its 2 negatives"),
    ],
)  # fmt: skip
def test_malformed_hard_negatives_name_the_row(tokenizer, row, change, message):
    rows = hard_rows()
    rows[row] = {**rows[row], **change}
    with pytest.raises(ValueError, match=message):
        BiEncoderCollator(tokenizer)(rows)
    rows = hard_rows()
    del rows[1]["negatives"], rows[1]["negative_queries"]  # a row without the columns
    with pytest.raises(ValueError, match=r"features\[1\]\['negatives'\] must be a list"):
        BiEncoderCollator(tokenizer)(rows)


def test_collator_takes_a_layout_object_and_for_model_uses_the_models(tokenizer):
    from soft_infonce.integrations.hf.modeling import PlainLayout, UniXcoderLayout

    class Reversed(PlainLayout):  # a user's own layout: the collator needs no other change
        name = "reversed"

        def _tokenize(self, texts, side, max_length):
            texts = [" ".join(reversed(t.split())) if side == "query" else t for t in texts]
            return super()._tokenize(texts, side, max_length)

    collator = BiEncoderCollator(input_layout=Reversed(tokenizer))
    batch = collator([{"query": "sort a list", "code": "def f"}])
    assert batch["query_input_ids"].tolist() == [[CLS, *ids("list a sort"), SEP]]
    assert batch["code_input_ids"].tolist() == [[CLS, *ids("def f"), SEP]]
    assert batch["queries"] == ["sort a list"]  # raw texts stay raw

    class Model:
        layout = UniXcoderLayout(tokenizer)

    collator = BiEncoderCollator.for_model(Model(), 6, 6)
    assert collator.layout is Model.layout and collator.input_layout == "unixcoder"
    batch = collator(hard_rows()[:1])
    assert batch["code_input_ids"][1].tolist() == [CLS, MODE, SEP, ID["x"], SEP]
    with pytest.raises(ValueError, match="model must be a BiEncoder"):
        BiEncoderCollator.for_model(object(), 6, 6)
    with pytest.raises(ValueError, match="tokenizer must be given"):
        BiEncoderCollator(None)


def test_graphcodebert_model_batches_hard_negatives_through_its_layout():
    pytest.importorskip("tree_sitter_python")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    import soft_infonce.codesearch.graphcodebert  # noqa: F401  (registers the layout)
    from soft_infonce.integrations.hf.modeling import BiEncoder

    words = ["<s>", "<pad>", "</s>", "<unk>", "@", *"def f g ( a ) : b = + 1 return".split()]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    graph_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, cls_token="<s>", pad_token="<pad>", sep_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip
    torch.manual_seed(0)
    encoder = RobertaModel(RobertaConfig(
        vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=40, pad_token_id=1,
    )).eval()  # fmt: skip
    model = BiEncoder(encoder, graph_tokenizer, pooling="mean", input_layout="graphcodebert",
                      language="python", data_flow_length=4)  # fmt: skip
    rows = [
        {"query": "f", "code": "def f(a):\n    return a", "negatives": ["def g(b):\n    return b"],
         "negative_queries": ["g"]},
        {"query": "g", "code": "def g(a):\n    b = a + 1\n    return b",
         "negatives": ["def f(a):\n    return 1"], "negative_queries": ["f"]},
    ]  # fmt: skip
    batch = BiEncoderCollator.for_model(model, 8, 12)(rows)
    assert batch["code_position_idx"].shape == (4, 12 + 4)  # M = 2 * (1 + 1) codes
    assert batch["code_attention_mask"].shape == (4, 16, 16)
    # Data-flow nodes: a, a in the first code; a, b, a (+ 1, b cut: 13 tokens over the 10 left)
    assert (batch["code_position_idx"] == 0).sum(1).tolist()[:2] == [2, 3]
    assert batch["codes"][2:] == [rows[0]["negatives"][0], rows[1]["negatives"][0]]
    with torch.no_grad():
        queries, codes = model(**{k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
    assert queries.shape == (2, 16) and codes.shape == (4, 16)
    again = model.encode_texts(batch["codes"], side="code", max_length=12)
    torch.testing.assert_close(codes, again, atol=1e-5, rtol=1e-5)
