"""Figures for Soft-InfoNCE: weight distributions, weight curves and validation MRR curves.

matplotlib is an optional dependency (``pip install "soft-infonce[plot]"``); it is imported
when a function here is first called, never when this package is imported. Figures are drawn
on matplotlib's ``Agg`` canvas without ``pyplot``, so no window opens, no global figure is
left behind, and the functions work on machines without a display.

Every function returns the :class:`matplotlib.figure.Figure` and, when ``path`` is given,
writes it there as a PNG.
"""

from __future__ import annotations

from soft_infonce.codesearch.plotting.comparison import plot_run_comparison
from soft_infonce.codesearch.plotting.runs import plot_mrr_curves, plot_training_summary
from soft_infonce.codesearch.plotting.weights import (
    CurveSpec,
    plot_weight_curves,
    plot_weight_distribution,
    weight_curve,
)

__all__ = [
    "CurveSpec",
    "plot_mrr_curves",
    "plot_run_comparison",
    "plot_training_summary",
    "plot_weight_curves",
    "plot_weight_distribution",
    "weight_curve",
]
