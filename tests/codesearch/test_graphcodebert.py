"""GraphCodeBERT inputs: hand-checked data-flow graphs, the attention-mask rules, a forward pass.

The expected tokens and edges below were written by hand from reading each snippet: tokens are
the leaves in source order without comments; ``(name, token index, relation, source indices)``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("tree_sitter")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from soft_infonce.codesearch.graphcodebert import (  # noqa: E402
    GraphCodeBERTFeaturizer,
    UnsupportedCode,
    extract_dataflow,
    graphcodebert_encode,
)

C, D = "computedFrom", "comesFrom"

CASES = {
    "python": (
        "def total(xs, start=0):\n    # sum the items\n    s = start\n    for x in xs:\n"
        "        s += x\n    return s\n",
        "def total ( xs , start = 0 ) : s = start for x in xs : s += x return s",
        [
            ("xs", 3, D, []),
            ("start", 5, C, [7]),
            ("0", 7, D, []),
            ("s", 10, C, [12]),
            ("start", 12, D, [5]),
            ("x", 14, C, [16]),
            ("xs", 16, D, [3]),
            ("s", 18, C, [10, 18, 20]),
            ("x", 20, D, [14]),
            ("s", 22, D, [10, 18]),
        ],
    ),
    "java": (
        "int max(int[] a) {\n    int m = a[0]; // first\n    for (int v : a) {\n"
        "        if (v > m) { m = v; }\n    }\n    return m;\n}\n",
        "int max ( int [ ] a ) { int m = a [ 0 ] ; for ( int v : a ) { if ( v > m ) { m = v ; } } "
        "return m ; }",
        [
            ("a", 6, D, []),
            ("m", 10, C, [12, 14]),
            ("a", 12, D, [6]),
            ("0", 14, D, []),
            ("v", 20, C, [22]),
            ("a", 22, D, [6]),
            ("v", 27, D, [20]),
            ("m", 29, D, [10, 32]),
            ("m", 32, C, [34]),
            ("v", 34, D, [20]),
            ("m", 39, D, [10, 32]),
        ],
    ),
    "javascript": (
        'function greet(name) {\n  /* build it */\n  let msg = "hi " + name;\n'
        '  if (!name) msg = "hi";\n  return msg;\n}\n',
        None,  # '"hi "' holds a space; checked below
        [
            ("name", 3, D, []),
            ("msg", 7, C, [9, 11]),
            ('"hi "', 9, D, []),
            ("name", 11, D, [3]),
            ("name", 16, D, [3]),
            ("msg", 18, C, [20]),
            ('"hi"', 20, D, []),
            ("msg", 23, D, [7, 18]),
        ],
    ),
    "php": (
        "function inc($n) {\n    # add one\n    $n = $n + 1;\n    return $n;\n}",
        "<?php function inc ( $ n ) { $ n = $ n + 1 ; return $ n ; } ?>",
        [
            ("n", 5, D, []),
            ("n", 9, C, [12, 14]),
            ("n", 12, D, [5]),
            ("1", 14, D, []),
            ("n", 18, D, [9]),
        ],
    ),
    "go": (
        "func sum(xs []int) int {\n\t// accumulate\n\tt := 0\n\tfor _, x := range xs {\n"
        "\t\tt += x\n\t}\n\treturn t\n}\n",
        "func sum ( xs [ ] int ) int { t := 0 for _ , x := range xs { t += x } return t }",
        [
            ("xs", 3, D, []),
            ("t", 10, C, [12]),
            ("0", 12, D, []),
            ("_", 14, C, [19]),
            ("x", 16, C, [19]),
            ("xs", 19, D, [3]),
            ("t", 21, C, [10, 21, 23]),
            ("x", 23, D, [16]),
            ("t", 26, D, [10, 21]),
        ],
    ),
    "ruby": (
        "def fact(n)\n  # iterative\n  r = 1\n  while n > 1\n    r *= n\n    n -= 1\n  end\n"
        "  r\nend\n",
        "def fact ( n ) r = 1 while n > 1 r *= n n -= 1 end r end",
        [
            ("n", 3, D, []),
            ("r", 5, C, [7]),
            ("1", 7, D, []),
            ("n", 9, D, [3, 15]),
            ("r", 12, C, [5, 12, 14]),
            ("n", 14, D, [3, 15]),
            ("n", 15, C, [3, 15, 17]),
            ("1", 17, D, []),
            ("r", 19, D, [5, 12]),
        ],
    ),
}


def _as_tuples(edges):
    return [(e.name, e.token_index, e.relation, e.source_indices) for e in edges]


@pytest.mark.parametrize("language", sorted(CASES))
def test_dataflow_matches_hand_checked_graph(language):
    code, expected_tokens, expected_edges = CASES[language]
    tokens, edges = extract_dataflow(code, language)
    if expected_tokens is not None:
        assert tokens == expected_tokens.split(" ")
    assert _as_tuples(edges) == expected_edges
    for edge in edges:  # source names follow the source indices
        assert edge.sources == [tokens[i] for i in edge.source_indices]
        assert edge.name == tokens[edge.token_index]


def test_javascript_tokens_keep_string_literals_whole():
    tokens, _ = extract_dataflow(CASES["javascript"][0], "javascript")
    assert tokens[6:13] == ["let", "msg", "=", '"hi "', "+", "name", ";"]
    assert len(tokens) == 26 and "/* build it */" not in tokens


def test_python_pairs_tuple_assignment_merges_branches_and_drops_docstring():
    code = (
        'def swap(a, b):\n    """Swap."""\n    a, b = b, a\n    if a:\n        b = 0\n'
        "    else:\n        b = 1\n    return b\n"
    )
    tokens, edges = extract_dataflow(code, "python")
    assert tokens[:9] == ["def", "swap", "(", "a", ",", "b", ")", ":", "a"]
    assert _as_tuples(edges) == [
        ("a", 3, D, []), ("b", 5, D, []), ("a", 8, C, [12]), ("b", 10, C, [14]),
        ("b", 12, D, [5]), ("a", 14, D, [3]), ("a", 16, D, [8]), ("b", 18, C, [20]),
        ("0", 20, D, []), ("b", 23, C, [25]), ("1", 25, D, []), ("b", 27, D, [18, 23]),
    ]  # fmt: skip


def test_c_style_for_runs_its_initializer_once_and_switch_cases_merge():
    code = (
        "int f(int n) {\n    int s = 0;\n    for (int i = 0; i < n; i++) s += i;\n"
        "    switch (n) { case 1: s = 1; break; default: s = 2; }\n    return s;\n}\n"
    )
    tokens, edges = extract_dataflow(code, "java")
    assert tokens[12:30] == "for ( int i = 0 ; i < n ; i ++ ) s += i ;".split()
    assert tokens[51:] == ["return", "s", ";", "}"]
    assert _as_tuples(edges) == [
        ("n", 4, D, []), ("s", 8, C, [10]), ("0", 10, D, []), ("i", 15, C, [17]),
        ("0", 17, D, []), ("i", 19, D, [15, 23]), ("n", 21, D, [4]), ("i", 23, C, [15, 23]),
        ("s", 26, C, [8, 26, 28]), ("i", 28, D, [15, 23]), ("n", 32, D, [4]),
        ("s", 38, C, [40]), ("1", 40, D, []), ("s", 46, C, [48]), ("2", 48, D, []),
        ("s", 52, D, [8, 26, 38, 46]),
    ]  # fmt: skip


def test_php_foreach_binds_key_and_value_from_the_iterable():
    code = "function f($a) { foreach ($a as $k => $v) { $x = $v; } return $x; }"
    tokens, edges = extract_dataflow(code, "php")
    assert tokens[8:19] == ["foreach", "(", "$", "a", "as", "$", "k", "=>", "$", "v", ")"]
    assert _as_tuples(edges) == [
        ("a", 5, D, []), ("a", 11, D, [5]), ("k", 14, C, [11]), ("v", 17, C, [11]),
        ("x", 21, C, [24]), ("v", 24, D, [17]), ("x", 29, D, [21]),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "language"),
    [
        ("", "python"),
        ("   # only a comment\n", "python"),
        (")))((( ]]]", "java"),
        ("x = " + "(" * 3000 + "1" + ")" * 3000, "python"),
    ],
)
def test_unsupported_code_raises_a_value_error_subclass(code, language):
    with pytest.raises(UnsupportedCode):
        extract_dataflow(code, language)
    assert issubclass(UnsupportedCode, ValueError)


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError, match="language must be one of"):
        extract_dataflow("x = 1", "cobol")


# -- featurizer and model ------------------------------------------------------------------------
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
WORDS = 'def f ( a ) : b = a + 1 return x "a b" y # hi'.split()


def make_tokenizer(words=WORDS):
    """A word-level tokenizer: one id per whitespace-separated word (so spans are easy to check)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(dict.fromkeys([*SPECIALS, "@", *words]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, cls_token="<s>", pad_token="<pad>", sep_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip


def make_encoder(tokenizer, layers=2, attention="sdpa"):
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64, pad_token_id=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    config._attn_implementation = attention
    return RobertaModel(config).eval()


SIMPLE = "def f(a):\n    b = a + 1\n    return b"  # tokens: def f ( a ) : b = a + 1 return b


def test_featurizer_layout_and_mask_follow_the_rules():
    tokenizer = make_tokenizer()
    batch = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=20, data_flow_length=8)(
        [SIMPLE]
    )
    vocab = tokenizer.get_vocab()
    words = "def f ( a ) : b = a + 1 return b".split()
    # [CLS] 13 code tokens [SEP] (positions 0..14), 5 nodes (15..19), padding (20..27).
    ids = [0] + [vocab[w] for w in words] + [2] + [3] * 5 + [1] * 8
    assert batch["code_input_ids"].tolist() == [ids]
    assert batch["code_position_idx"].tolist() == [list(range(2, 17)) + [0] * 5 + [1] * 8]
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[:15, :15] = True  # code tokens attend code tokens
    expected[[0, 14], :20] = True  # [CLS], [SEP] attend all non-padding positions
    # nodes a@3, b@6, a@8, 1@10, b@12 <-> their tokens at positions 4, 7, 9, 11, 13
    for node, position in zip(range(15, 20), (4, 7, 9, 11, 13)):
        expected[node, position] = expected[position, node] = True
    for node, source in [(16, 17), (16, 18), (17, 15), (19, 16)]:  # b<-a,1; a<-a; b<-b
        expected[node, source] = True
    assert torch.equal(batch["code_attention_mask"][0], expected)


def test_multi_subword_spans_and_truncation_drop_cut_nodes():
    tokenizer = make_tokenizer()
    code = 'x = "a b"\ny = x'  # subwords: x = "a b" y = x ; x@0<-"a b"@2, y@3<-x@5
    full = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=12, data_flow_length=4)([code])
    mask = full["code_attention_mask"][0]
    assert full["code_position_idx"][0].tolist() == list(range(2, 11)) + [0] * 4 + [1] * 3
    assert mask[10, 3:5].all() and not mask[10, [1, 2, 5, 6, 7]].any()  # "a b" spans 2 subwords
    assert mask[9, 10] and mask[11, 12]  # x <- "a b", y <- x
    # Budget 8 + 4 - 2 - 4 = 6 subwords: the last x is cut, so its node and y's link to it go.
    cut = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=8, data_flow_length=4)([code])
    assert cut["code_position_idx"][0].tolist() == list(range(2, 10)) + [0] * 3 + [1]
    mask = cut["code_attention_mask"][0]
    assert mask[10, 5] and not mask[10, 8:].any()  # y sees its token, no node any more


def test_byte_level_bpe_tokens_get_their_leading_space_form(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator([SIMPLE, "total = total + value", "return total"] * 5, trainer)
    # RoBERTa's <s> ... </s> template and a saved padding must not leak into the subwords.
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    backend.enable_padding(length=64)
    backend.save(str(tmp_path / "tokenizer.json"))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "tokenizer.json"), cls_token="<s>", pad_token="<pad>",
        sep_token="</s>", unk_token="<unk>",
    )  # fmt: skip
    code = "def f(total):\n    return total + value"
    batch = GraphCodeBERTFeaturizer(tokenizer, "python")([code])
    words = "def f ( total ) : return total + value".split()
    expected = tokenizer(words[0], add_special_tokens=False)["input_ids"]
    for word in words[1:]:
        expected += tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    assert batch["code_input_ids"][0, 1 : 1 + len(expected)].tolist() == expected


def _capture_embeddings(encoder):
    seen = {}

    def hook(module, args, kwargs):
        seen.update(kwargs)

    encoder.embeddings.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_node_embeddings_average_their_subwords_and_positions_pass_through():
    tokenizer = make_tokenizer()
    encoder = make_encoder(tokenizer)
    seen = _capture_embeddings(encoder)
    batch = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=12, data_flow_length=4)(
        ['x = "a b"\ny = x']
    )
    hidden = graphcodebert_encode(
        encoder, batch["code_input_ids"], batch["code_position_idx"], batch["code_attention_mask"]
    )
    assert hidden.shape == (1, 16, 32)
    weight, vocab = encoder.embeddings.word_embeddings.weight, tokenizer.get_vocab()
    embeds = seen["inputs_embeds"][0]
    assert torch.equal(seen["position_ids"], batch["code_position_idx"])
    assert torch.allclose(embeds[10], (weight[vocab['"a']] + weight[vocab['b"']]) / 2)
    assert torch.allclose(embeds[9], weight[vocab["x"]]) and torch.allclose(
        embeds[12], weight[vocab["x"]]
    )
    assert torch.allclose(embeds[3], weight[vocab['"a']])  # code tokens keep their own embedding


def test_attention_follows_the_graph_in_a_one_layer_encoder():
    tokenizer = make_tokenizer()
    encoder = make_encoder(tokenizer, layers=1)
    batch = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=20, data_flow_length=8)(
        [SIMPLE]
    )
    ids, positions, mask = (
        batch[k] for k in ("code_input_ids", "code_position_idx", "code_attention_mask")
    )

    def run(input_ids):
        with torch.no_grad():
            return graphcodebert_encode(encoder, input_ids, positions, mask)[0]

    base = run(ids)
    other = tokenizer.get_vocab()["x"]
    unseen = ids.clone()
    unseen[0, 9] = other  # a@8 at position 9: node a@3 (row 15) neither attends nor averages it
    unseen[0, 20:] = other  # padding ids
    changed = run(unseen)
    assert torch.allclose(changed[15], base[15], atol=1e-6)
    assert not torch.allclose(changed[17], base[17], atol=1e-4)  # node a@8 averages position 9
    seen = ids.clone()
    seen[0, 4] = other  # a@3 itself
    assert not torch.allclose(run(seen)[15], base[15], atol=1e-4)


def test_gradients_reach_the_word_embeddings():
    tokenizer = make_tokenizer()
    encoder = make_encoder(tokenizer)
    batch = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=20, data_flow_length=8)(
        [SIMPLE, 'x = "a b"\ny = x']
    )
    hidden = graphcodebert_encode(
        encoder, batch["code_input_ids"], batch["code_position_idx"], batch["code_attention_mask"]
    )
    hidden[:, 0].pow(2).sum().backward()
    with torch.no_grad():
        inputs = (batch[k] for k in ("code_input_ids", "code_position_idx", "code_attention_mask"))
        outputs = graphcodebert_encode(encoder, *inputs, return_outputs=True)
    assert torch.allclose(outputs.last_hidden_state, hidden) and outputs.pooler_output.shape == (
        2,
        32,
    )
    grad = encoder.embeddings.word_embeddings.weight.grad
    vocab = tokenizer.get_vocab()
    for word in ["def", "a", "b", "x", '"a', 'b"', "return"]:
        assert grad[vocab[word]].abs().sum() > 0, word
    assert grad[vocab["<unk>"]].abs().sum() == 0  # node ids are replaced by averages


def test_trimmed_padding_gives_the_same_outputs():
    tokenizer = make_tokenizer()
    encoder = make_encoder(tokenizer)
    codes = [SIMPLE, 'x = "a b"\ny = x']
    keys = ("code_input_ids", "code_position_idx", "code_attention_mask")
    full = GraphCodeBERTFeaturizer(tokenizer, "python", 20, 8)(codes)
    short = GraphCodeBERTFeaturizer(tokenizer, "python", 20, 8, pad_to_max_length=False)(codes)
    assert short["code_input_ids"].shape == (2, 20)  # the longest row: 15 tokens + 5 nodes
    with torch.no_grad():
        a = graphcodebert_encode(encoder, *(full[k] for k in keys))
        b = graphcodebert_encode(encoder, *(short[k] for k in keys))
    real = short["code_position_idx"] != 1
    assert torch.allclose(a[:, :20][real], b[real], atol=1e-5)


def test_eager_and_sdpa_attention_agree_and_featurizer_pickles():
    import pickle

    tokenizer = make_tokenizer()
    featurizer = pickle.loads(pickle.dumps(GraphCodeBERTFeaturizer(tokenizer, "python", 20, 8)))
    batch = featurizer([SIMPLE, 'x = "a b"\ny = x'])
    keys = ("code_input_ids", "code_position_idx", "code_attention_mask")
    with torch.no_grad():
        eager = graphcodebert_encode(
            make_encoder(tokenizer, attention="eager"), *(batch[k] for k in keys)
        )
        sdpa = graphcodebert_encode(
            make_encoder(tokenizer, attention="sdpa"), *(batch[k] for k in keys)
        )
    real = batch["code_position_idx"] != 1
    assert torch.allclose(eager[real], sdpa[real], atol=1e-5)


def test_unparsable_code_falls_back_to_tokens_only_and_is_counted(caplog):
    tokenizer = make_tokenizer()
    featurizer = GraphCodeBERTFeaturizer(tokenizer, "python", code_length=20, data_flow_length=8)
    with caplog.at_level(logging.WARNING, logger="soft_infonce.codesearch.graphcodebert.features"):
        batch = featurizer(["# hi", SIMPLE])
        featurizer([""])
    assert featurizer.fallback_count == 2 and featurizer.total_count == 3
    assert len([r for r in caplog.records if "fell back" in r.getMessage()]) == 1  # once per N
    vocab = tokenizer.get_vocab()
    assert batch["code_input_ids"][0, :4].tolist() == [0, vocab["#"], vocab["hi"], 2]
    assert batch["code_position_idx"][0].tolist() == [2, 3, 4, 5] + [1] * 24  # no node
    assert (
        batch["code_attention_mask"][0, :4, :4].all()
        and not batch["code_attention_mask"][0, 4:].any()
    )
    assert (batch["code_position_idx"][1] == 0).sum() == 5  # the good code keeps its graph


def test_featurizer_and_encoder_check_their_arguments():
    tokenizer = make_tokenizer()
    with pytest.raises(ValueError, match="language"):
        GraphCodeBERTFeaturizer(tokenizer, "kotlin")
    with pytest.raises(ValueError, match="data_flow_length"):
        GraphCodeBERTFeaturizer(tokenizer, "go", data_flow_length=-1)
    with pytest.raises(ValueError, match="codes"):
        GraphCodeBERTFeaturizer(tokenizer, "go")("func f() {}")
    encoder = make_encoder(tokenizer)
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        graphcodebert_encode(encoder, ids, ids, torch.ones(1, 4, dtype=torch.bool))


RUBY = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "csn-ruby" / "valid.jsonl"


@pytest.mark.skipif(not RUBY.exists(), reason="shared CodeSearchNet Ruby data not present")
def test_real_ruby_functions_parse_without_fallback():
    with RUBY.open() as handle:
        codes = [json.loads(line)["code"] for _, line in zip(range(200), handle)]
    featurizer = GraphCodeBERTFeaturizer(make_tokenizer(), "ruby")
    batch = featurizer(codes)
    assert featurizer.fallback_count == 0
    nodes = (batch["code_position_idx"] == 0).sum(1)
    assert (nodes > 0).float().mean() > 0.9
