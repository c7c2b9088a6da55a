"""The estimator registry: names and import strings -> estimators, context given by keyword."""

from __future__ import annotations

import pytest
import torch

from soft_infonce.estimators import (
    BM25Estimator,
    PositiveAwareEstimator,
    SelfGuidedEstimator,
    UniformEstimator,
)
from soft_infonce.estimators.registry import (
    ESTIMATORS,
    EstimatorContext,
    build_estimator,
    estimator_entry,
)

USER_MODULE = """
import torch

from soft_infonce.estimators import WeightEstimator


class Ones(WeightEstimator):
    preset = "bm25"

    def __init__(self, max_query_length=128, estimator_model=None):
        self.max_query_length, self.estimator_model = max_query_length, estimator_model

    def similarity(self, queries, codes, candidate_queries=None):
        return torch.ones(len(queries), len(codes))


def not_an_estimator():
    return 42
"""


@pytest.mark.parametrize(
    ("name", "cls", "preset"),
    [
        ("uniform", UniformEstimator, None),
        ("bm25", BM25Estimator, "bm25"),
        ("pa-bm25", PositiveAwareEstimator, "ratio"),
        ("self", SelfGuidedEstimator, "trained"),
    ],
)
def test_core_names_build_their_class_with_its_preset(name, cls, preset) -> None:
    estimator = build_estimator(name)
    assert type(estimator) is cls and estimator.preset == preset
    assert name in ESTIMATORS


def test_pa_bm25_scores_query_code_bm25_relative_to_the_positive() -> None:
    estimator = build_estimator("pa-bm25")
    assert isinstance(estimator.estimator, BM25Estimator)
    assert estimator.estimator.side == "query-code"


def test_model_estimators_name_what_they_need() -> None:
    for name in ("simcse", "trained"):
        assert estimator_entry(name).requires == ("estimator_model",)
        with pytest.raises(ValueError, match=f"estimator '{name}' needs estimator_model"):
            build_estimator(name)
    with pytest.raises(ValueError, match="estimator 'ema' needs model"):
        build_estimator("ema")


def test_an_estimator_model_nobody_reads_is_refused() -> None:
    with pytest.raises(ValueError, match="estimator_model is not used by estimator 'bm25'"):
        build_estimator("bm25", EstimatorContext(estimator_model="models/simcse"))


def test_unknown_names_and_malformed_import_strings_are_refused() -> None:
    for name in ("bm52", "my module:X", "pkg.mod:", "pkg.mod:1x"):
        with pytest.raises(ValueError, match="estimator must be one of"):
            estimator_entry(name)
    with pytest.raises(ImportError, match="cannot import 'no_such_package_here.weights'"):
        build_estimator("no_such_package_here.weights:Mine")


def test_a_user_estimator_by_import_string_gets_the_context_it_names(tmp_path, monkeypatch) -> None:
    (tmp_path / "user_estimators.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    context = EstimatorContext(estimator_model="frozen/", max_query_length=7, max_code_length=9)
    estimator = build_estimator("user_estimators:Ones", context)
    assert type(estimator).__name__ == "Ones"
    assert (estimator.max_query_length, estimator.estimator_model) == (7, "frozen/")
    assert torch.equal(estimator(["q"], ["a", "b"]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="must build a WeightEstimator, got int"):
        build_estimator("user_estimators:not_an_estimator")
    with pytest.raises(ValueError, match="has no callable 'Missing'"):
        build_estimator("user_estimators:Missing")
