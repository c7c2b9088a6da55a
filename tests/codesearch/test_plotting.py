from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from soft_infonce.codesearch.plotting import (  # noqa: E402
    plot_mrr_curves,
    plot_weight_curves,
    plot_weight_distribution,
    weight_curve,
)
from soft_infonce.functional import negative_weights  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 2000  # an empty canvas alone is smaller than a drawn figure


def _curve(axes, label: str):
    (line,) = [line for line in axes.get_lines() if line.get_label() == label]
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


def _eq4_by_hand(x: float, alpha: float, beta: float, t: float, m: int) -> float:
    """One negative at similarity x, m - 2 others at 0: Eq. 4 written out for one row."""
    p = math.exp(x / t) / (math.exp(x / t) + (m - 2))
    return max((beta - alpha * p) / (beta - alpha / (m - 1)), 0.1)


# -- weight curves ---------------------------------------------------------------------------
def test_weight_curves_writes_png(tmp_path):
    figure = plot_weight_curves(path=tmp_path / "sub" / "curves.png")
    _assert_png(tmp_path / "sub" / "curves.png")
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "bm25: alpha=1.5, beta=0.5, t=1",
        "simcse: alpha=1.3, beta=0.7, t=0.1",
        "trained: alpha=1.3, beta=0.7, t=5",
    ]


@pytest.mark.parametrize(
    ("preset", "alpha", "beta", "t"),
    [("bm25", 1.5, 0.5, 1.0), ("simcse", 1.3, 0.7, 0.1), ("trained", 1.3, 0.7, 5.0)],
)
def test_weight_curve_values_match_eq4_by_hand(preset, alpha, beta, t):
    figure = plot_weight_curves([preset], batch_size=32)
    x, y = _curve(figure.axes[0], preset)
    assert len(x) == 200
    for k in (0, 37, 100, 150, 199):
        assert y[k] == pytest.approx(_eq4_by_hand(x[k], alpha, beta, t, 32), rel=1e-5, abs=1e-6)
    # the default range reaches both ends: the maximum beta / (beta - alpha/(M-1)) and the clamp
    assert y[0] == pytest.approx(beta / (beta - alpha / 31), rel=1e-3)
    assert y[-1] == pytest.approx(0.1)


def test_weight_curve_matches_negative_weights_of_a_hand_built_batch():
    # a batch of 6 laid out differently: the positive in column 3, the varied negative last
    alpha, beta, t, m = 1.0, 0.9, 0.5, 6
    points = [-1.0, 0.0, 0.3, 1.2]
    figure = plot_weight_curves({"mine": (alpha, beta, t)}, batch_size=m, similarity=points)
    x, y = _curve(figure.axes[0], "mine")
    np.testing.assert_allclose(x, points)
    sim = torch.zeros(len(points), m)
    sim[:, 3] = 7.0  # the positive's own similarity must not matter
    sim[:, -1] = torch.tensor(points)
    expected = negative_weights(sim, alpha, beta, t, positives=torch.full((4,), 3))[:, -1]
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-6)
    assert y[1] == pytest.approx(1.0)  # at the others' similarity the weight is exactly 1


def test_weight_curve_helper_and_errors():
    w = weight_curve(1.3, 0.7, 0.1, torch.linspace(-1, 1, 70), batch_size=32)
    assert w.shape == (70,) and bool((w[1:] <= w[:-1] + 1e-7).all())  # non-increasing
    with pytest.raises(ValueError, match="preset must be one of"):
        plot_weight_curves(["nope"])
    with pytest.raises(ValueError, match="batch_size must be an int >= 3"):
        plot_weight_curves(["simcse"], batch_size=2)
    with pytest.raises(ValueError, match=r"beta - alpha / \(M - 1\) must be > 0"):
        plot_weight_curves(["bm25"], batch_size=4)  # 0.5 - 1.5 / 3 = 0
    with pytest.raises(ValueError, match="triples"):
        plot_weight_curves([(1.0, 2.0)])


# -- weight distribution ---------------------------------------------------------------------
def test_weight_distribution_histograms_match_the_negatives(tmp_path):
    torch.manual_seed(0)
    sim = torch.randn(16, 16)
    soft = negative_weights(sim, 1.3, 0.7, 0.5)
    flat = torch.ones(16, 16)
    figure = plot_weight_distribution({"soft": soft, "uniform": flat}, tmp_path / "d.png", bins=10)
    _assert_png(tmp_path / "d.png")
    assert len(figure.axes) == 2
    off_diagonal = soft[~torch.eye(16, dtype=torch.bool)].numpy()  # 240 negatives
    low, high = float(off_diagonal.min()), float(off_diagonal.max())
    counts, _ = np.histogram(off_diagonal, bins=np.linspace(low, high, 11))
    bars = figure.axes[0].containers[0]
    heights = np.array([bar.get_height() for bar in bars])
    np.testing.assert_allclose(heights, counts / 240, rtol=1e-6)
    assert bars.get_label() == "soft"
    uniform_heights = np.array([bar.get_height() for bar in figure.axes[1].containers[0]])
    assert uniform_heights.sum() == pytest.approx(1.0)  # all 240 ones in one bin
    assert figure.axes[1].get_title() == "uniform"
    assert "240 negatives" in figure.axes[1].texts[0].get_text()


def test_weight_distribution_accepts_1d_and_rejects_bad_input():
    figure = plot_weight_distribution({"given": torch.tensor([0.5, 1.0, 1.0, 1.5])}, bins=4)
    heights = [bar.get_height() for bar in figure.axes[0].containers[0]]
    np.testing.assert_allclose(heights, [0.25, 0.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_weight_distribution({})
    with pytest.raises(ValueError, match="M >= N"):
        plot_weight_distribution({"bad": torch.ones(4, 2)})
    with pytest.raises(ValueError, match="bins must be a positive int"):
        plot_weight_distribution({"ok": torch.ones(3, 3)}, bins=0)


# -- MRR curves ------------------------------------------------------------------------------
HISTORY = [
    {"step": 20, "eval_mrr": 0.62},
    {"step": 10, "eval_mrr": 0.60},
    {"step": 15, "loss": 1.3},  # a training log: skipped
]


def test_mrr_curves_from_results_json(tmp_path):
    results = {  # the layout of examples/run_codesearch.py's results.json
        "config": {"seed": 42},
        "runs": {
            "zero-shot": {"test": {"test": {"mrr": 0.5}}},  # no history: not drawn
            "infonce": {"history": HISTORY},
            "soft-bm25": {"history": [{"step": 10, "eval_mrr": 0.61}]},
        },
    }
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results))
    figure = plot_mrr_curves(source, tmp_path / "mrr.png")
    _assert_png(tmp_path / "mrr.png")
    x, y = _curve(figure.axes[0], "infonce")
    np.testing.assert_allclose(x, [10, 20])
    np.testing.assert_allclose(y, [0.60, 0.62])
    x, y = _curve(figure.axes[0], "soft-bm25")
    np.testing.assert_allclose(y, [0.61])
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["infonce", "soft-bm25"]


@pytest.mark.parametrize(
    "results",
    [
        {"runs": [{"name": "infonce", "history": HISTORY}]},
        {"name": "infonce", "history": HISTORY},
        {
            "infonce": {
                "log_history": [
                    {"global_step": 10, "mrr": 0.60},
                    {"global_step": 20, "valid_mrr": 0.62},
                ]
            }
        },
        {"infonce": HISTORY, "config": "ignored: not a run"},
    ],
)
def test_mrr_curves_tolerates_variants(results):
    x, y = _curve(plot_mrr_curves(results).axes[0], "infonce")
    np.testing.assert_allclose(x, [10, 20])
    np.testing.assert_allclose(y, [0.60, 0.62])


def test_mrr_curves_metric_and_errors():
    results = {"runs": {"a": {"history": [{"step": 1, "eval_mrr": 0.5, "eval_recall_at_1": 0.3}]}}}
    _, y = _curve(plot_mrr_curves(results, metric="eval_recall_at_1").axes[0], "a")
    np.testing.assert_allclose(y, [0.3])
    with pytest.raises(ValueError, match="at least one run"):
        plot_mrr_curves({"runs": {"a": {"history": [{"step": 1, "loss": 2.0}]}}})
    with pytest.raises(ValueError, match="results must be a dict"):
        plot_mrr_curves([1, 2])


# -- optional dependency ---------------------------------------------------------------------
def test_import_is_lazy_and_missing_matplotlib_names_the_extra(monkeypatch):
    code = "import sys, soft_infonce.codesearch.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"soft-infonce\[plot\]"):
        plot_weight_curves(["simcse"])


def test_training_summary_draws_both_panels(tmp_path):
    from soft_infonce.codesearch.plotting import plot_training_summary

    histories = {
        "infonce": [
            {"step": 1, "loss": 2.0},
            {"step": 2, "eval_mrr": 0.5},
            {"step": 4, "eval_mrr": 0.6},
        ],
        "soft": [{"step": 2, "eval_mrr": 0.55}, {"step": 4, "eval_mrr": 0.62}],
    }
    w = negative_weights(torch.rand(6, 6), 1.3, 0.7, 0.1)
    fig = plot_training_summary(histories, {"soft": w}, tmp_path / "results.png")
    _assert_png(tmp_path / "results.png")
    left, right = fig.axes
    assert [tuple(line.get_xdata()) for line in left.lines] == [(2.0, 4.0), (2.0, 4.0)]
    assert tuple(left.lines[1].get_ydata()) == (0.55, 0.62)
    (bars,) = right.containers
    assert sum(b.get_height() for b in bars) == 30  # the 6 x 5 negatives
    with pytest.raises(TypeError, match="histories"):
        plot_training_summary([1, 2])
