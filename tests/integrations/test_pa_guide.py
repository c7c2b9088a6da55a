"""``"pa-guide"``: a frozen guide encoder's query-code scores relative to the positive's."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")
from helpers.tiny_vocab import bert_vocab  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from soft_infonce import SoftInfoNCELoss  # noqa: E402
from soft_infonce.estimators import PositiveAwareEstimator  # noqa: E402
from soft_infonce.estimators.registry import EstimatorContext, build_estimator  # noqa: E402
from soft_infonce.functional import negative_weights  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator  # noqa: E402
from soft_infonce.integrations.hf.trainer import SoftInfoNCETrainingArguments  # noqa: E402
from soft_infonce.integrations.hf.trainer import build_estimator as from_arguments  # noqa: E402

VERBS = "read write sort parse open close load save split join count find".split()
NOUNS = "file list json string number line table key value path url name".split()
RATIO_PRESET = (1.3, 0.7, 0.1)  # soft_infonce.presets.LIBRARY_PRESETS["ratio"]


@pytest.fixture()
def guide(tmp_path) -> BiEncoder:
    vocab = bert_vocab(*VERBS, *NOUNS)
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


def context(model) -> EstimatorContext:
    return EstimatorContext(estimator_model=model, max_query_length=16, max_code_length=16)


def test_pa_guide_wraps_a_frozen_copy_of_the_guide_at_the_ratio_preset(
    tmp_path, guide, one_thread
) -> None:
    guide.train()
    from_instance = build_estimator("pa-guide", context(guide))
    guide.save_pretrained(tmp_path / "guide")
    from_folder = build_estimator("pa-guide", context(tmp_path / "guide"))
    expected = {k: v.clone() for k, v in guide.encoder.state_dict().items()}
    for estimator in (from_instance, from_folder):
        assert type(estimator) is PositiveAwareEstimator and estimator.mode == "ratio"
        teacher = estimator.estimator
        assert type(teacher) is TrainedModelEstimator and teacher.score == "dot"
        assert (teacher.max_query_length, teacher.max_code_length) == (16, 16)
        frozen = teacher.model
        assert frozen is not guide and not frozen.training
        assert not any(p.requires_grad for p in frozen.parameters())
        state = frozen.encoder.state_dict()
        assert all(torch.equal(state[k], v) for k, v in expected.items())
        loss = SoftInfoNCELoss(estimator=estimator)
        assert (loss.alpha, loss.beta, loss.temperature) == RATIO_PRESET
    # the model given is left as it was: trainable, in training mode, its own storage
    assert guide.training and all(p.requires_grad for p in guide.parameters())
    first = next(from_instance.estimator.model.parameters())
    assert first.data_ptr() != next(guide.parameters()).data_ptr()


def test_pa_guide_puts_a_copy_of_the_positive_at_the_clamp_and_spares_the_rest(
    guide, one_thread
) -> None:
    # Each query is worded as its code, so the guide gives the positive its best possible
    # score (cosine 1): the copy of code 0 ties it (ratio 1) and no unrelated code passes it.
    positives = ["read json file", "sort list"]
    verbs, nouns = VERBS[2:], NOUNS[3:]  # no word of a positive
    unrelated = [f"{verbs[k % 10]} {nouns[k * 7 % 9]}" for k in range(29)]  # distinct pairs
    queries, codes = positives, [*positives, positives[0], *unrelated]
    n, m = len(queries), len(codes)
    estimator = build_estimator("pa-guide", context(guide))
    weights = negative_weights(estimator(queries, codes), *RATIO_PRESET)

    # independently: the guide's cosines, ratios to the positive, then Eq. 4 by hand
    with torch.no_grad():
        q = guide.encode_texts(queries, side="query", max_length=16).double()
        c = guide.encode_texts(codes, side="code", max_length=16).double()
    scores = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(c, dim=-1).T
    alpha, beta, t = RATIO_PRESET
    expected = torch.ones(n, m, dtype=torch.float64)
    for i in range(n):
        low = scores[i].min()
        ratio = ((scores[i] - low) / (scores[i, i] - low)).clamp(0.0, 2.0)
        negatives = [j for j in range(m) if j != i]
        p = torch.softmax(ratio[negatives] / t, dim=0)
        w = (beta - alpha * p) / (beta - alpha / (m - 1) * p.sum())
        expected[i, negatives] = w.clamp_min(0.1)
    torch.testing.assert_close(weights.double(), expected, atol=2e-5, rtol=0)

    copy = 2
    assert weights[0, copy] == pytest.approx(0.1)  # at the clamp: the row's lowest weight
    assert weights[0, copy] == weights[0, 1:].min()
    uniform = beta / (beta - alpha / (m - 1))  # a negative with no softmax mass
    ratios = (scores[0] - scores[0].min()) / (scores[0, 0] - scores[0].min())
    far = [j for j in range(3, m) if ratios[j] < 0.6]
    assert len(far) >= 10  # most unrelated codes are far below the positive for the guide
    assert all(1.0 <= float(weights[0, j]) <= uniform + 1e-6 for j in far), weights[0]
    assert m == 32 and uniform < 1.07  # near 1 at 32 candidates


def test_training_arguments_build_pa_guide_from_the_guide_folder(tmp_path, guide) -> None:
    guide.save_pretrained(tmp_path / "guide")
    settings = dict(output_dir=str(tmp_path / "out"), loss="soft", estimator="pa-guide")
    settings.update(use_cpu=True, report_to="none", max_query_length=12, max_code_length=20)
    args = SoftInfoNCETrainingArguments(**settings, estimator_model=str(tmp_path / "guide"))
    estimator = from_arguments(args)
    assert isinstance(estimator, PositiveAwareEstimator)
    assert (estimator.estimator.max_query_length, estimator.estimator.max_code_length) == (12, 20)
    with pytest.raises(ValueError, match="estimator 'pa-guide' needs estimator_model"):
        SoftInfoNCETrainingArguments(**settings)
    with pytest.raises(ValueError, match="estimator 'pa-guide' needs estimator_model"):
        build_estimator("pa-guide")
