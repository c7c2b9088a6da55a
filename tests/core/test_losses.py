"""The nn.Module losses: one forward path, presets, symmetry, estimators, bad input."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from soft_infonce import (
    BCELoss,
    FalseNegativeCancellationLoss,
    InfoNCELoss,
    KLRegularizedInfoNCELoss,
    SoftInfoNCELoss,
    WeightedInfoNCELoss,
    WeightEstimator,
)
from soft_infonce import functional as SF


class LengthEstimator(WeightEstimator):
    """Relevance = minus the length difference of the two codes (a user-style estimator)."""

    def similarity(self, queries, codes, candidate_queries=None):
        lengths = torch.tensor([float(len(c)) for c in codes])
        q_len = torch.tensor([float(len(codes[i])) for i in range(len(queries))])
        return -(q_len[:, None] - lengths[None, :]).abs()


def embeddings(n=6, m=None, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, dim, generator=g, requires_grad=True)
    c = torch.randn(m or n, dim, generator=g, requires_grad=True)
    return q, c


def test_infonce_module_is_cross_entropy_with_scale():
    q, c = embeddings()
    loss = InfoNCELoss(scale=20.0)(q, c)
    ref = F.cross_entropy(20.0 * q @ c.T, torch.arange(6))
    assert abs(loss.item() - ref.item()) < 1e-5


def test_presets_are_table_7():
    for name, expected in {
        "bm25": (1.5, 0.5, 1.0),
        "simcse": (1.3, 0.7, 0.1),
        "trained": (1.3, 0.7, 5.0),
    }.items():
        loss = SoftInfoNCELoss.from_preset(name)
        assert (loss.alpha, loss.beta, loss.temperature) == expected
    assert SoftInfoNCELoss.from_preset("bm25", min_weight=0.2).min_weight == 0.2
    with pytest.raises(ValueError, match="preset"):
        SoftInfoNCELoss.from_preset("tfidf")


def test_estimator_preset_fills_unset_settings():
    class Bm25Like(LengthEstimator):
        preset = "bm25"

    loss = SoftInfoNCELoss(estimator=Bm25Like())
    assert (loss.alpha, loss.beta, loss.temperature) == (1.5, 0.5, 1.0)
    loss = SoftInfoNCELoss(estimator=Bm25Like(), alpha=1.2)
    assert (loss.alpha, loss.beta, loss.temperature) == (1.2, 0.5, 1.0)
    assert (SoftInfoNCELoss().alpha, SoftInfoNCELoss().beta) == (1.3, 0.7)


def test_soft_module_equals_functional_with_extra_candidates():
    q, c = embeddings(n=4, m=7)
    sim = torch.randn(4, 7)
    loss = SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=0.5, scale=2.0)(q, c, sim)
    w = SF.negative_weights(sim, 1.3, 0.7, 0.5)
    ref = SF.soft_infonce_loss(2.0 * q @ c.T, w)
    assert abs(loss.item() - ref.item()) < 1e-6


def test_symmetric_averages_both_directions():
    q, c = embeddings(n=5)
    sim = torch.randn(5, 5)
    loss = SoftInfoNCELoss(temperature=1.0, symmetric=True)(q, c, sim)
    scores = q @ c.T
    forward = SF.soft_infonce_loss(scores, SF.negative_weights(sim, 1.3, 0.7, 1.0))
    backward = SF.soft_infonce_loss(scores.T, SF.negative_weights(sim.T, 1.3, 0.7, 1.0))
    assert abs(loss.item() - 0.5 * (forward + backward).item()) < 1e-6
    sym = InfoNCELoss(symmetric=True)(q, c)
    ref = 0.5 * (
        F.cross_entropy(scores, torch.arange(5)) + F.cross_entropy(scores.T, torch.arange(5))
    )
    assert abs(sym.item() - ref.item()) < 1e-6


def test_estimator_gets_the_raw_texts_and_drives_the_weights():
    q, c = embeddings(n=4)
    queries = ["sort a list", "open a file", "parse json", "sum numbers"]
    codes = ["def a(): pass", "def bb(): return 1", "def c(x):\n    return x * 2", "x"]
    est = LengthEstimator()
    loss_fn = SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=2.0, estimator=est)
    loss = loss_fn(q, c, queries=queries, codes=codes)
    sim = est(queries, codes)
    ref = SoftInfoNCELoss(alpha=1.3, beta=0.7, temperature=2.0)(q, c, sim)
    assert abs(loss.item() - ref.item()) < 1e-6
    stats = loss_fn.last_statistics
    assert set(stats) == {f"q2c/weight_{k}" for k in ("mean", "min", "max", "clamped")}
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in stats.values())
    with pytest.raises(ValueError, match="queries= and codes="):
        loss_fn(q, c)


def test_gradients_flow_to_both_towers():
    q, c = embeddings(n=4)
    SoftInfoNCELoss(temperature=1.0)(q, c, torch.randn(4, 4)).backward()
    assert q.grad is not None and c.grad is not None
    assert q.grad.abs().sum() > 0 and c.grad.abs().sum() > 0


def test_flat_weights_warn_once(caplog):
    q, c = embeddings(n=32)
    sim = torch.rand(32, 32) * 0.01  # cosine-like spread at t=5: every weight ~1
    loss_fn = SoftInfoNCELoss.from_preset("trained")
    with caplog.at_level(logging.WARNING, logger="soft_infonce.losses"):
        loss_fn(q, c, sim)
        assert not caplog.records  # the check runs on the logging path, not in the step
        loss_fn.statistics()
        loss_fn(q, c, sim)
        numbers = loss_fn.statistics()
    assert sum("InfoNCE in all but name" in r.message for r in caplog.records) == 1
    assert 0.99 < numbers["q2c/weight_min"] <= numbers["q2c/weight_max"] < 1.01


@pytest.mark.parametrize(
    "loss_cls",
    [WeightedInfoNCELoss, BCELoss, KLRegularizedInfoNCELoss, FalseNegativeCancellationLoss],
)
def test_baselines_equal_their_functional_forms(loss_cls):
    q, c = embeddings(n=5, seed=3)
    sim = torch.randn(5, 5)
    loss = loss_cls(scale=3.0)(q, c, sim)
    scores = 3.0 * q @ c.T
    ref = {
        WeightedInfoNCELoss: lambda: SF.weighted_infonce_loss(scores, sim, 1.0),
        BCELoss: lambda: SF.bce_soft_label_loss(scores, sim, 1.0),
        KLRegularizedInfoNCELoss: lambda: SF.kl_regularized_infonce_loss(scores, sim, 1.0),
        FalseNegativeCancellationLoss: lambda: SF.soft_infonce_loss(
            scores, SF.cancellation_weights(sim, "top_k", 1)
        ),
    }[loss_cls]()
    assert abs(loss.item() - ref.item()) < 1e-5
    loss.backward()
    assert q.grad is not None


def test_similarity_losses_demand_a_similarity():
    q, c = embeddings(n=3)
    for cls in (SoftInfoNCELoss, WeightedInfoNCELoss, FalseNegativeCancellationLoss):
        with pytest.raises(ValueError, match="similarity"):
            cls()(q, c)


@pytest.mark.parametrize(
    "q,c,match",
    [
        (torch.randn(1, 8), torch.randn(1, 8), "at least one negative"),
        (torch.randn(0, 8), torch.randn(0, 8), "empty"),
        (torch.randn(4, 8), torch.randn(4, 6), "embedding size"),
        (torch.randn(4, 8), torch.randn(3, 8), "one code per query"),
        (torch.randn(4), torch.randn(4, 8), "2-D"),
        (torch.full((2, 8), float("nan")), torch.randn(2, 8), "NaN"),
    ],
)
def test_bad_embeddings_are_named(q, c, match):
    with pytest.raises(ValueError, match=match):
        InfoNCELoss()(q, c)


def test_bad_similarity_shape_is_named():
    q, c = embeddings(n=4)
    with pytest.raises(ValueError, match="similarity must have the shape"):
        SoftInfoNCELoss()(q, c, torch.randn(4, 5))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": -1}, "alpha"),
        ({"beta": 0}, "beta"),
        ({"temperature": 0}, "temperature"),
        ({"min_weight": 0}, "min_weight"),
        ({"scale": 0}, "scale"),
        ({"beta": float("inf")}, "beta must be a finite"),
        ({"alpha": float("nan")}, "alpha must be a finite"),
        ({"temperature": float("inf")}, "temperature must be a finite"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftInfoNCELoss(**kwargs)


@pytest.mark.parametrize(
    "cls,kwargs,error,match",
    [
        (SoftInfoNCELoss, {"estimator": "bm25"}, TypeError, "WeightEstimator"),
        (SoftInfoNCELoss, {"alpha": "1.3"}, TypeError, "alpha must be a real number"),
        (SoftInfoNCELoss, {"symmetric": "yes"}, TypeError, "symmetric must be a bool"),
        (KLRegularizedInfoNCELoss, {"kl_weight": float("nan")}, ValueError, "kl_weight"),
        (KLRegularizedInfoNCELoss, {"infonce_weight": float("inf")}, ValueError, "infonce_weight"),
        (KLRegularizedInfoNCELoss, {"kl_weight": -1.0}, ValueError, "kl_weight must be >= 0"),
        (FalseNegativeCancellationLoss, {"k": 1.9}, TypeError, "k must be an int"),
        (FalseNegativeCancellationLoss, {"k": True}, TypeError, "k must be an int"),
        (FalseNegativeCancellationLoss, {"ratio": float("nan")}, ValueError, "ratio"),
        (FalseNegativeCancellationLoss, {"mode": "top"}, ValueError, "mode"),
    ],
)
def test_constructor_numbers_and_types_are_checked(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_bf16_embeddings_give_a_float32_loss():
    q, c = embeddings(n=4)
    loss = SoftInfoNCELoss(temperature=1.0)(q.bfloat16(), c.bfloat16(), torch.randn(4, 4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_config_and_citation():
    loss = SoftInfoNCELoss.from_preset("bm25", scale=20.0)
    cfg = loss.get_config_dict()
    assert cfg["alpha"] == 1.5 and cfg["scale"] == 20.0
    assert "Rethinking Negative Pairs in Code Search" in loss.citation


def test_importing_the_package_and_its_losses_stays_light():
    """``import soft_infonce`` needs torch only, not transformers or sentence-transformers."""
    import subprocess
    import sys

    code = (
        "import sys, soft_infonce\n"
        "from soft_infonce import SoftInfoNCELoss, WeightEstimator, negative_weights\n"
        "print(sorted(m for m in ('transformers', 'datasets', 'sentence_transformers')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    lazy = subprocess.run(
        [sys.executable, "-c", "import soft_infonce; soft_infonce.BiEncoder"],
        capture_output=True,
        text=True,
    )
    assert lazy.returncode == 0, lazy.stderr
    # the lazy map is honest: none of its modules is imported eagerly anyway
    code = (
        "import sys, soft_infonce\n"
        "print(sorted(m for m in set(soft_infonce._LAZY.values()) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_example_runs():
    """The README's usage example is kept true: run its python block as written."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102
    assert torch.isfinite(namespace["loss"]) and namespace["q"].grad is not None
