"""One resolution of the paper's presets: the module, the trainer's build_loss and the
sentence-transformers face give the same settings and the same weights."""

from __future__ import annotations

import pytest
import torch

from soft_infonce import PRESETS, SoftInfoNCELoss, WeightEstimator
from soft_infonce.checks import check_number
from soft_infonce.estimators import BM25Estimator, PositiveAwareEstimator, UniformEstimator
from soft_infonce.presets import DEFAULT, LIBRARY_PRESETS, resolve

QUERIES = ["sort a list", "read a json file", "open a file", "sum the values", "parse json"]
CODES = ["sorted(xs)", "json.load(open(p))", "open(p)", "sum(v)", "json.loads(s)"]


class Scripted(WeightEstimator):
    """A frozen-model stand-in: scores on the scale its preset was tuned on."""

    def __init__(self, preset: str | None, spread: float) -> None:
        self.preset, self.spread = preset, spread

    def similarity(self, queries, codes, candidate_queries=None):
        g = torch.Generator().manual_seed(len(queries) * 31 + len(codes))
        return self.spread * torch.rand(len(queries), len(codes), generator=g)


ESTIMATORS = {
    "bm25": lambda: BM25Estimator(side="query-code"),
    "simcse": lambda: Scripted("simcse", 1.0),  # cosines
    "trained": lambda: Scripted("trained", 20.0),  # the frozen model's own scale * q . c
    "uniform": UniformEstimator,
    "pa-bm25": lambda: PositiveAwareEstimator(BM25Estimator(side="query-code")),
}
#: The settings each build must give: the paper's Table 7, this library's ratio preset for
#: positive-aware scores (not the paper's), the default without a preset.
EXPECTED = {**PRESETS, "pa-bm25": LIBRARY_PRESETS["ratio"], "uniform": DEFAULT}


def test_resolve_fills_only_unset_settings_and_checks_them():
    assert resolve(None) == DEFAULT
    assert resolve(BM25Estimator()) == PRESETS["bm25"]
    assert resolve(BM25Estimator(), beta=0.9) == (1.5, 0.9, 1.0)
    assert resolve(None, preset="trained").temperature == 5.0
    assert resolve(PositiveAwareEstimator(BM25Estimator())) == (1.3, 0.7, 0.1)  # by hand
    with pytest.raises(ValueError, match="preset must be one of"):
        resolve(None, preset="tfidf")
    with pytest.raises(ValueError, match="beta must be a finite number"):
        resolve(None, beta=float("inf"))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        resolve(None, temperature=0.0)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        resolve(None, alpha=True)
    assert check_number("x", 3, low=0) == 3.0


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_three_builds_give_the_same_settings_and_weights(tmp_path, name):
    pytest.importorskip("transformers")
    st = pytest.importorskip("soft_infonce.integrations.sentence_transformers")
    from soft_infonce.integrations.hf.trainer import SoftInfoNCETrainingArguments, build_loss

    estimator = ESTIMATORS[name]()
    args = SoftInfoNCETrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        loss="soft",
        estimator=name,
        estimator_model=None if name in ("bm25", "uniform", "pa-bm25") else "unused",
    )
    module = SoftInfoNCELoss(estimator=estimator)
    trainer = build_loss(args, estimator, scale=20.0)
    face = st.SoftInfoNCELoss(torch.nn.Identity(), estimator)
    expected = EXPECTED[name]
    for loss in (module, trainer, face.objective):
        assert (loss.alpha, loss.beta, loss.temperature) == expected, type(loss)
    assert face.get_config_dict()["temperature"] == expected[2]

    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    module(q, c, queries=QUERIES, codes=CODES)
    trainer.compute_loss_from_embeddings(q, c, {"queries": QUERIES, "codes": CODES})
    face.compute_loss_from_embeddings([q, c], None, [QUERIES, CODES])
    sim = estimator(QUERIES, CODES, QUERIES)
    weights = [loss.weights(sim) for loss in (module, trainer, face.objective)]
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
    stats = [loss.statistics() for loss in (module, trainer, face.objective)]
    assert stats[0] == stats[1] == stats[2]
    off = ~torch.eye(5, dtype=torch.bool)
    assert stats[0]["q2c/weight_mean"] == pytest.approx(weights[0][off].mean().item(), abs=1e-6)


def test_presets_stay_importable_from_the_old_places():
    from soft_infonce import PRESETS as top
    from soft_infonce.losses import PRESETS as from_losses
    from soft_infonce.presets import PRESETS as home

    assert top is from_losses is home
    assert home == {"bm25": (1.5, 0.5, 1.0), "simcse": (1.3, 0.7, 0.1), "trained": (1.3, 0.7, 5.0)}


def test_the_trainer_builds_positive_aware_bm25_by_name(tmp_path):
    """``estimator="pa-bm25"`` (``--runs soft:pa-bm25``): BM25 query-code scores relative to
    the positive's, r_ij = (s_ij - min_j s_ij) / (s_ii - min_j s_ij) clipped to [0, 2], with
    the library's ratio preset."""
    pytest.importorskip("transformers")
    from soft_infonce.codesearch.train.checks import parse_runs
    from soft_infonce.integrations.hf.trainer import (
        SoftInfoNCETrainingArguments,
        build_estimator,
        build_loss,
    )

    args = SoftInfoNCETrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, estimator="pa-bm25"
    )
    estimator = build_estimator(args)
    s = BM25Estimator(side="query-code")(QUERIES, CODES).double()
    low = s.min(dim=1, keepdim=True).values
    span = s.diagonal()[:, None] - low
    expected = torch.where(span > 0, (s - low) / span.clamp_min(1e-300), (s > low) * 2.0)
    expected = expected.clamp(0, 2).fill_diagonal_(1.0)  # a row whose positive is its minimum:
    # every candidate above it as relevant as possible (2), the positive itself 1
    assert (span == 0).any() and (span > 0).any()  # both cases occur in these five pairs
    torch.testing.assert_close(estimator(QUERIES, CODES).double(), expected)
    loss = build_loss(args, estimator, scale=20.0)
    assert (loss.alpha, loss.beta, loss.temperature) == (1.3, 0.7, 0.1)
    assert [run.name for run in parse_runs("infonce,soft:pa-bm25")] == ["infonce", "soft:pa-bm25"]
