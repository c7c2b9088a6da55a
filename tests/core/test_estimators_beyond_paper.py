"""Tests of the estimators beyond the paper (issue 11 part 3): positive-aware, self-guided,
temperature calibration. Expected values are computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from soft_infonce.estimators import (
    BM25Estimator,
    PositiveAwareEstimator,
    SelfGuidedEstimator,
    WeightEstimator,
    calibrate_temperature,
    negative_entropy,
)
from soft_infonce.functional import negative_weights


class Table(WeightEstimator):
    """Returns a fixed score matrix (sliced to the call's shape)."""

    preset = "bm25"

    def __init__(self, scores, needs_pairs: bool = False) -> None:
        self.scores = torch.as_tensor(scores, dtype=torch.float64)
        self.requires_candidate_queries = needs_pairs

    def similarity(self, queries, codes, candidate_queries=None):
        return self.scores[: len(queries), : len(codes)]


def texts(n: int, prefix: str) -> list[str]:
    return [f"{prefix} {i}" for i in range(n)]


# ----------------------------------------------------------------------------- positive-aware
def test_ratio_is_relative_to_the_positive_above_the_row_minimum():
    scores = [[4.0, 2.0, 0.0, 6.0], [1.0, 3.0, 3.0, -1.0]]
    aware = PositiveAwareEstimator(Table(scores))
    got = aware(texts(2, "q"), texts(4, "c"))
    # row 0: min 0, positive 4 -> s / 4; row 1: min -1, positive 3 -> (s + 1) / 4
    expected = torch.tensor([[1.0, 0.5, 0.0, 1.5], [0.5, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(got, expected)
    clipped = PositiveAwareEstimator(Table(scores), max_ratio=1.2)(texts(2, "q"), texts(4, "c"))
    assert clipped[0, 3] == pytest.approx(1.2)


def test_ratio_of_a_non_negative_teacher_is_s_over_the_positive():
    queries = ["read a json file", "sort a list of numbers"]
    codes = ["read json file data", "sort list numbers", "write a json file", "numbers"]
    bm25 = BM25Estimator(side="query-code")
    raw = bm25(queries, codes).double()
    assert (raw.min(dim=1).values == 0).all()  # each row has a candidate sharing no term
    got = PositiveAwareEstimator(bm25)(queries, codes)
    expected = (raw / raw.diagonal()[:, None]).clamp(max=2.0).float()
    torch.testing.assert_close(got, expected)


def test_a_positive_that_is_the_row_minimum_gives_negatives_above_it_the_cap():
    got = PositiveAwareEstimator(Table([[0.0, 1.0, 0.0]]), max_ratio=3.0)(["q"], texts(3, "c"))
    assert got.tolist() == [[1.0, 3.0, 0.0]]


def test_a_near_duplicate_of_the_positive_is_the_most_down_weighted_negative():
    # query 0's candidates: the positive (5), a near-duplicate (4.9), two unrelated (1, 0)
    scores = torch.tensor([[5.0, 4.9, 1.0, 0.0], [0.0, 8.0, 0.5, 0.2]])
    ratio = PositiveAwareEstimator(Table(scores))(texts(2, "q"), texts(4, "c"))
    weights = negative_weights(ratio, alpha=1.3, beta=0.7, temperature=0.1)
    assert weights[0, 1] == weights[0, 1:].min() and weights[0, 1] < 0.5
    assert weights[0, 3] > 1.0  # the least relevant negative is pushed harder than in InfoNCE


def test_difference_is_in_the_teachers_units_and_leaves_eq4_weights_unchanged():
    scores = torch.tensor([[4.0, 2.0, 0.0], [1.0, 3.0, 3.5]])
    teacher = Table(scores)
    aware = PositiveAwareEstimator(teacher, mode="difference")
    got = aware(texts(2, "q"), texts(3, "c"))
    torch.testing.assert_close(got, (scores - scores.diagonal()[:, None]).float())
    assert aware.preset == "bm25" and PositiveAwareEstimator(teacher).preset == "ratio"
    raw_weights = negative_weights(scores.float(), alpha=1.3, beta=0.7, temperature=1.0)
    torch.testing.assert_close(
        negative_weights(got, alpha=1.3, beta=0.7, temperature=1.0), raw_weights
    )


def test_positive_aware_passes_candidate_queries_and_checks_its_arguments():
    aware = PositiveAwareEstimator(BM25Estimator(side="query-query"))
    assert aware.requires_candidate_queries
    with pytest.raises(ValueError, match="candidate_queries .* is required"):
        aware(["read a file"], ["open(p)"])
    with pytest.raises(ValueError, match=r"at least len\(queries\) = 2 candidates, got 1"):
        PositiveAwareEstimator(Table([[1.0]]))(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="estimator must be a soft_infonce.WeightEstimator"):
        PositiveAwareEstimator(lambda q, c: None)
    with pytest.raises(ValueError, match="mode must be one of"):
        PositiveAwareEstimator(Table([[1.0]]), mode="percent")
    for bad, error in [(0.5, ValueError), (float("nan"), ValueError), ("2", TypeError)]:
        with pytest.raises(error, match="max_ratio must"):
            PositiveAwareEstimator(Table([[1.0]]), max_ratio=bad)


# ----------------------------------------------------------------------------- self-guided
def test_self_guided_returns_the_detached_scores_without_a_copy_or_a_host_sync(monkeypatch):
    scores = torch.randn(3, 6, requires_grad=True) * 20
    estimator = SelfGuidedEstimator()
    syncs = []
    for name in ("item", "tolist", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _o=original, _n=name: syncs.append(_n) or _o(self)
        )
    sim = estimator.similarity_from_scores(scores)
    monkeypatch.undo()
    assert syncs == []
    assert not sim.requires_grad and sim.data_ptr() == scores.data_ptr()
    assert torch.equal(sim, scores.detach())
    assert estimator.uses_scores and not WeightEstimator.uses_scores
    assert estimator.preset == "trained"  # the model's own s_ij, like the trained estimator
    half = estimator.similarity_from_scores(scores.detach().half())
    assert half.dtype == torch.float32


def test_self_guided_refuses_texts_lists_and_other_shapes():
    estimator = SelfGuidedEstimator()
    with pytest.raises(ValueError, match="has no text path"):
        estimator(["q"], ["c"])
    with pytest.raises(TypeError, match="scores must be a torch.Tensor, got list"):
        estimator.similarity_from_scores([[1.0, 2.0]])
    with pytest.raises(ValueError, match="scores must have 2 dimensions"):
        estimator.similarity_from_scores(torch.zeros(3))
    with pytest.raises(ValueError, match="floating-point"):
        estimator.similarity_from_scores(torch.zeros(2, 2, dtype=torch.long))


def test_a_text_estimator_has_no_score_path_and_says_so():
    # the hook is declared on the interface; only uses_scores estimators implement it
    with pytest.raises(NotImplementedError, match=r"Table scores texts \(uses_scores = False\)"):
        Table([[1.0, 0.0]]).similarity_from_scores(torch.zeros(1, 2))


# ----------------------------------------------------------------------------- calibration
def binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_two_negatives_match_the_closed_form():
    # one row, positive first, negatives scored 1 and 0: p = sigmoid(1 / t); choose p = 0.8
    sim = torch.tensor([[9.0, 1.0, 0.0]])
    t = calibrate_temperature(None, [sim], target_entropy=binary_entropy(0.8))
    assert t == pytest.approx(1 / math.log(4), rel=1e-7)
    same = calibrate_temperature(None, [sim], effective_negatives=math.exp(binary_entropy(0.8)))
    assert same == pytest.approx(t, rel=1e-9)


def test_the_calibrated_t_hits_the_target_and_follows_the_score_scale():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 16, generator=g) for _ in range(3)]
    t = calibrate_temperature(None, batches, effective_negatives=4.0)
    entropies = torch.cat([negative_entropy(b, t) for b in batches])
    assert math.exp(float(entropies.mean())) == pytest.approx(4.0, rel=1e-6)
    scaled = calibrate_temperature(None, [20 * b for b in batches], effective_negatives=4.0)
    assert scaled == pytest.approx(20 * t, rel=1e-6)
    harder = calibrate_temperature(None, batches, effective_negatives=2.0)
    assert harder < t  # fewer effective negatives: a sharper softmax


def test_text_batches_go_through_the_estimator_like_collator_batches():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(4, 8, generator=g, dtype=torch.float64) * 10
    batch = {"queries": texts(4, "q"), "codes": texts(8, "c"), "candidate_queries": texts(8, "p")}
    from_texts = calibrate_temperature(Table(scores, True), [batch], target_entropy=1.0)
    from_scores = calibrate_temperature(None, [scores.float()], target_entropy=1.0)
    assert from_texts == pytest.approx(from_scores, rel=1e-6)
    guided = calibrate_temperature(SelfGuidedEstimator(), [scores.float()], target_entropy=1.0)
    assert guided == pytest.approx(from_scores, rel=1e-6)


@pytest.mark.parametrize(
    ("estimator", "batches", "kwargs", "error", "message"),
    [
        (None, [torch.eye(3)], {}, ValueError, "exactly one of target_entropy"),
        (
            None,
            [torch.eye(3)],
            {"target_entropy": 1.0, "effective_negatives": 2.0},
            ValueError,
            "exactly one of",
        ),
        (
            None,
            [torch.eye(3)],
            {"effective_negatives": 2.0},
            ValueError,
            r"below the uniform softmax's \(mean ln\(M - 1\) = 0.6931",
        ),
        (
            None,
            [torch.eye(3)],
            {"effective_negatives": 1.0},
            ValueError,
            r"effective_negatives must be > 1",
        ),
        (None, [torch.ones(2, 4)], {"target_entropy": 0.5}, ValueError, "every score is equal"),
        (
            None,
            [torch.tensor([[1.0, 5.0, 5.0, 0.0]])],
            {"target_entropy": 0.1},
            ValueError,
            "below what any temperature reaches",
        ),
        (None, [], {"target_entropy": 0.5}, ValueError, "at least one batch"),
        (
            None,
            [[[1.0, 2.0]]],
            {"target_entropy": 0.5},
            TypeError,
            r"batches\[0\] must be a mapping .* got list",
        ),
        (
            None,
            [{"queries": ["q"], "codes": ["a", "b"]}],
            {"target_entropy": 0.5},
            ValueError,
            "an estimator is needed",
        ),
        (
            Table([[1.0, 2.0]]),
            [{"queries": ["q"]}],
            {"target_entropy": 0.5},
            ValueError,
            r"batches\[0\] must hold 'codes'",
        ),
        (None, [torch.zeros(3, 2)], {"target_entropy": 0.5}, ValueError, r"M >= max\(N, 2\)"),
        (
            None,
            [torch.tensor([[0.0, math.nan, 1.0]])],
            {"target_entropy": 0.5},
            ValueError,
            "must be finite",
        ),
        (
            None,
            [torch.eye(3)],
            {"target_entropy": float("inf")},
            ValueError,
            "target_entropy must be a finite number",
        ),
    ],
)
def test_calibration_errors_name_the_problem(estimator, batches, kwargs, error, message):
    with pytest.raises(error, match=message):
        calibrate_temperature(estimator, batches, **kwargs)


# ----------------------------------------------------------------------------- EMA copy
class Tiny(torch.nn.Module):
    """A bi-encoder look-alike: character features through a linear layer, scale 10."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(8, 4)
        self.scale = 10.0

    def encode_texts(self, texts, side="query", max_length=128, batch_size=64, **_):
        rows = [[float(ord(ch) % 7) for ch in (t + " " * 8)[:8]] for t in texts]
        return self.proj(torch.tensor(rows))


def test_ema_follows_the_model_by_the_decay_and_drops_its_cache():
    from soft_infonce.integrations.hf.ema_estimator import EMAEstimator

    model = Tiny()
    ema = EMAEstimator(model, decay=0.75)
    queries, codes = ["read a file", "sort"], ["open(p)", "sorted(x)", "zip(a)"]
    torch.testing.assert_close(
        ema(queries, codes), 10 * model.encode_texts(queries) @ model.encode_texts(codes).T
    )
    old = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # a training step moves the model
        model.proj.weight.add_(1.0)
        model.proj.bias.mul_(-2.0)
    ema.update(model)
    assert ema.cache_size() == {"query": 0, "code": 0} and ema.updates == 1
    expected = Tiny()
    expected.load_state_dict({k: 0.75 * old[k] + 0.25 * v for k, v in model.state_dict().items()})
    q, c = expected.encode_texts(queries), expected.encode_texts(codes)
    torch.testing.assert_close(ema(queries, codes), 10 * q @ c.T)
    assert not any(p.requires_grad for p in ema.model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the original stays trainable
    assert ema.preset == "trained"


def test_ema_callback_updates_after_each_step_and_bad_inputs_are_named():
    from soft_infonce.integrations.hf.ema_estimator import EMAEstimator

    model = Tiny()
    ema = EMAEstimator(model, decay=0.0)
    callback = ema.callback()
    with torch.no_grad():
        model.proj.weight.zero_()
    callback.on_step_end(None, None, None, model=model)
    assert ema.updates == 1 and torch.equal(ema.model.proj.weight, model.proj.weight)
    with pytest.raises(ValueError, match="model must have the parameters"):
        ema.update(torch.nn.Linear(8, 4))
    for bad, error in [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                       ("0.9", TypeError)]:  # fmt: skip
        with pytest.raises(error, match="decay must"):
            EMAEstimator(Tiny(), decay=bad)
    with pytest.raises(TypeError, match="got a path"):
        EMAEstimator("runs/model")
